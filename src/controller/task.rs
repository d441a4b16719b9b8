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
use kube::runtime::controller::Action;
use tracing::{Instrument, debug, debug_span, warn};

use super::account::{AccountKey, Resolved};
use super::decide::{Decision, Outcome, decide};
use super::schedule::{self, Gate, Next};
use super::{Context, Error, TaskKey};
use crate::api::{MpuRelayTask, conditions};
use crate::budget::Budget;
use crate::cloud::ErrorClass;
use crate::cloud::client::StatusQuery;

/// One reconcile of one task.
pub async fn reconcile(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = task.namespace().ok_or(Error::MissingNamespace)?;
    let key = TaskKey::new(
        &namespace,
        task.metadata.name.as_deref().unwrap_or_default(),
    );
    ctx.metrics.record_reconcile();
    if let Some(action) = retry_refused_write(&task, &key, &ctx).await {
        return Ok(action);
    }
    let Observed {
        outcome,
        floor,
        served_by,
    } = match observe(&task, &namespace, &key, &ctx).await {
        Ok(observed) => observed,
        Err(wait) => return Ok(Action::requeue(coalesced(wait))),
    };
    let decision = decide(&task, &outcome, jiff::Timestamp::now(), &ctx.poll, floor);
    Ok(conclude(&task, key, decision, served_by, &ctx).await)
}

/// Carries a decision out: its log line, its events, its status write (only on change, kept
/// and retried on its own when refused) and the task's next turn.
pub(super) async fn conclude(
    task: &MpuRelayTask,
    key: TaskKey,
    decision: Decision,
    served_by: Option<(Arc<Budget<TaskKey>>, Instant)>,
    ctx: &Context,
) -> Action {
    log_failure(&key, &decision);
    ctx.publish(task, &decision.events).await;
    let plan = schedule::plan(&decision, served_by.as_ref().map(|s| s.1), super::spread());
    let now = Instant::now();
    let next = plan
        .next
        .requeue(served_by.as_ref().map(|s| &*s.0), &key, now);
    if plan.next == Next::Release {
        ctx.budgets.release_everywhere(&key);
    }
    let detected = ctx.events.concluded(&key, plan.write);
    if plan.write
        && let Err(e) = ctx.write_status_of(task, &decision.status).await
    {
        // What the cloud said is kept and written again on its own: retrying the whole
        // reconcile would call the cloud again at every retry.
        ctx.metrics.record_reconcile_error(e.reason());
        warn!(task = %key, error = %e, "writing the status failed; it is retried without a new cloud call");
        let retry = schedule::first_refusal(next, Instant::now(), super::spread());
        ctx.refused_writes.remember(
            key,
            RefusedWrite {
                status: decision.status,
                generation: task.metadata.generation,
                next_poll: retry.until,
                attempts: 1,
            },
        );
        return Action::requeue(retry.after);
    }
    if let Some(detected) = detected {
        ctx.metrics.record_change_detected(detected.as_secs_f64());
    }
    next.map_or_else(Action::await_change, |delay| {
        Action::requeue(coalesced(delay))
    })
}

/// What looking at the task gave, for [`decide`].
struct Observed {
    outcome: Outcome,
    /// The budget's floor when it granted the call (zero without a call).
    floor: Duration,
    /// The budget of the account that served a call, and when it granted the call: the
    /// task's next turn is taken there.
    served_by: Option<(Arc<Budget<TaskKey>>, Instant)>,
}

/// The task's outcome: suspended, its account unusable, or the cloud's answer; `Err(wait)`
/// when it may not call yet (no budget slot, or the leader's fence closed).
async fn observe(
    task: &MpuRelayTask,
    namespace: &str,
    key: &TaskKey,
    ctx: &Context,
) -> Result<Observed, Duration> {
    let unpolled = |outcome| Observed {
        outcome,
        floor: Duration::ZERO,
        served_by: None,
    };
    if task.spec.suspend {
        return Ok(unpolled(Outcome::Suspended));
    }
    let (account, object) = match ctx.accounts.for_task(task, namespace) {
        Ok(found) => found,
        Err(problem) => return Ok(unpolled(Outcome::AccountUnusable(problem))),
    };
    let resolved = match ctx.accounts.resolver.resolve(&object).await {
        Ok(resolved) => resolved,
        Err(problem) => return Ok(unpolled(Outcome::AccountUnusable(problem))),
    };
    let (outcome, floor, granted) = poll(task, key, &account, &resolved, ctx).await?;
    Ok(Observed {
        outcome,
        floor,
        served_by: Some((resolved.budget.clone(), granted)),
    })
}

/// The line logged when polling failed.
fn log_failure(key: &TaskKey, decision: &Decision) {
    if let Some(class) = decision.class {
        let why = decision
            .status
            .condition(conditions::SYNCED)
            .map(|c| c.message.as_str())
            .unwrap_or_default();
        warn!(task = %key, ?class, error = why, "polling failed");
    }
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
/// 0.148 s per 1 000 at 10 000 tasks (`make profile`, docs/benchmarks-history.md). Rounding up never makes
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
async fn retry_refused_write(task: &MpuRelayTask, key: &TaskKey, ctx: &Context) -> Option<Action> {
    let mut pending = ctx.refused_writes.take(key)?;
    let now = Instant::now();
    if !schedule::retries_refused_write(
        pending.generation,
        task.metadata.generation,
        pending.next_poll,
        now,
    ) {
        return None;
    }
    let written = ctx.write_status_of(task, &pending.status).await;
    if let Err(e) = &written {
        ctx.metrics.record_reconcile_error(e.reason());
        pending.attempts += 1;
        warn!(task = %key, error = %e, attempts = pending.attempts, "writing the status failed again");
    }
    let after = schedule::after_write_retry(
        written.is_err(),
        pending.attempts,
        pending.next_poll,
        now,
        super::spread(),
    );
    if written.is_err() {
        ctx.refused_writes.remember(key.clone(), pending);
    }
    Some(Action::requeue(after))
}

/// Asks the account's budget for a slot and, when it is this task's turn, calls the cloud:
/// what the call gave, the budget's floor at the time and when the budget granted it;
/// `Err(wait)` when there is no slot yet.
pub(super) async fn poll(
    task: &MpuRelayTask,
    key: &TaskKey,
    account: &AccountKey,
    resolved: &Resolved,
    ctx: &Context,
) -> Result<(Outcome, Duration, Instant), Duration> {
    let mut desired = schedule::budget_interval(task, &ctx.poll);
    // With the account's events healthy for the task's app, a callback brings a change in:
    // the task may be polled less often (the backstop), and a hint has it polled now.
    let events = ctx.events.healthy(account, &task.spec.app_id);
    let backstop = events.and_then(|(_, backstop)| backstop);
    if let Some(backstop) = backstop {
        desired = desired.max(backstop);
    }
    let hinted = events
        .map(|(share, _)| share)
        .filter(|_| ctx.events.hinted(key));
    // A leader that cannot prove its Lease any more makes no call (nothing awaits between
    // here and the call; checked before the budget so that no slot is spent on it).
    let may_call = ctx.fence.as_ref().is_none_or(|may_call| may_call());
    let gate = schedule::gate(
        may_call,
        &resolved.budget,
        key,
        desired,
        hinted,
        Instant::now(),
    );
    let (floor, call, granted) = match gate {
        Gate::Wait(delay) => {
            debug!(
                wait_ms = delay.as_millis() as u64,
                "waiting for a budget slot"
            );
            return Err(delay);
        }
        Gate::Call {
            floor,
            call,
            granted,
        } => (floor, call, granted),
    };
    ctx.events.polled(key);
    let floor = backstop.map_or(floor, |backstop| floor.max(backstop));
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
        .feedback(call, schedule::feedback(&result), Instant::now());
    ctx.accounts
        .resolver
        .record_call(account, result.as_ref().map(|_| ()));
    if let Err(e) = &result
        && e.class() == ErrorClass::Throttled
    {
        warn!(
            task = %key,
            account = resolved.budget.alias(),
            "the cloud throttled a call; slowing down"
        );
    }
    let outcome = match result {
        Ok(status) => Outcome::Polled(status),
        Err(e) => Outcome::CloudFailed(e),
    };
    Ok((outcome, floor, granted))
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
        match super::guarded(super::reconcile_task(task.clone(), ctx.clone())).await {
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
        if task.namespace().is_some() {
            let _ = ctx.write_status_of(task, &decision.status).await;
        }
        decision.next
    })
    .await;
    schedule::after_panic(marked.ok(), super::spread())
        .map(Action::requeue)
        .ok_or(Error::Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{Fixture, condition_reason, requeue_after};

    /// Whether `action` requeues after `expected`, give or take `slack`.
    fn requeues_about(action: &Action, expected: Duration, slack: f64) -> bool {
        requeue_after(action).is_some_and(|d| {
            let (d, e) = (d.as_secs_f64(), expected.as_secs_f64());
            (d - e).abs() <= e * slack + 0.005
        })
    }

    #[tokio::test]
    async fn a_task_calls_the_cloud_through_its_budget_writes_its_status_and_comes_back_after_its_interval()
     {
        let fx = Fixture::new();
        let task = Arc::new(Fixture::task("a"));
        let action = reconcile(task, fx.ctx.clone()).await.unwrap();
        assert_eq!(fx.cloud.calls(), ["task-a"]);
        let writes = fx.api.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(
            (
                writes[0].kind.as_str(),
                writes[0].namespace.as_deref(),
                writes[0].name.as_str()
            ),
            ("MpuRelayTask", Some("team"), "a")
        );
        assert_eq!(
            condition_reason(&writes[0].status, conditions::SYNCED).as_deref(),
            Some("Polled")
        );
        assert!(
            requeues_about(&action, fx.ctx.poll.running, 0.031),
            "{action:?}"
        );
        assert_eq!(fx.budget().unwrap().view(Instant::now()).members, 1);
    }

    #[tokio::test]
    async fn a_suspended_task_leaves_its_budget_and_makes_no_call() {
        let fx = Fixture::new();
        let mut task = Fixture::task("a");
        reconcile(Arc::new(task.clone()), fx.ctx.clone())
            .await
            .unwrap();
        let budget = fx.budget().unwrap();
        assert_eq!(budget.view(Instant::now()).members, 1);

        task.spec.suspend = true;
        task.metadata.generation = Some(2);
        let action = reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        assert_eq!(fx.cloud.calls().len(), 1, "no call for a suspended task");
        assert_eq!(budget.view(Instant::now()).members, 0);
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(
            condition_reason(&last.status, conditions::SYNCED).as_deref(),
            Some("Suspended")
        );
    }

    #[tokio::test]
    async fn a_refused_status_write_is_retried_as_planned_without_a_new_cloud_call() {
        let fx = Fixture::new();
        let task = Arc::new(Fixture::task("a"));
        fx.api.refuse(503, 2);

        // Refused: kept, and written again after a second.
        let action = reconcile(task.clone(), fx.ctx.clone()).await.unwrap();
        assert!(
            requeues_about(&action, Duration::from_secs(1), 0.031),
            "{action:?}"
        );
        assert!(fx.api.writes().is_empty());
        // Refused again: after two seconds, still without a call.
        let action = reconcile(task.clone(), fx.ctx.clone()).await.unwrap();
        assert!(
            requeues_about(&action, Duration::from_secs(2), 0.031),
            "{action:?}"
        );
        // Taken: the task comes back at its next poll (its interval from the first call).
        let action = reconcile(task.clone(), fx.ctx.clone()).await.unwrap();
        let back = requeue_after(&action).unwrap();
        assert!(
            back < fx.ctx.poll.running.mul_f64(1.031) && back > Duration::from_secs(25),
            "{action:?}"
        );
        assert_eq!(fx.api.attempts(), 3);
        assert_eq!(fx.api.writes().len(), 1);
        assert_eq!(fx.cloud.calls().len(), 1, "the retries made no call");
        assert_eq!(
            condition_reason(&fx.api.writes()[0].status, conditions::SYNCED).as_deref(),
            Some("Polled")
        );

        // Nothing left to retry: the next reconcile polls as usual, at its budget slot.
        let action = reconcile(task.clone(), fx.ctx.clone()).await.unwrap();
        if let Some(wait) = requeue_after(&action).filter(|_| fx.cloud.calls().len() == 1) {
            assert!(wait < Duration::from_millis(100), "{action:?}");
            tokio::time::sleep(wait).await;
            reconcile(task, fx.ctx.clone()).await.unwrap();
        }
        assert_eq!(fx.cloud.calls().len(), 2);
    }

    #[tokio::test]
    async fn a_refused_write_of_an_older_spec_is_dropped_and_the_task_polled_afresh() {
        let fx = Fixture::new();
        let mut task = Fixture::task("a");
        fx.api.refuse(500, 1);
        reconcile(Arc::new(task.clone()), fx.ctx.clone())
            .await
            .unwrap();
        assert!(fx.api.writes().is_empty());
        task.metadata.generation = Some(2);
        // The budget's next slot is a hundredth of a second on (100 calls/s).
        tokio::time::sleep(Duration::from_millis(20)).await;
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert_eq!(fx.cloud.calls().len(), 2);
        let written = fx.api.writes();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].status["observedGeneration"], 2);
    }

    #[tokio::test]
    async fn a_status_write_for_a_task_deleted_meanwhile_is_no_error() {
        let fx = Fixture::new();
        fx.api.refuse(404, 1);
        let action = reconcile(Arc::new(Fixture::task("a")), fx.ctx.clone())
            .await
            .unwrap();
        assert!(
            requeues_about(&action, fx.ctx.poll.running, 0.031),
            "{action:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_fence_makes_no_call_and_looks_again_in_a_second() {
        let mut fx = Fixture::new();
        Arc::get_mut(&mut fx.ctx).unwrap().fence = Some(Arc::new(|| false));
        let action = reconcile(Arc::new(Fixture::task("a")), fx.ctx.clone())
            .await
            .unwrap();
        assert!(
            requeues_about(&action, schedule::FENCE_WAIT, 0.0),
            "{action:?}"
        );
        assert!(fx.cloud.calls().is_empty());
        assert!(fx.api.writes().is_empty());
    }

    /// Through kube-runtime's own `Controller` and runner, which spawns every reconcile on a
    /// task of its own: a panic there, uncaught, would be resumed in the controller's stream
    /// and end it for every object.
    #[tokio::test]
    async fn one_task_whose_reconcile_panics_leaves_the_others_to_kube_runtimes_runner() {
        use futures::StreamExt;
        use kube::runtime::controller::Controller;

        let mut fx = Fixture::new();
        let tasks: Vec<MpuRelayTask> = (0..5).map(|i| Fixture::task(&format!("t{i}"))).collect();
        fx.list(&tasks);
        fx.cloud.panic_on("task-t2");
        let triggers = futures::stream::iter(tasks.clone().into_iter().map(Ok))
            .chain(futures::stream::pending());
        let results = Controller::for_stream(triggers, fx.task_store()).run(
            reconcile_traced,
            super::super::error_policy,
            fx.ctx.clone(),
        );
        tokio::pin!(results);
        let mut seen = std::collections::BTreeMap::new();
        let deadline = tokio::time::sleep(Duration::from_secs(20));
        tokio::pin!(deadline);
        while seen.len() < tasks.len() {
            tokio::select! {
                result = results.next() => {
                    let (object, action) = result.expect("the controller runs on").expect("reconciled");
                    // A task waiting for its slot comes back; count it once it called.
                    if fx.api.writes().iter().any(|w| w.name == object.name) {
                        seen.insert(object.name.clone(), action);
                    }
                }
                _ = &mut deadline => panic!("only {seen:?} were reconciled"),
            }
        }
        let reason = |name: &str| {
            fx.api
                .writes()
                .iter()
                .rev()
                .find(|w| w.name == name)
                .and_then(|w| condition_reason(&w.status, conditions::SYNCED))
        };
        for name in ["t0", "t1", "t3", "t4"] {
            assert_eq!(reason(name).as_deref(), Some("Polled"), "{name}");
        }
        // The broken one is marked, and retried after its backoff.
        assert_eq!(reason("t2").as_deref(), Some("InternalError"));
        let back = requeue_after(&seen["t2"]).unwrap();
        assert!(back <= fx.ctx.poll.min_backoff.mul_f64(1.031), "{back:?}");
        let metrics = fx.ctx.metrics.encode();
        assert!(
            metrics
                .lines()
                .any(|l| l.contains("reconcile_panics") && l.ends_with(" 1")),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_task_whose_panic_recovery_panics_too_fails_with_panicked_for_the_error_policy() {
        let fx = Fixture::new();
        fx.api.panic_on("a");
        let result = reconcile_traced(Arc::new(Fixture::task("a")), fx.ctx.clone()).await;
        assert!(matches!(result, Err(Error::Panicked)), "{result:?}");
        assert_eq!(
            fx.api.attempts(),
            2,
            "the status write, then the recovery's"
        );
    }

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
        let secs = |n| schedule::backoff(n, super::super::spread()).as_secs_f64();
        assert!((0.96..1.04).contains(&secs(1)));
        assert!((1.9..2.1).contains(&secs(2)));
        for n in [7, 8, 100, u32::MAX] {
            assert!(secs(n) <= 61.8, "attempt {n}: {}", secs(n));
        }
    }
}
