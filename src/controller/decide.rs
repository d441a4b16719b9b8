//! The controller's decisions, as a pure function: from the task, what one poll of the cloud
//! returned, the time and the configuration, to the new status, the events to publish, whether
//! the status must be written, and when to poll next.
//!
//! Nothing here does I/O or reads a clock, so every rule is a unit test away.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::status::{EventSpec, FALSE, MESSAGE_MAX_CHARS, Problem, Severity, Stamp, TRUE, reasons};
use crate::api::{MpuRelayTask, MpuRelayTaskStatus, Phase, conditions};
use crate::budget::Turn;
use crate::cloud::{CloudError, ErrorClass, MpuTaskStatus};

/// `delay` spread by ±3 % as `spread` (drawn uniformly from [0, 1)) says, so that objects
/// created together drift apart. The one jitter of every requeue: a spread out of range is
/// clamped, one not a number is the middle.
pub fn jittered(delay: Duration, spread: f64) -> Duration {
    let spread = if spread.is_finite() {
        spread.clamp(0.0, 1.0)
    } else {
        0.5
    };
    delay.mul_f64(0.97 + 0.06 * spread)
}

/// How long the cloud lets a task wait for its channel before stopping it.
pub const AUTO_STOP_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Polling intervals and backoff bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct PollConfig {
    pub running: Duration,
    pub waiting: Duration,
    /// For stopped phases (2..6) and unknown codes; zero stops polling them.
    pub stopped: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Retry of terminal errors (bad credentials, unknown task), which only a change can fix.
    pub stalled_retry: Duration,
    /// Write `lastSyncTime` at least this often even when nothing else changed.
    pub heartbeat: Duration,
    /// Warn this long before the cloud's 30-day auto-stop of a waiting task.
    pub auto_stop_warning: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            running: Duration::from_secs(30),
            waiting: Duration::from_secs(60),
            stopped: Duration::from_secs(600),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            stalled_retry: Duration::from_secs(300),
            // An hour, not minutes: every task's heartbeat is a status write, and at 10 000 tasks
            // a 5-minute one was 33 writes/s of nothing new (issue 11's bench).
            heartbeat: Duration::from_secs(3600),
            auto_stop_warning: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// What happened when the controller tried to poll the task.
#[derive(Debug)]
pub enum Outcome {
    /// The cloud answered.
    Polled(MpuTaskStatus),
    /// The cloud answered with an error, or could not be reached.
    CloudFailed(CloudError),
    /// The task's account cannot be used (none named, not found, not allowed for this
    /// namespace, or not ready): no call was made.
    AccountUnusable(Problem),
    /// `spec.suspend` is true: no call was made.
    Suspended,
    /// The operator itself failed on this task (a bug caught as a panic); retried with backoff.
    Internal(String),
}

/// The action of events about a poll.
pub const POLL_ACTION: &str = "Poll";

/// When to look at the task again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextSync {
    /// Poll again after this long (the budget may still make it wait for a slot).
    After(Duration),
    /// Only a change to the object (or its Secret) brings it back.
    OnChange,
}

impl NextSync {
    /// At most a day away: every requeue goes through this, so no value from a spec, a status,
    /// the cloud or a flag can overflow the scheduler's clock.
    pub fn bounded(self) -> NextSync {
        match self {
            NextSync::After(delay) => NextSync::After(delay.min(MAX_INTERVAL)),
            other => other,
        }
    }
}

/// Everything the reconciler must do after one poll.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: MpuRelayTaskStatus,
    /// True when the account's budget, not the task's own interval, sets the pace of `next`
    /// (the task then takes its next turn in the account's line at once).
    pub budget_bound: bool,
    /// False when nothing but timestamps and the request id moved (and no heartbeat is due).
    pub write: bool,
    pub events: Vec<EventSpec>,
    pub next: NextSync,
    /// The class of the failure when the poll failed (for the reconciler's log line).
    pub class: Option<ErrorClass>,
}

impl Decision {
    /// When to reconcile again (`None`: only on a change), given `spread` drawn uniformly from
    /// [0, 1): ±3 % around the decided delay, so tasks created together drift apart.
    pub fn requeue(&self, spread: f64) -> Option<Duration> {
        match self.next.bounded() {
            NextSync::After(delay) => Some(jittered(delay, spread)),
            NextSync::OnChange => None,
        }
    }

    /// How a task that called the cloud takes its next turn at its account's budget (`None`:
    /// not polled again until something changes): in the account's line at once when the
    /// budget sets its pace, else after [`requeue`](Self::requeue).
    pub fn turn(&self, spread: f64) -> Option<Turn> {
        let NextSync::After(delay) = self.next.bounded() else {
            return None;
        };
        Some(if self.budget_bound {
            Turn::InLine { round: delay }
        } else {
            Turn::Ask {
                interval: delay,
                after: self.requeue(spread)?,
            }
        })
    }
}

/// The interval the task asks to be polled at when all is well: `spec.pollInterval`, or the
/// phase's interval. `None`: not polled again until something changes.
pub fn desired_interval(
    task: &MpuRelayTask,
    phase: Option<Phase>,
    config: &PollConfig,
) -> Option<Duration> {
    let base = match task.spec.poll_interval {
        // A negative duration (the CRD refuses them; an old object might hold one) means the
        // phase's own interval; one under the CRD's minimum, that minimum (0 would stop polling
        // a running relay, a nanosecond would requeue at once).
        Some(d) if !d.is_negative() => Duration::from(d).max(MIN_POLL_INTERVAL),
        _ => match phase {
            Some(Phase::Running) | None => config.running,
            Some(Phase::WaitingForChannel) => config.waiting,
            Some(_) => config.stopped,
        },
    };
    // The CRD bounds pollInterval to 24 h, but objects stored before that rule (or written
    // around it) are read as they are: a requeue past the end of `Instant` would panic.
    (!base.is_zero()).then_some(base.min(MAX_INTERVAL))
}

/// No task is polled less often than daily, whatever its spec says.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The shortest `spec.pollInterval` (the CRD's minimum).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Decides what one poll means for the task. `floor` is the account budget's shortest
/// interval at which every task can be polled in turn.
pub fn decide(
    task: &MpuRelayTask,
    outcome: &Outcome,
    now: Timestamp,
    config: &PollConfig,
    floor: Duration,
) -> Decision {
    let none = MpuRelayTaskStatus::default();
    let prev = task.status.as_ref().unwrap_or(&none);
    let mut next = prev.clone();
    next.observed_generation = task.metadata.generation;
    let mut events = Vec::new();
    let stamp = Stamp {
        generation: task.metadata.generation,
        time: Time(now),
    };

    let (next_sync, class) = match outcome {
        Outcome::Polled(answer) => {
            let phase = Phase::from_code(answer.status);
            let changed = prev.phase != Some(phase);
            next.status_code = Some(answer.status);
            next.phase = Some(phase);
            next.request_id = Some(answer.request_id.clone());
            next.last_sync_time = Some(stamp.time.clone());
            if changed || prev.phase_since.is_none() {
                next.phase_since = Some(stamp.time.clone());
            }
            next.message = Some(phase_message(phase, answer.status));
            next.auto_stop_time = None;
            if phase == Phase::WaitingForChannel {
                let since = next.phase_since.as_ref().map_or(now, |t| t.0);
                // `phaseSince` comes from the status, which anyone with status rights can write:
                // a time near the end of the calendar must not overflow.
                let stop_at = since
                    .checked_add(jiff::SignedDuration::from_secs(
                        AUTO_STOP_AFTER.as_secs() as i64
                    ))
                    .unwrap_or(Timestamp::MAX);
                next.auto_stop_time = Some(Time(stop_at));
                let remaining = stop_at.duration_since(now);
                let remaining = Duration::try_from(remaining).unwrap_or_default();
                next.message = Some(format!(
                    "{}; the cloud stops it at {stop_at} unless the channel starts",
                    phase.description()
                ));
                if remaining < config.auto_stop_warning {
                    events.push(EventSpec {
                        severity: Severity::Warning,
                        reason: reasons::AUTO_STOP_SOON,
                        action: POLL_ACTION.to_string(),
                        note: format!(
                            "the task has waited for its channel since {since}; the cloud stops it at {stop_at}"
                        ),
                    });
                }
            }
            // A transition is news; a healthy phase seen for the first time is not (and a fleet
            // of new tasks would publish, and the recorder cache, one event each).
            let event = phase_event(prev.phase, phase);
            if changed && (prev.phase.is_some() || event.severity == Severity::Warning) {
                events.push(event);
            }
            let ready = if phase == Phase::Running { TRUE } else { FALSE };
            stamp.set(
                &mut next.conditions,
                conditions::READY,
                ready,
                phase.as_str(),
                phase.description(),
            );
            stamp.set(
                &mut next.conditions,
                conditions::SYNCED,
                TRUE,
                reasons::POLLED,
                "GetMPUTaskStatus succeeded",
            );
            // A relay the cloud stopped does not restart by itself: GitOps tools (kstatus
            // Failed, Argo CD Degraded) must say so instead of waiting for it forever. A relay
            // its user stopped is what they asked for, so it is not stalled.
            if stopped_by_the_cloud(phase) {
                stamp.set(
                    &mut next.conditions,
                    conditions::STALLED,
                    TRUE,
                    phase.as_str(),
                    &format!("{}; it will not restart by itself", phase.description()),
                );
            } else {
                stamp.set(
                    &mut next.conditions,
                    conditions::STALLED,
                    FALSE,
                    reasons::NOT_STALLED,
                    "polling makes progress",
                );
            }
            stamp.set(
                &mut next.conditions,
                conditions::RECONCILING,
                FALSE,
                reasons::POLLED,
                "the last poll succeeded",
            );
            let interval = desired_interval(task, Some(phase), config).map(|d| d.max(floor));
            (interval.map_or(NextSync::OnChange, NextSync::After), None)
        }
        Outcome::CloudFailed(err) => {
            let class = err.class();
            let failure = Failure {
                reason: err.reason(),
                text: err.to_string(),
                terminal: class == ErrorClass::Terminal,
                retry_after: err.retry_after(),
            };
            (
                failure.record(&mut next, &mut events, &stamp, config),
                Some(class),
            )
        }
        Outcome::AccountUnusable(problem) => {
            let failure = Failure {
                reason: problem.reason,
                text: problem.message.clone(),
                terminal: problem.permanent,
                retry_after: None,
            };
            let class = if failure.terminal {
                ErrorClass::Terminal
            } else {
                ErrorClass::Transient
            };
            (
                failure.record(&mut next, &mut events, &stamp, config),
                Some(class),
            )
        }
        Outcome::Internal(what) => {
            let failure = Failure {
                reason: reasons::INTERNAL_ERROR,
                text: format!("the operator failed on this task ({what}); it retries with backoff"),
                terminal: false,
                retry_after: None,
            };
            (
                failure.record(&mut next, &mut events, &stamp, config),
                Some(ErrorClass::Transient),
            )
        }
        Outcome::Suspended => {
            let why = "spec.suspend is true: polling is stopped";
            stamp.set(
                &mut next.conditions,
                conditions::SYNCED,
                FALSE,
                reasons::SUSPENDED,
                why,
            );
            stamp.set(
                &mut next.conditions,
                conditions::STALLED,
                FALSE,
                reasons::SUSPENDED,
                "suspended by the user",
            );
            stamp.set(
                &mut next.conditions,
                conditions::RECONCILING,
                FALSE,
                reasons::SUSPENDED,
                "suspended by the user",
            );
            (NextSync::OnChange, None)
        }
    };

    // The task's own interval, not the budget's stretch of it: the floor moves with every
    // task that joins or leaves the account, and belongs to the account's status.
    if let Outcome::Polled(_) = outcome {
        next.sync_interval = desired_interval(task, next.phase, config).map(Into::into);
    }
    let budget_bound = matches!(
        (next_sync, outcome),
        (NextSync::After(delay), Outcome::Polled(_)) if !floor.is_zero() && delay <= floor
    );

    // Error texts come from outside (the cloud, the API server): bounded like condition messages.
    if let Some(message) = next.message.as_mut()
        && message.chars().count() > MESSAGE_MAX_CHARS
    {
        *message = message.chars().take(MESSAGE_MAX_CHARS).collect();
    }
    let heartbeat_due = prev.last_sync_time.as_ref().is_none_or(|t| {
        now.duration_since(t.0)
            >= jiff::SignedDuration::try_from(config.heartbeat).unwrap_or(jiff::SignedDuration::MAX)
    });
    let write = significant(prev) != significant(&next)
        || (heartbeat_due && next.last_sync_time != prev.last_sync_time);

    Decision {
        status: next,
        budget_bound,
        write,
        events,
        next: next_sync,
        class,
    }
}

/// The status without what moves at every poll (timestamps of the poll, the request id), so
/// that an unchanged task causes no write.
pub(crate) fn significant(status: &MpuRelayTaskStatus) -> MpuRelayTaskStatus {
    MpuRelayTaskStatus {
        last_sync_time: None,
        request_id: None,
        ..status.clone()
    }
}

/// Exponential backoff derived from the status itself: the time since Synced turned False,
/// clamped to the configured bounds. Retries come 1 s, 2 s, 4 s, ... after the first failure,
/// and the streak survives operator restarts because it lives in the object.
fn backoff(status: &MpuRelayTaskStatus, now: Timestamp, config: &PollConfig) -> Duration {
    let failing_for = status
        .condition(conditions::SYNCED)
        .filter(|c| c.status == FALSE)
        .map(|c| {
            Duration::try_from(now.duration_since(c.last_transition_time.0)).unwrap_or_default()
        })
        .unwrap_or_default();
    failing_for.clamp(config.min_backoff, config.max_backoff)
}

/// A failed poll, as the status records it.
struct Failure {
    reason: &'static str,
    text: String,
    /// Retrying cannot help until something changes.
    terminal: bool,
    /// How long the cloud asked us to wait.
    retry_after: Option<Duration>,
}

impl Failure {
    /// Writes the failure into the conditions (keeping the last observed phase: the relay was
    /// in it when last seen) and says when to try again: slowly for terminal errors, which
    /// also stall the task and raise a warning, with backoff otherwise.
    fn record(
        self,
        status: &mut MpuRelayTaskStatus,
        events: &mut Vec<EventSpec>,
        stamp: &Stamp,
        config: &PollConfig,
    ) -> NextSync {
        stamp.set(
            &mut status.conditions,
            conditions::SYNCED,
            FALSE,
            self.reason,
            &self.text,
        );
        if self.terminal {
            stamp.set(
                &mut status.conditions,
                conditions::STALLED,
                TRUE,
                self.reason,
                &self.text,
            );
            stamp.set(
                &mut status.conditions,
                conditions::READY,
                FALSE,
                self.reason,
                &self.text,
            );
            stamp.set(
                &mut status.conditions,
                conditions::RECONCILING,
                FALSE,
                self.reason,
                "retrying cannot help until something changes",
            );
            status.message = Some(self.text.clone());
            events.push(EventSpec {
                severity: Severity::Warning,
                reason: self.reason,
                action: POLL_ACTION.to_string(),
                note: self.text,
            });
            return NextSync::After(config.stalled_retry);
        }
        // A passing error does not hide a relay the cloud stopped: it stays Stalled (GitOps tools
        // keep reporting the failure) and is not "reconciling" towards anything.
        if let Some(phase) = status.phase.filter(|p| stopped_by_the_cloud(*p)) {
            // Said again as the poll that saw the phase said it (nothing changes then), so that
            // a status without it, or with garbage in it, gets a Stalled condition too.
            stamp.set(
                &mut status.conditions,
                conditions::STALLED,
                TRUE,
                phase.as_str(),
                &format!("{}; it will not restart by itself", phase.description()),
            );
            stamp.set(
                &mut status.conditions,
                conditions::RECONCILING,
                FALSE,
                self.reason,
                "the relay stays stopped by the cloud while polling retries",
            );
        } else {
            stamp.set(
                &mut status.conditions,
                conditions::STALLED,
                FALSE,
                reasons::NOT_STALLED,
                "retrying",
            );
            stamp.set(
                &mut status.conditions,
                conditions::RECONCILING,
                TRUE,
                self.reason,
                &self.text,
            );
        }
        let delay = backoff(status, stamp.time.0, config);
        // The cloud may ask for a wait (x-acs-retry-after); a huge one must not park the task
        // for months, so it is capped at the longest backoff.
        let asked = self.retry_after.map(|after| after.min(config.max_backoff));
        NextSync::After(asked.map_or(delay, |after| delay.max(after)))
    }
}

/// Phases in which the cloud ended the relay without its user asking.
pub fn stopped_by_the_cloud(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Stopped | Phase::ChannelStopped | Phase::CdnError | Phase::StreamUrlError
    )
}

fn phase_message(phase: Phase, code: i64) -> String {
    match phase {
        Phase::Unknown => format!("{} ({code})", phase.description()),
        _ => phase.description().to_string(),
    }
}

fn phase_event(previous: Option<Phase>, phase: Phase) -> EventSpec {
    // A relay that stops without the user asking is what people need to hear about.
    let severity = match phase {
        Phase::Stopped
        | Phase::ChannelStopped
        | Phase::CdnError
        | Phase::StreamUrlError
        | Phase::Unknown => Severity::Warning,
        Phase::WaitingForChannel | Phase::Running | Phase::StoppedByUser => Severity::Normal,
    };
    let (note, action) = match previous {
        Some(prev) => (
            format!("{prev} -> {phase}: {}", phase.description()),
            format!("TransitionFrom{prev}"),
        ),
        None => (
            format!("first observed {phase}: {}", phase.description()),
            "FirstObservation".to_string(),
        ),
    };
    EventSpec {
        severity,
        reason: phase.as_str(),
        action,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_by_three_percent_either_way_and_tolerates_odd_draws() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(97));
        assert_eq!(jittered(d, 0.5), Duration::from_secs(100));
        assert_eq!(jittered(d, 1.0), Duration::from_secs(103));
        assert_eq!(jittered(d, 7.0), Duration::from_secs(103));
        assert_eq!(jittered(d, -1.0), Duration::from_secs(97));
        assert_eq!(jittered(d, f64::NAN), Duration::from_secs(100));
    }
    use crate::api::MpuRelayTaskSpec;
    use crate::cloud::response::{ApiError, CloudError};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    const T0: i64 = 1_790_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(T0 + seconds).unwrap()
    }

    fn task() -> MpuRelayTask {
        let mut t = MpuRelayTask::new(
            "relay",
            MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: "task".into(),
                account_ref: Some(crate::api::AccountRef {
                    kind: Default::default(),
                    name: "live".into(),
                }),
                poll_interval: None,
                suspend: false,
                ..Default::default()
            },
        );
        t.metadata.namespace = Some("ns".into());
        t.metadata.generation = Some(3);
        t
    }

    fn polled(code: i64) -> Outcome {
        Outcome::Polled(MpuTaskStatus {
            request_id: format!("req-{code}"),
            status: code,
        })
    }

    fn api_error(code: &str, http_status: u16) -> Outcome {
        Outcome::CloudFailed(crate::cloud::CloudError::api_for_test(code, http_status))
    }

    /// Applies a decision's status to the task, as the API server would after the write.
    fn after(mut t: MpuRelayTask, d: &Decision) -> MpuRelayTask {
        t.status = Some(d.status.clone());
        t
    }

    fn condition<'a>(d: &'a Decision, type_: &str) -> &'a Condition {
        d.status.condition(type_).unwrap()
    }

    #[test]
    fn running_task_is_ready_synced_and_polled_at_the_running_interval() {
        let d = decide(
            &task(),
            &polled(1),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(d.status.phase, Some(Phase::Running));
        assert_eq!(d.status.status_code, Some(1));
        assert_eq!(d.status.observed_generation, Some(3));
        assert_eq!(condition(&d, conditions::READY).status, TRUE);
        assert_eq!(condition(&d, conditions::SYNCED).status, TRUE);
        assert_eq!(condition(&d, conditions::STALLED).status, FALSE);
        assert!(
            d.status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(d.next, NextSync::After(Duration::from_secs(30)));
        assert!(d.write);
    }

    #[test]
    fn a_transition_event_does_not_merge_with_the_first_observation_of_that_phase() {
        let config = PollConfig::default();
        let first = decide(&task(), &polled(5), at(0), &config, Duration::ZERO);
        let running = decide(
            &after(task(), &first),
            &polled(1),
            at(10),
            &config,
            Duration::ZERO,
        );
        let t = after(after(task(), &first), &running);
        let again = decide(&t, &polled(5), at(20), &config, Duration::ZERO);
        let (a, b) = (&first.events[0], &again.events[0]);
        assert_eq!((a.reason, b.reason), ("CdnError", "CdnError"));
        // The recorder merges events by (reason, action): the actions must differ.
        assert_ne!(a.action, b.action);
        assert_eq!(b.note.split(':').next(), Some("Running -> CdnError"));
    }

    #[test]
    fn a_healthy_first_observation_publishes_no_event_and_a_broken_one_warns() {
        let config = PollConfig::default();
        for code in [0, 1, 3] {
            let d = decide(&task(), &polled(code), at(0), &config, Duration::ZERO);
            assert!(d.events.is_empty(), "code {code}: {:?}", d.events);
        }
        let d = decide(&task(), &polled(6), at(0), &config, Duration::ZERO);
        assert_eq!(d.events[0].severity, Severity::Warning);
        assert!(
            d.events[0]
                .note
                .starts_with("first observed StreamUrlError")
        );
    }

    #[test]
    fn a_poll_interval_of_centuries_is_capped_at_a_day() {
        let mut t = task();
        t.spec.poll_interval = Some("900000000000000h".parse().unwrap());
        let d = decide(
            &t,
            &polled(1),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(d.next, NextSync::After(MAX_INTERVAL));
    }

    #[test]
    fn a_phase_since_at_the_end_of_time_does_not_overflow() {
        let mut t = task();
        t.status = Some(MpuRelayTaskStatus {
            phase: Some(Phase::WaitingForChannel),
            phase_since: Some(Time(Timestamp::MAX)),
            last_sync_time: Some(Time(Timestamp::MAX)),
            ..Default::default()
        });
        let d = decide(
            &t,
            &polled(0),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(d.status.auto_stop_time, Some(Time(Timestamp::MAX)));
        // The ordinary interval of a waiting task: the far-off dates shorten or stretch nothing.
        assert_eq!(d.next, NextSync::After(PollConfig::default().waiting));
    }

    #[test]
    fn a_huge_retry_after_from_the_cloud_is_capped_at_the_longest_backoff() {
        let throttled = Outcome::CloudFailed(CloudError::Api(Box::new(ApiError {
            http_status: 400,
            code: "Throttling.User".into(),
            message: "m".into(),
            request_id: "r".into(),
            host_id: None,
            recommend: None,
            retry_after: Some(Duration::from_secs(365 * 24 * 3600)),
        })));
        let config = PollConfig::default();
        let d = decide(&task(), &throttled, at(0), &config, Duration::ZERO);
        assert_eq!(d.next, NextSync::After(config.max_backoff));
    }

    #[test]
    fn every_stopped_phase_is_not_ready_with_the_phase_as_reason() {
        for code in 2..=6 {
            let d = decide(
                &task(),
                &polled(code),
                at(0),
                &PollConfig::default(),
                Duration::ZERO,
            );
            let ready = condition(&d, conditions::READY);
            assert_eq!(ready.status, FALSE);
            assert_eq!(ready.reason, Phase::from_code(code).as_str());
            let stalled = condition(&d, conditions::STALLED);
            let by_cloud = code != 3;
            assert_eq!(
                stalled.status,
                if by_cloud { TRUE } else { FALSE },
                "code {code}"
            );
            assert_eq!(d.next, NextSync::After(Duration::from_secs(600)));
        }
    }

    #[test]
    fn unknown_code_keeps_the_raw_value_and_warns() {
        let d = decide(
            &task(),
            &polled(42),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(d.status.phase, Some(Phase::Unknown));
        assert_eq!(d.status.status_code, Some(42));
        assert!(d.status.message.as_deref().unwrap().contains("(42)"));
        assert_eq!(d.events[0].severity, Severity::Warning);
    }

    #[test]
    fn unexpected_stops_raise_warnings_and_user_stops_do_not() {
        let running = after(
            task(),
            &decide(
                &task(),
                &polled(1),
                at(0),
                &PollConfig::default(),
                Duration::ZERO,
            ),
        );
        for (code, severity) in [
            (2, Severity::Warning),
            (3, Severity::Normal),
            (4, Severity::Warning),
            (5, Severity::Warning),
            (6, Severity::Warning),
        ] {
            let d = decide(
                &running,
                &polled(code),
                at(10),
                &PollConfig::default(),
                Duration::ZERO,
            );
            assert_eq!(d.events.len(), 1, "code {code}");
            assert_eq!(d.events[0].severity, severity, "code {code}");
            assert_eq!(
                d.events[0].note.split(':').next().unwrap(),
                format!("Running -> {}", Phase::from_code(code))
            );
        }
    }

    #[test]
    fn unchanged_poll_writes_nothing_and_publishes_nothing() {
        let config = PollConfig::default();
        let first = decide(&task(), &polled(1), at(0), &config, Duration::ZERO);
        let t = after(task(), &first);
        let second = decide(&t, &polled(1), at(30), &config, Duration::ZERO);
        assert!(!second.write, "only lastSyncTime and requestId moved");
        assert!(second.events.is_empty());
    }

    #[test]
    fn heartbeat_rewrites_last_sync_time_when_due() {
        let config = PollConfig::default();
        let t = after(
            task(),
            &decide(&task(), &polled(1), at(0), &config, Duration::ZERO),
        );
        assert!(!decide(&t, &polled(1), at(3599), &config, Duration::ZERO).write);
        let d = decide(&t, &polled(1), at(3600), &config, Duration::ZERO);
        assert!(d.write);
        assert_eq!(d.status.last_sync_time, Some(Time(at(3600))));
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let config = PollConfig::default();
        let running = after(
            task(),
            &decide(&task(), &polled(1), at(0), &config, Duration::ZERO),
        );
        let cdn = decide(&running, &polled(5), at(60), &config, Duration::ZERO);
        assert_eq!(
            condition(&cdn, conditions::READY).last_transition_time,
            Time(at(60))
        );
        assert_eq!(
            condition(&cdn, conditions::SYNCED).last_transition_time,
            Time(at(0))
        );
        assert_eq!(cdn.status.phase_since, Some(Time(at(60))));
        let stream = decide(
            &after(running, &cdn),
            &polled(6),
            at(90),
            &config,
            Duration::ZERO,
        );
        assert_eq!(
            condition(&stream, conditions::READY).last_transition_time,
            Time(at(60)),
            "False -> False keeps the time even though the reason changed"
        );
        assert_eq!(stream.status.phase_since, Some(Time(at(90))));
    }

    #[test]
    fn budget_floor_stretches_the_next_poll_but_not_the_status() {
        let d = decide(
            &task(),
            &polled(1),
            at(0),
            &PollConfig::default(),
            Duration::from_secs(45),
        );
        assert_eq!(d.next, NextSync::After(Duration::from_secs(45)));
        assert!(d.budget_bound);
        assert_eq!(
            d.status.sync_interval.map(Duration::from),
            Some(Duration::from_secs(30)),
            "the task's own interval; the account's status shows the budget's"
        );
        let free = decide(
            &task(),
            &polled(1),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert!(!free.budget_bound);
    }

    #[test]
    fn a_task_the_budget_paces_takes_its_next_turn_in_line_and_any_other_comes_back_to_ask() {
        let config = PollConfig::default();
        let bound = decide(&task(), &polled(1), at(0), &config, Duration::from_secs(45));
        assert_eq!(
            bound.turn(0.5),
            Some(Turn::InLine {
                round: Duration::from_secs(45)
            }),
            "a round of the floor"
        );
        let free = decide(&task(), &polled(1), at(0), &config, Duration::ZERO);
        assert_eq!(
            free.turn(0.5),
            Some(Turn::Ask {
                interval: Duration::from_secs(30),
                after: Duration::from_secs(30)
            })
        );
        // A failure's backoff is never shortened, and never lined up as the floor's round.
        let failed = decide(
            &task(),
            &Outcome::CloudFailed(CloudError::Transport("reset".into())),
            at(0),
            &config,
            Duration::from_secs(45),
        );
        let NextSync::After(backoff) = failed.next else {
            panic!("{:?}", failed.next)
        };
        assert!(matches!(
            failed.turn(0.5),
            Some(Turn::Ask { interval, .. }) if interval == backoff
        ));
        let suspended = decide(&task(), &Outcome::Suspended, at(0), &config, Duration::ZERO);
        assert_eq!(suspended.turn(0.5), None);
    }

    #[test]
    fn a_moving_budget_floor_never_rewrites_an_unchanged_task() {
        let config = PollConfig::default();
        let t = after(
            task(),
            &decide(&task(), &polled(1), at(0), &config, Duration::from_secs(40)),
        );
        for floor in [0, 42, 60, 600] {
            let d = decide(&t, &polled(1), at(40), &config, Duration::from_secs(floor));
            assert!(!d.write, "floor {floor}s rewrote the status");
        }
    }

    #[test]
    fn poll_interval_overrides_the_phase_but_not_the_floor() {
        let mut t = task();
        t.spec.poll_interval = Some("5s".parse().unwrap());
        let config = PollConfig::default();
        assert_eq!(
            decide(&t, &polled(1), at(0), &config, Duration::ZERO).next,
            NextSync::After(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&t, &polled(2), at(0), &config, Duration::ZERO).next,
            NextSync::After(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&t, &polled(1), at(0), &config, Duration::from_secs(9)).next,
            NextSync::After(Duration::from_secs(9))
        );
    }

    #[test]
    fn stopped_tasks_are_not_polled_again_when_the_stopped_interval_is_zero() {
        let config = PollConfig {
            stopped: Duration::ZERO,
            ..PollConfig::default()
        };
        let d = decide(&task(), &polled(3), at(0), &config, Duration::ZERO);
        assert_eq!(d.next, NextSync::OnChange);
        assert_eq!(d.status.sync_interval, None);
    }

    #[test]
    fn transient_errors_back_off_exponentially_from_the_first_failure() {
        let config = PollConfig::default();
        let mut t = after(
            task(),
            &decide(&task(), &polled(1), at(0), &config, Duration::ZERO),
        );
        let mut delays = Vec::new();
        let mut now = 10;
        for _ in 0..12 {
            let d = decide(
                &t,
                &api_error("InternalError", 500),
                at(now),
                &config,
                Duration::ZERO,
            );
            let NextSync::After(delay) = d.next else {
                panic!()
            };
            delays.push(delay.as_secs());
            now += delay.as_secs() as i64;
            t = after(t, &d);
        }
        assert_eq!(delays, [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let synced = t
            .status
            .as_ref()
            .unwrap()
            .condition(conditions::SYNCED)
            .unwrap();
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            (FALSE, "TransientError")
        );
        // The last known phase stays: the relay was running when last seen.
        assert_eq!(t.status.as_ref().unwrap().phase, Some(Phase::Running));
        assert_eq!(
            t.status
                .as_ref()
                .unwrap()
                .condition(conditions::STALLED)
                .unwrap()
                .status,
            FALSE
        );
    }

    #[test]
    fn terminal_errors_stall_the_task_warn_and_retry_slowly() {
        let config = PollConfig::default();
        let d = decide(
            &task(),
            &api_error("InvalidTask.NotFound", 404),
            at(0),
            &config,
            Duration::ZERO,
        );
        let stalled = condition(&d, conditions::STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            (TRUE, "TaskNotFound")
        );
        assert_eq!(condition(&d, conditions::READY).status, FALSE);
        assert_eq!(d.next, NextSync::After(config.stalled_retry));
        assert_eq!(d.events[0].severity, Severity::Warning);
        assert_eq!(d.class, Some(ErrorClass::Terminal));
    }

    #[test]
    fn clock_skew_is_named_as_the_cause() {
        let d = decide(
            &task(),
            &api_error("InvalidTimeStamp.Expired", 400),
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(condition(&d, conditions::STALLED).reason, "ClockSkew");
    }

    #[test]
    fn unusable_account_stalls_and_recovers_on_the_next_good_poll() {
        let config = PollConfig::default();
        let missing = Outcome::AccountUnusable(Problem {
            reason: "SecretNotFound",
            message: "Secret ns/\"ak\" not found".into(),
            permanent: true,
        });
        let d = decide(&task(), &missing, at(0), &config, Duration::ZERO);
        assert_eq!(condition(&d, conditions::STALLED).reason, "SecretNotFound");
        assert!(d.status.message.as_deref().unwrap().contains("\"ak\""));
        let ok = decide(
            &after(task(), &d),
            &polled(1),
            at(5),
            &config,
            Duration::ZERO,
        );
        assert_eq!(condition(&ok, conditions::STALLED).status, FALSE);
        assert_eq!(condition(&ok, conditions::READY).status, TRUE);
    }

    #[test]
    fn throttling_backs_off_at_least_as_long_as_the_cloud_asks() {
        let outcome = Outcome::CloudFailed(CloudError::Api(Box::new(ApiError {
            http_status: 400,
            code: "Throttling.User".into(),
            message: "Request was denied due to user flow control.".into(),
            request_id: "r".into(),
            host_id: None,
            recommend: None,
            retry_after: Some(Duration::from_secs(7)),
        })));
        let d = decide(
            &task(),
            &outcome,
            at(0),
            &PollConfig::default(),
            Duration::ZERO,
        );
        assert_eq!(condition(&d, conditions::SYNCED).reason, "Throttled");
        assert_eq!(d.next, NextSync::After(Duration::from_secs(7)));
    }

    #[test]
    fn suspended_task_stops_polling_and_says_so() {
        let config = PollConfig::default();
        let t = after(
            task(),
            &decide(&task(), &polled(1), at(0), &config, Duration::ZERO),
        );
        let d = decide(&t, &Outcome::Suspended, at(5), &config, Duration::ZERO);
        assert_eq!(d.next, NextSync::OnChange);
        assert_eq!(condition(&d, conditions::SYNCED).reason, "Suspended");
        assert_eq!(
            d.status.phase,
            Some(Phase::Running),
            "the last observed status is kept"
        );
        assert!(d.write);
    }

    #[test]
    fn waiting_task_shows_the_auto_stop_time_and_warns_in_its_last_three_days() {
        let config = PollConfig::default();
        let first = decide(&task(), &polled(0), at(0), &config, Duration::ZERO);
        let stop_at = at(30 * 24 * 3600);
        assert_eq!(first.status.auto_stop_time, Some(Time(stop_at)));
        assert!(
            first
                .events
                .iter()
                .all(|e| e.reason != reasons::AUTO_STOP_SOON)
        );
        assert_eq!(first.next, NextSync::After(Duration::from_secs(60)));
        let t = after(task(), &first);
        let day_26 = decide(&t, &polled(0), at(26 * 24 * 3600), &config, Duration::ZERO);
        assert!(day_26.events.is_empty());
        let day_28 = decide(&t, &polled(0), at(28 * 24 * 3600), &config, Duration::ZERO);
        assert_eq!(day_28.events[0].reason, reasons::AUTO_STOP_SOON);
        assert_eq!(day_28.events[0].severity, Severity::Warning);
        // Once running, the auto-stop no longer applies.
        let running = decide(&t, &polled(1), at(3600), &config, Duration::ZERO);
        assert_eq!(running.status.auto_stop_time, None);
    }
}
