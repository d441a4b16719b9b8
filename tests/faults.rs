//! Faults, actually injected: cloud errors of every kind, an API server outage, SIGTERM in the
//! middle of calls, a wrong clock, and a leader that dies.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mpu_cloud_sim::{
    AccountConfig, FaultKind, FaultSpec, Simulator, SimulatorConfig, SimulatorHandle, TaskConfig,
};
use mpu_relay_operator::api::{MpuRelayTask, Phase, conditions};
use serde_json::json;
use support::controlplane::ControlPlane;
use support::operator::{Operator, eventually};

const AK: &str = "LTAI5tFaultTest";
const SK: &str = "fault-test-secret";

/// Fast polling, retries capped at 2 s, and cloud calls that time out after 1 s.
fn fast() -> Vec<&'static str> {
    [
        support::operator::FAST_POLLING,
        &["--max-backoff", "2s", "--cloud-timeout", "1s"],
    ]
    .concat()
}

fn sim_config(tasks: usize, qps: u32) -> SimulatorConfig {
    SimulatorConfig {
        accounts: vec![AccountConfig {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            qps: Some(qps),
        }],
        tasks: (0..tasks)
            .map(|i| TaskConfig {
                app_id: "app".into(),
                task_id: format!("t{i}"),
                status: 1,
            })
            .collect(),
        ..SimulatorConfig::default()
    }
}

/// A Secret with the simulator's AccessKey, an account `ak` using it, and `count` tasks `relay-<i>` for tasks `t<i>`.
async fn populate(client: &kube::Client, ns: &str, sim: &SimulatorHandle, count: usize) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ak"},
        "stringData": {"accessKeyId": AK, "accessKeySecret": SK},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    support::accounts::account(client, ns, "ak", &sim.base_url(), "ak", json!({})).await;
    for i in 0..count {
        let t = support::accounts::task(&format!("relay-{i}"), &format!("t{i}"), "ak");
        support::accounts::create_task(client, ns, &t).await;
    }
}

async fn synced(tasks: &Api<MpuRelayTask>, name: &str) -> Option<(String, String)> {
    let t = tasks.get(name).await.ok()?;
    let c = t.status?.condition(conditions::SYNCED)?.clone();
    Some((c.status, c.reason))
}

async fn all_in_phase(tasks: &Api<MpuRelayTask>, count: usize, phase: Phase) -> bool {
    for i in 0..count {
        let Ok(t) = tasks.get(&format!("relay-{i}")).await else {
            return false;
        };
        if t.status.and_then(|s| s.phase) != Some(phase) {
            return false;
        }
    }
    true
}

fn calls(sim: &SimulatorHandle) -> u64 {
    sim.stats(false).accounts[AK].calls.total
}

/// How long each fault of the cloud-faults test lasts.
const FAULT_LASTS: Duration = Duration::from_secs(4);

/// Each cloud fault gives the right Synced reason, retries stay bounded, and the task recovers.
#[tokio::test]
async fn integration_cloud_faults_set_the_right_condition_retry_boundedly_and_recover() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "cloud-faults").await;
    let sim = Simulator::start(sim_config(1, 10)).await.unwrap();
    populate(&client, &ns, &sim, 1).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let mut op = Operator::with_simulator(cp, &ns, &sim, &fast(), &[]);
    assert!(
        eventually(Duration::from_secs(10), || all_in_phase(
            &tasks,
            1,
            Phase::Running
        ))
        .await,
        "{}",
        op.output()
    );

    let cases: Vec<(&str, FaultKind, &str)> = vec![
        (
            "5xx burst",
            FaultKind::Http5xx {
                code: Some("ServiceUnavailable".into()),
                status: None,
            },
            "TransientError",
        ),
        ("timeout", FaultKind::Latency { ms: 3000 }, "TransientError"),
        ("malformed JSON", FaultKind::Malformed, "DecodeError"),
        (
            "oversized body",
            FaultKind::Huge {
                bytes: Some(4 * 1024 * 1024),
            },
            "DecodeError",
        ),
        ("dropped connection", FaultKind::Drop, "TransientError"),
        ("throttling storm", FaultKind::Throttle, "Throttled"),
    ];
    for (name, kind, reason) in cases {
        sim.reset_stats();
        sim.add_fault(FaultSpec {
            kind,
            account: None,
            count: None,
            duration_ms: Some(FAULT_LASTS.as_millis() as u64),
        })
        .unwrap();
        let started = Instant::now();
        assert!(
            eventually(Duration::from_secs(6), || async {
                synced(&tasks, "relay-0").await == Some(("False".into(), reason.into()))
            })
            .await,
            "{name}: expected Synced=False/{reason}, got {:?}\n{}",
            synced(&tasks, "relay-0").await,
            op.output()
        );
        // The fault lasts 4 s; the task polls every second when healthy. Backoff (0.2 s doubling
        // to 2 s, or the budget after throttling) keeps retries well under a hot loop's count,
        // counted across the whole fault, not only until it first shows.
        tokio::time::sleep(FAULT_LASTS.saturating_sub(started.elapsed())).await;
        let during = calls(&sim);
        assert!(
            during <= 12,
            "{name}: {during} calls in {:?}",
            started.elapsed()
        );
        assert!(
            eventually(Duration::from_secs(12), || async {
                synced(&tasks, "relay-0").await == Some(("True".into(), "Polled".into()))
            })
            .await,
            "{name}: did not recover\n{}",
            op.output()
        );
        assert_eq!(
            tasks.get("relay-0").await.unwrap().status.unwrap().phase,
            Some(Phase::Running),
            "{name}"
        );
    }
    assert!(
        op.terminate(Duration::from_secs(10)).await.is_some(),
        "the operator crashed or hung:\n{}",
        op.output()
    );
}

#[tokio::test]
async fn integration_clock_skew_rejected_by_the_cloud_names_the_cause() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "clock-skew").await;
    // The cloud's clock is 20 minutes ahead of this node's: every timestamp looks stale.
    let sim = Simulator::start(SimulatorConfig {
        clock_offset_seconds: 20 * 60,
        ..sim_config(1, 10)
    })
    .await
    .unwrap();
    populate(&client, &ns, &sim, 1).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let op = Operator::with_simulator(cp, &ns, &sim, &fast(), &[]);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let Ok(t) = tasks.get("relay-0").await else {
                return false;
            };
            t.status
                .and_then(|s| s.condition(conditions::STALLED).cloned())
                .is_some_and(|c| {
                    c.status == "True"
                        && c.reason == "ClockSkew"
                        && c.message.contains("InvalidTimeStamp.Expired")
                })
        })
        .await,
        "{:?}\n{}",
        tasks.get("relay-0").await.unwrap().status,
        op.output()
    );
}

#[tokio::test]
async fn integration_sigterm_in_the_middle_of_calls_exits_cleanly_within_the_grace_period() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "sigterm").await;
    let sim = Simulator::start(sim_config(10, 10)).await.unwrap();
    populate(&client, &ns, &sim, 10).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let mut op = Operator::with_simulator(
        cp,
        &ns,
        &sim,
        &["--running-interval", "1s", "--cloud-timeout", "5s"],
        &[],
    );
    assert!(
        eventually(Duration::from_secs(15), || all_in_phase(
            &tasks,
            10,
            Phase::Running
        ))
        .await
    );
    // Every call now takes 1.5 s, so calls are in flight when the signal comes.
    sim.add_fault(FaultSpec {
        kind: FaultKind::Latency { ms: 1500 },
        account: None,
        count: None,
        duration_ms: Some(60_000),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, took) = op
        .terminate(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no exit within 10 s:\n{}", op.output()));
    assert!(status.success(), "exit {status:?}:\n{}", op.output());
    assert!(op.output().contains("stopped"), "{}", op.output());
    // In-flight calls take 1.5 s; they finish, nothing new starts, and the process exits.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    eprintln!("SIGTERM to exit: {took:?}");
}

#[tokio::test]
async fn integration_api_server_outage_is_survived_and_every_status_is_current_afterwards() {
    // A control plane of its own: this test stops its API server.
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path()).expect("a dedicated control plane");
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "outage").await;
    let sim = Simulator::start(sim_config(5, 10)).await.unwrap();
    populate(&client, &ns, &sim, 5).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let mut op = Operator::with_simulator(&cp, &ns, &sim, &fast(), &[]);
    assert!(
        eventually(Duration::from_secs(15), || all_in_phase(
            &tasks,
            5,
            Phase::Running
        ))
        .await
    );

    cp.stop_apiserver();
    // While the API server is away, every relay stops in the cloud.
    for i in 0..5 {
        sim.set_task_status("app", &format!("t{i}"), 4);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    cp.restart_apiserver().expect("the API server comes back");

    let client = cp.client().await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    assert!(
        eventually(Duration::from_secs(30), || all_in_phase(
            &tasks,
            5,
            Phase::ChannelStopped
        ))
        .await,
        "statuses did not catch up after the outage\n{}",
        op.output()
    );
    // Nothing lost: the spec changes made after the outage are still seen.
    tasks
        .patch(
            "relay-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            synced(&tasks, "relay-0").await == Some(("False".into(), "Suspended".into()))
        })
        .await,
        "a spec change after the outage was missed\n{}",
        op.output()
    );
    assert!(
        op.terminate(Duration::from_secs(10))
            .await
            .is_some_and(|(s, _)| s.success()),
        "the operator did not survive the outage:\n{}",
        op.output()
    );
}

/// The API server is down for 60 s, four times the Lease, under two replicas with leader
/// election; a replica that exits is started again after 5 s, as the kubelet does. Nobody calls
/// the cloud once the leader's fence has closed, no two replicas ever call in the same second,
/// the statuses written before the outage are still there, and the changes the cloud made while
/// the API server was away reach every task once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_api_server_down_longer_than_the_lease_gives_no_double_leader_and_loses_no_status()
 {
    const LEASE_SECONDS: u64 = 15;
    const OUTAGE: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path()).expect("a dedicated control plane");
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "long-outage").await;
    let sim = Simulator::start(sim_config(5, 10)).await.unwrap();
    populate(&client, &ns, &sim, 5).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let lease = LEASE_SECONDS.to_string();
    let args = [
        &fast()[..],
        &[
            "--leader-election",
            "--lease-namespace",
            &ns,
            "--lease-duration",
            &lease,
        ],
    ]
    .concat();
    let names = ["replica-a", "replica-b"];
    let start = |name: &str| Operator::with_simulator(&cp, &ns, &sim, &args, &[("POD_NAME", name)]);
    let mut replicas = vec![start(names[0])];
    assert!(
        eventually(Duration::from_secs(20), || all_in_phase(
            &tasks,
            5,
            Phase::Running
        ))
        .await,
        "{}",
        replicas[0].output()
    );
    replicas.push(start(names[1]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.reset_stats();
    let generations: Vec<_> = {
        let list = tasks.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .map(|t| t.status.as_ref().and_then(|s| s.observed_generation))
            .collect()
    };

    cp.stop_apiserver();
    let cut_unix = unix_now();
    let cut = Instant::now();
    for i in 0..5 {
        sim.set_task_status("app", &format!("t{i}"), 4);
    }
    // The kubelet: a replica that exited is started again after 5 s (its CrashLoopBackOff).
    let mut restarts = 0;
    let mut exited_at: [Option<Instant>; 2] = [None, None];
    let mut keep_alive = |replicas: &mut Vec<Operator>, restarts: &mut u32| {
        for (i, replica) in replicas.iter_mut().enumerate() {
            if replica.exited().is_some() {
                let since = *exited_at[i].get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(5) {
                    *replica = start(names[i]);
                    exited_at[i] = None;
                    *restarts += 1;
                }
            }
        }
    };
    while cut.elapsed() < OUTAGE {
        keep_alive(&mut replicas, &mut restarts);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restored_unix = unix_now();
    let caught_up = Instant::now();
    cp.restart_apiserver().expect("the API server comes back");
    let client = cp.client().await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let mut done = false;
    while caught_up.elapsed() < Duration::from_secs(60) {
        keep_alive(&mut replicas, &mut restarts);
        if all_in_phase(&tasks, 5, Phase::ChannelStopped).await {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        done,
        "statuses did not catch up after the outage\n{}\n{}",
        replicas[0].output(),
        replicas[1].output()
    );
    let caught_up_after = caught_up.elapsed();

    let seconds = calls_by_replica(&sim, &names);
    eprintln!("API server back at {:+.0} s", restored_unix - cut_unix);
    print_calls_by_replica(&seconds, cut_unix);
    let both: Vec<_> = seconds
        .iter()
        .filter(|(_, calls)| calls[0] > 0 && calls[1] > 0)
        .collect();
    assert!(both.is_empty(), "two callers in the same second: {both:?}");
    // The fence closes two thirds into the Lease after the last renewal sent (before the cut):
    // from then until the API server is back, nobody may call.
    let fenced_from = cut_unix + (2 * LEASE_SECONDS / 3) as f64;
    let during: Vec<_> = seconds
        .iter()
        .filter(|(s, c)| {
            (*s as f64) >= fenced_from.ceil()
                && (*s as f64) < restored_unix.floor()
                && c.iter().sum::<u64>() > 0
        })
        .collect();
    assert!(
        during.is_empty(),
        "calls while no replica could hold the Lease: {during:?}"
    );
    // Nothing lost: every task's status moved on from the one written before the outage.
    let list = tasks.list(&Default::default()).await.unwrap();
    for (task, before) in list.items.iter().zip(generations) {
        let status = task.status.as_ref().expect("a status");
        assert_eq!(status.observed_generation, before);
        assert_eq!(status.phase, Some(Phase::ChannelStopped));
    }
    // And the spec changes made after it are seen.
    tasks
        .patch(
            "relay-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            synced(&tasks, "relay-0").await == Some(("False".into(), "Suspended".into()))
        })
        .await,
        "a spec change after the outage was missed"
    );
    eprintln!(
        "API server down {OUTAGE:?} (Lease {LEASE_SECONDS} s): {restarts} replica restarts, no call after the fence, \
         never two callers in a second, every status caught up {caught_up_after:.1?} after it was started again"
    );
}

#[tokio::test]
async fn integration_only_the_leader_calls_the_cloud_and_a_standby_takes_over_within_the_lease() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "leader").await;
    let sim = Simulator::start(sim_config(3, 10)).await.unwrap();
    populate(&client, &ns, &sim, 3).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let args = [
        &fast()[..],
        &[
            "--leader-election",
            "--lease-namespace",
            &ns,
            "--lease-duration",
            "4",
        ],
    ]
    .concat();
    let mut first = Operator::with_simulator(cp, &ns, &sim, &args, &[("POD_NAME", "replica-a")]);
    assert!(
        eventually(Duration::from_secs(15), || all_in_phase(
            &tasks,
            3,
            Phase::Running
        ))
        .await
    );
    let mut second = Operator::with_simulator(cp, &ns, &sim, &args, &[("POD_NAME", "replica-b")]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The standby must be alive and answering to count: a dead one also makes no calls.
    assert!(
        second.exited().is_none(),
        "the standby exited:\n{}",
        second.output()
    );
    let standby_metrics = second.metrics().await;
    assert!(
        standby_metrics.contains("mpu_relay_reconciles_total"),
        "the standby's /metrics has no operator metrics:\n{standby_metrics}"
    );
    assert!(first.metric("mpu_relay_cloud_calls_total").await > 0.0);
    assert_eq!(
        second.metric("mpu_relay_cloud_calls_total").await,
        0.0,
        "the standby called the cloud:\n{}",
        second.output()
    );
    // And the cloud agrees: every call so far came from the leader's User-Agent.
    let by_replica = calls_by_replica(&sim, &["replica-a", "replica-b"]);
    let (leader_calls, standby_calls) = by_replica
        .iter()
        .fold((0, 0), |(a, b), (_, n)| (a + n[0], b + n[1]));
    assert!(leader_calls > 0, "the simulator saw no call of the leader");
    assert_eq!(standby_calls, 0, "the simulator saw calls of the standby");

    // The leader dies without releasing its lease.
    first.kill();
    let killed = Instant::now();
    for i in 0..3 {
        sim.set_task_status("app", &format!("t{i}"), 5);
    }
    assert!(
        eventually(Duration::from_secs(15), || all_in_phase(
            &tasks,
            3,
            Phase::CdnError
        ))
        .await,
        "the standby did not take over:\n{}",
        second.output()
    );
    let took = killed.elapsed();
    // Lease of 4 s, plus the standby's retry period and one poll.
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    assert!(second.metric("mpu_relay_cloud_calls_total").await > 0.0);
    eprintln!("takeover after the leader died: {took:?}");
    assert!(second.terminate(Duration::from_secs(10)).await.is_some());
}

/// Per wall-clock second (Unix), the calls of each replica, from the simulator's User-Agent
/// counts (the operator's agent names its `POD_NAME`).
fn calls_by_replica(sim: &SimulatorHandle, replicas: &[&str]) -> Vec<(i64, Vec<u64>)> {
    sim.stats(false)
        .all
        .per_second
        .iter()
        .map(|bucket| {
            let per_replica = replicas
                .iter()
                .map(|replica| {
                    let tag = format!("({replica})");
                    bucket
                        .user_agents
                        .iter()
                        .filter(|(agent, _)| agent.ends_with(&tag))
                        .map(|(_, n)| n)
                        .sum()
                })
                .collect();
            (bucket.second, per_replica)
        })
        .collect()
}

/// The table of [`calls_by_replica`], seconds counted from the cut at `cut_unix`.
fn print_calls_by_replica(seconds: &[(i64, Vec<u64>)], cut_unix: f64) {
    eprintln!("second (from the cut)  replica-a  replica-b");
    for (second, calls) in seconds {
        eprintln!(
            "{:>+20.0}  {:>9}  {:>9}",
            *second as f64 - cut_unix.floor(),
            calls[0],
            calls[1]
        );
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The leader reaches the API server through a TCP proxy that the test cuts (a black hole) for
/// three lease durations. The leader cannot renew: it stops calling the cloud a third of the
/// lease before the Lease can expire, and exits non-zero; the standby takes over only after the
/// Lease expired. At no second did both call.
#[tokio::test]
async fn integration_a_partitioned_leader_stops_calling_before_the_standby_can_take_over() {
    const LEASE_SECONDS: u64 = 6;
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "partition").await;
    let sim = Simulator::start(sim_config(3, 10)).await.unwrap();
    populate(&client, &ns, &sim, 3).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);

    // The leader's kubeconfig points at the proxy; TLS passes through (the serving certificate
    // names 127.0.0.1).
    let upstream: std::net::SocketAddr = cp
        .server
        .trim_start_matches("https://")
        .parse()
        .expect("the control plane serves on a loopback address");
    let proxy = support::proxy::Proxy::start(upstream);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        std::fs::read_to_string(&cp.kubeconfig)
            .unwrap()
            .replace(&cp.server, &format!("https://{}", proxy.addr())),
    )
    .unwrap();
    let lease = LEASE_SECONDS.to_string();
    let args = [
        &fast()[..],
        &[
            "--leader-election",
            "--lease-namespace",
            &ns,
            "--lease-duration",
            &lease,
        ],
    ]
    .concat();
    let mut leader = Operator::with_simulator(
        cp,
        &ns,
        &sim,
        &args,
        &[
            ("POD_NAME", "replica-a"),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
    );
    assert!(
        eventually(Duration::from_secs(20), || all_in_phase(
            &tasks,
            3,
            Phase::Running
        ))
        .await,
        "{}",
        leader.output()
    );
    let mut standby = Operator::with_simulator(cp, &ns, &sim, &args, &[("POD_NAME", "replica-b")]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(3)).await;

    proxy.cut();
    let cut = Instant::now();
    let cut_unix = unix_now();
    let exit = loop {
        if let Some(status) = leader.exited() {
            break Some((status, cut.elapsed()));
        }
        if cut.elapsed() > Duration::from_secs(4 * LEASE_SECONDS) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, exited_after) =
        exit.unwrap_or_else(|| panic!("the leader kept running:\n{}", leader.output()));
    assert!(!status.success(), "{status:?}:\n{}", leader.output());
    assert!(
        leader.output().contains("could not be renewed in time"),
        "{}",
        leader.output()
    );

    // Whoever calls now is the standby: it sees the relays stop and writes it.
    for i in 0..3 {
        sim.set_task_status("app", &format!("t{i}"), 5);
    }
    assert!(
        eventually(Duration::from_secs(4 * LEASE_SECONDS), || all_in_phase(
            &tasks,
            3,
            Phase::CdnError
        ))
        .await,
        "the standby did not take over:\n{}",
        standby.output()
    );
    // Keep the partition for three lease durations in all.
    let partition = Duration::from_secs(3 * LEASE_SECONDS);
    tokio::time::sleep(partition.saturating_sub(cut.elapsed())).await;
    let partitioned_for = cut.elapsed();
    proxy.restore();

    let seconds = calls_by_replica(&sim, &["replica-a", "replica-b"]);
    print_calls_by_replica(&seconds, cut_unix);
    let both: Vec<_> = seconds
        .iter()
        .filter(|(_, calls)| calls[0] > 0 && calls[1] > 0)
        .collect();
    assert!(both.is_empty(), "two callers in the same second: {both:?}");
    let last_a = seconds
        .iter()
        .filter(|(_, c)| c[0] > 0)
        .map(|(s, _)| *s)
        .max()
        .expect("the leader called");
    let first_b = seconds
        .iter()
        .filter(|(_, c)| c[1] > 0)
        .map(|(s, _)| *s)
        .min()
        .unwrap_or_else(|| panic!("the standby never called:\n{}", standby.output()));
    assert!(
        last_a < first_b,
        "replica-a called at {last_a}, replica-b from {first_b}"
    );
    // The leader's calls under partition end within the lease (a third of it before: its
    // margin); the standby's start after it.
    let a_after_cut: u64 = seconds
        .iter()
        .filter(|(s, _)| *s as f64 >= cut_unix.floor())
        .map(|(_, c)| c[0])
        .sum();
    let a_stopped = last_a as f64 + 1.0 - cut_unix;
    let b_started = first_b as f64 - cut_unix;
    assert!(
        a_stopped <= LEASE_SECONDS as f64,
        "replica-a called until {a_stopped:.1} s into the partition"
    );
    let b_calls: u64 = seconds.iter().map(|(_, c)| c[1]).sum();
    let b_span = (seconds.last().unwrap().0 - first_b + 1) as f64;
    eprintln!(
        "partition of {partitioned_for:?}: replica-a made {a_after_cut} calls in it and stopped before {a_stopped:.1} s \
         (exited {status} after {exited_after:?}); replica-b called from {b_started:.1} s, \
         {b_calls} calls in {b_span} s ({:.1}/s); never two callers in a second",
        b_calls as f64 / b_span
    );
    assert!(
        standby
            .terminate(Duration::from_secs(10))
            .await
            .is_some_and(|(s, _)| s.success()),
        "{}",
        standby.output()
    );
}
