//! The HTTP call to GetMPUTaskStatus: endpoint parsing, signing with fresh nonce and time,
//! bounded reading of the answer, and mapping of transport failures to [`CloudError`].

use std::time::Duration;

use rand::Rng;

use crate::api::CloudApi;
use crate::cloud::credentials::Credentials;
use crate::cloud::response::{CloudError, MpuTaskStatus, RETRY_AFTER_HEADER, decode_response};
use crate::cloud::sign::{self, Freshness, Method, MpuStatusCall, SignedRequest};

/// A GetMPUTaskStatus answer is a few dozen bytes; anything past this is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = concat!("mpu-relay-operator/", env!("CARGO_PKG_VERSION"));

/// Which signature scheme to sign calls with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SignatureVersion {
    /// HMAC-SHA1 over the query (SignatureVersion 1.0), as the core SDK sends it.
    #[default]
    V1,
    /// ACS3-HMAC-SHA256 in the Authorization header, as today's SDKs send it.
    V3,
}

/// Timeouts and signing of a [`CloudClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// For the whole call, from sending to the last byte of the answer.
    pub timeout: Duration,
    pub signature: SignatureVersion,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            signature: SignatureVersion::V1,
        }
    }
}

/// Which task to ask about, and where.
#[derive(Clone, Copy, Debug)]
pub struct StatusQuery<'a> {
    /// `host`, `host:port`, or a URL with `http://` / `https://`.
    pub endpoint: &'a str,
    pub api: CloudApi,
    pub region_id: Option<&'a str>,
    pub app_id: &'a str,
    pub task_id: &'a str,
}

/// Where an endpoint string points: the URL to send to and the `host[:port]` to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub base_url: String,
    pub host: String,
}

impl Endpoint {
    /// HTTPS unless `http://` is written out.
    pub fn parse(endpoint: &str) -> Result<Endpoint, CloudError> {
        let trimmed = endpoint.trim().trim_end_matches('/');
        let (scheme, host) = match trimmed.split_once("://") {
            Some((scheme @ ("http" | "https"), host)) => (scheme, host),
            Some((other, _)) => {
                return Err(CloudError::Connect(format!(
                    "endpoint scheme {other:?} is not http or https"
                )));
            }
            None => ("https", trimmed),
        };
        if host.is_empty() || host.contains('/') {
            return Err(CloudError::Connect(format!(
                "endpoint {endpoint:?} is not a host[:port] or a URL without a path"
            )));
        }
        Ok(Endpoint {
            base_url: format!("{scheme}://{host}"),
            host: host.to_string(),
        })
    }
}

/// Calls GetMPUTaskStatus. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    signature: SignatureVersion,
}

/// Installs ring as rustls' process-wide crypto provider (the same one kube uses), once.
fn ensure_crypto_provider() {
    // Err means a provider is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl CloudClient {
    pub fn new(options: &ClientOptions) -> Result<CloudClient, CloudError> {
        ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(USER_AGENT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CloudError::Connect(transport_text(&e)))?;
        Ok(CloudClient {
            http,
            signature: options.signature,
        })
    }

    /// The underlying HTTP client, shared with the STS exchange of RRSA credentials.
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Asks Alibaba Cloud for the status of one relay task.
    pub async fn get_mpu_task_status(
        &self,
        credentials: &Credentials,
        query: &StatusQuery<'_>,
    ) -> Result<MpuTaskStatus, CloudError> {
        let endpoint = Endpoint::parse(query.endpoint)?;
        let call = MpuStatusCall {
            api_version: query.api.version(),
            app_id: query.app_id,
            task_id: query.task_id,
            region_id: query.region_id,
        };
        // A fresh nonce and time for every attempt: the cloud rejects a reused nonce.
        let nonce = new_nonce();
        let fresh = Freshness {
            nonce: &nonce,
            timestamp: jiff::Timestamp::now(),
        };
        let signed = match self.signature {
            SignatureVersion::V1 => {
                sign::sign_v1(Method::Get, &call, &credentials.signing(), &fresh)
            }
            SignatureVersion::V3 => {
                sign::sign_v3(&endpoint.host, &call, &credentials.signing(), &fresh)
            }
        };
        self.send(&endpoint, signed).await
    }

    async fn send(
        &self,
        endpoint: &Endpoint,
        signed: SignedRequest,
    ) -> Result<MpuTaskStatus, CloudError> {
        let url = format!("{}{}?{}", endpoint.base_url, signed.path, signed.query);
        let method = match signed.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut request = self.http.request(method, url);
        for (name, value) in &signed.headers {
            // reqwest sets Host from the URL, to the same host[:port] that was signed.
            if name != "host" {
                request = request.header(name, value);
            }
        }
        let mut response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(CloudError::body_too_large(status, MAX_BODY_BYTES));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(CloudError::body_too_large(status, MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        decode_response(status, retry_after.as_deref(), &body)
    }
}

/// 32 lowercase hex digits, as the official SDK makes them.
fn new_nonce() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Maps a reqwest failure to a [`CloudError`] class.
pub fn transport_error(e: &reqwest::Error) -> CloudError {
    if e.is_timeout() {
        CloudError::Timeout
    } else if e.is_connect() {
        CloudError::Connect(transport_text(e))
    } else {
        CloudError::Transport(transport_text(e))
    }
}

/// The error's kind and causes ("connect error: tcp connect error: Connection refused"), but
/// not its URL: reqwest prints the URL, and a V1 URL carries the signature and any STS token.
fn transport_text(e: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_without_scheme_is_https() {
        assert_eq!(
            Endpoint::parse("live.aliyuncs.com").unwrap(),
            Endpoint {
                base_url: "https://live.aliyuncs.com".into(),
                host: "live.aliyuncs.com".into()
            }
        );
    }

    #[test]
    fn endpoint_with_explicit_http_and_port_is_kept() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080/").unwrap(),
            Endpoint {
                base_url: "http://127.0.0.1:8080".into(),
                host: "127.0.0.1:8080".into()
            }
        );
    }

    #[test]
    fn endpoint_with_a_path_or_other_scheme_is_rejected() {
        assert!(Endpoint::parse("https://live.aliyuncs.com/x").is_err());
        assert!(Endpoint::parse("ftp://live.aliyuncs.com").is_err());
        assert!(Endpoint::parse("").is_err());
    }

    #[test]
    fn nonces_are_32_hex_digits_and_unique() {
        let a = new_nonce();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, new_nonce());
    }

    #[tokio::test]
    async fn connection_refused_is_a_transient_connect_error_without_the_url() {
        let client = CloudClient::new(&ClientOptions::default()).unwrap();
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let creds = Credentials::access_key("AK", "SECRET", Some("TOKEN".into()));
        let err = client
            .get_mpu_task_status(
                &creds,
                &StatusQuery {
                    endpoint: &endpoint,
                    api: CloudApi::Live,
                    region_id: None,
                    app_id: "a",
                    task_id: "t",
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CloudError::Connect(_)), "{err:?}");
        assert_eq!(err.class(), crate::cloud::ErrorClass::Transient);
        let text = err.to_string();
        assert!(!text.contains("Signature"), "{text}");
        assert!(!text.contains("TOKEN"), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
    }
}
