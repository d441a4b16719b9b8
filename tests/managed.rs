//! Managed relays end to end: the operator binary against the real kube-apiserver and the cloud
//! simulator over TLS, the simulator running the relays by Alibaba's rules (a channel needs
//! users, "task already exists" until cleared, one relay per ingest URL).
//!
//! Each test says what the user does, and which calls must (not) reach the cloud.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use mpu_cloud_sim::{Action, FaultKind, FaultSpec, Simulator, SimulatorConfig, SimulatorHandle};
use mpu_relay_operator::api::{MpuRelayTask, conditions};
use serde_json::{Value, json};
use support::accounts;
use support::operator::{FAST_POLLING, Operator, eventually};

const AK: &str = "LTAI5tManagedRelays";
const SK: &str = "managed-relays-secret-51d0";
const UID: &str = "1234567890123456";
const APP: &str = "app";
const CHANNEL: &str = "lobby";

fn config() -> SimulatorConfig {
    serde_json::from_value(json!({
        "accounts": [{"accessKeyId": AK, "accessKeySecret": SK, "uid": UID}],
    }))
    .unwrap()
}

/// A simulator whose channel `lobby` has a user in it (a relay can start).
async fn simulator() -> SimulatorHandle {
    let sim = Simulator::start(config()).await.expect("simulator");
    sim.set_channel_users(APP, CHANNEL, 1);
    sim
}

fn single_relay(url: &str) -> Value {
    json!({
        "channelId": CHANNEL, "mixMode": "Single", "streamURL": url,
        "singleSubParams": {"userId": "host-1", "streamType": 0, "sourceType": "camera"},
        "region": "CN-Shanghai", "maxIdleTime": 600
    })
}

fn mixed_relay(width: f64) -> Value {
    json!({
        "channelId": CHANNEL, "mixMode": "Mixed",
        "multiStreamURL": [{"url": "rtmp://push.example.com/live/mix", "isAliCdn": false}],
        "transcodeParams": {
            "layout": {"userPanes": [
                {"left": 0.0, "top": 0.0, "width": width, "height": 1.0, "zOrder": 0,
                 "userInfo": {"userId": "host-1", "sourceType": "camera"}}
            ]},
            "encodeParams": {"videoWidth": 1280, "videoHeight": 720}
        }
    })
}

/// A managed task `name` of TaskId `task_id` through account `account` (a namespaced one
/// unless `kind` says otherwise).
fn managed(name: &str, task_id: &str, account: Value, relay: Value, extra: Value) -> MpuRelayTask {
    let mut spec = json!({
        "appId": APP, "taskId": task_id, "accountRef": account,
        "managementPolicy": "Manage", "relay": relay,
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    accounts::task_with(name, spec)
}

struct World {
    client: kube::Client,
    ns: String,
}

/// A namespace with the account `live` on a fresh simulator, one managed task `name` (TaskId
/// `task_id`, `relay`, `extra` merged into its spec) and an operator that got it running.
async fn running_relay(
    test: &str,
    name: &str,
    task_id: &str,
    relay: Value,
    extra: Value,
) -> (World, SimulatorHandle, Operator) {
    let w = World::new(test).await;
    let sim = simulator().await;
    w.live_account(&sim).await;
    let task = managed(name, task_id, json!({"name": "live"}), relay, extra);
    accounts::create_task(&w.client, &w.ns, &task).await;
    let op = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    w.wait_for(
        name,
        conditions::READY,
        ("True", "Running"),
        Duration::from_secs(30),
        &op,
    )
    .await;
    (w, sim, op)
}

impl World {
    async fn new(test: &str) -> World {
        let client = support::shared().client().await;
        let ns = support::test_namespace(&client, test).await;
        World { client, ns }
    }

    fn tasks(&self) -> Api<MpuRelayTask> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The Secret `ak` and the namespaced account `live` on `sim`.
    async fn live_account(&self, sim: &SimulatorHandle) {
        accounts::secret(&self.client, &self.ns, "ak", AK, SK).await;
        accounts::account(
            &self.client,
            &self.ns,
            "live",
            &sim.base_url(),
            "ak",
            json!({}),
        )
        .await;
    }

    async fn condition(&self, name: &str, type_: &str) -> Option<(String, String)> {
        condition_in(&self.tasks(), name, type_).await
    }

    async fn patch_spec(&self, name: &str, spec: Value) {
        self.tasks()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Waits until `name`'s condition `type_` has `want` (status, reason); fails with the
    /// object's status and the operator's log.
    async fn wait_for(
        &self,
        name: &str,
        type_: &str,
        want: (&str, &str),
        within: Duration,
        op: &Operator,
    ) {
        wait_condition(&self.tasks(), name, type_, want, within, op).await;
    }

    /// Waits until `name` is gone (its finalizer done); fails with the operator's log.
    async fn wait_gone(&self, name: &str, op: &Operator) {
        assert!(
            eventually(Duration::from_secs(30), || self.gone(name)).await,
            "{name} is still there\n{}",
            op.output()
        );
    }

    async fn gone(&self, name: &str) -> bool {
        self.tasks().get_opt(name).await.unwrap().is_none()
    }
}

async fn condition_in(
    api: &Api<MpuRelayTask>,
    name: &str,
    type_: &str,
) -> Option<(String, String)> {
    api.get(name)
        .await
        .ok()
        .and_then(|t| t.status)
        .and_then(|s| {
            s.condition(type_)
                .map(|c| (c.status.clone(), c.reason.clone()))
        })
}

/// [`World::wait_for`] in any namespace.
async fn wait_condition(
    api: &Api<MpuRelayTask>,
    name: &str,
    type_: &str,
    want: (&str, &str),
    within: Duration,
    op: &Operator,
) {
    let want = Some((want.0.to_owned(), want.1.to_owned()));
    assert!(
        eventually(within, || async {
            condition_in(api, name, type_).await == want
        })
        .await,
        "{name}: {type_} is not {want:?}: {:?}\n{}",
        api.get(name).await.ok().and_then(|t| t.status),
        op.output()
    );
}

fn actions(sim: &SimulatorHandle, action: &str) -> u64 {
    sim.stats(false)
        .relay_actions
        .get(action)
        .copied()
        .unwrap_or(0)
}

const START: &str = "StartLiveMPUTask";
const UPDATE: &str = "UpdateLiveMPUTask";
const STOP: &str = "StopLiveMPUTask";

fn running() -> (String, String) {
    ("True".into(), "Running".into())
}

#[tokio::test]
async fn integration_a_managed_relay_is_started_once_as_declared_and_stopped_once_on_delete() {
    let url = "rtmp://push.example.com/live/lobby";
    let (w, sim, op) = running_relay(
        "managed-lifecycle",
        "lobby-relay",
        "lobby-relay-1",
        single_relay(url),
        json!({}),
    )
    .await;
    assert_eq!(actions(&sim, START), 1, "exactly one Start");
    // The cloud runs what the manifest says (ListRtcMPUTaskDetail's view of the relay).
    let relay = sim.relay(APP, "lobby-relay-1").expect("the relay runs");
    assert_eq!(relay["ChannelId"], CHANNEL);
    assert_eq!(relay["MixMode"], "0");
    assert_eq!(relay["StreamURL"], url);
    assert_eq!(relay["Region"], "CN-Shanghai");
    assert_eq!(relay["MaxIdleTime"], "600");
    assert_eq!(relay["SingleSubParams"]["UserId"], "host-1");
    let object = w.tasks().get("lobby-relay").await.unwrap();
    assert!(
        object
            .finalizers()
            .contains(&"mpurelay.io/relay".to_string())
    );
    let management = object
        .status
        .unwrap()
        .management
        .expect("status.management");
    assert!(management.started_at.is_some() && management.starting.is_none());
    assert!(!management.adopted);
    // Left alone while it runs as declared.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((actions(&sim, START), actions(&sim, UPDATE)), (1, 0));

    w.tasks()
        .delete("lobby-relay", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("lobby-relay", &op).await;
    assert_eq!(actions(&sim, STOP), 1, "exactly one Stop");
    assert_eq!(sim.relay(APP, "lobby-relay-1").unwrap()["Status"], 3);
    let metrics = op.metrics().await;
    assert!(
        metrics.contains("mpu_relay_actions_total{operation=\"startMPUTask\",result=\"ok\"} 1"),
        "{metrics}"
    );
    // The account shows each operation's use of its own budget.
    let accounts: Api<mpu_relay_operator::api::MpuRelayAccount> =
        Api::namespaced(w.client.clone(), &w.ns);
    let uses = || async {
        accounts
            .get("live")
            .await
            .ok()
            .and_then(|a| a.status)
            .and_then(|s| s.budget)
            .map(|b| {
                b.operations
                    .iter()
                    .map(|o| (o.operation.clone(), o.limit, o.calls))
                    .collect::<Vec<_>>()
            })
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            uses().await
                == Some(vec![
                    ("startMPUTask".into(), 500, 1),
                    ("stopMPUTask".into(), 500, 1),
                ])
        })
        .await,
        "{:?}",
        uses().await
    );
}

use kube::ResourceExt;

#[tokio::test]
async fn integration_a_cdn_stop_is_restarted_after_the_backoff_and_a_user_stop_never_is() {
    let (w, sim, op) = running_relay(
        "managed-restart",
        "relay",
        "r1",
        single_relay("rtmp://x/cdn"),
        json!({"restartPolicy": "OnFailure"}),
    )
    .await;

    // The cloud stops it: a CDN problem (5). Degraded while backing off, then restarted.
    sim.set_task_status(APP, "r1", 5);
    w.wait_for(
        "relay",
        conditions::STALLED,
        ("True", "CdnError"),
        Duration::from_secs(10),
        &op,
    )
    .await;
    assert_eq!(actions(&sim, START), 1, "not restarted before the backoff");
    assert!(
        eventually(Duration::from_secs(40), || async {
            actions(&sim, START) == 2
                && w.condition("relay", conditions::READY).await == Some(running())
        })
        .await,
        "{:?}\n{}",
        w.tasks().get("relay").await.unwrap().status,
        op.output()
    );
    let events = support::events_of(&w.client, &w.ns, "relay").await;
    assert!(events.iter().any(|e| e == "Restarted"), "{events:?}");
    let management = w
        .tasks()
        .get("relay")
        .await
        .unwrap()
        .status
        .unwrap()
        .management
        .unwrap();
    assert_eq!(management.restarts, 1);

    // A user stops it (3): never restarted, and the condition says who stopped it.
    sim.set_task_status(APP, "r1", 3);
    w.wait_for(
        "relay",
        conditions::STALLED,
        ("True", "StoppedByUser"),
        Duration::from_secs(10),
        &op,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(actions(&sim, START), 2, "a user's stop was undone");
}

#[tokio::test]
async fn integration_kill_9_while_a_start_is_in_flight_leaves_exactly_one_start_and_the_object_owns_it()
 {
    let w = World::new("managed-crash").await;
    let sim = simulator().await;
    w.live_account(&sim).await;
    // The cloud takes the Start at once but answers 5 s later.
    sim.add_fault_for(
        &[Action::StartLiveMpuTask],
        FaultSpec {
            kind: FaultKind::Latency { ms: 5000 },
            account: None,
            count: Some(1),
            duration_ms: None,
        },
    )
    .unwrap();
    let task = managed(
        "relay",
        "crash-1",
        json!({"name": "live"}),
        single_relay("rtmp://x/crash"),
        json!({}),
    );
    accounts::create_task(&w.client, &w.ns, &task).await;
    let mut first = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(20), || async {
            actions(&sim, START) == 1
        })
        .await,
        "{}",
        first.output()
    );
    let status = w.tasks().get("relay").await.unwrap().status.unwrap();
    let management = status
        .management
        .expect("the intent is written before the Start");
    assert!(
        management.starting.is_some() && management.started_at.is_none(),
        "{management:?}\n{}",
        first.output()
    );
    first.kill();

    let second = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.condition("relay", conditions::READY).await == Some(running())
                && w.tasks()
                    .get("relay")
                    .await
                    .unwrap()
                    .status
                    .unwrap()
                    .management
                    .is_some_and(|m| m.started_at.is_some())
        })
        .await,
        "{:?}\n{}",
        w.tasks().get("relay").await.unwrap().status,
        second.output()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(actions(&sim, START), 1, "a second Start after the crash");
    // It owns the relay: deleting the object stops it.
    w.tasks()
        .delete("relay", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("relay", &second).await;
    assert_eq!(actions(&sim, STOP), 1);
}

#[tokio::test]
async fn integration_another_tenant_can_neither_take_over_nor_stop_a_relay_and_managing_needs_the_accounts_grant()
 {
    let client = support::shared().client().await;
    let a = support::test_namespace(&client, "managed-tenant-a").await;
    let b = support::test_namespace(&client, "managed-tenant-b").await;
    let c = support::test_namespace(&client, "managed-tenant-c").await;
    let home = support::test_namespace(&client, "managed-tenant-operator").await;
    let sim = simulator().await;
    accounts::secret(&client, &home, "ak", AK, SK).await;
    let shared = format!("{a}-shared");
    accounts::cluster_account(
        &client,
        &shared,
        json!({
            "endpoint": sim.base_url(),
            "credentials": {"secretRef": {"name": "ak"}},
            "conditions": [
                {"namespaces": [a.clone(), b.clone()], "manage": true},
                {"namespaces": [c.clone()]}
            ],
        }),
    )
    .await;
    let account = json!({"kind": "ClusterMpuRelayAccount", "name": shared});
    let relay = single_relay("rtmp://x/tenant-a");
    accounts::create_task(
        &client,
        &a,
        &managed(
            "relay",
            "shared-1",
            account.clone(),
            relay.clone(),
            json!({}),
        ),
    )
    .await;
    let namespaces = format!("{a},{b},{c}");
    let mut args = FAST_POLLING.to_vec();
    args.extend(["--operator-namespace", home.as_str()]);
    let op = Operator::with_simulator(support::shared(), &namespaces, &sim, &args, &[]);
    let in_a: Api<MpuRelayTask> = Api::namespaced(client.clone(), &a);
    let in_b: Api<MpuRelayTask> = Api::namespaced(client.clone(), &b);
    let in_c: Api<MpuRelayTask> = Api::namespaced(client.clone(), &c);
    wait_condition(
        &in_a,
        "relay",
        conditions::READY,
        ("True", "Running"),
        Duration::from_secs(30),
        &op,
    )
    .await;
    let polls_of_shared = || sim.task(APP, "shared-1").map_or(0, |t| t.calls);

    // Tenant B declares the same TaskId (with its own relay) on the same cloud account, later
    // (creation times count in seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    accounts::create_task(
        &client,
        &b,
        &managed(
            "relay",
            "shared-1",
            account.clone(),
            single_relay("rtmp://x/tenant-b"),
            json!({"adopt": true}),
        ),
    )
    .await;
    wait_condition(
        &in_b,
        "relay",
        conditions::STALLED,
        ("True", "TaskClaimed"),
        Duration::from_secs(15),
        &op,
    )
    .await;
    // Tenant C, admitted but not allowed to manage.
    accounts::create_task(
        &client,
        &c,
        &managed(
            "relay",
            "c-1",
            account.clone(),
            single_relay("rtmp://x/tenant-c"),
            json!({}),
        ),
    )
    .await;
    wait_condition(
        &in_c,
        "relay",
        conditions::STALLED,
        ("True", "ManageNotAllowed"),
        Duration::from_secs(15),
        &op,
    )
    .await;
    assert!(
        sim.task(APP, "c-1").is_none_or(|t| t.calls == 0),
        "tenant C's task was polled"
    );
    assert_eq!(
        (
            actions(&sim, START),
            actions(&sim, UPDATE),
            actions(&sim, STOP)
        ),
        (1, 0, 0)
    );

    // B deletes its object: no Stop of A's relay.
    let before = polls_of_shared();
    in_b.delete("relay", &DeleteParams::default())
        .await
        .unwrap();
    in_c.delete("relay", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            in_b.get_opt("relay").await.unwrap().is_none()
                && in_c.get_opt("relay").await.unwrap().is_none()
        })
        .await,
        "{}",
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        actions(&sim, STOP),
        0,
        "another tenant's delete stopped the relay"
    );
    assert_eq!(sim.relay(APP, "shared-1").unwrap()["Status"], 1);
    assert!(polls_of_shared() > before, "A's relay is still polled");
    assert_eq!(
        condition_in(&in_a, "relay", conditions::READY).await,
        Some(running())
    );
    assert_eq!(actions(&sim, START), 1);
}

#[tokio::test]
async fn integration_a_layout_change_is_one_update_and_manage_to_observe_lets_go_without_a_stop() {
    let (w, sim, op) = running_relay(
        "managed-update",
        "mix",
        "mix-1",
        mixed_relay(0.5),
        json!({}),
    )
    .await;
    let width = |sim: &SimulatorHandle| {
        sim.relay(APP, "mix-1").unwrap()["TranscodeParams"]["Layout"]["UserPanes"][0]["Width"]
            .clone()
    };
    assert_eq!(width(&sim), "0.5");

    w.patch_spec("mix", json!({"relay": mixed_relay(0.75)}))
        .await;
    assert!(
        eventually(Duration::from_secs(20), || async { width(&sim) == "0.75" }).await,
        "{:?}\n{}",
        sim.relay(APP, "mix-1"),
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (
            actions(&sim, START),
            actions(&sim, UPDATE),
            actions(&sim, STOP)
        ),
        (1, 1, 0),
        "one Update, no Stop/Start"
    );
    let events = support::events_of(&w.client, &w.ns, "mix").await;
    assert!(events.iter().any(|e| e == "Updated"), "{events:?}");

    // Manage -> Observe: the finalizer goes, nothing is called, and deleting stops nothing.
    w.patch_spec("mix", json!({"managementPolicy": "Observe"}))
        .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.tasks().get("mix").await.unwrap().finalizers().is_empty()
        })
        .await,
        "{}",
        op.output()
    );
    w.tasks()
        .delete("mix", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("mix", &op).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(actions(&sim, STOP), 0);
    assert_eq!(
        sim.relay(APP, "mix-1").unwrap()["Status"],
        1,
        "the relay keeps running"
    );
}

#[tokio::test]
async fn integration_an_ownership_record_written_by_the_tenant_makes_no_update_and_no_stop() {
    // A relay runs that no object owns: its object was deleted with deletionPolicy Orphan.
    let (w, sim, op) = running_relay(
        "managed-forged",
        "first",
        "orphan-1",
        single_relay("rtmp://x/orphan"),
        json!({"deletionPolicy": "Orphan"}),
    )
    .await;
    w.tasks()
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("first", &op).await;

    // Someone with status rights writes a record saying their object started it.
    let second = managed(
        "second",
        "orphan-1",
        json!({"name": "live"}),
        single_relay("rtmp://x/other"),
        json!({}),
    );
    accounts::create_task(&w.client, &w.ns, &second).await;
    w.wait_for(
        "second",
        conditions::STALLED,
        ("True", "TaskExists"),
        Duration::from_secs(15),
        &op,
    )
    .await;
    w.tasks()
        .patch_status(
            "second",
            &PatchParams::apply("tenant-script").force(),
            &Patch::Apply(json!({
                "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
                "status": {"management": {"startedAt": "2026-01-01T00:00:00Z", "specHash": "0000000000000000"}}
            })),
        )
        .await
        .unwrap();
    // A spec change, then the delete: neither may touch the relay.
    w.patch_spec("second", json!({"relay": single_relay("rtmp://x/changed")}))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        w.condition("second", conditions::STALLED).await,
        Some(("True".into(), "TaskExists".into()))
    );
    w.tasks()
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("second", &op).await;
    assert_eq!(
        (
            actions(&sim, START),
            actions(&sim, UPDATE),
            actions(&sim, STOP)
        ),
        (1, 0, 0)
    );
    assert_eq!(
        sim.relay(APP, "orphan-1").unwrap()["Status"],
        1,
        "the orphaned relay runs on"
    );
    assert!(
        op.output().contains("does not carry this operator's proof"),
        "{}",
        op.output()
    );
}
