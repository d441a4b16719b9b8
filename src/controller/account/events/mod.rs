//! Event callbacks as hints (issue 27): a callback from the cloud says "look at this task now",
//! and nothing more. It is checked (the token only this operator can make, a bounded body, a
//! MsgId not seen before), turned into a *hint* for the tasks that watch that TaskId through
//! that account, and those tasks are polled at once through the account's budget, in the lane
//! of hinted polls ([`crate::budget::Pacer::expedite`]). Status is written only from
//! GetMPUTaskStatus answers; a forged or replayed callback costs at most one poll a second.
//!
//! - this module: [`EventsHub`], what the process knows of every account's events (which
//!   subscriptions are its own, tokens' rotation, what arrived) and the hints waiting;
//! - [`receiver`]: the HTTPS endpoint the cloud POSTs to;
//! - [`subscriptions`]: each account's subscriptions as owned state (created, updated, deleted,
//!   replayed from the delivery log), run by the account reconcile.

pub mod receiver;
pub mod subscriptions;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::AccountKey;
use crate::api::{EventsStatus, SubscriptionStatus};
use crate::cloud::events::Callback;
use crate::controller::wake::{TaskRef, Triggers};
use crate::controller::{Context, TaskKey};

/// MsgIds remembered to refuse a second delivery of the same callback (Alibaba retries and may
/// deliver twice). Enough for a few minutes of a busy account's callbacks; the oldest go first.
const SEEN_MSG_IDS: usize = 65_536;

/// How stale the index of tasks by (account, AppId, TaskId) may be: rebuilt at most once a
/// second, so that a flood of callbacks costs a map lookup each, not a walk over every task.
const INDEX_MAX_AGE: Duration = Duration::from_secs(1);

/// Hints waiting for so many tasks are swept of those older than [`PENDING_MAX_AGE`].
const PENDING_SWEEP_AT: usize = 4096;
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);

/// What a callback's path and body came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: this many tasks were hinted (woken unless a hint was already waiting).
    Hinted(usize),
    /// Valid, but its MsgId was seen already.
    Duplicate,
    /// Valid, but no task watches that TaskId through this account.
    UnknownTask,
    /// Refused: no account, or a token that is not this operator's for the path's app.
    BadToken,
    /// Refused: the body is not a callback (or too large).
    BadBody,
    /// Refused: the body names another AppId than the path it was sent to.
    WrongApp,
}

impl Verdict {
    /// The `result` label of `mpu_relay_callbacks_total`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Hinted(_) => "hinted",
            Verdict::Duplicate => "duplicate",
            Verdict::UnknownTask => "unknown_task",
            Verdict::BadToken => "bad_token",
            Verdict::BadBody => "bad_body",
            Verdict::WrongApp => "wrong_app",
        }
    }

    /// Valid: the cloud need not send it again.
    pub fn accepted(self) -> bool {
        matches!(
            self,
            Verdict::Hinted(_) | Verdict::Duplicate | Verdict::UnknownTask
        )
    }
}

/// A callback whose token passed: the account and app its path names.
#[derive(Clone, Debug)]
pub struct Addressed {
    pub account: AccountKey,
    pub app_id: String,
}

/// A hint waiting for its task's poll, or a poll it led to waiting for its status write.
#[derive(Clone, Copy, Debug)]
pub struct Hint {
    /// When the hint was taken.
    pub at: Instant,
    /// When the change happened: the callback's `EventTs` when it is plausible (within the last
    /// hour by this clock), else when the callback arrived.
    pub event_at: jiff::Timestamp,
}

/// One account object's events, as this process knows them.
#[derive(Clone, Debug, Default)]
pub struct AccountEvents {
    /// The account object's UID: the first segment of its callback paths.
    pub uid: String,
    pub rotation: u32,
    /// The hinted polls' share of the rate.
    pub share: f64,
    /// `spec.events.backstopInterval`.
    pub backstop: Option<Duration>,
    /// Subscriptions confirmed this operator's, by AppId (their SubId).
    pub apps: BTreeMap<String, String>,
    /// True while the account's subscriptions are all in place (EventsReady).
    pub ready: bool,
    pub delivered: u64,
    pub refused: u64,
    pub last_event_at: Option<jiff::Timestamp>,
    /// When each app's delivery log was last read by this process (up to that instant).
    pub looked: BTreeMap<String, jiff::Timestamp>,
}

#[derive(Default)]
struct State {
    accounts: HashMap<AccountKey, AccountEvents>,
    by_uid: HashMap<String, AccountKey>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

type Index = HashMap<(AccountKey, String, String), Vec<TaskRef>>;

/// Every account's events and the hints waiting, shared by the receiver, the account reconciles
/// (subscriptions) and the task reconciles (hinted polls).
#[derive(Default)]
pub struct EventsHub {
    state: Mutex<State>,
    /// Tasks hinted and not polled yet.
    pending: Mutex<HashMap<TaskKey, Hint>>,
    /// Tasks polled on a hint whose status write is still to come (for the detection time).
    served: Mutex<HashMap<TaskKey, Hint>>,
    index: Mutex<Option<(Instant, Arc<Index>)>>,
    /// Wakes hinted tasks (set once the task controllers exist).
    triggers: OnceLock<Triggers>,
    /// Whether this process serves the events endpoint (`--events-bind-address`).
    receiving: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventsHub {
    pub fn set_triggers(&self, triggers: Triggers) {
        let _ = self.triggers.set(triggers);
    }

    pub fn set_receiving(&self, receiving: bool) {
        self.receiving.store(receiving, Ordering::Relaxed);
    }

    pub fn receiving(&self) -> bool {
        self.receiving.load(Ordering::Relaxed)
    }

    /// Records what the account reconcile found of `account`'s events (or forgets them). What
    /// arrived (counts, last event, apps replayed) is kept from before.
    pub fn set_account(&self, key: &AccountKey, events: Option<AccountEvents>) {
        let mut state = lock(&self.state);
        let old = state.accounts.remove(key);
        if let Some(old) = &old {
            state.by_uid.remove(&old.uid);
        }
        if let Some(mut events) = events {
            if let Some(old) = old {
                events.delivered = old.delivered;
                events.refused = old.refused;
                events.last_event_at = old.last_event_at;
                events.looked = old.looked;
            }
            state.by_uid.insert(events.uid.clone(), key.clone());
            state.accounts.insert(key.clone(), events);
        }
    }

    /// Notes that `app_id`'s delivery log was read for `account` up to `until`.
    pub fn looked(&self, key: &AccountKey, app_id: &str, until: jiff::Timestamp) {
        if let Some(events) = lock(&self.state).accounts.get_mut(key) {
            events.looked.insert(app_id.to_owned(), until);
        }
    }

    /// `account`'s events as this process knows them.
    pub fn account(&self, key: &AccountKey) -> Option<AccountEvents> {
        lock(&self.state).accounts.get(key).cloned()
    }

    /// The hinted polls' share, and the backstop interval, of tasks of `account` watching an
    /// app of `app_id`, when that account's events are healthy for it.
    pub fn healthy(&self, key: &AccountKey, app_id: &str) -> Option<(f64, Option<Duration>)> {
        if !self.receiving() {
            return None;
        }
        let state = lock(&self.state);
        let events = state.accounts.get(key)?;
        (events.ready && events.apps.contains_key(app_id))
            .then_some((events.share, events.backstop))
    }

    /// The account's `status.events`.
    pub fn status(&self, key: &AccountKey) -> Option<EventsStatus> {
        let state = lock(&self.state);
        let events = state.accounts.get(key)?;
        Some(EventsStatus {
            subscriptions: events
                .apps
                .iter()
                .map(|(app_id, sub_id)| SubscriptionStatus {
                    app_id: app_id.clone(),
                    sub_id: sub_id.clone(),
                })
                .collect(),
            last_event_at: events
                .last_event_at
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            delivered: events.delivered,
            refused: events.refused,
            backstop_interval: events
                .backstop
                .filter(|_| events.ready)
                .map(kube::core::Duration::from),
        })
    }

    /// Whether a callback POSTed to `path` may be read: its token is this operator's for the
    /// path's account and app. Checked before the body is read, so a forged callback costs a
    /// MAC and nothing else. `Err` is the refusal, counted.
    pub fn authorize(&self, ctx: &Context, path: &str) -> Result<Addressed, Verdict> {
        let refused = |verdict: Verdict| {
            ctx.metrics.record_callback(verdict.label());
            verdict
        };
        let Some((uid, app, token)) = callback_path(path) else {
            return Err(refused(Verdict::BadToken));
        };
        let Ok(Some(key)) = ctx.ownership.key() else {
            return Err(refused(Verdict::BadToken));
        };
        let known = {
            let state = lock(&self.state);
            state
                .by_uid
                .get(uid)
                .and_then(|account| Some((account.clone(), state.accounts.get(account)?.rotation)))
        };
        let Some((account, rotation)) = known else {
            tracing::debug!(
                uid,
                app,
                "callback refused: no account with events has this UID"
            );
            return Err(refused(Verdict::BadToken));
        };
        if !key.verify_callback_token(uid, app, rotation, token) {
            tracing::debug!(account = %account, app, "callback refused: not this operator's token");
            self.count(&account, None);
            return Err(refused(Verdict::BadToken));
        }
        Ok(Addressed {
            account,
            app_id: app.to_owned(),
        })
    }

    /// The body of a callback [`EventsHub::authorize`] let through (`None`: too large to
    /// read), received now.
    pub fn receive(&self, ctx: &Context, to: &Addressed, body: Option<&[u8]>) -> Verdict {
        let now = jiff::Timestamp::now();
        let verdict = match body.and_then(crate::cloud::events::callback) {
            None => Verdict::BadBody,
            Some(callback) if callback.app_id != to.app_id => Verdict::WrongApp,
            Some(callback) => {
                self.count(&to.account, Some(now));
                self.hint(ctx, &to.account, &callback, now)
            }
        };
        if !verdict.accepted() {
            self.count(&to.account, None);
        }
        ctx.metrics.record_callback(verdict.label());
        verdict
    }

    /// Counts a callback of `account`: delivered at `at`, or (`None`) refused.
    fn count(&self, account: &AccountKey, at: Option<jiff::Timestamp>) {
        let mut state = lock(&self.state);
        if let Some(events) = state.accounts.get_mut(account) {
            match at {
                Some(at) => {
                    events.delivered += 1;
                    events.last_event_at = Some(at);
                }
                None => events.refused += 1,
            }
        }
    }

    /// Hints the tasks of `account` that watch the callback's TaskId, unless its MsgId was
    /// seen already. For callbacks received and for those replayed from the delivery log.
    pub fn hint(
        &self,
        ctx: &Context,
        account: &AccountKey,
        callback: &Callback,
        now: jiff::Timestamp,
    ) -> Verdict {
        if !self.first_time(&callback.msg_id) {
            return Verdict::Duplicate;
        }
        let index = self.index(ctx);
        let Some(tasks) = index.get(&(
            account.clone(),
            callback.app_id.clone(),
            callback.task_id.clone(),
        )) else {
            return Verdict::UnknownTask;
        };
        let hint = Hint {
            at: Instant::now(),
            event_at: event_time(callback.event_ms, now),
        };
        let mut wake = Vec::new();
        {
            let mut pending = lock(&self.pending);
            // Hints of tasks deleted before their poll would stay: those older than any poll
            // could be late are dropped, whenever the map grows.
            if pending.len() >= PENDING_SWEEP_AT {
                pending.retain(|_, h| h.at.elapsed() < PENDING_MAX_AGE);
            }
            for task in tasks {
                let key = TaskKey::new(task.namespace.as_deref().unwrap_or_default(), &task.name);
                if pending.insert(key, hint).is_none() {
                    wake.push(task.clone());
                }
            }
        }
        if let Some(triggers) = self.triggers.get() {
            triggers.send(wake);
        }
        Verdict::Hinted(tasks.len())
    }

    fn first_time(&self, msg_id: &str) -> bool {
        let mut state = lock(&self.state);
        if !state.seen.insert(msg_id.to_owned()) {
            return false;
        }
        state.seen_order.push_back(msg_id.to_owned());
        while state.seen_order.len() > SEEN_MSG_IDS {
            if let Some(old) = state.seen_order.pop_front() {
                state.seen.remove(&old);
            }
        }
        true
    }

    /// The tasks by (account, AppId, TaskId), at most [`INDEX_MAX_AGE`] old.
    fn index(&self, ctx: &Context) -> Arc<Index> {
        let mut cached = lock(&self.index);
        if let Some((at, index)) = cached.as_ref()
            && at.elapsed() < INDEX_MAX_AGE
        {
            return index.clone();
        }
        let mut index: Index = HashMap::new();
        for task in ctx.all_tasks() {
            let Some(namespace) = task.metadata.namespace.as_deref() else {
                continue;
            };
            if let Some(account) = AccountKey::of_task(&task, namespace) {
                index
                    .entry((account, task.spec.app_id.clone(), task.spec.task_id.clone()))
                    .or_default()
                    .push(ObjectRef::from_obj(&*task));
            }
        }
        let index = Arc::new(index);
        *cached = Some((Instant::now(), index.clone()));
        index
    }

    /// Whether `task` has a hint waiting.
    pub fn hinted(&self, task: &TaskKey) -> bool {
        lock(&self.pending).contains_key(task)
    }

    /// `task` was polled: its hint, if any, now waits for the status write it may lead to.
    pub fn polled(&self, task: &TaskKey) {
        // Without the endpoint there are no hints: no lock on every poll.
        if !self.receiving() {
            return;
        }
        if let Some(hint) = lock(&self.pending).remove(task) {
            lock(&self.served).insert(task.clone(), hint);
        }
    }

    /// `task`'s poll is concluded (`written`: its status changed): how long since the event
    /// that hinted it, when one did and the status was written.
    pub fn concluded(&self, task: &TaskKey, written: bool) -> Option<Duration> {
        if !self.receiving() {
            return None;
        }
        let hint = lock(&self.served).remove(task)?;
        let since = jiff::Timestamp::now().duration_since(hint.event_at);
        written.then(|| Duration::try_from(since).ok()).flatten()
    }
}

/// When the event happened: its `EventTs` if within the last hour and not in the future, else
/// `now` (the body is not trusted with more than a metric, and not even with a wild one).
fn event_time(event_ms: Option<i64>, now: jiff::Timestamp) -> jiff::Timestamp {
    event_ms
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .filter(|t| *t <= now && now.duration_since(*t) <= jiff::SignedDuration::from_hours(1))
        .unwrap_or(now)
}

/// The account UID, AppId and token at the end of a callback path (`…/{uid}/{app}/{token}`):
/// the callback URL is the account's `callbackURL` plus these, and an Ingress may add or strip
/// a prefix. `None` when the path does not end so.
pub fn callback_path(path: &str) -> Option<(&str, &str, &str)> {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let token = segments.next()?;
    let app = segments.next()?;
    let uid = segments.next()?;
    let fits = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    (fits(uid, 64) && fits(app, 64) && fits(token, 64)).then_some((uid, app, token))
}

/// The path the operator appends to an account's `callbackURL` for the subscription of
/// `app_id`.
pub fn callback_suffix(account_uid: &str, app_id: &str, token: &str) -> String {
    format!("/{account_uid}/{app_id}/{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_path_ends_with_the_account_the_app_and_the_token() {
        assert_eq!(
            callback_path("/hooks/0b1c-2d/app_1/abc123"),
            Some(("0b1c-2d", "app_1", "abc123"))
        );
        assert_eq!(callback_path("/u/a/t/"), Some(("u", "a", "t")));
        for bad in [
            "",
            "/",
            "/a/b",
            "/u/a/t.x",
            "/u/../t",
            "//a/t",
            &format!("/u/a/{}", "t".repeat(65)),
        ] {
            assert_eq!(callback_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_events_time_is_its_event_ts_only_when_plausible() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ms = now.as_millisecond();
        assert_eq!(event_time(Some(ms - 1500), now).as_millisecond(), ms - 1500);
        for wild in [
            None,
            Some(ms + 1),
            Some(ms - 2 * 3600 * 1000),
            Some(i64::MIN),
        ] {
            assert_eq!(event_time(wild, now), now, "{wild:?}");
        }
    }

    #[test]
    fn a_msg_id_counts_once_and_the_memory_of_them_is_bounded() {
        let hub = EventsHub::default();
        assert!(hub.first_time("m1"));
        assert!(!hub.first_time("m1"));
        for i in 0..SEEN_MSG_IDS {
            hub.first_time(&format!("x{i}"));
        }
        assert!(
            hub.first_time("m1"),
            "forgotten after {SEEN_MSG_IDS} others"
        );
        assert!(lock(&hub.state).seen.len() <= SEEN_MSG_IDS);
    }
}
