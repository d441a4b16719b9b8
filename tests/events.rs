//! Event callbacks as hints, end to end: the operator binary against the real kube-apiserver
//! and the cloud simulator over TLS, with its events endpoint on HTTPS; the simulator keeps the
//! subscriptions and POSTs the documented callback on every status change, as Alibaba does.
//!
//! Polling stays the truth: each test sets the backstop interval to ten minutes, so a status
//! that reaches a task in seconds came through a callback's hint (or the delivery log).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use mpu_cloud_sim::{Simulator, SimulatorConfig, SimulatorHandle, events::DeliveryRules};
use mpu_relay_operator::api::{MpuRelayAccount, MpuRelayTask, Phase, conditions};
use mpu_relay_operator::controller::ownership::{OwnershipKey, SECRET_KEY};
use serde_json::{Value, json};
use support::accounts;
use support::operator::{FAST_POLLING, OWNERSHIP_SECRET, Operator, eventually};

const AK: &str = "LTAI5tEventsHints";
const SK: &str = "events-hints-secret-7c1e";
const APP: &str = "app";
const TASKS: [&str; 3] = ["task-1", "task-2", "task-3"];

/// The operator's events endpoint: a port, and a self-signed certificate for 127.0.0.1.
struct Endpoint {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    fn new() -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        let cert_pem = certified.cert.pem();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Endpoint {
            port,
            cert,
            key,
            cert_pem,
            _dir: dir,
        }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/hooks", self.port)
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = FAST_POLLING.iter().map(|a| a.to_string()).collect();
        args.extend([
            "--events-bind-address".into(),
            format!("127.0.0.1:{}", self.port),
            "--events-tls-cert".into(),
            self.cert.display().to_string(),
            "--events-tls-key".into(),
            self.key.display().to_string(),
        ]);
        args
    }

    /// A client that trusts the endpoint's certificate, as a test of the endpoint's TLS must.
    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }
}

struct World {
    client: kube::Client,
    ns: String,
    sim: SimulatorHandle,
    endpoint: Endpoint,
    op: Operator,
}

/// A namespace with the account `live` (events on, backstop 10 min) on a fresh simulator whose
/// three tasks run, three observed tasks, and an operator serving its events endpoint: returned
/// once the account's events are ready and every task is Running.
async fn world(test: &str) -> World {
    let client = support::shared().client().await;
    let ns = support::test_namespace(&client, test).await;
    let config: SimulatorConfig = serde_json::from_value(json!({
        "accounts": [{"accessKeyId": AK, "accessKeySecret": SK}],
    }))
    .unwrap();
    let sim = Simulator::start(config).await.expect("simulator");
    for task in TASKS {
        sim.set_task_status(APP, task, 1);
    }
    let endpoint = Endpoint::new();
    accounts::secret(&client, &ns, "ak", AK, SK).await;
    let events = json!({"events": {"callbackURL": endpoint.base(), "backstopInterval": "10m"}});
    accounts::account(&client, &ns, "live", &sim.base_url(), "ak", events).await;
    for task in TASKS {
        accounts::create_task(&client, &ns, &accounts::task(task, task, "live")).await;
    }
    let args = endpoint.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::with_simulator(support::shared(), &ns, &sim, &args, &[]);
    let w = World {
        client,
        ns,
        sim,
        endpoint,
        op,
    };
    w.wait_events_ready().await;
    for task in TASKS {
        w.wait_phase(task, Phase::Running, Duration::from_secs(30))
            .await;
    }
    // Polls granted before the events were healthy (at the 1 s intervals) may still come:
    // a test starts once no call came for 2 s.
    let quiet = eventually(Duration::from_secs(20), || async {
        let before = w.calls();
        tokio::time::sleep(Duration::from_secs(2)).await;
        w.calls() == before
    })
    .await;
    assert!(
        quiet,
        "the tasks are still polled every second\n{}",
        w.op.output()
    );
    w
}

impl World {
    fn tasks(&self) -> Api<MpuRelayTask> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn accounts(&self) -> Api<MpuRelayAccount> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn account_events_ready(&self) -> Option<(String, String)> {
        let account = self.accounts().get("live").await.ok()?;
        let c = account
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == conditions::EVENTS_READY)?;
        Some((c.status, c.reason))
    }

    async fn wait_events_ready(&self) {
        let ready = Some(("True".to_owned(), "Subscribed".to_owned()));
        assert!(
            eventually(Duration::from_secs(40), || async {
                self.account_events_ready().await == ready
            })
            .await,
            "the account's events are not ready: {:?}\n{}",
            self.account_events_ready().await,
            self.op.output()
        );
    }

    async fn phase(&self, task: &str) -> Option<Phase> {
        self.tasks().get(task).await.ok()?.status?.phase
    }

    async fn wait_phase(&self, task: &str, want: Phase, within: Duration) {
        assert!(
            eventually(within, || async { self.phase(task).await == Some(want) }).await,
            "{task} is not {want:?} within {within:?}: {:?}\n{}",
            self.phase(task).await,
            self.op.output()
        );
    }

    /// GetMPUTaskStatus calls that reached each task.
    fn calls(&self) -> Vec<u64> {
        TASKS
            .iter()
            .map(|t| self.sim.task(APP, t).map_or(0, |v| v.calls))
            .collect()
    }

    async fn account_uid(&self) -> String {
        self.accounts()
            .get("live")
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    }

    /// The callback URL the operator registered for `app`, as only it can make it: the
    /// endpoint's base, the account's UID, the app and the token of the operator's key.
    async fn valid_path(&self, app: &str) -> String {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "default");
        let secret = secrets.get(OWNERSHIP_SECRET).await.unwrap();
        let key = secret.data.unwrap()[SECRET_KEY].0.clone();
        let key = OwnershipKey::new(&key).unwrap();
        let uid = self.account_uid().await;
        let token = key.callback_token(&uid, app, 0);
        format!("{}/{uid}/{app}/{token}", self.endpoint.base())
    }

    async fn post(&self, url: &str, body: impl Into<reqwest::Body>) -> u16 {
        self.endpoint
            .client()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

fn callback(msg_id: &str, app: &str, task: &str) -> String {
    json!({
        "EventType": 1, "MsgId": msg_id, "AppId": app, "SubId": "Sub-1", "TaskId": task,
        "CallbackTs": 0, "Payload": {"DstUrl": "", "EventTs": 0, "EventCode": 5, "ErrorCode": 0},
    })
    .to_string()
}

#[tokio::test]
async fn integration_a_status_change_reaches_its_task_through_its_callback_while_the_backstop_is_ten_minutes()
 {
    let w = world("events-hint").await;
    let subscription = w.sim.subscription(APP).expect("the app is subscribed");
    let uid = w.account_uid().await;
    assert!(
        subscription
            .callback_url
            .starts_with(&format!("{}/{uid}/{APP}/", w.endpoint.base())),
        "{subscription:?}"
    );
    // The backstop holds: tasks polled every second without events are polled no more. And
    // the account is quiet: no status write, no read of the delivery log at every reconcile
    // (a write is a watch event that reconciles it again).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = w.calls();
    let account_writes = "mpu_relay_status_writes_total{result=\"ok\",kind=\"MpuRelayAccount\"}";
    let log_reads = "mpu_relay_actions_total{operation=\"eventRecords\"";
    let (writes, reads) = (
        w.op.metric(account_writes).await,
        w.op.metric(log_reads).await,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.calls(), settled, "polled within the backstop");
    assert!(w.op.metric(account_writes).await - writes <= 1.0);
    assert!(w.op.metric(log_reads).await - reads <= 1.0);
    assert_eq!(
        w.op.metric("mpu_relay_callbacks_total{result=\"bad_token\"}")
            .await,
        0.0,
        "{}",
        w.op.output()
    );

    // The cloud stops task-2 (a CDN problem): its callback has it polled at once.
    w.sim.set_task_status(APP, "task-2", 5);
    w.wait_phase("task-2", Phase::CdnError, Duration::from_secs(5))
        .await;
    let after = w.calls();
    assert_eq!(after[0], settled[0], "task-1 was not hinted");
    assert_eq!(after[2], settled[2], "task-3 was not hinted");
    assert!(after[1] > settled[1]);
    assert!(
        w.op.metric("mpu_relay_callbacks_total{result=\"hinted\"}")
            .await
            >= 1.0,
        "{}",
        w.op.metrics().await
    );
    assert!(
        w.op.metric("mpu_relay_change_detected_seconds_count").await >= 1.0,
        "the detection time is measured"
    );
    let bad_token = "mpu_relay_callbacks_total{result=\"bad_token\"}";
    assert_eq!(
        w.op.metric(bad_token).await,
        0.0,
        "a valid one counts as nothing else"
    );
    // The account says what its callbacks did.
    let events = w
        .accounts()
        .get("live")
        .await
        .unwrap()
        .status
        .unwrap()
        .events;
    let events = events.expect("status.events");
    assert_eq!(events.subscriptions.len(), 1);
    assert_eq!(events.subscriptions[0].app_id, APP);
    assert_eq!(events.subscriptions[0].sub_id, subscription.sub_id);
}

#[tokio::test]
async fn integration_forged_oversized_and_foreign_callbacks_are_refused_and_cost_no_call() {
    let w = world("events-forged").await;
    let uid = w.account_uid().await;
    let before = w.calls();
    let base = w.endpoint.base();
    // Forged: a token that is not the operator's, for a real account and app.
    for i in 0..200 {
        let forged = format!("{base}/{uid}/{APP}/{:064x}", i);
        let status = w
            .post(&forged, callback(&format!("f{i}"), APP, "task-1"))
            .await;
        assert_eq!(status, 403);
    }
    // Not even a callback path, or not a POST.
    assert_eq!(w.post(&format!("{base}/x"), "{}").await, 403);
    let get = w.endpoint.client().get(&base).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);

    let valid = w.valid_path(APP).await;
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(w.post(&valid, huge).await, 400, "over 64 KiB");
    assert_eq!(w.post(&valid, "not json").await, 400);
    assert_eq!(
        w.post(&valid, callback("m-other-app", "other", "task-1"))
            .await,
        422,
        "the body names another app than the URL it came to"
    );
    assert_eq!(
        w.post(&valid, callback("m-unknown", APP, "nobody-watches-it"))
            .await,
        200,
        "valid, and costs nothing"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.calls(), before, "no refused callback made a call");
    // Exactly the refused ones are counted so: a valid callback counts as nothing else.
    let bad_token = "mpu_relay_callbacks_total{result=\"bad_token\"}";
    assert_eq!(w.op.metric(bad_token).await, 201.0);

    // A valid callback for task-1 has it polled; a flood of them (new MsgIds each) polls it
    // at most once a second, and the others not at all.
    assert_eq!(w.post(&valid, callback("m-1", APP, "task-1")).await, 200);
    let polled = eventually(Duration::from_secs(3), || async {
        w.calls()[0] > before[0]
    })
    .await;
    assert!(polled, "task-1 polled on its hint\n{}", w.op.output());
    let start = w.calls();
    let flood_started = std::time::Instant::now();
    for i in 0..300 {
        let status = w
            .post(&valid, callback(&format!("flood-{i}"), APP, "task-1"))
            .await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seconds = flood_started.elapsed().as_secs_f64().ceil();
    let end = w.calls();
    assert!(
        (end[0] - start[0]) as f64 <= seconds + 1.0,
        "task-1 polled {} times in {seconds} s of a flood",
        end[0] - start[0]
    );
    assert_eq!((end[1], end[2]), (start[1], start[2]));
}

#[tokio::test]
async fn integration_a_subscription_comes_with_the_first_task_of_an_app_and_goes_with_the_last() {
    let mut w = world("events-subs").await;
    let creates = |sim: &SimulatorHandle| {
        sim.stats(false)
            .relay_actions
            .get("CreateRtcMPUEventSub")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(creates(&w.sim), 1);
    let task = accounts::task_with(
        "other-app",
        json!({"appId": "app-2", "taskId": "t", "accountRef": {"name": "live"}}),
    );
    accounts::create_task(&w.client, &w.ns, &task).await;
    let uid = w.account_uid().await;
    let prefix = format!("{}/{uid}/app-2/", w.endpoint.base());
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.sim
                .subscription("app-2")
                .is_some_and(|s| s.callback_url.starts_with(&prefix))
        })
        .await,
        "no subscription for app-2\n{}",
        w.op.output()
    );
    w.tasks()
        .delete("other-app", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.sim.subscription("app-2").is_none()
        })
        .await,
        "app-2's subscription outlived its last task\n{}",
        w.op.output()
    );
    assert!(w.sim.subscription(APP).is_some(), "the other app's stays");

    // Someone else's subscription of an app is never changed nor deleted.
    w.sim.set_task_status("app-3", "t3", 1);
    let foreign = "https://team-c.example.com/their-callback";
    w.sim.create_subscription("app-3", foreign);
    let task = accounts::task_with(
        "third-app",
        json!({"appId": "app-3", "taskId": "t3", "accountRef": {"name": "live"}}),
    );
    accounts::create_task(&w.client, &w.ns, &task).await;
    let exists = Some(("False".to_owned(), "SubscriptionExists".to_owned()));
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.account_events_ready().await == exists
        })
        .await,
        "{:?}",
        w.account_events_ready().await
    );
    w.tasks()
        .delete("third-app", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A restart finds its own subscriptions by their tokens: no new Create.
    w.op.kill();
    let args = w.endpoint.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.op = Operator::with_simulator(support::shared(), &w.ns, &w.sim, &args, &[]);
    w.wait_events_ready().await;
    assert_eq!(creates(&w.sim), 2, "app and app-2, each once");

    // The account goes: its subscription goes first (finalizer), someone else's stays.
    w.accounts()
        .delete("live", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.sim.subscription(APP).is_none()
                && w.accounts().get_opt("live").await.unwrap().is_none()
        })
        .await,
        "the account or its subscription is still there\n{}",
        w.op.output()
    );
    assert_eq!(
        w.sim
            .subscription("app-3")
            .map(|s| s.callback_url)
            .as_deref(),
        Some(foreign)
    );
}

#[tokio::test]
async fn integration_callbacks_lost_in_a_gap_or_while_the_operator_was_down_are_replayed_from_the_delivery_log()
 {
    let mut w = world("events-replay").await;
    // The network between the cloud and the endpoint goes down: the callback is tried, fails,
    // and is given up after its retries.
    w.sim.set_delivery_rules(DeliveryRules {
        unreachable: true,
        retry_every_ms: 100,
        ..Default::default()
    });
    w.sim.set_task_status(APP, "task-3", 6);
    assert!(
        eventually(Duration::from_secs(5), || async {
            w.sim.event_records(APP).len() >= 4
        })
        .await
    );
    // The account's next refresh reads the log and hints the task (the backstop is 10 min).
    w.wait_phase("task-3", Phase::StreamUrlError, Duration::from_secs(30))
        .await;
    assert!(
        w.op.metric("mpu_relay_callbacks_total{result=\"replayed\"}")
            .await
            >= 1.0,
        "{}",
        w.op.output()
    );
    assert!(w.phase("task-1").await == Some(Phase::Running));

    // The operator is down when the cloud calls back (its tries fail: nobody listens); the
    // next one reads the log and hints what did not get through.
    w.sim.set_delivery_rules(DeliveryRules {
        retry_every_ms: 100,
        ..Default::default()
    });
    w.op.kill();
    let logged = w.sim.event_records(APP).len();
    w.sim.set_task_status(APP, "task-1", 4);
    assert!(
        eventually(Duration::from_secs(5), || async {
            w.sim.event_records(APP).len() >= logged + 4
        })
        .await
    );
    let args = w.endpoint.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.op = Operator::with_simulator(support::shared(), &w.ns, &w.sim, &args, &[]);
    w.wait_phase("task-1", Phase::ChannelStopped, Duration::from_secs(30))
        .await;
    let replayed = "mpu_relay_callbacks_total{result=\"replayed\"}";
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.op.metric(replayed).await >= 1.0
        })
        .await,
        "the restarted operator replayed nothing\n{}",
        w.op.output()
    );
}

/// The account's spec carries nothing secret: the token is in no object the tenant can read.
#[tokio::test]
async fn integration_no_object_shows_a_callback_token() {
    let w = world("events-no-token").await;
    let token_path = w.valid_path(APP).await;
    let token = token_path.rsplit('/').next().unwrap().to_owned();
    let account: Value = serde_json::to_value(w.accounts().get("live").await.unwrap()).unwrap();
    assert!(!account.to_string().contains(&token));
    for task in TASKS {
        let task: Value = serde_json::to_value(w.tasks().get(task).await.unwrap()).unwrap();
        assert!(!task.to_string().contains(&token));
    }
    assert!(!w.op.output().contains(&token), "the token is not logged");
}
