//! Transport failures (timeouts, connections, bodies) as [`CloudError`]s, without the URL: a V1
//! URL carries the signature and any STS token, and reqwest prints URLs in its errors.

use crate::cloud::response::CloudError;

/// Maps a reqwest failure to a [`CloudError`] class.
pub fn transport_error(e: &reqwest::Error) -> CloudError {
    if e.is_timeout() {
        CloudError::Timeout
    } else if tls_failure(e).is_some() {
        CloudError::Tls(transport_text(e))
    } else if e.is_connect() {
        CloudError::Connect(transport_text(e))
    } else {
        CloudError::Transport(transport_text(e))
    }
}

/// The rustls error under a failure, when the TLS handshake (or record layer) failed: certificate
/// problems, alerts, protocol errors. Plain I/O failures during the handshake are not (they are
/// `Connect`, retried). hyper and tokio-rustls hand rustls errors up inside (nested) `io::Error`s,
/// whose `source` skips the wrapped error, so each `io::Error` is opened with `get_ref`.
pub fn tls_failure(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => std::error::Error::source(io),
            },
            None => cause.source(),
        };
    }
    None
}

/// The error's kind and causes ("connect error: tcp connect error: Connection refused"), but
/// not its URL: reqwest prints the URL, and a V1 URL carries the signature and any STS token.
pub fn transport_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "error reading the response body"
    } else if e.is_request() {
        "error sending the request"
    } else if e.is_builder() {
        "invalid HTTP client settings"
    } else {
        "HTTP error"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
