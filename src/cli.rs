//! The command line: one subcommand per job the binary does. Every `run` flag can also be set
//! through an `MPU_RELAY_*` environment variable (the Helm chart sets those).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{error, info};

use crate::api::{CloudApi, Phase, SignatureVersion};
use crate::cloud::client::{CaBundle, ClientOptions, CloudClient, StatusQuery};
use crate::cloud::credentials::{self, OperatorCredentials, RrsaSettings};
use crate::cloud::endpoint::{AllowedEndpoints, DEFAULT_ALLOWED_ENDPOINTS, Endpoint};
use crate::cloud::{CloudError, ErrorClass};
use crate::controller::account::ResolverSettings;
use crate::controller::account::events::receiver::{self, ReceiverSettings};
use crate::controller::decide::PollConfig;
use crate::controller::ownership::{self, Ownership, OwnershipKey};
use crate::controller::{self, ControllerSettings};
use crate::leader::{Fence, LeaseError, LeaseSettings, LeaseTiming, run_as_leader};
use crate::telemetry::{self, Health, LogFormat, Metrics};

/// Kubernetes operator that keeps MpuRelayTask objects in step with Alibaba Cloud
/// ApsaraVideo Live stream relay (MPU) tasks.
#[derive(Parser, Debug)]
#[command(name = "mpu-relay-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: watch MpuRelayTasks, keep their status current, and manage the relays
    /// of those that ask for it.
    // Boxed: its flags outweigh the other commands' many times over.
    Run(Box<RunArgs>),
    /// Ask GetMPUTaskStatus once, with credentials from the environment.
    Status(StatusArgs),
    /// Print the CustomResourceDefinitions (MpuRelayTask, MpuRelayAccount,
    /// ClusterMpuRelayAccount) as one YAML stream (what `crds/` holds, one file each).
    Crd(CrdArgs),
}

/// A duration in Go syntax (`30s`, `5m`, `1h30m`), the same as `spec.pollInterval`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s.parse().map_err(|e| format!("{e}"))?;
    if d.is_negative() {
        return Err("must not be negative".to_string());
    }
    Ok(d.into())
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, env = "MPU_RELAY_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Endpoints accounts may name, comma-separated URL patterns: `https://*.aliyuncs.com`
    /// (any subdomain), `https://live.aliyuncs.com:8443`, `http://127.0.0.1:*` (any port).
    /// An account whose endpoint matches none is not Ready and nothing is sent to it.
    #[arg(
        long,
        env = "MPU_RELAY_ALLOWED_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ALLOWED_ENDPOINTS
    )]
    pub allowed_endpoints: Vec<String>,
    /// Let tasks use MpuRelayAccounts of their own namespace (credentials from a Secret there).
    /// Off: only ClusterMpuRelayAccounts, which the cluster admin creates.
    #[arg(long, env = "MPU_RELAY_NAMESPACED_ACCOUNTS", default_value_t = false)]
    pub namespaced_accounts: bool,
    /// The operator's own namespace: where a ClusterMpuRelayAccount's Secret is when it names
    /// no namespace (the chart sets it to the release namespace).
    #[arg(long, env = "MPU_RELAY_OPERATOR_NAMESPACE", default_value = "default")]
    pub operator_namespace: String,
    /// Poll interval of running tasks.
    #[arg(long, env = "MPU_RELAY_RUNNING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub running_interval: Duration,
    /// Poll interval of tasks waiting for their channel.
    #[arg(long, env = "MPU_RELAY_WAITING_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub waiting_interval: Duration,
    /// Poll interval of stopped tasks (0 stops polling them).
    #[arg(long, env = "MPU_RELAY_STOPPED_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub stopped_interval: Duration,
    /// Shortest retry after a transient error (doubles up to --max-backoff).
    #[arg(long, env = "MPU_RELAY_MIN_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub min_backoff: Duration,
    /// Longest retry after transient errors.
    #[arg(long, env = "MPU_RELAY_MAX_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Retry of terminal errors (bad credentials, unknown task); a change retries at once.
    #[arg(long, env = "MPU_RELAY_STALLED_RETRY", default_value = "5m", value_parser = parse_duration)]
    pub stalled_retry: Duration,
    /// Rewrite lastSyncTime at least this often even when nothing changed (each is a status write
    /// per task: at 10 000 tasks, 1h is 3 writes/s).
    #[arg(long, env = "MPU_RELAY_STATUS_HEARTBEAT", default_value = "1h", value_parser = parse_duration)]
    pub status_heartbeat: Duration,
    /// Reconciles running at once.
    #[arg(long, env = "MPU_RELAY_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Longest a cloud call may take, from sending to the last byte of the answer.
    #[arg(long, env = "MPU_RELAY_CLOUD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub cloud_timeout: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "MPU_RELAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease, so that only one replica calls the cloud.
    #[arg(long, env = "MPU_RELAY_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Namespace of the Lease (the pod's namespace in a cluster).
    #[arg(long, env = "MPU_RELAY_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(
        long,
        env = "MPU_RELAY_LEASE_NAME",
        default_value = "mpu-relay-operator"
    )]
    pub lease_name: String,
    /// Seconds a leader's Lease stays valid without renewal (how fast a standby takes over).
    #[arg(long, env = "MPU_RELAY_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Log format.
    #[arg(long, env = "MPU_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// PEM file of CA certificates to trust for cloud endpoints in addition to the system's
    /// roots (a private endpoint, a TLS-inspecting proxy); read once at start.
    #[arg(long, env = "MPU_RELAY_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Secret in `--operator-namespace` holding the key (`key`, at least 32 bytes) that signs
    /// each managed task's `status.management`, so that a record someone else wrote makes no
    /// object a relay's owner. Created with a random key when absent, then kept: every replica
    /// and restart uses the same. Unset: the records are trusted as written.
    #[arg(long, env = "MPU_RELAY_OWNERSHIP_KEY_SECRET")]
    pub ownership_key_secret: Option<String>,
    /// Address of the events endpoint, where the cloud POSTs MPU event callbacks for accounts
    /// with `spec.events` (e.g. `0.0.0.0:9443`): a port of its own, exposed on its own Service.
    /// Unset: no endpoint, and such accounts say `EventsReady: False` (tasks are polled as
    /// usual). The callback tokens are made with the `--ownership-key-secret` key.
    #[arg(long, env = "MPU_RELAY_EVENTS_BIND_ADDRESS")]
    pub events_bind_address: Option<SocketAddr>,
    /// PEM certificate chain of the events endpoint (with `--events-tls-key`; e.g. a
    /// cert-manager Secret's `tls.crt`, read again every 5 minutes). Without both: plain HTTP,
    /// for an Ingress that terminates TLS.
    #[arg(long, env = "MPU_RELAY_EVENTS_TLS_CERT", requires = "events_tls_key")]
    pub events_tls_cert: Option<PathBuf>,
    /// PEM private key of the events endpoint (with `--events-tls-cert`).
    #[arg(long, env = "MPU_RELAY_EVENTS_TLS_KEY", requires = "events_tls_cert")]
    pub events_tls_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub app_id: String,
    #[arg(long)]
    pub task_id: String,
    /// API host or URL (`http://127.0.0.1:8080`); defaults to the API's public host.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region_id: Option<String>,
    #[arg(long, value_enum, default_value_t = ApiArg::Live)]
    pub api: ApiArg,
    #[arg(long, value_enum, default_value_t = SignatureVersion::V1)]
    pub signature: SignatureVersion,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// PEM file of CA certificates to trust in addition to the system's roots.
    #[arg(long, env = "MPU_RELAY_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

/// The extra CAs of `--ca-bundle` (none when not given); the error names the file.
/// The ownership key from Secret `name` in `namespace`, created with a random key when absent
/// (two replicas starting together: the one whose create loses reads the winner's).
async fn ownership_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<OwnershipKey, String> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let read = |secret: Secret| {
        let bytes = secret
            .data
            .and_then(|mut d| d.remove(ownership::SECRET_KEY))
            .map(|b| b.0)
            .unwrap_or_default();
        OwnershipKey::new(&bytes)
            .map_err(|e| format!("--ownership-key-secret {namespace}/{name}: {e}"))
    };
    let failed = |e: kube::Error| format!("--ownership-key-secret {namespace}/{name}: {e}");
    if let Some(secret) = secrets.get_opt(name).await.map_err(failed)? {
        return read(secret);
    }
    let created = secrets
        .create(&Default::default(), &ownership::new_secret(name))
        .await;
    match created {
        Ok(secret) => {
            info!(secret = %format!("{namespace}/{name}"), "created the ownership key");
            read(secret)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            read(secrets.get(name).await.map_err(failed)?)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Reads (or creates) the ownership key until it succeeds, 1 s doubling to 30 s between tries.
async fn read_ownership_key(
    client: kube::Client,
    namespace: String,
    name: String,
    into: Arc<Ownership>,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        match ownership_key(&client, &namespace, &name).await {
            Ok(key) => {
                into.set(key);
                info!("the ownership key is read: managed tasks proceed");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "cannot read the ownership key yet; managed tasks wait for it");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn load_ca_bundle(path: Option<&std::path::Path>) -> Result<CaBundle, String> {
    let Some(path) = path else {
        return Ok(CaBundle::default());
    };
    let pem = std::fs::read(path)
        .map_err(|e| format!("--ca-bundle: cannot read {}: {e}", path.display()))?;
    CaBundle::from_pem(&pem).map_err(|e| format!("--ca-bundle {}: {e}", path.display()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    Live,
    Rtc,
}

impl From<ApiArg> for CloudApi {
    fn from(a: ApiArg) -> Self {
        match a {
            ApiArg::Live => CloudApi::Live,
            ApiArg::Rtc => CloudApi::Rtc,
        }
    }
}

/// Exit codes of `status`, so scripts can tell failures apart.
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 2;
    pub const THROTTLED: u8 = 3;
    pub const TRANSIENT: u8 = 4;
    pub const TERMINAL: u8 = 5;
}

/// Parses the command line and runs the chosen subcommand; returns the process exit code.
pub async fn parse_and_run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd(CrdArgs { dir: None }) => {
            print!("{}", crate::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd(CrdArgs { dir: Some(dir) }) => {
            for file in crate::api::crd_files() {
                let path = dir.join(&file.file_name);
                if let Err(e) = std::fs::write(&path, file.yaml) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Status(args) => status(args).await,
        Command::Run(args) => {
            telemetry::init_logging(args.log_format);
            match run(*args, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "the operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Why `run` could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Kubeconfig(#[source] kube::Error),
    #[error("operator credentials: {0}")]
    Credentials(#[source] crate::cloud::credentials::CredentialsError),
    #[error("HTTP client: {0}")]
    Http(#[source] CloudError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(#[from] LeaseError),
    #[error("invalid settings: {0}")]
    Settings(String),
}

/// The operator's main loop: runs until `shutdown` resolves.
pub async fn run(
    args: RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let RunArgs {
        namespaces,
        allowed_endpoints,
        namespaced_accounts,
        operator_namespace,
        running_interval,
        waiting_interval,
        stopped_interval,
        min_backoff,
        max_backoff,
        stalled_retry,
        status_heartbeat,
        concurrency,
        cloud_timeout,
        metrics_addr,
        leader_election,
        lease_namespace,
        lease_name,
        lease_duration,
        log_format: _,
        ca_bundle,
        ownership_key_secret,
        events_bind_address,
        events_tls_cert,
        events_tls_key,
    } = args;
    let extra_roots = load_ca_bundle(ca_bundle.as_deref()).map_err(RunError::Settings)?;
    let extra_roots_count = extra_roots.len();
    let positive = [
        ("--running-interval", running_interval),
        ("--waiting-interval", waiting_interval),
        ("--min-backoff", min_backoff),
        ("--max-backoff", max_backoff),
        ("--stalled-retry", stalled_retry),
        ("--status-heartbeat", status_heartbeat),
        ("--cloud-timeout", cloud_timeout),
    ];
    for (flag, value) in positive {
        // Zero would requeue at once, forever (a hot loop); over a day is not a poll.
        if value.is_zero() || value > Duration::from_secs(24 * 3600) {
            return Err(RunError::Settings(format!(
                "{flag} must be between 1ms and 24h (got {value:?})"
            )));
        }
    }
    if stopped_interval > Duration::from_secs(24 * 3600) {
        return Err(RunError::Settings(
            "--stopped-interval must be at most 24h (0 stops polling stopped tasks)".into(),
        ));
    }
    let lease_timing = if leader_election {
        Some(LeaseTiming::from_seconds(lease_duration).map_err(RunError::Settings)?)
    } else {
        None
    };
    if min_backoff > max_backoff {
        return Err(RunError::Settings(
            "--min-backoff must not exceed --max-backoff".into(),
        ));
    }
    let allowed = AllowedEndpoints::parse(&allowed_endpoints)
        .map_err(|e| RunError::Settings(format!("--allowed-endpoints: {e}")))?;
    let env = |k: &str| std::env::var(k).ok();
    let sts = allowed
        .check(&credentials::sts_endpoint_from_env(env))
        .map_err(|e| RunError::Settings(format!("STS endpoint: {e}")))?;
    let settings = ControllerSettings {
        ownership: Arc::new(match &ownership_key_secret {
            Some(_) => Ownership::awaiting(),
            None => Ownership::trusting(),
        }),
        namespaces: namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
        poll: PollConfig {
            running: running_interval,
            waiting: waiting_interval,
            stopped: stopped_interval,
            min_backoff,
            max_backoff,
            stalled_retry,
            heartbeat: status_heartbeat,
            ..PollConfig::default()
        },
        concurrency: concurrency.max(1),
        namespaced_accounts,
    };
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("pid-{}", std::process::id()));

    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Kubeconfig)?;
    match &ownership_key_secret {
        // Read in the background: an API server that is not reachable yet must not stop the
        // operator (it is alive, not ready), and observed tasks need no key.
        Some(name) => {
            tokio::spawn(read_ownership_key(
                client.clone(),
                operator_namespace.clone(),
                name.clone(),
                settings.ownership.clone(),
            ));
        }
        None => {
            tracing::warn!(
                "no --ownership-key-secret: status.management is trusted as written, so anyone who may write a managed task's status can make it own a relay (the Helm chart sets one)"
            );
        }
    }
    let cloud = CloudClient::new(&ClientOptions {
        timeout: cloud_timeout,
        connect_timeout: cloud_timeout.min(ClientOptions::default().connect_timeout),
        instance: Some(instance.clone()),
        extra_roots,
    })
    .map_err(RunError::Http)?;
    let rrsa = RrsaSettings::from_env(env, sts.clone(), cloud.clone());
    let operator_credentials =
        OperatorCredentials::from_env(env, &rrsa).map_err(RunError::Credentials)?;
    info!(
        credentials = ?operator_credentials,
        namespaces = ?settings.namespaces,
        allowed_endpoints = ?allowed_endpoints,
        namespaced_accounts,
        extra_cas = extra_roots_count,
        "starting"
    );
    let resolver = ResolverSettings {
        allowed,
        sts,
        operator_namespace,
        operator_credentials,
        rrsa,
    };
    let metrics = Arc::new(Metrics::default());
    // With leader election, cloud calls go through only while the Lease is provably ours.
    let fence = lease_timing.map(|timing| Arc::new(Fence::new(timing)));
    let gate = fence.clone().map(|fence| {
        Arc::new(move || fence.may_call(std::time::Instant::now()))
            as Arc<dyn Fn() -> bool + Send + Sync>
    });
    let prepared = controller::prepare(
        client.clone(),
        cloud,
        resolver,
        &settings,
        metrics.clone(),
        instance.clone(),
        gate,
    );
    let ctx = prepared.context.clone();
    let events = events_bind_address.map(|bind| ReceiverSettings {
        bind,
        tls: events_tls_cert.zip(events_tls_key),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| RunError::Metrics {
            addr: metrics_addr,
            source,
        })?;
    info!(addr = %listener.local_addr().unwrap_or(metrics_addr), "serving /metrics, /healthz, /readyz");
    let health = Health::default();
    let refresh: Arc<dyn Fn() + Send + Sync> = Arc::new(move || ctx.refresh_gauges());
    let server = tokio::spawn(telemetry::serve(
        listener,
        metrics,
        health.clone(),
        refresh,
        stopped(),
    ));
    tokio::spawn(health.clone().tick());
    if let Some(events) = &events {
        let serving = receiver::bind(events, prepared.context.clone(), stopped())
            .await
            .map_err(|e| RunError::Settings(e.to_string()))?;
        tokio::spawn(serving);
    }
    // A standby is ready (it serves metrics and waits for the Lease); a leader, and a single
    // operator, only once its caches have synced.
    health.set_ready(leader_election);
    let prepared = prepared.with_health(health.clone());

    if let Some(fence) = fence {
        let lease = LeaseSettings {
            namespace: &lease_namespace,
            name: &lease_name,
            identity: &instance,
        };
        run_as_leader(client, prepared, fence, lease, stop_rx).await?;
    } else {
        prepared.run(stopped()).await;
    }
    let _ = server.await;
    info!("stopped");
    Ok(())
}

async fn status(args: StatusArgs) -> ExitCode {
    let extra_roots = match load_ca_bundle(args.ca_bundle.as_deref()) {
        Ok(roots) => roots,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let client = match CloudClient::new(&ClientOptions {
        extra_roots,
        ..ClientOptions::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    let sts = match Endpoint::parse(&credentials::sts_endpoint_from_env(env)) {
        Ok(sts) => sts,
        Err(e) => {
            eprintln!("error: STS endpoint: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rrsa = RrsaSettings::from_env(env, sts, client.clone());
    let creds = match OperatorCredentials::from_env(env, &rrsa) {
        Ok(OperatorCredentials::None) => {
            eprintln!(
                "error: no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (or RRSA)"
            );
            return ExitCode::from(exit::USAGE);
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let creds = match creds.get().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::TERMINAL);
        }
    };
    let api: CloudApi = args.api.into();
    // The user's own command with the user's own credentials: any endpoint they name.
    let endpoint = match Endpoint::parse(args.endpoint.as_deref().unwrap_or(api.default_endpoint()))
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let query = StatusQuery {
        endpoint: &endpoint,
        api,
        signature: args.signature,
        region_id: args.region_id.as_deref(),
        app_id: &args.app_id,
        task_id: &args.task_id,
    };
    match client.get_mpu_task_status(&creds, &query).await {
        Ok(answer) => {
            let phase = Phase::from_code(answer.status);
            match args.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "requestId": answer.request_id,
                        "statusCode": answer.status,
                        "phase": phase.as_str(),
                    })
                ),
                OutputFormat::Table => {
                    println!(
                        "{:<20} {:<12} {:<18} REQUEST ID",
                        "TASK", "STATUS CODE", "PHASE"
                    );
                    println!(
                        "{:<20} {:<12} {:<18} {}",
                        args.task_id,
                        answer.status,
                        phase.as_str(),
                        answer.request_id
                    );
                }
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            match e.api() {
                Some(api) => eprintln!(
                    "error: Code: {}\nMessage: {}\nRequestId: {}\nHTTP status: {}",
                    api.code, api.message, api.request_id, api.http_status
                ),
                None => eprintln!("error: {e}"),
            }
            ExitCode::from(match e.class() {
                ErrorClass::Throttled => exit::THROTTLED,
                ErrorClass::Transient => exit::TRANSIENT,
                ErrorClass::Terminal => exit::TERMINAL,
            })
        }
    }
}
