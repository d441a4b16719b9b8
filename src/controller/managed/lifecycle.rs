//! The lifecycle of a managed relay, decided as pure functions: from what the object declares,
//! what it recorded of its own actions (`status.management`), what the cloud said and the time,
//! to the one step to take. The shell ([`super`]) only carries the step out.
//!
//! Ownership is what this object did, never what the cloud shows: a relay the cloud runs under
//! the TaskId is this object's only when `status.management` says it started (or adopted) it,
//! or when a Start of this object's was in flight (`starting`) and the relay appeared.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{ManagementStatus, MpuRelayTaskSpec, Phase, RestartPolicy};
use crate::controller::account::Rights;

/// What GetMPUTaskStatus said of the TaskId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Status(i64),
    /// `InvalidTask.NotFound`: no relay under this TaskId (never started, or cleared).
    NotFound,
}

/// Why a managed task does nothing in the cloud until something changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A relay runs under the TaskId that this object neither started nor may adopt.
    TaskExists,
    /// A user stopped the relay (status 3): never restarted.
    StoppedByUser,
    /// The cloud stopped it and `restartPolicy` says not to restart.
    NotRestarted,
}

/// The one step to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The relay is as declared: nothing to call.
    Hold,
    /// A Start of this object's landed before its answer was recorded: record the ownership.
    Own,
    /// Take over the running relay (allowed and asked for), then bring it to the spec.
    Adopt,
    /// Record the intent, then StartLiveMPUTask.
    Start { restart: bool },
    /// UpdateLiveMPUTask: the relay runs with other parameters than the spec's.
    Update,
    /// Restart once this time has come (the backoff since the stop).
    Backoff { until: Timestamp },
    /// Nothing is done until something changes.
    Refuse(Refusal),
}

/// Everything the step depends on.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub spec: &'a MpuRelayTaskSpec,
    pub management: Option<&'a ManagementStatus>,
    pub seen: Seen,
    /// Hash of the relay the spec declares.
    pub spec_hash: &'a str,
    /// Since when the cloud has shown the current status (as first observed).
    pub phase_since: Timestamp,
    pub rights: Rights,
    pub now: Timestamp,
}

/// The first restart waits this long after the stop was seen; each next one twice as long.
/// Never less than the cloud's 10 s before an ingest URL may serve a relay again.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(10);
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A relay running this long has recovered: its restart count starts again from zero.
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(600);
/// After a Start without an answer, how long a TaskId the cloud does not know is given before
/// the Start is sent again (the first may still be under way).
pub const START_GRACE: Duration = Duration::from_secs(10);

/// The wait before restart number `restarts + 1`.
pub fn restart_backoff(restarts: u32) -> Duration {
    RESTART_BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(restarts.min(16)))
        .min(RESTART_BACKOFF_MAX)
}

fn since(a: Timestamp, b: Timestamp) -> Duration {
    Duration::try_from(b.duration_since(a)).unwrap_or_default()
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Whether the relay under the TaskId is this object's: started or adopted by it.
pub fn owned(management: Option<&ManagementStatus>) -> bool {
    management.is_some_and(|m| m.started_at.is_some())
}

/// Whether this object started the relay, or has a Start of its own under way (that may have
/// landed): what deletion stops and what wins a tie between claimants.
pub fn ours(management: Option<&ManagementStatus>) -> bool {
    owned(management) || management.is_some_and(|m| m.starting.is_some())
}

/// The step for a managed task whose account grants `rights.manage` and whose claim on the
/// (cloud account, AppId, TaskId) is held.
pub fn step(facts: &Facts<'_>) -> Step {
    let starting = facts.management.and_then(|m| m.starting.as_ref());
    if !owned(facts.management) {
        return match (facts.seen, starting) {
            // A Start of ours was under way: the relay is the one it started.
            (Seen::Status(_), Some(_)) => Step::Own,
            (Seen::Status(_), None) if facts.spec.adopt && facts.rights.adopt => Step::Adopt,
            (Seen::Status(_), None) => Step::Refuse(Refusal::TaskExists),
            (Seen::NotFound, Some(intent)) => {
                let retry_at = plus(intent.since.0, START_GRACE);
                if facts.now < retry_at {
                    Step::Backoff { until: retry_at }
                } else {
                    Step::Start { restart: false }
                }
            }
            (Seen::NotFound, None) => Step::Start { restart: false },
        };
    }
    let management = facts.management.cloned().unwrap_or_default();
    let phase = match facts.seen {
        Seen::Status(code) => Phase::from_code(code),
        // Ours, and gone: cleared after a stop nobody saw. It should run, so it is a failure.
        Seen::NotFound => Phase::ChannelStopped,
    };
    match phase {
        Phase::Running | Phase::WaitingForChannel => {
            if management.spec_hash.as_deref() == Some(facts.spec_hash) {
                Step::Hold
            } else {
                Step::Update
            }
        }
        Phase::StoppedByUser => Step::Refuse(Refusal::StoppedByUser),
        Phase::Unknown => Step::Hold,
        Phase::Stopped | Phase::ChannelStopped | Phase::CdnError | Phase::StreamUrlError => {
            let restarts = match facts.spec.restart_policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => phase != Phase::Stopped,
                RestartPolicy::Always => true,
            };
            if !restarts {
                return Step::Refuse(Refusal::NotRestarted);
            }
            // Counted from the stop as first seen, and never before the last start's own
            // backoff: a status that still shows the old stop must not start it twice.
            let mut from = facts.phase_since;
            if let Some(last) = &management.last_start_time {
                from = from.max(last.0);
            }
            let until = plus(from, restart_backoff(management.restarts));
            if facts.now < until {
                Step::Backoff { until }
            } else {
                Step::Start { restart: true }
            }
        }
    }
}

/// `management` after a poll: the restart count forgotten once the relay has run
/// [`RESTART_RESET_AFTER`].
pub fn settled(
    management: Option<&ManagementStatus>,
    seen: Seen,
    phase_since: Timestamp,
    now: Timestamp,
) -> Option<ManagementStatus> {
    let mut m = management.cloned()?;
    if m.restarts > 0 && seen == Seen::Status(1) && since(phase_since, now) >= RESTART_RESET_AFTER {
        m.restarts = 0;
    }
    Some(m)
}

/// What deleting the object does in the cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// StopLiveMPUTask, then let the object go.
    Stop,
    /// Let the object go; nothing is called.
    LetGo,
}

/// The relay is stopped only when this object manages it, owns it (or had a Start of its own
/// under way), still holds the claim, and `deletionPolicy` is `Delete`.
pub fn release(
    spec: &MpuRelayTaskSpec,
    management: Option<&ManagementStatus>,
    claim_held: bool,
) -> Release {
    let ours = owned(management) || management.is_some_and(|m| m.starting.is_some());
    if spec.managed()
        && spec.deletion_policy == crate::api::DeletionPolicy::Delete
        && ours
        && claim_held
    {
        Release::Stop
    } else {
        Release::LetGo
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{DeletionPolicy, ManagementPolicy, StartIntent};

    const HASH: &str = "0123456789abcdef";

    fn spec() -> MpuRelayTaskSpec {
        MpuRelayTaskSpec {
            app_id: "app".into(),
            task_id: "t1".into(),
            management_policy: ManagementPolicy::Manage,
            ..Default::default()
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn owner(restarts: u32) -> ManagementStatus {
        ManagementStatus {
            started_at: Some(Time(t(0))),
            spec_hash: Some(HASH.into()),
            restarts,
            last_start_time: Some(Time(t(0))),
            ..Default::default()
        }
    }

    fn intent_at(seconds: i64) -> ManagementStatus {
        ManagementStatus {
            starting: Some(StartIntent {
                spec_hash: HASH.into(),
                since: Time(t(seconds)),
            }),
            ..Default::default()
        }
    }

    const ALL: Rights = Rights {
        manage: true,
        adopt: true,
    };
    const MANAGE_ONLY: Rights = Rights {
        manage: true,
        adopt: false,
    };

    fn step_of(
        spec: &MpuRelayTaskSpec,
        management: Option<&ManagementStatus>,
        seen: Seen,
        phase_since: i64,
        now: i64,
        rights: Rights,
    ) -> Step {
        step(&Facts {
            spec,
            management,
            seen,
            spec_hash: HASH,
            phase_since: t(phase_since),
            rights,
            now: t(now),
        })
    }

    #[test]
    fn a_task_the_cloud_does_not_know_is_started() {
        let s = spec();
        assert_eq!(
            step_of(&s, None, Seen::NotFound, 0, 0, MANAGE_ONLY),
            Step::Start { restart: false }
        );
    }

    #[test]
    fn a_running_relay_this_object_did_not_start_is_refused_unless_adoption_is_asked_and_allowed() {
        let mut s = spec();
        let running = Seen::Status(1);
        assert_eq!(
            step_of(&s, None, running, 0, 0, ALL),
            Step::Refuse(Refusal::TaskExists),
            "adopt not asked"
        );
        s.adopt = true;
        assert_eq!(
            step_of(&s, None, running, 0, 0, MANAGE_ONLY),
            Step::Refuse(Refusal::TaskExists),
            "adoption not allowed by the account"
        );
        assert_eq!(step_of(&s, None, running, 0, 0, ALL), Step::Adopt);
    }

    #[test]
    fn a_start_in_flight_that_landed_is_owned_without_a_second_start() {
        let s = spec();
        let m = intent_at(0);
        for code in [0, 1] {
            assert_eq!(
                step_of(&s, Some(&m), Seen::Status(code), 0, 1, MANAGE_ONLY),
                Step::Own
            );
        }
    }

    #[test]
    fn a_start_in_flight_that_did_not_land_is_sent_again_only_after_the_grace() {
        let s = spec();
        let m = intent_at(0);
        assert_eq!(
            step_of(&s, Some(&m), Seen::NotFound, 0, 3, MANAGE_ONLY),
            Step::Backoff { until: t(10) }
        );
        assert_eq!(
            step_of(&s, Some(&m), Seen::NotFound, 0, 10, MANAGE_ONLY),
            Step::Start { restart: false }
        );
    }

    #[test]
    fn an_owned_relay_running_as_declared_is_left_alone_and_a_changed_spec_is_updated() {
        let s = spec();
        let m = owner(0);
        assert_eq!(
            step_of(&s, Some(&m), Seen::Status(1), 0, 60, MANAGE_ONLY),
            Step::Hold
        );
        let mut changed = m.clone();
        changed.spec_hash = Some("another".into());
        assert_eq!(
            step_of(&s, Some(&changed), Seen::Status(1), 0, 60, MANAGE_ONLY),
            Step::Update
        );
        assert_eq!(
            step_of(&s, Some(&changed), Seen::Status(0), 0, 60, MANAGE_ONLY),
            Step::Update,
            "a relay waiting for its channel is updated too"
        );
    }

    #[test]
    fn failures_restart_after_a_backoff_that_doubles_from_ten_seconds_to_five_minutes() {
        let s = spec();
        for code in [4, 5, 6] {
            let m = owner(0);
            assert_eq!(
                step_of(&s, Some(&m), Seen::Status(code), 100, 105, MANAGE_ONLY),
                Step::Backoff { until: t(110) },
                "code {code}"
            );
            assert_eq!(
                step_of(&s, Some(&m), Seen::Status(code), 100, 110, MANAGE_ONLY),
                Step::Start { restart: true }
            );
        }
        let waits: Vec<u64> = (0..7).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(restart_backoff(u32::MAX).as_secs(), 300);
        let m = owner(3);
        assert_eq!(
            step_of(&s, Some(&m), Seen::Status(5), 100, 150, MANAGE_ONLY),
            Step::Backoff { until: t(180) }
        );
    }

    #[test]
    fn a_stop_seen_before_the_last_start_does_not_start_it_twice() {
        let s = spec();
        let mut m = owner(1);
        m.last_start_time = Some(Time(t(200)));
        // The status still says CdnError since t(100), from before the restart at t(200).
        assert_eq!(
            step_of(&s, Some(&m), Seen::Status(5), 100, 205, MANAGE_ONLY),
            Step::Backoff { until: t(220) }
        );
    }

    #[test]
    fn restart_policy_decides_which_stops_restart_and_a_user_stop_never_does() {
        let m = owner(0);
        let mut s = spec();
        let after = |s: &MpuRelayTaskSpec, code| {
            step_of(s, Some(&m), Seen::Status(code), 0, 1000, MANAGE_ONLY)
        };
        s.restart_policy = RestartPolicy::OnFailure;
        assert_eq!(after(&s, 2), Step::Refuse(Refusal::NotRestarted));
        assert_eq!(after(&s, 5), Step::Start { restart: true });
        s.restart_policy = RestartPolicy::Always;
        assert_eq!(after(&s, 2), Step::Start { restart: true });
        s.restart_policy = RestartPolicy::Never;
        for code in [2, 4, 5, 6] {
            assert_eq!(after(&s, code), Step::Refuse(Refusal::NotRestarted));
        }
        for policy in [
            RestartPolicy::Never,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ] {
            s.restart_policy = policy;
            assert_eq!(after(&s, 3), Step::Refuse(Refusal::StoppedByUser));
        }
    }

    #[test]
    fn an_owned_relay_the_cloud_forgot_is_started_again_as_a_failure() {
        let s = spec();
        let m = owner(0);
        assert_eq!(
            step_of(&s, Some(&m), Seen::NotFound, 0, 1000, MANAGE_ONLY),
            Step::Start { restart: true }
        );
    }

    #[test]
    fn restarts_are_forgotten_after_ten_minutes_running() {
        let m = owner(4);
        let kept = settled(Some(&m), Seen::Status(1), t(0), t(599)).unwrap();
        assert_eq!(kept.restarts, 4);
        let reset = settled(Some(&m), Seen::Status(1), t(0), t(600)).unwrap();
        assert_eq!(reset.restarts, 0);
        let stopped = settled(Some(&m), Seen::Status(5), t(0), t(6000)).unwrap();
        assert_eq!(stopped.restarts, 4);
    }

    #[test]
    fn deletion_stops_only_an_owned_relay_of_a_managing_claim_holder_under_delete() {
        let owned = owner(0);
        let intent = intent_at(0);
        let s = spec();
        assert_eq!(release(&s, Some(&owned), true), Release::Stop);
        assert_eq!(
            release(&s, Some(&intent), true),
            Release::Stop,
            "a Start was under way"
        );
        assert_eq!(release(&s, None, true), Release::LetGo, "never started");
        assert_eq!(
            release(&s, Some(&owned), false),
            Release::LetGo,
            "lost the claim"
        );
        let mut orphan = spec();
        orphan.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(release(&orphan, Some(&owned), true), Release::LetGo);
        let mut observe = spec();
        observe.management_policy = ManagementPolicy::Observe;
        assert_eq!(release(&observe, Some(&owned), true), Release::LetGo);
    }
}
