//! The command line: one subcommand per job the binary does.

use clap::{Parser, Subcommand};

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
    /// Print the MpuRelayTask CustomResourceDefinition as YAML (what `crds/` holds).
    Crd,
}

/// Parses the command line and runs the chosen subcommand; returns the process exit code.
pub async fn parse_and_run() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
    }
}
