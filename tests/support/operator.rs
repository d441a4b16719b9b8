//! The operator binary, run as its own process against the local control plane, as a user runs
//! it: `mpu-relay-operator run` with a kubeconfig.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::controlplane::ControlPlane;

/// Poll intervals of a second, so that behaviour over many polls takes seconds to test.
/// The ownership key's Secret, in the operator's namespace.
pub const OWNERSHIP_SECRET: &str = "mpu-relay-operator-ownership";

pub const FAST_POLLING: &[&str] = &[
    "--running-interval",
    "1s",
    "--waiting-interval",
    "1s",
    "--stopped-interval",
    "1s",
    "--min-backoff",
    "200ms",
];

/// A running `mpu-relay-operator run`; killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub metrics_addr: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    /// Starts the operator watching `namespace` only (so tests running side by side never see
    /// each other's tasks), with `args` appended and `env` set.
    pub fn start(cp: &ControlPlane, namespace: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let out = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"));
        cmd.arg("run")
            .arg("--namespaces")
            .arg(namespace)
            .arg("--metrics-addr")
            .arg(&metrics_addr)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("RUST_LOG", "info,mpu_relay_operator=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        use std::os::unix::process::CommandExt;
        // SAFETY: only an async-signal-safe prctl between fork and exec. The operator dies with
        // the test thread that started it, even when the test panics.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting the operator binary");
        Operator {
            child,
            log,
            metrics_addr,
            _dir: dir,
        }
    }

    /// Starts the operator against `sim`: loopback endpoints allowed, the simulator's CA
    /// trusted (`--ca-bundle`), namespaced accounts on, STS (GetCallerIdentity, RRSA) at the
    /// simulator.
    pub fn with_simulator(
        cp: &ControlPlane,
        namespace: &str,
        sim: &mpu_cloud_sim::SimulatorHandle,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let ca = super::ca_bundle(sim);
        let mut all_args: Vec<&str> = super::accounts::LOOPBACK.to_vec();
        // As the chart runs it: managed tasks' ownership records signed with a key the
        // operator keeps in a Secret of its namespace.
        all_args.extend(["--ownership-key-secret", OWNERSHIP_SECRET]);
        if let Some(ca) = &ca {
            all_args.extend(["--ca-bundle", ca.as_str()]);
        }
        all_args.extend_from_slice(args);
        let sim_url = sim.base_url();
        let mut all_env = vec![("ALIBABA_CLOUD_STS_ENDPOINT", sim_url.as_str())];
        all_env.extend_from_slice(env);
        Operator::start(cp, namespace, &all_args, &all_env)
    }

    /// The operator's resident set size, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Everything the operator has logged so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's /metrics page.
    /// The `/metrics` exposition, or `None` while the endpoint does not answer 200 (starting,
    /// or dead): for loops that wait for it.
    pub async fn try_metrics(&self) -> Option<String> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let response = reqwest::get(&url).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// The `/metrics` exposition. Panics when the endpoint does not answer: a dead operator
    /// must fail a test about its metrics, never pass it as "no calls".
    pub async fn metrics(&self) -> String {
        match self.try_metrics().await {
            Some(text) => text,
            None => panic!(
                "the operator's /metrics ({}) does not answer; is it alive?\n{}",
                self.metrics_addr,
                self.output()
            ),
        }
    }

    /// The value of a metric line starting with `prefix` (0 when the operator answers but has
    /// no such series; a panic when it does not answer at all).
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; returns the exit status and how long
    /// it took, or None if it did not exit in time. Async, so that an in-process simulator on
    /// the test's runtime keeps answering the calls the operator finishes meanwhile.
    pub async fn terminate(
        &mut self,
        grace: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The exit status, once the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process at once (a crash, a lost node).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
