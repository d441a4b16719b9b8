//! The call budget of each cloud account.
//!
//! Alibaba counts GetMPUTaskStatus calls per Alibaba Cloud account (UID), not per AccessKey or
//! per Kubernetes object: two RAM users of one account, or two account objects holding one key,
//! draw on one limit. So budgets are keyed by [`CloudAccount`] (the UID and the normalized API
//! host), and every account object that resolves to the same key joins the same [`Budget`].
//!
//! [`pacing`] holds the pure pacing logic; [`Budget`] wraps it behind its own lock together with
//! its membership rules, its limit and its usage figures, so the controller asks one question
//! (`admit`) and reports one answer (`feedback`).

pub mod actions;
pub mod pacing;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use actions::{ActionBudgets, ActionUse};
pub use pacing::{BudgetConfig, Call, Grant, LATTICE_GROUPS, Lattice, Pacer};

/// What the cloud counts calls against: the Alibaba Cloud account (UID) and the API host it is
/// called at (`authority`: lowercase host, with the port only when not the scheme's default).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloudAccount {
    pub uid: String,
    pub host: String,
}

impl CloudAccount {
    /// The cloud account's only name outside the operator's memory, in metrics (label
    /// `account`), logs and the account status: `acct-` and the first four bytes, in hex, of the
    /// SHA-256 of `uid@host`. Stable across restarts and replicas; neither the UID nor any key
    /// can be read back from it.
    pub fn alias(&self) -> String {
        let digest = Sha256::digest(format!("{}@{}", self.uid, self.host).as_bytes());
        format!("acct-{}", hex::encode(&digest[..4]))
    }
}

/// The limit one account object declares for its cloud account.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// The cloud's calls per second.
    pub qps: f64,
    /// Share (0..1) of `qps` kept free.
    pub margin: f64,
}

/// May the task call now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not yet: come back after this long, when the task's reserved slot opens.
    Wait(Duration),
    /// Call now, and report what came of `call` with [`Budget::feedback`]. `floor` is the
    /// shortest interval every member can be polled at (zero while the demand fits the budget).
    Go { floor: Duration, call: Call },
}

/// What a call told the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// The cloud answered (with a status or a non-throttling error).
    Answered,
    /// The cloud throttled the call.
    Throttled,
    /// No answer (timeout, connection): says nothing about the rate.
    NoAnswer,
}

/// How a task just served takes its next turn at its account's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The budget sets its pace, polling it every `round` (the account's floor, never shorter
    /// than the task's own interval): it takes its next turn in the account's line at once
    /// ([`Pacer::take_turn`]), and comes back only to call.
    InLine { round: Duration },
    /// Its own interval or a failure's backoff, `interval`, sets its pace: it comes back after
    /// `after` (the interval, spread) and asks, unless the account's line already reaches past
    /// `interval` ([`Pacer::join_after`]).
    Ask { interval: Duration, after: Duration },
}

/// A budget's figures, for the account status and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetView {
    pub members: usize,
    /// The cloud's limit in force (the smallest any joined account object declares).
    pub limit: f64,
    /// Calls per second currently allowed.
    pub rate: f64,
    /// Calls per second made over the last [`USAGE_WINDOW_SECONDS`] seconds.
    pub used: f64,
    /// Calls throttled since the budget was created.
    pub throttled: u64,
    /// True while the rate is held down below the limit because the cloud throttled.
    pub slowed: bool,
    pub floor: Duration,
}

/// How far back `used` looks.
pub const USAGE_WINDOW_SECONDS: usize = 10;

/// One cloud account's budget, shared by every task that calls it.
#[derive(Debug)]
pub struct Budget<K> {
    /// Its cloud account's [`CloudAccount::alias`]: the budget's only name outside the registry.
    alias: String,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    pacing: Pacer<K>,
    /// The limit each joined account object declares; the smallest is in force.
    limits: HashMap<String, Limit>,
    usage: Usage,
    throttled: u64,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// What a grant means for the task: a wait, or a call that renews its membership.
    fn admitted(&mut self, task: &K, grant: Grant, desired: Duration, now: Instant) -> Admission {
        match grant {
            Grant::At(at) => Admission::Wait(at.saturating_duration_since(now)),
            Grant::Now(call) => {
                self.usage.record(now);
                let until = now.checked_add(membership(desired)).unwrap_or(now);
                let floor = self.pacing.floor(task, desired, now, until);
                Admission::Go { floor, call }
            }
        }
    }
}

/// Calls per one-second bucket over the last few seconds.
#[derive(Debug)]
struct Usage {
    origin: Instant,
    buckets: [(u64, u32); USAGE_WINDOW_SECONDS],
}

impl Usage {
    fn new(origin: Instant) -> Self {
        Usage {
            origin,
            buckets: [(u64::MAX, 0); USAGE_WINDOW_SECONDS],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn record(&mut self, now: Instant) {
        let second = self.second(now);
        let bucket = &mut self.buckets[(second % USAGE_WINDOW_SECONDS as u64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 = bucket.1.saturating_add(1);
    }

    /// Calls per second over the last complete seconds of the window.
    fn per_second(&self, now: Instant) -> f64 {
        let current = self.second(now);
        let first = current.saturating_sub(USAGE_WINDOW_SECONDS as u64);
        let calls: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s >= first && *s < current)
            .map(|(_, n)| u64::from(*n))
            .sum();
        let seconds = (current - first).max(1);
        calls as f64 / seconds as f64
    }
}

/// How long a member counts after its last call when it stops calling (deleted, moved, or
/// its operator restarted): a few of its intervals, so a slow task is not dropped between polls.
fn membership(desired: Duration) -> Duration {
    desired
        .saturating_mul(3)
        .saturating_add(Duration::from_secs(60))
        .min(MAX_MEMBERSHIP)
}

/// Bounds membership whatever interval a task asks for (`pollInterval` is at most 24 h).
const MAX_MEMBERSHIP: Duration = Duration::from_secs(4 * 24 * 3600);

impl<K: Clone + Eq + Hash> Budget<K> {
    fn new(key: &CloudAccount, object: &str, limit: Limit, lattice: Lattice, now: Instant) -> Self {
        Budget {
            alias: key.alias(),
            state: Mutex::new(State {
                pacing: Pacer::new(BudgetConfig::for_limit(limit.qps, limit.margin), lattice),
                limits: HashMap::from([(object.to_string(), limit)]),
                usage: Usage::new(now),
                throttled: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A panic while holding the lock leaves plain numbers behind, still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The non-secret label of this budget in metrics and logs.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Asks for a call for `task`, which wants to be polled every `desired`. A task that gets
    /// to call renews its membership (so it counts in the floor); one that waits changes nothing.
    pub fn admit(&self, task: &K, desired: Duration, now: Instant) -> Admission {
        let mut state = self.lock();
        let grant = state.pacing.acquire(task, now);
        state.admitted(task, grant, desired, now)
    }

    /// Asks for a hinted call for `task` (a callback said it changed), in the account's lane
    /// of hinted calls at `share` of its rate ([`Pacer::expedite`]); otherwise as [`Budget::admit`].
    pub fn expedite(&self, task: &K, desired: Duration, share: f64, now: Instant) -> Admission {
        let mut state = self.lock();
        let grant = state.pacing.expedite(task, share, now);
        state.admitted(task, grant, desired, now)
    }

    /// When `task`, whose call was granted at `granted` and is done at `now`, comes back, as
    /// `turn` asks ([`Turn`]).
    pub fn next_turn(&self, task: &K, turn: &Turn, granted: Instant, now: Instant) -> Duration {
        let mut state = self.lock();
        match *turn {
            Turn::InLine { round } => state
                .pacing
                .take_turn(task, round, granted, now)
                .saturating_duration_since(now),
            Turn::Ask { interval, after } => now
                .checked_add(interval)
                .and_then(|earliest| state.pacing.join_after(task, earliest, now))
                .map_or(after, |slot| slot.saturating_duration_since(now)),
        }
    }

    /// What `call`, granted by `admit`, gave at `now`.
    pub fn feedback(&self, call: Call, feedback: Feedback, now: Instant) {
        let mut state = self.lock();
        state
            .pacing
            .answered(call, feedback != Feedback::NoAnswer, now);
        match feedback {
            Feedback::Answered => state.pacing.on_success(),
            Feedback::Throttled => {
                state.throttled += 1;
                state.pacing.on_throttled(now);
            }
            Feedback::NoAnswer => {}
        }
    }

    /// Forgets `task` (suspended, deleted, no longer polled, or moved to another account).
    pub fn release(&self, task: &K) {
        self.lock().pacing.release(task);
    }

    pub fn view(&self, now: Instant) -> BudgetView {
        let state = self.lock();
        let config = state.pacing.config();
        BudgetView {
            members: state.pacing.members(),
            limit: limit_in_force(&state.limits).qps,
            rate: state.pacing.rate(),
            used: state.usage.per_second(now),
            throttled: state.throttled,
            slowed: state.pacing.rate() < config.max_rate * 0.999,
            floor: state.pacing.current_floor(),
        }
    }

    /// Records the limit `object` declares, and applies the smallest of all.
    fn set_limit(&self, object: &str, limit: Limit) {
        let mut state = self.lock();
        if state.limits.get(object) == Some(&limit) {
            return;
        }
        state.limits.insert(object.to_string(), limit);
        let in_force = limit_in_force(&state.limits);
        state
            .pacing
            .reconfigure(BudgetConfig::for_limit(in_force.qps, in_force.margin));
    }

    /// Removes `object`'s limit; true when no object uses the budget any more.
    fn leave(&self, object: &str) -> bool {
        let mut state = self.lock();
        state.limits.remove(object);
        if state.limits.is_empty() {
            return true;
        }
        let in_force = limit_in_force(&state.limits);
        state
            .pacing
            .reconfigure(BudgetConfig::for_limit(in_force.qps, in_force.margin));
        false
    }
}

fn limit_in_force(limits: &HashMap<String, Limit>) -> Limit {
    limits
        .values()
        .copied()
        .reduce(|a, b| Limit {
            qps: a.qps.min(b.qps),
            margin: a.margin.max(b.margin),
        })
        .unwrap_or(Limit {
            qps: f64::from(crate::api::DEFAULT_QPS),
            margin: 0.0,
        })
}

/// Every cloud account's budget, and which account object uses which.
#[derive(Debug)]
pub struct Budgets<K> {
    /// What every budget's slots are counted from, so that budgets of one rate call together
    /// ([`Lattice`]).
    epoch: Instant,
    inner: Mutex<Registry<K>>,
}

#[derive(Debug)]
struct Registry<K> {
    budgets: HashMap<CloudAccount, Arc<Budget<K>>>,
    /// Which budget each account object (by a key such as `MpuRelayAccount/ns/name`) uses.
    objects: HashMap<String, CloudAccount>,
    /// Budgets created so far: the next one's lattice group.
    created: u32,
}

impl<K> Budgets<K> {
    /// No budget yet; every budget's slots will lie on a lattice counted from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Budgets {
            epoch,
            inner: Mutex::new(Registry {
                budgets: HashMap::new(),
                objects: HashMap::new(),
                created: 0,
            }),
        }
    }
}

impl<K: Clone + Eq + Hash> Budgets<K> {
    fn lock(&self) -> MutexGuard<'_, Registry<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget of `account` for account object `object` with its declared `limit`; moves the
    /// object out of the budget it used before (its credentials or endpoint changed).
    pub fn join(
        &self,
        account: &CloudAccount,
        object: &str,
        limit: Limit,
        now: Instant,
    ) -> Arc<Budget<K>> {
        let mut registry = self.lock();
        if let Some(previous) = registry.objects.get(object).cloned()
            && previous != *account
        {
            registry.leave_budget(&previous, object);
        }
        registry.objects.insert(object.to_string(), account.clone());
        let budget = match registry.budgets.get(account) {
            Some(budget) => budget.clone(),
            None => {
                let lattice = Lattice {
                    epoch: self.epoch,
                    group: registry.created,
                };
                registry.created = registry.created.wrapping_add(1);
                let budget = Arc::new(Budget::new(account, object, limit, lattice, now));
                registry.budgets.insert(account.clone(), budget.clone());
                budget
            }
        };
        drop(registry);
        budget.set_limit(object, limit);
        budget
    }

    /// The account object is gone: its limit no longer counts, and a budget no object uses
    /// any more is dropped.
    pub fn leave(&self, object: &str) {
        let mut registry = self.lock();
        if let Some(account) = registry.objects.remove(object) {
            registry.leave_budget(&account, object);
        }
    }

    /// Forgets `task` in every budget (it was suspended or deleted).
    pub fn release_everywhere(&self, task: &K) {
        let budgets: Vec<_> = self.lock().budgets.values().cloned().collect();
        for budget in budgets {
            budget.release(task);
        }
    }

    /// Every budget, for metrics.
    pub fn all(&self) -> Vec<Arc<Budget<K>>> {
        self.lock().budgets.values().cloned().collect()
    }
}

impl<K> Registry<K> {
    fn leave_budget(&mut self, account: &CloudAccount, object: &str)
    where
        K: Clone + Eq + Hash,
    {
        if let Some(budget) = self.budgets.get(account)
            && budget.leave(object)
        {
            self.budgets.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: &str) -> CloudAccount {
        CloudAccount {
            uid: uid.into(),
            host: "live.aliyuncs.com".into(),
        }
    }

    const TEN: Limit = Limit {
        qps: 10.0,
        margin: 0.0,
    };

    #[test]
    fn cloud_account_alias_is_stable_and_hides_the_uid() {
        let a = account("1234567890123456").alias();
        assert_eq!(a, account("1234567890123456").alias());
        assert!(a.starts_with("acct-") && a.len() == 13, "{a}");
        assert!(!a.contains("1234"), "{a}");
        assert_ne!(a, account("1234567890123457").alias());
        let other_host = CloudAccount {
            host: "live.ap-southeast-1.aliyuncs.com".into(),
            ..account("1234567890123456")
        };
        assert_ne!(a, other_host.alias());
    }

    #[test]
    fn two_account_objects_of_one_cloud_account_share_one_budget() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        let a = budgets.join(&account("1"), "MpuRelayAccount/a/x", TEN, t0);
        let b = budgets.join(&account("1"), "MpuRelayAccount/b/y", TEN, t0);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(matches!(
            a.admit(&1, Duration::from_secs(1), t0),
            Admission::Go {
                floor: Duration::ZERO,
                ..
            }
        ));
        // The second task queues behind the first: one budget, not two.
        assert!(matches!(
            b.admit(&2, Duration::from_secs(1), t0),
            Admission::Wait(_)
        ));
    }

    #[test]
    fn different_cloud_accounts_have_separate_budgets() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        let a = budgets.join(&account("1"), "a", TEN, t0);
        let b = budgets.join(&account("2"), "b", TEN, t0);
        assert!(matches!(
            a.admit(&1, Duration::from_secs(1), t0),
            Admission::Go { .. }
        ));
        assert!(matches!(
            b.admit(&2, Duration::from_secs(1), t0),
            Admission::Go { .. }
        ));
    }

    #[test]
    fn the_smallest_declared_limit_is_in_force_and_leaving_lifts_it() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        let slow = Limit {
            qps: 2.0,
            margin: 0.0,
        };
        let budget = budgets.join(&account("1"), "a", TEN, t0);
        budgets.join(&account("1"), "b", slow, t0);
        assert_eq!(budget.view(t0).limit, 2.0);
        assert_eq!(budget.view(t0).rate, 2.0);
        budgets.leave("b");
        assert_eq!(budget.view(t0).limit, 10.0);
        assert_eq!(budget.view(t0).rate, 10.0);
    }

    #[test]
    fn a_budget_no_object_uses_is_dropped() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        budgets.join(&account("1"), "a", TEN, t0);
        // The object's credentials changed to another cloud account: it moves.
        budgets.join(&account("2"), "a", TEN, t0);
        assert_eq!(budgets.all().len(), 1);
        assert_eq!(budgets.all()[0].alias(), account("2").alias());
        budgets.leave("a");
        assert!(budgets.all().is_empty());
    }

    #[test]
    fn view_counts_members_usage_and_throttles() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        let budget = budgets.join(&account("1"), "a", TEN, t0);
        let second = Duration::from_secs(1);
        for s in 0..5u32 {
            let now = t0 + second * s;
            let Admission::Go { call, .. } = budget.admit(&s, second * 10, now) else {
                panic!("call {s} was not granted");
            };
            budget.feedback(call, Feedback::Answered, now);
        }
        let view = budget.view(t0 + second * 5);
        assert_eq!(view.members, 5);
        // Five calls in the five complete seconds since the budget began.
        assert!((view.used - 1.0).abs() < 1e-9, "{view:?}");
        assert!(!view.slowed);
        let Admission::Go { call, .. } = budget.admit(&9, second * 10, t0 + second * 5) else {
            panic!("the sixth call was not granted");
        };
        budget.feedback(call, Feedback::Throttled, t0 + second * 5);
        let view = budget.view(t0 + second * 6);
        assert_eq!(view.throttled, 1);
        assert!(view.slowed);
        assert!(view.rate < 10.0);
    }

    #[test]
    fn huge_desired_intervals_do_not_overflow_membership() {
        let t0 = Instant::now();
        let budgets: Budgets<u32> = Budgets::new(t0);
        let budget = budgets.join(&account("1"), "a", TEN, t0);
        assert!(matches!(
            budget.admit(&1, Duration::MAX, t0),
            Admission::Go { .. }
        ));
    }
}
