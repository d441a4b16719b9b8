//! When a task is polled, as functions the reconcile shell ([`super::task`]) runs and the
//! pacing simulation (`tests/pacing_simulation.rs`) drives on its virtual clock: the gate
//! before a call (the leader's fence, the budget's admission), what a call's result tells the
//! budget, and the plan after [`decide`](super::decide::decide): whether to write, where the
//! next turn comes from (the budget's line or the task's own interval) or whether the task
//! leaves every budget, and how refused status writes are retried.
//!
//! Time and randomness are arguments: nothing here reads a clock or draws a number. The
//! budget calls ([`Budget::admit`], [`Budget::next_turn`]) move the budget's own state and
//! take the time they are given.

use std::time::{Duration, Instant};

use super::decide::{self, Decision, NextSync, PollConfig, jittered};
use crate::api::MpuRelayTask;
use crate::budget::{Admission, Budget, Call, Feedback, Turn};
use crate::cloud::{CloudError, ErrorClass, MpuTaskStatus};

/// How long a leader that cannot prove its Lease waits before it looks again.
pub const FENCE_WAIT: Duration = Duration::from_secs(1);

/// The interval a task asks its account's budget for: its own ([`decide::desired_interval`]),
/// or, for a task that would not be polled again, the longest configured one (it is asking,
/// so it is polled once more).
pub fn budget_interval(task: &MpuRelayTask, config: &PollConfig) -> Duration {
    let phase = task.status.as_ref().and_then(|s| s.phase);
    decide::desired_interval(task, phase, config).unwrap_or(config.stopped.max(config.running))
}

/// Whether a task may call the cloud now.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Not now: come back after this long.
    Wait(Duration),
    /// Call now; report what came of `call` to the budget. `floor` is the budget's shortest
    /// interval at which every member is polled in turn, and `granted` when it granted.
    Call {
        floor: Duration,
        call: Call,
        granted: Instant,
    },
}

/// Asks `budget` for a call for `task` at `now` (`hinted`: in the lane of hinted calls, at that
/// share of the rate), unless the leader's fence is closed (`may_call` false): then no slot is
/// spent and the task looks again after [`FENCE_WAIT`].
pub fn gate<K: Clone + Eq + std::hash::Hash>(
    may_call: bool,
    budget: &Budget<K>,
    task: &K,
    desired: Duration,
    hinted: Option<f64>,
    now: Instant,
) -> Gate {
    if !may_call {
        return Gate::Wait(FENCE_WAIT);
    }
    let admission = match hinted {
        Some(share) => budget.expedite(task, desired, share, now),
        None => budget.admit(task, desired, now),
    };
    match admission {
        Admission::Wait(delay) => Gate::Wait(delay),
        Admission::Go { floor, call } => Gate::Call {
            floor,
            call,
            granted: now,
        },
    }
}

/// What a call's result tells the budget about the cloud's rate.
pub fn feedback(result: &Result<MpuTaskStatus, CloudError>) -> Feedback {
    match result {
        Ok(_) => Feedback::Answered,
        Err(e) if e.class() == ErrorClass::Throttled => Feedback::Throttled,
        Err(CloudError::Api(_)) => Feedback::Answered,
        Err(_) => Feedback::NoAnswer,
    }
}

/// What the shell does after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Write the decided status (false: nothing but timestamps moved).
    pub write: bool,
    pub next: Next,
}

/// Where a task's next reconcile comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It called: the budget that granted the call (at `granted`) places its next turn, in
    /// the account's line or after its own interval, as `turn` says ([`Budget::next_turn`]).
    Turn { turn: Turn, granted: Instant },
    /// No call was made, so no budget paces it: it comes back after this long and asks.
    After(Duration),
    /// Not polled again until something changes: it leaves every budget.
    Release,
}

/// The plan after `decision`: `granted` is when a budget granted the call (`None`: no call
/// was made), `spread` a draw from [0, 1) for the jitter.
pub fn plan(decision: &Decision, granted: Option<Instant>, spread: f64) -> Plan {
    let next = match (decision.turn(spread), granted) {
        (None, _) => Next::Release,
        (Some(turn), Some(granted)) => Next::Turn { turn, granted },
        (Some(Turn::Ask { after, .. }), None) => Next::After(after),
        (Some(Turn::InLine { round }), None) => Next::After(round),
    };
    Plan {
        write: decision.write,
        next,
    }
}

impl Next {
    /// When the task comes back (`None`: only on a change), its turn taken at `budget` (the
    /// one that served its call) at `now`.
    pub fn requeue<K: Clone + Eq + std::hash::Hash>(
        &self,
        budget: Option<&Budget<K>>,
        task: &K,
        now: Instant,
    ) -> Option<Duration> {
        match (*self, budget) {
            (Next::Turn { turn, granted }, Some(budget)) => {
                Some(budget.next_turn(task, &turn, granted, now))
            }
            // `plan` gives a turn only for a call, and a call has its budget.
            (Next::Turn { turn, .. }, None) => Some(match turn {
                Turn::Ask { after, .. } => after,
                Turn::InLine { round } => round,
            }),
            (Next::After(delay), _) => Some(delay),
            (Next::Release, _) => None,
        }
    }
}

/// How long a task that will not be polled again (until a change) keeps a refused write.
pub const NO_POLL_SCHEDULED: Duration = Duration::from_secs(24 * 3600);

/// Capped exponential backoff: 1 s doubling to a minute, spread ([`jittered`]). `attempts`
/// counts from 1.
pub fn backoff(attempts: u32, spread: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    jittered(
        Duration::from_secs(1u64 << exponent).min(Duration::from_secs(60)),
        spread,
    )
}

/// A refused status write, as it is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRetry {
    /// Write again after this long.
    pub after: Duration,
    /// Until when the refused status is worth writing: the task's next poll decides afresh.
    pub until: Instant,
}

/// The first refusal of a status write, by a reconcile that would come back after `next`
/// (`None`: only on a change): written again with [`backoff`], never past the next poll.
pub fn first_refusal(next: Option<Duration>, now: Instant, spread: f64) -> WriteRetry {
    let until = now
        .checked_add(next.unwrap_or(NO_POLL_SCHEDULED))
        .unwrap_or(now);
    WriteRetry {
        after: backoff(1, spread).min(until.saturating_duration_since(now)),
        until,
    }
}

/// Whether a refused write kept for generation `kept` (until `until`) is written again now,
/// instead of polling: only for the same spec, before its next poll is due.
pub fn retries_refused_write(
    kept: Option<i64>,
    generation: Option<i64>,
    until: Instant,
    now: Instant,
) -> bool {
    kept == generation && now < until
}

/// When a task whose refused write was written again (`refused_again`: and refused, its
/// `attempts`-th refusal) comes back: at its next poll, or for another try before it.
pub fn after_write_retry(
    refused_again: bool,
    attempts: u32,
    until: Instant,
    now: Instant,
    spread: f64,
) -> Duration {
    let to_poll = until.saturating_duration_since(now);
    if refused_again {
        backoff(attempts, spread).min(to_poll)
    } else {
        to_poll
    }
}

/// When a task whose reconcile panicked comes back, from what deciding its `InternalError`
/// gave (`None`: deciding or writing it panicked too; the error's backoff applies then).
pub fn after_panic(next: Option<NextSync>, spread: f64) -> Option<Duration> {
    match next {
        Some(NextSync::After(delay)) => Some(jittered(delay, spread)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MpuRelayTaskStatus, Phase};
    use crate::budget::{Budgets, CloudAccount, Limit};

    fn decision(next: NextSync, budget_bound: bool, write: bool) -> Decision {
        Decision {
            status: MpuRelayTaskStatus::default(),
            budget_bound,
            write,
            events: Vec::new(),
            next,
            class: None,
        }
    }

    fn budget(now: Instant) -> std::sync::Arc<Budget<u32>> {
        Budgets::new(now).join(
            &CloudAccount {
                uid: "1".into(),
                host: "live.aliyuncs.com".into(),
            },
            "ClusterMpuRelayAccount live",
            Limit {
                qps: 10.0,
                margin: 0.03,
            },
            now,
        )
    }

    #[test]
    fn a_closed_fence_waits_a_second_and_spends_no_slot() {
        let now = Instant::now();
        let budget = budget(now);
        let second = Duration::from_secs(1);
        assert_eq!(
            gate(false, &budget, &1, second, None, now),
            Gate::Wait(FENCE_WAIT)
        );
        assert_eq!(budget.view(now).members, 0);
        let Gate::Call { granted, .. } = gate(true, &budget, &1, second, None, now) else {
            panic!("the first call of an idle budget goes at once");
        };
        assert_eq!(granted, now);
        // The next task waits for its slot, a tenth of a second (less the margin) on.
        let Gate::Wait(wait) = gate(true, &budget, &2, second, None, now) else {
            panic!("a second call at the same instant waits");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(110));
    }

    #[test]
    fn a_task_asks_the_budget_for_its_own_interval_or_the_longest_when_not_polled() {
        let config = PollConfig::default();
        let mut task = MpuRelayTask::new(
            "t",
            crate::api::MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: "task".into(),
                account_ref: None,
                poll_interval: None,
                suspend: false,
                ..Default::default()
            },
        );
        assert_eq!(budget_interval(&task, &config), config.running);
        task.status = Some(MpuRelayTaskStatus {
            phase: Some(Phase::WaitingForChannel),
            ..Default::default()
        });
        assert_eq!(budget_interval(&task, &config), config.waiting);
        let never = PollConfig {
            stopped: Duration::ZERO,
            ..config.clone()
        };
        task.status = Some(MpuRelayTaskStatus {
            phase: Some(Phase::StoppedByUser),
            ..Default::default()
        });
        assert_eq!(budget_interval(&task, &never), config.running);
    }

    #[test]
    fn only_throttling_and_answers_count_as_feedback_on_the_rate() {
        let ok = Ok(MpuTaskStatus {
            request_id: "r".into(),
            status: 1,
        });
        assert_eq!(feedback(&ok), Feedback::Answered);
        assert_eq!(feedback(&Err(CloudError::Timeout)), Feedback::NoAnswer);
    }

    #[test]
    fn a_decision_without_a_next_poll_leaves_every_budget() {
        let now = Instant::now();
        let p = plan(&decision(NextSync::OnChange, false, true), Some(now), 0.5);
        assert_eq!(
            p,
            Plan {
                write: true,
                next: Next::Release
            }
        );
        assert_eq!(p.next.requeue(Some(&*budget(now)), &1, now), None);
        let p = plan(&decision(NextSync::OnChange, false, false), None, 0.5);
        assert_eq!(p.next, Next::Release);
        assert!(!p.write);
    }

    #[test]
    fn a_task_that_called_takes_its_turn_at_the_budget_that_served_it() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let bound = plan(
            &decision(NextSync::After(second), true, false),
            Some(now),
            0.5,
        );
        assert_eq!(
            bound.next,
            Next::Turn {
                turn: Turn::InLine { round: second },
                granted: now
            }
        );
        let own = plan(
            &decision(NextSync::After(second), false, false),
            Some(now),
            0.0,
        );
        assert_eq!(
            own.next,
            Next::Turn {
                turn: Turn::Ask {
                    interval: second,
                    after: jittered(second, 0.0)
                },
                granted: now
            }
        );
        // An idle budget: its line is empty, the task comes back after its own interval.
        let b = budget(now);
        let _ = gate(true, &b, &1, second, None, now);
        let back = own.next.requeue(Some(&*b), &1, now).unwrap();
        assert_eq!(back, jittered(second, 0.0));
    }

    #[test]
    fn a_task_that_made_no_call_comes_back_after_its_delay_and_asks() {
        let minute = Duration::from_secs(60);
        let p = plan(&decision(NextSync::After(minute), false, true), None, 1.0);
        assert_eq!(p.next, Next::After(jittered(minute, 1.0)));
        let p = plan(&decision(NextSync::After(minute), true, true), None, 1.0);
        assert_eq!(p.next, Next::After(minute));
        assert_eq!(
            p.next.requeue::<u32>(None, &1, Instant::now()),
            Some(minute)
        );
    }

    #[test]
    fn a_refused_write_is_retried_after_a_second_doubling_to_a_minute_never_past_the_next_poll() {
        let now = Instant::now();
        let s = |n| backoff(n, 0.5).as_secs_f64();
        assert_eq!((s(1), s(2), s(3), s(7)), (1.0, 2.0, 4.0, 60.0));
        assert_eq!(s(u32::MAX), 60.0);
        let first = first_refusal(Some(Duration::from_secs(30)), now, 0.5);
        assert_eq!(first.after, Duration::from_secs(1));
        assert_eq!(first.until, now + Duration::from_secs(30));
        let soon = first_refusal(Some(Duration::from_millis(300)), now, 0.5);
        assert_eq!(soon.after, Duration::from_millis(300));
        let never = first_refusal(None, now, 0.5);
        assert_eq!(never.until, now + NO_POLL_SCHEDULED);

        let until = now + Duration::from_secs(30);
        assert!(retries_refused_write(Some(1), Some(1), until, now));
        assert!(!retries_refused_write(Some(1), Some(2), until, now));
        assert!(!retries_refused_write(Some(1), Some(1), until, until));
        assert_eq!(
            after_write_retry(false, 2, until, now, 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            after_write_retry(true, 3, until, now, 0.5),
            Duration::from_secs(4)
        );
        assert_eq!(
            after_write_retry(true, 9, now + Duration::from_secs(5), now, 0.5),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_panicked_task_comes_back_after_its_backoff_or_errs_when_deciding_panicked_too() {
        let d = Duration::from_secs(2);
        assert_eq!(
            after_panic(Some(NextSync::After(d)), 0.5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(after_panic(Some(NextSync::OnChange), 0.5), None);
        assert_eq!(after_panic(None, 0.5), None);
    }
}
