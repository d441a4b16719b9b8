//! An account's event subscriptions as owned state, run by its reconcile: one subscription per
//! AppId its tasks use, created when the first such task appears, deleted with the last one
//! (and with the account, under the finalizer `mpurelay.io/events`), its token rotated on
//! `tokenRotation`, and its delivery log replayed once per process for the callbacks a restart
//! missed. Every call draws on the cloud account's `eventSubscription` or `eventRecords` budget.
//!
//! A subscription is this operator's only when its URL carries the token only this operator can
//! make for this account object and app ([`OwnershipKey::callback_token`]). The cloud keeps one
//! subscription per AppId: one made by someone else (or by another account object of this
//! operator) is never changed or deleted; the account says so (`SubscriptionExists`).
//!
//! [`OwnershipKey::callback_token`]: crate::controller::ownership::OwnershipKey::callback_token

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::ApiResource;
use tracing::{info, warn};

use super::{AccountEvents, callback_suffix};
use crate::api::{EventsSpec, MAX_SUBSCRIPTIONS, RelayOperation};
use crate::cloud::CloudError;
use crate::cloud::events::{self as wire, actions};
use crate::controller::account::{AccountKey, AccountObject, Resolved, operations};
use crate::controller::account_status::Readiness;
use crate::controller::ports::StatusTarget;
use crate::controller::status::{Problem, reasons};
use crate::controller::{Context, Error};

/// On an account with `spec.events`: its subscriptions are deleted before it goes.
pub const FINALIZER: &str = "mpurelay.io/events";

/// How far back a replay looks at most (the delivery log keeps 7 days).
const REPLAY_MAX: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// A budget's wait the account reconcile waits out rather than coming back.
const SHORT_WAIT: Duration = Duration::from_millis(250);
/// How often each app's delivery log is read at most.
const REPLAY_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);
/// Pages of the delivery log read per app and replay.
const REPLAY_PAGES: u32 = 10;

/// What syncing an account's subscriptions gave: its condition (`None`: the account asks for
/// no events) and how soon it wants to be looked at again.
#[derive(Clone, Debug, Default)]
pub struct Synced {
    pub readiness: Option<Readiness>,
    pub soon: Option<Duration>,
}

/// What DescribeRtcMPUEventSub showed of an app's subscription, for this account object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    None,
    /// This operator's for this account object: with the current token, or an older one.
    Ours {
        sub_id: String,
        current: bool,
    },
    /// Someone else's (or another account object's).
    Others,
}

/// Whose `described` is: ours when its URL is `url`, or this account's base and path with
/// another token (an older rotation).
pub fn classify(described: Option<&wire::Subscription>, url: &str, ours_prefix: &str) -> Found {
    match described {
        None => Found::None,
        Some(s) if s.callback_url == url => Found::Ours {
            sub_id: s.sub_id.clone(),
            current: true,
        },
        Some(s) if s.callback_url.starts_with(ours_prefix) => Found::Ours {
            sub_id: s.sub_id.clone(),
            current: false,
        },
        Some(_) => Found::Others,
    }
}

/// The base URL without a trailing slash.
fn base(spec: &EventsSpec) -> &str {
    spec.callback_url.trim_end_matches('/')
}

/// The AppIds the account's tasks use, sorted, at most [`MAX_SUBSCRIPTIONS`]; and whether some
/// were left out.
fn wanted_apps(ctx: &Context, key: &AccountKey) -> (BTreeSet<String>, bool) {
    let mut apps: BTreeSet<String> = ctx
        .all_tasks()
        .filter(|t| {
            t.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| key.is_referenced_by(t, ns))
        })
        .map(|t| t.spec.app_id.clone())
        .collect();
    let over = apps.len() > MAX_SUBSCRIPTIONS;
    while apps.len() > MAX_SUBSCRIPTIONS {
        apps.pop_last();
    }
    (apps, over)
}

struct Parts<'a> {
    uid: String,
    spec: Option<&'a EventsSpec>,
    deleting: bool,
    finalizers: &'a [String],
    /// The subscriptions the status recorded (what a restart knows of them), by AppId.
    recorded: BTreeMap<String, String>,
    last_event_at: Option<jiff::Timestamp>,
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
}

fn parts(account: &AccountObject) -> Parts<'_> {
    let meta = account.meta();
    let status = account.status();
    Parts {
        uid: meta.uid.clone().unwrap_or_default(),
        spec: account.connection().events.as_ref(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.as_deref().unwrap_or_default(),
        recorded: recorded(status),
        last_event_at: last_event_at(status),
        resource: account.resource(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn recorded(status: Option<&crate::api::AccountStatus>) -> BTreeMap<String, String> {
    status
        .and_then(|s| s.events.as_ref())
        .map(|e| {
            e.subscriptions
                .iter()
                .map(|s| (s.app_id.clone(), s.sub_id.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn last_event_at(status: Option<&crate::api::AccountStatus>) -> Option<jiff::Timestamp> {
    status
        .and_then(|s| s.events.as_ref())
        .and_then(|e| e.last_event_at.as_ref())
        .map(|t| t.0)
}

fn not_ready(reason: &'static str, message: impl Into<String>) -> Option<Readiness> {
    Some(Readiness {
        ready: false,
        reason,
        message: message.into(),
    })
}

/// Brings the account's subscriptions where its spec and its tasks say; `resolution` is what
/// resolving the account gave.
pub async fn sync(
    account: &AccountObject,
    resolution: Result<&Resolved, &Problem>,
    ctx: &Context,
) -> Result<Synced, Error> {
    let key = account.key();
    let p = parts(account);
    let holds = p.finalizers.iter().any(|f| f == FINALIZER);
    let Some(spec) = p.spec.filter(|_| !p.deleting) else {
        // No events asked for (any more), or the account is going: ours go too.
        if holds {
            release(&p, &key, resolution, ctx).await?;
        }
        ctx.events.set_account(&key, None);
        return Ok(Synced::default());
    };
    let token_key = match ctx.ownership.key() {
        Err(_) => {
            return Ok(Synced {
                readiness: not_ready(
                    reasons::TOKEN_KEY_PENDING,
                    "the operator's key (which makes the callback tokens) is being read",
                ),
                soon: Some(Duration::from_secs(2)),
            });
        }
        Ok(None) => {
            return Ok(Synced {
                readiness: not_ready(
                    reasons::NO_TOKEN_KEY,
                    "the operator runs without a key (--ownership-key-secret), so it cannot make callback tokens",
                ),
                soon: None,
            });
        }
        Ok(Some(k)) => k,
    };
    if !ctx.events.receiving() {
        return Ok(Synced {
            readiness: not_ready(
                reasons::EVENTS_ENDPOINT_DISABLED,
                "the operator serves no events endpoint (--events-bind-address, chart events.enabled); tasks are polled as usual",
            ),
            soon: None,
        });
    }
    let resolved = match resolution {
        Ok(resolved) => resolved,
        Err(problem) => {
            return Ok(Synced {
                readiness: not_ready(
                    reasons::ACCOUNT_NOT_READY,
                    format!("the account is not usable: {}", problem.message),
                ),
                soon: None,
            });
        }
    };
    if !holds {
        set_finalizer(&p, ctx, true).await?;
    }
    let known = ctx.events.account(&key).unwrap_or_default();
    let rotated = known.rotation != spec.token_rotation;
    let (wanted, over) = wanted_apps(ctx, &key);
    let mut calls = Calls {
        resolved,
        ctx,
        wait: None,
    };
    let mut apps: BTreeMap<String, String> = BTreeMap::new();
    let mut others: Vec<String> = Vec::new();
    let mut failed: Option<String> = None;
    let prefix = |app: &str| format!("{}/{}/{app}/", base(spec), p.uid);
    for app in &wanted {
        if let Some(sub_id) = known.apps.get(app).filter(|_| !rotated) {
            apps.insert(app.clone(), sub_id.clone());
            continue;
        }
        let token = token_key.callback_token(&p.uid, app, spec.token_rotation);
        let url = format!("{}{}", base(spec), callback_suffix(&p.uid, app, &token));
        match ensure(&mut calls, app, &url, &prefix(app)).await {
            Ok(Ensured::Ours(sub_id)) => {
                apps.insert(app.clone(), sub_id);
            }
            Ok(Ensured::Others) => others.push(app.clone()),
            Ok(Ensured::Later) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
        if calls.wait.is_some() {
            break;
        }
    }
    // Subscriptions no task needs any more: ours (known to this process, or recorded in the
    // status before a restart) are deleted.
    let mut unwanted: BTreeMap<String, String> = p.recorded.clone();
    unwanted.extend(known.apps.clone());
    unwanted.retain(|app, _| !wanted.contains(app));
    for (app, sub_id) in &unwanted {
        let removed = if calls.wait.is_some() {
            Ok(false)
        } else {
            remove(&mut calls, app, &prefix(app)).await
        };
        if !matches!(removed, Ok(true)) {
            // Kept on record, to be tried again.
            apps.insert(app.clone(), sub_id.clone());
        }
        if let Err(e) = removed {
            failed.get_or_insert(e);
        }
    }
    let complete = calls.wait.is_none() && failed.is_none() && others.is_empty() && !over;
    let soon = calls.wait;
    ctx.events.set_account(
        &key,
        Some(AccountEvents {
            uid: p.uid.clone(),
            rotation: spec.token_rotation,
            share: spec.hint_share(),
            backstop: spec.backstop_interval.map(Duration::from),
            apps: apps.clone(),
            ready: complete,
            ..Default::default()
        }),
    );
    replay(&key, &apps, p.last_event_at, resolved, ctx).await;
    let readiness = if let Some(e) = failed {
        not_ready(reasons::SUBSCRIBE_FAILED, e)
    } else if !others.is_empty() {
        not_ready(
            reasons::SUBSCRIPTION_EXISTS,
            format!(
                "the app(s) {} already have an event subscription this operator did not make for this account; it is left alone (delete it to let the operator subscribe)",
                others.join(", ")
            ),
        )
    } else if over {
        not_ready(
            reasons::TOO_MANY_APPS,
            format!(
                "this account's tasks use more than {MAX_SUBSCRIPTIONS} AppIds; the first {MAX_SUBSCRIPTIONS} are subscribed"
            ),
        )
    } else if soon.is_some() {
        not_ready(
            reasons::SUBSCRIBING,
            "subscribing, within the account's budget",
        )
    } else {
        Some(Readiness {
            ready: true,
            reason: reasons::SUBSCRIBED,
            message: format!(
                "{} subscription(s) in place; callbacks hint polls",
                apps.len()
            ),
        })
    };
    Ok(Synced { readiness, soon })
}

/// The account's budgeted calls of the subscription operations.
struct Calls<'a> {
    resolved: &'a Resolved,
    ctx: &'a Context,
    /// Set once the budget says wait: no more calls this round.
    wait: Option<Duration>,
}

impl Calls<'_> {
    async fn call(
        &mut self,
        operation: RelayOperation,
        action: &'static str,
        params: &[(&'static str, String)],
    ) -> Result<Option<serde_json::Value>, CloudError> {
        let Calls { resolved, ctx, .. } = *self;
        // Calls of one reconcile follow each other a budget's interval apart (20 ms at 50/s):
        // a short wait is waited here, a long one ends the round.
        let admitted = match operations::admit(operation, resolved, ctx) {
            Err(wait) if wait <= SHORT_WAIT => {
                tokio::time::sleep(wait).await;
                operations::admit(operation, resolved, ctx)
            }
            other => other,
        };
        if let Err(wait) = admitted {
            self.wait = Some(wait);
            return Ok(None);
        }
        match operations::call(operation, action, params, resolved, ctx).await {
            // Throttled: held back in its budget; the round ends, and goes on in a second.
            Err(e) if e.class() == crate::cloud::ErrorClass::Throttled => {
                self.wait = Some(Duration::from_secs(1));
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// DescribeRtcMPUEventSub; `Ok(None)` also when the app has none (the cloud answers that
    /// as `InvalidParam`). `Err(None)`: no call made (budget).
    async fn describe(&mut self, app: &str) -> Result<Option<wire::Subscription>, Option<String>> {
        match self
            .call(
                RelayOperation::Subscribe,
                actions::DESCRIBE,
                &wire::app_params(app),
            )
            .await
        {
            Ok(Some(answer)) => Ok(wire::described(&answer)),
            Ok(None) => Err(None),
            Err(CloudError::Api(e)) if e.code == "InvalidParam" => Ok(None),
            Err(e) => Err(Some(format!("DescribeRtcMPUEventSub for {app}: {e}"))),
        }
    }
}

/// What became of an app's subscription.
enum Ensured {
    /// This operator's, with this SubId.
    Ours(String),
    /// Someone else's: left alone.
    Others,
    /// Not known yet: the budget said later.
    Later,
}

/// Makes `app`'s subscription this operator's with `url`; `Err` names the failed call.
async fn ensure(
    calls: &mut Calls<'_>,
    app: &str,
    url: &str,
    ours_prefix: &str,
) -> Result<Ensured, String> {
    let described = match calls.describe(app).await {
        Ok(d) => d,
        Err(None) => return Ok(Ensured::Later),
        Err(Some(e)) => return Err(e),
    };
    match classify(described.as_ref(), url, ours_prefix) {
        Found::Others => Ok(Ensured::Others),
        Found::Ours {
            sub_id,
            current: true,
        } => Ok(Ensured::Ours(sub_id)),
        Found::Ours {
            sub_id,
            current: false,
        } => {
            let params = wire::update_params(app, url);
            match calls
                .call(RelayOperation::Subscribe, actions::UPDATE, &params)
                .await
            {
                Ok(Some(_)) => {
                    info!(app, "event subscription's token rotated");
                    Ok(Ensured::Ours(sub_id))
                }
                Ok(None) => Ok(Ensured::Later),
                Err(e) => Err(format!("UpdateRtcMPUEventSub for {app}: {e}")),
            }
        }
        Found::None => {
            let params = wire::create_params(app, url);
            match calls
                .call(RelayOperation::Subscribe, actions::CREATE, &params)
                .await
            {
                Ok(Some(answer)) => {
                    let sub_id = wire::created(&answer).unwrap_or_default();
                    info!(app, sub_id, "event subscription created");
                    Ok(Ensured::Ours(sub_id))
                }
                Ok(None) => Ok(Ensured::Later),
                Err(e) => Err(format!("CreateRtcMPUEventSub for {app}: {e}")),
            }
        }
    }
}

/// Deletes `app`'s subscription if it is this operator's for this account object: whether
/// it is gone (deleted, or not this operator's to delete); `false` when the budget said later.
async fn remove(calls: &mut Calls<'_>, app: &str, ours_prefix: &str) -> Result<bool, String> {
    let described = match calls.describe(app).await {
        Ok(d) => d,
        Err(None) => return Ok(false),
        Err(Some(e)) => return Err(e),
    };
    if !matches!(
        classify(described.as_ref(), "", ours_prefix),
        Found::Ours { .. }
    ) {
        return Ok(true);
    }
    match calls
        .call(
            RelayOperation::Subscribe,
            actions::DELETE,
            &wire::app_params(app),
        )
        .await
    {
        Ok(Some(_)) => {
            info!(app, "event subscription deleted");
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(CloudError::Api(e)) if e.code == "InvalidParam" => Ok(true),
        Err(e) => Err(format!("DeleteRtcMPUEventSub for {app}: {e}")),
    }
}

/// Deletes every subscription of the account that is this operator's, then lets the account
/// go (its finalizer). An account that cannot be used any more (its Secret deleted first)
/// cannot call: its subscriptions are left, their callbacks refused (no account has their
/// token any more).
async fn release(
    p: &Parts<'_>,
    key: &AccountKey,
    resolution: Result<&Resolved, &Problem>,
    ctx: &Context,
) -> Result<(), Error> {
    let known = ctx.events.account(key).unwrap_or_default();
    let apps: BTreeSet<String> = known
        .apps
        .keys()
        .chain(p.recorded.keys())
        .cloned()
        .collect();
    match (resolution, p.spec) {
        (Ok(resolved), spec) => {
            let mut calls = Calls {
                resolved,
                ctx,
                wait: None,
            };
            let base = spec.map(base).map(str::to_owned);
            for app in &apps {
                // Without a spec (events were removed), ours are those whose URL carries this
                // account object's path under any base.
                let prefix = match &base {
                    Some(base) => format!("{base}/{}/{app}/", p.uid),
                    None => String::new(),
                };
                let result = if prefix.is_empty() {
                    remove_by_path(&mut calls, app, &format!("/{}/{app}/", p.uid)).await
                } else {
                    remove(&mut calls, app, &prefix).await
                };
                match result {
                    Ok(true) => {}
                    // The budget said later: the next reconcile goes on.
                    Ok(false) => return Ok(()),
                    Err(e) => {
                        warn!(account = %key, app, error = %e, "an event subscription could not be deleted; it is tried again");
                        return Ok(());
                    }
                }
            }
        }
        (Err(problem), _) => {
            warn!(account = %key, reason = problem.reason, "the account cannot call the cloud: its event subscriptions are left (their callbacks are refused)");
        }
    }
    set_finalizer(p, ctx, false).await
}

/// [`remove`] for a subscription whose URL has `path` in it (the base URL is not known).
async fn remove_by_path(calls: &mut Calls<'_>, app: &str, path: &str) -> Result<bool, String> {
    let described = match calls.describe(app).await {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(true),
        Err(None) => return Ok(false),
        Err(Some(e)) => return Err(e),
    };
    let prefix = match described.callback_url.find(path) {
        Some(at) => described.callback_url[..at + path.len()].to_owned(),
        None => return Ok(true),
    };
    remove(calls, app, &prefix).await
}

async fn set_finalizer(p: &Parts<'_>, ctx: &Context, present: bool) -> Result<(), Error> {
    let target = StatusTarget {
        resource: &p.resource,
        namespace: p.namespace.as_deref(),
        name: &p.name,
    };
    ctx.writer
        .set_finalizer(target, FINALIZER, p.finalizers, present)
        .await
        .map_err(Error::Finalizer)
}

/// Reads each app's delivery log since it was last read and hints the callbacks that did not
/// get through (a try the receiver did not answer 200): those sent while no operator listened
/// (a restart) or lost on the way (an Ingress down, a network gap; the cloud gives up after 3
/// retries). Each is a hint like any other, and MsgIds already seen cost nothing. The first
/// read after a start goes back to the last event the account recorded (at most a day).
async fn replay(
    key: &AccountKey,
    apps: &BTreeMap<String, String>,
    last_event_at: Option<jiff::Timestamp>,
    resolved: &Resolved,
    ctx: &Context,
) {
    let Some(known) = ctx.events.account(key) else {
        return;
    };
    // A hint finds its tasks in the task caches: not before they hold every task.
    if !ctx.tasks_synced() {
        return;
    }
    let now = jiff::Timestamp::now();
    let mut calls = Calls {
        resolved,
        ctx,
        wait: None,
    };
    for (app, sub_id) in apps {
        // Read at the account's refresh, not at every reconcile (any change to the account
        // reconciles it).
        if known
            .looked
            .get(app)
            .is_some_and(|at| now.duration_since(*at) < REPLAY_EVERY)
        {
            continue;
        }
        // A callback is logged when its try ends: a minute's overlap finds those that were in
        // flight at the last read. A process that has not read it yet goes back to the last
        // event the account recorded, or a day.
        let since = known
            .looked
            .get(app)
            .copied()
            .or(last_event_at)
            .map_or(now - REPLAY_MAX, |since| since.max(now - REPLAY_MAX))
            - jiff::SignedDuration::from_secs(60);
        let mut hinted = 0usize;
        for page in 1..=REPLAY_PAGES {
            let params =
                wire::records_params(app, sub_id, since.as_second(), now.as_second(), page);
            let answer = match calls
                .call(RelayOperation::EventRecords, actions::LIST_RECORDS, &params)
                .await
            {
                Ok(Some(answer)) => answer,
                // The budget says later: read again at the next reconcile.
                Ok(None) => return,
                Err(e) => {
                    warn!(account = %key, app, error = %e, "reading the delivery log failed; read again at the next reconcile");
                    return;
                }
            };
            let (callbacks, more) = wire::records(&answer);
            for callback in callbacks.iter().filter(|c| c.app_id == *app) {
                if let super::Verdict::Hinted(_) = ctx.events.hint(ctx, key, callback, now) {
                    ctx.metrics.record_callback("replayed");
                    hinted += 1;
                }
            }
            if !more {
                break;
            }
        }
        if hinted > 0 {
            info!(account = %key, app, hinted, "callbacks missed, replayed from the delivery log");
        }
        ctx.events.looked(key, app, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(url: &str) -> wire::Subscription {
        wire::Subscription {
            sub_id: "Sub-1".into(),
            callback_url: url.into(),
        }
    }

    #[test]
    fn a_subscription_is_ours_only_with_this_accounts_path() {
        let prefix = "https://ops.example.com/hooks/uid-a/app/";
        let url = format!("{prefix}t0ken");
        assert_eq!(classify(None, &url, prefix), Found::None);
        assert_eq!(
            classify(Some(&sub(&url)), &url, prefix),
            Found::Ours {
                sub_id: "Sub-1".into(),
                current: true
            }
        );
        assert_eq!(
            classify(Some(&sub(&format!("{prefix}older"))), &url, prefix),
            Found::Ours {
                sub_id: "Sub-1".into(),
                current: false
            }
        );
        for others in [
            "https://team-b.example.com/cb",
            "https://ops.example.com/hooks/uid-b/app/t0ken",
            "https://ops.example.com/hooks/uid-a/other/t0ken",
        ] {
            assert_eq!(
                classify(Some(&sub(others)), &url, prefix),
                Found::Others,
                "{others}"
            );
        }
    }
}
