//! `make demo`: the operator's main job on the embedded default. It starts a local control plane
//! (kube-apiserver + etcd), the cloud simulator and the operator, creates sample relay tasks
//! (three observed, one managed: the operator starts it), and then plays a script of cloud-side
//! changes while printing `kubectl get mpurelaytasks`: the managed relay, stopped by a CDN
//! problem, is restarted by the operator after its backoff.
//!
//! Stops cleanly on Ctrl-C, or after `DEMO_SECONDS` seconds when that is set (for scripts).

#[path = "../tests/support/controlplane.rs"]
mod controlplane;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpu_cloud_sim::{Simulator, SimulatorConfig};

const APP: &str = "demo-app";
/// (object name, task id, the cloud's status at the start)
const TASKS: &[(&str, &str, i64)] = &[
    ("lobby-relay", "relay-1", 1),
    ("stage-relay", "relay-2", 1),
    ("backstage-relay", "relay-3", 0),
];
/// The managed relay: (object name, task id, its channel).
const MANAGED: (&str, &str, &str) = ("main-stage", "main-1", "main");
/// What happens in the cloud, one step every few seconds: (task id, new status, what it means).
const SCRIPT: &[(&str, i64, &str)] = &[
    (
        "main-1",
        5,
        "main-stage (managed) hits a CDN problem: the operator restarts it after a 10 s backoff",
    ),
    ("relay-2", 5, "stage-relay hits a CDN problem"),
    ("relay-3", 1, "backstage-relay's channel starts"),
    ("relay-2", 1, "stage-relay recovers"),
    ("relay-1", 3, "lobby-relay is stopped by its user"),
    ("relay-1", 1, "lobby-relay is started again"),
];

fn kubectl(cp: &controlplane::ControlPlane, args: &[&str]) -> String {
    cp.kubectl_run(args).unwrap_or_else(|e| e)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let limit = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let root = controlplane::repo_root();
    let operator_bin = root.join("target/debug/mpu-relay-operator");
    if !operator_bin.exists() {
        return Err("build the operator first: cargo build (make demo does)".into());
    }

    let dir = root.join(".controlplane/demo");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("[demo] starting the local control plane (the first run builds it: several minutes)");
    let cp = controlplane::ControlPlane::start(&dir)?;

    let config = SimulatorConfig::from_file(&root.join("examples/simulator.yaml"))?;
    // HTTPS, as the cloud: the operator trusts the simulator's CA through --ca-bundle, as it
    // would a private endpoint's.
    let sim = Simulator::start(config).await?;
    for (_, task, status) in TASKS {
        sim.set_task_status(APP, task, *status);
    }
    // Someone streams in the managed relay's channel: the cloud starts relays only there.
    sim.set_channel_users(APP, MANAGED.2, 2);
    let ca_path = dir.join("simulator-ca.crt");
    std::fs::write(&ca_path, sim.ca_pem().unwrap_or_default())?;
    eprintln!(
        "[demo] cloud simulator at {} (its CA: {})",
        sim.base_url(),
        ca_path.display()
    );

    // The AccessKey is one of examples/simulator.yaml's accounts; in a real cluster it is yours.
    // The account holds it with the endpoint (here the simulator) and the shared budget; the
    // tasks only name the account.
    let mut manifests = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: alibaba-cloud-credentials\nstringData:\n  accessKeyId: LTAI5tSimulatorDemo1\n  accessKeySecret: demo-secret-1\n---\napiVersion: mpurelay.io/v1alpha1\nkind: MpuRelayAccount\nmetadata:\n  name: live-demo\nspec:\n  endpoint: {}\n  credentials:\n    secretRef:\n      name: alibaba-cloud-credentials\n",
        sim.base_url()
    );
    for (name, task, _) in TASKS {
        manifests.push_str(&format!(
            "---\napiVersion: mpurelay.io/v1alpha1\nkind: MpuRelayTask\nmetadata:\n  name: {name}\nspec:\n  appId: {APP}\n  taskId: {task}\n  accountRef:\n    name: live-demo\n"
        ));
    }
    let (name, task, channel) = MANAGED;
    manifests.push_str(&format!(
        "---\napiVersion: mpurelay.io/v1alpha1\nkind: MpuRelayTask\nmetadata:\n  name: {name}\nspec:\n  appId: {APP}\n  taskId: {task}\n  accountRef:\n    name: live-demo\n  managementPolicy: Manage\n  restartPolicy: OnFailure\n  relay:\n    channelId: {channel}\n    mixMode: Single\n    streamURL: rtmp://push.example.com/live/{channel}\n    singleSubParams: {{userId: host-1}}\n"
    ));
    let manifest_path = dir.join("demo-tasks.yaml");
    std::fs::write(&manifest_path, manifests)?;
    print!(
        "{}",
        kubectl(
            &cp,
            &["apply", "-f", manifest_path.to_str().unwrap_or_default()]
        )
    );

    let log_path: PathBuf = dir.join("operator.log");
    let mut operator = Command::new(&operator_bin)
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--running-interval",
            "2s",
            "--waiting-interval",
            "2s",
            "--stopped-interval",
            "2s",
            // The simulator listens on loopback; production allows only https://*.aliyuncs.com.
            "--allowed-endpoints",
            "https://*.aliyuncs.com,https://127.0.0.1:*",
            "--namespaced-accounts",
            // The key that signs managed tasks' ownership records, kept in this Secret.
            "--ownership-key-secret",
            "mpu-relay-operator-ownership",
        ])
        .arg("--ca-bundle")
        .arg(&ca_path)
        .env("KUBECONFIG", &cp.kubeconfig)
        // STS (GetCallerIdentity: which cloud account the key belongs to) is the simulator too.
        .env("ALIBABA_CLOUD_STS_ENDPOINT", sim.base_url())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    eprintln!(
        "[demo] operator running (log: {}). In another terminal:\n  export KUBECONFIG={}\n  {}/kubectl get mpurelaytasks -w\n  curl --cacert {} -X PUT {}/admin/tasks/{APP}/relay-1 -d '{{\"status\": 6}}'\n[demo] Ctrl-C stops everything{}",
        log_path.display(),
        cp.kubeconfig.display(),
        cp.bin_dir.display(),
        ca_path.display(),
        sim.base_url(),
        limit.map_or(String::new(), |l| format!(
            " (or it stops by itself after {}s)",
            l.as_secs()
        )),
    );

    let started = Instant::now();
    let mut step = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(4));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {}
        }
        println!(
            "\n--- after {:>3}s ---\n{}\n{}",
            started.elapsed().as_secs(),
            kubectl(&cp, &["get", "mpurelaytasks"]),
            kubectl(&cp, &["get", "mpurelayaccounts"])
        );
        if limit.is_some_and(|l| started.elapsed() >= l) {
            break;
        }
        if started.elapsed() >= Duration::from_secs(6) {
            let (task, status, what) = SCRIPT[step % SCRIPT.len()];
            println!("[cloud] {what} (GetMPUTaskStatus now answers {status} for {task})");
            sim.set_task_status(APP, task, status);
            step += 1;
        }
    }

    println!(
        "\n--- events ---\n{}",
        kubectl(&cp, &["get", "events", "--sort-by=.lastTimestamp"])
    );
    eprintln!("[demo] stopping the operator, the simulator and the control plane");
    // SAFETY: plain kill(2) on our child; SIGTERM is the operator's graceful shutdown.
    unsafe { libc::kill(operator.id() as i32, libc::SIGTERM) };
    let _ = operator.wait();
    sim.shutdown().await;
    cp.stop();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("[demo] done");
    Ok(())
}
