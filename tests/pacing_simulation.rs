//! Pacing of one cloud account, simulated on a virtual clock: the functions the reconcile shell
//! (`controller::task`) runs, shipped in `controller::schedule` (the gate before a call, the
//! budget's feedback, the plan after `decide` and the next turn it takes), with the budget and
//! `decide` themselves, driven by a model of kube-runtime's scheduler and runner (5.0:
//! `scheduler.rs`, `controller/runner.rs`):
//!
//! - one scheduled entry per object; a new request replaces a pending one only when it is
//!   earlier (the scheduler keeps the *earlier* of two);
//! - an entry that comes due while its object is being reconciled (or while every worker is
//!   busy) is held pending, and every request for a held object is dropped, including the
//!   requeue its running reconcile asks for when it ends;
//! - a requeue runs `requeue_after` after the reconcile *ended*;
//! - a watch event (the object's creation, the initial list, or the account turning Ready,
//!   which wakes every task of the account) asks for a reconcile now;
//! - at most `concurrency` reconciles at once, held entries taken in no particular order.
//!
//! Every call of every task is recorded, and the worst gap between two consecutive calls of a
//! task is compared with a full cycle, N / rate: every task served in turn, none skipped.
//! Time is virtual (the clock is read once, for an origin) and every random draw comes from a
//! seeded RNG: a seed gives one run, always the same.
//!
//! What it found for issue 11 (N = 500 on one 10 QPS account, 1 s polls): the operator serves
//! every task in turn, in the first cycle and after it, whether the tasks existed before the
//! start or were created while it ran; the 2.13 x N/QPS of `make bench` was its sampler (see
//! [`bench_sampler`]). At 10 000 tasks over 100 accounts it replays a busy take-over (the
//! `takeover` scenarios): the line of slots ran ahead of the calls for good, until each task's
//! next turn was anchored to its round.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpu_relay_operator::api::{AccountRef, MpuRelayTask, MpuRelayTaskSpec};
use mpu_relay_operator::budget::{Budget, Budgets, CloudAccount, Limit};
use mpu_relay_operator::cloud::MpuTaskStatus;
use mpu_relay_operator::controller::decide::{Outcome, PollConfig, decide};
use mpu_relay_operator::controller::schedule::{self, Gate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Virtual time in microseconds since the simulation began.
type Micros = u64;

fn us(d: Duration) -> Micros {
    d.as_micros() as Micros
}

fn secs(t: Micros) -> f64 {
    t as f64 / 1e6
}

/// How the tasks come to be, and how long things take.
#[derive(Clone, Debug)]
struct Scenario {
    tasks: usize,
    /// `None`: every task exists before the operator starts (its initial list asks for all of
    /// them at once). `Some(r)`: created while it runs, `r` objects per second from 0 s.
    created_per_second: Option<f64>,
    /// Reconciles at once (the operator's `--concurrency` default).
    concurrency: usize,
    /// How long a simulated run lasts, in cycles of N / rate.
    cycles: f64,
    /// When the account turns Ready after the start, in seconds: its watch then asks for a
    /// reconcile of every task of the account at once (`triggers.send(tasks_of(key))`).
    account_ready_at: Option<f64>,
    /// How long a reconcile the runner took waits for the runtime, in milliseconds, drawn
    /// uniformly (a busy machine).
    late_ms: (f64, f64),
    /// A take-over on a busy operator: for this many seconds from the start, reconciles wait
    /// this much longer for the runtime, in milliseconds, drawn uniformly (at 10 000 tasks the
    /// initial reconciles of every account queue for the same workers).
    takeover: Option<(f64, (f64, f64))>,
    /// The status write of a first poll, in milliseconds (the API server busy at start-up).
    first_write_ms: (f64, f64),
    /// Calls held up on their way to the cloud after their grant (a busy CPU, a stalled
    /// runtime, a slow path): the share of calls, and by how many milliseconds, drawn
    /// uniformly. `Some` also models the cloud's side: every call takes 1 ms each way, and
    /// the cloud counts it when it arrives.
    held_up: Option<(f64, f64, f64)>,
    seed: u64,
}

impl Scenario {
    fn existing(seed: u64) -> Self {
        Scenario {
            tasks: 500,
            created_per_second: None,
            concurrency: 32,
            cycles: 6.0,
            account_ready_at: None,
            late_ms: (0.0, 0.0),
            takeover: None,
            first_write_ms: (5.0, 30.0),
            held_up: None,
            seed,
        }
    }

    fn created(per_second: f64, seed: u64) -> Self {
        Scenario {
            created_per_second: Some(per_second),
            ..Scenario::existing(seed)
        }
    }
}

const QPS: f64 = 10.0;
const MARGIN: f64 = 0.03;

/// The rate the budget paces at: the cloud's limit less the margin (9.7/s).
fn rate() -> f64 {
    QPS * (1.0 - MARGIN)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A watch event (creation, the initial list, the account turning Ready) asks the
    /// scheduler for a reconcile now.
    Watch(usize),
    /// A scheduled entry comes due (stale unless `token` is the entry's current one).
    Due { task: usize, token: u64 },
    /// A reconcile taken by the runner starts running (late when the runtime is busy).
    Start(usize),
    /// A reconcile ends; its requeue (if any) reaches the scheduler.
    Done {
        task: usize,
        requeue: Option<Micros>,
    },
}

/// One object as the scheduler and the runner see it, and its calls.
struct Object {
    task: MpuRelayTask,
    /// The scheduled entry: when it comes due and its token.
    scheduled: Option<(Micros, u64)>,
    running: bool,
    calls: Vec<Micros>,
}

/// One way to the cloud or back, when the scenario models it.
const ONE_WAY_MS: f64 = 1.0;

struct Sim {
    scenario: Scenario,
    rng: StdRng,
    now: Micros,
    seq: u64,
    events: BinaryHeap<Reverse<(Micros, u64, Event)>>,
    objects: Vec<Object>,
    /// Held entries (came due while their object ran or every worker was busy).
    pending: BTreeSet<usize>,
    running: usize,
    /// When each call reached the cloud (scenarios with `held_up` only).
    arrivals: Vec<Micros>,
    /// When each reconcile started.
    reconciles: Vec<Micros>,
    budget: Arc<Budget<usize>>,
    poll: PollConfig,
    origin: Instant,
    origin_wall: jiff::Timestamp,
}

impl Sim {
    fn new(scenario: Scenario) -> Self {
        let origin = Instant::now();
        let budgets: Budgets<usize> = Budgets::new(origin);
        let budget = budgets.join(
            &CloudAccount {
                uid: "1234567890".into(),
                host: "live.aliyuncs.com".into(),
            },
            "MpuRelayAccount/bench/live",
            Limit {
                qps: QPS,
                margin: MARGIN,
            },
            origin,
        );
        // As the bench runs the operator: every phase wants a poll each second.
        let second = Duration::from_secs(1);
        let poll = PollConfig {
            running: second,
            waiting: second,
            stopped: second,
            ..PollConfig::default()
        };
        let objects = (0..scenario.tasks)
            .map(|i| Object {
                task: task(i),
                scheduled: None,
                running: false,
                calls: Vec::new(),
            })
            .collect();
        Sim {
            rng: StdRng::seed_from_u64(scenario.seed),
            scenario,
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            objects,
            pending: BTreeSet::new(),
            running: 0,
            arrivals: Vec::new(),
            reconciles: Vec::new(),
            budget,
            poll,
            origin,
            origin_wall: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn push(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn instant(&self) -> Instant {
        self.origin + Duration::from_micros(self.now)
    }

    fn wall(&self) -> jiff::Timestamp {
        self.origin_wall + jiff::SignedDuration::from_micros(self.now as i64)
    }

    /// A random duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: f64, hi: f64) -> Micros {
        let ms = if hi > lo {
            self.rng.random_range(lo..hi)
        } else {
            lo
        };
        (ms * 1000.0) as Micros
    }

    fn run(mut self) -> Run {
        let n = self.scenario.tasks;
        match self.scenario.created_per_second {
            // The initial list: every object at once, reconciled in no particular order.
            None => (0..n).for_each(|i| self.push(0, Event::Watch(i))),
            Some(per_second) => {
                for i in 0..n {
                    let created = (i as f64 / per_second * 1e6) as Micros;
                    // The watch event reaches the operator a few milliseconds later.
                    let seen = created + self.millis(1.0, 10.0);
                    self.push(seen, Event::Watch(i));
                }
            }
        }
        if let Some(ready) = self.scenario.account_ready_at {
            let ready = (ready * 1e6) as Micros;
            let per_second = self.scenario.created_per_second;
            for i in 0..n {
                // The tasks in the cache by then.
                if per_second.is_none_or(|r| ((i as f64 / r) * 1e6) as Micros <= ready) {
                    self.push(ready, Event::Watch(i));
                }
            }
        }
        let cycle = n as f64 / rate();
        let end = (cycle * self.scenario.cycles * 1e6) as Micros;
        while let Some(Reverse((at, _, event))) = self.events.pop() {
            if at > end {
                break;
            }
            self.now = at;
            match event {
                Event::Watch(task) => self.schedule(task, at),
                Event::Due { task, token } => {
                    if self.objects[task].scheduled.map(|(_, t)| t) == Some(token) {
                        self.objects[task].scheduled = None;
                        self.pending.insert(task);
                    }
                }
                Event::Start(task) => self.reconcile(task),
                Event::Done { task, requeue } => {
                    self.objects[task].running = false;
                    self.running -= 1;
                    // The requeue reaches the scheduler before the runner frees the object:
                    // an entry held for it meanwhile wins and the requeue is dropped.
                    if let Some(after) = requeue {
                        self.schedule(task, at + after);
                    }
                }
            }
            self.start_ready();
        }
        Run {
            calls: self.objects.into_iter().map(|o| o.calls).collect(),
            arrivals: self.arrivals,
            reconciles: self.reconciles,
            end,
            cycle,
        }
    }

    /// kube-runtime's `schedule_message`.
    fn schedule(&mut self, task: usize, run_at: Micros) {
        if self.pending.contains(&task) {
            return;
        }
        if let Some((at, _)) = self.objects[task].scheduled
            && at < run_at
        {
            return;
        }
        self.seq += 1;
        let token = self.seq;
        self.objects[task].scheduled = Some((run_at, token));
        self.push(run_at, Event::Due { task, token });
    }

    /// The runner: takes held entries whose object is not running, while workers are free.
    fn start_ready(&mut self) {
        while self.running < self.scenario.concurrency {
            let ready: Vec<usize> = self
                .pending
                .iter()
                .copied()
                .filter(|t| !self.objects[*t].running)
                .collect();
            if ready.is_empty() {
                return;
            }
            let task = ready[self.rng.random_range(0..ready.len())];
            self.pending.remove(&task);
            self.objects[task].running = true;
            self.running += 1;
            // Late when the runtime is busy; then reading the account and its credentials
            // (cached) before asking the budget.
            let (lo, hi) = self.scenario.late_ms;
            let mut start = self.now + self.millis(lo, hi) + self.millis(0.05, 0.5);
            if let Some((until, (lo, hi))) = self.scenario.takeover
                && secs(self.now) < until
            {
                start += self.millis(lo, hi);
            }
            self.push(start, Event::Start(task));
        }
    }

    /// `controller::task::reconcile` and `poll`, with the cloud answering "Running": the
    /// shell's steps, each through the function it calls.
    fn reconcile(&mut self, i: usize) {
        // The budget is asked at the event's own time, so it sees time only move forward.
        let start = self.now;
        self.reconciles.push(start);
        let desired = schedule::budget_interval(&self.objects[i].task, &self.poll);
        let gate = schedule::gate(true, &self.budget, &i, desired, None, self.instant());
        let (done, requeue) = match gate {
            Gate::Wait(delay) => (start + self.millis(0.05, 0.5), Some(us(delay))),
            Gate::Call {
                floor,
                call,
                granted,
            } => {
                self.objects[i].calls.push(start);
                let answered = match self.scenario.held_up {
                    None => start + self.millis(5.0, 40.0),
                    Some((share, lo, hi)) => {
                        let held = if self.rng.random_bool(share) {
                            self.millis(lo, hi)
                        } else {
                            0
                        };
                        let way = self.millis(ONE_WAY_MS, ONE_WAY_MS);
                        self.arrivals.push(start + held + way);
                        start + held + 2 * way
                    }
                };
                self.now = answered;
                let answer = Ok(MpuTaskStatus {
                    request_id: format!("req-{i}-{answered}"),
                    status: 1,
                });
                self.budget
                    .feedback(call, schedule::feedback(&answer), self.instant());
                let outcome = match answer {
                    Ok(status) => Outcome::Polled(status),
                    Err(e) => Outcome::CloudFailed(e),
                };
                let decision = decide(
                    &self.objects[i].task,
                    &outcome,
                    self.wall(),
                    &self.poll,
                    floor,
                );
                let spread = self.rng.random_range(0.0..1.0);
                let now = self.instant();
                let plan = schedule::plan(&decision, Some(granted), spread);
                let requeue = plan.next.requeue(Some(&*self.budget), &i, now).map(us);
                let mut done = answered;
                if plan.write {
                    // The server-side apply of the status; the watch brings it into the cache
                    // (filtered by the predicates: no reconcile).
                    let (lo, hi) = match self.objects[i].task.status {
                        None => self.scenario.first_write_ms,
                        Some(_) => (5.0, 30.0),
                    };
                    done += self.millis(lo, hi);
                    self.objects[i].task.status = Some(decision.status);
                }
                (done, requeue)
            }
        };
        self.now = start;
        self.push(done, Event::Done { task: i, requeue });
    }
}

fn task(i: usize) -> MpuRelayTask {
    let mut t = MpuRelayTask::new(
        &format!("relay-{i}"),
        MpuRelayTaskSpec {
            app_id: "app".into(),
            task_id: format!("task-{i}"),
            account_ref: Some(AccountRef {
                kind: Default::default(),
                name: "live".into(),
            }),
            poll_interval: None,
            suspend: false,
            ..Default::default()
        },
    );
    t.metadata.namespace = Some("bench".into());
    t.metadata.generation = Some(1);
    t
}

/// Every call of every task, and how long the run lasted.
struct Run {
    calls: Vec<Vec<Micros>>,
    /// When the cloud counted each call, in order of their grants (`held_up` scenarios).
    arrivals: Vec<Micros>,
    /// When each reconcile started.
    reconciles: Vec<Micros>,
    end: Micros,
    /// N / rate, in seconds.
    cycle: f64,
}

/// The worst gap of a class, relative to a cycle, and where it was.
#[derive(Clone, Copy, Debug, Default)]
struct Worst {
    ratio: f64,
    task: usize,
    from: Micros,
    to: Micros,
}

impl Worst {
    fn take(&mut self, task: usize, from: Micros, to: Micros, cycle: f64) {
        let ratio = secs(to - from) / cycle;
        if ratio > self.ratio {
            *self = Worst {
                ratio,
                task,
                from,
                to,
            };
        }
    }
}

/// Worst gaps: in the first cycle (a gap that starts before every task has had its first
/// call, so every task's first gap), and after it (including, at the end, the time since each
/// task's last call).
#[derive(Debug)]
struct Figures {
    /// When the last task had its first call.
    first_cycle_end: Micros,
    first: Worst,
    steady: Worst,
    calls: usize,
    /// Reconciles per call after the first cycle (the operator's CPU goes mostly to these).
    reconciles_per_call: f64,
}

/// What a run did from some instant on.
#[derive(Debug)]
struct Since {
    /// The worst gap that ends after that instant (including, at the end, the time since each
    /// task's last call).
    worst: Worst,
    calls_per_second: f64,
    /// Reconciles per call (the operator's CPU goes mostly to these).
    reconciles_per_call: f64,
}

impl Run {
    fn figures(&self) -> Figures {
        assert!(
            self.calls.iter().all(|c| !c.is_empty()),
            "a task was never polled"
        );
        let first_cycle_end = self.calls.iter().map(|c| c[0]).max().unwrap();
        let mut first = Worst::default();
        for (task, calls) in self.calls.iter().enumerate() {
            for pair in calls.windows(2).filter(|pair| pair[0] < first_cycle_end) {
                first.take(task, pair[0], pair[1], self.cycle);
            }
        }
        let steady = self.since(first_cycle_end);
        Figures {
            first_cycle_end,
            first,
            steady: steady.worst,
            calls: self.calls.iter().map(Vec::len).sum(),
            reconciles_per_call: steady.reconciles_per_call,
        }
    }

    /// What the run did from `from` on: gaps that start then or later.
    fn since(&self, from: Micros) -> Since {
        let mut worst = Worst::default();
        for (task, calls) in self.calls.iter().enumerate() {
            for pair in calls.windows(2).filter(|pair| pair[0] >= from) {
                worst.take(task, pair[0], pair[1], self.cycle);
            }
            if let Some(&last) = calls.last() {
                worst.take(task, last.max(from), self.end.max(last), self.cycle);
            }
        }
        let after = |times: &[Micros]| times.iter().filter(|t| **t >= from).count();
        let calls: usize = self.calls.iter().map(|c| after(c)).sum();
        Since {
            worst,
            calls_per_second: calls as f64 / secs(self.end.saturating_sub(from)).max(1e-6),
            reconciles_per_call: after(&self.reconciles) as f64 / calls.max(1) as f64,
        }
    }

    /// A task's calls, for the failure message.
    fn trace(&self, task: usize) -> String {
        let calls: Vec<String> = self.calls[task]
            .iter()
            .take(6)
            .map(|t| format!("{:.2}", secs(*t)))
            .collect();
        format!("task {task} called at {} s", calls.join(", "))
    }
}

fn simulate(scenario: Scenario) -> (Run, Figures) {
    let label = format!("{scenario:?}");
    let run = Sim::new(scenario).run();
    let figures = run.figures();
    eprintln!(
        "{label}\n  {} calls in {:.0} s ({:.2}/s); every task called once by {:.1} s; {:.2} reconciles per call after that\n  first cycle: worst gap {:.3} x N/rate ({}; gap {:.2}..{:.2} s)\n  steady:      worst gap {:.3} x N/rate ({}; gap {:.2}..{:.2} s)",
        figures.calls,
        secs(run.end),
        figures.calls as f64 / secs(run.end),
        secs(figures.first_cycle_end),
        figures.reconciles_per_call,
        figures.first.ratio,
        run.trace(figures.first.task),
        secs(figures.first.from),
        secs(figures.first.to),
        figures.steady.ratio,
        run.trace(figures.steady.task),
        secs(figures.steady.from),
        secs(figures.steady.to),
    );
    // `SIM_ROUNDS=1 cargo test --test pacing_simulation -- --nocapture`: what each round did.
    if std::env::var_os("SIM_ROUNDS").is_some() {
        let all: Vec<Micros> = run.calls.iter().flatten().copied().collect();
        let step = (run.cycle * 1e6) as Micros;
        let mut from = 0;
        while from < run.end {
            let calls = all
                .iter()
                .filter(|t| (from..from + step).contains(*t))
                .count();
            let recs = run
                .reconciles
                .iter()
                .filter(|t| (from..from + step).contains(*t))
                .count();
            eprintln!(
                "  round from {:6.1} s: {:.2} calls/s, {:.2} reconciles per call",
                secs(from),
                calls as f64 / run.cycle,
                recs as f64 / calls.max(1) as f64
            );
            from += step;
        }
    }
    (run, figures)
}

/// The target of issue 11: every task polled again within 1.1 cycles.
const BOUND: f64 = 1.10;

fn assert_within_bound(what: &str, run: &Run, f: &Figures) {
    assert!(
        f.first.ratio <= BOUND,
        "{what}: first-cycle gap {:.3} x N/rate; {}",
        f.first.ratio,
        run.trace(f.first.task)
    );
    assert!(
        f.steady.ratio <= BOUND,
        "{what}: gap after the first cycle {:.3} x N/rate; {}",
        f.steady.ratio,
        run.trace(f.steady.task)
    );
}

#[test]
fn tasks_existing_before_start_are_served_in_turn_from_the_first_cycle_on() {
    for seed in 1..=4 {
        // The account turns Ready while the first reconciles run (its watch then asks for every
        // task again), and the API server is slow with the first status writes.
        for (ready, first_write_ms) in [(None, (5.0, 30.0)), (Some(0.3), (50.0, 800.0))] {
            let scenario = Scenario {
                account_ready_at: ready,
                first_write_ms,
                ..Scenario::existing(seed)
            };
            let what = format!("{scenario:?}");
            let (run, f) = simulate(scenario);
            assert_within_bound(&what, &run, &f);
        }
    }
}

#[test]
fn tasks_created_while_running_are_served_in_turn_from_the_first_cycle_on() {
    for (per_second, ready, seed) in [
        (100.0, None, 1),
        (200.0, None, 2),
        (300.0, None, 3),
        (200.0, Some(1.0), 4),
    ] {
        let scenario = Scenario {
            account_ready_at: ready,
            ..Scenario::created(per_second, seed)
        };
        let what = format!("{scenario:?}");
        let (run, f) = simulate(scenario);
        assert_within_bound(&what, &run, &f);
    }
}

/// A task just served takes its next turn at once when the account's line of slots already
/// reaches past its interval, so it comes back once, to call. Before, every poll on a busy
/// account was two reconciles: one coming back early to queue for a slot, one when it opened
/// (2.0 reconciles per call here; 2.9 in the operator at 10 000 tasks, with deferrals).
/// What remains above one is the window guard holding calls back (answers of 5-40 ms make
/// some count late).
#[test]
fn on_a_busy_account_a_task_comes_back_once_per_call() {
    for seed in 1..=4 {
        let (run, f) = simulate(Scenario::existing(seed));
        assert_within_bound(&format!("seed {seed}"), &run, &f);
        assert!(
            f.reconciles_per_call < 1.3,
            "seed {seed}: {:.2} reconciles per call",
            f.reconciles_per_call
        );
    }
}

/// Reconciles that start late (a busy runtime, a loaded machine) cost no slot and skip no
/// task. Eleven consecutive slots span 10 / 9.7 = 1.031 s and the budget's hard guard allows
/// ten calls per 1.025 s, so a call that starts more than 6 ms later than the one ten slots
/// after it makes the guard defer that one. Until issue 11 every deferral also moved the
/// account's next free slot one spacing out: 8 ms of spread gave 9.4 calls/s and a worst gap of
/// 1.10 x N/rate, 12 ms 8.1/s and 1.45 x, 20 ms 6.2/s and 2.1 x (CI's failing "shared budget
/// was not used" run: 7.9/s). Now a deferred call only waits for the window's oldest call to
/// leave it: 9.7/s and 1.06 x at 20 ms, 9.68/s and 1.12 x at 50 ms.
#[test]
fn reconciles_starting_up_to_twenty_milliseconds_late_are_served_in_turn() {
    for late in [5.0, 20.0] {
        for scenario in [
            Scenario {
                late_ms: (0.0, late),
                ..Scenario::existing(5)
            },
            Scenario {
                late_ms: (0.0, late),
                ..Scenario::created(200.0, 6)
            },
        ] {
            let what = format!("{scenario:?}");
            let (run, f) = simulate(scenario);
            assert_within_bound(&what, &run, &f);
            assert!(
                f.calls as f64 / secs(run.end) > rate() * 0.99,
                "{what}: {:.2} calls/s",
                f.calls as f64 / secs(run.end)
            );
        }
    }
}

/// A take-over at 10 000 tasks over 100 accounts: each account's 100 tasks wait for workers
/// busy with every account's first reconciles (up to 300 ms late for the first 20 s), then
/// start 1-4 ms late, as `make profile` logged. The calls of the take-over fall behind the
/// slots handed out; within a few rounds after it the account's line keeps pace again: every
/// task served once per round, about one reconcile per call, the whole rate used.
///
/// Before each task's next turn was anchored to its round, the line stayed two seconds ahead
/// of the calls for good after the first take-over, with twenty tasks held back by the window
/// guard at all times: 2.65 reconciles per call once settled (seed 1). After the slower one,
/// the line fell shorter than a task's own interval, and every task served came back early to
/// ask: 3.0 reconciles per call.
#[test]
fn after_a_busy_take_over_the_line_keeps_pace_with_the_calls() {
    // (how long the take-over lasts, in seconds; how late its reconciles start, in ms)
    for (takeover, late) in [(20.0, (0.0, 300.0)), (40.0, (0.0, 2000.0))] {
        for seed in 1..=4 {
            let scenario = Scenario {
                tasks: 100,
                cycles: 12.0,
                late_ms: (1.0, 4.0),
                takeover: Some((takeover, late)),
                ..Scenario::existing(seed)
            };
            let what = format!("{scenario:?}");
            let (run, _) = simulate(scenario);
            // Two rounds after the take-over's slow reconciles end.
            let settled = run.since(((takeover + 2.0 * run.cycle) * 1e6) as Micros);
            eprintln!("  settled: {settled:?}");
            assert!(
                settled.worst.ratio <= BOUND,
                "{what}: gap {:.3} x N/rate once settled; {}",
                settled.worst.ratio,
                run.trace(settled.worst.task)
            );
            assert!(
                settled.reconciles_per_call < 1.3,
                "{what}: {:.2} reconciles per call once settled",
                settled.reconciles_per_call
            );
            assert!(
                settled.calls_per_second > rate() * 0.99,
                "{what}: {:.2} calls/s once settled",
                settled.calls_per_second
            );
        }
    }
}

/// Ten tasks on an account, each wanting a poll every second (`make bench` at 1 000 tasks over
/// 100 accounts): a round of ten slots is 1.031 s. A task's next turn counts from its grant
/// and may come one slot short of a round, so a slow answer or a reconcile a little late
/// skips no slot. Counting a whole second from the answer cut a hole into the line at every
/// slow answer: 8.9 calls/s and gaps of 1.11 x N/rate here (seed 1), 1.19 floors in the bench.
#[test]
fn ten_tasks_wanting_a_poll_each_second_are_served_in_turn_whatever_their_answers_take() {
    for seed in 1..=4 {
        let scenario = Scenario {
            tasks: 10,
            cycles: 300.0,
            late_ms: (0.0, 10.0),
            ..Scenario::existing(seed)
        };
        let what = format!("{scenario:?}");
        let (run, f) = simulate(scenario);
        let settled = run.since(f.first_cycle_end);
        assert!(
            settled.worst.ratio <= BOUND,
            "{what}: gap {:.3} x N/rate; {}",
            settled.worst.ratio,
            run.trace(settled.worst.task)
        );
        assert!(
            settled.calls_per_second > rate() * 0.99,
            "{what}: {:.2} calls/s",
            settled.calls_per_second
        );
    }
}

/// The most calls the cloud counted in any one second (its sliding window).
fn most_in_any_second(arrivals: &[Micros]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable();
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while sorted[first] + 1_000_000 <= *at {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// Calls held up between their grant and the cloud (issue 11: 27 calls throttled in one second
/// at 10 000 tasks) never make the eleventh call in a cloud second, and cost no task its turn.
/// Eleven slots span 1.031 s at 9.7/s, so a call that reaches the cloud more than 31 ms late
/// shares a second with the ten granted after it: before the budget counted late answers as
/// late arrivals, the first of these runs already had seconds of 11 calls (a throttle each).
/// Past these (a fifth of the calls held up by up to 200 ms, and reconciles starting late),
/// no call is throttled still, but tasks wait up to 1.3 cycles.
#[test]
fn calls_held_up_on_their_way_out_never_make_an_eleventh_call_in_a_cloud_second() {
    for seed in [7, 8] {
        for scenario in [
            Scenario {
                held_up: Some((0.05, 10.0, 60.0)),
                ..Scenario::existing(seed)
            },
            Scenario {
                held_up: Some((0.05, 0.0, 100.0)),
                late_ms: (0.0, 20.0),
                ..Scenario::created(200.0, seed)
            },
            Scenario {
                held_up: Some((0.2, 0.0, 100.0)),
                ..Scenario::existing(seed)
            },
            Scenario {
                held_up: Some((0.01, 100.0, 300.0)),
                ..Scenario::existing(seed)
            },
        ] {
            let what = format!("{scenario:?}");
            let (run, f) = simulate(scenario);
            let most = most_in_any_second(&run.arrivals);
            assert!(
                most <= QPS as usize,
                "{what}: {most} calls in one cloud second"
            );
            assert_within_bound(&what, &run, &f);
            assert!(
                f.calls as f64 / secs(run.end) > rate() * 0.98,
                "{what}: {:.2} calls/s",
                f.calls as f64 / secs(run.end)
            );
        }
    }
}

/// The bench's former freshness sampler, replayed on every call of a simulated run (the bench
/// now reads each task's longest wait, which the simulator counts at every call, and snapshots
/// and resets its counters under one lock): it took each task's last call from the simulator, then lists the
/// tasks, scrapes the operator's metrics and reads its CPU time, and only then resets the
/// simulator's stats, which forgets each task's last call; it then looks every 200 ms for
/// 2.1 x N/QPS. A task called between that snapshot and the reset has that call erased: its
/// next call is measured from the one before, two cycles back. Returns the worst gap it
/// reports, in N/QPS, and the tasks it reports as having skipped a cycle.
fn bench_sampler(run: &Run, snapshot_to_reset: f64) -> (f64, Vec<usize>) {
    let floor = run.calls.len() as f64 / QPS;
    let at = |s: f64| (s * 1e6) as Micros;
    // `wait_polled` looks once a second until every task has had a call, then a cycle more.
    let warm = at(secs(run.calls.iter().map(|c| c[0]).max().unwrap()).ceil());
    let snapshot = warm + at(floor * 1.1);
    let reset = snapshot + at(snapshot_to_reset);
    let last_call = |calls: &[Micros], t: Micros| calls.iter().rev().find(|c| **c <= t).copied();
    let mut last: Vec<Option<Micros>> = run.calls.iter().map(|c| last_call(c, snapshot)).collect();
    let (mut worst, mut skipped) = (0, Vec::new());
    let mut now = reset;
    while now < reset + at(floor * 2.1) {
        now += 200_000;
        for (task, calls) in run.calls.iter().enumerate() {
            // Not called since the reset: the simulator shows no last call.
            let Some(call) = last_call(calls, now).filter(|c| *c > reset) else {
                continue;
            };
            match last[task] {
                Some(prev) if prev != call => {
                    worst = worst.max(call - prev);
                    if call - prev > at(floor * 1.5) {
                        skipped.push(task);
                    }
                    last[task] = Some(call);
                }
                Some(_) => {}
                None => last[task] = Some(call),
            }
        }
    }
    (secs(worst) / floor, skipped)
}

/// Issue 11's 2.13 x N/QPS at N = 500 is the bench's measurement, not the operator: the tasks
/// the bench reports as skipping a cycle were called on time, in the fraction of a second
/// between its snapshot of last calls and its reset of the simulator's stats (a LIST of 500
/// tasks, a metrics scrape and a read of /proc on a busy machine); each run catches one to
/// three such calls at 9.7 calls/s. Their "gap" ends about one cycle into the window and is two
/// cycles long, while every call shows at most 1.05 x N/rate (1.08 x N/QPS).
#[test]
fn the_bench_sampler_reports_a_skipped_cycle_for_tasks_called_between_its_snapshot_and_reset() {
    for seed in 1..=4 {
        let (run, f) = simulate(Scenario::existing(seed));
        assert_within_bound(&format!("seed {seed}"), &run, &f);
        let true_worst = f.first.ratio.max(f.steady.ratio) * QPS / rate();

        // Snapshot and reset at once: the sampler reports what every call shows.
        let (reported, skipped) = bench_sampler(&run, 0.0);
        assert!(skipped.is_empty(), "seed {seed}: {skipped:?}");
        assert!(
            reported <= true_worst + 1e-9 && reported <= BOUND,
            "{reported}"
        );

        // A fifth of a second between them, as a LIST of 500 objects takes on a busy machine.
        let (reported, skipped) = bench_sampler(&run, 0.2);
        assert!(
            (1.9..2.2).contains(&reported) && !skipped.is_empty(),
            "seed {seed}: reported {reported:.3} x N/QPS, skipped {skipped:?}"
        );
        let warm = run.calls.iter().map(|c| c[0]).max().unwrap();
        let snapshot = (secs(warm).ceil() + 1.1 * run.calls.len() as f64 / QPS) * 1e6;
        for task in skipped {
            let erased = run.calls[task]
                .iter()
                .any(|c| (snapshot..=snapshot + 0.2e6).contains(&(*c as f64)));
            assert!(erased, "seed {seed}: {}", run.trace(task));
        }
        eprintln!(
            "  bench sampler: {reported:.3} x N/QPS with 0.2 s between snapshot and reset; every call: {true_worst:.3} x N/QPS"
        );
    }
}
