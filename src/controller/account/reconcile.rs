//! One reconcile of one account object: resolve it, then write what that gave and its budget
//! as [`decide_account`] says, publish its events, and come back soon enough to keep the
//! figures fresh.

use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::{AccountKey, AccountObject};
use crate::controller::account::events::subscriptions;
use crate::controller::account_status::{AccountFacts, decide_account};
use crate::controller::{Context, Error, guarded, jitter};

/// One reconcile of one account: resolve it, and publish what that gave and its budget.
pub async fn reconcile(account: AccountObject, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.record_reconcile();
    let key = account.key();
    let resolution = ctx.accounts.resolver.resolve(&account).await;
    let call_failure = ctx.accounts.resolver.call_failure(&key);
    let synced = subscriptions::sync(&account, resolution.as_deref(), &ctx).await?;
    let previous = account.status();
    // What this process knows of the subscriptions, or (before it knows any) what the status
    // recorded: a restart must not forget which subscriptions are the operator's to delete.
    let events = synced.readiness.map(|r| {
        let status = ctx.events.status(&key);
        (
            r,
            status
                .or_else(|| previous.and_then(|p| p.events.clone()))
                .unwrap_or_default(),
        )
    });
    let facts = AccountFacts {
        generation: account.generation(),
        resolution: resolution.as_ref().map(|_| ()),
        call_failure: call_failure.as_ref(),
        tasks: ctx.task_counts().get(&key).copied().unwrap_or(0),
        budget: resolution
            .as_ref()
            .ok()
            .map(|r| r.budget.view(Instant::now())),
        operations: resolution
            .as_ref()
            .map(|r| ctx.actions.view(&r.cloud_account))
            .unwrap_or_default(),
        events,
    };
    let decision = decide_account(previous, &facts, jiff::Timestamp::now());
    ctx.metrics
        .record_account_ready(key.label(), resolution.is_ok() && call_failure.is_none());
    if decision.write {
        match &account {
            AccountObject::Namespaced(a) => {
                let api = Api::namespaced(ctx.client.clone(), &a.namespace().unwrap_or_default());
                ctx.write_status(api, &**a, &decision.status).await?;
            }
            AccountObject::Cluster(a) => {
                let api = Api::all(ctx.client.clone());
                ctx.write_status(api, &**a, &decision.status).await?;
            }
        }
    }
    match &account {
        AccountObject::Namespaced(a) => ctx.publish(&**a, &decision.events).await,
        AccountObject::Cluster(a) => ctx.publish(&**a, &decision.events).await,
    }
    let next = synced
        .soon
        .map_or(decision.next, |soon| soon.min(decision.next));
    Ok(Action::requeue(jitter(next)))
}

/// [`reconcile`] inside a span naming the account.
pub async fn reconcile_traced(account: AccountObject, ctx: Arc<Context>) -> Result<Action, Error> {
    use tracing::Instrument;
    let key = account.key();
    let span = match &key {
        AccountKey::Namespaced { namespace, name } => tracing::info_span!(
            "reconcile",
            kind = "MpuRelayAccount",
            namespace = namespace.as_str(),
            name = name.as_str()
        ),
        AccountKey::Cluster { name } => {
            tracing::info_span!(
                "reconcile",
                kind = "ClusterMpuRelayAccount",
                name = name.as_str()
            )
        }
    };
    async move {
        match guarded(reconcile(account, ctx.clone())).await {
            Ok(result) => result,
            Err(panic) => {
                ctx.metrics.record_panic();
                tracing::error!(panic = %panic, "account reconcile panicked; retried with backoff");
                Err(Error::Panicked)
            }
        }
    }
    .instrument(span)
    .await
}
