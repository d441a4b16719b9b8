//! Who manages a relay when several objects ask to: the claim on a (cloud account, AppId,
//! TaskId) belongs to the oldest object (by creation time, then UID) that manages it through
//! an account that lets it manage and resolves to that cloud account. Derived from the cache
//! at every reconcile, so every replica and every restart agrees, and the holder changes only
//! when an older claimant appears or the holder goes: no flapping.
//!
//! Creation time and UID are the API server's: no tenant can make an object older than it is.

use jiff::Timestamp;

use super::seniority;
use crate::api::MpuRelayTask;
use crate::budget::CloudAccount;
use crate::controller::Context;
use crate::controller::ownership::OwnershipKey;

/// What decides between two claimants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seniority {
    pub created: Option<Timestamp>,
    /// Whether the object started (or is starting) the relay: it wins a tie of creation times.
    pub owns: bool,
    pub uid: String,
}

/// Whether `a` comes before `b`: created earlier (an unknown time last); in the same second,
/// the owner; then the smaller UID.
pub fn older(a: &Seniority, b: &Seniority) -> bool {
    let key = |s: &Seniority| (s.created.unwrap_or(Timestamp::MAX), !s.owns, s.uid.clone());
    key(a) < key(b)
}

/// Whether `task` (managing through `cloud_account`) holds the claim on its relay.
pub async fn held(
    task: &MpuRelayTask,
    cloud_account: &CloudAccount,
    key: Option<&OwnershipKey>,
    ctx: &Context,
) -> bool {
    let mine = seniority(task, key);
    let rivals: Vec<_> = ctx
        .all_tasks()
        .filter(|other| {
            other.spec.managed()
                && other.spec.app_id == task.spec.app_id
                && other.spec.task_id == task.spec.task_id
                && other.metadata.uid != task.metadata.uid
                && older(&seniority(other, key), &mine)
        })
        .collect();
    for rival in rivals {
        let Some(namespace) = rival.metadata.namespace.as_deref() else {
            continue;
        };
        // A rival counts only if it could act: its account admits it, lets it manage, and
        // calls the same cloud account.
        let Ok((_, object)) = ctx.accounts.for_task(&rival, namespace) else {
            continue;
        };
        if !ctx.accounts.rights(&object, namespace).manage {
            continue;
        }
        if let Ok(resolved) = ctx.accounts.resolver.resolve(&object).await
            && resolved.cloud_account == *cloud_account
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, uid: &str) -> Seniority {
        Seniority {
            created: Some(Timestamp::from_second(seconds).unwrap()),
            owns: false,
            uid: uid.into(),
        }
    }

    #[test]
    fn the_older_object_wins_then_the_owner_then_the_smaller_uid() {
        assert!(older(&at(1, "b"), &at(2, "a")));
        assert!(!older(&at(2, "a"), &at(1, "b")));
        assert!(older(&at(1, "a"), &at(1, "b")));
        assert!(
            !older(&at(1, "a"), &at(1, "a")),
            "nobody is older than itself"
        );
        let unknown = Seniority {
            created: None,
            ..at(0, "a")
        };
        assert!(older(&at(1, "z"), &unknown), "an unknown age comes last");
        let owner = Seniority {
            owns: true,
            ..at(1, "z")
        };
        assert!(older(&owner, &at(1, "a")), "the owner wins a tie");
        assert!(
            !older(&owner, &at(0, "a")),
            "but not against an older object"
        );
    }
}
