//! Pacing of one cloud account's calls, pure: every GetMPUTaskStatus call of every task that
//! shares an Alibaba Cloud account goes through one [`Pacer`], which keeps the account
//! under its calls-per-second limit.
//!
//! The budget hands out *future slots*, evenly paced `1/rate` apart. A task that asks at `t`
//! gets the next free slot, is requeued for exactly that time, and owns the slot when it comes
//! back. So thirty tasks asking at once are spread over three seconds at 10 calls/s instead of
//! all retrying together, and no reconcile ever sleeps while holding a worker.
//!
//! The rate adapts (AIMD): a throttling answer from the cloud halves it, every successful call
//! raises it a little, up to the configured limit.
//!
//! Time is always passed in; nothing here reads a clock, so every behaviour is unit-tested.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How the budget of each account behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// The most calls per second the operator makes for one account (the cloud's limit minus a
    /// safety margin).
    pub max_rate: f64,
    /// The rate never drops below this, however often the cloud throttles.
    pub min_rate: f64,
    /// Calls per second regained after each successful call, once throttled.
    pub recovery_step: f64,
    /// Factor applied to the rate on a throttling answer.
    pub backoff_factor: f64,
    /// The cloud's own rule, enforced on the calls actually granted: at most this many calls in
    /// any `window`. Pacing alone keeps to it while calls go out on time; this guard keeps to
    /// it when they do not (a busy CPU sends a backlog of granted calls in a burst).
    pub window_calls: usize,
    pub window: Duration,
}

impl BudgetConfig {
    /// The budget for a cloud limit of `qps` calls per second with `margin` (0..1) kept free:
    /// clocks and networks are not exact, and a call landing a millisecond early must not be
    /// the eleventh in the cloud's window.
    pub fn for_limit(qps: f64, margin: f64) -> Self {
        let max_rate = (qps * (1.0 - margin)).max(0.01);
        BudgetConfig {
            max_rate,
            min_rate: (max_rate / 20.0).max(0.01),
            recovery_step: (max_rate / 100.0).max(0.001),
            backoff_factor: 0.5,
            window_calls: (qps.floor() as usize).max(1),
            // 25 ms of slack for the time between the grant and the call reaching the cloud.
            window: Duration::from_millis(1025),
        }
    }
}

/// After a throttle, recovery climbs back to this fraction of the rate that was throttled.
const CEILING_AFTER_THROTTLE: f64 = 0.8;

/// What a task may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Call the cloud now: the slot is this task's. Tell the budget when the call was answered
    /// ([`Pacer::answered`]), naming the call.
    Now(Call),
    /// Come back at this instant, when the task's reserved slot opens.
    At(Instant),
}

impl Grant {
    pub fn is_now(&self) -> bool {
        matches!(self, Grant::Now(_))
    }
}

/// One granted call, named so that its answer can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Call(u64);

/// A granted call as the window guard counts it.
#[derive(Clone, Copy, Debug)]
struct Sent {
    call: Call,
    granted: Instant,
    /// The latest instant the cloud may have counted the call at: its grant, or later when its
    /// round trip took longer than the account's fastest one (the request went out late: a busy
    /// CPU, a stalled runtime, a slow network path).
    counts_at: Instant,
}

/// The cloud's window: it counts the calls that arrive in any one second.
const CLOUD_WINDOW: Duration = Duration::from_secs(1);

/// How many round trips the fastest one is taken from.
const ROUND_TRIPS_KEPT: usize = 32;

/// The fastest of an account's recent round trips: what a call's round trip takes when nothing
/// held it up. A call whose round trip took longer may have reached the cloud that much later.
#[derive(Debug, Default)]
struct RoundTrips {
    recent: [Duration; ROUND_TRIPS_KEPT],
    len: usize,
    next: usize,
}

impl RoundTrips {
    fn record(&mut self, round_trip: Duration) {
        self.recent[self.next] = round_trip;
        self.next = (self.next + 1) % ROUND_TRIPS_KEPT;
        self.len = (self.len + 1).min(ROUND_TRIPS_KEPT);
    }

    fn fastest(&self) -> Option<Duration> {
        self.recent[..self.len].iter().min().copied()
    }
}

/// Where a budget's slots lie: `epoch + (n + group / LATTICE_GROUPS) x spacing`, with one
/// `epoch` for every budget of the process and the groups dealt out in turn.
///
/// Budgets of one rate and group then call together, each in its own line, and one wake-up of
/// the runtime serves a call of each. Budgets at their own phases woke it about once per call
/// (issue 11: about 920 voluntary context switches a second at 970 calls/s over 100 accounts,
/// against 85-93 for an operator whose accounts happened to start in step, at half the CPU per
/// call; docs/benchmarks-history.md, "Wake-ups, not work"). Groups keep each burst small enough: with all
/// 100 accounts calling at once, the last reconciles of a burst queued behind the others and
/// the answers, started up to 10 ms late, and the window guard (which tolerates 5.9 ms) held
/// them back: 1.23-1.47 reconciles per poll at 10 000 tasks (`make profile`).
#[derive(Clone, Copy, Debug)]
pub struct Lattice {
    pub epoch: Instant,
    /// Which of the [`LATTICE_GROUPS`] phases within a spacing (taken modulo).
    pub group: u32,
}

/// Phases within a spacing that budgets are dealt out to: 52 ms apart at 9.7 calls/s, 50
/// accounts to a group at 100 accounts. Measured with `make profile` (docs/benchmarks-history.md, "Lattice
/// groups"): 2 groups took 1.04 reconciles and 0.09 context switches per poll at 10 000 tasks,
/// 1 group 1.23 reconciles, 8 groups 0.36 context switches (bursts too small to keep the
/// runtime awake between answers) and 60 % more CPU per poll at 1 000 tasks.
pub const LATTICE_GROUPS: u32 = 2;

/// The pacing of one cloud account's calls: its slots, its adaptive rate and the tasks that
/// draw on it. A [`Budget`](crate::budget::Budget) holds one, with its limits and figures.
#[derive(Debug)]
pub struct Pacer<K> {
    config: BudgetConfig,
    rate: f64,
    /// What recovery may climb back to after throttling (the maximum until then).
    ceiling: f64,
    /// Where this budget's slots lie (see [`Pacer::toward_lattice`]).
    lattice: Lattice,
    /// The earliest instant the next unreserved slot may start.
    next_free: Option<Instant>,
    /// Slots handed out and not yet used, by task.
    reservations: HashMap<K, Instant>,
    /// The calls that may still count in the cloud's window, in the order they were granted.
    sent: VecDeque<Sent>,
    /// Tasks the window guard held back, in line: the k-th waits for the k-th call to leave the
    /// window, with the instant it was told to come back at.
    held_back: VecDeque<(K, Instant)>,
    next_call: u64,
    round_trips: RoundTrips,
    /// Tasks that draw on this account: the interval each wants, and the instant after which it
    /// no longer counts (a deleted task simply stops renewing its entry).
    members: HashMap<K, (Duration, Instant)>,
    /// How many members want each interval. The floor is computed from these few groups on
    /// every granted call; going through every member each time made a call's cost grow with
    /// the account's size (issue 11's profile at 10 000 tasks).
    demand: BTreeMap<Duration, usize>,
    /// When expired members and forgotten reservations were last swept out.
    swept: Option<Instant>,
    /// Hinted polls ([`Pacer::expedite`]).
    hints: HintLane<K>,
}

/// The lane of hinted polls: calls moved ahead of the line because a callback said a task
/// changed (issue 27). Paced on its own at a share of the rate, and at most one per task per
/// [`HINT_EVERY`].
#[derive(Debug)]
struct HintLane<K> {
    /// The lane's next free slot.
    next: Option<Instant>,
    /// Lane slots handed out and not yet used, by task.
    waiting: HashMap<K, Instant>,
    /// When each task last made a hinted call (kept for [`HINT_EVERY`]).
    last: HashMap<K, Instant>,
}

impl<K> Default for HintLane<K> {
    fn default() -> Self {
        HintLane {
            next: None,
            waiting: HashMap::new(),
            last: HashMap::new(),
        }
    }
}

/// A task makes at most one hinted call in this long: a flood of callbacks about one task
/// (valid or replayed) is one poll a second.
pub const HINT_EVERY: Duration = Duration::from_secs(1);

/// How far one slot may be moved toward the shared lattice, in parts of a spacing: 1/32
/// (3.2 ms at 9.7 calls/s) makes a line off it reach it within 32 slots, each gap at most
/// 3 % longer on the way.
const LATTICE_STEP: u128 = 32;

/// Intervals shorter than this count as this in the floor.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How often expired members and forgotten reservations are swept out: a member counts in the
/// floor for at most this long after its entry expired.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A reservation nobody came back for (a deleted task) is forgotten after this long.
const FORGET_RESERVATION: Duration = Duration::from_secs(60);

impl<K: Clone + Eq + Hash> Pacer<K> {
    /// A budget whose slots move onto `lattice`.
    pub fn new(config: BudgetConfig, lattice: Lattice) -> Self {
        Pacer {
            rate: config.max_rate,
            ceiling: config.max_rate,
            config,
            lattice,
            next_free: None,
            sent: VecDeque::new(),
            next_call: 0,
            round_trips: RoundTrips::default(),
            reservations: HashMap::new(),
            held_back: VecDeque::new(),
            members: HashMap::new(),
            demand: BTreeMap::new(),
            swept: None,
            hints: HintLane::default(),
        }
    }

    /// The calls per second currently allowed (below the maximum after throttling).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn spacing(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// `t`, or a little later on the way to the budget's [`Lattice`]: the first lattice point
    /// at or after `t` when it is at most [`LATTICE_STEP`] of a spacing away, else `t` plus
    /// that much.
    ///
    /// A slot is only ever made later, so the spacing between calls holds. A line off the
    /// lattice (an idle account's first call comes when it is asked for) reaches it in steps
    /// rather than at once: snapping the next slot to the lattice cost up to a whole spacing in
    /// one round, and ten tasks each wanting a poll a second (a round of ten slots) waited
    /// 1.105 x their floor in that round (`tests/pacing_simulation.rs`). A budget recovering
    /// from a throttle changes its rate at every call and keeps its own phase.
    fn toward_lattice(&self, t: Instant) -> Instant {
        if self.rate < self.config.max_rate {
            return t;
        }
        let spacing = self.spacing().as_nanos().max(1);
        let nanos = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
        let phase =
            spacing * u128::from(self.lattice.group % LATTICE_GROUPS) / u128::from(LATTICE_GROUPS);
        let origin = self.lattice.epoch.checked_add(nanos(phase)).unwrap_or(t);
        // How far the next lattice point at or after `t` is.
        let late = match t.checked_duration_since(origin) {
            Some(since) => (spacing - since.as_nanos() % spacing) % spacing,
            None => (origin - t).as_nanos() % spacing,
        };
        t.checked_add(nanos(late.min(spacing / LATTICE_STEP)))
            .unwrap_or(t)
    }

    /// Asks for a slot for `task` at `now`. A task that holds a reservation keeps it (coming
    /// back early changes nothing); otherwise it gets the next free slot, which is `Now` when
    /// the account is idle.
    pub fn acquire(&mut self, task: &K, now: Instant) -> Grant {
        if let Some(&at) = self.reservations.get(task) {
            if at > now {
                return Grant::At(at);
            }
            self.reservations.remove(task);
            return self.grant_now(task, now);
        }
        let slot = match self.next_free {
            Some(free) if free > now => free,
            _ => now,
        };
        self.next_free = Some(self.toward_lattice(slot + self.spacing()));
        if slot <= now {
            self.grant_now(task, now)
        } else {
            self.reservations.insert(task.clone(), slot);
            Grant::At(slot)
        }
    }

    /// Asks for a hinted call for `task` at `now`: a call ahead of its turn in the line,
    /// because a callback said it changed. Hinted calls are paced in a lane of their own at
    /// `share` (0..1) of the rate, a task at most once per [`HINT_EVERY`]; a task whose lane
    /// slot is later is told when (and keeps it).
    ///
    /// The call *moves* the task's next slot in the line forward: it gives up the slot it
    /// holds, or, holding none, pushes the line back by one slot. So hinted calls never add to
    /// the account's rate, and ordinary polling loses to them at most `share` of it. The few
    /// calls that move ahead of slots already handed out for the next second are what the
    /// window guard is for: it holds back whichever call would be one too many.
    pub fn expedite(&mut self, task: &K, share: f64, now: Instant) -> Grant {
        if self.held_back.iter().any(|(t, _)| t == task) {
            // Its hinted call is waiting for a place in the cloud's window already.
            return self.acquire(task, now);
        }
        match self.hints.waiting.get(task) {
            Some(&at) if at > now => return Grant::At(at),
            Some(_) => {
                self.hints.waiting.remove(task);
            }
            None => {
                // A task hinted again within the second comes back when it may be, and only
                // then takes a slot in the lane (holding one meanwhile would keep it from
                // the other tasks).
                if let Some(&last) = self.hints.last.get(task)
                    && last + HINT_EVERY > now
                {
                    return Grant::At(last + HINT_EVERY);
                }
                let share = if share.is_finite() {
                    share.clamp(0.01, 1.0)
                } else {
                    0.5
                };
                let slot = self.hints.next.map_or(now, |next| next.max(now));
                self.hints.next = Some(slot + self.spacing().div_f64(share));
                if slot > now {
                    self.hints.waiting.insert(task.clone(), slot);
                    return Grant::At(slot);
                }
            }
        }
        if self.reservations.remove(task).is_none() {
            let free = self.next_free.map_or(now, |free| free.max(now));
            self.next_free = Some(free + self.spacing());
        }
        self.hints.last.retain(|_, last| *last + HINT_EVERY > now);
        self.hints.last.insert(task.clone(), now);
        self.grant_now(task, now)
    }

    /// Right after `task`'s call, granted at `granted`, takes its next turn in the account's
    /// line, for a task the budget sets the pace of: it comes back only to call. The turn is
    /// the next free slot, but no sooner than one slot short of a whole `round` (the interval
    /// the budget polls it at) after the grant.
    ///
    /// On a busy account this halves the reconciles per call: coming back early to queue for
    /// a slot and coming back again when it opens was two reconciles for one call (issue 11:
    /// 2.9 reconciles per call at 10 000 tasks, most of the operator's CPU outside the call).
    /// Tasks then take their turns in the order they were last served, so each is served once
    /// per round.
    ///
    /// Taken whatever the line's length. Taking it only when the line already reached past the
    /// task's own interval let the line fall short of it after a slow take-over: from then on
    /// the tasks served came back early to ask, as before, and once the line grew again each
    /// of them asked at the end of a line a whole round long, and waited two rounds (`make
    /// profile`, 10 000 tasks: 177 tasks over 1.1 rounds, the worst 1.95).
    ///
    /// The round anchors the line to the calls actually made. Calls that start late (a busy
    /// take-over) leave the slots handed out running ahead of them; a task that took the next
    /// free slot then found it long past when it came back, and the window guard held it and
    /// every task after it back, twice each, for good (`make profile`, 10 000 tasks: a line of
    /// 65 held back at every account, 2.9 reconciles per call). Slots skipped to reach the
    /// anchor are lost once; the line then keeps pace.
    ///
    /// One slot short, and from the grant: a task on time finds the next free slot a round
    /// away already, and one a little late (its reconcile started late, its answer was slow)
    /// skips no slot. Counting from the answer and a whole interval (`make bench`, 1 000 tasks,
    /// ten per account) cut a hole into the line at every slow answer, and a round with a few
    /// of them took 1.19 floors.
    pub fn take_turn(
        &mut self,
        task: &K,
        round: Duration,
        granted: Instant,
        now: Instant,
    ) -> Instant {
        if let Some(&at) = self.reservations.get(task) {
            return at;
        }
        let anchor = granted
            .checked_add(round.saturating_sub(self.spacing()))
            .unwrap_or(now);
        let slot = self.toward_lattice(
            self.next_free
                .map_or(anchor, |free| free.max(anchor))
                .max(now),
        );
        self.reserve(task, slot);
        slot
    }

    /// Right after `task`'s call, takes its next turn only if the line of reserved slots
    /// already reaches past `earliest` (when it would come back to ask anyway); `None` when
    /// the line is shorter, and the task comes back at `earliest` to ask as usual. For a task
    /// its own interval or a backoff sets the pace of: one reconcile saved, no slot skipped.
    pub fn join_after(&mut self, task: &K, earliest: Instant, now: Instant) -> Option<Instant> {
        if self.reservations.contains_key(task) {
            return None;
        }
        let free = self
            .next_free
            .filter(|free| *free >= earliest && *free > now)?;
        self.reserve(task, free);
        Some(free)
    }

    /// Gives `task` the slot at `slot`, the line's last.
    fn reserve(&mut self, task: &K, slot: Instant) {
        self.next_free = Some(self.toward_lattice(slot + self.spacing()));
        self.reservations.insert(task.clone(), slot);
    }

    /// Grants a call now unless it would be one too many in the cloud's window; then the task
    /// keeps a reservation for the instant a place in the window is its own.
    ///
    /// A deferral leaves every paced slot where it is, and the deferred call waits only the few
    /// milliseconds its own lateness cost. Two things that look safer are worse (replayed in
    /// `tests/pacing_simulation.rs`, 500 tasks, reconciles starting up to 20 ms late): pushing
    /// the next free slot one spacing out per deferral loses a slot per late call (6.2 calls/s
    /// of 9.7, worst gap 2.1 x N/rate), and queueing deferred calls one window-spacing apart
    /// puts them behind the paced ones, which starve them (9.5/s, worst gap 2.1 x).
    ///
    /// Held-back tasks wait in line, each for a place of its own: the k-th for the k-th call
    /// to leave the window, and a task arriving meanwhile queues behind them. Sending them all
    /// back for the first place to open woke every one of them for each place, and all but one
    /// were held back again: at 10 000 tasks taking over, 26 reconciles per call, which kept
    /// every worker busy (issue 11: 0.5 CPU s per 1 000 polls, tasks left unpolled for 90 s).
    fn grant_now(&mut self, task: &K, now: Instant) -> Grant {
        // Places claimed by tasks that did not come back within a window are given up. A task
        // back for its place leaves the line; the ones ahead of it keep their claim.
        let window = self.config.window;
        self.held_back.retain(|(_, at)| *at + window > now);
        let ahead = match self.held_back.iter().position(|(t, _)| t == task) {
            Some(position) => {
                self.held_back.remove(position);
                position
            }
            None => self.held_back.len(),
        };
        if let Some(at) = self.window_full_until(now, ahead) {
            self.reservations.insert(task.clone(), at);
            self.held_back.insert(ahead, (task.clone(), at));
            return Grant::At(at);
        }
        let call = Call(self.next_call);
        self.next_call += 1;
        self.sent.push_back(Sent {
            call,
            granted: now,
            counts_at: now,
        });
        Grant::Now(call)
    }

    /// When a call made now, behind `ahead` held-back calls that go first, would be one too
    /// many in some window of the cloud's: the instant it no longer would be. Forgets the calls
    /// that can no longer count.
    fn window_full_until(&mut self, now: Instant, ahead: usize) -> Option<Instant> {
        let window = self.config.window;
        self.sent.retain(|s| s.counts_at + window > now);
        // Bounded whatever happens: the calls granted last are the ones that count.
        while self.sent.len() > 4 * self.config.window_calls {
            self.sent.pop_front();
        }
        // How many of the counted calls must leave the window before this one fits: none when
        // there is room for it and every call ahead of it; usually one more than are ahead.
        let leave = (self.sent.len() + ahead + 1).saturating_sub(self.config.window_calls);
        if leave == 0 {
            return None;
        }
        let mut departures: Vec<Instant> = self.sent.iter().map(|s| s.counts_at + window).collect();
        departures.sort_unstable();
        // The place `leave` opens when the call that took the place `window_calls` before it
        // leaves the window in turn (a place free now is taken now).
        let (mut place, mut windows) = (leave, 0u32);
        let opened = loop {
            if place <= departures.len() {
                break departures[place - 1];
            }
            windows = windows.saturating_add(1);
            if place <= self.config.window_calls {
                break now;
            }
            place -= self.config.window_calls;
        };
        Some(opened + window.saturating_mul(windows))
    }

    /// The cloud answered `call` (or gave up on it) at `now`. A round trip longer than the
    /// account's fastest recent one means the request may have reached the cloud that much
    /// after its grant, so the window guard counts it that much later: otherwise a call held up
    /// on its way out (a busy CPU, a stalled runtime, a slow path) and a call granted on time
    /// a second after its grant could both land in one cloud second with nine others, the
    /// eleventh (issue 11: 27 calls throttled in one second at 10 000 tasks).
    pub fn answered(&mut self, call: Call, reached_cloud: bool, now: Instant) {
        let Some(sent) = self.sent.iter_mut().rev().find(|s| s.call == call) else {
            return; // Long out of the window: it counts no more.
        };
        let round_trip = now.saturating_duration_since(sent.granted);
        if reached_cloud {
            self.round_trips.record(round_trip);
        }
        // With no round trip known yet, one that never reached the cloud may still have.
        let fastest = self.round_trips.fastest().unwrap_or(Duration::ZERO);
        let late = round_trip.saturating_sub(fastest);
        // The guard's window is already longer than the cloud's by a slack that covers this
        // much lateness; only what goes past it moves the call.
        let slack = self.config.window.saturating_sub(CLOUD_WINDOW);
        let counts_at = sent.granted + late.saturating_sub(slack);
        sent.counts_at = sent.counts_at.max(counts_at);
    }

    /// Gives up `task`'s reservation, if any (the task was deleted or suspended).
    pub fn release(&mut self, task: &K) {
        self.reservations.remove(task);
        self.hints.waiting.remove(task);
        self.held_back.retain(|(t, _)| t != task);
        if let Some((desired, _)) = self.members.remove(task) {
            self.forget_demand(desired);
        }
    }

    fn forget_demand(&mut self, desired: Duration) {
        if let Some(count) = self.demand.get_mut(&desired) {
            *count -= 1;
            if *count == 0 {
                self.demand.remove(&desired);
            }
        }
    }

    /// Drops members whose entry expired and reservations nobody came back for, at most once
    /// per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self.swept.is_some_and(|at| now < at + SWEEP_EVERY) {
            return;
        }
        self.swept = Some(now);
        let mut expired = Vec::new();
        self.members.retain(|_, (desired, expires)| {
            let keep = *expires > now;
            if !keep {
                expired.push(*desired);
            }
            keep
        });
        for desired in expired {
            self.forget_demand(desired);
        }
        self.reservations
            .retain(|_, at| *at + FORGET_RESERVATION > now);
        self.hints
            .waiting
            .retain(|_, at| *at + FORGET_RESERVATION > now);
    }

    /// The cloud answered without throttling: regain a little rate, up to the ceiling, and let
    /// the ceiling itself creep back up (much more slowly) in case the cloud's limit was raised.
    pub fn on_success(&mut self) {
        self.ceiling = (self.ceiling + self.config.recovery_step / 50.0).min(self.config.max_rate);
        self.rate = (self.rate + self.config.recovery_step).min(self.ceiling);
    }

    /// The cloud throttled a call: slow down at once, remember that the rate that led here is
    /// too high (so recovery stops short of it instead of probing it again and again), and
    /// move every reservation to the new spacing, in line: tasks coming back for them wait for
    /// their new slot rather than firing at the old pace, and keep their place. (Dropping the
    /// reservations let every task that asked since, the throttled one first, go ahead of the
    /// tasks waiting for theirs; under sustained throttling a task could wait forever.)
    pub fn on_throttled(&mut self, now: Instant) {
        self.ceiling = (self.rate * CEILING_AFTER_THROTTLE).max(self.config.min_rate);
        self.rate = (self.rate * self.config.backoff_factor).max(self.config.min_rate);
        let mut line: Vec<(K, Instant)> = self.reservations.drain().collect();
        line.sort_by_key(|(_, at)| *at);
        // The line the window guard kept is part of that line now.
        self.held_back.clear();
        let mut slot = now + self.spacing();
        for (task, _) in line {
            self.reservations.insert(task, slot);
            slot += self.spacing();
        }
        self.next_free = Some(slot);
    }

    /// Records that `task` wants to be polled every `desired` until `until`, and returns the
    /// account's floor: the shortest interval any task may be polled at so that all of them
    /// together stay within the rate.
    ///
    /// The floor is max-min fair: tasks that want to be polled rarely (stopped ones, every ten
    /// minutes) keep their interval and leave the rest of the budget to the others. When every
    /// task wants the same interval the floor is simply members / rate, so each task is served in
    /// turn. Zero when the demand fits the budget.
    pub fn floor(&mut self, task: &K, desired: Duration, now: Instant, until: Instant) -> Duration {
        let desired = desired.max(MIN_INTERVAL);
        if let Some((before, _)) = self.members.insert(task.clone(), (desired, until)) {
            self.forget_demand(before);
        }
        *self.demand.entry(desired).or_insert(0) += 1;
        self.sweep(now);
        Duration::from_secs_f64(fair_floor(&self.demand, self.rate))
    }

    /// How many tasks currently draw on this account.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The floor for the members as they are, without renewing anyone (for status and metrics).
    pub fn current_floor(&self) -> Duration {
        Duration::from_secs_f64(fair_floor(&self.demand, self.rate))
    }

    /// Takes a new limit (an account object changed its `qps`), keeping reservations and members.
    pub fn reconfigure(&mut self, config: BudgetConfig) {
        if config == self.config {
            return;
        }
        self.rate = self.rate.min(config.max_rate);
        if self.rate < config.max_rate && self.ceiling >= self.config.max_rate {
            // Not throttled before: run at the new limit at once.
            self.rate = config.max_rate;
        }
        self.ceiling = self.ceiling.min(config.max_rate).max(self.rate);
        self.config = config;
        // A lower limit counts the calls already in the window: the guard looks at them all.
    }

    /// The configuration in force.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }
}

/// Water-filling: the smallest floor `F` with `sum(count / max(interval, F)) <= rate` over the
/// groups of members wanting each interval, in seconds (0 when the intervals as wanted already
/// fit). Raises the shortest intervals first: tasks polled rarely keep their interval.
fn fair_floor(demand: &BTreeMap<Duration, usize>, rate: f64) -> f64 {
    // Demand of the tasks not raised to the floor.
    let mut rest: f64 = demand
        .iter()
        .map(|(interval, count)| *count as f64 / interval.as_secs_f64())
        .sum();
    if rest <= rate {
        return 0.0;
    }
    let mut raised = 0.0;
    let mut groups = demand.iter().peekable();
    while let Some((interval, count)) = groups.next() {
        // Raise this group and every shorter one to a common floor F: raised/F + rest' = rate.
        let interval = interval.as_secs_f64();
        rest -= *count as f64 / interval;
        raised += *count as f64;
        let floor = raised / (rate - rest).max(f64::MIN_POSITIVE);
        let next = groups
            .peek()
            .map_or(f64::INFINITY, |(next, _)| next.as_secs_f64());
        if rate > rest && floor <= next {
            return floor.max(interval);
        }
    }
    raised / rate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten calls a second, on a lattice counted from `epoch` (group 0).
    fn ten_per_second(epoch: Instant) -> Pacer<u32> {
        in_group(epoch, 0)
    }

    fn first_group(epoch: Instant) -> Lattice {
        Lattice { epoch, group: 0 }
    }

    fn in_group(epoch: Instant, group: u32) -> Pacer<u32> {
        Pacer::new(
            BudgetConfig {
                max_rate: 10.0,
                min_rate: 0.5,
                recovery_step: 0.1,
                backoff_factor: 0.5,
                window_calls: 10,
                window: Duration::from_secs(1),
            },
            Lattice { epoch, group },
        )
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// 100 tasks in line at 10 calls/s (a round of 10 s), hints at half the rate: one task
    /// hinted every 10 ms (a flood), another one every 100 ms. Calls are answered at once.
    #[test]
    fn hinted_calls_keep_to_their_share_one_a_second_per_task_and_starve_no_one() {
        let t0 = Instant::now();
        let mut pacer = ten_per_second(t0);
        let round = secs(10.0);
        let tasks = 100u32;
        let mut next: Vec<Instant> = (0..tasks).map(|_| t0).collect();
        let mut hinted = vec![false; tasks as usize];
        let mut calls: Vec<(Duration, u32, bool)> = Vec::new();
        let step = secs(0.001);
        let mut now = t0;
        for tick in 0..60_000u32 {
            if tick % 10 == 0 {
                hinted[7] = true;
                next[7] = next[7].min(now);
            }
            if tick % 100 == 50 {
                let other = (tick / 100 * 37) % tasks;
                hinted[other as usize] = true;
                next[other as usize] = next[other as usize].min(now);
            }
            for task in 0..tasks {
                let i = task as usize;
                if next[i] > now {
                    continue;
                }
                let grant = if hinted[i] {
                    pacer.expedite(&task, 0.5, now)
                } else {
                    pacer.acquire(&task, now)
                };
                match grant {
                    Grant::At(at) => next[i] = at,
                    Grant::Now(call) => {
                        calls.push((now - t0, task, hinted[i]));
                        hinted[i] = false;
                        pacer.answered(call, true, now);
                        next[i] = pacer.take_turn(&task, round, now, now);
                    }
                }
            }
            now += step;
        }
        for second in 0..60 {
            let window = |c: &&(Duration, u32, bool)| c.0.as_secs() == second;
            let all = calls.iter().filter(window).count();
            let hints = calls.iter().filter(window).filter(|c| c.2).count();
            let hot = calls
                .iter()
                .filter(window)
                .filter(|c| c.2 && c.1 == 7)
                .count();
            assert!(all <= 10, "second {second}: {all} calls");
            assert!(hints <= 5, "second {second}: {hints} hinted calls");
            assert!(hot <= 1, "second {second}: the hot task {hot} times");
        }
        let total_hinted = calls.iter().filter(|c| c.2).count();
        assert!(
            total_hinted >= 240,
            "the lane is used: {total_hinted} in 60 s"
        );
        // Every task still takes its turns: the line runs at half the rate at worst.
        for task in 0..tasks {
            let mut times: Vec<Duration> =
                calls.iter().filter(|c| c.1 == task).map(|c| c.0).collect();
            times.push(secs(60.0));
            let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
            assert!(worst <= secs(21.0), "task {task} waited {worst:?}");
        }
    }

    #[test]
    fn a_hinted_call_moves_the_tasks_slot_forward_and_adds_none() {
        let t0 = Instant::now();
        let mut pacer = ten_per_second(t0);
        for task in 0..10 {
            let _ = pacer.acquire(&task, t0);
        }
        // Task 9 holds the slot at 0.9 s; hinted at 0.05 s it calls then, and gives it up.
        let hinted_at = t0 + secs(0.05);
        assert!(pacer.expedite(&9, 0.5, hinted_at).is_now());
        assert!(!pacer.reservations.contains_key(&9));
        // The line's next free slot did not move: the call took task 9's place.
        assert_eq!(pacer.acquire(&10, hinted_at), Grant::At(t0 + secs(1.0)));
        // A task holding no slot pushes the line back one slot instead.
        assert!(pacer.expedite(&11, 1.0, t0 + secs(0.3)).is_now());
        assert_eq!(
            pacer.acquire(&12, t0 + secs(0.3)),
            Grant::At(t0 + secs(1.2))
        );
    }

    #[test]
    fn idle_account_grants_the_first_call_now() {
        let t0 = Instant::now();
        assert!(ten_per_second(t0).acquire(&1, t0).is_now());
    }

    #[test]
    fn accounts_that_started_apart_reach_the_shared_lattice_in_small_steps_and_call_in_step() {
        let epoch = Instant::now();
        let spacing = secs(0.1);
        let on_lattice = |t: Instant| (t - epoch).as_nanos().is_multiple_of(spacing.as_nanos());
        let (mut a, mut b) = (ten_per_second(epoch), ten_per_second(epoch));
        // Account a's first call comes 0.03 s after the epoch, b's 0.47 s after it: both are
        // granted at once, off the lattice epoch + n x 0.1 s.
        let (ta, tb) = (epoch + secs(0.03), epoch + secs(0.47));
        assert!(a.acquire(&0, ta).is_now());
        assert!(b.acquire(&0, tb).is_now());
        // Forty tasks line up behind each first call.
        let line = |budget: &mut Pacer<u32>, first: Instant| -> Vec<Instant> {
            let mut slots = vec![first];
            slots.extend((1..40).map(|task| match budget.acquire(&task, first) {
                Grant::At(at) => at,
                Grant::Now(_) => panic!("task {task} was granted now"),
            }));
            slots
        };
        let (sa, sb) = (line(&mut a, ta), line(&mut b, tb));
        for slots in [&sa, &sb] {
            // Never closer than a spacing, never more than 1/32 of one further apart...
            for pair in slots.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap >= spacing && gap <= spacing + spacing / 32, "{gap:?}");
            }
            // ...and on the lattice within 32 slots, for good.
            let reached = slots.iter().position(|&t| on_lattice(t)).unwrap();
            assert!(reached <= 32, "on the lattice from slot {reached}");
            assert!(slots[reached..].iter().all(|&t| on_lattice(t)));
        }
        // From then on the two lines call at the same instants: one wake-up serves both.
        let (last_a, last_b) = (sa[39], sb[39]);
        assert!(sb.contains(&last_a) || sa.contains(&last_b));
        // A task taking its next turn joins the line on the lattice.
        assert_eq!(
            a.take_turn(&0, secs(1.0), ta, ta + secs(0.013)),
            last_a + spacing
        );
    }

    #[test]
    fn each_group_calls_at_its_own_phase_of_the_spacing() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        // The middle group (and the one a round of groups later) lies half a spacing after
        // group 0.
        let half = LATTICE_GROUPS / 2;
        for group in [half, half + LATTICE_GROUPS] {
            let mut b = in_group(epoch, group);
            let t = epoch + ms(1060);
            assert!(b.acquire(&0, t).is_now());
            // The next slot is due at 1.16 s; 1.15 s is the group's lattice point before it,
            // 1.25 s the one after, 90 ms away: the slot moves 1/32 of a spacing toward it.
            let Grant::At(next) = b.acquire(&1, t) else {
                panic!("granted now")
            };
            assert_eq!(next, t + ms(100) + ms(100) / 32);
            // A slot 2 ms before a lattice point of the group lands on it.
            let mut b = in_group(epoch, group);
            assert!(b.acquire(&0, epoch + ms(1048)).is_now());
            assert_eq!(b.acquire(&1, t), Grant::At(epoch + ms(1150)));
        }
    }

    #[test]
    fn thirty_tasks_asking_at_once_are_spread_evenly_over_three_seconds() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        let grants: Vec<Grant> = (0..30).map(|task| b.acquire(&task, t0)).collect();
        assert!(grants[0].is_now());
        for (i, g) in grants.iter().enumerate().skip(1) {
            let Grant::At(at) = *g else {
                panic!("task {i} was granted now")
            };
            let offset = at - t0;
            assert!(
                (offset.as_secs_f64() - i as f64 * 0.1).abs() < 1e-6,
                "task {i} at {offset:?}"
            );
        }
    }

    #[test]
    fn task_returning_at_its_slot_owns_it() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        b.acquire(&1, t0);
        let Grant::At(at) = b.acquire(&2, t0) else {
            panic!()
        };
        // Another task asking in between does not take task 2's slot.
        assert_eq!(b.acquire(&3, t0 + secs(0.05)), Grant::At(t0 + secs(0.2)));
        assert!(b.acquire(&2, at).is_now());
    }

    #[test]
    fn task_coming_back_early_keeps_its_reservation_and_takes_no_new_slot() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        b.acquire(&1, t0);
        let first = b.acquire(&2, t0);
        assert_eq!(b.acquire(&2, t0 + secs(0.01)), first);
        assert_eq!(b.acquire(&3, t0), Grant::At(t0 + secs(0.2)));
    }

    #[test]
    fn a_task_just_served_takes_its_next_turn_at_the_end_of_a_line_that_reaches_past_its_interval()
    {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        // Twenty tasks in line: slots up to 1.9 s, the next free at 2.0 s.
        for task in 0..20 {
            b.acquire(&task, t0);
        }
        // Task 0, served at t0, would come back in a second: the line already goes past that,
        // so it takes the next free slot now, and the next task to ask lines up behind it.
        assert_eq!(
            b.join_after(&0, t0 + secs(1.0), t0 + secs(0.01)),
            Some(t0 + secs(2.0))
        );
        assert_eq!(b.acquire(&99, t0 + secs(0.02)), Grant::At(t0 + secs(2.1)));
        // Coming back at its slot, it calls.
        assert!(b.acquire(&0, t0 + secs(2.0)).is_now());
    }

    #[test]
    fn a_task_just_served_comes_back_as_usual_when_the_line_is_shorter_than_its_interval() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..5 {
            b.acquire(&task, t0);
        }
        // Slots up to 0.4 s: a task that wants a second between polls is not lined up sooner.
        assert_eq!(b.join_after(&0, t0 + secs(1.0), t0 + secs(0.01)), None);
        // Nor is a task that still holds a slot, nor one on an idle account.
        assert_eq!(b.join_after(&4, t0, t0 + secs(0.01)), None);
        let mut idle = ten_per_second(t0);
        assert_eq!(idle.join_after(&0, t0, t0), None);
        // The line is untouched: the next task to ask gets the slot after the fifth.
        assert_eq!(b.acquire(&5, t0 + secs(0.02)), Grant::At(t0 + secs(0.5)));
    }

    #[test]
    fn a_task_the_budget_paces_takes_its_turn_in_line_whatever_the_line_s_length() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..5 {
            b.acquire(&task, t0);
        }
        // Slots up to 0.4 s, and task 0, granted at t0, is polled every second: its turn is
        // one slot short of that, and the next task to ask lines up behind it.
        let round = secs(1.0);
        assert_eq!(b.take_turn(&0, round, t0, t0 + secs(0.01)), t0 + secs(0.9));
        assert_eq!(b.acquire(&5, t0 + secs(0.02)), Grant::At(t0 + secs(1.0)));
        // A task that still holds a slot keeps it.
        assert_eq!(b.take_turn(&4, round, t0, t0 + secs(0.02)), t0 + secs(0.4));
    }

    #[test]
    fn a_turn_taken_is_at_least_one_slot_short_of_a_round_after_the_grant() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        // Thirty tasks lined up from t0: slots up to 2.9 s.
        for task in 0..30 {
            b.acquire(&task, t0);
        }
        // The calls fell behind the slots: task 20's slot (2.0 s) is only served at 4.0 s.
        // With thirty tasks in a round of three seconds, its next turn is not the next free
        // slot (3.0 s, long past by the time the line reaches it) but 2.9 s after its grant.
        let served = t0 + secs(4.0);
        assert!(b.acquire(&20, served).is_now());
        let answered = served + secs(0.05);
        assert_eq!(
            b.take_turn(&20, secs(3.0), served, answered),
            served + secs(2.9)
        );
        // On time, the next free slot already is a round away: the anchor changes nothing,
        // and neither does a slow answer.
        let mut on_time = ten_per_second(t0);
        for task in 0..30 {
            on_time.acquire(&task, t0);
        }
        assert_eq!(
            on_time.take_turn(&0, secs(3.0), t0, t0 + secs(0.08)),
            t0 + secs(3.0)
        );
    }

    #[test]
    fn no_one_second_window_ever_holds_more_calls_than_the_cloud_limit() {
        // The cloud allows 10 per second; the 5 % margin absorbs calls made a little after
        // their slot (here up to one 7 ms tick late).
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.05), first_group(t0));
        // 100 tasks hammering the budget every 7 ms for 5 s, each calling when granted.
        let mut calls = Vec::new();
        let mut t = t0;
        while t < t0 + secs(5.0) {
            for task in 0..100 {
                if b.acquire(&task, t).is_now() {
                    calls.push(t);
                }
            }
            t += secs(0.007);
        }
        for (i, start) in calls.iter().enumerate() {
            let in_window = calls[i..]
                .iter()
                .take_while(|c| **c < *start + secs(1.0))
                .count();
            assert!(
                in_window <= 10,
                "{in_window} calls in the second after call {i}"
            );
        }
        // ... and the budget is used: 9.5 calls per second.
        assert!(calls.len() >= 47, "only {} calls in 5 s", calls.len());
    }

    #[test]
    fn throttling_halves_the_rate_and_success_recovers_it_slowly_below_the_throttled_rate() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        b.on_throttled(t0);
        assert_eq!(b.rate(), 5.0);
        b.on_throttled(t0);
        assert_eq!(b.rate(), 2.5);
        for _ in 0..10 {
            b.on_success();
        }
        assert!((b.rate() - 3.5).abs() < 1e-9);
        // The rate that was throttled last was 5: recovery stops at 80 % of it for a long while.
        for _ in 0..100 {
            b.on_success();
        }
        assert!(b.rate() < 4.3, "{}", b.rate());
        for _ in 0..100_000 {
            b.on_success();
        }
        assert_eq!(
            b.rate(),
            10.0,
            "in the end recovery reaches the configured maximum"
        );
    }

    #[test]
    fn throttling_respaces_queued_tasks_at_the_new_rate_in_line() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..5 {
            b.acquire(&task, t0);
        }
        b.on_throttled(t0);
        // Tasks 1..4 held 0.1..0.4 s; at the new 0.2 s spacing they keep their order.
        assert_eq!(b.acquire(&4, t0 + secs(0.4)), Grant::At(t0 + secs(0.8)));
        assert_eq!(b.acquire(&3, t0 + secs(0.3)), Grant::At(t0 + secs(0.6)));
        assert_eq!(b.acquire(&1, t0 + secs(0.1)), Grant::At(t0 + secs(0.2)));
        assert!(b.acquire(&1, t0 + secs(0.2)).is_now());
        // The throttled task asking again queues behind them.
        assert_eq!(b.acquire(&0, t0 + secs(0.2)), Grant::At(t0 + secs(1.0)));
    }

    #[test]
    fn throttling_never_drops_the_rate_below_the_minimum() {
        let mut b = ten_per_second(Instant::now());
        for _ in 0..50 {
            b.on_throttled(Instant::now());
        }
        assert_eq!(b.rate(), 0.5);
    }

    #[test]
    fn throttling_pushes_the_next_free_slot_out_at_the_new_spacing() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        assert!(b.acquire(&1, t0).is_now());
        b.on_throttled(t0);
        assert_eq!(b.acquire(&2, t0), Grant::At(t0 + secs(0.2)));
    }

    #[test]
    fn floor_is_member_count_over_rate_when_all_want_the_same_interval() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..29 {
            b.floor(&task, secs(1.0), t0, t0 + secs(60.0));
        }
        let floor = b.floor(&29, secs(1.0), t0, t0 + secs(60.0));
        assert!((floor.as_secs_f64() - 3.0).abs() < 1e-9, "{floor:?}");
    }

    #[test]
    fn floor_is_zero_while_the_demand_fits_the_budget() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..50 {
            // 50 tasks every 30 s: 1.7 calls/s.
            assert_eq!(
                b.floor(&task, secs(30.0), t0, t0 + secs(60.0)),
                Duration::ZERO
            );
        }
    }

    #[test]
    fn rarely_polled_tasks_leave_the_budget_to_the_others() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        // 600 stopped tasks every 10 min (1 call/s) and 90 running tasks every second.
        for task in 0..600 {
            b.floor(&task, secs(600.0), t0, t0 + secs(60.0));
        }
        let mut floor = Duration::ZERO;
        for task in 600..690 {
            floor = b.floor(&task, secs(1.0), t0, t0 + secs(60.0));
        }
        // The running tasks share the 9 calls/s left: every 10 s, not every 69 s.
        assert!((floor.as_secs_f64() - 10.0).abs() < 1e-6, "{floor:?}");
    }

    #[test]
    fn members_that_stop_renewing_no_longer_count() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        for task in 0..30 {
            b.floor(&task, secs(1.0), t0, t0 + secs(60.0));
        }
        let later = t0 + secs(61.0);
        for task in 1..30 {
            b.floor(&task, secs(1.0), later, later + secs(60.0));
        }
        assert_eq!(b.members(), 29);
    }

    #[test]
    fn released_task_loses_its_reservation_and_membership() {
        let t0 = Instant::now();
        let mut b = ten_per_second(t0);
        b.acquire(&1, t0);
        b.acquire(&2, t0);
        b.floor(&2, secs(1.0), t0, t0 + secs(60.0));
        b.release(&2);
        assert_eq!(b.members(), 0);
        // Task 2 asking again gets a fresh slot after the one it gave up.
        assert_eq!(b.acquire(&2, t0), Grant::At(t0 + secs(0.2)));
    }

    #[test]
    fn calls_sent_late_in_a_burst_never_exceed_the_cloud_window() {
        // Slots were handed out on time, but a busy process comes back for all of them at
        // once, 3 s late: only 10 go out in that second, the rest wait for the window.
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.03), first_group(t0));
        let grants: Vec<Grant> = (0..30).map(|task| b.acquire(&task, t0)).collect();
        let late = t0 + secs(3.0);
        let mut now_calls = 0;
        for (task, grant) in grants.iter().enumerate() {
            let task = task as u32;
            let again = match grant {
                Grant::Now(_) => continue,
                Grant::At(_) => b.acquire(&task, late),
            };
            if again.is_now() {
                now_calls += 1;
            } else {
                let Grant::At(at) = again else { unreachable!() };
                assert!(at >= t0 + secs(1.025), "deferred past the window: {at:?}");
            }
        }
        // The first call went out at t0, long before: 10 may go at `late`.
        assert_eq!(now_calls, 10);
    }

    #[test]
    fn tasks_held_back_by_the_window_wait_in_line_each_for_a_place_of_its_own() {
        // A busy process comes back for 29 paced slots at once, 3 s late: 10 go, and the 19
        // held back are each told the instant a place of their own opens, in the order they
        // asked, so each comes back once and goes. (Telling them all the first instant a place
        // opened woke all of them for every place, and held back all but the first again.)
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.03), first_group(t0));
        assert!(b.acquire(&0, t0).is_now());
        for task in 1..30 {
            assert!(!b.acquire(&task, t0).is_now());
        }
        let late = t0 + secs(3.0);
        let mut granted = Vec::new();
        let mut line = Vec::new();
        for task in 1..30 {
            match b.acquire(&task, late) {
                Grant::Now(_) => granted.push(late),
                Grant::At(at) => line.push((task, at)),
            }
        }
        assert_eq!((granted.len(), line.len()), (10, 19));
        for pair in line.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{pair:?}: not in turn");
        }
        // A task whose paced slot comes meanwhile queues behind them.
        let Grant::At(slot) = b.acquire(&30, late) else {
            panic!("task 30 went at once")
        };
        let Grant::At(behind) = b.acquire(&30, slot) else {
            panic!("task 30 jumped the line")
        };
        assert!(behind >= line[18].1);
        for (task, at) in line {
            assert!(
                b.acquire(&task, at).is_now(),
                "task {task} was held back again"
            );
            granted.push(at);
            let in_window = granted.iter().filter(|g| **g + secs(1.025) > at).count();
            assert!(
                in_window <= 10,
                "{in_window} calls in the window at task {task}"
            );
        }
    }

    /// Calls of `b` at `t`: granted now, and answered `round_trip` later.
    fn call(b: &mut Pacer<u32>, task: u32, t: Instant, round_trip: f64) -> Grant {
        let grant = b.acquire(&task, t);
        if let Grant::Now(call) = grant {
            b.answered(call, true, t + secs(round_trip));
        }
        grant
    }

    #[test]
    fn a_call_deferred_by_the_window_guard_costs_no_one_else_a_slot() {
        // Ten tasks in line, 0.1 s apart (no margin). The first call's round trip takes 30 ms
        // longer than the others' (it went out late), 5 ms more than the guard's 1.025 s window
        // covers, so the eleventh, on time at 1.0 s, waits for the first to leave the window
        // (at 1.030 s), and the next task to ask still gets the slot after the eleventh's, not
        // one further out.
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.0), first_group(t0));
        // One earlier call, long out of the window, shows what a round trip takes: 2 ms.
        let before = t0 - secs(5.0);
        assert!(call(&mut b, 99, before, 0.002).is_now());
        assert!(call(&mut b, 0, t0, 0.032).is_now());
        for task in 1..11 {
            b.acquire(&task, t0);
        }
        for task in 1..10 {
            let slot = t0 + Duration::from_millis(100 * u64::from(task));
            assert!(call(&mut b, task, slot, 0.002).is_now());
        }
        let at = t0 + secs(0.005 + 1.025);
        let deferred = b.acquire(&10, t0 + secs(1.0));
        let Grant::At(deferred) = deferred else {
            panic!("the eleventh call was granted at once")
        };
        assert!(
            (deferred.saturating_duration_since(at) + at.saturating_duration_since(deferred))
                < Duration::from_micros(1),
            "deferred to {:?} after t0",
            deferred - t0
        );
        assert_eq!(b.acquire(&11, t0 + secs(1.0)), Grant::At(t0 + secs(1.1)));
        assert!(b.acquire(&10, deferred).is_now());
    }

    #[test]
    fn a_call_answered_late_counts_in_the_window_as_sent_late() {
        // The cloud counts a call when it arrives, not when the budget granted it. Ten calls
        // 0.1 s apart, each answered in 2 ms, except the first, answered 40 ms late: it may
        // have reached the cloud 40 ms after its grant, 15 ms past the 25 ms by which the
        // guard's window (1.025 s) outlasts the cloud's. So the eleventh call waits until
        // 1.040 s, not 1.025 s.
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.0), first_group(t0));
        assert!(call(&mut b, 99, t0 - secs(5.0), 0.002).is_now());
        assert!(call(&mut b, 0, t0, 0.042).is_now());
        for task in 1..10 {
            let slot = t0 + Duration::from_millis(100 * u64::from(task));
            b.acquire(&task, t0);
            assert!(call(&mut b, task, slot, 0.002).is_now());
        }
        assert!(matches!(b.acquire(&10, t0 + secs(1.03)), Grant::At(at) if at >= t0 + secs(1.039)));
        // A call never answered (a timeout) may have arrived at any time up to its give-up.
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(1.0, 0.0), first_group(t0));
        let Grant::Now(first) = b.acquire(&1, t0) else {
            panic!()
        };
        b.answered(first, false, t0 + secs(0.5));
        assert_eq!(b.acquire(&2, t0 + secs(1.1)), Grant::At(t0 + secs(1.5)));
    }

    #[test]
    fn prompt_answers_change_nothing() {
        // Every round trip the same: the window guard counts every call at its grant.
        let t0 = Instant::now();
        let mut b: Pacer<u32> = Pacer::new(BudgetConfig::for_limit(10.0, 0.0), first_group(t0));
        for task in 0..10 {
            let slot = t0 + Duration::from_millis(100 * u64::from(task));
            assert!(call(&mut b, task, slot, 0.2).is_now(), "task {task}");
        }
        assert!(b.acquire(&10, t0 + secs(1.025)).is_now());
    }

    #[test]
    fn limit_with_margin_keeps_headroom() {
        let c = BudgetConfig::for_limit(10.0, 0.05);
        assert!((c.max_rate - 9.5).abs() < 1e-9);
    }
}
