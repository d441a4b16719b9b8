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
//!
//! - [`events`]: event callbacks as hints: each account's subscriptions (`spec.events`), the
//!   endpoint the cloud POSTs to, and the hints that have tasks polled at once;
//! - [`key`]: which account object ([`AccountKey`]), the name of an account object in caches,
//!   budgets, logs and metrics;
//! - [`operations`]: the budgeted calls of the operations other than GetMPUTaskStatus;
//! - [`resolver`]: what an account object resolves to: its endpoint, its credentials (a Secret,
//!   RRSA or the operator's own) and the cloud account STS says they belong to;
//! - [`reconcile`]: the account reconcile, thin I/O around
//!   [`account_status`](super::account_status) (pure decisions);
//! - this module: the account objects and which one a task may use ([`Accounts::for_task`]).

pub mod events;
pub mod key;
pub mod operations;
pub mod reconcile;
pub mod resolver;

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{
    AccountSpec, Adoption, ClusterMpuRelayAccount, Connection, MpuRelayAccount, MpuRelayTask,
    NamespaceCondition,
};
use crate::controller::status::{Problem, reasons};

pub use key::AccountKey;
pub use reconcile::reconcile_traced;
pub use resolver::{Resolved, Resolver, ResolverSettings};

/// An account object of either kind.
#[derive(Clone, Debug)]
pub enum AccountObject {
    Namespaced(Arc<MpuRelayAccount>),
    Cluster(Arc<ClusterMpuRelayAccount>),
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

    pub fn meta(&self) -> &kube::core::ObjectMeta {
        match self {
            AccountObject::Namespaced(a) => &a.metadata,
            AccountObject::Cluster(a) => &a.metadata,
        }
    }

    pub fn status(&self) -> Option<&crate::api::AccountStatus> {
        match self {
            AccountObject::Namespaced(a) => a.status.as_ref(),
            AccountObject::Cluster(a) => a.status.as_ref(),
        }
    }

    /// Its kind as the API server serves it.
    pub fn resource(&self) -> kube::api::ApiResource {
        match self {
            AccountObject::Namespaced(_) => kube::api::ApiResource::erase::<MpuRelayAccount>(&()),
            AccountObject::Cluster(_) => {
                kube::api::ApiResource::erase::<ClusterMpuRelayAccount>(&())
            }
        }
    }
}

/// What an account lets a namespace's tasks do beyond observing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Start, update, restart and stop relays (`managementPolicy: Manage`).
    pub manage: bool,
    /// Take over a relay already running under the TaskId (`spec.adopt`).
    pub adopt: bool,
}

/// Does a cluster account's `conditions` list admit `namespace` (with these labels)?
pub fn admits(
    conditions: &[NamespaceCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    conditions
        .iter()
        .any(|condition| admitted_by(condition, namespace, labels))
}

/// What the conditions admitting `namespace` let its tasks do: manage if one of them says
/// `manage: true`, adopt if one of those also says `adoption: Allowed`.
pub fn cluster_rights(
    conditions: &[NamespaceCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Rights {
    let managing = || {
        conditions
            .iter()
            .filter(|c| c.manage && admitted_by(c, namespace, labels))
    };
    Rights {
        manage: managing().next().is_some(),
        adopt: managing().any(|c| c.adoption == Adoption::Allowed),
    }
}

fn admitted_by(
    condition: &NamespaceCondition,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
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
    let names_something = condition.namespaces.is_some() || condition.namespace_selector.is_some();
    names_something && by_name && by_labels
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

    /// What `account` lets the tasks of `namespace` do beyond observing. An `MpuRelayAccount`
    /// holds the tenant's own credentials: everything. A `ClusterMpuRelayAccount` is the
    /// cluster admin's: only what its conditions grant.
    pub fn rights(&self, account: &AccountObject, namespace: &str) -> Rights {
        match account {
            AccountObject::Namespaced(_) => Rights {
                manage: true,
                adopt: true,
            },
            AccountObject::Cluster(account) => {
                let labels = self
                    .namespaces
                    .get(&ObjectRef::new(namespace))
                    .map(|ns| ns.labels().clone())
                    .unwrap_or_default();
                cluster_rights(&account.spec.conditions, namespace, &labels)
            }
        }
    }
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
            ..Default::default()
        }
    }

    fn by_labels(pairs: &[(&str, &str)]) -> NamespaceCondition {
        NamespaceCondition {
            namespaces: None,
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(pairs)),
                match_expressions: None,
            }),
            ..Default::default()
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
            ..Default::default()
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
            ..Default::default()
        };
        assert!(!admits(&[bad], "team-a", &labels(&[("tenant", "x")])));
    }

    #[test]
    fn an_empty_selector_admits_every_namespace() {
        let all = NamespaceCondition {
            namespaces: None,
            namespace_selector: Some(LabelSelector::default()),
            ..Default::default()
        };
        assert!(admits(&[all], "anything", &labels(&[])));
    }
}
