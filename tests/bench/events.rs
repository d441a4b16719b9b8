//! Phase 5, events: `plan.events_tasks` tasks on one 10 calls/s account, one in a hundred
//! changing per minute in the cloud (a status flipped between Running and CdnError). How long
//! each change takes to show as the task's phase in Kubernetes (seen through a watch), polling
//! alone (the default intervals: the budget's floor is N/rate) against event callbacks as hints
//! (the simulator POSTs each change after a scripted 1 s delivery delay; the backstop is 10
//! minutes). Then floods of callbacks against the events endpoint: forged ones (a bad token),
//! which must cost no cloud call, and valid ones for one task, which must poll it at most once a
//! second while changes of the other tasks still come in as fast; the operator's CPU and RSS
//! through each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use mpu_cloud_sim::events::DeliveryRules;
use mpu_relay_operator::controller::ownership::{OwnershipKey, SECRET_KEY};

use super::*;

pub const EVENTS_ACCOUNT: &str = "LTAIbenchEvents";
pub const EVENTS_PREFIX: &str = "e-";
const EVENTS_NAMESPACE: &str = "bench-events";
const OWNERSHIP_SECRET: &str = "mpu-relay-operator-ownership";
/// The scripted delay before the cloud's first try of a callback.
const DELIVERY_DELAY: Duration = Duration::from_secs(1);
/// One change in a hundred tasks a minute: with 1 000 tasks, one every 6 s.
fn change_every(tasks: usize) -> Duration {
    Duration::from_secs_f64(60.0 / (tasks as f64 / 100.0))
}
/// The callbacks' rate in a flood, and how long a flood lasts.
const FLOOD_RATE: f64 = 5_000.0;
const FLOOD_IN_FLIGHT: usize = 256;

/// A change made in the cloud and not seen in Kubernetes yet.
struct Pending {
    task: String,
    want: Phase,
    at: Instant,
}

/// Changes and how long each took to be seen (seconds), filled by a watch of the tasks.
#[derive(Default)]
struct Seen {
    pending: Vec<Pending>,
    latencies: Vec<f64>,
}

/// Watches the namespace's tasks, recording when each pending change shows.
fn watch(client: &kube::Client, ns: &str, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let api = Api::<MpuRelayTask>::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let Ok(task) = item else { continue };
            let (Some(name), Some(phase)) = (
                task.metadata.name.clone(),
                task.status.as_ref().and_then(|s| s.phase),
            ) else {
                continue;
            };
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            let Seen { pending, latencies } = &mut *seen;
            pending.retain(|p| {
                let hit = p.task == name && p.want == phase;
                if hit {
                    latencies.push((now - p.at).as_secs_f64());
                }
                !hit
            });
        }
    })
}

/// The changes made in the cloud: each task's status, and a fixed generator choosing them.
struct Changer {
    status: HashMap<usize, i64>,
    seed: u64,
}

impl Changer {
    /// Flips tasks (other than `spare`) between Running and CdnError, one every `every`, for
    /// `window`; how many changes were made.
    async fn changes(
        &mut self,
        sim: &SimulatorHandle,
        seen: &Arc<Mutex<Seen>>,
        tasks: usize,
        spare: usize,
        every: Duration,
        window: Duration,
    ) -> usize {
        let started = Instant::now();
        let mut made = 0;
        while started.elapsed() < window {
            self.seed = self
                .seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = (self.seed >> 33) as usize % tasks;
            let name = format!("t-{i}");
            if i == spare || seen.lock().unwrap().pending.iter().any(|p| p.task == name) {
                continue;
            }
            let status = self.status.entry(i).or_insert(RUNNING);
            *status = if *status == RUNNING {
                CDN_ERROR
            } else {
                RUNNING
            };
            let next = *status;
            seen.lock().unwrap().pending.push(Pending {
                task: name,
                want: Phase::from_code(next),
                at: Instant::now(),
            });
            sim.set_task_status(APP, &format!("{EVENTS_PREFIX}{i}"), next);
            made += 1;
            tokio::time::sleep(every).await;
        }
        made
    }
}

/// Waits until no change is pending (or `within` passes); the latencies recorded so far, and
/// how many changes were never seen.
async fn drained(seen: &Arc<Mutex<Seen>>, within: Duration) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !seen.lock().unwrap().pending.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen = seen.lock().unwrap();
    let missed = seen.pending.len();
    seen.pending.clear();
    (std::mem::take(&mut seen.latencies), missed)
}

/// (p50, p99, max) of `values`, in their unit.
fn percentiles(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// POSTs `make(i)`'s (URL, body) at `FLOOD_RATE` for `seconds`, `FLOOD_IN_FLIGHT` at a time:
/// how many were answered, by status, and the rate achieved.
async fn flood(
    http: &reqwest::Client,
    seconds: f64,
    make: impl Fn(u64) -> (String, String),
) -> (HashMap<u16, u64>, f64) {
    let total = (FLOOD_RATE * seconds) as u64;
    let started = Instant::now();
    let answers: Vec<u16> = futures::stream::iter((0..total).map(|i| {
        let (url, body) = make(i);
        let http = http.clone();
        async move {
            let due = started + Duration::from_secs_f64(i as f64 / FLOOD_RATE);
            tokio::time::sleep_until(due.into()).await;
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    }))
    .buffer_unordered(FLOOD_IN_FLIGHT)
    .collect()
    .await;
    let mut by_status = HashMap::new();
    for a in answers {
        *by_status.entry(a).or_insert(0) += 1;
    }
    (by_status, total as f64 / started.elapsed().as_secs_f64())
}

fn callback(msg_id: &str, task_id: &str) -> String {
    json!({
        "EventType": 1, "MsgId": msg_id, "AppId": APP, "SubId": "Sub-bench", "TaskId": task_id,
        "CallbackTs": 0, "Payload": {"DstUrl": "", "EventTs": 0, "EventCode": 1, "ErrorCode": 0},
    })
    .to_string()
}

/// The operator's CPU seconds per second and RSS (MiB) over `f`.
async fn measured<T>(
    op: &Operator,
    f: impl std::future::Future<Output = T>,
) -> Result<(T, f64, f64), String> {
    let (cpu0, t0) = (cpu_seconds(op.pid())?, Instant::now());
    let out = f.await;
    let cpu = (cpu_seconds(op.pid())? - cpu0) / t0.elapsed().as_secs_f64();
    let (rss, _) = memory_mib(op.pid())?;
    Ok((out, cpu, rss))
}

pub async fn events_phase(
    plan: &Plan,
    cp: &ControlPlane,
    client: &kube::Client,
    sim: &SimulatorHandle,
    bin: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let n = plan.events_tasks;
    let ns = EVENTS_NAMESPACE;
    let ids = [EVENTS_ACCOUNT.to_string()];
    let every = change_every(n);
    let floor =
        n as f64 / (f64::from(LIMIT) * (1.0 - f64::from(DEFAULT_QPS_MARGIN_PERCENT) / 100.0));
    namespace(client, ns).await?;
    accounts(client, ns, &ids, &sim.base_url()).await?;
    create_tasks(client, ns, EVENTS_PREFIX, 0..n, |_| {
        EVENTS_ACCOUNT.to_string()
    })
    .await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watching = watch(client, ns, seen.clone());
    let mut changer = Changer {
        status: HashMap::new(),
        seed: 0x5eed,
    };
    let label = |m: &str| format!("{n} tasks, one 10/s account, 1 % changing a minute: {m}");

    // Polling alone.
    log(format!(
        "events: {n} tasks, polling alone (floor {floor:.0} s): waiting for a first round"
    ));
    let off = Operator::start(bin, cp, ns, &sim.base_url(), &[]);
    tokio::time::sleep(Duration::from_secs_f64(floor * 1.1 + 5.0)).await;
    log(format!(
        "events: polling alone: a change every {:.0} s for {:.0} s",
        every.as_secs_f64(),
        plan.events_window.as_secs_f64()
    ));
    let made = changer
        .changes(sim, &seen, n, usize::MAX, every, plan.events_window)
        .await;
    let (polled, missed) = drained(&seen, Duration::from_secs_f64(floor * 1.5 + 10.0)).await;
    drop(off);
    let (p50_off, p99_off, max_off) = percentiles(&polled);
    report.row(
        "events",
        label("change to phase, polling alone: p50 / p99 / max"),
        format!("{p50_off:.1} / {p99_off:.1} / {max_off:.1} s ({made} changes, {missed} unseen; floor {floor:.0} s)"),
    );

    // Events on.
    let endpoint = Endpoint::new()?;
    sim.set_delivery_rules(DeliveryRules {
        delay_ms: DELIVERY_DELAY.as_millis() as i64,
        ..DeliveryRules::default()
    });
    let account_name = EVENTS_ACCOUNT.to_ascii_lowercase();
    let accounts_api = Api::<MpuRelayAccount>::namespaced(client.clone(), ns);
    accounts_api
        .patch(
            &account_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"events": {"callbackURL": endpoint.base(), "backstopInterval": "10m"}}})),
        )
        .await
        .map_err(|e| format!("turning events on: {e}"))?;
    let args = endpoint.args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--ownership-key-secret", OWNERSHIP_SECRET]);
    let mut op = Operator::start(bin, cp, ns, &sim.base_url(), &args);
    log("events: with events: waiting for EventsReady and a first round");
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        op.check_alive()?;
        let account = accounts_api
            .get(&account_name)
            .await
            .map_err(|e| e.to_string())?;
        let ready = account
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "EventsReady"))
            .is_some_and(|c| c.status == "True");
        if ready {
            break;
        }
        if Instant::now() > ready_deadline {
            return Err(format!(
                "EventsReady not True after 60 s; log: {}",
                op.log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(floor * 1.1 + 5.0)).await;
    log("events: with events: changes");
    let made = changer
        .changes(sim, &seen, n, 0, every, plan.events_window)
        .await;
    let (hinted, missed) = drained(&seen, Duration::from_secs(30)).await;
    let (p50_on, p99_on, max_on) = percentiles(&hinted);
    let target = 2.0 + DELIVERY_DELAY.as_secs_f64();
    report.check(
        "events",
        label("change to phase, with events: p50 / p99 / max"),
        format!("{p50_on:.2} / {p99_on:.2} / {max_on:.2} s ({made} changes, {missed} unseen; delivery delay {:.0} s)", DELIVERY_DELAY.as_secs_f64()),
        format!("p99 <= {target:.0} s (2 s + the delay), none unseen"),
        p99_on <= target && missed == 0,
    );

    // Floods. The valid token is the operator's, read where it keeps it.
    let key = Api::<Secret>::namespaced(client.clone(), "default")
        .get(OWNERSHIP_SECRET)
        .await
        .map_err(|e| format!("reading the ownership key: {e}"))?
        .data
        .and_then(|d| d.get(SECRET_KEY).cloned())
        .ok_or("the ownership key has no data")?;
    let key = OwnershipKey::new(&key.0)?;
    let uid = accounts_api
        .get(&account_name)
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .uid
        .unwrap_or_default();
    let valid = format!(
        "{}/{uid}/{APP}/{}",
        endpoint.base(),
        key.callback_token(&uid, APP, 0)
    );
    let forged_base = format!("{}/{uid}/{APP}", endpoint.base());
    let http = endpoint.client()?;
    let seconds = plan.flood_seconds.as_secs_f64();

    let (calls0, _, _) = account_calls(sim, &ids);
    let (_, idle_cpu, idle_rss) = measured(&op, tokio::time::sleep(plan.flood_seconds)).await?;
    let (calls1, _, _) = account_calls(sim, &ids);
    let hinted0 = op
        .metric("mpu_relay_callbacks_total{result=\"hinted\"}")
        .await?;
    log(format!(
        "events: {FLOOD_RATE:.0} forged callbacks/s for {seconds:.0} s"
    ));
    let ((answers, rate), cpu, rss) = measured(
        &op,
        flood(&http, seconds, |i| {
            (
                format!("{forged_base}/{i:064x}"),
                callback(&format!("forged-{i}"), "e-1"),
            )
        }),
    )
    .await?;
    let (calls2, _, _) = account_calls(sim, &ids);
    let hinted1 = op
        .metric("mpu_relay_callbacks_total{result=\"hinted\"}")
        .await?;
    let refused = answers.get(&403).copied().unwrap_or(0);
    let sent: u64 = answers.values().sum();
    report.check(
        "events",
        label("forged flood (bad token): refused; hints; cloud calls during it vs as long without"),
        format!(
            "{refused} of {sent} refused ({rate:.0}/s achieved); {:.0} hints; {} vs {} calls",
            hinted1 - hinted0,
            calls2 - calls1,
            calls1 - calls0
        ),
        "all refused; 0 hints (0 extra calls)",
        refused == sent && hinted1 == hinted0,
    );
    report.row(
        "events",
        label("operator CPU (s/s) and RSS (MiB): idle with events; forged flood"),
        format!("{idle_cpu:.3}, {idle_rss:.1}; {cpu:.3}, {rss:.1}"),
    );

    log(format!(
        "events: {FLOOD_RATE:.0} valid callbacks/s for one task for {seconds:.0} s, other tasks changing"
    ));
    let hot_before = sim.task(APP, "e-0").map_or(0, |t| t.calls);
    let other_changes = changer.changes(
        sim,
        &seen,
        n,
        0,
        Duration::from_millis(1500),
        plan.flood_seconds,
    );
    let valid_flood = flood(&http, seconds, |i| {
        (valid.clone(), callback(&format!("valid-{i}"), "e-0"))
    });
    let (((answers, rate), made), cpu, rss) =
        measured(&op, async { tokio::join!(valid_flood, other_changes) }).await?;
    let hot_calls = sim.task(APP, "e-0").map_or(0, |t| t.calls) - hot_before;
    let (during, missed) = drained(&seen, Duration::from_secs(30)).await;
    let (p50_f, p99_f, _) = percentiles(&during);
    let ok = answers.get(&200).copied().unwrap_or(0);
    let sent: u64 = answers.values().sum();
    // The flood lasts as long as it took to send (the rate achieved may fall short of 5 000/s).
    let lasted = sent as f64 / rate;
    report.check(
        "events",
        label("valid flood for one task: polls of it"),
        format!("{hot_calls} in {lasted:.1} s ({ok} of {sent} answered 200, {rate:.0}/s achieved)"),
        "<= one a second (+1)",
        hot_calls as f64 <= lasted.ceil() + 1.0,
    );
    report.check(
        "events",
        label("valid flood: other tasks' changes to phase, p50 / p99"),
        format!("{p50_f:.2} / {p99_f:.2} s ({made} changes, {missed} unseen; without a flood p99 {p99_on:.2} s)"),
        format!("p99 <= {target:.0} s, none unseen"),
        p99_f <= target && missed == 0,
    );
    report.row(
        "events",
        label("operator CPU (s/s) and RSS (MiB) during the valid flood"),
        format!("{cpu:.3}, {rss:.1}"),
    );
    op.check_alive()?;
    watching.abort();
    sim.set_delivery_rules(DeliveryRules::default());
    Ok(())
}

/// The operator's events endpoint for the bench: a free port and a self-signed certificate.
struct Endpoint {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

impl Endpoint {
    fn new() -> Result<Endpoint, String> {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .map_err(|e| e.to_string())?;
        let dir = log_dir();
        let (cert, key) = (dir.join("events-tls.crt"), dir.join("events-tls.key"));
        let cert_pem = certified.cert.pem();
        std::fs::write(&cert, &cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(&key, certified.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        Ok(Endpoint {
            port,
            cert,
            key,
            cert_pem,
        })
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}/hooks", self.port)
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--events-bind-address".into(),
            format!("127.0.0.1:{}", self.port),
            "--events-tls-cert".into(),
            self.cert.display().to_string(),
            "--events-tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert =
            reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .pool_max_idle_per_host(FLOOD_IN_FLIGHT)
            .build()
            .map_err(|e| e.to_string())
    }
}
