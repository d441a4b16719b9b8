//! Where AccessKeys ([`Credentials`], in [`crate::cloud::access_key`]) come from.
//!
//! Sources (an account names one):
//! - a Kubernetes Secret with the fixed keys `accessKeyId`, `accessKeySecret` and optionally
//!   `securityToken` (no other key is ever read, whatever the account says);
//! - RRSA on ACK: the pod's projected service-account token (`ALIBABA_CLOUD_OIDC_TOKEN_FILE`)
//!   exchanged with STS `AssumeRoleWithOIDC` for a role's temporary credentials, cached until
//!   shortly before expiry;
//! - the operator's own: Alibaba's default chain over its environment
//!   (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
//!   `ALIBABA_CLOUD_SECURITY_TOKEN`, else RRSA from `ALIBABA_CLOUD_ROLE_ARN`,
//!   `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`, `ALIBABA_CLOUD_OIDC_TOKEN_FILE`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use crate::api::secret_keys;
use crate::cloud::client::{AssumeRoleWithOidc, CloudClient, StsCredentials};
use crate::cloud::endpoint::Endpoint;
use crate::cloud::response::{CloudError, ErrorClass};

use crate::cloud::access_key::Credentials;

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// Full STS endpoint (`https://sts.example.com` or `http://127.0.0.1:8080`), overriding the
/// region-derived one; for private endpoints and local testing. It must be allowed like any
/// other endpoint.
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";

const STS_DURATION_SECONDS: u32 = 3600;
/// Refresh STS credentials when this little of their lifetime remains (as Alibaba's SDKs do),
/// or a quarter of their lifetime when that is shorter.
const STS_REFRESH_BEFORE: Duration = Duration::from_secs(180);
/// Credentials this close to expiry (or a tenth of their lifetime, when shorter) are not used
/// even when a refresh failed.
const STS_EXPIRY_SLACK: Duration = Duration::from_secs(30);
/// After a failed STS exchange, callers get the same error for this long instead of each
/// trying STS again (an STS outage must not turn into a storm of exchanges).
const STS_FAILURE_CACHE: Duration = Duration::from_secs(10);

/// Why no credentials could be had. Messages name Secrets, keys and variables, never values.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} cannot be read by the operator: {reason}")]
    SecretUnreadable {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "Secret {name:?} {problem}; it needs the keys accessKeyId and accessKeySecret (and optionally securityToken)"
    )]
    SecretInvalid { name: String, problem: String },
    #[error(
        "the operator has no credentials of its own: set {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} or RRSA ({ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE})"
    )]
    NotConfigured,
    #[error(
        "RRSA needs the operator's projected service-account token: {ENV_OIDC_TOKEN_FILE} is not set"
    )]
    NoOidcToken,
    #[error("environment variable {0} is set but {1} is not")]
    IncompleteEnvironment(&'static str, &'static str),
    #[error("cannot read the OIDC token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("STS AssumeRoleWithOIDC failed: {0}")]
    Sts(#[source] CloudError),
}

impl CredentialsError {
    /// True when retrying without a change (of the Secret, the account or the deployment)
    /// cannot help; STS outages and API server hiccups are worth retrying.
    pub fn is_permanent(&self) -> bool {
        match self {
            CredentialsError::Sts(e) => e.class() == ErrorClass::Terminal,
            CredentialsError::SecretUnreadable { .. } | CredentialsError::TokenFile { .. } => false,
            _ => true,
        }
    }

    /// PascalCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::SecretNotFound { .. } => "SecretNotFound",
            CredentialsError::SecretUnreadable { .. } => "SecretUnreadable",
            CredentialsError::SecretInvalid { .. } => "SecretInvalid",
            CredentialsError::NotConfigured
            | CredentialsError::NoOidcToken
            | CredentialsError::IncompleteEnvironment(..) => "CredentialsNotConfigured",
            CredentialsError::TokenFile { .. } | CredentialsError::Sts(_) => "RrsaError",
        }
    }
}

/// Reads an AccessKey from a Secret's fixed keys. `name` is the Secret's name, for messages.
pub fn from_secret(secret: &Secret, name: &str) -> Result<Credentials, CredentialsError> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let invalid = |problem: String| CredentialsError::SecretInvalid {
        name: name.to_string(),
        problem,
    };
    let read = |key: &str| -> Result<Option<String>, CredentialsError> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => match std::str::from_utf8(&bytes.0) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                _ => Err(invalid(format!("key {key:?} is empty or not UTF-8"))),
            },
        }
    };
    let required = |key: &str| read(key)?.ok_or_else(|| invalid(format!("has no key {key:?}")));
    let id = required(secret_keys::ACCESS_KEY_ID)?;
    let secret_value = required(secret_keys::ACCESS_KEY_SECRET)?;
    let token = read(secret_keys::SECURITY_TOKEN)?;
    Ok(Credentials::access_key(id, secret_value, token))
}

/// Where STS is, from the environment: `ALIBABA_CLOUD_STS_ENDPOINT`, else the region's
/// (`ALIBABA_CLOUD_STS_REGION`), else `sts.aliyuncs.com`.
pub fn sts_endpoint_from_env(lookup: impl Fn(&str) -> Option<String>) -> String {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    get(ENV_STS_ENDPOINT).unwrap_or_else(|| match get(ENV_STS_REGION) {
        Some(region) => format!("https://sts.{region}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".to_string(),
    })
}

/// The operator's own credentials, for `ClusterMpuRelayAccount`s with `credentials.operator`.
#[derive(Clone)]
pub enum OperatorCredentials {
    /// None configured.
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

/// Settings every RRSA exchange shares: the operator's token file, its session name and STS.
#[derive(Clone)]
pub struct RrsaSettings {
    pub token_file: Option<String>,
    pub session_name: String,
    pub sts: Endpoint,
    pub cloud: CloudClient,
}

impl RrsaSettings {
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        sts: Endpoint,
        cloud: CloudClient,
    ) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        RrsaSettings {
            token_file: get(ENV_OIDC_TOKEN_FILE),
            session_name: get(ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| "mpu-relay-operator".to_string()),
            sts,
            cloud,
        }
    }

    /// A provider for one role.
    pub fn provider(&self, role_arn: &str, oidc_provider_arn: &str) -> RrsaProvider {
        RrsaProvider {
            role_arn: role_arn.to_string(),
            oidc_provider_arn: oidc_provider_arn.to_string(),
            settings: self.clone(),
            state: Mutex::new(RrsaState::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }
}

impl OperatorCredentials {
    /// Alibaba's default chain over `lookup` (the process environment in production).
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        rrsa: &RrsaSettings,
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
        let (Some(role_arn), Some(provider_arn), Some(_)) = (
            get(ENV_ROLE_ARN),
            get(ENV_OIDC_PROVIDER_ARN),
            rrsa.token_file.as_ref(),
        ) else {
            return Ok(OperatorCredentials::None);
        };
        Ok(OperatorCredentials::Rrsa(Arc::new(
            rrsa.provider(&role_arn, &provider_arn),
        )))
    }

    /// The credentials to sign with now.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        match self {
            OperatorCredentials::None => Err(CredentialsError::NotConfigured),
            OperatorCredentials::Static(c) => Ok(c.clone()),
            OperatorCredentials::Rrsa(p) => p.credentials().await,
        }
    }

    /// When the credentials [`get`](Self::get) gave are due for a refresh; `None` for credentials
    /// that do not expire (or none).
    pub fn renew_at(&self) -> Option<jiff::Timestamp> {
        match self {
            OperatorCredentials::Rrsa(p) => p.renew_at(),
            _ => None,
        }
    }

    /// The role's cloud account when the credentials come from RRSA (its ARN names it).
    pub fn role_account_id(&self) -> Option<&str> {
        match self {
            OperatorCredentials::Rrsa(p) => role_account_id(&p.role_arn),
            _ => None,
        }
    }
}

/// The UID in a RAM ARN, `acs:ram::<uid>:role/<name>`.
pub fn role_account_id(arn: &str) -> Option<&str> {
    let uid = arn.strip_prefix("acs:ram::")?.split(':').next()?;
    (!uid.is_empty() && uid.len() <= 32 && uid.bytes().all(|b| b.is_ascii_digit())).then_some(uid)
}

/// RRSA on ACK for one role: the pod's projected service-account token exchanged for STS
/// credentials.
pub struct RrsaProvider {
    role_arn: String,
    oidc_provider_arn: String,
    settings: RrsaSettings,
    state: Mutex<RrsaState>,
    /// Held only by the one caller refreshing, so concurrent callers cause one exchange; a
    /// caller that finds valid credentials never waits for it.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct RrsaState {
    current: Option<HeldSession>,
    failed: Option<(Instant, CredentialsError)>,
}

/// STS credentials in hand and the two moments that matter about them, fixed when they arrive.
struct HeldSession {
    credentials: Credentials,
    /// From here on, the next caller exchanges the token for fresh credentials.
    refresh_at: jiff::Timestamp,
    /// From here on, these credentials are never used, even when a refresh failed.
    unusable_at: jiff::Timestamp,
}

impl HeldSession {
    /// The margins are fixed ones for ordinary sessions and shrink with the lifetime for short
    /// ones: a 60 s session refreshed "three minutes before it expires" would be exchanged again
    /// on every call.
    fn new(sts: StsCredentials, received: jiff::Timestamp) -> Self {
        let lifetime = sts
            .expires
            .duration_since(received)
            .unsigned_abs()
            .min(Duration::from_secs(u64::from(u32::MAX)));
        let before = |fixed: Duration, divisor: u32| {
            let margin = fixed.min(lifetime / divisor);
            sts.expires
                .checked_sub(margin)
                .unwrap_or(jiff::Timestamp::MIN)
        };
        Self {
            refresh_at: before(STS_REFRESH_BEFORE, 4),
            unusable_at: before(STS_EXPIRY_SLACK, 10),
            credentials: sts.credentials,
        }
    }

    fn fresh(&self, now: jiff::Timestamp) -> bool {
        now < self.refresh_at
    }

    fn usable(&self, now: jiff::Timestamp) -> bool {
        now < self.unusable_at
    }
}

impl RrsaProvider {
    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// Cached STS credentials, refreshed when fewer than three minutes (or a quarter of their
    /// lifetime) remain. When a refresh
    /// fails, the credentials in hand are used until they actually expire, and the failure is
    /// remembered briefly so that an STS outage costs one exchange per few seconds, not one per
    /// caller.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        if let Some(ready) = self.usable() {
            return ready;
        }
        let _refreshing = self.refresh.lock().await;
        // Someone else may have refreshed (or failed) while this caller waited.
        if let Some(ready) = self.usable() {
            return ready;
        }
        match self.assume_role().await {
            Ok(fresh) => {
                let held = HeldSession::new(fresh, jiff::Timestamp::now());
                let credentials = held.credentials.clone();
                let mut state = self.lock();
                state.current = Some(held);
                state.failed = None;
                Ok(credentials)
            }
            Err(e) => {
                let mut state = self.lock();
                state.failed = Some((Instant::now(), e.clone()));
                let still_valid = state
                    .current
                    .as_ref()
                    .filter(|c| c.usable(jiff::Timestamp::now()));
                match still_valid {
                    Some(c) => Ok(c.credentials.clone()),
                    None => Err(e),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RrsaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the credentials in hand are due for a refresh (`None`: none in hand). A caller that
    /// keeps the credentials [`credentials`](Self::credentials) gave must ask again from then on,
    /// or it would sign with a session past its refresh, and at last an expired one.
    pub fn renew_at(&self) -> Option<jiff::Timestamp> {
        self.lock().current.as_ref().map(|c| c.refresh_at)
    }

    /// What to answer without an exchange: fresh credentials, or a recent failure (with the
    /// credentials in hand while they last). `None`: time to exchange.
    fn usable(&self) -> Option<Result<Credentials, CredentialsError>> {
        let state = self.lock();
        let now = jiff::Timestamp::now();
        if let Some(c) = &state.current
            && c.fresh(now)
        {
            return Some(Ok(c.credentials.clone()));
        }
        let (at, error) = state.failed.as_ref()?;
        if at.elapsed() >= STS_FAILURE_CACHE {
            return None;
        }
        Some(match &state.current {
            Some(c) if c.usable(now) => Ok(c.credentials.clone()),
            _ => Err(error.clone()),
        })
    }

    async fn assume_role(&self) -> Result<StsCredentials, CredentialsError> {
        let path = self
            .settings
            .token_file
            .as_ref()
            .ok_or(CredentialsError::NoOidcToken)?;
        let token =
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| CredentialsError::TokenFile {
                    path: path.clone(),
                    reason: e.kind().to_string(),
                })?;
        self.settings
            .cloud
            .assume_role_with_oidc(
                &self.settings.sts,
                &AssumeRoleWithOidc {
                    role_arn: &self.role_arn,
                    oidc_provider_arn: &self.oidc_provider_arn,
                    oidc_token: token.trim(),
                    session_name: &self.settings.session_name,
                    duration_seconds: STS_DURATION_SECONDS,
                },
            )
            .await
            .map_err(CredentialsError::Sts)
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

    fn rrsa_settings(token_file: Option<&str>) -> RrsaSettings {
        RrsaSettings {
            token_file: token_file.map(str::to_string),
            session_name: "mpu-relay-operator".into(),
            sts: Endpoint::parse("sts.aliyuncs.com").unwrap(),
            cloud: CloudClient::new(&Default::default()).unwrap(),
        }
    }

    #[test]
    fn secret_with_the_fixed_keys_gives_credentials() {
        let s = secret(&[
            ("accessKeyId", "AK1"),
            ("accessKeySecret", "SK1\n"),
            ("securityToken", "TOKEN"),
        ]);
        let c = from_secret(&s, "ak").unwrap();
        assert_eq!(c.access_key_id, "AK1");
        assert_eq!(
            c.access_key_secret.expose(),
            "SK1",
            "trailing newline trimmed"
        );
        assert_eq!(c.security_token.as_ref().map(|t| t.expose()), Some("TOKEN"));
    }

    #[test]
    fn secret_with_other_key_names_is_invalid_and_never_read() {
        let s = secret(&[("password", "hunter2"), ("id", "AK1"), ("key", "SK1")]);
        let e = from_secret(&s, "ak").unwrap_err();
        assert_eq!(e.reason(), "SecretInvalid");
        assert!(e.is_permanent());
        let text = format!("{e} {e:?}");
        assert!(text.contains("accessKeyId"), "{text}");
        assert!(!text.contains("hunter2") && !text.contains("AK1"), "{text}");
    }

    #[test]
    fn missing_secret_key_names_the_key() {
        let s = secret(&[("accessKeyId", "AK1")]);
        let e = from_secret(&s, "ak").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Secret \"ak\" has no key \"accessKeySecret\"")
        );
    }

    #[test]
    fn environment_chain_prefers_static_keys_then_rrsa_then_nothing() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let settings = rrsa_settings(Some("/var/run/token"));
        let stat = OperatorCredentials::from_env(
            env(&[
                (ENV_ACCESS_KEY_ID, "AK"),
                (ENV_ACCESS_KEY_SECRET, "SK"),
                (ENV_ROLE_ARN, "r"),
            ]),
            &settings,
        )
        .unwrap();
        assert!(matches!(stat, OperatorCredentials::Static(ref c) if c.access_key_id == "AK"));

        let rrsa = OperatorCredentials::from_env(
            env(&[
                (ENV_ROLE_ARN, "acs:ram::1234:role/r"),
                (ENV_OIDC_PROVIDER_ARN, "acs:ram::1234:oidc-provider/p"),
            ]),
            &settings,
        )
        .unwrap();
        assert_eq!(rrsa.role_account_id(), Some("1234"));

        let none = OperatorCredentials::from_env(env(&[]), &settings).unwrap();
        assert!(matches!(none, OperatorCredentials::None));

        let half = OperatorCredentials::from_env(env(&[(ENV_ACCESS_KEY_ID, "AK")]), &settings);
        assert!(matches!(
            half,
            Err(CredentialsError::IncompleteEnvironment(..))
        ));
    }

    #[test]
    fn sts_endpoint_follows_the_environment() {
        let none = |_: &str| None;
        assert_eq!(sts_endpoint_from_env(none), "https://sts.aliyuncs.com");
        let region = |k: &str| (k == ENV_STS_REGION).then(|| "cn-hangzhou".to_string());
        assert_eq!(
            sts_endpoint_from_env(region),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn role_arns_name_their_account() {
        assert_eq!(
            role_account_id("acs:ram::1234567890:role/x"),
            Some("1234567890")
        );
        assert_eq!(role_account_id("acs:ram:::role/x"), None);
        assert_eq!(role_account_id("arn:aws:iam::1:role/x"), None);
    }

    #[tokio::test]
    async fn rrsa_without_a_token_file_is_a_configuration_error() {
        let provider =
            rrsa_settings(None).provider("acs:ram::1:role/r", "acs:ram::1:oidc-provider/p");
        let e = provider.credentials().await.unwrap_err();
        assert_eq!(e.reason(), "CredentialsNotConfigured");
    }

    fn session(received: jiff::Timestamp, lifetime_seconds: i64) -> HeldSession {
        let sts = StsCredentials {
            credentials: Credentials::access_key("STS.id", "secret", Some("token".to_owned())),
            expires: received + jiff::SignedDuration::from_secs(lifetime_seconds),
        };
        HeldSession::new(sts, received)
    }

    fn at(base: jiff::Timestamp, seconds: i64) -> jiff::Timestamp {
        base + jiff::SignedDuration::from_secs(seconds)
    }

    #[test]
    fn an_hour_long_session_is_refreshed_three_minutes_before_it_expires() {
        let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let held = session(t0, 3600);
        assert!(held.fresh(at(t0, 3600 - 181)));
        assert!(!held.fresh(at(t0, 3600 - 180)));
        assert!(held.usable(at(t0, 3600 - 31)));
        assert!(!held.usable(at(t0, 3600 - 30)));
    }

    #[test]
    fn a_short_session_is_refreshed_in_its_last_quarter_not_on_every_call() {
        let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let held = session(t0, 20);
        assert!(
            held.fresh(at(t0, 14)),
            "fresh for three quarters of its life"
        );
        assert!(!held.fresh(at(t0, 15)));
        assert!(held.usable(at(t0, 17)), "still used while a refresh fails");
        assert!(!held.usable(at(t0, 18)), "never in its last tenth");
    }

    #[test]
    fn an_already_expired_session_is_neither_fresh_nor_usable() {
        let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let held = session(t0, -5);
        assert!(!held.fresh(t0));
        assert!(!held.usable(t0));
    }
}
