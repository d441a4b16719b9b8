//! `make controlplane-up` / `make controlplane-down`: a local control plane for manual use.
//!
//! Usage: `controlplane up DIR` (starts etcd + kube-apiserver in the background, applies
//! `crds/`, prints the kubeconfig path) and `controlplane down DIR`.

#[path = "controlplane.rs"]
mod controlplane;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (verb, dir) = match args.as_slice() {
        [verb, dir] => (verb.as_str(), PathBuf::from(dir)),
        [verb] => (verb.as_str(), PathBuf::from(".controlplane")),
        _ => {
            eprintln!("usage: controlplane up|down [DIR]");
            return ExitCode::from(2);
        }
    };
    match verb {
        "up" => {
            if dir.join("pids").exists() {
                eprintln!(
                    "a control plane already runs in {} (stop it with `make controlplane-down`)",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
            match controlplane::ControlPlane::start_detached(&dir) {
                Ok(cp) => {
                    println!("{}", cp.kubeconfig.display());
                    // Leave the processes running: this is what `up` is for.
                    std::mem::forget(cp);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot start the control plane: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "down" => match controlplane::ControlPlane::stop_detached(&dir) {
            Ok(()) => {
                eprintln!("[controlplane] stopped");
                ExitCode::SUCCESS
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("[controlplane] nothing runs in {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot stop the control plane: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: controlplane up|down [DIR]");
            ExitCode::from(2)
        }
    }
}
