//! A real, local Kubernetes control plane (etcd + kube-apiserver on loopback), envtest style.
//!
//! The binaries come from `tests/controlplane/build.sh` (built once from the Go module proxy and
//! cached under `~/.cache/mpu-relay-operator/`). Each control plane gets its own data directory,
//! CA, serving certificate, admin token and free ports, so several can run side by side.
//!
//! Two ways to use it:
//! - tests: [`shared`] starts one control plane per test binary and stops it when the binary
//!   exits (and the kernel stops it even if the binary is killed);
//! - `make controlplane-up`/`-down`: [`ControlPlane::start_detached`] leaves the processes running
//!   and [`ControlPlane::stop_detached`] stops them by the pids written in the directory.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long etcd + kube-apiserver may take to answer `/readyz` (a loaded 2-core CI machine
/// can need a while for the first start, which also compiles nothing: the binaries are prebuilt).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The bearer token of the built-in admin user (a member of `system:masters`).
const ADMIN_TOKEN_FILE: &str = "admin.token";
const PIDS_FILE: &str = "pids";

/// Where the repository is; the CRDs and the build script are found relative to it.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cmd` as a user's shell would run it: without what cargo sets for the test or example
/// running it (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...) nor make's `MAKEFLAGS`. Build scripts
/// watch some of those (ring: `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`), so a build run with them
/// is never fresh for the same build run by hand, by `make image` or by another test: each would
/// recompile ring and everything above it (3 min for the image's binary, 1.5 for a release one).
/// What a user may set (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_BUILD_*`, ...) is kept.
pub fn as_a_user(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if set_by_cargo || name.starts_with("MAKE") {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// A running etcd + kube-apiserver pair.
pub struct ControlPlane {
    /// Directory holding data, certificates, logs and the kubeconfig.
    pub dir: PathBuf,
    /// Kubeconfig for the admin user.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// Where kube-apiserver, kubectl, etcd and helm live.
    pub bin_dir: PathBuf,
    /// etcd first, then kube-apiserver.
    children: Mutex<Vec<Child>>,
    api_args: Vec<String>,
    lifetime: Lifetime,
}

/// Errors while starting a control plane; they name the step and where its log is.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn err(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> StartError {
    move |e| StartError(format!("{context}: {e}"))
}

/// Builds (first time only) and returns the directory of the control-plane binaries.
/// `MPU_RELAY_CONTROLPLANE_BIN` points at prebuilt binaries instead.
pub fn binaries() -> Result<PathBuf, StartError> {
    if let Ok(dir) = std::env::var("MPU_RELAY_CONTROLPLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("tests/controlplane/build.sh");
    // stderr is inherited so the build's progress lines reach the terminal even under `cargo test`.
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(err(format!("running {}", script.display())))?;
    if !out.status.success() {
        return Err(StartError(format!(
            "{} failed ({}); see the lines above",
            script.display(),
            out.status
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir))
}

fn free_port() -> Result<u16, StartError> {
    // The port is released before the server binds it; a collision is possible but rare, and
    // shows up as a clear "address in use" in the server's log.
    let listener = TcpListener::bind("127.0.0.1:0").map_err(err("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(err("finding a free port"))?
        .port())
}

/// Certificates and keys for one control plane, written into `dir`.
struct Pki {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_pub: PathBuf,
}

fn write_pki(dir: &Path) -> Result<Pki, Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mpu-relay-operator test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let serving_cert = serving.signed_by(&serving_key, &ca)?;

    let service_account_key = KeyPair::generate()?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_pub: dir.join("service-account.pub"),
    };
    fs::write(&pki.ca_cert, ca.pem())?;
    fs::write(&pki.serving_cert, serving_cert.pem())?;
    fs::write(&pki.serving_key, serving_key.serialize_pem())?;
    fs::write(
        &pki.service_account_key,
        service_account_key.serialize_pem(),
    )?;
    // The verifying side wants a public key; it does not read one out of a PKCS#8 private key.
    fs::write(
        &pki.service_account_pub,
        service_account_key.public_key_pem(),
    )?;
    Ok(pki)
}

fn random_token() -> String {
    // Good enough for a loopback test server: unique per start, never reused.
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..4 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// How the started processes relate to the starting process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Killed by the kernel when the thread that started them ends (tests).
    TiedToParent,
    /// Left running in their own session until `stop_detached` (make controlplane-up).
    Detached,
}

fn spawn(bin: &Path, args: &[String], log: &Path, lifetime: Lifetime) -> Result<Child, StartError> {
    let log_file = fs::File::create(log).map_err(err(format!("creating {}", log.display())))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(err("log file"))?)
        .stderr(log_file);
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            match lifetime {
                Lifetime::TiedToParent => {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Lifetime::Detached => {
                    if libc::setsid() < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(err(format!("starting {}", bin.display())))
}

impl ControlPlane {
    /// Starts a control plane in `dir`, tied to the calling thread's lifetime: when that thread
    /// (or the whole process) ends, the kernel kills etcd and kube-apiserver.
    pub fn start(dir: &Path) -> Result<Self, StartError> {
        Self::start_with(dir, Lifetime::TiedToParent)
    }

    /// Starts a control plane in `dir` that outlives this process (for `make controlplane-up`).
    pub fn start_detached(dir: &Path) -> Result<Self, StartError> {
        Self::start_with(dir, Lifetime::Detached)
    }

    fn start_with(dir: &Path, lifetime: Lifetime) -> Result<Self, StartError> {
        let started = Instant::now();
        let bin_dir = binaries()?;
        fs::create_dir_all(dir).map_err(err(format!("creating {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(err(format!("resolving {}", dir.display())))?;
        let pki = write_pki(&dir).map_err(|e| StartError(format!("writing certificates: {e}")))?;
        let token = random_token();
        fs::write(dir.join(ADMIN_TOKEN_FILE), &token).map_err(err("writing the token"))?;
        let token_csv = dir.join("tokens.csv");
        fs::write(
            &token_csv,
            format!("{token},admin,admin-uid,\"system:masters\"\n"),
        )
        .map_err(err("writing the token file"))?;

        let (etcd_client, etcd_peer, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd_args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            // Test data is thrown away; skipping fsync makes every write much faster.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        let mut children = Vec::new();
        children.push(spawn(
            &bin_dir.join("etcd"),
            &etcd_args,
            &dir.join("etcd.log"),
            lifetime,
        )?);

        let server = format!("https://127.0.0.1:{api_port}");
        let api_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--token-auth-file={}", token_csv.display()),
            // RBAC as in a real cluster, so that least-privilege tests mean something.
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
        ];
        children.push(spawn(
            &bin_dir.join("kube-apiserver"),
            &api_args,
            &dir.join("kube-apiserver.log"),
            lifetime,
        )?);
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        fs::write(dir.join(PIDS_FILE), pids.join("\n") + "\n").map_err(err("writing pids"))?;

        let kubeconfig = dir.join("kubeconfig");
        fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\n    namespace: default\ncurrent-context: local\n",
                ca = pki.ca_cert.display()
            ),
        )
        .map_err(err("writing the kubeconfig"))?;

        let cp = ControlPlane {
            dir: dir.clone(),
            kubeconfig,
            server,
            bin_dir,
            children: Mutex::new(children),
            api_args,
            lifetime,
        };
        if let Err(e) = cp.wait_ready().and_then(|()| cp.install_crds()) {
            cp.stop();
            return Err(e);
        }
        eprintln!(
            "[controlplane] ready at {} in {:.1}s (logs in {})",
            cp.server,
            started.elapsed().as_secs_f64(),
            cp.dir.display()
        );
        Ok(cp)
    }

    /// A `kubectl` command pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl with `args`; returns stdout, or an error with its stderr.
    pub fn kubectl_run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .kubectl()
            .args(args)
            .output()
            .map_err(|e| format!("running kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn wait_ready(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.kubectl_run(&["get", "--raw", "/readyz"]).is_ok() {
                return Ok(());
            }
            let exited = self
                .children
                .lock()
                .unwrap()
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(StartError(format!(
                    "the control plane did not become ready ({}).\n--- etcd.log ---\n{}\n--- kube-apiserver.log ---\n{}",
                    if exited {
                        "a process exited"
                    } else {
                        "timed out"
                    },
                    self.log_tail("etcd.log"),
                    self.log_tail("kube-apiserver.log"),
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Applies every CRD under `crds/` and waits until the API server serves them.
    pub fn install_crds(&self) -> Result<(), StartError> {
        let crds = repo_root().join("crds");
        let crds = crds.to_string_lossy();
        self.kubectl_run(&["apply", "--server-side", "-f", &crds])
            .map_err(|e| StartError(format!("applying crds/: {e}")))?;
        self.kubectl_run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &crds,
        ])
        .map_err(|e| StartError(format!("waiting for crds/ to be Established: {e}")))?;
        // The OpenAPI schema (what `kubectl explain` and client-side validation read) is
        // published a moment after Established; kubectl finds it through the /openapi/v3 index.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let index = self.kubectl_run(&["get", "--raw", "/openapi/v3"]);
            if matches!(&index, Ok(text) if text.contains("apis/mpurelay.io/v1alpha1")) {
                break;
            }
            if Instant::now() > deadline {
                return Err(StartError(format!(
                    "the CRD's OpenAPI schema was not published within 60s: {index:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// A kube client for the admin user.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .expect("the kubeconfig this control plane wrote is readable");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("the kubeconfig this control plane wrote is valid");
        kube::Client::try_from(config).expect("a client can be built from a valid config")
    }

    /// Stops etcd and kube-apiserver (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&self) {
        let mut children = self.children.lock().unwrap();
        // The API server first, so it does not log a storm of etcd connection errors.
        for child in children.iter_mut().rev() {
            terminate(child.id() as i32);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
        let _ = fs::remove_file(self.dir.join(PIDS_FILE));
    }

    /// Stops kube-apiserver only (etcd keeps the data), as an outage would.
    pub fn stop_apiserver(&self) {
        let mut children = self.children.lock().unwrap();
        if let Some(api) = children.get_mut(1) {
            let _ = api.kill();
            let _ = api.wait();
        }
    }

    /// Starts kube-apiserver again on the same port after [`stop_apiserver`](Self::stop_apiserver),
    /// and waits until it is ready.
    pub fn restart_apiserver(&self) -> Result<(), StartError> {
        let api = spawn(
            &self.bin_dir.join("kube-apiserver"),
            &self.api_args,
            &self.dir.join("kube-apiserver.log"),
            self.lifetime,
        )?;
        {
            let mut children = self.children.lock().unwrap();
            children.truncate(1);
            children.push(api);
        }
        self.wait_ready()
    }

    /// Stops a control plane that `start_detached` left running in `dir`.
    pub fn stop_detached(dir: &Path) -> io::Result<()> {
        let pids = fs::read_to_string(dir.join(PIDS_FILE))?;
        for pid in pids
            .lines()
            .rev()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            terminate(pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                // SAFETY: plain kill(2) on a pid we started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        fs::remove_file(dir.join(PIDS_FILE))
    }
}

fn terminate(pid: i32) {
    // SAFETY: plain kill(2) on a pid we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists. A detached server is not our child,
    // so it never lingers as a zombie of ours.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Result<&'static ControlPlane, String>> = OnceLock::new();

/// The control plane shared by every test in this test binary, started on first use.
///
/// Panics (failing the test, never skipping it) when the control plane cannot be started.
pub fn shared() -> &'static ControlPlane {
    let started = SHARED.get_or_init(|| {
        // PR_SET_PDEATHSIG fires when the *thread* that spawned a child ends, and test threads
        // end after each test; so the processes are started from a thread that lives as long as
        // the test binary does.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("controlplane".into())
            .spawn(move || {
                let dir = std::env::temp_dir()
                    .join(format!("mpu-relay-controlplane-{}", std::process::id()));
                let _ = fs::remove_dir_all(&dir);
                let result = ControlPlane::start(&dir)
                    .map(|cp| &*Box::leak(Box::new(cp)))
                    .map_err(|e| e.to_string());
                if let Ok(cp) = &result {
                    register_exit_cleanup(cp);
                }
                let _ = tx.send(result);
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the control-plane thread");
        rx.recv()
            .unwrap_or_else(|_| Err("the control-plane thread died".into()))
    });
    match started {
        Ok(cp) => cp,
        Err(e) => panic!("cannot start the local control plane: {e}"),
    }
}

static EXIT_CLEANUP: OnceLock<&'static ControlPlane> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    if let Some(cp) = EXIT_CLEANUP.get() {
        cp.stop();
        let _ = fs::remove_dir_all(&cp.dir);
    }
}

/// Stops the shared control plane gracefully and removes its directory when the test binary
/// exits normally (statics are never dropped, so Drop alone would not run).
fn register_exit_cleanup(cp: &'static ControlPlane) {
    if EXIT_CLEANUP.set(cp).is_ok() {
        // SAFETY: registering a plain extern "C" fn with no arguments.
        unsafe { libc::atexit(stop_shared_at_exit) };
    }
}
