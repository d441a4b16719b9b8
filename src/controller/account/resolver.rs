//! What an account object resolves to for calls ([`Resolved`]): an endpoint that passed the
//! allow-list, credentials from the source it names (a Secret, RRSA, the operator's own), and
//! the cloud account (UID) they belong to, from STS GetCallerIdentity or a role ARN, whose
//! budget it joins. Cached per account object, identities per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use sha2::{Digest, Sha256};

use super::{AccountKey, AccountObject};
use crate::api::{AccountSpec, Connection, RrsaRole};
use crate::budget::{Budget, Budgets, CloudAccount, Limit};
use crate::cloud::access_key::Credentials;
use crate::cloud::client::CloudClient;
use crate::cloud::credentials::{
    self, CredentialsError, OperatorCredentials, RrsaProvider, RrsaSettings,
};
use crate::cloud::endpoint::{AllowedEndpoints, Endpoint};
use crate::cloud::{CloudError, ErrorClass};
use crate::controller::TaskKey;
use crate::controller::account_status::CallFailure;
use crate::controller::status::{Problem, reasons};

/// Where an account's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Secret {
        namespace: String,
        name: String,
    },
    Rrsa(RrsaRole),
    Operator,
    /// A cluster account whose `credentials` name no source (the CRD refuses it; an object
    /// stored before that rule might).
    Missing,
}

impl AccountObject {
    fn declared_uid(&self) -> Option<&str> {
        match self {
            AccountObject::Namespaced(a) => a.spec.account_id(),
            AccountObject::Cluster(a) => a.spec.account_id(),
        }
    }

    /// A cluster account is the admin's: its declared UID is trusted. A tenant's is checked.
    fn trusts_declared_uid(&self) -> bool {
        matches!(self, AccountObject::Cluster(_))
    }

    fn source(&self, operator_namespace: &str) -> CredentialSource {
        match self {
            AccountObject::Namespaced(a) => CredentialSource::Secret {
                namespace: a.namespace().unwrap_or_default(),
                name: a.spec.credentials.secret_ref.name.clone(),
            },
            AccountObject::Cluster(a) => {
                let c = &a.spec.credentials;
                if let Some(secret) = &c.secret_ref {
                    CredentialSource::Secret {
                        namespace: secret
                            .namespace
                            .clone()
                            .unwrap_or_else(|| operator_namespace.to_string()),
                        name: secret.name.clone(),
                    }
                } else if let Some(role) = &c.rrsa {
                    CredentialSource::Rrsa(role.clone())
                } else if c.operator.is_some() {
                    CredentialSource::Operator
                } else {
                    CredentialSource::Missing
                }
            }
        }
    }
}

/// An account resolved for calls.
#[derive(Debug)]
pub struct Resolved {
    /// The Alibaba Cloud account (UID and host) the credentials call: what budgets and relay
    /// claims are keyed by.
    pub cloud_account: CloudAccount,
    pub endpoint: Endpoint,
    pub connection: Connection,
    pub credentials: Credentials,
    pub budget: Arc<Budget<TaskKey>>,
}

/// What resolving an account gave, and when.
struct Entry {
    generation: Option<i64>,
    at: Instant,
    /// When temporary credentials in the result are due for a refresh: the entry is stale from
    /// then on, whatever its age, so that no call is signed with a session its provider would
    /// already have replaced (STS sessions may be far shorter than the re-read interval).
    renew_at: Option<jiff::Timestamp>,
    result: Result<Arc<Resolved>, Problem>,
}

impl Entry {
    fn fresh(&self, generation: Option<i64>) -> bool {
        if self.renew_at.is_some_and(|at| jiff::Timestamp::now() >= at) {
            return false;
        }
        let ttl = match &self.result {
            // Credentials are re-read this often: a rotated Secret is used within this long,
            // and at once when a call is refused for authentication. The operator may only
            // `get` Secrets (never list or watch them: it must not see other tenants' Secrets),
            // so it cannot be told of a change; one read per account per 10 s is the price.
            Ok(_) => CREDENTIALS_REREAD,
            // Secrets are read, not watched: a missing or broken one is looked at again soon.
            Err(p) if p.permanent => Duration::from_secs(10),
            Err(_) => Duration::from_secs(5),
        };
        self.generation == generation && self.at.elapsed() < ttl
    }
}

#[derive(Default)]
struct Slot {
    stale: AtomicBool,
    /// Held while resolving, so that the tasks of one account cause one Secret read and one
    /// STS call, and other accounts never wait for it.
    entry: tokio::sync::Mutex<Option<Entry>>,
}

/// Settings of the account resolver.
pub struct ResolverSettings {
    pub allowed: AllowedEndpoints,
    /// STS for GetCallerIdentity and RRSA (already checked against `allowed`).
    pub sts: Endpoint,
    /// Where a cluster account's Secret is when it names no namespace.
    pub operator_namespace: String,
    pub operator_credentials: OperatorCredentials,
    pub rrsa: RrsaSettings,
}

/// SHA-256 of an AccessKey's id and secret.
type KeyFingerprint = [u8; 32];
/// When STS was asked, and the UID it gave (or why not).
type LearnedIdentity = (Instant, Result<String, Problem>);

/// Resolves accounts and caches what it learns: credentials briefly, identities (UIDs) for
/// an hour.
pub struct Resolver {
    client: kube::Client,
    cloud: CloudClient,
    settings: ResolverSettings,
    budgets: Arc<Budgets<TaskKey>>,
    slots: Mutex<HashMap<AccountKey, Arc<Slot>>>,
    /// UIDs by a hash of the whole key (id and secret): a tenant who knows another tenant's
    /// AccessKeyId but not its secret must not inherit its identity (and budget).
    identities: Mutex<HashMap<KeyFingerprint, LearnedIdentity>>,
    rrsa: Mutex<HashMap<RrsaRole, Arc<RrsaProvider>>>,
    /// The last failure of calls through each account that is the account's own (refused key,
    /// untrusted certificate), until a call succeeds.
    call_failures: Mutex<HashMap<AccountKey, CallFailure>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long resolved credentials are used before their source is read again.
pub const CREDENTIALS_REREAD: Duration = Duration::from_secs(10);
const IDENTITY_TTL: Duration = Duration::from_secs(3600);
const IDENTITY_FAILURE_TTL: Duration = Duration::from_secs(10);

impl Resolver {
    pub fn new(
        client: kube::Client,
        cloud: CloudClient,
        settings: ResolverSettings,
        budgets: Arc<Budgets<TaskKey>>,
    ) -> Self {
        Resolver {
            client,
            cloud,
            settings,
            budgets,
            slots: Mutex::default(),
            identities: Mutex::default(),
            rrsa: Mutex::default(),
            call_failures: Mutex::default(),
        }
    }

    /// The account resolved for calls, from the cache while it is fresh.
    pub async fn resolve(&self, account: &AccountObject) -> Result<Arc<Resolved>, Problem> {
        let key = account.key();
        let slot = lock(&self.slots).entry(key.clone()).or_default().clone();
        let mut entry = slot.entry.lock().await;
        let stale = slot.stale.swap(false, Ordering::Relaxed);
        if let Some(e) = entry.as_ref()
            && !stale
            && e.fresh(account.generation())
        {
            return e.result.clone();
        }
        let result = self.resolve_now(account, &key).await.map(Arc::new);
        let renew_at = match &result {
            Ok(_) => self.renew_at(&account.source(&self.settings.operator_namespace)),
            Err(_) => None,
        };
        *entry = Some(Entry {
            generation: account.generation(),
            at: Instant::now(),
            renew_at,
            result: result.clone(),
        });
        result
    }

    /// Forces the next resolution to read the credentials again.
    fn invalidate(&self, key: &AccountKey) {
        if let Some(slot) = lock(&self.slots).get(key) {
            slot.stale.store(true, Ordering::Relaxed);
        }
    }

    /// The account object is gone: forget it and leave its budget.
    pub fn forget(&self, key: &AccountKey) {
        lock(&self.slots).remove(key);
        lock(&self.call_failures).remove(key);
        self.budgets.leave(&key.to_string());
    }

    /// How a call through `key` ended: a success clears the account's failure, a failure that
    /// is the account's ([`CallFailure::of`]) replaces it, any other leaves it as it was.
    pub fn record_call(&self, key: &AccountKey, result: Result<(), &CloudError>) {
        let mut failures = lock(&self.call_failures);
        match result {
            Ok(()) => {
                failures.remove(key);
            }
            Err(e) => {
                let Some(failure) = CallFailure::of(e) else {
                    return;
                };
                let refused = failure.reason == reasons::AUTH_FAILED;
                failures.insert(key.clone(), failure);
                drop(failures);
                if refused {
                    // Perhaps the Secret was rotated: read it again next time.
                    self.invalidate(key);
                }
            }
        }
    }

    /// The last failure of calls through `key` that is the account's, if none succeeded since.
    pub fn call_failure(&self, key: &AccountKey) -> Option<CallFailure> {
        lock(&self.call_failures).get(key).cloned()
    }

    async fn resolve_now(
        &self,
        account: &AccountObject,
        key: &AccountKey,
    ) -> Result<Resolved, Problem> {
        let connection = account.connection();
        let endpoint = self
            .settings
            .allowed
            .check(connection.endpoint())
            .map_err(|e| Problem {
                reason: reasons::ENDPOINT_NOT_ALLOWED,
                message: e.to_string(),
                permanent: true,
            })?;
        let source = account.source(&self.settings.operator_namespace);
        let credentials = self.credentials(&source).await.map_err(|e| Problem {
            reason: e.reason(),
            message: e.to_string(),
            permanent: e.is_permanent(),
        })?;
        let uid = self.uid(account, &source, &credentials).await?;
        let cloud_account = CloudAccount {
            uid,
            host: endpoint.authority(),
        };
        let limit = Limit {
            qps: f64::from(connection.status_qps().max(1)),
            margin: connection.margin(),
        };
        let budget = self
            .budgets
            .join(&cloud_account, &key.to_string(), limit, Instant::now());
        Ok(Resolved {
            cloud_account,
            endpoint,
            connection: connection.clone(),
            credentials,
            budget,
        })
    }

    async fn credentials(
        &self,
        source: &CredentialSource,
    ) -> Result<Credentials, CredentialsError> {
        match source {
            CredentialSource::Secret { namespace, name } => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let secret =
                    api.get_opt(name)
                        .await
                        .map_err(|e| CredentialsError::SecretUnreadable {
                            namespace: namespace.clone(),
                            name: name.clone(),
                            reason: match &e {
                                kube::Error::Api(s) => format!("{} ({})", s.reason, s.code),
                                _ => "the API server could not be reached".to_string(),
                            },
                        })?;
                let secret = secret.ok_or_else(|| CredentialsError::SecretNotFound {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })?;
                credentials::from_secret(&secret, name)
            }
            CredentialSource::Rrsa(role) => {
                let provider = lock(&self.rrsa)
                    .entry(role.clone())
                    .or_insert_with(|| {
                        Arc::new(
                            self.settings
                                .rrsa
                                .provider(&role.role_arn, &role.oidc_provider_arn),
                        )
                    })
                    .clone();
                provider.credentials().await
            }
            CredentialSource::Operator => self.settings.operator_credentials.get().await,
            CredentialSource::Missing => Err(CredentialsError::NotConfigured),
        }
    }

    /// When the credentials `source` gave last are due for a refresh (temporary ones only).
    fn renew_at(&self, source: &CredentialSource) -> Option<jiff::Timestamp> {
        match source {
            CredentialSource::Rrsa(role) => lock(&self.rrsa).get(role)?.renew_at(),
            CredentialSource::Operator => self.settings.operator_credentials.renew_at(),
            CredentialSource::Secret { .. } | CredentialSource::Missing => None,
        }
    }

    /// The cloud account the credentials belong to.
    async fn uid(
        &self,
        account: &AccountObject,
        source: &CredentialSource,
        credentials: &Credentials,
    ) -> Result<String, Problem> {
        if account.trusts_declared_uid()
            && let Some(uid) = account.declared_uid()
        {
            return Ok(uid.to_string());
        }
        let from_role = match source {
            CredentialSource::Rrsa(role) => credentials::role_account_id(&role.role_arn),
            CredentialSource::Operator => self.settings.operator_credentials.role_account_id(),
            _ => None,
        };
        let learned = match from_role {
            Some(uid) => uid.to_string(),
            None => self.caller_identity(credentials).await?,
        };
        match account.declared_uid() {
            Some(declared) if declared != learned => Err(Problem {
                reason: reasons::ACCOUNT_ID_MISMATCH,
                message: format!(
                    "spec.accountId is {declared}, but STS GetCallerIdentity says the credentials belong to account {learned}"
                ),
                permanent: true,
            }),
            _ => Ok(learned),
        }
    }

    async fn caller_identity(&self, credentials: &Credentials) -> Result<String, Problem> {
        let mut hasher = Sha256::new();
        hasher.update(credentials.access_key_id.as_bytes());
        hasher.update([0]);
        hasher.update(credentials.access_key_secret.expose().as_bytes());
        let fingerprint: [u8; 32] = hasher.finalize().into();
        if let Some((at, result)) = lock(&self.identities).get(&fingerprint) {
            let ttl = if result.is_ok() {
                IDENTITY_TTL
            } else {
                IDENTITY_FAILURE_TTL
            };
            if at.elapsed() < ttl {
                return result.clone();
            }
        }
        let result = self
            .cloud
            .get_caller_identity(credentials, &self.settings.sts)
            .await
            .map(|identity| identity.account_id)
            .map_err(|e| {
                let permanent = e.class() == ErrorClass::Terminal;
                Problem {
                    reason: if permanent {
                        e.reason()
                    } else {
                        reasons::IDENTITY_UNKNOWN
                    },
                    message: format!(
                        "STS GetCallerIdentity (to learn which cloud account the key belongs to) failed: {e}"
                    ),
                    permanent,
                }
            });
        let mut identities = lock(&self.identities);
        // Bounded: keys no account uses any more age out.
        identities.retain(|_, (at, _)| at.elapsed() < IDENTITY_TTL);
        identities.insert(fingerprint, (Instant::now(), result.clone()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Instant, renew_at: Option<jiff::Timestamp>) -> Entry {
        Entry {
            generation: Some(1),
            at,
            renew_at,
            result: Err(Problem {
                reason: "Any",
                message: String::new(),
                permanent: false,
            }),
        }
    }

    #[test]
    fn an_entry_is_stale_once_its_temporary_credentials_are_due_for_a_refresh() {
        let now = jiff::Timestamp::now();
        let soon = now + jiff::SignedDuration::from_secs(60);
        let past = now - jiff::SignedDuration::from_secs(1);
        assert!(entry(Instant::now(), None).fresh(Some(1)));
        assert!(entry(Instant::now(), Some(soon)).fresh(Some(1)));
        assert!(
            !entry(Instant::now(), Some(past)).fresh(Some(1)),
            "a session past its refresh is asked for again, however young the entry"
        );
        assert!(
            !entry(Instant::now(), None).fresh(Some(2)),
            "a new generation"
        );
    }
}
