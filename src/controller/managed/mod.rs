//! Managed relays (`managementPolicy: Manage`): the thin I/O around [`lifecycle`], in this
//! order: may this task manage through its account (rights) -> does it hold the claim on the
//! (cloud account, AppId, TaskId) ([`claims`]) -> finalizer -> one budgeted poll -> the step
//! -> the step's one budgeted action -> status, events, requeue.
//!
//! Nothing here calls the cloud for a task that may not manage, or that another object claims:
//! such a task is Stalled before any call. An action goes only after its intent is in the
//! object's status, so that a crash never leaves a Start nobody remembers.

pub mod claims;
pub mod lifecycle;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::ApiResource;
use kube::runtime::controller::Action;
use tracing::{debug, info, warn};

use self::lifecycle::{Facts, Refusal, Release, Seen, Step};
use super::account::{AccountKey, AccountObject, Resolved, operations};
use super::decide::{Decision, NextSync, Outcome, decide};
use super::ownership;
use super::ports::StatusTarget;
use super::status::{EventSpec, FALSE, Problem, Severity, Stamp, TRUE, reasons};
use super::{Context, Error, FINALIZER, TaskKey, task};
use crate::api::{
    CloudApi, ManagementStatus, MpuRelayTask, MpuRelayTaskStatus, RelayOperation, StartIntent,
    conditions,
};
use crate::cloud::relay::actions;
use crate::cloud::relay::{Relay, stop_params};
use crate::cloud::response::reasons as cloud_reasons;
use crate::cloud::{CloudError, ErrorClass};

/// The action of the events about managing.
const MANAGE_ACTION: &str = "Manage";
/// How soon a relay just started or updated is polled, to show what it does.
const AFTER_ACTION: Duration = Duration::from_secs(2);
/// Retries of a refused action: from this, doubling (by how long the task has been
/// Reconciling), to [`lifecycle::RESTART_BACKOFF_MAX`].
const ACTION_RETRY_MIN: Duration = Duration::from_secs(10);

/// A managed task's reconcile, or `None` when the observe path takes it from here (the task
/// observes, is suspended, or its account cannot be used: the observe path says why).
pub async fn reconcile(
    task: &MpuRelayTask,
    namespace: &str,
    key: &TaskKey,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    let has_finalizer = task.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = task.metadata.deletion_timestamp.is_some();
    if deleting && !has_finalizer {
        return Ok(Some(Action::await_change()));
    }
    if !deleting && !task.spec.managed() {
        // Manage -> Observe: the object lets go of the relay and nothing is called.
        if has_finalizer {
            set_finalizer(task, ctx, false).await?;
        }
        return Ok(None);
    }
    // Nothing is decided about ownership before the key that proves it is read.
    let Ok(signing) = ctx.ownership.key() else {
        debug!(task = %key, "waiting for the ownership key");
        return Ok(Some(Action::requeue(KEY_PENDING_RETRY)));
    };
    if deleting {
        return finalize(task, namespace, key, signing, ctx).await.map(Some);
    }
    if task.spec.suspend {
        return Ok(None);
    }
    let Ok((account_key, object)) = ctx.accounts.for_task(task, namespace) else {
        return Ok(None);
    };
    if !ctx.accounts.rights(&object, namespace).manage {
        let problem = Problem {
            reason: reasons::MANAGE_NOT_ALLOWED,
            message: format!(
                "{account_key} does not let namespace {namespace} manage relays: a ClusterMpuRelayAccount grants it through a condition with manage: true (ask the cluster admin), or use an MpuRelayAccount of this namespace; nothing is called until then"
            ),
            permanent: true,
        };
        return Ok(Some(refuse(task, key.clone(), problem, ctx).await));
    }
    if object.connection().api != CloudApi::Live {
        let problem = Problem {
            reason: reasons::MANAGE_UNSUPPORTED,
            message: format!(
                "{account_key} calls ApsaraVideo RTC (api: rtc); managed relays are started through ApsaraVideo Live (StartLiveMPUTask): use an account with api: live"
            ),
            permanent: true,
        };
        return Ok(Some(refuse(task, key.clone(), problem, ctx).await));
    }
    let Ok(resolved) = ctx.accounts.resolver.resolve(&object).await else {
        return Ok(None);
    };
    if !claims::held(task, &resolved.cloud_account, signing, ctx).await {
        let problem = Problem {
            reason: reasons::TASK_CLAIMED,
            message: "an older MpuRelayTask manages this AppId and TaskId through the same cloud account: this object makes no call while it does".into(),
            permanent: true,
        };
        return Ok(Some(refuse(task, key.clone(), problem, ctx).await));
    }
    if !has_finalizer {
        // Before any action: the object can then not go without the relay being handled.
        set_finalizer(task, ctx, true).await?;
    }
    manage(task, key, &account_key, &object, &resolved, signing, ctx)
        .await
        .map(Some)
}

/// How soon a managed task looks again while the ownership key is not read yet.
const KEY_PENDING_RETRY: Duration = Duration::from_secs(2);

/// The poll, the step and its action.
async fn manage(
    task: &MpuRelayTask,
    key: &TaskKey,
    account_key: &AccountKey,
    object: &AccountObject,
    resolved: &Resolved,
    signing: Option<&ownership::OwnershipKey>,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = task.namespace().unwrap_or_default();
    let (outcome, floor, granted) = match task::poll(task, key, account_key, resolved, ctx).await {
        Ok(polled) => polled,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let served_by = Some((resolved.budget.clone(), granted));
    let now = Timestamp::now();
    let seen = match &outcome {
        Outcome::Polled(answer) => Some(Seen::Status(answer.status)),
        Outcome::CloudFailed(e) if e.reason() == cloud_reasons::TASK_NOT_FOUND => {
            Some(Seen::NotFound)
        }
        _ => None,
    };
    let mut decision = decide(task, &outcome, now, &ctx.poll, floor);
    if seen == Some(Seen::NotFound) {
        // Not an error for a managed task: the events of one (TaskNotFound) are not news.
        decision.events.clear();
        decision.class = None;
    }
    let Some(seen) = seen else {
        // The poll failed: nothing is decided on a guess.
        return Ok(task::conclude(task, key.clone(), decision, served_by, ctx).await);
    };
    let relay_spec = task.spec.relay.as_ref().ok_or(Error::MissingRelay)?;
    let relay = Relay::from_spec(&task.spec.app_id, &task.spec.task_id, relay_spec);
    let spec_hash = relay.spec_hash();
    let prev = task.status.clone().unwrap_or_default();
    let recorded = ownership::trusted(task, signing);
    if recorded.is_none() && prev.management.is_some() {
        warn!(task = %key, "status.management does not carry this operator's proof (written by someone else, or copied): it is ignored");
    }
    let phase_since = decision.status.phase_since.as_ref().map_or(now, |t| t.0);
    let management = lifecycle::settled(recorded.as_ref(), seen, phase_since, now);
    let facts = Facts {
        spec: &task.spec,
        management: management.as_ref(),
        seen,
        spec_hash: &spec_hash,
        phase_since,
        rights: ctx.accounts.rights(object, &namespace),
        now,
    };
    let step = lifecycle::step(&facts);
    let mut done = Done {
        management,
        acted: None,
        soon: None,
        events: Vec::new(),
    };
    match step {
        Step::Hold => {}
        Step::Own => {
            let mut m = done.management.take().unwrap_or_default();
            if let Some(intent) = m.starting.take() {
                m.started_at = Some(intent.since.clone());
                m.last_start_time = Some(intent.since);
                m.spec_hash = Some(intent.spec_hash);
            }
            done.management = Some(m);
            done.event(Severity::Normal, reasons::STARTED, "the relay this object started (its answer lost to a restart) runs; it is this object's".into());
        }
        Step::Adopt => {
            done.management = Some(ManagementStatus {
                started_at: Some(Time(now)),
                adopted: true,
                last_start_time: None,
                ..Default::default()
            });
            done.event(Severity::Normal, reasons::ADOPTED, "adopted the relay running under this TaskId (spec.adopt); it is updated to the spec next".into());
            done.soon = Some(AFTER_ACTION);
        }
        Step::Start { restart } => {
            let to_start = Starting {
                relay: &relay,
                spec_hash: &spec_hash,
                restart,
                signing,
            };
            start(task, &to_start, resolved, ctx, &mut done).await?;
        }
        Step::Update => {
            update(task, &relay, &spec_hash, resolved, ctx, &mut done).await;
        }
        Step::Backoff { until } => {
            done.soon =
                Some(Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO));
        }
        Step::Refuse(_) => {}
    }
    done.management = done.management.map(|m| ownership::signed(task, signing, m));
    managed_decision(
        &mut decision,
        &prev,
        step,
        &done,
        seen,
        now,
        task.metadata.generation,
    );
    decision.events.extend(done.events);
    // Sooner than the poll's own next turn: after an action, at a backoff's end.
    if let Some(soon) = done.soon
        && match decision.next.bounded() {
            NextSync::After(next) => soon < next,
            NextSync::OnChange => true,
        }
    {
        decision.next = NextSync::After(soon.max(Duration::from_millis(100)));
        decision.budget_bound = false;
    }
    Ok(task::conclude(task, key.clone(), decision, served_by, ctx).await)
}

/// What carrying a step out gave: the ownership record to write, what was done, events, and
/// how soon to look again.
#[derive(Clone, Debug, Default)]
pub struct Done {
    pub management: Option<ManagementStatus>,
    pub acted: Option<Acted>,
    pub soon: Option<Duration>,
    pub events: Vec<EventSpec>,
}

/// What an action came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acted {
    Started {
        restart: bool,
    },
    /// Sent without an answer: it may have started.
    Unconfirmed,
    Updated,
    /// The cloud refused it (its warning event says why).
    Failed(&'static str),
}

impl Done {
    pub fn event(&mut self, severity: Severity, reason: &'static str, note: String) {
        self.events.push(EventSpec {
            severity,
            reason,
            action: MANAGE_ACTION.to_string(),
            note,
        });
    }

    pub fn failed(&mut self, reason: &'static str, note: String) {
        self.acted = Some(Acted::Failed(reason));
        self.event(Severity::Warning, reason, note);
    }
}

/// The status of a managed task after a poll (`decision`, from [`decide`]) and the step taken
/// on it: what managing adds to the poll's conditions (kstatus and Argo CD read them:
/// Reconciling while starting, Stalled while refused or backing off) and `status.management`.
/// Pure; `prev` is the status before the poll.
pub fn managed_decision(
    decision: &mut Decision,
    prev: &MpuRelayTaskStatus,
    step: Step,
    done: &Done,
    seen: Seen,
    now: Timestamp,
    generation: Option<i64>,
) {
    let stamp = &Stamp {
        generation,
        time: Time(now),
    };
    let status = &mut decision.status;
    status.management = done.management.clone().map(Box::new);
    let phase_message = status.message.clone().unwrap_or_default();
    let conditions = &mut status.conditions;
    let mut set = |type_: &str, value: &str, reason: &str, message: &str| {
        stamp.set(conditions, type_, value, reason, message);
    };
    if seen == Seen::NotFound {
        // For a managed task, no relay yet is not an error of the poll.
        set(
            conditions::SYNCED,
            TRUE,
            reasons::POLLED,
            "GetMPUTaskStatus answered: no relay runs under this TaskId",
        );
        set(
            conditions::READY,
            FALSE,
            reasons::NOT_STARTED,
            "no relay runs under this TaskId yet",
        );
        set(
            conditions::STALLED,
            FALSE,
            reasons::NOT_STALLED,
            "the operator starts the relay",
        );
        set(
            conditions::RECONCILING,
            TRUE,
            reasons::STARTING,
            "the operator starts the relay",
        );
        status.message = Some("no relay runs under this TaskId yet".into());
        status.phase = None;
        status.status_code = None;
        status.phase_since = None;
    }
    let progressing = |conditions: &mut Vec<_>, reason: &str, message: &str| {
        stamp.set(conditions, conditions::RECONCILING, TRUE, reason, message);
        stamp.set(
            conditions,
            conditions::STALLED,
            FALSE,
            reasons::NOT_STALLED,
            message,
        );
    };
    let mut started = None;
    match (done.acted, step) {
        (Some(Acted::Started { restart }), _) => {
            let (reason, message) = if restart {
                (
                    reasons::RESTARTED,
                    "the relay was started again; waiting for its first status",
                )
            } else {
                (
                    reasons::STARTING,
                    "the relay was started; waiting for its first status",
                )
            };
            progressing(conditions, reason, message);
            stamp.set(conditions, conditions::READY, FALSE, reason, message);
            started = Some(message);
        }
        (Some(Acted::Unconfirmed), _) => progressing(
            conditions,
            reasons::STARTING,
            "StartLiveMPUTask got no answer; the next poll tells whether the relay started",
        ),
        (Some(Acted::Failed(reason)), _) => {
            let note = done
                .events
                .last()
                .map_or("", |e| e.note.as_str())
                .to_owned();
            progressing(conditions, reason, &note);
        }
        (Some(Acted::Updated), _) => {}
        (None, Step::Backoff { until }) => {
            let stalled = conditions
                .iter()
                .find(|c| c.type_ == conditions::STALLED && c.status == TRUE)
                .map(|c| c.reason.clone());
            match stalled {
                // Degraded while backing off: the relay is down until the restart.
                Some(reason) => {
                    let message = format!("{phase_message}; restarted at {until} (restartPolicy)");
                    stamp.set(conditions, conditions::STALLED, TRUE, &reason, &message);
                }
                None => progressing(
                    conditions,
                    reasons::STARTING,
                    &format!(
                        "a Start of this object's got no answer; started again at {until} unless the relay appears"
                    ),
                ),
            }
        }
        (None, Step::Refuse(Refusal::TaskExists)) => {
            let message = "a relay runs under this TaskId that this object did not start: it is not touched (set spec.adopt: true where the account allows adoption, or use another taskId)";
            stamp.set(
                conditions,
                conditions::STALLED,
                TRUE,
                reasons::TASK_EXISTS,
                message,
            );
            stamp.set(
                conditions,
                conditions::READY,
                FALSE,
                reasons::TASK_EXISTS,
                message,
            );
        }
        (None, Step::Refuse(Refusal::StoppedByUser)) => {
            let message = "a user stopped the relay (StopLiveMPUTask outside this operator): no restartPolicy restarts that; delete and recreate the object to start it again";
            stamp.set(
                conditions,
                conditions::STALLED,
                TRUE,
                reasons::STOPPED_BY_USER,
                message,
            );
        }
        (None, Step::Refuse(Refusal::NotRestarted)) => {
            if let Some(reason) = status.phase.map(|p| p.as_str()) {
                let message = format!("{phase_message}; restartPolicy does not restart it");
                stamp.set(conditions, conditions::STALLED, TRUE, reason, &message);
            }
        }
        (None, _) => {}
    }
    if let Some(message) = started {
        // The phase seen before the start (a stop, or none) no longer says anything.
        status.phase = None;
        status.status_code = None;
        status.phase_since = None;
        status.auto_stop_time = None;
        status.message = Some(message.to_owned());
    }
    decision.write = decision.write
        || super::decide::significant(prev) != super::decide::significant(&decision.status);
}

/// Reconciling reasons that managing sets (a retry waits longer the longer they last).
const MANAGING_REASONS: [&str; 4] = [
    reasons::STARTING,
    reasons::START_FAILED,
    reasons::UPDATE_FAILED,
    reasons::STOP_FAILED,
];

/// What a Start sends and records.
struct Starting<'a> {
    relay: &'a Relay,
    spec_hash: &'a str,
    restart: bool,
    signing: Option<&'a ownership::OwnershipKey>,
}

/// StartLiveMPUTask: in budget, after its intent is written.
async fn start(
    task: &MpuRelayTask,
    starting: &Starting<'_>,
    resolved: &Resolved,
    ctx: &Context,
    done: &mut Done,
) -> Result<(), Error> {
    let Starting {
        relay,
        spec_hash,
        restart,
        signing,
    } = *starting;
    let operation = RelayOperation::Start;
    if let Err(wait) = admit(operation, resolved, ctx) {
        done.soon = Some(wait);
        return Ok(());
    }
    let now = Timestamp::now();
    let mut m = done.management.clone().unwrap_or_default();
    m.starting = Some(StartIntent {
        spec_hash: spec_hash.to_owned(),
        since: Time(now),
    });
    // The intent first: if this process dies with the Start in flight, the next one finds it
    // and looks at the cloud before starting again.
    let mut with_intent = task.status.clone().unwrap_or_default();
    with_intent.management = Some(Box::new(ownership::signed(task, signing, m.clone())));
    ctx.write_status_of(task, &with_intent).await?;
    let params = relay.start_params();
    let result = call(operation, actions::START, &params, resolved, ctx).await;
    match result {
        Ok(request_id) => {
            m.starting = None;
            if m.started_at.is_none() {
                m.started_at = Some(Time(now));
            }
            m.spec_hash = Some(spec_hash.to_owned());
            m.last_start_time = Some(Time(now));
            if restart {
                m.restarts = m.restarts.saturating_add(1);
            }
            let (reason, what) = if restart {
                (reasons::RESTARTED, "started the relay again")
            } else {
                (reasons::STARTED, "started the relay")
            };
            info!(task = %super::Named(task), %request_id, restart, "{what}");
            done.acted = Some(Acted::Started { restart });
            done.event(
                Severity::Normal,
                reason,
                format!("{what} (StartLiveMPUTask, RequestId {request_id})"),
            );
            done.soon = Some(AFTER_ACTION);
        }
        Err(e) if e.class() == ErrorClass::Throttled => {
            m.starting = None;
            done.soon = Some(Duration::from_secs(1));
        }
        Err(e) if matches!(e, CloudError::Api(_)) => {
            // The cloud refused it: nothing started, the intent is void.
            m.starting = None;
            if already_exists(&e) {
                done.failed(
                    reasons::START_FAILED,
                    format!("a relay already runs under this TaskId, started by someone else: {e}"),
                );
            } else {
                done.failed(
                    reasons::START_FAILED,
                    format!("StartLiveMPUTask failed: {e}"),
                );
            }
            done.soon = Some(retry_delay(task));
        }
        Err(e) => {
            // No answer: the Start may have landed. The intent stays; the next poll tells.
            done.acted = Some(Acted::Unconfirmed);
            done.event(
                Severity::Warning,
                reasons::START_FAILED,
                format!(
                    "StartLiveMPUTask got no answer ({e}); the next poll tells whether it started"
                ),
            );
            done.soon = Some(lifecycle::START_GRACE);
        }
    }
    done.management = Some(m);
    Ok(())
}

/// UpdateLiveMPUTask with what may change.
async fn update(
    task: &MpuRelayTask,
    relay: &Relay,
    spec_hash: &str,
    resolved: &Resolved,
    ctx: &Context,
    done: &mut Done,
) {
    let operation = RelayOperation::Update;
    if let Err(wait) = admit(operation, resolved, ctx) {
        done.soon = Some(wait);
        return;
    }
    let params = relay.update_params();
    match call(operation, actions::UPDATE, &params, resolved, ctx).await {
        Ok(request_id) => {
            if let Some(m) = done.management.as_mut() {
                m.spec_hash = Some(spec_hash.to_owned());
            }
            done.acted = Some(Acted::Updated);
            done.event(Severity::Normal, reasons::UPDATED, format!("updated the relay to generation {} (UpdateLiveMPUTask, RequestId {request_id})", task.metadata.generation.unwrap_or_default()));
            done.soon = Some(AFTER_ACTION);
        }
        Err(e) if e.class() == ErrorClass::Throttled => done.soon = Some(Duration::from_secs(1)),
        Err(e) => {
            done.failed(
                reasons::UPDATE_FAILED,
                format!("UpdateLiveMPUTask failed: {e}"),
            );
            done.soon = Some(retry_delay(task));
        }
    }
}

/// The finalizer: stop the relay (or let it be), then let the object go.
async fn finalize(
    task: &MpuRelayTask,
    namespace: &str,
    key: &TaskKey,
    signing: Option<&ownership::OwnershipKey>,
    ctx: &Context,
) -> Result<Action, Error> {
    let recorded = ownership::trusted(task, signing);
    let management = recorded.as_ref();
    // Whether it may still stop anything: only through an account that lets it manage, and
    // only while no older object claims the relay.
    let usable = match ctx.accounts.for_task(task, namespace) {
        Ok((_, object)) if ctx.accounts.rights(&object, namespace).manage => {
            ctx.accounts.resolver.resolve(&object).await
        }
        Ok((account_key, _)) => Err(Problem {
            reason: reasons::MANAGE_NOT_ALLOWED,
            message: format!("{account_key} no longer lets namespace {namespace} manage relays"),
            permanent: true,
        }),
        Err(problem) => Err(problem),
    };
    let claim_held = match &usable {
        Ok(resolved) => claims::held(task, &resolved.cloud_account, signing, ctx).await,
        Err(_) => true,
    };
    match lifecycle::release(&task.spec, management, claim_held) {
        Release::LetGo => {}
        Release::Stop => {
            let resolved = match usable {
                Ok(resolved) => resolved,
                Err(problem) => {
                    let message = format!(
                        "cannot stop the relay before the object goes: {}; fix the account, or set spec.deletionPolicy: Orphan to let the object go and leave the relay running",
                        problem.message
                    );
                    return Ok(hold_deletion(task, key, problem.reason, &message, ctx).await);
                }
            };
            if let Err(wait) = admit(RelayOperation::Stop, &resolved, ctx) {
                return Ok(Action::requeue(wait));
            }
            let params = stop_params(&task.spec.app_id, &task.spec.task_id);
            match call(RelayOperation::Stop, actions::STOP, &params, &resolved, ctx).await {
                Ok(request_id) => {
                    ctx.publish(task, &[EventSpec {
                        severity: Severity::Normal,
                        reason: reasons::STOPPED,
                        action: MANAGE_ACTION.into(),
                        note: format!("stopped the relay (StopLiveMPUTask, RequestId {request_id}) before the object goes"),
                    }]).await;
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    let message = format!(
                        "StopLiveMPUTask failed: {e}; retried (set spec.deletionPolicy: Orphan to let the object go and leave the relay running)"
                    );
                    return Ok(hold_deletion(task, key, reasons::STOP_FAILED, &message, ctx).await);
                }
            }
        }
    }
    set_finalizer(task, ctx, false).await?;
    ctx.budgets.release_everywhere(key);
    Ok(Action::await_change())
}

/// A deletion that waits for its relay to be stopped: says why, and retries.
async fn hold_deletion(
    task: &MpuRelayTask,
    key: &TaskKey,
    reason: &str,
    message: &str,
    ctx: &Context,
) -> Action {
    let mut status = task.status.clone().unwrap_or_default();
    let stamp = Stamp {
        generation: task.metadata.generation,
        time: Time(Timestamp::now()),
    };
    stamp.set(
        &mut status.conditions,
        conditions::RECONCILING,
        TRUE,
        reason,
        message,
    );
    if task.status.as_ref() != Some(&status)
        && let Err(e) = ctx.write_status_of(task, &status).await
    {
        warn!(task = %key, error = %e, "writing why the deletion waits failed");
    }
    Action::requeue(retry_delay(task))
}

/// A managed task that may not act: Stalled with `problem`, and no call.
async fn refuse(task: &MpuRelayTask, key: TaskKey, problem: Problem, ctx: &Context) -> Action {
    let outcome = Outcome::AccountUnusable(problem);
    let decision = decide(task, &outcome, Timestamp::now(), &ctx.poll, Duration::ZERO);
    ctx.budgets.release_everywhere(&key);
    task::conclude(task, key, decision, None, ctx).await
}

async fn set_finalizer(task: &MpuRelayTask, ctx: &Context, present: bool) -> Result<(), Error> {
    let resource = ApiResource::erase::<MpuRelayTask>(&());
    let target = StatusTarget {
        resource: &resource,
        namespace: task.metadata.namespace.as_deref(),
        name: task.metadata.name.as_deref().unwrap_or_default(),
    };
    ctx.writer
        .set_finalizer(target, FINALIZER, task.finalizers(), present)
        .await
        .map_err(Error::Finalizer)
}

fn admit(operation: RelayOperation, resolved: &Resolved, ctx: &Context) -> Result<(), Duration> {
    operations::admit(operation, resolved, ctx)
}

/// One relay action: the answer's `RequestId`.
async fn call(
    operation: RelayOperation,
    action: &'static str,
    params: &[(&'static str, String)],
    resolved: &Resolved,
    ctx: &Context,
) -> Result<String, CloudError> {
    operations::call(operation, action, params, resolved, ctx)
        .await
        .map(|answer| crate::cloud::client::request_id(&answer))
}

/// Alibaba documents no code of its own for "task already exists": `InvalidParam` with that
/// message.
fn already_exists(e: &CloudError) -> bool {
    matches!(e, CloudError::Api(api) if api.message.to_ascii_lowercase().contains("already exists"))
}

/// A Stop the cloud answers with "no such (running) task": there is nothing left to stop.
fn gone(e: &CloudError) -> bool {
    e.reason() == cloud_reasons::TASK_NOT_FOUND
        || matches!(e, CloudError::Api(api) if api.message.to_ascii_lowercase().contains("does not exist"))
}

/// How long after a refused action to try again: 10 s, doubling with how long the task has
/// been Reconciling, at most 5 min.
fn retry_delay(task: &MpuRelayTask) -> Duration {
    let failing_for = task
        .status
        .as_ref()
        .and_then(|s| s.condition(conditions::RECONCILING))
        .filter(|c| c.status == TRUE && MANAGING_REASONS.contains(&c.reason.as_str()))
        .and_then(|c| {
            Duration::try_from(Timestamp::now().duration_since(c.last_transition_time.0)).ok()
        })
        .unwrap_or_default();
    failing_for.clamp(ACTION_RETRY_MIN, lifecycle::RESTART_BACKOFF_MAX)
}

/// Shared with the claims: the older of two objects wins; in the same second (creation times
/// have no finer grain) the one that already owns the relay, then the smaller UID.
pub(crate) fn seniority(
    task: &MpuRelayTask,
    key: Option<&ownership::OwnershipKey>,
) -> claims::Seniority {
    let recorded = ownership::trusted(task, key);
    let management = recorded.as_ref();
    claims::Seniority {
        created: task.metadata.creation_timestamp.as_ref().map(|t| t.0),
        owns: lifecycle::ours(management),
        uid: task.metadata.uid.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::AccountKind;
    use crate::controller::fixtures::{Fixture, OBSERVE_ONLY, condition_reason};
    use crate::controller::reconcile_task as reconcile;

    fn not_found() -> Result<crate::cloud::MpuTaskStatus, CloudError> {
        Err(CloudError::api_for_test("InvalidTask.NotFound", 404))
    }

    /// `task` with a record of owning its relay as written by someone: signed by the
    /// fixture's key when `signed`.
    fn recorded(mut task: MpuRelayTask, fx: &Fixture, signed: bool) -> MpuRelayTask {
        let management = ManagementStatus {
            started_at: Some(Time(Timestamp::now())),
            spec_hash: Some("whatever".into()),
            ..Default::default()
        };
        let management = if signed {
            ownership::signed(&task, fx.ctx.ownership.key().unwrap(), management)
        } else {
            management
        };
        task.status = Some(MpuRelayTaskStatus {
            management: Some(Box::new(management)),
            ..Default::default()
        });
        task.metadata.finalizers = Some(vec![FINALIZER.into()]);
        task
    }

    fn owned(task: MpuRelayTask, fx: &Fixture) -> MpuRelayTask {
        recorded(task, fx, true)
    }

    #[tokio::test]
    async fn a_record_of_ownership_the_operator_did_not_sign_makes_no_update_and_no_stop() {
        let fx = Fixture::new();
        let forged = recorded(Fixture::managed_task("a"), &fx, false);
        reconcile(Arc::new(forged.clone()), fx.ctx.clone())
            .await
            .unwrap();
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(
            condition_reason(&last.status, conditions::STALLED).as_deref(),
            Some("TaskExists"),
            "the relay running under the TaskId is not this object's"
        );
        reconcile(Arc::new(deleted(forged)), fx.ctx.clone())
            .await
            .unwrap();
        assert!(fx.cloud.actions().is_empty(), "{:?}", fx.cloud.actions());
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), false)]
        );
    }

    fn deleted(mut task: MpuRelayTask) -> MpuRelayTask {
        task.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        task.metadata.finalizers = Some(vec![FINALIZER.into()]);
        task
    }

    #[tokio::test]
    async fn a_relay_the_cloud_does_not_know_is_started_once_after_its_intent_is_written() {
        let fx = Fixture::new();
        let task = Fixture::managed_task("a");
        fx.cloud.answer("task-a", not_found());
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();

        assert_eq!(fx.cloud.actions(), [RelayOperation::Start]);
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), true)]
        );
        let writes = fx.api.writes();
        assert_eq!(writes.len(), 2, "the intent, then the outcome");
        assert!(writes[0].status["management"]["starting"]["specHash"].is_string());
        assert!(writes[0].status["management"]["startedAt"].is_null());
        assert!(writes[1].status["management"]["starting"].is_null());
        assert!(writes[1].status["management"]["startedAt"].is_string());
        assert_eq!(
            condition_reason(&writes[1].status, conditions::RECONCILING).as_deref(),
            Some("Starting")
        );
        let events: Vec<String> = fx.api.event_reasons().into_iter().map(|e| e.1).collect();
        assert_eq!(events, ["Started"]);
    }

    #[tokio::test]
    async fn a_relay_running_under_the_task_id_that_this_object_did_not_start_is_not_touched() {
        let fx = Fixture::new();
        let task = Fixture::managed_task("a");
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.actions().is_empty());
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(
            condition_reason(&last.status, conditions::STALLED).as_deref(),
            Some("TaskExists")
        );
    }

    #[tokio::test]
    async fn an_account_that_does_not_grant_managing_gets_no_call_at_all() {
        let fx = Fixture::new();
        let mut task = Fixture::managed_task("a");
        task.spec.account_ref = Some(crate::api::AccountRef {
            kind: AccountKind::ClusterMpuRelayAccount,
            name: OBSERVE_ONLY.into(),
        });
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.calls().is_empty(), "not even a poll");
        assert!(fx.cloud.actions().is_empty());
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(
            condition_reason(&last.status, conditions::STALLED).as_deref(),
            Some("ManageNotAllowed")
        );
    }

    #[tokio::test]
    async fn the_younger_of_two_objects_managing_one_relay_makes_no_call() {
        let mut fx = Fixture::new();
        let older = Fixture::managed_task("a");
        let mut younger = Fixture::managed_task("b");
        younger.spec.task_id = older.spec.task_id.clone();
        younger.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_800_000_100).unwrap()));
        fx.list(&[older, younger.clone()]);
        reconcile(Arc::new(younger), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.calls().is_empty());
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(
            condition_reason(&last.status, conditions::STALLED).as_deref(),
            Some("TaskClaimed")
        );
    }

    #[tokio::test]
    async fn deleting_an_owned_relay_stops_it_then_lets_the_object_go() {
        let fx = Fixture::new();
        let task = deleted(owned(Fixture::managed_task("a"), &fx));
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert_eq!(fx.cloud.actions(), [RelayOperation::Stop]);
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), false)]
        );
    }

    #[tokio::test]
    async fn deleting_an_object_that_never_started_its_relay_or_orphans_it_sends_no_stop() {
        let fx = Fixture::new();
        let never = deleted(Fixture::managed_task("a"));
        reconcile(Arc::new(never), fx.ctx.clone()).await.unwrap();
        let mut orphan = deleted(owned(Fixture::managed_task("b"), &fx));
        orphan.spec.deletion_policy = crate::api::DeletionPolicy::Orphan;
        reconcile(Arc::new(orphan), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.actions().is_empty());
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), false), ("b".to_string(), false)]
        );
    }

    #[tokio::test]
    async fn a_deletion_that_cannot_stop_its_relay_says_why_and_orphan_lets_it_go() {
        let fx = Fixture::new();
        let mut task = deleted(owned(Fixture::managed_task("a"), &fx));
        task.spec.account_ref = Some(crate::api::AccountRef {
            kind: AccountKind::ClusterMpuRelayAccount,
            name: "gone".into(),
        });
        reconcile(Arc::new(task.clone()), fx.ctx.clone())
            .await
            .unwrap();
        assert!(fx.cloud.actions().is_empty());
        assert!(
            fx.api.finalizers.lock().unwrap().is_empty(),
            "the object stays"
        );
        let last = fx.api.writes().pop().unwrap();
        let reconciling = last.status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == conditions::RECONCILING)
            .unwrap()
            .clone();
        assert_eq!(reconciling["reason"], "AccountNotFound");
        assert!(
            reconciling["message"]
                .as_str()
                .unwrap()
                .contains("deletionPolicy: Orphan"),
            "{reconciling}"
        );

        task.spec.deletion_policy = crate::api::DeletionPolicy::Orphan;
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.actions().is_empty());
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), false)]
        );
    }

    #[tokio::test]
    async fn while_the_ownership_key_is_awaited_a_managed_task_makes_no_call_and_comes_back_soon() {
        let fx = Fixture::new();
        let mut ctx = Arc::try_unwrap(fx.ctx).ok().expect("the only reference");
        ctx.ownership = Arc::new(ownership::Ownership::awaiting());
        let ctx = Arc::new(ctx);
        let action = reconcile(Arc::new(Fixture::managed_task("a")), ctx.clone())
            .await
            .unwrap();
        assert!(fx.cloud.calls().is_empty() && fx.cloud.actions().is_empty());
        assert_eq!(
            crate::controller::fixtures::requeue_after(&action),
            Some(KEY_PENDING_RETRY)
        );
    }

    #[tokio::test]
    async fn switching_to_observe_drops_the_finalizer_and_sends_no_action() {
        let fx = Fixture::new();
        let mut task = owned(Fixture::managed_task("a"), &fx);
        task.spec.management_policy = crate::api::ManagementPolicy::Observe;
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert!(fx.cloud.actions().is_empty());
        assert_eq!(
            *fx.api.finalizers.lock().unwrap(),
            [("a".to_string(), false)]
        );
        assert_eq!(fx.cloud.calls(), ["task-a"], "observed as any task");
    }

    #[tokio::test]
    async fn a_cdn_stop_of_an_owned_relay_is_restarted_after_the_backoff() {
        let fx = Fixture::new();
        let mut task = owned(Fixture::managed_task("a"), &fx);
        // The stop was first seen 11 s ago, the last start long before.
        let status = task.status.as_mut().unwrap();
        status.phase = Some(crate::api::Phase::CdnError);
        status.status_code = Some(5);
        status.phase_since = Some(Time(Timestamp::now() - jiff::SignedDuration::from_secs(11)));
        fx.cloud.answer(
            "task-a",
            Ok(crate::cloud::MpuTaskStatus {
                request_id: "r".into(),
                status: 5,
            }),
        );
        reconcile(Arc::new(task), fx.ctx.clone()).await.unwrap();
        assert_eq!(fx.cloud.actions(), [RelayOperation::Start]);
        let last = fx.api.writes().pop().unwrap();
        assert_eq!(last.status["management"]["restarts"], 1);
        let events: Vec<String> = fx.api.event_reasons().into_iter().map(|e| e.1).collect();
        assert!(events.contains(&"Restarted".to_string()), "{events:?}");
    }
}
