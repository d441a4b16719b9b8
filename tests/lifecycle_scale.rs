//! The lifecycle faults users hit, at the scale they hit them: the operator binary killed with
//! `kill -9` while thousands of tasks use every account's whole budget, and a thousand tenants
//! with an account each. Against the real kube-apiserver and the cloud simulator over TLS.
//!
//! These two tests are the heaviest of the suite (5 000 and 10 000 tasks), so they take turns
//! ([`HEAVY`]): each is judged on the cloud's per-second limits, which a second one running
//! beside it on two cores would only blur.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ListParams};
use mpu_cloud_sim::{Simulator, SimulatorConfig, SimulatorHandle};
use mpu_relay_operator::api::{MpuRelayAccount, MpuRelayTask, Phase};
use serde_json::json;
use support::accounts;
use support::operator::{Operator, eventually};

/// Info logs only: a debug line per reconcile of thousands of tasks costs the CPU being judged.
const QUIET: &[(&str, &str)] = &[("RUST_LOG", "info")];

/// One heavy test at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cloud's limit for every account in these tests (Alibaba's default for GetMPUTaskStatus).
const QPS: u64 = 10;

fn key(account: usize) -> String {
    format!("LTAI5tScale{account:04}")
}

/// `accounts` cloud accounts of their own (each its own uid, so its own limit of [`QPS`]) and
/// `accounts * per_account` running tasks `t0..`.
fn config(accounts: usize, per_account: usize) -> SimulatorConfig {
    serde_json::from_value(json!({
        "accounts": (0..accounts)
            .map(|a| json!({"accessKeyId": key(a), "accessKeySecret": format!("secret-{a}")}))
            .collect::<Vec<_>>(),
        "taskSets": [{"appId": "app", "taskIdPrefix": "t", "count": accounts * per_account, "status": 1}],
    }))
    .unwrap()
}

/// A Secret and an `MpuRelayAccount` `a-<n>` per cloud account, and task `relay-<i>` (cloud task
/// `t<i>`) on account `i % accounts`; created 32 at a time, as `kubectl apply` of a directory does.
async fn populate(
    client: &kube::Client,
    ns: &str,
    sim: &SimulatorHandle,
    accounts: usize,
    per_account: usize,
) {
    let started = Instant::now();
    futures::stream::iter(0..accounts)
        .for_each_concurrent(32, |a| {
            let (client, url) = (client.clone(), sim.base_url());
            async move {
                let name = format!("a-{a}");
                accounts::secret(&client, ns, &name, &key(a), &format!("secret-{a}")).await;
                accounts::account(&client, ns, &name, &url, &name, json!({})).await;
            }
        })
        .await;
    futures::stream::iter(0..accounts * per_account)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            async move {
                let task = accounts::task(
                    &format!("relay-{i}"),
                    &format!("t{i}"),
                    &format!("a-{}", i % accounts),
                );
                accounts::create_task(&client, ns, &task).await;
            }
        })
        .await;
    eprintln!(
        "created {accounts} accounts and {} tasks in {:.1?}",
        accounts * per_account,
        started.elapsed()
    );
}

/// Tasks of the namespace by phase.
async fn phases(tasks: &Api<MpuRelayTask>) -> BTreeMap<String, usize> {
    let mut by_phase = BTreeMap::new();
    for task in tasks.list(&ListParams::default()).await.unwrap() {
        let phase = task
            .status
            .and_then(|s| s.phase)
            .map_or("none".to_owned(), |p| format!("{p:?}"));
        *by_phase.entry(phase).or_default() += 1;
    }
    by_phase
}

async fn all_running(tasks: &Api<MpuRelayTask>, count: usize) -> bool {
    phases(tasks).await.get(&format!("{:?}", Phase::Running)) == Some(&count)
}

/// Every account's busiest second (sliding) and its throttled calls since the simulator started:
/// across every process that called, since the cloud counts them all.
fn limits_kept(sim: &SimulatorHandle, accounts: usize) -> Result<(u64, u64), String> {
    let stats = sim.stats(false);
    let mut busiest = 0;
    let mut throttled = 0;
    for a in 0..accounts {
        let account = &stats.accounts[&key(a)].calls;
        busiest = busiest.max(account.max_calls_in_any_second);
        throttled += account.throttled;
        if account.max_calls_in_any_second > QPS || account.throttled > 0 {
            return Err(format!(
                "account {a}: {} calls in one second, {} throttled (limit {QPS}/s)",
                account.max_calls_in_any_second, account.throttled
            ));
        }
    }
    Ok((busiest, throttled))
}

/// Successful calls of every account in the last `seconds` whole seconds, per second.
fn recent_rate(sim: &SimulatorHandle, seconds: usize) -> f64 {
    let buckets = &sim.stats(false).all.per_second;
    // The newest bucket is the second still running: leave it out.
    let whole: Vec<_> = buckets.iter().rev().skip(1).take(seconds).collect();
    if whole.len() < seconds {
        return 0.0;
    }
    whole.iter().map(|b| b.ok).sum::<u64>() as f64 / seconds as f64
}

/// kill -9 of an operator using every account's whole budget, and a new process started at once
/// (a crash and the Deployment's restart): the cloud never sees an account above its limit
/// across the two processes' lifetimes, and the new one is back at the budget within the
/// take-over target of `make bench` (95 % of the limit within 120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_kill_9_at_full_budget_with_5000_tasks_and_a_restart_never_exceeds_a_limit() {
    const ACCOUNTS: usize = 50;
    const PER_ACCOUNT: usize = 100;
    let _turn = HEAVY.lock().await;
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "kill-9-at-full-budget").await;
    let sim = Simulator::start(config(ACCOUNTS, PER_ACCOUNT))
        .await
        .expect("simulator");
    populate(&client, &ns, &sim, ACCOUNTS, PER_ACCOUNT).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    // Each task asks every 5 s: 20 calls/s per account, twice what its budget allows, so the
    // budget, not the interval, paces the calls.
    let args = ["--running-interval", "5s"];
    let goal = 0.95 * (ACCOUNTS as u64 * QPS) as f64;
    let mut first = Operator::with_simulator(cp, &ns, &sim, &args, QUIET);
    let at_budget = |sim: &SimulatorHandle| recent_rate(sim, 10) >= goal;
    assert!(
        eventually(Duration::from_secs(150), || async { at_budget(&sim) }).await,
        "the first operator never reached 95 % of the budget: {:.0}/s {:?}\n{}",
        recent_rate(&sim, 10),
        phases(&tasks).await,
        first.output()
    );
    assert!(
        eventually(Duration::from_secs(60), || all_running(
            &tasks,
            ACCOUNTS * PER_ACCOUNT
        ))
        .await,
        "{:?}",
        phases(&tasks).await
    );
    eprintln!(
        "first operator at {:.0} calls/s (limit {})",
        recent_rate(&sim, 10),
        ACCOUNTS as u64 * QPS
    );

    // The crash, in the middle of calls, and the restart.
    first.kill();
    let restarted = Instant::now();
    let second = Operator::with_simulator(cp, &ns, &sim, &args, QUIET);
    let mut back_after = None;
    while restarted.elapsed() < Duration::from_secs(150) {
        if let Err(e) = limits_kept(&sim, ACCOUNTS) {
            panic!("{e}\n{}", second.output());
        }
        if at_budget(&sim) && restarted.elapsed() > Duration::from_secs(10) {
            back_after = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let back_after = back_after.unwrap_or_else(|| {
        panic!(
            "the restarted operator never reached 95 % of the budget: {:.0}/s\n{}",
            recent_rate(&sim, 10),
            second.output()
        )
    });
    // A status change after the restart still reaches its task.
    sim.set_task_status("app", "t4999", 5);
    assert!(
        eventually(Duration::from_secs(30), || async {
            tasks
                .get("relay-4999")
                .await
                .ok()
                .and_then(|t| t.status?.phase)
                == Some(Phase::CdnError)
        })
        .await,
        "{}",
        second.output()
    );
    let (busiest, throttled) = limits_kept(&sim, ACCOUNTS).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "kill -9 at full budget, {} tasks on {ACCOUNTS} accounts: back at 95 % of the budget {back_after:.1?} after the restart; \
         busiest second of any account across both processes {busiest} (limit {QPS}), {throttled} throttled",
        ACCOUNTS * PER_ACCOUNT
    );
    assert!(
        back_after <= Duration::from_secs(120),
        "took {back_after:?}"
    );
}

/// A thousand tenants, each with a Secret, an account of its own cloud account and ten tasks:
/// every account Ready with a budget of its ten tasks, every task polled and Running, no account
/// above its limit, none throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_a_thousand_accounts_with_ten_tasks_each_are_all_served_within_their_limits() {
    const ACCOUNTS: usize = 1000;
    const PER_ACCOUNT: usize = 10;
    let _turn = HEAVY.lock().await;
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "thousand-accounts").await;
    let sim = Simulator::start(config(ACCOUNTS, PER_ACCOUNT))
        .await
        .expect("simulator");
    let started = Instant::now();
    // Polls every 30 s (the default), about 330 calls/s in all.
    let op = Operator::with_simulator(cp, &ns, &sim, &[], QUIET);
    populate(&client, &ns, &sim, ACCOUNTS, PER_ACCOUNT).await;
    let created = Instant::now();
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let accounts_api: Api<MpuRelayAccount> = Api::namespaced(client.clone(), &ns);
    // Each task's first status is a write: 10 000 of them through one API server on 2 cores.
    assert!(
        eventually(Duration::from_secs(300), || all_running(
            &tasks,
            ACCOUNTS * PER_ACCOUNT
        ))
        .await,
        "{:?}\n{}",
        phases(&tasks).await,
        op.output()
    );
    let all_running_after = (started.elapsed(), created.elapsed());
    let ready_with_ten = || async {
        let list = accounts_api.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .filter(|a| {
                a.status.as_ref().is_some_and(|s| {
                    s.condition("Ready").is_some_and(|c| c.status == "True")
                        && s.budget
                            .as_ref()
                            .is_some_and(|b| b.tasks == PER_ACCOUNT as u32)
                })
            })
            .count()
    };
    assert!(
        eventually(Duration::from_secs(60), || async {
            ready_with_ten().await == ACCOUNTS
        })
        .await,
        "{} of {ACCOUNTS} accounts Ready with a budget of {PER_ACCOUNT} tasks",
        ready_with_ten().await
    );
    let polled = sim
        .stats(true)
        .tasks
        .unwrap()
        .iter()
        .filter(|t| t.calls > 0)
        .count();
    assert_eq!(polled, ACCOUNTS * PER_ACCOUNT, "tasks never polled");
    let (busiest, throttled) = limits_kept(&sim, ACCOUNTS).unwrap_or_else(|e| panic!("{e}"));
    let rss = op.rss_bytes() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{ACCOUNTS} accounts x {PER_ACCOUNT} tasks: all Running {:.1?} after the operator started, \
         {:.1?} after the last object was created; busiest second of any account {busiest} (limit {QPS}), {throttled} throttled; RSS {rss:.1} MiB",
        all_running_after.0, all_running_after.1
    );
    assert!(op.metric("mpu_relay_reconcile_panics").await == 0.0);
}
