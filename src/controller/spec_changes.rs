//! Which watch events of a task are worth a reconcile: those that change its spec (generation),
//! its annotations (`sync-requested-at`) or its lifecycle (finalizers, deletion: a managed
//! relay is stopped when its object is deleted), not the operator's own status writes.
//!
//! kube-runtime's `predicate_filter` does the same, but keys its cache by the object's name,
//! namespace and uid, three strings per task (about 180 bytes with the map's entry; 1.8 MB at
//! 10 000 tasks). Here an entry is two hashes and an instant.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::{Predicate, predicates, watcher};

/// An entry not seen for this long is forgotten (a deleted task's), and the task's next event
/// passes as if it were new: kube-runtime's default.
const TTL: Duration = Duration::from_secs(3600);

/// What the filter remembers of each task it has seen.
#[derive(Debug, Default)]
pub struct SpecChanges {
    /// By a hash of (namespace, name, uid): the hash of the generation and annotations last let
    /// through, and when the task was last seen. Two tasks whose keys collide (about one chance in
    /// 10^11 at 10 000 tasks) cost extra reconciles, never a missed change: each event compares
    /// against what the other stored.
    seen: HashMap<u64, (u64, Instant)>,
    swept: Option<Instant>,
}

impl SpecChanges {
    /// True when `object` should be reconciled: first seen, or its generation or annotations
    /// changed since it was last let through.
    pub fn changed<K: Resource>(&mut self, object: &K, now: Instant) -> bool {
        if self
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= TTL)
        {
            self.seen
                .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < TTL);
            self.swept = Some(now);
        }
        let Some(value) = (predicates::generation as fn(&K) -> Option<u64>)
            .combine(predicates::annotations as fn(&K) -> Option<u64>)
            .combine(lifecycle as fn(&K) -> Option<u64>)
            .hash_property(object)
        else {
            return true;
        };
        let meta = object.meta();
        let mut key = DefaultHasher::new();
        (&meta.namespace, &meta.name, &meta.uid).hash(&mut key);
        match self.seen.insert(key.finish(), (value, now)) {
            Some((before, seen)) => before != value || now.saturating_duration_since(seen) >= TTL,
            None => true,
        }
    }
}

/// A hash of what ends an object's life: its finalizers and whether it is being deleted.
fn lifecycle<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hash = DefaultHasher::new();
    meta.deletion_timestamp.is_some().hash(&mut hash);
    meta.finalizers.hash(&mut hash);
    Some(hash.finish())
}

/// The objects of `stream` whose spec or annotations changed (see [`SpecChanges`]).
pub fn filter<K, S>(stream: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<K, watcher::Error>> + Send + 'static,
{
    let mut changes = SpecChanges::default();
    stream.filter(move |event| {
        future::ready(match event {
            Ok(object) => changes.changed(object, Instant::now()),
            Err(_) => true,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MpuRelayTask, MpuRelayTaskSpec, MpuRelayTaskStatus};
    use kube::ResourceExt;

    fn task(name: &str, generation: i64) -> MpuRelayTask {
        let mut t = MpuRelayTask::new(
            name,
            MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: "task".into(),
                account_ref: None,
                poll_interval: None,
                suspend: false,
                ..Default::default()
            },
        );
        t.metadata.namespace = Some("team-a".into());
        t.metadata.uid = Some(format!("uid-{name}"));
        t.metadata.generation = Some(generation);
        t
    }

    #[test]
    fn status_writes_pass_no_event_and_spec_or_annotation_changes_do() {
        let mut changes = SpecChanges::default();
        let t0 = Instant::now();
        let mut t = task("a", 1);
        assert!(changes.changed(&t, t0), "a task seen for the first time");
        t.status = Some(MpuRelayTaskStatus {
            status_code: Some(1),
            ..Default::default()
        });
        assert!(!changes.changed(&t, t0), "the operator's own status write");
        t.metadata.generation = Some(2);
        assert!(changes.changed(&t, t0), "a spec change");
        t.annotations_mut()
            .insert("mpurelay.io/sync-requested-at".into(), "now".into());
        assert!(changes.changed(&t, t0), "a sync request");
        assert!(!changes.changed(&t, t0));
        // Tasks are told apart by namespace, name and uid.
        assert!(changes.changed(&task("b", 2), t0));
        let mut elsewhere = task("a", 2);
        elsewhere.metadata.namespace = Some("team-b".into());
        assert!(changes.changed(&elsewhere, t0));
    }

    #[test]
    fn a_finalizer_change_and_a_deletion_pass() {
        let mut changes = SpecChanges::default();
        let t0 = Instant::now();
        let mut t = task("a", 1);
        assert!(changes.changed(&t, t0));
        t.metadata.finalizers = Some(vec!["mpurelay.io/relay".into()]);
        assert!(changes.changed(&t, t0), "the operator's finalizer added");
        assert!(!changes.changed(&t, t0));
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        assert!(changes.changed(&t, t0), "deleted: the finalizer must run");
    }

    #[test]
    fn entries_not_seen_for_an_hour_are_forgotten() {
        let mut changes = SpecChanges::default();
        let t0 = Instant::now();
        changes.changed(&task("gone", 1), t0);
        let t = task("kept", 1);
        changes.changed(&t, t0);
        let later = t0 + TTL + Duration::from_secs(1);
        // Seen again after the TTL: it passes, as new.
        assert!(changes.changed(&t, later));
        assert_eq!(changes.seen.len(), 1, "the deleted task's entry is swept");
    }
}
