//! Which account object: [`AccountKey`], the one name of an `MpuRelayAccount` or a
//! `ClusterMpuRelayAccount` in the resolver's caches, budget membership, logs and metrics.
//! (The cloud account it resolves to is [`crate::budget::CloudAccount`].)

use std::fmt;

use crate::api::{AccountKind, MpuRelayTask};

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

    /// `namespace/name`, or `name` for a cluster account: the `account_object` label of
    /// metrics (their `account` is the cloud account's alias).
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
