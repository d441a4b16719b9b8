//! The HTTP calls to Alibaba Cloud: GetMPUTaskStatus, and STS (GetCallerIdentity to learn which
//! cloud account a key belongs to, AssumeRoleWithOIDC for RRSA). Signs with a fresh nonce and
//! time, reads answers with a size bound, never follows redirects, and maps transport failures
//! to [`CloudError`].
//!
//! Callers hand it an [`Endpoint`] that has passed the allow-list; the client itself never
//! derives a host from anything else.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use crate::api::{CloudApi, RelayOperation, SignatureVersion};
use crate::cloud::access_key::Credentials;
use crate::cloud::endpoint::Endpoint;
use crate::cloud::relay;
use crate::cloud::response::{
    CloudError, DecodeProblem, ID_MAX, MpuTaskStatus, RETRY_AFTER_HEADER, decode_json,
    decode_response, truncate_chars,
};
use crate::cloud::sign::{self, Freshness, Method, MpuStatusCall, RpcOperation, SignedRequest};
use crate::cloud::transport::{transport_error, transport_text};

/// A GetMPUTaskStatus answer is a few dozen bytes; anything past this is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const USER_AGENT: &str = concat!("mpu-relay-operator/", env!("CARGO_PKG_VERSION"));
/// STS API version of GetCallerIdentity and AssumeRoleWithOIDC.
pub const STS_VERSION: &str = "2015-04-01";

/// Timeouts, name and trust of a [`CloudClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// For the whole call, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// Sent as `User-Agent` after the operator's name and version (e.g. the pod name), so
    /// the cloud's logs can tell replicas apart.
    pub instance: Option<String>,
    /// CAs trusted besides the platform's roots (`--ca-bundle`).
    pub extra_roots: CaBundle,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            instance: None,
            extra_roots: CaBundle::default(),
        }
    }
}

/// CA certificates trusted in addition to the platform's roots (the system store, which the
/// image fills from Debian's ca-certificates): for a private endpoint, a TLS-inspecting proxy,
/// or the simulator. Never instead of them: a bundle can add trust, not take it away.
#[derive(Clone, Debug, Default)]
pub struct CaBundle {
    certificates: Vec<reqwest::Certificate>,
}

/// Why a CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("the CA bundle holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")]
    Empty,
    #[error("the CA bundle is not valid PEM: {0}")]
    Invalid(String),
}

impl CaBundle {
    /// Every certificate of a PEM bundle; at least one.
    pub fn from_pem(pem: &[u8]) -> Result<CaBundle, CaBundleError> {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| CaBundleError::Invalid(transport_text(&e)))?;
        if certificates.is_empty() {
            return Err(CaBundleError::Empty);
        }
        Ok(CaBundle { certificates })
    }

    /// How many certificates it adds.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

/// Which task to ask about, where and how.
#[derive(Clone, Copy, Debug)]
pub struct StatusQuery<'a> {
    pub endpoint: &'a Endpoint,
    pub api: CloudApi,
    pub signature: SignatureVersion,
    pub region_id: Option<&'a str>,
    pub app_id: &'a str,
    pub task_id: &'a str,
}

/// A Live 2016-11-01 operation other than GetMPUTaskStatus: a managed relay's Start, Update or
/// Stop, its parameters as [`crate::cloud::relay`] builds them, or an event subscription's
/// ([`crate::cloud::events`]). `operation` is the budget it draws on.
#[derive(Clone, Copy, Debug)]
pub struct RelayCall<'a> {
    pub endpoint: &'a Endpoint,
    pub signature: SignatureVersion,
    pub region_id: Option<&'a str>,
    pub operation: RelayOperation,
    /// The `Action`.
    pub action: &'static str,
    pub params: &'a [(&'static str, String)],
}

/// Who a key belongs to, as STS GetCallerIdentity says.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    /// The Alibaba Cloud account ID (UID) calls are counted against.
    pub account_id: String,
    #[serde(default)]
    pub arn: String,
}

/// An AssumeRoleWithOIDC request (RRSA).
#[derive(Clone, Debug)]
pub struct AssumeRoleWithOidc<'a> {
    pub role_arn: &'a str,
    pub oidc_provider_arn: &'a str,
    pub oidc_token: &'a str,
    pub session_name: &'a str,
    pub duration_seconds: u32,
}

/// Temporary credentials and when they expire.
#[derive(Clone, Debug)]
pub struct StsCredentials {
    pub credentials: Credentials,
    pub expires: jiff::Timestamp,
}

/// Calls Alibaba Cloud. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct CloudClient {
    http: reqwest::Client,
}

/// The `RequestId` of an answer, bounded as every id the operator keeps.
pub fn request_id(answer: &serde_json::Value) -> String {
    let id = answer.get("RequestId").and_then(serde_json::Value::as_str);
    truncate_chars(id.unwrap_or_default(), ID_MAX)
}

/// Installs ring as rustls' process-wide crypto provider (the same one kube uses), once.
fn ensure_crypto_provider() {
    // Err means a provider is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl CloudClient {
    pub fn new(options: &ClientOptions) -> Result<CloudClient, CloudError> {
        ensure_crypto_provider();
        let user_agent = match &options.instance {
            Some(instance) => format!("{USER_AGENT} ({instance})"),
            None => USER_AGENT.to_string(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(user_agent)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            // A signed request goes to the allowed endpoint and nowhere else: a redirect would
            // carry the signature (and in V1 the AccessKeyId and STS token) to another host.
            .redirect(reqwest::redirect::Policy::none())
            // Merged with the platform verifier's roots; with none given, the platform's alone.
            .tls_certs_merge(options.extra_roots.certificates.iter().cloned())
            .build()
            .map_err(|e| CloudError::Connect(transport_text(&e)))?;
        Ok(CloudClient { http })
    }

    /// Asks Alibaba Cloud for the status of one relay task.
    pub async fn get_mpu_task_status(
        &self,
        credentials: &Credentials,
        query: &StatusQuery<'_>,
    ) -> Result<MpuTaskStatus, CloudError> {
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
        let signed = match query.signature {
            SignatureVersion::V1 => {
                sign::sign_v1(Method::Get, &call, &credentials.signing(), &fresh)
            }
            SignatureVersion::V3 => sign::sign_v3(
                &query.endpoint.authority(),
                &call,
                &credentials.signing(),
                &fresh,
            ),
        };
        let (status, retry_after, body) = self.send(query.endpoint, signed).await?;
        decode_response(status, retry_after.as_deref(), &body)
    }

    /// Calls a Live 2016-11-01 operation (a relay's Start, Update or Stop, an event
    /// subscription's); the answer's JSON.
    ///
    /// Every parameter goes in the query string of a `POST /`, as both official SDKs send
    /// them: V3 exactly as the Tea SDK signs it, V1 with the core SDK's common parameters
    /// (`RegionId` when the account sets one) around the same compact blocks.
    pub async fn relay_action(
        &self,
        credentials: &Credentials,
        call: &RelayCall<'_>,
    ) -> Result<serde_json::Value, CloudError> {
        let mut params: Vec<(&str, &str)> =
            call.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if call.signature == SignatureVersion::V1
            && let Some(region) = call.region_id
        {
            params.push((sign::params::REGION_ID, region));
        }
        let operation = RpcOperation {
            action: call.action,
            version: relay::VERSION,
            params: &params,
        };
        let nonce = new_nonce();
        let fresh = Freshness {
            nonce: &nonce,
            timestamp: jiff::Timestamp::now(),
        };
        let signed = match call.signature {
            SignatureVersion::V1 => {
                sign::sign_v1_rpc(Method::Post, &operation, &credentials.signing(), &fresh)
            }
            SignatureVersion::V3 => sign::sign_v3_rpc(
                &call.endpoint.authority(),
                &operation,
                &credentials.signing(),
                &fresh,
            ),
        };
        let (status, retry_after, body) = self.send(call.endpoint, signed).await?;
        decode_json(status, retry_after.as_deref(), &body)
    }

    /// STS GetCallerIdentity: which cloud account `credentials` belong to.
    pub async fn get_caller_identity(
        &self,
        credentials: &Credentials,
        sts: &Endpoint,
    ) -> Result<CallerIdentity, CloudError> {
        let nonce = new_nonce();
        let fresh = Freshness {
            nonce: &nonce,
            timestamp: jiff::Timestamp::now(),
        };
        let operation = RpcOperation {
            action: "GetCallerIdentity",
            version: STS_VERSION,
            params: &[],
        };
        let signed = sign::sign_v1_rpc(Method::Get, &operation, &credentials.signing(), &fresh);
        let (status, retry_after, body) = self.send(sts, signed).await?;
        let value = decode_json(status, retry_after.as_deref(), &body)?;
        let identity: CallerIdentity =
            serde_json::from_value(value).map_err(|_| CloudError::Decode {
                http_status: status,
                problem: DecodeProblem::MissingField("AccountId"),
            })?;
        if identity.account_id.is_empty()
            || identity.account_id.len() > 32
            || !identity.account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CloudError::Decode {
                http_status: status,
                problem: DecodeProblem::MissingField("AccountId"),
            });
        }
        Ok(identity)
    }

    /// STS AssumeRoleWithOIDC (RRSA): an unsigned form POST exchanging the OIDC token.
    pub async fn assume_role_with_oidc(
        &self,
        sts: &Endpoint,
        request: &AssumeRoleWithOidc<'_>,
    ) -> Result<StsCredentials, CloudError> {
        let duration = request.duration_seconds.to_string();
        let form = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("RoleArn", request.role_arn),
            ("OIDCProviderArn", request.oidc_provider_arn),
            ("OIDCToken", request.oidc_token),
            ("RoleSessionName", request.session_name),
            ("DurationSeconds", duration.as_str()),
        ];
        let response = self
            .http
            .post(format!("{}/", sts.base_url()))
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let (status, retry_after, body) = read_bounded(response).await?;
        let value = decode_json(status, retry_after.as_deref(), &body)?;
        let missing = |field| CloudError::Decode {
            http_status: status,
            problem: DecodeProblem::MissingField(field),
        };
        let parsed: StsAnswer =
            serde_json::from_value(value).map_err(|_| missing("Credentials"))?;
        let expires: jiff::Timestamp = parsed
            .credentials
            .expiration
            .parse()
            .map_err(|_| missing("Credentials.Expiration"))?;
        Ok(StsCredentials {
            credentials: Credentials::access_key(
                parsed.credentials.access_key_id,
                parsed.credentials.access_key_secret,
                Some(parsed.credentials.security_token),
            ),
            expires,
        })
    }

    async fn send(
        &self,
        endpoint: &Endpoint,
        signed: SignedRequest,
    ) -> Result<(u16, Option<String>, Vec<u8>), CloudError> {
        let url = format!("{}{}?{}", endpoint.base_url(), signed.path, signed.query);
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
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        read_bounded(response).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswer {
    credentials: StsAnswerCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsAnswerCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

/// The status, `x-acs-retry-after` and at most [`MAX_BODY_BYTES`] of body; a redirect is an
/// error of its own (never followed, its body never read).
async fn read_bounded(
    mut response: reqwest::Response,
) -> Result<(u16, Option<String>, Vec<u8>), CloudError> {
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        return Err(CloudError::Redirected {
            http_status: status,
        });
    }
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
    Ok((status, retry_after, body))
}

/// 32 lowercase hex digits, as the official SDK makes them.
fn new_nonce() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let creds = Credentials::access_key("AK", "SECRET", Some("TOKEN".into()));
        let err = client
            .get_mpu_task_status(
                &creds,
                &StatusQuery {
                    endpoint: &endpoint,
                    api: CloudApi::Live,
                    signature: SignatureVersion::V1,
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
