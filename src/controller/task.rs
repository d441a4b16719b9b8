//! One task's reconcile: the thin I/O around [`decide`](super::decide), in this order:
//! account (may this task use it? what does it resolve to?) -> budget admission -> cloud call
//! -> decide -> status write (only on change) -> events -> requeue.
//!
//! Never sleeps: a task without a budget slot is requeued for the slot it was given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use rand::Rng;
use tracing::{Instrument, debug, info_span, warn};

use super::account::{AccountKey, Resolved};
use super::decide::{self, NextSync, Outcome, decide};
use super::{Context, Error, TaskRef, jitter};
use crate::api::{MpuRelayTask, conditions};
use crate::budget::{Admission, Feedback};
use crate::cloud::client::StatusQuery;
use crate::cloud::response::reasons as cloud_reasons;
use crate::cloud::{CloudError, ErrorClass};

/// One reconcile of one task.
pub async fn reconcile(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = task.namespace().ok_or(Error::MissingNamespace)?;
    let key = ObjectRef::from_obj(&*task);
    ctx.metrics.record_reconcile();

    let mut floor = Duration::ZERO;
    let outcome = if task.spec.suspend {
        ctx.budgets.release_everywhere(&key);
        Outcome::Suspended
    } else {
        match ctx.accounts.for_task(&task, &namespace) {
            Err(problem) => Outcome::AccountUnusable(problem),
            Ok((account, object)) => match ctx.accounts.resolver.resolve(&object).await {
                Err(problem) => Outcome::AccountUnusable(problem),
                Ok(resolved) => match poll(&task, &key, &account, &resolved, &ctx).await {
                    Polled::Wait(delay) => return Ok(Action::requeue(delay)),
                    Polled::Called { outcome, floor: f } => {
                        floor = f;
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
        warn!(?class, error = why, "polling failed");
    }
    if decision.write {
        let api: Api<MpuRelayTask> = Api::namespaced(ctx.client.clone(), &namespace);
        ctx.write_status(api, &*task, &decision.status).await?;
    }
    ctx.publish(&*task, &decision.events).await;

    Ok(match decision.next {
        // When the budget sets the pace, come back a little early and queue for the next free
        // slot: the budget then never idles while tasks wait, and the queue keeps them in turn.
        NextSync::After(delay) if decision.budget_bound => {
            Action::requeue(delay.mul_f64(rand::rng().random_range(0.90..0.97)))
        }
        NextSync::After(delay) => Action::requeue(jitter(delay)),
        NextSync::OnChange => {
            ctx.budgets.release_everywhere(&key);
            Action::await_change()
        }
    })
}

enum Polled {
    /// No slot yet: come back after this long.
    Wait(Duration),
    /// The call was made; what it gave, and the budget's floor at the time.
    Called { outcome: Outcome, floor: Duration },
}

/// Asks the account's budget for a slot and, when it is this task's turn, calls the cloud.
async fn poll(
    task: &MpuRelayTask,
    key: &TaskRef,
    account: &AccountKey,
    resolved: &Resolved,
    ctx: &Context,
) -> Polled {
    let phase = task.status.as_ref().and_then(|s| s.phase);
    let desired = decide::desired_interval(task, phase, &ctx.poll)
        .unwrap_or(ctx.poll.stopped.max(ctx.poll.running));
    let floor = match resolved.budget.admit(key, desired, Instant::now()) {
        Admission::Wait(delay) => {
            debug!(
                wait_ms = delay.as_millis() as u64,
                "waiting for a budget slot"
            );
            return Polled::Wait(delay);
        }
        Admission::Go { floor } => floor,
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
    resolved.budget.feedback(feedback(&result), Instant::now());
    match &result {
        Ok(_) => ctx.accounts.resolver.record_auth(account, None),
        Err(e) if e.reason() == cloud_reasons::AUTH_ERROR => {
            ctx.accounts.resolver.record_auth(account, Some(e));
        }
        Err(e) if e.class() == ErrorClass::Throttled => {
            warn!(
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
    Polled::Called { outcome, floor }
}

fn feedback(result: &Result<crate::cloud::MpuTaskStatus, CloudError>) -> Feedback {
    match result {
        Ok(_) => Feedback::Answered,
        Err(e) if e.class() == ErrorClass::Throttled => Feedback::Throttled,
        Err(CloudError::Api(_)) => Feedback::Answered,
        Err(_) => Feedback::NoAnswer,
    }
}

/// [`reconcile`] inside a span naming the object, so every log line says which task it is about.
pub async fn reconcile_traced(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        kind = "MpuRelayTask",
        namespace = task.namespace().unwrap_or_default(),
        name = task.name_any()
    );
    reconcile(task, ctx).instrument(span).await
}
