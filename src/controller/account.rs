//! Accounts: which account a task may use, and what an account resolves to (an allowed
//! endpoint, credentials, the cloud account they belong to and its budget).
//!
//! This is the trust boundary between what tenants write and what the operator does with its
//! privileges:
//! - a task reaches only an `MpuRelayAccount` of its own namespace (the reference has no
//!   namespace), or a `ClusterMpuRelayAccount` whose `conditions` admit its namespace;
//! - an account's endpoint must pass the operator's allow-list before any request is built;
//! - Secrets are read one by one when an account names them (only the fixed keys), never listed
//!   or watched, so the operator holds no other Secret and needs only `get`;
//! - the cloud account (UID) a budget is keyed by comes from STS GetCallerIdentity (or the role
//!   ARN of RRSA, or an admin's declaration), never from a tenant's word alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use sha2::{Digest, Sha256};

use crate::api::{
    AccountKind, AccountSpec, ClusterMpuRelayAccount, Connection, MpuRelayAccount, MpuRelayTask,
    NamespaceCondition, RrsaRole,
};
use crate::budget::{Budget, Budgets, CloudAccount, Limit};
use crate::cloud::client::CloudClient;
use crate::cloud::credentials::{
    self, Credentials, CredentialsError, OperatorCredentials, RrsaProvider, RrsaSettings,
};
use crate::cloud::endpoint::{AllowedEndpoints, Endpoint};
use crate::cloud::{CloudError, ErrorClass};
use crate::controller::TaskKey;
use crate::controller::status::{Problem, reasons};

/// Which account object: the identity of an account in budgets, caches and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountKey {
    Namespaced { namespace: String, name: String },
    Cluster { name: String },
}

impl AccountKey {
    /// The account a task references (`None` without `accountRef`).
    pub fn of_task(task: &MpuRelayTask, namespace: &str) -> Option<AccountKey> {
        let reference = task.spec.account_ref.as_ref()?;
        Some(match reference.kind {
            AccountKind::MpuRelayAccount => AccountKey::Namespaced {
                namespace: namespace.to_string(),
                name: reference.name.clone(),
            },
            AccountKind::ClusterMpuRelayAccount => AccountKey::Cluster {
                name: reference.name.clone(),
            },
        })
    }

    /// Whether `task`, in `namespace`, references this account (allocates nothing: it runs for
    /// every cached task when an account changes).
    pub fn is_referenced_by(&self, task: &MpuRelayTask, namespace: &str) -> bool {
        let Some(reference) = task.spec.account_ref.as_ref() else {
            return false;
        };
        match (self, reference.kind) {
            (
                AccountKey::Namespaced {
                    namespace: ns,
                    name,
                },
                AccountKind::MpuRelayAccount,
            ) => ns == namespace && *name == reference.name,
            (AccountKey::Cluster { name }, AccountKind::ClusterMpuRelayAccount) => {
                *name == reference.name
            }
            _ => false,
        }
    }

    /// `namespace/name`, or `name` for a cluster account: the `account` label of metrics.
    pub fn label(&self) -> String {
        match self {
            AccountKey::Namespaced { namespace, name } => format!("{namespace}/{name}"),
            AccountKey::Cluster { name } => name.clone(),
        }
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountKey::Namespaced { namespace, name } => {
                write!(f, "MpuRelayAccount {namespace}/{name}")
            }
            AccountKey::Cluster { name } => write!(f, "ClusterMpuRelayAccount {name}"),
        }
    }
}

/// An account object of either kind.
#[derive(Clone, Debug)]
pub enum AccountObject {
    Namespaced(Arc<MpuRelayAccount>),
    Cluster(Arc<ClusterMpuRelayAccount>),
}

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
    pub fn key(&self) -> AccountKey {
        match self {
            AccountObject::Namespaced(a) => AccountKey::Namespaced {
                namespace: a.namespace().unwrap_or_default(),
                name: a.name_any(),
            },
            AccountObject::Cluster(a) => AccountKey::Cluster { name: a.name_any() },
        }
    }

    pub fn generation(&self) -> Option<i64> {
        match self {
            AccountObject::Namespaced(a) => a.metadata.generation,
            AccountObject::Cluster(a) => a.metadata.generation,
        }
    }

    pub fn connection(&self) -> &Connection {
        match self {
            AccountObject::Namespaced(a) => a.spec.connection(),
            AccountObject::Cluster(a) => a.spec.connection(),
        }
    }

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

/// Does a cluster account's `conditions` list admit `namespace` (with these labels)?
pub fn admits(
    conditions: &[NamespaceCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    conditions.iter().any(|condition| {
        let by_name = condition
            .namespaces
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == namespace));
        let by_labels = condition
            .namespace_selector
            .as_ref()
            .is_none_or(|selector| {
                // A selector that does not parse admits nothing.
                Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
            });
        let names_something =
            condition.namespaces.is_some() || condition.namespace_selector.is_some();
        names_something && by_name && by_labels
    })
}

/// An account resolved for calls.
#[derive(Debug)]
pub struct Resolved {
    pub endpoint: Endpoint,
    pub connection: Connection,
    pub credentials: Credentials,
    pub budget: Arc<Budget<TaskKey>>,
}

/// What resolving an account gave, and when.
struct Entry {
    generation: Option<i64>,
    at: Instant,
    result: Result<Arc<Resolved>, Problem>,
}

impl Entry {
    fn fresh(&self, generation: Option<i64>) -> bool {
        let ttl = match &self.result {
            // Credentials are re-read this often (a rotated Secret is used within this long,
            // at once when a call is refused for authentication).
            Ok(_) => Duration::from_secs(60),
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
    /// The last authentication failure of a call through each account, until a call succeeds.
    auth_failures: Mutex<HashMap<AccountKey, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
            auth_failures: Mutex::default(),
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
        *entry = Some(Entry {
            generation: account.generation(),
            at: Instant::now(),
            result: result.clone(),
        });
        result
    }

    /// Forces the next resolution to read the credentials again.
    pub fn invalidate(&self, key: &AccountKey) {
        if let Some(slot) = lock(&self.slots).get(key) {
            slot.stale.store(true, Ordering::Relaxed);
        }
    }

    /// The account object is gone: forget it and leave its budget.
    pub fn forget(&self, key: &AccountKey) {
        lock(&self.slots).remove(key);
        lock(&self.auth_failures).remove(key);
        self.budgets.leave(&key.to_string());
    }

    /// A call through `key` was refused for authentication (or succeeded: `None`).
    pub fn record_auth(&self, key: &AccountKey, failure: Option<&CloudError>) {
        let mut failures = lock(&self.auth_failures);
        match failure {
            Some(e) => {
                failures.insert(key.clone(), e.to_string());
                drop(failures);
                // Perhaps the Secret was rotated: read it again next time.
                self.invalidate(key);
            }
            None => {
                if failures.contains_key(key) {
                    failures.remove(key);
                }
            }
        }
    }

    /// The last authentication failure of a call through `key`, if no call succeeded since.
    pub fn auth_failure(&self, key: &AccountKey) -> Option<String> {
        lock(&self.auth_failures).get(key).cloned()
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
            qps: f64::from(connection.qps.max(1)),
            margin: f64::from(connection.qps_margin_percent.min(90)) / 100.0,
        };
        let budget = self
            .budgets
            .join(&cloud_account, &key.to_string(), limit, Instant::now());
        Ok(Resolved {
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

/// Finds the account objects tasks reference, and checks that they may.
pub struct Accounts {
    /// One cache per watched scope; empty when namespaced accounts are disabled.
    pub namespaced: Vec<Store<MpuRelayAccount>>,
    pub cluster: Store<ClusterMpuRelayAccount>,
    pub namespaces: Store<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    pub namespaced_enabled: bool,
    pub resolver: Resolver,
}

impl Accounts {
    /// The account `task` may use, or why it may not.
    pub fn for_task(
        &self,
        task: &MpuRelayTask,
        namespace: &str,
    ) -> Result<(AccountKey, AccountObject), Problem> {
        let key = AccountKey::of_task(task, namespace).ok_or_else(|| Problem {
            reason: reasons::ACCOUNT_REF_MISSING,
            message: "spec.accountRef is not set: name the MpuRelayAccount or ClusterMpuRelayAccount to call the cloud through".into(),
            permanent: true,
        })?;
        let not_found = || Problem {
            reason: reasons::ACCOUNT_NOT_FOUND,
            message: format!("{key} does not exist"),
            permanent: true,
        };
        let object = match &key {
            AccountKey::Namespaced { namespace, name } => {
                if !self.namespaced_enabled {
                    return Err(Problem {
                        reason: reasons::NAMESPACED_ACCOUNTS_DISABLED,
                        message: format!(
                            "{key}: namespaced accounts are disabled in this operator (flag --namespaced-accounts); use a ClusterMpuRelayAccount"
                        ),
                        permanent: true,
                    });
                }
                let r = ObjectRef::new(name).within(namespace);
                let account = self
                    .namespaced
                    .iter()
                    .find_map(|s| s.get(&r))
                    .ok_or_else(not_found)?;
                AccountObject::Namespaced(account)
            }
            AccountKey::Cluster { name } => {
                let account = self
                    .cluster
                    .get(&ObjectRef::new(name))
                    .ok_or_else(not_found)?;
                let labels = self
                    .namespaces
                    .get(&ObjectRef::new(namespace))
                    .map(|ns| ns.labels().clone())
                    .unwrap_or_default();
                if !admits(&account.spec.conditions, namespace, &labels) {
                    return Err(Problem {
                        reason: reasons::ACCOUNT_NOT_ALLOWED,
                        message: format!(
                            "{key} does not admit namespace {namespace}: its spec.conditions name neither this namespace nor a selector matching its labels"
                        ),
                        permanent: true,
                    });
                }
                AccountObject::Cluster(account)
            }
        };
        Ok((key, object))
    }
}

/// How often an account's status is refreshed (its budget figures, its task count).
const ACCOUNT_REFRESH: Duration = Duration::from_secs(15);
/// How soon an account that could not be resolved is looked at again: a passing problem (STS
/// unreachable) soon, one that needs a change (a Secret created or fixed) a little later.
const ACCOUNT_RETRY: Duration = Duration::from_secs(5);
const ACCOUNT_RETRY_AFTER_CHANGE: Duration = Duration::from_secs(10);

/// One reconcile of one account: resolve it, and publish what that gave and its budget.
pub async fn reconcile(
    account: AccountObject,
    ctx: Arc<super::Context>,
) -> Result<kube::runtime::controller::Action, super::Error> {
    use super::account_status::{AccountFacts, decide_account};
    ctx.metrics.record_reconcile();
    let key = account.key();
    let resolution = ctx.accounts.resolver.resolve(&account).await;
    let auth_failure = ctx.accounts.resolver.auth_failure(&key);
    let facts = AccountFacts {
        generation: account.generation(),
        resolution: resolution.as_ref().map(|_| ()),
        auth_failure: auth_failure.as_deref(),
        tasks: ctx.task_counts().get(&key).copied().unwrap_or(0),
        budget: resolution
            .as_ref()
            .ok()
            .map(|r| r.budget.view(Instant::now())),
    };
    let previous = match &account {
        AccountObject::Namespaced(a) => a.status.as_ref(),
        AccountObject::Cluster(a) => a.status.as_ref(),
    };
    let decision = decide_account(previous, &facts, jiff::Timestamp::now());
    ctx.metrics
        .record_account_ready(key.label(), resolution.is_ok() && auth_failure.is_none());
    if decision.write {
        match &account {
            AccountObject::Namespaced(a) => {
                let api = Api::namespaced(ctx.client.clone(), &a.namespace().unwrap_or_default());
                ctx.write_status(api, &**a, &decision.status).await?;
            }
            AccountObject::Cluster(a) => {
                let api = Api::all(ctx.client.clone());
                ctx.write_status(api, &**a, &decision.status).await?;
            }
        }
    }
    match &account {
        AccountObject::Namespaced(a) => ctx.publish(&**a, &decision.events).await,
        AccountObject::Cluster(a) => ctx.publish(&**a, &decision.events).await,
    }
    let next = match &resolution {
        Err(p) if !p.permanent => ACCOUNT_RETRY,
        Err(_) => ACCOUNT_RETRY_AFTER_CHANGE,
        Ok(_) => ACCOUNT_REFRESH,
    };
    Ok(kube::runtime::controller::Action::requeue(super::jitter(
        next,
    )))
}

/// [`reconcile`] inside a span naming the account.
pub async fn reconcile_traced(
    account: AccountObject,
    ctx: Arc<super::Context>,
) -> Result<kube::runtime::controller::Action, super::Error> {
    use tracing::Instrument;
    let key = account.key();
    let span = match &key {
        AccountKey::Namespaced { namespace, name } => tracing::info_span!(
            "reconcile",
            kind = "MpuRelayAccount",
            namespace = namespace.as_str(),
            name = name.as_str()
        ),
        AccountKey::Cluster { name } => {
            tracing::info_span!(
                "reconcile",
                kind = "ClusterMpuRelayAccount",
                name = name.as_str()
            )
        }
    };
    async move {
        match super::guarded(reconcile(account, ctx.clone())).await {
            Ok(result) => result,
            Err(panic) => {
                ctx.metrics.record_panic();
                tracing::error!(panic = %panic, "account reconcile panicked; retried with backoff");
                Err(super::Error::Panicked)
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn by_name(names: &[&str]) -> NamespaceCondition {
        NamespaceCondition {
            namespaces: Some(names.iter().map(|n| n.to_string()).collect()),
            namespace_selector: None,
        }
    }

    fn by_labels(pairs: &[(&str, &str)]) -> NamespaceCondition {
        NamespaceCondition {
            namespaces: None,
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(pairs)),
                match_expressions: None,
            }),
        }
    }

    #[test]
    fn no_conditions_admit_no_namespace() {
        assert!(!admits(&[], "team-a", &labels(&[])));
    }

    #[test]
    fn namespaces_are_admitted_by_name_or_by_labels() {
        let conditions = [by_name(&["team-a"]), by_labels(&[("tenant", "true")])];
        assert!(admits(&conditions, "team-a", &labels(&[])));
        assert!(admits(
            &conditions,
            "team-b",
            &labels(&[("tenant", "true")])
        ));
        assert!(!admits(
            &conditions,
            "team-b",
            &labels(&[("tenant", "false")])
        ));
        assert!(!admits(&conditions, "team-b", &labels(&[])));
    }

    #[test]
    fn a_condition_with_both_fields_needs_both() {
        let both = NamespaceCondition {
            namespaces: Some(vec!["team-a".into()]),
            ..by_labels(&[("tenant", "true")])
        };
        assert!(admits(
            std::slice::from_ref(&both),
            "team-a",
            &labels(&[("tenant", "true")])
        ));
        assert!(!admits(std::slice::from_ref(&both), "team-a", &labels(&[])));
        assert!(!admits(&[both], "team-b", &labels(&[("tenant", "true")])));
    }

    #[test]
    fn an_empty_condition_or_a_bad_selector_admits_nothing() {
        let empty = NamespaceCondition {
            namespaces: None,
            namespace_selector: None,
        };
        assert!(!admits(&[empty], "team-a", &labels(&[])));
        let bad = NamespaceCondition {
            namespaces: None,
            namespace_selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tenant".into(),
                    operator: "Sometimes".into(),
                    values: None,
                }]),
            }),
        };
        assert!(!admits(&[bad], "team-a", &labels(&[("tenant", "x")])));
    }

    #[test]
    fn an_empty_selector_admits_every_namespace() {
        let all = NamespaceCondition {
            namespaces: None,
            namespace_selector: Some(LabelSelector::default()),
        };
        assert!(admits(&[all], "anything", &labels(&[])));
    }
}
