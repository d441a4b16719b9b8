//! One task's reconcile: the thin I/O around [`decide`](super::decide), in this order:
//! account (may this task use it? what does it resolve to?) -> budget admission -> cloud call
//! -> decide -> status write (only on change) -> events -> requeue (for the next turn at the
//! budget, taken at once when the account's line of slots already reaches that far).
//!
//! Never sleeps: a task without a budget slot is requeued for the slot it was given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use rand::Rng;
use tracing::{Instrument, debug, debug_span, warn};

use super::account::{AccountKey, Resolved};
use super::decide::{self, NextSync, Outcome, decide};
use super::{Context, Error, TaskKey, jitter};
use crate::api::{MpuRelayTask, conditions};
use crate::budget::{Admission, Feedback, Turn};
use crate::cloud::client::StatusQuery;
use crate::cloud::response::reasons as cloud_reasons;
use crate::cloud::{CloudError, ErrorClass};

/// One reconcile of one task.
pub async fn reconcile(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = task.namespace().ok_or(Error::MissingNamespace)?;
    let key = TaskKey::new(
        &namespace,
        task.metadata.name.as_deref().unwrap_or_default(),
    );
    ctx.metrics.record_reconcile();
    if let Some(action) = retry_refused_write(&task, &namespace, &key, &ctx).await {
        return Ok(action);
    }

    let mut floor = Duration::ZERO;
    // The budget of the account that served a call, and when it granted the call: the task's
    // next turn is taken there.
    let mut served_by = None;
    let outcome = if task.spec.suspend {
        ctx.budgets.release_everywhere(&key);
        Outcome::Suspended
    } else {
        match ctx.accounts.for_task(&task, &namespace) {
            Err(problem) => Outcome::AccountUnusable(problem),
            Ok((account, object)) => match ctx.accounts.resolver.resolve(&object).await {
                Err(problem) => Outcome::AccountUnusable(problem),
                Ok(resolved) => match poll(&task, &key, &account, &resolved, &ctx).await {
                    Polled::Wait(delay) => return Ok(Action::requeue(coalesced(delay))),
                    Polled::Called {
                        outcome,
                        floor: f,
                        granted,
                    } => {
                        floor = f;
                        served_by = Some((resolved.budget.clone(), granted));
                        outcome
                    }
                },
            },
        }
    };
    let decision = decide(&task, &outcome, jiff::Timestamp::now(), &ctx.poll, floor);
    if let Some(class) = decision.class {
        let why = decision
            .status
            .condition(conditions::SYNCED)
            .map(|c| c.message.as_str())
            .unwrap_or_default();
        warn!(task = %key, ?class, error = why, "polling failed");
    }
    ctx.publish(&*task, &decision.events).await;
    let next = decision
        .turn(rand::rng().random_range(0.0..1.0))
        .map(|turn| match (&served_by, turn) {
            (Some((budget, granted)), turn) => {
                budget.next_turn(&key, &turn, *granted, Instant::now())
            }
            // No call was made, so no budget paces this task: it asks when it comes back.
            (None, Turn::Ask { after, .. }) => after,
            (None, Turn::InLine { round }) => round,
        });
    if next.is_none() {
        ctx.budgets.release_everywhere(&key);
    }
    if decision.write {
        let api: Api<MpuRelayTask> = Api::namespaced(ctx.client.clone(), &namespace);
        if let Err(e) = ctx.write_status(api, &*task, &decision.status).await {
            // What the cloud said is kept and written again on its own: retrying the whole
            // reconcile would call the cloud again at every retry.
            ctx.metrics.record_reconcile_error(e.reason());
            warn!(task = %key, error = %e, "writing the status failed; it is retried without a new cloud call");
            let next_poll = Instant::now() + next.unwrap_or(NO_POLL_SCHEDULED);
            let retry =
                write_retry_delay(1).min(next_poll.saturating_duration_since(Instant::now()));
            ctx.refused_writes.remember(
                key,
                RefusedWrite {
                    status: decision.status,
                    generation: task.metadata.generation,
                    next_poll,
                    attempts: 1,
                },
            );
            return Ok(Action::requeue(retry));
        }
    }
    Ok(next.map_or_else(Action::await_change, |delay| {
        Action::requeue(coalesced(delay))
    }))
}

/// The grid every poll's requeue is rounded up to (see [`coalesced`]).
const WAKE_GRID: Duration = Duration::from_millis(4);

/// `delay`, lengthened by less than [`WAKE_GRID`] so that it ends on a grid shared by every
/// task of this process: tasks due within the same 4 ms wake the runtime once, together.
///
/// Much of a poll's CPU was waking up for it: with each account's slots at their own phase,
/// 970 polls/s over 100 accounts were about 930 separate wake-ups of the operator's thread a
/// second (its voluntary context switches), and a fresh operator whose accounts happened to
/// start in step (one wake-up serving many polls) spent half the CPU per poll, 0.072 against
/// 0.148 s per 1 000 at 10 000 tasks (`make profile`, BENCHMARKS.md). Rounding up never makes
/// a call earlier than its budget slot, and the window guard still checks every call; 4 ms
/// is within the guard's 5.9 ms of tolerance for calls that start late (3 % margin).
fn coalesced(delay: Duration) -> Duration {
    coalesced_at(delay, Instant::now(), wake_epoch())
}

fn wake_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn coalesced_at(delay: Duration, now: Instant, epoch: Instant) -> Duration {
    let Some(due) = now.checked_add(delay) else {
        return delay;
    };
    let grid = WAKE_GRID.as_nanos();
    let offset = due.saturating_duration_since(epoch).as_nanos() % grid;
    if offset == 0 {
        return delay;
    }
    // `grid - offset` is under 4 ms in nanoseconds: it fits a u64.
    delay.saturating_add(Duration::from_nanos((grid - offset) as u64))
}

/// How long a task that will not be polled again (until a change) keeps a refused write.
const NO_POLL_SCHEDULED: Duration = Duration::from_secs(24 * 3600);

/// 1 s doubling to a minute, spread.
fn write_retry_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    jitter(Duration::from_secs(1u64 << exponent).min(Duration::from_secs(60)))
}

/// A status the API server refused, kept to be written again.
#[derive(Clone, Debug)]
pub struct RefusedWrite {
    status: crate::api::MpuRelayTaskStatus,
    /// The spec it was decided for: a changed spec is polled afresh instead.
    generation: Option<i64>,
    /// When the task is due for its next cloud call anyway.
    next_poll: Instant,
    attempts: u32,
}

/// Refused status writes by task. Bounded: an entry lives at most until its task's next poll
/// (a deleted task's entry is dropped with the next one remembered after that).
#[derive(Default)]
pub struct RefusedWrites(std::sync::Mutex<std::collections::HashMap<TaskKey, RefusedWrite>>);

impl RefusedWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<TaskKey, RefusedWrite>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, task: TaskKey, write: RefusedWrite) {
        let mut writes = self.lock();
        let now = Instant::now();
        writes.retain(|_, w| w.next_poll > now);
        writes.insert(task, write);
    }

    fn take(&self, task: &TaskKey) -> Option<RefusedWrite> {
        self.lock().remove(task)
    }
}

/// Writes a refused status again, while the task's next poll is not due and its spec has not
/// changed; `None` when there is nothing to retry and the task is polled as usual.
async fn retry_refused_write(
    task: &MpuRelayTask,
    namespace: &str,
    key: &TaskKey,
    ctx: &Context,
) -> Option<Action> {
    let mut pending = ctx.refused_writes.take(key)?;
    let now = Instant::now();
    if pending.generation != task.metadata.generation || now >= pending.next_poll {
        return None;
    }
    let api: Api<MpuRelayTask> = Api::namespaced(ctx.client.clone(), namespace);
    match ctx.write_status(api, task, &pending.status).await {
        Ok(()) => Some(Action::requeue(
            pending.next_poll.saturating_duration_since(now),
        )),
        Err(e) => {
            ctx.metrics.record_reconcile_error(e.reason());
            pending.attempts += 1;
            let retry = write_retry_delay(pending.attempts)
                .min(pending.next_poll.saturating_duration_since(now));
            warn!(task = %key, error = %e, attempts = pending.attempts, "writing the status failed again");
            ctx.refused_writes.remember(key.clone(), pending);
            Some(Action::requeue(retry))
        }
    }
}

enum Polled {
    /// No slot yet: come back after this long.
    Wait(Duration),
    /// The call was made; what it gave, the budget's floor at the time, and when the budget
    /// granted it.
    Called {
        outcome: Outcome,
        floor: Duration,
        granted: Instant,
    },
}

/// Asks the account's budget for a slot and, when it is this task's turn, calls the cloud.
async fn poll(
    task: &MpuRelayTask,
    key: &TaskKey,
    account: &AccountKey,
    resolved: &Resolved,
    ctx: &Context,
) -> Polled {
    let phase = task.status.as_ref().and_then(|s| s.phase);
    let desired = decide::desired_interval(task, phase, &ctx.poll)
        .unwrap_or(ctx.poll.stopped.max(ctx.poll.running));
    // A leader that cannot prove its Lease any more makes no call (nothing awaits between
    // here and the call; checked before the budget so that no slot is spent on it).
    if ctx.fence.as_ref().is_some_and(|may_call| !may_call()) {
        return Polled::Wait(Duration::from_secs(1));
    }
    let granted = Instant::now();
    let (floor, call) = match resolved.budget.admit(key, desired, granted) {
        Admission::Wait(delay) => {
            debug!(
                wait_ms = delay.as_millis() as u64,
                "waiting for a budget slot"
            );
            return Polled::Wait(delay);
        }
        Admission::Go { floor, call } => (floor, call),
    };
    let connection = &resolved.connection;
    let query = StatusQuery {
        endpoint: &resolved.endpoint,
        api: connection.api,
        signature: connection.signature,
        region_id: connection.region_id.as_deref(),
        app_id: &task.spec.app_id,
        task_id: &task.spec.task_id,
    };
    let started = Instant::now();
    let result = ctx
        .cloud
        .get_mpu_task_status(&resolved.credentials, &query)
        .await;
    ctx.metrics
        .record_call(resolved.budget.alias(), &result, started.elapsed());
    resolved
        .budget
        .feedback(call, feedback(&result), Instant::now());
    match &result {
        Ok(_) => ctx.accounts.resolver.record_auth(account, None),
        Err(e) if e.reason() == cloud_reasons::AUTH_ERROR => {
            ctx.accounts.resolver.record_auth(account, Some(e));
        }
        Err(e) if e.class() == ErrorClass::Throttled => {
            warn!(
                task = %key,
                account = resolved.budget.alias(),
                "the cloud throttled a call; slowing down"
            );
        }
        Err(_) => {}
    }
    let outcome = match result {
        Ok(status) => Outcome::Polled(status),
        Err(e) => Outcome::CloudFailed(e),
    };
    Polled::Called {
        outcome,
        floor,
        granted,
    }
}

fn feedback(result: &Result<crate::cloud::MpuTaskStatus, CloudError>) -> Feedback {
    match result {
        Ok(_) => Feedback::Answered,
        Err(e) if e.class() == ErrorClass::Throttled => Feedback::Throttled,
        Err(CloudError::Api(_)) => Feedback::Answered,
        Err(_) => Feedback::NoAnswer,
    }
}

/// [`reconcile`] with a panic contained to this one task: it is marked `InternalError` and
/// retried with backoff, while every other task goes on.
///
/// Every log line of a task's reconcile names the task in a field of its own (`task=ns/name`,
/// or `object=MpuRelayTask ns/name`), not through a span: a span at info for every reconcile
/// (formatting its fields, entering and leaving it at every poll of the future) is work on
/// every poll for the rare line logged ([`super::Named`]). This span, at debug, adds the kind,
/// namespace and name to every line of a debug log.
///
/// Boxed: kube-runtime moves the reconcile future into a tokio task and its runner, and the
/// state machine of a whole reconcile (cloud call, status write, events) is kilobytes; copying it
/// was most of the operator's memmove (10 % of its CPU at 10 000 tasks). A box is moved as a
/// pointer.
pub fn reconcile_traced(
    task: Arc<MpuRelayTask>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, Error>> {
    let span = debug_span!(
        "reconcile",
        kind = "MpuRelayTask",
        namespace = task.metadata.namespace.as_deref().unwrap_or_default(),
        name = task.metadata.name.as_deref().unwrap_or_default()
    );
    async move {
        match super::guarded(reconcile(task.clone(), ctx.clone())).await {
            Ok(result) => result,
            Err(panic) => recover_from_panic(&task, &ctx, panic).await,
        }
    }
    .instrument(span)
    .boxed()
}

/// Marks a task whose reconcile panicked, best effort (deciding may be what panicked).
async fn recover_from_panic(
    task: &MpuRelayTask,
    ctx: &Context,
    panic: String,
) -> Result<Action, Error> {
    ctx.metrics.record_panic();
    tracing::error!(object = %super::Named(task), panic = %panic, "reconcile panicked; this task is retried with backoff, the others go on");
    let marked = super::guarded(async {
        let outcome = Outcome::Internal(panic);
        let decision = decide(
            task,
            &outcome,
            jiff::Timestamp::now(),
            &ctx.poll,
            Duration::ZERO,
        );
        if let Some(namespace) = task.namespace() {
            let api: Api<MpuRelayTask> = Api::namespaced(ctx.client.clone(), &namespace);
            let _ = ctx.write_status(api, task, &decision.status).await;
        }
        decision.next
    })
    .await;
    match marked {
        Ok(NextSync::After(delay)) => Ok(Action::requeue(jitter(delay))),
        _ => Err(Error::Panicked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeues_end_on_a_shared_4_ms_grid_never_sooner_and_less_than_4_ms_later() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let now = epoch + us(1_234_567);
        for delay in [
            us(1),
            ms(1),
            us(103_093),
            ms(1_031),
            ms(10_000),
            ms(3_600_000),
        ] {
            let coalesced = coalesced_at(delay, now, epoch);
            assert!(coalesced >= delay, "{delay:?} became {coalesced:?}");
            assert!(
                coalesced < delay + WAKE_GRID,
                "{delay:?} became {coalesced:?}"
            );
            let due = (now + coalesced).duration_since(epoch);
            assert_eq!(due.as_nanos() % WAKE_GRID.as_nanos(), 0, "{delay:?}");
        }
        // Tasks of different accounts due within the same 4 ms wake together.
        let a = now + coalesced_at(us(100_100), now, epoch);
        let b = now + us(2_000) + coalesced_at(us(98_933), now + us(2_000), epoch);
        assert_eq!(a, b);
        // A delay already on the grid, and one too long for the clock, stay as they are.
        assert_eq!(coalesced_at(us(765_433), now, epoch), us(765_433));
        assert_eq!(coalesced_at(Duration::MAX, now, epoch), Duration::MAX);
    }

    #[test]
    fn refused_writes_are_retried_after_one_second_doubling_to_a_minute() {
        let secs = |n| write_retry_delay(n).as_secs_f64();
        assert!((0.96..1.04).contains(&secs(1)));
        assert!((1.9..2.1).contains(&secs(2)));
        for n in [7, 8, 100, u32::MAX] {
            assert!(secs(n) <= 61.8, "attempt {n}: {}", secs(n));
        }
    }
}
