//! `make bench`: the operator's figures on this machine, against the real local control plane
//! (etcd + kube-apiserver) and the cloud simulator, printed as a Markdown table.
//!
//! The simulator runs in this process; the operator runs as its own process (the release binary,
//! `mpu-relay-operator run`), so its memory and CPU time are read from `/proc/<pid>` alone. CPU is
//! process CPU time (utime + stime), not wall time, so other work on the machine perturbs it little.
//!
//! Phases, in order:
//! 1. peer: CPU per 1 000 GetMPUTaskStatus calls of Alibaba's official Python SDKs (old core SDK,
//!    V1; today's RTC client, V3) and of our own `CloudClient` in a child process (this binary,
//!    `bench raw-client ...`), sequential calls against the same simulator;
//! 2. budget + freshness + unchanged writes: N = 50 and N = 500 tasks on one account limited to
//!    10 calls/s, every task wanting a poll each second (`--running-interval 1s`), so demand is far
//!    above the budget;
//! 3. scale: 1 000 then 10 000 tasks over 100 accounts: memory, CPU per 1 000 polls, polls per
//!    second, status writes with nothing changing and with 1 % of tasks changing per minute.
//!
//! Environment: `BENCH_QUICK=1` shrinks every phase (for working on the bench itself);
//! `BENCH_OUT=path` also writes the Markdown there; `MPU_RELAY_OPERATOR_BIN` uses that operator
//! binary instead of building `target/release/mpu-relay-operator`.

#[path = "../support/controlplane.rs"]
mod controlplane;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use mpu_relay_operator::api::{MpuRelayAccount, MpuRelayTask, Phase};
use mpu_relay_operator::simulator::config::TaskSetConfig;
use mpu_relay_operator::simulator::{
    AccountConfig, Simulator, SimulatorConfig, SimulatorHandle, TaskView,
};
use serde_json::json;

use controlplane::ControlPlane;

/// The cloud's documented limit per account, and the simulator's.
const LIMIT: u32 = 10;
const APP: &str = "bench";
/// Parallel creates against the API server.
const CREATE_CONCURRENCY: usize = 32;
/// The status the simulator reports for every task (Running), and the one a change switches to.
const RUNNING: i64 = 1;
const CDN_ERROR: i64 = 5;
/// Every task wants a poll each second: demand far above any account's budget.
const FAST: &[&str] = &[
    "--running-interval",
    "1s",
    "--waiting-interval",
    "1s",
    "--stopped-interval",
    "1s",
];

/// How big each phase is; `BENCH_QUICK=1` shrinks them.
struct Plan {
    budget_sizes: Vec<usize>,
    scale_small: usize,
    scale_large: usize,
    accounts: usize,
    peer_reps: usize,
    peer_calls: usize,
    /// Measuring window of the budget phase, in cycles of N/QPS (at least `min_window`).
    cycles: f64,
    min_window: Duration,
    scale_window: Duration,
    change_window: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                budget_sizes: vec![20, 60],
                scale_small: 200,
                scale_large: 1000,
                accounts: 20,
                peer_reps: 2,
                peer_calls: 300,
                cycles: 2.0,
                min_window: Duration::from_secs(8),
                scale_window: Duration::from_secs(8),
                change_window: Duration::from_secs(20),
            }
        } else {
            Plan {
                budget_sizes: vec![50, 500],
                scale_small: 1_000,
                scale_large: 10_000,
                accounts: 100,
                peer_reps: 5,
                peer_calls: 2_000,
                cycles: 2.1,
                min_window: Duration::from_secs(30),
                scale_window: Duration::from_secs(30),
                change_window: Duration::from_secs(60),
            }
        }
    }
}

fn budget_account(n: usize) -> String {
    format!("LTAIbench{n}")
}

fn scale_account(i: usize) -> String {
    format!("LTAIscale{i:03}")
}

const PEER_ACCOUNT: &str = "LTAIpeer";

fn secret_of(access_key_id: &str) -> String {
    format!("secret-of-{access_key_id}")
}

fn budget_prefix(n: usize) -> String {
    format!("b{n}-")
}

const SCALE_PREFIX: &str = "s-";
const SCALE_NAMESPACE: &str = "bench-scale";
const PEER_TASK: &str = "peer-0";

/// One line of the results table.
struct Row {
    area: &'static str,
    measure: String,
    value: String,
    target: String,
    result: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    failed: bool,
}

impl Report {
    fn row(&mut self, area: &'static str, measure: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row {
            area,
            measure: measure.into(),
            value: value.into(),
            target: String::new(),
            result: None,
        });
    }

    fn check(
        &mut self,
        area: &'static str,
        measure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        pass: bool,
    ) {
        self.rows.push(Row {
            area,
            measure: measure.into(),
            value: value.into(),
            target: target.into(),
            result: Some(pass),
        });
    }

    fn error(&mut self, area: &'static str, what: &str, error: impl std::fmt::Display) {
        eprintln!("[bench] ERROR in {what}: {error}");
        self.failed = true;
        self.rows.push(Row {
            area,
            measure: what.to_string(),
            value: format!("ERROR: {error}"),
            target: String::new(),
            result: Some(false),
        });
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| area | measure | value | target | result |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let result = match r.result {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.area, r.measure, r.value, r.target, result
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

fn log(message: impl std::fmt::Display) {
    eprintln!(
        "[bench {}] {message}",
        jiff::Timestamp::now().strftime("%H:%M:%S")
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("raw-client") {
        return raw_client(&args[2..]);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The control plane and the operator are started from this (main) thread: their
    // PR_SET_PDEATHSIG ties them to it, so they die with the bench however it ends.
    runtime.block_on(bench())
}

async fn bench() -> ExitCode {
    let started = Instant::now();
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = Plan::new(quick);
    let mut report = Report::default();
    let machine = machine();
    let revision = source_revision();
    let load_before = loadavg();

    let operator_bin = match operator_binary() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[bench] cannot build the operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    log(format!("operator binary: {}", operator_bin.display()));

    let sim = match Simulator::start(simulator_config(&plan)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[bench] cannot start the simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    log(format!("simulator at {}", sim.base_url()));

    // 1. Peer, first: nothing else of ours is running yet.
    let peer = peer_phase(&plan, &sim, &mut report).await;

    let dir = std::env::temp_dir().join(format!("mpu-relay-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cp = match ControlPlane::start(&dir) {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("[bench] cannot start the control plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = cp.client().await;

    // 2. Budget adherence, freshness, writes of unchanged polls.
    for &n in &plan.budget_sizes.clone() {
        if let Err(e) = budget_phase(&plan, n, &cp, &client, &sim, &operator_bin, &mut report).await
        {
            report.error("budget", &format!("N = {n}"), e);
        }
    }

    // 3. Scale over many accounts.
    match scale_phase(&plan, &cp, &client, &sim, &operator_bin, &mut report).await {
        Ok(operator_cpu_per_1000) => {
            if let Some(peer) = peer {
                peer_ratio_rows(&peer, operator_cpu_per_1000, &mut report);
            }
        }
        Err(e) => report.error("scale", "scale phase", e),
    }

    let elapsed = started.elapsed();
    report.notes.push(format!(
        "load average (1/5/15 min) before: {load_before}; after: {}",
        loadavg()
    ));
    report.notes.push(format!(
        "bench wall time: {:.1} min",
        elapsed.as_secs_f64() / 60.0
    ));
    drop(client);
    cp.stop();
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;

    let mut out = String::new();
    let _ = writeln!(out, "Machine: {machine}\n");
    let _ = writeln!(out, "Operator source: {revision}\n");
    let _ = writeln!(
        out,
        "Date: {}{}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        if quick {
            " (BENCH_QUICK: reduced sizes)"
        } else {
            ""
        }
    );
    out.push_str(&report.markdown());
    println!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT")
        && let Err(e) = std::fs::write(&path, &out)
    {
        eprintln!("[bench] cannot write {path}: {e}");
    }
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn simulator_config(plan: &Plan) -> SimulatorConfig {
    let account = |id: String, qps: u32| AccountConfig {
        access_key_secret: secret_of(&id),
        access_key_id: id,
        qps: Some(qps),
    };
    let mut accounts: Vec<AccountConfig> = plan
        .budget_sizes
        .iter()
        .map(|&n| account(budget_account(n), LIMIT))
        .collect();
    accounts.extend((0..plan.accounts).map(|i| account(scale_account(i), LIMIT)));
    // The peer loop calls as fast as it can: a limit it never reaches.
    accounts.push(account(PEER_ACCOUNT.into(), 1_000_000));
    let set = |prefix: String, count: usize| TaskSetConfig {
        app_id: APP.into(),
        task_id_prefix: prefix,
        count: count as u64,
        status: RUNNING,
    };
    let mut task_sets: Vec<TaskSetConfig> = plan
        .budget_sizes
        .iter()
        .map(|&n| set(budget_prefix(n), n))
        .collect();
    task_sets.push(set(SCALE_PREFIX.into(), plan.scale_large));
    task_sets.push(set("peer-".into(), 1));
    SimulatorConfig {
        accounts,
        task_sets,
        ..SimulatorConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Machine, processes, /proc

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}, {rustc}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The commit the operator was built from, and whether the tree had uncommitted changes.
fn source_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(controlplane::repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", "src"])
        .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit} + uncommitted changes under src/")
    } else {
        commit
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).ok_or("utime")?;
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).ok_or("stime")?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / ticks)
}

/// (VmRSS, VmHWM) of a process, in MiB.
fn memory_mib(pid: u32) -> Result<(f64, f64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or(format!("{name} missing"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Builds the release operator binary next to this bench (same target directory), unless
/// `MPU_RELAY_OPERATOR_BIN` names one. Cargo is a no-op when the binary is up to date.
fn operator_binary() -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var("MPU_RELAY_OPERATOR_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // <target>/release/examples/bench
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected bench location")?;
    let target_dir = profile_dir.parent().ok_or("unexpected bench location")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    log("building the release operator binary (cargo build --release)");
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "mpu-relay-operator"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(controlplane::repo_root())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed: {status}"));
    }
    let bin = profile_dir.join("mpu-relay-operator");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

/// Where the operators' logs are kept after the run: `<target>/bench-logs/`.
fn log_dir() -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("bench-logs")))
        .unwrap_or_else(|| std::env::temp_dir().join("mpu-relay-bench-logs"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A running `mpu-relay-operator run`, killed when dropped.
struct Operator {
    child: Child,
    metrics_url: String,
    log: PathBuf,
}

impl Operator {
    fn start(bin: &Path, cp: &ControlPlane, namespace: &str, sim_url: &str, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = log_dir().join(format!("operator-{namespace}.log"));
        let out = std::fs::File::create(&log).expect("operator log");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--namespaces")
            .arg(namespace)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "--allowed-endpoints",
                "http://127.0.0.1:*",
                "--namespaced-accounts",
            ])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("ALIBABA_CLOUD_STS_ENDPOINT", sim_url)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("operator log"))
            .stderr(out);
        use std::os::unix::process::CommandExt;
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting the operator");
        Operator {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of the metric lines starting with `prefix`.
    async fn metric(&self, prefix: &str) -> Result<f64, String> {
        let text = reqwest::get(&self.metrics_url)
            .await
            .map_err(|e| format!("scraping {}: {e}", self.metrics_url))?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    async fn status_writes(&self) -> Result<f64, String> {
        self.metric("mpu_relay_status_writes_total").await
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!(
                "the operator exited ({other:?}); log: {}",
                self.log.display()
            )),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects

async fn namespace(client: &kube::Client, name: &str) -> Result<(), String> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map(|_| ())
        .map_err(|e| format!("creating namespace {name}: {e}"))
}

/// A Secret and an `MpuRelayAccount` (both named after the AccessKeyId, lowercased) calling
/// `endpoint`, per AccessKey.
async fn accounts(
    client: &kube::Client,
    ns: &str,
    ids: &[String],
    endpoint: &str,
) -> Result<(), String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let accounts = Api::<MpuRelayAccount>::namespaced(client.clone(), ns);
    for id in ids {
        let name = id.to_ascii_lowercase();
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"accessKeyId": id, "accessKeySecret": secret_of(id)},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &s)
            .await
            .map_err(|e| format!("creating Secret {id}: {e}"))?;
        let a: MpuRelayAccount = serde_json::from_value(json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayAccount",
            "metadata": {"name": name},
            "spec": {"endpoint": endpoint, "qps": LIMIT, "credentials": {"secretRef": {"name": name}}},
        }))
        .unwrap();
        accounts
            .create(&PostParams::default(), &a)
            .await
            .map_err(|e| format!("creating MpuRelayAccount {id}: {e}"))?;
    }
    Ok(())
}

/// Creates tasks `first..last` named `t-<i>` for simulator tasks `<prefix><i>`, with a bounded
/// number of creates in flight; returns objects per second.
async fn create_tasks(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
    account: impl Fn(usize) -> String,
) -> Result<f64, String> {
    let api = Api::<MpuRelayTask>::namespaced(client.clone(), ns);
    let count = range.len();
    let started = Instant::now();
    let objects: Vec<MpuRelayTask> = range
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
                "metadata": {"name": format!("t-{i}")},
                "spec": {
                    "appId": APP, "taskId": format!("{prefix}{i}"),
                    "accountRef": {"name": account(i).to_ascii_lowercase()},
                },
            }))
            .expect("a valid MpuRelayTask")
        })
        .collect();
    futures::stream::iter(objects.iter().map(|t| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), t).await.map(|_| ()) }
    }))
    .buffer_unordered(CREATE_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .map_err(|e| format!("creating tasks: {e}"))?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn list_tasks(client: &kube::Client, ns: &str) -> Result<Vec<MpuRelayTask>, String> {
    Api::<MpuRelayTask>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing tasks: {e}"))
}

fn resource_versions(tasks: &[MpuRelayTask]) -> HashMap<String, String> {
    tasks
        .iter()
        .map(|t| {
            (
                t.metadata.name.clone().unwrap_or_default(),
                t.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn changed_versions(before: &HashMap<String, String>, after: &HashMap<String, String>) -> usize {
    after
        .iter()
        .filter(|(name, rv)| before.get(*name) != Some(*rv))
        .count()
}

async fn event_count(client: &kube::Client, ns: &str) -> Result<usize, String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .map_err(|e| format!("listing events: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Simulator views

/// The simulator's tasks `<prefix>0` .. `<prefix><count-1>` (those that have objects).
fn tasks_with_prefix(sim: &SimulatorHandle, prefix: &str, count: usize) -> Vec<TaskView> {
    sim.stats(true)
        .tasks
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            t.app_id == APP
                && t.task_id
                    .strip_prefix(prefix)
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| i < count)
        })
        .collect()
}

/// Calls per account since the last reset: (total, throttled, max in any 1-second window).
fn account_calls(sim: &SimulatorHandle, ids: &[String]) -> (u64, u64, u64) {
    let stats = sim.stats(false);
    ids.iter()
        .filter_map(|id| stats.accounts.get(id))
        .fold((0, 0, 0), |(t, th, m), a| {
            (
                t + a.calls.total,
                th + a.calls.throttled,
                m.max(a.calls.max_calls_in_any_second),
            )
        })
}

/// Waits until every task with `prefix` has at least `calls` calls since the last reset.
async fn wait_polled(
    sim: &SimulatorHandle,
    prefix: &str,
    expected: usize,
    calls: u64,
    timeout: Duration,
    operator: &mut Operator,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let tasks = tasks_with_prefix(sim, prefix, expected);
        let done = tasks.iter().filter(|t| t.calls >= calls).count();
        if tasks.len() == expected && done == expected {
            return Ok(started.elapsed());
        }
        operator.check_alive()?;
        if started.elapsed() > timeout {
            return Err(format!(
                "only {done} of {expected} tasks polled {calls} time(s) within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Follows each task's last call time and collects the gaps between consecutive calls.
struct Freshness {
    last: HashMap<String, i64>,
    /// Gaps whose later call fell in the window, in milliseconds.
    gaps: Vec<i64>,
    /// The longest gaps with their task and the time their later call came, for the log.
    longest: Vec<(i64, String, i64)>,
    window_start_ms: i64,
}

impl Freshness {
    fn new(tasks: &[TaskView]) -> Self {
        let last = tasks
            .iter()
            .filter_map(|t| Some((t.task_id.clone(), t.last_call_unix_ms?)))
            .collect();
        Freshness {
            last,
            gaps: Vec::new(),
            longest: Vec::new(),
            window_start_ms: i64::MAX,
        }
    }

    fn observe(&mut self, tasks: &[TaskView]) {
        for t in tasks {
            let Some(at) = t.last_call_unix_ms else {
                continue; // not called since the reset yet: keep the time seen before
            };
            match self.last.get_mut(&t.task_id) {
                Some(prev) if *prev != at => {
                    if at >= self.window_start_ms {
                        self.gaps.push(at - *prev);
                        self.longest.push((at - *prev, t.task_id.clone(), at));
                        if self.longest.len() > 64 {
                            self.longest.sort_unstable_by(|a, b| b.cmp(a));
                            self.longest.truncate(8);
                        }
                    }
                    *prev = at;
                }
                Some(_) => {}
                None => {
                    self.last.insert(t.task_id.clone(), at);
                }
            }
        }
    }

    /// (max, p99) staleness in seconds: gaps between calls, and the age of each task's last
    /// call at the end (a task left unpolled must count too).
    /// A task never seen polled makes the maximum infinite (reported as such).
    fn summary(&self, expected: usize, now_ms: i64) -> Result<(f64, f64), String> {
        if self.last.len() < expected {
            log(format!(
                "  {} of {expected} tasks were never polled",
                expected - self.last.len()
            ));
            return Ok((f64::INFINITY, f64::INFINITY));
        }
        let mut longest = self.longest.clone();
        longest.sort_unstable_by(|a, b| b.cmp(a));
        for (gap, task, at) in longest.iter().take(5) {
            log(format!(
                "  long gap: {task} {:.2}s, ending {:.1}s into the window",
                *gap as f64 / 1000.0,
                (at - self.window_start_ms) as f64 / 1000.0
            ));
        }
        if let Some((task, at)) = self.last.iter().min_by_key(|(_, at)| **at) {
            log(format!(
                "  oldest last call at the end: {task} {:.2}s ago",
                (now_ms - at) as f64 / 1000.0
            ));
        }
        let mut all: Vec<i64> = self.gaps.clone();
        let open_max = self.last.values().map(|at| now_ms - at).max().unwrap_or(0);
        all.sort_unstable();
        let max = all.last().copied().unwrap_or(0).max(open_max);
        let p99 = all
            .get(((all.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        Ok((max as f64 / 1000.0, p99 as f64 / 1000.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: budget adherence and freshness

async fn budget_phase(
    plan: &Plan,
    n: usize,
    cp: &ControlPlane,
    client: &kube::Client,
    sim: &SimulatorHandle,
    bin: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let ns = format!("bench-budget-{n}");
    let account = budget_account(n);
    let prefix = budget_prefix(n);
    log(format!("budget N = {n}: creating {n} tasks in {ns}"));
    namespace(client, &ns).await?;
    accounts(client, &ns, std::slice::from_ref(&account), &sim.base_url()).await?;
    create_tasks(client, &ns, &prefix, 0..n, |_| account.clone()).await?;
    sim.reset_stats();
    let mut op = Operator::start(bin, cp, &ns, &sim.base_url(), FAST);
    let floor = n as f64 / f64::from(LIMIT);
    let warm = wait_polled(
        sim,
        &prefix,
        n,
        1,
        Duration::from_secs_f64(floor * 3.0 + 60.0),
        &mut op,
    )
    .await?;
    log(format!(
        "budget N = {n}: every task polled once after {:.1}s; measuring",
        warm.as_secs_f64()
    ));

    // A full cycle more, so the window starts in the steady state (first writes done).
    tokio::time::sleep(Duration::from_secs_f64(floor * 1.1)).await;
    let window = Duration::from_secs_f64(floor * plan.cycles).max(plan.min_window);
    // The slow reads first: a call made between the snapshot of last calls and the reset would
    // be erased from the record and show as a skipped cycle that never happened
    // (tests/pacing_simulation.rs replays exactly that).
    let versions_before = resource_versions(&list_tasks(client, &ns).await?);
    let writes_before = op.status_writes().await?;
    let cpu_before = cpu_seconds(op.pid())?;
    let mut fresh = Freshness::new(&tasks_with_prefix(sim, &prefix, n));
    sim.reset_stats();
    let since_ms = sim.stats(false).since_unix_ms;
    fresh.window_start_ms = since_ms;
    let started = Instant::now();
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fresh.observe(&tasks_with_prefix(sim, &prefix, n));
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (calls, throttled, max_second) = account_calls(sim, std::slice::from_ref(&account));
    let cpu = cpu_seconds(op.pid())? - cpu_before;
    let writes = op.status_writes().await? - writes_before;
    let versions_after = resource_versions(&list_tasks(client, &ns).await?);
    op.check_alive()?;
    drop(op);

    let seconds = (now_ms - since_ms) as f64 / 1000.0;
    let allowed = f64::from(LIMIT) * seconds;
    let utilization = calls as f64 / allowed;
    let own_budget = f64::from(LIMIT) * 0.95 * seconds;
    let (max_stale, p99_stale) = fresh.summary(n, now_ms)?;
    let changed = changed_versions(&versions_before, &versions_after);
    let area = if n == plan.budget_sizes[0] {
        "budget (small)"
    } else {
        "budget (large)"
    };
    let label = |m: &str| format!("N = {n}, {LIMIT} QPS: {m}");
    report.check(
        area,
        label("max calls in any 1 s window"),
        format!("{max_second}"),
        format!("<= {LIMIT}"),
        max_second <= u64::from(LIMIT),
    );
    report.check(
        area,
        label("throttled calls"),
        format!("{throttled} of {calls}"),
        "0",
        throttled == 0,
    );
    report.check(
        area,
        label("budget utilization (calls / (QPS x window))"),
        format!(
            "{:.1} % ({calls} calls in {seconds:.0} s; {:.1} % of the operator's own 9.5/s budget)",
            utilization * 100.0,
            calls as f64 / own_budget * 100.0
        ),
        ">= 95 %",
        utilization >= 0.95,
    );
    report.check(
        "freshness",
        label(&format!("max staleness (floor N/QPS = {floor:.1} s)")),
        format!("{max_stale:.2} s = {:.3} x floor", max_stale / floor),
        "<= 1.1 x floor",
        max_stale <= 1.1 * floor,
    );
    report.row(
        "freshness",
        label("p99 staleness"),
        format!("{p99_stale:.2} s = {:.3} x floor", p99_stale / floor),
    );
    let per_poll = writes / calls.max(1) as f64;
    report.check(
        "API server",
        label("status writes per unchanged poll"),
        format!(
            "{per_poll:.4} ({writes} writes, {changed} resourceVersion changes, {calls} polls)"
        ),
        "0",
        writes == 0.0 && changed == 0,
    );
    report.row(
        "CPU",
        label("operator CPU s per 1 000 polls (mostly idle)"),
        format!("{:.3}", cpu / calls.max(1) as f64 * 1000.0),
    );
    log(format!(
        "budget N = {n}: {calls} calls in {seconds:.1}s, max {max_second}/s, {throttled} throttled, max staleness {max_stale:.2}s"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 3: scale

/// Returns the operator's CPU seconds per 1 000 polls in the steady window (the smaller size).
async fn scale_phase(
    plan: &Plan,
    cp: &ControlPlane,
    client: &kube::Client,
    sim: &SimulatorHandle,
    bin: &Path,
    report: &mut Report,
) -> Result<f64, String> {
    let ns = SCALE_NAMESPACE;
    let accounts: Vec<String> = (0..plan.accounts).map(scale_account).collect();
    let secret = |i: usize| scale_account(i % plan.accounts);
    namespace(client, ns).await?;
    self::accounts(client, ns, &accounts, &sim.base_url()).await?;
    log(format!(
        "scale: creating {} tasks over {} accounts",
        plan.scale_small, plan.accounts
    ));
    let rate_small = create_tasks(client, ns, SCALE_PREFIX, 0..plan.scale_small, secret).await?;
    sim.reset_stats();
    let mut op = Operator::start(bin, cp, ns, &sim.base_url(), FAST);
    let per_account = plan.scale_small / plan.accounts;
    // Two polls each: the second carries the floor of a full membership.
    wait_polled_scale(sim, plan.scale_small, 2, plan.accounts, &mut op, report).await?;
    let small = steady_window(
        client,
        sim,
        &op,
        &accounts,
        plan.scale_small,
        plan.scale_window,
    )
    .await?;
    let (rss_small, hwm_small) = memory_mib(op.pid())?;
    report.row(
        "scale",
        format!(
            "{} tasks ({per_account}/account): operator VmRSS / VmHWM",
            plan.scale_small
        ),
        format!("{rss_small:.1} MiB / {hwm_small:.1} MiB"),
    );
    report.row(
        "scale",
        format!(
            "{} tasks: sustained polls/s over {} accounts",
            plan.scale_small, plan.accounts
        ),
        format!(
            "{:.0} (budget {:.0}; {} throttled)",
            small.polls_per_second,
            plan.accounts as f64 * f64::from(LIMIT) * 0.95,
            small.throttled
        ),
    );
    report.row(
        "CPU",
        format!("{} tasks: operator CPU s per 1 000 polls", plan.scale_small),
        format!("{:.3}", small.cpu_per_1000),
    );

    // The rest are created with no operator running (creating 9 000 objects saturates this
    // 2-core machine), then a fresh operator starts on all of them, as after a restart.
    drop(op);
    log(format!(
        "scale: creating {} more tasks",
        plan.scale_large - plan.scale_small
    ));
    let rate_large = create_tasks(
        client,
        ns,
        SCALE_PREFIX,
        plan.scale_small..plan.scale_large,
        secret,
    )
    .await?;
    report.row(
        "scale",
        "task creation through the API server (32 creates in flight)",
        format!("{:.0} objects/s", (rate_small + rate_large) / 2.0),
    );
    sim.reset_stats();
    let mut op = Operator::start(bin, cp, ns, &sim.base_url(), FAST);
    wait_polled_scale(sim, plan.scale_large, 3, plan.accounts, &mut op, report).await?;
    let (startup_calls, startup_throttled, _) = account_calls(sim, &accounts);
    report.check(
        "budget (startup)",
        format!(
            "{} tasks: throttled calls while a fresh operator takes them all over (first polls and status writes)",
            plan.scale_large
        ),
        format!("{startup_throttled} of {startup_calls}"),
        "0",
        startup_throttled == 0,
    );
    let large = steady_window(
        client,
        sim,
        &op,
        &accounts,
        plan.scale_large,
        plan.scale_window,
    )
    .await?;
    let (rss_large, hwm_large) = memory_mib(op.pid())?;
    let per_account = plan.scale_large / plan.accounts;
    report.check(
        "scale",
        format!(
            "{} tasks ({per_account}/account): operator VmRSS / VmHWM",
            plan.scale_large
        ),
        format!("{rss_large:.1} MiB / {hwm_large:.1} MiB"),
        "<= 64 MiB RSS",
        rss_large <= 64.0,
    );
    report.row(
        "scale",
        format!(
            "{} tasks: sustained polls/s over {} accounts",
            plan.scale_large, plan.accounts
        ),
        format!(
            "{:.0} (budget {:.0}; {} throttled)",
            large.polls_per_second,
            plan.accounts as f64 * f64::from(LIMIT) * 0.95,
            large.throttled
        ),
    );
    report.row(
        "CPU",
        format!("{} tasks: operator CPU s per 1 000 polls", plan.scale_large),
        format!("{:.3}", large.cpu_per_1000),
    );
    report.check(
        "API server",
        format!(
            "{} tasks: status writes per unchanged poll",
            plan.scale_large
        ),
        format!(
            "{:.5} ({} writes, {} resourceVersion changes, {} polls)",
            large.writes / large.polls.max(1) as f64,
            large.writes,
            large.versions_changed,
            large.polls
        ),
        "0",
        large.writes == 0.0 && large.versions_changed == 0,
    );
    let floor = per_account as f64 / f64::from(LIMIT);
    report.check(
        "freshness",
        format!(
            "{} tasks, {per_account}/account: max staleness (floor {floor:.1} s)",
            plan.scale_large
        ),
        format!(
            "{:.2} s = {:.3} x floor (p99 {:.2} s)",
            large.max_stale,
            large.max_stale / floor,
            large.p99_stale
        ),
        "<= 1.1 x floor",
        large.max_stale <= 1.1 * floor,
    );

    change_window(plan, client, ns, sim, &op, &accounts, report).await?;
    op.check_alive()?;
    // The steady figure: the large window may still be in the fresh operator's start-up churn.
    Ok(small.cpu_per_1000)
}

/// Waits (up to 90 s) until every one of the first `expected` scale tasks has `calls` calls
/// since the last reset. Tasks left behind are a finding, not a reason to stop: they are
/// reported and the windows that follow show their staleness.
async fn wait_polled_scale(
    sim: &SimulatorHandle,
    expected: usize,
    calls: u64,
    accounts: usize,
    op: &mut Operator,
    report: &mut Report,
) -> Result<(), String> {
    let timeout = Duration::from_secs(90);
    match wait_polled(sim, SCALE_PREFIX, expected, calls, timeout, op).await {
        Ok(took) => {
            log(format!(
                "scale: all {expected} tasks polled {calls} times after {:.1}s",
                took.as_secs_f64()
            ));
            Ok(())
        }
        Err(e) => {
            op.check_alive()?;
            let tasks = tasks_with_prefix(sim, SCALE_PREFIX, expected);
            let behind = tasks.iter().filter(|t| t.calls < calls).count();
            let never = tasks.iter().filter(|t| t.calls == 0).count();
            log(format!("scale: {e}"));
            report.check(
                "freshness",
                format!("{expected} tasks: tasks polled fewer than {calls} times in the {timeout:?} after creation (floor {:.1} s)", (expected / accounts) as f64 / f64::from(LIMIT)),
                format!("{behind} ({never} never)"),
                "0",
                false,
            );
            Ok(())
        }
    }
}

struct Window {
    polls: u64,
    throttled: u64,
    polls_per_second: f64,
    cpu_per_1000: f64,
    writes: f64,
    versions_changed: usize,
    max_stale: f64,
    p99_stale: f64,
}

/// A window with nothing changing in the cloud: polls, CPU, writes, staleness.
async fn steady_window(
    kube: &kube::Client,
    sim: &SimulatorHandle,
    op: &Operator,
    accounts: &[String],
    expected: usize,
    length: Duration,
) -> Result<Window, String> {
    // Slow reads first, then the snapshot and the reset back to back (see budget_phase).
    let versions_before = resource_versions(&list_tasks(kube, SCALE_NAMESPACE).await?);
    let writes_before = op.status_writes().await?;
    let cpu_before = cpu_seconds(op.pid())?;
    let tasks_before = tasks_with_prefix(sim, SCALE_PREFIX, expected);
    let mut fresh = Freshness::new(&tasks_before);
    sim.reset_stats();
    let since_ms = sim.stats(false).since_unix_ms;
    fresh.window_start_ms = since_ms;
    let started = Instant::now();
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fresh.observe(&tasks_with_prefix(sim, SCALE_PREFIX, expected));
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (polls, throttled, _) = account_calls(sim, accounts);
    let cpu = cpu_seconds(op.pid())? - cpu_before;
    let writes = op.status_writes().await? - writes_before;
    let versions_after = resource_versions(&list_tasks(kube, SCALE_NAMESPACE).await?);
    let (max_stale, p99_stale) = fresh.summary(expected, now_ms)?;
    let seconds = (now_ms - since_ms) as f64 / 1000.0;
    log(format!(
        "scale window: {polls} polls in {seconds:.1}s, {cpu:.2} CPU s, {writes} writes"
    ));
    Ok(Window {
        polls,
        throttled,
        polls_per_second: polls as f64 / seconds,
        cpu_per_1000: cpu / polls.max(1) as f64 * 1000.0,
        writes,
        versions_changed: changed_versions(&versions_before, &versions_after),
        max_stale,
        p99_stale,
    })
}

/// 1 % of the tasks change status per minute: writes per poll and per change.
async fn change_window(
    plan: &Plan,
    client: &kube::Client,
    ns: &str,
    sim: &SimulatorHandle,
    op: &Operator,
    accounts: &[String],
    report: &mut Report,
) -> Result<(), String> {
    let total = plan.scale_large;
    let changes =
        ((total as f64 * 0.01) * plan.change_window.as_secs_f64() / 60.0).round() as usize;
    let changes = changes.max(1);
    let per_account = total / plan.accounts;
    let floor = Duration::from_secs_f64(per_account as f64 / f64::from(LIMIT) * 0.95f64.recip());
    log(format!(
        "scale: changing {changes} tasks over {:?} (1 % per minute)",
        plan.change_window
    ));
    let events_before = event_count(client, ns).await?;
    let writes_before = op.status_writes().await?;
    sim.reset_stats();
    let since_ms = sim.stats(false).since_unix_ms;
    // Distinct tasks spread over every account: a stride coprime with the total.
    let stride = (0..)
        .map(|k| 7919 + k)
        .find(|s| gcd(*s, total) == 1)
        .unwrap_or(1);
    let chosen: Vec<usize> = (0..changes).map(|k| (k * stride) % total).collect();
    let spacing = plan.change_window / changes as u32;
    let started = Instant::now();
    for (k, i) in chosen.iter().enumerate() {
        let at = spacing * k as u32;
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        sim.set_task_status(APP, &format!("{SCALE_PREFIX}{i}"), CDN_ERROR);
    }
    // Let the last change be polled and written (a cycle and some).
    let settle = plan
        .change_window
        .saturating_sub(started.elapsed())
        .max(floor.mul_f64(1.2) + Duration::from_secs(2));
    tokio::time::sleep(settle).await;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (polls, throttled, _) = account_calls(sim, accounts);
    let writes = op.status_writes().await? - writes_before;
    let events = event_count(client, ns).await? - events_before;
    let seconds = (now_ms - since_ms) as f64 / 1000.0;
    // Correctness: every changed task shows it.
    let listed = list_tasks(client, ns).await?;
    let shown = listed
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(Phase::CdnError))
        .count();
    report.row(
        "API server",
        format!("{total} tasks, 1 % changing per minute: status writes per poll"),
        format!(
            "{:.5} ({writes} writes for {changes} changes = {:.2} per change; {polls} polls in {seconds:.0} s; {throttled} throttled)",
            writes / polls.max(1) as f64,
            writes / changes as f64
        ),
    );
    report.row(
        "API server",
        format!("{total} tasks, 1 % changing per minute: events per change"),
        format!("{:.2} ({events} events)", events as f64 / changes as f64),
    );
    report.check(
        "API server",
        "changed tasks whose status shows the change at the end",
        format!("{shown} of {changes}"),
        "all",
        shown == changes,
    );
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: peer

struct Peer {
    core: f64,
    tea: f64,
    raw_v1: f64,
    raw_v3: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

#[derive(serde::Deserialize)]
struct PeerOutput {
    cpu_seconds_per_1000: Vec<f64>,
    wall_seconds_per_1000: Vec<f64>,
}

async fn run_json(mut cmd: tokio::process::Command) -> Result<PeerOutput, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{cmd:?} printed no result ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn peer_phase(plan: &Plan, sim: &SimulatorHandle, report: &mut Report) -> Option<Peer> {
    log("peer: official Python SDKs and our client, sequential calls");
    let setup = controlplane::repo_root().join("tests/sdk/setup.sh");
    let python = match tokio::process::Command::new("bash")
        .arg(&setup)
        .stderr(Stdio::inherit())
        .output()
        .await
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            report.error(
                "peer",
                "Python SDK venv",
                format!("setup.sh failed: {}", o.status),
            );
            return None;
        }
        Err(e) => {
            report.error("peer", "Python SDK venv", e);
            return None;
        }
    };
    let script = controlplane::repo_root().join("tests/bench/peer_sdk.py");
    let secret = secret_of(PEER_ACCOUNT);
    let (reps, calls) = (plan.peer_reps.to_string(), plan.peer_calls.to_string());
    let mut results = BTreeMap::new();
    for sdk in ["core", "tea"] {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script).args([
            sdk,
            &sim.host(),
            PEER_ACCOUNT,
            &secret,
            APP,
            PEER_TASK,
            &reps,
            &calls,
        ]);
        match run_json(cmd).await {
            Ok(r) => {
                results.insert(sdk, r);
            }
            Err(e) => {
                report.error("peer", &format!("Python SDK ({sdk})"), e);
                return None;
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            report.error("peer", "our client", e);
            return None;
        }
    };
    for signature in ["v1", "v3"] {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("raw-client").args([
            signature,
            &sim.base_url(),
            PEER_ACCOUNT,
            &secret,
            APP,
            PEER_TASK,
            &reps,
            &calls,
        ]);
        match run_json(cmd).await {
            Ok(r) => {
                results.insert(signature, r);
            }
            Err(e) => {
                report.error("peer", &format!("our client ({signature})"), e);
                return None;
            }
        }
    }
    let cpu = |k: &str| median(results[k].cpu_seconds_per_1000.clone());
    let wall = |k: &str| median(results[k].wall_seconds_per_1000.clone());
    let peer = Peer {
        core: cpu("core"),
        tea: cpu("tea"),
        raw_v1: cpu("v1"),
        raw_v3: cpu("v3"),
    };
    let how = format!(
        "median of {} x {} sequential calls",
        plan.peer_reps, plan.peer_calls
    );
    for (key, name) in [
        (
            "core",
            "Python core SDK (aliyun-python-sdk-core, V1 HMAC-SHA1, GET)",
        ),
        (
            "tea",
            "Python RTC client (alibabacloud_rtc20180111, V3 ACS3-HMAC-SHA256)",
        ),
        ("v1", "our CloudClient, V1 (raw client loop, child process)"),
        ("v3", "our CloudClient, V3 (raw client loop, child process)"),
    ] {
        report.row(
            "peer",
            format!("{name}: CPU s per 1 000 calls ({how})"),
            format!("{:.3} (wall {:.2} s per 1 000)", cpu(key), wall(key)),
        );
    }
    Some(peer)
}

fn peer_ratio_rows(peer: &Peer, operator: f64, report: &mut Report) {
    let v1 = peer.core / peer.raw_v1;
    let v3 = peer.tea / peer.raw_v3;
    report.check(
        "peer",
        "ratio, raw client: core SDK / ours (V1); RTC SDK / ours (V3)",
        format!("{v1:.1}x; {v3:.1}x"),
        ">= 20x",
        v1.min(v3) >= 20.0,
    );
    let best_sdk = peer.core.min(peer.tea);
    let ratio = best_sdk / operator;
    report.check(
        "peer",
        "ratio, whole operator (CPU per poll incl. reconcile, budget, watch and status work; steady window) vs the cheaper SDK's CPU per call",
        format!("{ratio:.1}x ({best_sdk:.3} / {operator:.3})"),
        ">= 20x",
        ratio >= 20.0,
    );
}

// ---------------------------------------------------------------------------------------------
// Child process: our client in a loop

/// `bench raw-client <v1|v3> <endpoint> <ak> <secret> <app> <task> <reps> <calls>`: sequential
/// GetMPUTaskStatus calls on a current-thread runtime; CPU from getrusage(RUSAGE_SELF).
fn raw_client(args: &[String]) -> ExitCode {
    use mpu_relay_operator::api::{CloudApi, SignatureVersion};
    use mpu_relay_operator::cloud::client::{ClientOptions, CloudClient, StatusQuery};
    use mpu_relay_operator::cloud::credentials::Credentials;
    use mpu_relay_operator::cloud::endpoint::Endpoint;

    let [signature, endpoint, ak, secret, app, task, reps, calls] = args else {
        eprintln!(
            "usage: bench raw-client <v1|v3> <endpoint> <ak> <secret> <app> <task> <reps> <calls>"
        );
        return ExitCode::from(2);
    };
    let (reps, calls): (usize, usize) = match (reps.parse(), calls.parse()) {
        (Ok(r), Ok(c)) => (r, c),
        _ => return ExitCode::from(2),
    };
    let (signature, api) = if signature == "v3" {
        (SignatureVersion::V3, CloudApi::Rtc)
    } else {
        (SignatureVersion::V1, CloudApi::Live)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = CloudClient::new(&ClientOptions::default()).expect("client");
    let creds = Credentials::access_key(ak.clone(), secret.as_str(), None);
    let endpoint = Endpoint::parse(endpoint).expect("endpoint");
    let query = StatusQuery {
        endpoint: &endpoint,
        api,
        signature,
        region_id: None,
        app_id: app,
        task_id: task,
    };
    let result = runtime.block_on(async {
        for _ in 0..50 {
            client
                .get_mpu_task_status(&creds, &query)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..reps {
            let (c0, w0) = (rusage_seconds(), Instant::now());
            for _ in 0..calls {
                client
                    .get_mpu_task_status(&creds, &query)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            cpu.push((rusage_seconds() - c0) * 1000.0 / calls as f64);
            wall.push(w0.elapsed().as_secs_f64() * 1000.0 / calls as f64);
        }
        Ok::<_, String>((cpu, wall))
    });
    match result {
        Ok((cpu, wall)) => {
            println!(
                "{}",
                json!({"cpu_seconds_per_1000": cpu, "wall_seconds_per_1000": wall})
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raw client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// User + system CPU of this process, in seconds.
fn rusage_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
