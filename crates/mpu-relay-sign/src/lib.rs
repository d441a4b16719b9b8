//! Request signing for Alibaba Cloud RPC calls: percent-encoding, canonicalization, V1
//! (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256), as the operator's client builds a signed request.
//! The verifier's half (decoding a received query, recomputing and comparing signatures) is the
//! [`verify`] module, behind the `verify` feature: only the cloud simulator enables it, so the
//! operator's binary carries no verifier.
//!
//! Everything here is pure (no I/O, no clock, no runtime): the nonce and the timestamp are
//! inputs, never drawn or read here, so the same inputs give the same bytes as Alibaba's
//! official SDKs (cross-checked in the operator's `tests/sdk_signatures.rs`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// RPC parameter names (query string) used on the wire.
pub mod params {
    pub const ACTION: &str = "Action";
    pub const VERSION: &str = "Version";
    pub const FORMAT: &str = "Format";
    pub const ACCESS_KEY_ID: &str = "AccessKeyId";
    pub const SIGNATURE: &str = "Signature";
    pub const SIGNATURE_METHOD: &str = "SignatureMethod";
    pub const SIGNATURE_TYPE: &str = "SignatureType";
    pub const SIGNATURE_VERSION: &str = "SignatureVersion";
    pub const SIGNATURE_NONCE: &str = "SignatureNonce";
    pub const TIMESTAMP: &str = "Timestamp";
    pub const SECURITY_TOKEN: &str = "SecurityToken";
    pub const REGION_ID: &str = "RegionId";
    pub const APP_ID: &str = "AppId";
    pub const TASK_ID: &str = "TaskId";
}

/// Header names (lowercase, as V3 canonicalises them) used on the wire.
pub mod headers {
    pub const HOST: &str = "host";
    pub const AUTHORIZATION: &str = "authorization";
    pub const ACTION: &str = "x-acs-action";
    pub const VERSION: &str = "x-acs-version";
    pub const DATE: &str = "x-acs-date";
    pub const SIGNATURE_NONCE: &str = "x-acs-signature-nonce";
    pub const CONTENT_SHA256: &str = "x-acs-content-sha256";
    pub const ACCESS_KEY_ID: &str = "x-acs-accesskey-id";
    pub const SECURITY_TOKEN: &str = "x-acs-security-token";
}

/// The operation this crate calls.
pub const ACTION_GET_MPU_TASK_STATUS: &str = "GetMPUTaskStatus";
/// `Format` we ask for; the response decoder only reads JSON.
pub const FORMAT_JSON: &str = "JSON";
/// V1 signature method, version and type, exactly as the old official SDK sends them. `SignatureType` is empty but
/// still sent and signed: the SDK does so, and a server that signs every received parameter expects it.
pub const V1_SIGNATURE_METHOD: &str = "HMAC-SHA1";
pub const V1_SIGNATURE_VERSION: &str = "1.0";
pub const V1_SIGNATURE_TYPE: &str = "";
/// V3 algorithm name, the prefix of the string to sign and of the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Hex SHA-256 of an empty body: GetMPUTaskStatus over V3 is `POST /?AppId=..&TaskId=..` with no body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// `Timestamp` (V1) and `x-acs-date` (V3) format, always UTC.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// RPC calls always go to the root path.
pub const RPC_PATH: &str = "/";

const V1_PATH_ENCODED: &str = "%2F";

#[cfg(feature = "verify")]
pub mod verify;

/// What can go wrong when reading a received request for verification (signing itself cannot fail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("unsupported HTTP method {0:?} (RPC calls use GET or POST)")]
    UnsupportedMethod(String),
    #[error("invalid percent-encoding in query string")]
    InvalidPercentEncoding,
    #[error("query string is not UTF-8 once decoded")]
    InvalidUtf8,
    #[error("parameter {0:?} appears more than once")]
    DuplicateParameter(String),
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("signed header {0:?} is missing from the request")]
    MissingSignedHeader(String),
}

/// HTTP method of an RPC call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = SignError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            other => Err(SignError::UnsupportedMethod(other.to_owned())),
        }
    }
}

/// Alibaba's percent-encoding: keeps only `A-Z a-z 0-9 - _ . ~`, encodes every other UTF-8 byte as `%XX`
/// (uppercase hex), so a space is `%20` (never `+`) and `*` is `%2A`.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 3);
    percent_encode_into(&mut out, input);
    out
}

/// [`percent_encode`], appended to `out`: the signer builds each query and string-to-sign in one
/// buffer instead of a string per key and value (issue 11's profile of the raw client).
pub fn percent_encode_into(out: &mut String, input: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = input.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            continue;
        }
        // Runs of unreserved bytes are copied at once. A run is ASCII, so its ends are char
        // boundaries (an empty run between two bytes of one character is skipped).
        if start < i {
            out.push_str(&input[start..i]);
        }
        out.push('%');
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(&input[start..]);
    }
}

/// `k=v` pairs sorted by key (a `BTreeMap` orders by bytes, which for UTF-8 is the code-point order the SDKs
/// sort by), each key and value percent-encoded, joined by `&`. The canonical query of both schemes and the
/// query string we send.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(512);
    for (key, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode_into(&mut out, key);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

/// Formats a timestamp as V1 `Timestamp` / V3 `x-acs-date` want it (UTC, whole seconds).
pub fn format_timestamp(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime(TIMESTAMP_FORMAT).to_string()
}

/// AccessKey credentials as the signer needs them. The secret is borrowed only for the signing call.
#[derive(Clone, Copy)]
pub struct SigningKey<'a> {
    pub access_key_id: &'a str,
    pub access_key_secret: &'a str,
    /// STS token, present for temporary credentials (RRSA, ECS RAM role).
    pub security_token: Option<&'a str>,
}

impl fmt::Debug for SigningKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret or the token, even in a test failure.
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("security_token", &self.security_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// One GetMPUTaskStatus call: which API version to speak and which task to ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpuStatusCall<'a> {
    /// `2016-11-01` (live) or `2018-01-11` (rtc).
    pub api_version: &'a str,
    pub app_id: &'a str,
    pub task_id: &'a str,
    /// Sent as `RegionId` in V1 when set; V3 carries no region (the endpoint selects it).
    pub region_id: Option<&'a str>,
}

/// Per-request values that must be fresh for every attempt (a retry is re-signed with a new nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness<'a> {
    pub nonce: &'a str,
    pub timestamp: jiff::Timestamp,
}

/// A signed request, ready for the HTTP client: `method` `https://host{path}?{query}` with `headers` and an
/// empty body. `string_to_sign` holds no secret (though it holds an STS token in V1: log it only when no token
/// is used, or redact it) and is what the server echoes on `SignatureDoesNotMatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: Method,
    pub path: &'static str,
    /// Already percent-encoded.
    pub query: String,
    /// Lowercase names; includes `host` in V3 (the client may let its HTTP library set `Host` to the same value).
    pub headers: Vec<(String, String)>,
    pub string_to_sign: String,
}

// ---------------------------------------------------------------------------------------------------------------
// V1: HMAC-SHA1, SignatureVersion 1.0
// ---------------------------------------------------------------------------------------------------------------

/// V1 string to sign and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Signature {
    /// `METHOD&%2F&encode(canonical query)`.
    pub string_to_sign: String,
    /// Base64 of HMAC-SHA1 keyed with `secret + "&"`.
    pub signature: String,
}

/// Signs a full V1 parameter map (operation and common parameters, without `Signature`).
pub fn v1_sign(method: Method, params: &BTreeMap<String, String>, secret: &str) -> V1Signature {
    v1_sign_query(method, &canonical_query(params), secret)
}

/// [`v1_sign`] of an already canonical query (the signer sends that same query, so it builds it
/// once).
fn v1_sign_query(method: Method, query: &str, secret: &str) -> V1Signature {
    let mut string_to_sign = String::with_capacity(16 + query.len() * 3 / 2);
    string_to_sign.push_str(method.as_str());
    string_to_sign.push('&');
    string_to_sign.push_str(V1_PATH_ENCODED);
    string_to_sign.push('&');
    percent_encode_into(&mut string_to_sign, query);
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(string_to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    V1Signature {
        string_to_sign,
        signature,
    }
}

/// Every parameter of a V1 GetMPUTaskStatus call except `Signature`, as the old official SDK sends them.
pub fn v1_params(
    call: &MpuStatusCall<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> BTreeMap<String, String> {
    let mut own = Vec::with_capacity(3);
    if let Some(region) = call.region_id {
        own.push((params::REGION_ID, region));
    }
    own.push((params::APP_ID, call.app_id));
    own.push((params::TASK_ID, call.task_id));
    let operation = RpcOperation {
        action: ACTION_GET_MPU_TASK_STATUS,
        version: call.api_version,
        params: &own,
    };
    v1_rpc_params(&operation, credentials, fresh)
}

/// Any RPC operation: its name, API version and own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcOperation<'a> {
    pub action: &'a str,
    pub version: &'a str,
    pub params: &'a [(&'a str, &'a str)],
}

/// Every parameter of a V1 RPC call except `Signature`: the common ones, then the operation's own.
pub fn v1_rpc_params(
    operation: &RpcOperation<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        map.insert(k.to_owned(), v.to_owned());
    };
    put(params::FORMAT, FORMAT_JSON);
    put(params::VERSION, operation.version);
    put(params::ACTION, operation.action);
    put(params::ACCESS_KEY_ID, credentials.access_key_id);
    put(params::SIGNATURE_METHOD, V1_SIGNATURE_METHOD);
    put(params::SIGNATURE_TYPE, V1_SIGNATURE_TYPE);
    put(params::SIGNATURE_VERSION, V1_SIGNATURE_VERSION);
    put(params::SIGNATURE_NONCE, fresh.nonce);
    put(params::TIMESTAMP, &format_timestamp(fresh.timestamp));
    if let Some(token) = credentials.security_token {
        put(params::SECURITY_TOKEN, token);
    }
    for (name, value) in operation.params {
        put(name, value);
    }
    map
}

/// A signed V1 GetMPUTaskStatus request: every parameter in the query string, body empty, plus the
/// `x-acs-action`/`x-acs-version` headers the old SDK also sends (unsigned in V1).
pub fn sign_v1(
    method: Method,
    call: &MpuStatusCall<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> SignedRequest {
    let params = v1_params(call, credentials, fresh);
    sign_v1_params(
        method,
        ACTION_GET_MPU_TASK_STATUS,
        call.api_version,
        &params,
        credentials,
    )
}

/// A signed V1 request for any RPC operation (STS GetCallerIdentity, ...).
pub fn sign_v1_rpc(
    method: Method,
    operation: &RpcOperation<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> SignedRequest {
    let params = v1_rpc_params(operation, credentials, fresh);
    sign_v1_params(
        method,
        operation.action,
        operation.version,
        &params,
        credentials,
    )
}

fn sign_v1_params(
    method: Method,
    action: &str,
    version: &str,
    query_params: &BTreeMap<String, String>,
    credentials: &SigningKey<'_>,
) -> SignedRequest {
    let mut query = canonical_query(query_params);
    let V1Signature {
        string_to_sign,
        signature,
    } = v1_sign_query(method, &query, credentials.access_key_secret);
    query.push('&');
    query.push_str(params::SIGNATURE);
    query.push('=');
    percent_encode_into(&mut query, &signature);
    SignedRequest {
        method,
        path: RPC_PATH,
        query,
        headers: vec![
            (headers::ACTION.to_owned(), action.to_owned()),
            (headers::VERSION.to_owned(), version.to_owned()),
        ],
        string_to_sign,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// V3: ACS3-HMAC-SHA256
// ---------------------------------------------------------------------------------------------------------------

/// Everything V3 signing produces; `authorization` is the header value to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Signature {
    pub canonical_request: String,
    /// `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request.
    pub string_to_sign: String,
    /// Signed header names, lowercase, sorted, joined by `;`.
    pub signed_headers: String,
    /// Hex HMAC-SHA256 keyed with the raw secret.
    pub signature: String,
    pub authorization: String,
}

/// Lowercases, trims and sorts headers into the canonical block and the signed-name list. A name given twice
/// has its values sorted and joined by `,`, as today's SDK does.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut grouped: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        grouped
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim());
    }
    let mut block = String::new();
    for (name, values) in &mut grouped {
        values.sort_unstable();
        block.push_str(name);
        block.push(':');
        block.push_str(&values.join(","));
        block.push('\n');
    }
    let names: Vec<&str> = grouped.keys().map(String::as_str).collect();
    (block, names.join(";"))
}

/// Signs a V3 request; every header in `headers` is signed. `payload_sha256` is the hex SHA-256 of the body
/// (`EMPTY_PAYLOAD_SHA256` for none), the same value as the `x-acs-content-sha256` header.
pub fn v3_sign(
    method: Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &[(String, String)],
    payload_sha256: &str,
    access_key_id: &str,
    secret: &str,
) -> V3Signature {
    let (header_block, signed_headers) = canonical_headers(headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        path,
        canonical_query(query),
        header_block,
        signed_headers,
        payload_sha256
    );
    let string_to_sign = format!(
        "{}\n{}",
        V3_ALGORITHM,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(string_to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let authorization = format!(
        "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    );
    V3Signature {
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
        authorization,
    }
}

/// A signed V3 GetMPUTaskStatus request as today's SDK sends it: `POST /?AppId=..&TaskId=..`, empty body, the
/// `x-acs-*` headers and `host` signed, then `authorization`. The SDK also signs `accept`, `user-agent` and
/// `x-acs-credentials-provider`; the server checks only what `SignedHeaders` names, so the client may send
/// `accept` and its own `user-agent` unsigned. `host` is the authority the request goes to (`host[:port]`).
pub fn sign_v3(
    host: &str,
    call: &MpuStatusCall<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> SignedRequest {
    let operation = RpcOperation {
        action: ACTION_GET_MPU_TASK_STATUS,
        version: call.api_version,
        params: &[
            (params::APP_ID, call.app_id),
            (params::TASK_ID, call.task_id),
        ],
    };
    sign_v3_rpc(host, &operation, credentials, fresh)
}

/// A signed V3 request for any RPC operation, as today's SDKs send one: `POST /?<its own
/// parameters>`, empty body, the `x-acs-*` headers and `host` signed, then `authorization`
/// (GetMPUTaskStatus, and the managed relays' StartLiveMPUTask, UpdateLiveMPUTask, ...).
pub fn sign_v3_rpc(
    host: &str,
    operation: &RpcOperation<'_>,
    credentials: &SigningKey<'_>,
    fresh: &Freshness<'_>,
) -> SignedRequest {
    let query: BTreeMap<String, String> = operation
        .params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut hdrs: Vec<(String, String)> = [
        (headers::HOST, host),
        (headers::ACTION, operation.action),
        (headers::VERSION, operation.version),
        (headers::DATE, &format_timestamp(fresh.timestamp)),
        (headers::SIGNATURE_NONCE, fresh.nonce),
        (headers::CONTENT_SHA256, EMPTY_PAYLOAD_SHA256),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(token) = credentials.security_token {
        // The SDK names the AccessKeyId in a header too when it sends an STS token.
        hdrs.push((
            headers::ACCESS_KEY_ID.to_owned(),
            credentials.access_key_id.to_owned(),
        ));
        hdrs.push((headers::SECURITY_TOKEN.to_owned(), token.to_owned()));
    }
    let signed = v3_sign(
        Method::Post,
        RPC_PATH,
        &query,
        &hdrs,
        EMPTY_PAYLOAD_SHA256,
        credentials.access_key_id,
        credentials.access_key_secret,
    );
    hdrs.push((headers::AUTHORIZATION.to_owned(), signed.authorization));
    SignedRequest {
        method: Method::Post,
        path: RPC_PATH,
        query: canonical_query(&query),
        headers: hdrs,
        string_to_sign: signed.string_to_sign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The crate's dev-dependency on itself turns `verify` on for its tests.
    use crate::verify::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("test timestamp")
    }

    fn published_example() -> BTreeMap<String, String> {
        map(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ])
    }

    const CALL: MpuStatusCall<'static> = MpuStatusCall {
        api_version: "2018-01-11",
        app_id: "app 1",
        task_id: "task*~/",
        region_id: Some("cn-hangzhou"),
    };
    const CREDS: SigningKey<'static> = SigningKey {
        access_key_id: "ak",
        access_key_secret: "s",
        security_token: None,
    };

    #[test]
    fn published_v1_example_signs_to_documented_signature() {
        let sig = v1_sign(Method::Get, &published_example(), "testsecret");
        assert_eq!(sig.signature, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(
            sig.string_to_sign,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0\
             %26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
    }

    #[test]
    fn percent_encode_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("+/=&"), "%2B%2F%3D%26");
        assert_eq!(percent_encode("%:"), "%25%3A");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn percent_encode_non_ascii_encodes_each_utf8_byte_uppercase() {
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("任务"), "%E4%BB%BB%E5%8A%A1");
        assert_eq!(percent_encode("😀"), "%F0%9F%98%80");
    }

    #[test]
    fn decode_query_accepts_plus_and_percent_twenty_as_space() {
        let got = decode_query("a=x+y&b=x%20y&c=&d&e=%C3%A9%2A~").expect("valid query");
        assert_eq!(
            got,
            map(&[
                ("a", "x y"),
                ("b", "x y"),
                ("c", ""),
                ("d", ""),
                ("e", "é*~")
            ])
        );
    }

    #[test]
    fn decode_query_with_bad_escape_or_duplicate_is_rejected() {
        assert_eq!(decode_query("a=%2"), Err(SignError::InvalidPercentEncoding));
        assert_eq!(
            decode_query("a=%zz"),
            Err(SignError::InvalidPercentEncoding)
        );
        assert_eq!(decode_query("a=%FF"), Err(SignError::InvalidUtf8));
        assert_eq!(
            decode_query("a=1&a=2"),
            Err(SignError::DuplicateParameter("a".into()))
        );
    }

    #[test]
    fn decode_query_round_trips_canonical_query() {
        let params = map(&[("k y", "v+/=&*~é"), ("Z", " ")]);
        assert_eq!(decode_query(&canonical_query(&params)), Ok(params));
    }

    #[test]
    fn v1_signature_depends_on_method_and_secret() {
        let p = published_example();
        let get = v1_sign(Method::Get, &p, "testsecret");
        assert_ne!(
            get.signature,
            v1_sign(Method::Post, &p, "testsecret").signature
        );
        assert_ne!(get.signature, v1_sign(Method::Get, &p, "other").signature);
        assert!(
            v1_sign(Method::Post, &p, "x")
                .string_to_sign
                .starts_with("POST&%2F&")
        );
    }

    #[test]
    fn v1_params_include_every_common_parameter_and_empty_signature_type() {
        let fresh = Freshness {
            nonce: "n1",
            timestamp: ts("2024-01-02T03:04:05.999Z"),
        };
        let creds = SigningKey {
            security_token: Some("tok"),
            ..CREDS
        };
        let p = v1_params(&CALL, &creds, &fresh);
        let expected = map(&[
            ("AccessKeyId", "ak"),
            ("Action", "GetMPUTaskStatus"),
            ("AppId", "app 1"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SecurityToken", "tok"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "n1"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("TaskId", "task*~/"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", "2018-01-11"),
        ]);
        assert_eq!(p, expected);
    }

    #[test]
    fn v1_params_without_token_or_region_omit_them() {
        let fresh = Freshness {
            nonce: "n",
            timestamp: ts("2024-01-02T03:04:05Z"),
        };
        let call = MpuStatusCall {
            region_id: None,
            ..CALL
        };
        let p = v1_params(&call, &CREDS, &fresh);
        assert!(!p.contains_key(params::SECURITY_TOKEN));
        assert!(!p.contains_key(params::REGION_ID));
    }

    #[test]
    fn signed_v1_query_verifies_with_recomputed_signature() {
        let fresh = Freshness {
            nonce: "n",
            timestamp: ts("2024-01-02T03:04:05Z"),
        };
        let req = sign_v1(Method::Get, &CALL, &CREDS, &fresh);
        let received = decode_query(&req.query).expect("our own query decodes");
        let again = v1_recompute(Method::Get, &received, "s");
        assert!(signatures_equal(
            &again.signature,
            &received[params::SIGNATURE]
        ));
        assert_eq!(again.string_to_sign, req.string_to_sign);
        assert!(!signatures_equal(
            &v1_recompute(Method::Get, &received, "wrong").signature,
            &received[params::SIGNATURE]
        ));
    }

    #[test]
    fn signed_v1_request_carries_action_and_version_headers() {
        let fresh = Freshness {
            nonce: "n",
            timestamp: ts("2024-01-02T03:04:05Z"),
        };
        let req = sign_v1(Method::Post, &CALL, &CREDS, &fresh);
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/");
        assert!(
            req.headers
                .contains(&("x-acs-action".into(), "GetMPUTaskStatus".into()))
        );
        assert!(
            req.headers
                .contains(&("x-acs-version".into(), "2018-01-11".into()))
        );
        assert!(req.query.contains("&Signature="));
        assert!(!req.query.contains(' '));
    }

    #[test]
    fn timestamp_is_formatted_in_utc_without_fraction() {
        assert_eq!(
            format_timestamp(ts("2016-02-23T20:46:24.5+08:00")),
            "2016-02-23T12:46:24Z"
        );
    }

    // V3 vector computed independently with Python's hashlib/hmac (not our code), then confirmed byte for byte
    // against the official SDK in tests/sdk_signatures.rs.
    #[test]
    fn v3_sign_of_fixed_request_matches_known_vector() {
        let query = map(&[("TaskId", "t 1"), ("AppId", "a*")]);
        let hdrs: Vec<(String, String)> = [
            ("host", "rtc.aliyuncs.com"),
            ("x-acs-action", "GetMPUTaskStatus"),
            ("x-acs-version", "2018-01-11"),
            ("x-acs-date", "2024-01-02T03:04:05Z"),
            ("x-acs-signature-nonce", "nonce"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sig = v3_sign(
            Method::Post,
            "/",
            &query,
            &hdrs,
            EMPTY_PAYLOAD_SHA256,
            "ak",
            "secret",
        );
        assert_eq!(
            sig.canonical_request,
            "POST\n/\nAppId=a%2A&TaskId=t%201\nhost:rtc.aliyuncs.com\nx-acs-action:GetMPUTaskStatus\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2024-01-02T03:04:05Z\nx-acs-signature-nonce:nonce\nx-acs-version:2018-01-11\n\n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sig.string_to_sign, V3_STRING_TO_SIGN);
        assert_eq!(sig.signature, V3_SIGNATURE);
        assert_eq!(
            sig.authorization,
            format!(
                "ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;\
                 x-acs-signature-nonce;x-acs-version,Signature={V3_SIGNATURE}"
            )
        );
    }
    const V3_STRING_TO_SIGN: &str =
        "ACS3-HMAC-SHA256\nd232f7d803ef6e306ce0c379688ac8b76f6460f42f572db6a3bb22d21e59b9c8";
    const V3_SIGNATURE: &str = "ce9fad79e656cda54b7c999ece9ee922007fd0bd207e9d945be70ba958cbbefa";

    #[test]
    fn v3_headers_are_lowercased_trimmed_and_duplicates_joined_sorted() {
        let hdrs: Vec<(String, String)> = [("X-B", " 2 "), ("x-a", "1"), ("x-b", "1")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (block, names) = canonical_headers(&hdrs);
        assert_eq!(block, "x-a:1\nx-b:1,2\n");
        assert_eq!(names, "x-a;x-b");
    }

    #[test]
    fn empty_payload_hash_constant_is_sha256_of_nothing() {
        assert_eq!(hex::encode(Sha256::digest(b"")), EMPTY_PAYLOAD_SHA256);
    }

    #[test]
    fn signed_v3_request_has_sdk_headers_and_verifies() {
        let fresh = Freshness {
            nonce: "n3",
            timestamp: ts("2024-01-02T03:04:05Z"),
        };
        let creds = SigningKey {
            security_token: Some("tok"),
            ..CREDS
        };
        let req = sign_v3("127.0.0.1:8080", &CALL, &creds, &fresh);
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.query, "AppId=app%201&TaskId=task%2A~%2F");
        let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-acs-action",
                "x-acs-version",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-accesskey-id",
                "x-acs-security-token",
                "authorization"
            ]
        );
        let auth_value = &req.headers.last().expect("authorization header").1;
        let auth = parse_v3_authorization(auth_value).expect("our own header parses");
        assert_eq!(auth.access_key_id, "ak");
        let query = decode_query(&req.query).expect("our own query decodes");
        let again = v3_recompute(
            Method::Post,
            "/",
            &query,
            &req.headers,
            &auth.signed_headers,
            EMPTY_PAYLOAD_SHA256,
            &auth.access_key_id,
            "s",
        )
        .expect("all signed headers present");
        assert!(signatures_equal(&again.signature, &auth.signature));
        assert_eq!(again.string_to_sign, req.string_to_sign);
    }

    #[test]
    fn v3_recompute_with_missing_signed_header_is_an_error() {
        let err = v3_recompute(
            Method::Post,
            "/",
            &BTreeMap::new(),
            &[],
            &["host".into()],
            "",
            "ak",
            "s",
        );
        assert_eq!(err, Err(SignError::MissingSignedHeader("host".into())));
    }

    #[test]
    fn v3_authorization_parse_rejects_malformed_values() {
        assert_eq!(
            parse_v3_authorization("HMAC-SHA1 Credential=a,SignedHeaders=h,Signature=s"),
            Err(SignError::UnsupportedAlgorithm("HMAC-SHA1".into()))
        );
        for bad in [
            "",
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=h",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=h,Signature=s,Signature=t",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=h,Signature=s,Extra=x",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=h,Signature=s",
        ] {
            assert_eq!(
                parse_v3_authorization(bad),
                Err(SignError::MalformedAuthorization),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn method_parses_only_get_and_post() {
        assert_eq!("GET".parse(), Ok(Method::Get));
        assert_eq!("POST".parse(), Ok(Method::Post));
        assert_eq!(
            "PUT".parse::<Method>(),
            Err(SignError::UnsupportedMethod("PUT".into()))
        );
    }

    #[test]
    fn credentials_debug_never_prints_secret_or_token() {
        let creds = SigningKey {
            security_token: Some("TOKEN123"),
            access_key_secret: "SECRET123",
            ..CREDS
        };
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("SECRET123") && !shown.contains("TOKEN123"),
            "{shown}"
        );
    }

    #[test]
    fn signatures_equal_compares_whole_strings() {
        assert!(signatures_equal("abc", "abc"));
        assert!(!signatures_equal("abc", "abd"));
        assert!(!signatures_equal("abc", "ab"));
    }
}
