//! Decoding of GetMPUTaskStatus responses into a typed status or a typed [`CloudError`], and the error
//! classification (throttled, transient, terminal) and condition reasons the controller's retry policy uses.
//!
//! Pure: it sees a status code, an optional `x-acs-retry-after` header value and the body bytes the HTTP client
//! read (the client bounds the body size and reports an oversized one with [`CloudError::body_too_large`]).

use std::time::Duration;

use serde::Deserialize;

/// Most characters kept of an error answer's `Code` and `RequestId`: nothing else of a body that is not a
/// usable answer reaches status, events or logs, and these only bounded.
pub const ID_MAX: usize = 128;
/// Most characters of a server `Message` kept; `SignatureDoesNotMatch` messages carry a whole string to sign.
pub const MESSAGE_MAX: usize = 2048;
/// Header through which today's SDK learns how long to back off from throttling, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
/// Marker before the server's string to sign in a `SignatureDoesNotMatch` message.
pub const SERVER_STRING_TO_SIGN_MARKER: &str = "server string to sign is:";

/// Error codes the classification names explicitly.
pub mod codes {
    pub const THROTTLING: &str = "Throttling";
    pub const THROTTLING_PREFIX: &str = "Throttling.";
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// A reused nonce: a retry is re-signed with a new one, so it heals itself.
    pub const SIGNATURE_NONCE_USED: &str = "SignatureNonceUsed";
    pub const SIGNATURE_DOES_NOT_MATCH: &str = "SignatureDoesNotMatch";
    pub const INCOMPLETE_SIGNATURE: &str = "IncompleteSignature";
    pub const INVALID_ACCESS_KEY_ID_PREFIX: &str = "InvalidAccessKeyId";
    pub const INVALID_SECURITY_TOKEN_PREFIX: &str = "InvalidSecurityToken";
    pub const INVALID_TIMESTAMP_PREFIX: &str = "InvalidTimeStamp";
    pub const FORBIDDEN_PREFIX: &str = "Forbidden";
    pub const INVALID_TASK_ID: &str = "InvalidTask.IDError";
    pub const INVALID_TASK_NOT_FOUND: &str = "InvalidTask.NotFound";
    pub const MISSING_PARAMETER_PREFIX: &str = "MissingParameter";
}

/// Condition/Event reasons (PascalCase, Kubernetes-safe) returned by [`CloudError::reason`].
pub mod reasons {
    pub const THROTTLED: &str = "Throttled";
    pub const TRANSIENT_ERROR: &str = "TransientError";
    pub const AUTH_ERROR: &str = "AuthError";
    pub const CLOCK_SKEW: &str = "ClockSkew";
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    pub const TASK_NOT_FOUND: &str = "TaskNotFound";
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const DECODE_ERROR: &str = "DecodeError";
    pub const REDIRECTED: &str = "Redirected";
    pub const TLS_ERROR: &str = "TlsError";
}

/// A successful GetMPUTaskStatus answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpuTaskStatus {
    pub request_id: String,
    /// The task's status code as Alibaba Cloud reports it; the api module maps it to a phase.
    pub status: i64,
}

/// How the controller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Over the account's rate limit: wait for the budget's next slot (or the server's retry-after).
    Throttled,
    /// May succeed if tried again: back off exponentially.
    Transient,
    /// Will fail the same way until something (spec, credentials, task) changes: stop retrying fast.
    Terminal,
}

/// An error answer from Alibaba Cloud (`{RequestId, HostId, Code, Message, Recommend}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: String,
    /// Truncated to [`MESSAGE_MAX`], with any STS token in an echoed string to sign redacted.
    pub message: String,
    pub request_id: String,
    pub host_id: Option<String>,
    /// Alibaba's diagnosis link.
    pub recommend: Option<String>,
    /// From a positive `x-acs-retry-after` header.
    pub retry_after: Option<Duration>,
}

/// What was wrong with a response body that was not a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("body is not a JSON object")]
    NotObject,
    #[error("`Status` is missing")]
    MissingStatus,
    #[error("`Status` is not an integer")]
    StatusNotInteger,
    #[error("`RequestId` is missing or not a string")]
    MissingRequestId,
    #[error("error response has no `Code`")]
    MissingCode,
    #[error("`{0}` is missing or malformed")]
    MissingField(&'static str),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Every way a GetMPUTaskStatus call can fail. Display text never holds a secret or a request query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// Alibaba Cloud answered with an error code.
    #[error(
        "Alibaba Cloud error {code} (HTTP {http_status}): {message} (RequestId {request_id})",
        code = .0.code, http_status = .0.http_status, message = .0.message, request_id = .0.request_id
    )]
    Api(Box<ApiError>),
    /// The answer could not be understood.
    #[error("undecodable response (HTTP {http_status}): {problem}")]
    Decode {
        http_status: u16,
        problem: DecodeProblem,
    },
    /// The endpoint answered with a redirect, which is never followed: signed requests go only
    /// to the endpoint the account names.
    #[error("the endpoint answered a redirect (HTTP {http_status}), which is never followed")]
    Redirected { http_status: u16 },
    /// No complete answer in time (set by the HTTP client).
    #[error("request timed out")]
    Timeout,
    /// Could not connect (DNS, TCP), set by the HTTP client.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The TLS handshake failed: the endpoint's certificate is for another host, expired, or
    /// from a CA this operator does not trust (see `--ca-bundle`). Nothing was sent.
    #[error("TLS handshake with the endpoint failed: {0}")]
    Tls(String),
    /// The connection failed mid-request, set by the HTTP client.
    #[error("transport error: {0}")]
    Transport(String),
}

impl CloudError {
    /// An error answer of Alibaba Cloud with this code and HTTP status, for tests of what the
    /// controller decides on it. Here, below the controller, so that its tests share one.
    #[cfg(test)]
    pub fn api_for_test(code: &str, http_status: u16) -> Self {
        Self::Api(Box::new(ApiError {
            http_status,
            code: code.into(),
            message: "message".into(),
            request_id: "req".into(),
            host_id: None,
            recommend: None,
            retry_after: None,
        }))
    }
}

impl CloudError {
    /// For the HTTP client when a body exceeds its size bound.
    pub fn body_too_large(http_status: u16, limit: usize) -> Self {
        CloudError::Decode {
            http_status,
            problem: DecodeProblem::TooLarge { limit },
        }
    }

    /// The error's class. Rules, first match wins:
    /// 1. a positive `x-acs-retry-after`, HTTP 429, or a `Throttling` / `Throttling.*` code: Throttled (today's
    ///    SDK also treats any error carrying that header as throttling);
    /// 2. credential, signature, permission, task and parameter codes (see [`codes`]): Terminal;
    /// 3. `ServiceUnavailable`, `InternalError`, `SignatureNonceUsed`: Transient;
    /// 4. unknown codes by HTTP status: 5xx Transient, anything else (4xx, or a stray 1xx/3xx) Terminal.
    ///
    /// Timeouts, connection and transport errors are Transient. Decode errors are Transient too: an
    /// unreadable answer usually comes from a proxy or a cut connection, and backoff bounds the cost when not.
    pub fn class(&self) -> ErrorClass {
        match self {
            CloudError::Api(api) => classify_api(api).0,
            // A certificate does not fix itself: someone must change the endpoint, its
            // certificate or the CA bundle, which a retry every few minutes then picks up.
            CloudError::Redirected { .. } | CloudError::Tls(_) => ErrorClass::Terminal,
            CloudError::Decode { .. }
            | CloudError::Timeout
            | CloudError::Connect(_)
            | CloudError::Transport(_) => ErrorClass::Transient,
        }
    }

    /// A PascalCase reason for conditions, Events and metric labels (bounded set: see [`reasons`]).
    pub fn reason(&self) -> &'static str {
        match self {
            CloudError::Api(api) => classify_api(api).1,
            CloudError::Decode { .. } => reasons::DECODE_ERROR,
            CloudError::Redirected { .. } => reasons::REDIRECTED,
            CloudError::Tls(_) => reasons::TLS_ERROR,
            CloudError::Timeout | CloudError::Connect(_) | CloudError::Transport(_) => {
                reasons::TRANSIENT_ERROR
            }
        }
    }

    /// How long the server asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api(api) => api.retry_after,
            _ => None,
        }
    }

    /// The API error, when Alibaba Cloud answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            CloudError::Api(api) => Some(api),
            _ => None,
        }
    }
}

fn is_throttling_code(code: &str) -> bool {
    code == codes::THROTTLING || code.starts_with(codes::THROTTLING_PREFIX)
}

fn classify_api(api: &ApiError) -> (ErrorClass, &'static str) {
    use ErrorClass::{Terminal, Throttled, Transient};
    let code = api.code.as_str();
    if api.retry_after.is_some() || api.http_status == 429 || is_throttling_code(code) {
        return (Throttled, reasons::THROTTLED);
    }
    if code == codes::SIGNATURE_DOES_NOT_MATCH
        || code == codes::INCOMPLETE_SIGNATURE
        || code.starts_with(codes::INVALID_ACCESS_KEY_ID_PREFIX)
        || code.starts_with(codes::INVALID_SECURITY_TOKEN_PREFIX)
    {
        return (Terminal, reasons::AUTH_ERROR);
    }
    // The cloud rejects requests whose timestamp is off by more than 15 minutes: the fix is the
    // node's clock, not the credentials, so the reason says so.
    if code.starts_with(codes::INVALID_TIMESTAMP_PREFIX) {
        return (Terminal, reasons::CLOCK_SKEW);
    }
    if code.starts_with(codes::FORBIDDEN_PREFIX) {
        return (Terminal, reasons::PERMISSION_DENIED);
    }
    if code == codes::INVALID_TASK_NOT_FOUND || code == codes::INVALID_TASK_ID {
        return (Terminal, reasons::TASK_NOT_FOUND);
    }
    if code.starts_with(codes::MISSING_PARAMETER_PREFIX) {
        return (Terminal, reasons::INVALID_REQUEST);
    }
    if code == codes::SERVICE_UNAVAILABLE
        || code == codes::INTERNAL_ERROR
        || code == codes::SIGNATURE_NONCE_USED
    {
        return (Transient, reasons::TRANSIENT_ERROR);
    }
    if (500..600).contains(&api.http_status) {
        (Transient, reasons::TRANSIENT_ERROR)
    } else {
        (Terminal, reasons::INVALID_REQUEST)
    }
}

/// Parses `x-acs-retry-after` (milliseconds) as today's SDK does: only a positive integer counts.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let ms: u64 = value?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "HostId")]
    host_id: Option<String>,
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Recommend")]
    recommend: Option<String>,
}

/// Decodes any RPC answer: a 2xx JSON object is returned as it is; an error answer becomes a
/// [`CloudError::Api`] (bounded `Code`, `Message` and `RequestId`, nothing else of the body).
pub fn decode_json(
    http_status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, CloudError> {
    let decode_err = |problem| CloudError::Decode {
        http_status,
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| decode_err(DecodeProblem::NotJson))?;
    if !value.is_object() {
        return Err(decode_err(DecodeProblem::NotObject));
    }
    if !(200..300).contains(&http_status) {
        let err: ErrorBody =
            serde_json::from_value(value).map_err(|_| decode_err(DecodeProblem::MissingCode))?;
        let code = err
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| decode_err(DecodeProblem::MissingCode))?;
        return Err(CloudError::Api(Box::new(ApiError {
            http_status,
            code: truncate_chars(&code, ID_MAX),
            message: clean_message(err.message.as_deref().unwrap_or_default()),
            request_id: truncate_chars(&err.request_id.unwrap_or_default(), ID_MAX),
            host_id: err.host_id.map(|h| truncate_chars(&h, ID_MAX)),
            recommend: err.recommend.map(|r| truncate_chars(&r, MESSAGE_MAX)),
            retry_after: parse_retry_after(retry_after),
        })));
    }
    Ok(value)
}

/// Decodes a GetMPUTaskStatus response. `retry_after` is the raw `x-acs-retry-after` header, if any.
///
/// A 2xx body must be a JSON object with a string `RequestId` and an integer `Status`; anything else is a
/// [`CloudError::Decode`]. A non-2xx body must carry a `Code`; one that does not is a Decode error, which the
/// class rules treat as Transient.
pub fn decode_response(
    http_status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<MpuTaskStatus, CloudError> {
    let decode_err = |problem| CloudError::Decode {
        http_status,
        problem,
    };
    let value = decode_json(http_status, retry_after, body)?;
    let request_id = value
        .get("RequestId")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| decode_err(DecodeProblem::MissingRequestId))?;
    let request_id = truncate_chars(request_id, ID_MAX);
    let status = value
        .get("Status")
        .ok_or_else(|| decode_err(DecodeProblem::MissingStatus))?
        .as_i64()
        .ok_or_else(|| decode_err(DecodeProblem::StatusNotInteger))?;
    Ok(MpuTaskStatus { request_id, status })
}

pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Bounds a server message and redacts an STS token echoed in a V1 string to sign (`SecurityToken%3D...%26`):
/// the token is a credential, and the message ends up in logs and status.
fn clean_message(message: &str) -> String {
    truncate_chars(&redact_security_token(message), MESSAGE_MAX)
}

fn redact_security_token(message: &str) -> String {
    const NEEDLES: [(&str, &str); 2] = [("SecurityToken%3D", "%26"), ("SecurityToken=", "&")];
    let mut out = message.to_owned();
    for (needle, end) in NEEDLES {
        let mut from = 0;
        while let Some(found) = out[from..].find(needle) {
            let start = from + found + needle.len();
            let stop = out[start..].find(end).map_or(out.len(), |i| start + i);
            out.replace_range(start..stop, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

/// The server's string to sign from a `SignatureDoesNotMatch` message (the text after
/// `server string to sign is:`), to log beside ours. Case-insensitive on the marker; `None` when absent.
pub fn server_string_to_sign(message: &str) -> Option<&str> {
    // ASCII lowercasing keeps byte offsets, so an index into the lowered copy is valid in the original.
    let at = message
        .to_ascii_lowercase()
        .find(SERVER_STRING_TO_SIGN_MARKER)?;
    Some(message[at + SERVER_STRING_TO_SIGN_MARKER.len()..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(http_status: u16, code: &str) -> CloudError {
        let body = format!(
            r#"{{"RequestId":"r1","HostId":"h","Code":"{code}","Message":"m","Recommend":"u"}}"#
        );
        decode_response(http_status, None, body.as_bytes())
            .expect_err("error status decodes to an error")
    }

    #[test]
    fn success_body_decodes_request_id_and_status() {
        let got = decode_response(200, None, br#"{"RequestId":"abc","Status":3}"#);
        assert_eq!(
            got,
            Ok(MpuTaskStatus {
                request_id: "abc".into(),
                status: 3
            })
        );
    }

    #[test]
    fn success_body_with_extra_fields_still_decodes() {
        let got = decode_response(
            200,
            None,
            br#"{"RequestId":"abc","Status":-1,"Other":{"x":1}}"#,
        );
        assert_eq!(got.map(|s| s.status), Ok(-1));
    }

    fn problem_of(status: u16, body: &[u8]) -> DecodeProblem {
        match decode_response(status, None, body) {
            Err(CloudError::Decode { problem, .. }) => problem,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn success_body_with_bad_status_is_a_decode_error() {
        assert_eq!(
            problem_of(200, br#"{"RequestId":"a"}"#),
            DecodeProblem::MissingStatus
        );
        assert_eq!(
            problem_of(200, br#"{"RequestId":"a","Status":"3"}"#),
            DecodeProblem::StatusNotInteger
        );
        assert_eq!(
            problem_of(200, br#"{"RequestId":"a","Status":1.5}"#),
            DecodeProblem::StatusNotInteger
        );
        assert_eq!(
            problem_of(200, br#"{"RequestId":"a","Status":null}"#),
            DecodeProblem::StatusNotInteger
        );
        assert_eq!(
            problem_of(200, br#"{"RequestId":"a","Status":99999999999999999999}"#),
            DecodeProblem::StatusNotInteger
        );
        assert_eq!(
            problem_of(200, br#"{"Status":1}"#),
            DecodeProblem::MissingRequestId
        );
    }

    #[test]
    fn non_json_bodies_are_decode_errors_never_panics() {
        assert_eq!(problem_of(200, b""), DecodeProblem::NotJson);
        assert_eq!(
            problem_of(200, b"<html>oops</html>"),
            DecodeProblem::NotJson
        );
        assert_eq!(problem_of(200, b"\xff\xfe\x00"), DecodeProblem::NotJson);
        assert_eq!(problem_of(200, b"[1,2]"), DecodeProblem::NotObject);
        assert_eq!(problem_of(502, b"Bad Gateway"), DecodeProblem::NotJson);
        assert_eq!(
            problem_of(400, br#"{"RequestId":"r"}"#),
            DecodeProblem::MissingCode
        );
    }

    #[test]
    fn undecodable_bodies_leave_nothing_of_themselves_in_the_error() {
        let echo = b"AccessKeyId=LTAIsecretish&password=hunter2 not json".to_vec();
        for status in [200, 302, 500] {
            let err = decode_response(status, None, &echo).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("LTAI"), "{text}");
        }
    }

    #[test]
    fn error_codes_and_request_ids_are_bounded() {
        let body = serde_json::json!({
            "Code": "X".repeat(10_000), "RequestId": "R".repeat(10_000), "Message": "m"
        });
        let err = decode_response(400, None, body.to_string().as_bytes()).unwrap_err();
        let api = err.api().unwrap();
        assert!(api.code.chars().count() <= ID_MAX + 1);
        assert!(api.request_id.chars().count() <= ID_MAX + 1);
    }

    #[test]
    fn error_body_keeps_code_message_request_id_and_status() {
        let err = api_error(404, "InvalidTask.NotFound");
        let api = err.api().expect("api error");
        assert_eq!(
            *api,
            ApiError {
                http_status: 404,
                code: "InvalidTask.NotFound".into(),
                message: "m".into(),
                request_id: "r1".into(),
                host_id: Some("h".into()),
                recommend: Some("u".into()),
                retry_after: None,
            }
        );
        assert_eq!(
            err.to_string(),
            "Alibaba Cloud error InvalidTask.NotFound (HTTP 404): m (RequestId r1)"
        );
    }

    #[test]
    fn throttling_codes_and_http_429_are_throttled() {
        for (status, code) in [
            (400, "Throttling"),
            (400, "Throttling.User"),
            (400, "Throttling.Api"),
            (429, "Whatever"),
            (503, "Throttling.Concurrent"),
        ] {
            let err = api_error(status, code);
            assert_eq!(err.class(), ErrorClass::Throttled, "{status} {code}");
            assert_eq!(err.reason(), "Throttled");
        }
        assert_eq!(api_error(400, "ThrottlingX").class(), ErrorClass::Terminal);
    }

    #[test]
    fn server_side_failures_are_transient() {
        for (status, code) in [
            (503, "ServiceUnavailable"),
            (500, "InternalError"),
            (502, "SomethingNew"),
            (400, "SignatureNonceUsed"),
        ] {
            let err = api_error(status, code);
            assert_eq!(err.class(), ErrorClass::Transient, "{status} {code}");
            assert_eq!(err.reason(), "TransientError");
        }
        for err in [
            CloudError::Timeout,
            CloudError::Connect("refused".into()),
            CloudError::Transport("reset".into()),
        ] {
            assert_eq!(err.class(), ErrorClass::Transient);
            assert_eq!(err.reason(), "TransientError");
        }
    }

    #[test]
    fn credential_and_request_errors_are_terminal_with_specific_reasons() {
        for (status, code, reason) in [
            (400, "SignatureDoesNotMatch", "AuthError"),
            (403, "SignatureDoesNotMatch", "AuthError"),
            (404, "InvalidAccessKeyId.NotFound", "AuthError"),
            (400, "InvalidAccessKeyId.Inactive", "AuthError"),
            (400, "InvalidSecurityToken.Expired", "AuthError"),
            (400, "InvalidTimeStamp.Expired", "ClockSkew"),
            (403, "Forbidden.RAM", "PermissionDenied"),
            (403, "Forbidden", "PermissionDenied"),
            (400, "InvalidTask.IDError", "TaskNotFound"),
            (404, "InvalidTask.NotFound", "TaskNotFound"),
            (400, "MissingParameter", "InvalidRequest"),
            (400, "MissingTaskId", "InvalidRequest"),
            (400, "SomethingNew", "InvalidRequest"),
            (302, "Moved", "InvalidRequest"),
        ] {
            let err = api_error(status, code);
            assert_eq!(err.class(), ErrorClass::Terminal, "{status} {code}");
            assert_eq!(err.reason(), reason, "{status} {code}");
        }
    }

    #[test]
    fn terminal_code_on_5xx_stays_terminal() {
        assert_eq!(
            api_error(500, "InvalidTask.NotFound").class(),
            ErrorClass::Terminal
        );
    }

    #[test]
    fn decode_errors_are_transient_with_decode_reason() {
        let err = CloudError::body_too_large(200, 65536);
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.reason(), "DecodeError");
        assert!(err.to_string().contains("65536"));
    }

    #[test]
    fn positive_retry_after_header_marks_error_throttled() {
        let body = br#"{"RequestId":"r","Code":"Throttling.User","Message":"slow down"}"#;
        let err = decode_response(400, Some("1500"), body).expect_err("error");
        assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(err.class(), ErrorClass::Throttled);
        // Today's SDK raises its throttling error for any code that comes with the header.
        let other = br#"{"RequestId":"r","Code":"Busy","Message":"m"}"#;
        assert_eq!(
            decode_response(400, Some("10"), other)
                .expect_err("error")
                .class(),
            ErrorClass::Throttled
        );
    }

    #[test]
    fn non_positive_or_invalid_retry_after_is_ignored() {
        for value in [
            None,
            Some(""),
            Some("0"),
            Some("-5"),
            Some("abc"),
            Some("1.5"),
        ] {
            assert_eq!(parse_retry_after(value), None, "{value:?}");
        }
        assert_eq!(
            parse_retry_after(Some(" 20 ")),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn signature_mismatch_message_yields_server_string_to_sign() {
        let msg = "Specified signature is not matched with our calculation. server string to sign is:GET&%2F&A%3Db";
        assert_eq!(server_string_to_sign(msg), Some("GET&%2F&A%3Db"));
        assert_eq!(
            server_string_to_sign("Server String To Sign Is: X"),
            Some("X")
        );
        assert_eq!(server_string_to_sign("no marker here"), None);
    }

    #[test]
    fn echoed_security_token_is_redacted_from_message() {
        let body = br#"{"RequestId":"r","Code":"SignatureDoesNotMatch","Message":"bad. server string to sign is:GET&%2F&AccessKeyId%3Dak%26SecurityToken%3DSECRETTOKEN%26Timestamp%3Dx"}"#;
        let err = decode_response(400, None, body).expect_err("error");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRETTOKEN"), "{shown}");
        let api = err.api().expect("api error");
        assert_eq!(
            server_string_to_sign(&api.message),
            Some("GET&%2F&AccessKeyId%3Dak%26SecurityToken%3D<redacted>%26Timestamp%3Dx")
        );
        assert_eq!(
            redact_security_token("a&SecurityToken=T&b=1"),
            "a&SecurityToken=<redacted>&b=1"
        );
        assert_eq!(
            redact_security_token("SecurityToken%3DT"),
            "SecurityToken%3D<redacted>"
        );
    }

    #[test]
    fn long_message_is_truncated() {
        let body = format!(
            r#"{{"RequestId":"r","Code":"X","Message":"{}"}}"#,
            "m".repeat(10_000)
        );
        let err = decode_response(400, None, body.as_bytes()).expect_err("error");
        assert_eq!(
            err.api().expect("api error").message.chars().count(),
            MESSAGE_MAX + 1
        );
    }

    #[test]
    fn a_long_request_id_of_an_answer_is_kept_to_its_bound() {
        let body = format!(r#"{{"RequestId":"{}","Status":1}}"#, "r".repeat(200));
        let status = decode_response(200, None, body.as_bytes()).expect("a status");
        assert_eq!(status.request_id, format!("{}…", "r".repeat(ID_MAX)));
    }

    #[test]
    fn error_fields_of_wrong_type_are_a_decode_error() {
        assert_eq!(
            problem_of(400, br#"{"Code":5,"Message":"m"}"#),
            DecodeProblem::MissingCode
        );
    }
}
