//! Where AccessKeys come from, and the type that keeps their secret out of every log line.
//!
//! Sources, in the order a task uses them:
//! 1. the task's `spec.credentialsSecretRef`: a Kubernetes Secret in its namespace (read from the
//!    controller's watch cache, so a changed Secret is used at the next call: nothing to reload);
//! 2. the operator's own credentials, Alibaba's default chain: the environment
//!    (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
//!    `ALIBABA_CLOUD_SECURITY_TOKEN`), else RRSA on ACK (`ALIBABA_CLOUD_ROLE_ARN`,
//!    `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`, `ALIBABA_CLOUD_OIDC_TOKEN_FILE`) exchanged with STS
//!    `AssumeRoleWithOIDC` and cached until shortly before expiry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::api::CredentialsSecretRef;
use crate::cloud::client::transport_error;
use crate::cloud::response::{CloudError, decode_response};
use crate::cloud::sign;

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// Full STS endpoint (`https://sts.example.com` or `http://127.0.0.1:8080`), overriding the
/// region-derived one; for private endpoints and local testing.
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";

const STS_VERSION: &str = "2015-04-01";
const STS_DURATION_SECONDS: u32 = 3600;
/// Refresh STS credentials when this little of their lifetime remains (as Alibaba's SDKs do).
const STS_REFRESH_BEFORE: Duration = Duration::from_secs(180);

/// A secret value. Debug and Display print `<redacted>`; only [`SecretString::expose`] gives
/// the value, and only signing calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself. Call it only to sign a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An AccessKey ready to sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    /// STS token of temporary credentials.
    pub security_token: Option<SecretString>,
    /// The identity whose rate limit these credentials draw on: the AccessKeyId for a long-term
    /// key, the role ARN for RRSA (whose temporary AccessKeyIds change at every refresh).
    pub account: String,
}

impl Credentials {
    /// Long-term AccessKey credentials.
    pub fn access_key(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<Arc<str>>,
        security_token: Option<String>,
    ) -> Self {
        let access_key_id = access_key_id.into();
        Credentials {
            account: access_key_id.clone(),
            access_key_id,
            access_key_secret: SecretString::new(access_key_secret),
            security_token: security_token.map(SecretString::new),
        }
    }

    /// The borrowed form the signer takes.
    pub fn signing(&self) -> sign::Credentials<'_> {
        sign::Credentials {
            access_key_id: &self.access_key_id,
            access_key_secret: self.access_key_secret.expose(),
            security_token: self.security_token.as_ref().map(SecretString::expose),
        }
    }
}

/// Why no credentials could be had. Messages name Secrets, keys and variables, never values.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {name:?} not found in the task's namespace")]
    SecretNotFound { name: String },
    #[error("Secret {name:?} has no key {key:?}")]
    SecretKeyMissing { name: String, key: String },
    #[error("Secret {name:?} key {key:?} is empty or not UTF-8")]
    SecretKeyInvalid { name: String, key: String },
    #[error(
        "no credentialsSecretRef on the task and no operator credentials: set {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} or RRSA ({ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE})"
    )]
    NotConfigured,
    #[error("environment variable {0} is set but {1} is not")]
    IncompleteEnvironment(&'static str, &'static str),
    #[error("cannot read the OIDC token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("STS AssumeRoleWithOIDC failed: {0}")]
    Sts(#[source] CloudError),
    #[error("STS AssumeRoleWithOIDC answered an unexpected body: {0}")]
    StsDecode(String),
}

impl CredentialsError {
    /// True when retrying without a change (of the Secret, the spec or the deployment) cannot
    /// help; STS outages are worth retrying.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, CredentialsError::Sts(e) if e.class() != crate::cloud::response::ErrorClass::Terminal)
    }

    /// PascalCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::SecretNotFound { .. } => "SecretNotFound",
            CredentialsError::SecretKeyMissing { .. }
            | CredentialsError::SecretKeyInvalid { .. } => "SecretInvalid",
            CredentialsError::NotConfigured | CredentialsError::IncompleteEnvironment(..) => {
                "CredentialsNotConfigured"
            }
            CredentialsError::TokenFile { .. }
            | CredentialsError::Sts(_)
            | CredentialsError::StsDecode(_) => "RrsaError",
        }
    }
}

/// Reads the AccessKey a task's `credentialsSecretRef` points at.
pub fn from_secret(
    secret: Option<&Secret>,
    reference: &CredentialsSecretRef,
) -> Result<Credentials, CredentialsError> {
    let name = reference.name.clone();
    let secret = secret.ok_or_else(|| CredentialsError::SecretNotFound { name: name.clone() })?;
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let read = |key: &str| -> Result<Option<String>, CredentialsError> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => match std::str::from_utf8(&bytes.0) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                _ => Err(CredentialsError::SecretKeyInvalid {
                    name: name.clone(),
                    key: key.to_string(),
                }),
            },
        }
    };
    let required = |key: &str| {
        read(key)?.ok_or_else(|| CredentialsError::SecretKeyMissing {
            name: name.clone(),
            key: key.to_string(),
        })
    };
    let id = required(&reference.access_key_id_key)?;
    let secret_value = required(&reference.access_key_secret_key)?;
    let token = read(&reference.security_token_key)?;
    Ok(Credentials::access_key(id, secret_value, token))
}

/// The operator's own credentials (for tasks without a `credentialsSecretRef`).
#[derive(Clone)]
pub enum OperatorCredentials {
    /// None configured: tasks must name a Secret.
    None,
    /// A fixed AccessKey from the environment.
    Static(Credentials),
    /// RRSA: exchanged with STS and cached.
    Rrsa(Arc<RrsaProvider>),
}

impl fmt::Debug for OperatorCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperatorCredentials::None => f.write_str("None"),
            OperatorCredentials::Static(c) => f.debug_tuple("Static").field(c).finish(),
            OperatorCredentials::Rrsa(p) => f.debug_tuple("Rrsa").field(&p.role_arn).finish(),
        }
    }
}

impl OperatorCredentials {
    /// Alibaba's default chain over `lookup` (the process environment in production).
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, CredentialsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
            (Some(id), Some(secret)) => {
                return Ok(OperatorCredentials::Static(Credentials::access_key(
                    id,
                    secret,
                    get(ENV_SECURITY_TOKEN),
                )));
            }
            (Some(_), None) => {
                return Err(CredentialsError::IncompleteEnvironment(
                    ENV_ACCESS_KEY_ID,
                    ENV_ACCESS_KEY_SECRET,
                ));
            }
            (None, Some(_)) => {
                return Err(CredentialsError::IncompleteEnvironment(
                    ENV_ACCESS_KEY_SECRET,
                    ENV_ACCESS_KEY_ID,
                ));
            }
            (None, None) => {}
        }
        let (Some(role_arn), Some(provider_arn), Some(token_file)) = (
            get(ENV_ROLE_ARN),
            get(ENV_OIDC_PROVIDER_ARN),
            get(ENV_OIDC_TOKEN_FILE),
        ) else {
            return Ok(OperatorCredentials::None);
        };
        let endpoint = get(ENV_STS_ENDPOINT).unwrap_or_else(|| match get(ENV_STS_REGION) {
            Some(region) => format!("https://sts.{region}.aliyuncs.com"),
            None => "https://sts.aliyuncs.com".to_string(),
        });
        Ok(OperatorCredentials::Rrsa(Arc::new(RrsaProvider {
            role_arn,
            oidc_provider_arn: provider_arn,
            token_file,
            session_name: get(ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| "mpu-relay-operator".to_string()),
            endpoint,
            http,
            cached: Mutex::new(None),
        })))
    }

    /// The credentials to sign with now.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        match self {
            OperatorCredentials::None => Err(CredentialsError::NotConfigured),
            OperatorCredentials::Static(c) => Ok(c.clone()),
            OperatorCredentials::Rrsa(p) => p.credentials().await,
        }
    }
}

/// RRSA on ACK: the pod's projected service-account token exchanged for STS credentials.
pub struct RrsaProvider {
    role_arn: String,
    oidc_provider_arn: String,
    token_file: String,
    session_name: String,
    endpoint: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Credentials, jiff::Timestamp)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsResponse {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl RrsaProvider {
    /// Cached STS credentials, refreshed when fewer than three minutes remain. The lock is
    /// held across the refresh so that many tasks needing credentials at once cause one call.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let now = jiff::Timestamp::now();
        if let Some((creds, expires)) = cached.as_ref()
            && now + STS_REFRESH_BEFORE < *expires
        {
            return Ok(creds.clone());
        }
        let fresh = self.assume_role().await?;
        *cached = Some(fresh.clone());
        Ok(fresh.0)
    }

    async fn assume_role(&self) -> Result<(Credentials, jiff::Timestamp), CredentialsError> {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| CredentialsError::TokenFile {
                path: self.token_file.clone(),
                source,
            })?;
        let duration = STS_DURATION_SECONDS.to_string();
        let form = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("RoleArn", self.role_arn.as_str()),
            ("OIDCProviderArn", self.oidc_provider_arn.as_str()),
            ("OIDCToken", token.trim()),
            ("RoleSessionName", self.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        let response = self
            .http
            .post(format!("{}/", self.endpoint.trim_end_matches('/')))
            .form(&form)
            .send()
            .await
            .map_err(|e| CredentialsError::Sts(transport_error(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| CredentialsError::Sts(transport_error(&e)))?;
        if !(200..300).contains(&status) {
            // Errors have the same shape as every RPC API's; a body without a Code decodes to an
            // error too, so Ok here cannot happen for a non-2xx status.
            return Err(match decode_response(status, None, &body) {
                Err(e) => CredentialsError::Sts(e),
                Ok(_) => CredentialsError::StsDecode(format!("HTTP {status}")),
            });
        }
        let parsed: StsResponse = serde_json::from_slice(&body)
            .map_err(|e| CredentialsError::StsDecode(e.to_string()))?;
        let expires: jiff::Timestamp = parsed
            .credentials
            .expiration
            .parse()
            .map_err(|e: jiff::Error| CredentialsError::StsDecode(e.to_string()))?;
        let mut creds = Credentials::access_key(
            parsed.credentials.access_key_id,
            parsed.credentials.access_key_secret,
            Some(parsed.credentials.security_token),
        );
        creds.account = self.role_arn.clone();
        Ok((creds, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn secret_values_never_appear_in_debug_or_display() {
        let c = Credentials::access_key("LTAIexample", "s3cr3t-value", Some("tok3n".into()));
        let printed = format!("{c:?} {} {:?}", c.access_key_secret, c.signing());
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(!printed.contains("tok3n"), "{printed}");
        assert!(printed.contains("LTAIexample"));
    }

    #[test]
    fn secret_with_default_keys_gives_credentials_whose_account_is_the_key_id() {
        let s = secret(&[("accessKeyId", "AK1"), ("accessKeySecret", "SK1")]);
        let c = from_secret(Some(&s), &CredentialsSecretRef::named("ak")).unwrap();
        assert_eq!(c.access_key_id, "AK1");
        assert_eq!(c.access_key_secret.expose(), "SK1");
        assert_eq!(c.security_token, None);
        assert_eq!(c.account, "AK1");
    }

    #[test]
    fn secret_with_overridden_key_names_and_token_is_read() {
        let s = secret(&[("id", "AK1"), ("key", "SK1\n"), ("sts", "TOKEN")]);
        let mut r = CredentialsSecretRef::named("ak");
        r.access_key_id_key = "id".into();
        r.access_key_secret_key = "key".into();
        r.security_token_key = "sts".into();
        let c = from_secret(Some(&s), &r).unwrap();
        assert_eq!(
            c.access_key_secret.expose(),
            "SK1",
            "trailing newline trimmed"
        );
        assert_eq!(c.security_token.as_ref().map(|t| t.expose()), Some("TOKEN"));
    }

    #[test]
    fn missing_secret_or_key_is_a_permanent_error_naming_it() {
        let r = CredentialsSecretRef::named("ak");
        let e = from_secret(None, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret \"ak\" not found in the task's namespace"
        );
        assert!(e.is_permanent());
        assert_eq!(e.reason(), "SecretNotFound");

        let s = secret(&[("accessKeyId", "AK1")]);
        let e = from_secret(Some(&s), &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret \"ak\" has no key \"accessKeySecret\""
        );
        assert_eq!(e.reason(), "SecretInvalid");
    }

    #[test]
    fn environment_chain_prefers_static_keys_then_rrsa_then_nothing() {
        let http = reqwest::Client::new();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let stat = OperatorCredentials::from_env(
            env(&[
                (ENV_ACCESS_KEY_ID, "AK"),
                (ENV_ACCESS_KEY_SECRET, "SK"),
                (ENV_ROLE_ARN, "r"),
            ]),
            http.clone(),
        )
        .unwrap();
        assert!(matches!(stat, OperatorCredentials::Static(ref c) if c.access_key_id == "AK"));

        let rrsa = OperatorCredentials::from_env(
            env(&[
                (ENV_ROLE_ARN, "acs:ram::1:role/r"),
                (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
                (ENV_OIDC_TOKEN_FILE, "/var/run/token"),
                (ENV_STS_REGION, "cn-hangzhou"),
            ]),
            http.clone(),
        )
        .unwrap();
        let OperatorCredentials::Rrsa(p) = rrsa else {
            panic!("expected RRSA")
        };
        assert_eq!(p.endpoint, "https://sts.cn-hangzhou.aliyuncs.com");
        assert_eq!(p.session_name, "mpu-relay-operator");

        let none = OperatorCredentials::from_env(env(&[]), http.clone()).unwrap();
        assert!(matches!(none, OperatorCredentials::None));

        let half = OperatorCredentials::from_env(env(&[(ENV_ACCESS_KEY_ID, "AK")]), http);
        assert!(matches!(
            half,
            Err(CredentialsError::IncompleteEnvironment(..))
        ));
    }
}
