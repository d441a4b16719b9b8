//! Which tasks a change elsewhere wakes, as pure functions, and the routes that deliver the
//! wake-ups to the task controller of each scope ([`Triggers`]).
//!
//! Task controllers reconcile on their own spec changes only; a change to an account (its spec
//! or readiness) or to a namespace's labels (the `namespaceSelector` of cluster accounts)
//! reaches the tasks it concerns through here.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use futures::channel::mpsc;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::api::{AccountKind, AccountStatus, MpuRelayTask, conditions};

pub type TaskRef = ObjectRef<MpuRelayTask>;

/// Routes task references to the task controller of their scope.
#[derive(Clone, Default)]
pub struct Triggers {
    pub routes: Vec<(Option<String>, mpsc::UnboundedSender<TaskRef>)>,
}

impl Triggers {
    pub fn send(&self, tasks: impl IntoIterator<Item = TaskRef>) {
        for task in tasks {
            let route = self
                .routes
                .iter()
                .find(|(ns, _)| ns.is_none() || ns.as_deref() == task.namespace.as_deref());
            if let Some((_, sender)) = route {
                let _ = sender.unbounded_send(task);
            }
        }
    }
}

/// What about an account matters to its tasks: its spec and its readiness. Its budget figures
/// move all the time and must not wake every task of the account.
pub fn task_facing<K: Resource>(account: &K, status: Option<&AccountStatus>) -> u64 {
    let ready = status
        .and_then(|s| s.condition(conditions::READY))
        .map(|c| (c.status.as_str(), c.reason.as_str()));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    account.meta().generation.hash(&mut hasher);
    ready.hash(&mut hasher);
    hasher.finish()
}

/// Whether an account seen with task-facing hash `hash` wakes its tasks: when it is new to
/// this process (its tasks may have waited for it) or that hash changed. Remembers it.
pub fn account_changed<K: Eq + Hash>(seen: &mut HashMap<K, u64>, key: K, hash: u64) -> bool {
    seen.insert(key, hash) != Some(hash)
}

/// Whether a namespace seen with labels hashing to `hash` wakes its tasks: only when its
/// labels changed (a namespace seen for the first time is in the initial list, and its tasks
/// are reconciled anyway). Remembers it.
pub fn relabelled(seen: &mut HashMap<String, u64>, namespace: &str, hash: u64) -> bool {
    seen.insert(namespace.to_string(), hash)
        .is_some_and(|h| h != hash)
}

/// Whether a relabelled `namespace` wakes `task`: a task of that namespace that uses a
/// cluster account (whose `namespaceSelector` may now admit it or no longer).
pub fn wakes_on_relabel(task: &MpuRelayTask, namespace: &str) -> bool {
    task.metadata.namespace.as_deref() == Some(namespace)
        && task
            .spec
            .account_ref
            .as_ref()
            .is_some_and(|r| r.kind == AccountKind::ClusterMpuRelayAccount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountRef, MpuRelayTaskSpec};

    fn task(namespace: &str, kind: Option<AccountKind>) -> MpuRelayTask {
        let mut t = MpuRelayTask::new(
            "t",
            MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: "task".into(),
                account_ref: kind.map(|kind| AccountRef {
                    kind,
                    name: "live".into(),
                }),
                poll_interval: None,
                suspend: false,
                ..Default::default()
            },
        );
        t.metadata.namespace = Some(namespace.into());
        t
    }

    #[test]
    fn a_relabelled_namespace_wakes_only_its_tasks_that_use_a_cluster_account() {
        let cluster = Some(AccountKind::ClusterMpuRelayAccount);
        assert!(wakes_on_relabel(&task("team", cluster), "team"));
        assert!(!wakes_on_relabel(&task("other", cluster), "team"));
        assert!(!wakes_on_relabel(
            &task("team", Some(AccountKind::MpuRelayAccount)),
            "team"
        ));
        assert!(!wakes_on_relabel(&task("team", None), "team"));
    }

    #[test]
    fn a_namespace_wakes_its_tasks_when_its_labels_change_not_when_first_seen() {
        let mut seen = HashMap::new();
        assert!(!relabelled(&mut seen, "team", 1));
        assert!(!relabelled(&mut seen, "team", 1));
        assert!(relabelled(&mut seen, "team", 2));
        assert!(!relabelled(&mut seen, "other", 2));
    }

    #[test]
    fn an_account_wakes_its_tasks_when_first_seen_and_when_its_task_facing_hash_changes() {
        let mut seen = HashMap::new();
        assert!(account_changed(&mut seen, "a", 1));
        assert!(!account_changed(&mut seen, "a", 1));
        assert!(account_changed(&mut seen, "a", 2));
    }

    #[test]
    fn an_accounts_budget_figures_do_not_change_what_its_tasks_see() {
        use crate::api::{ClusterMpuRelayAccount, ClusterMpuRelayAccountSpec};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let spec: ClusterMpuRelayAccountSpec = serde_json::from_value(serde_json::json!({
            "credentials": {"operator": {}},
        }))
        .unwrap();
        let mut account = ClusterMpuRelayAccount::new("live", spec);
        account.metadata.generation = Some(1);
        let ready = |status: &str, reason: &str| Condition {
            type_: conditions::READY.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        };
        let status = |conditions: Vec<Condition>, used: f64| AccountStatus {
            conditions,
            budget: Some(crate::api::BudgetStatus {
                used,
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = task_facing(&account, Some(&status(vec![ready("True", "Ready")], 1.0)));
        let b = task_facing(&account, Some(&status(vec![ready("True", "Ready")], 9.0)));
        let c = task_facing(
            &account,
            Some(&status(vec![ready("False", "AuthFailed")], 9.0)),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        account.metadata.generation = Some(2);
        assert_ne!(
            a,
            task_facing(&account, Some(&status(vec![ready("True", "Ready")], 1.0)))
        );
    }
}
