//! `mpu-cloud-sim`: the stand-in of Alibaba Cloud's endpoint, served until Ctrl-C or SIGTERM.
//! For the demo, the bench, `make profile` and trying the operator by hand; never shipped with
//! the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mpu_cloud_sim::{Scheme, Simulator, SimulatorConfig};

/// A simulator of Alibaba Cloud's GetMPUTaskStatus endpoint (and STS) for tests and demos.
#[derive(Parser, Debug)]
#[command(name = "mpu-cloud-sim", version)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "MPU_CLOUD_SIM_LISTEN")]
    listen: SocketAddr,
    /// Accounts, tasks and roles (YAML or JSON); see examples/simulator.yaml.
    #[arg(long, env = "MPU_CLOUD_SIM_CONFIG")]
    config: Option<PathBuf>,
    /// Serves HTTPS (the default) with a CA generated at start; writes that CA here (PEM), for
    /// the operator's `--ca-bundle`.
    #[arg(long, env = "MPU_CLOUD_SIM_CA_OUT", conflicts_with = "http")]
    ca_out: Option<PathBuf>,
    /// Serves plain HTTP instead of HTTPS.
    #[arg(long, env = "MPU_CLOUD_SIM_HTTP")]
    http: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args {
        listen,
        config,
        ca_out,
        http,
    } = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match &config {
        Some(path) => match SimulatorConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => SimulatorConfig::default(),
    };
    let scheme = if http {
        Scheme::Http
    } else {
        Scheme::default()
    };
    let simulator = match Simulator::start_with(listen, scheme, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&ca_out, simulator.ca_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        eprintln!("error: cannot write the CA to {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    tracing::info!(url = %simulator.base_url(), "simulating GetMPUTaskStatus");
    shutdown_signal().await;
    simulator.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
