//! What `cargo build --release` of the operator gives a user (or `cargo install`): the operator
//! and nothing of its test stand-ins. The cloud simulator (`crates/mpu-cloud-sim`) and the
//! signature verifier (`mpu-relay-sign`'s `verify` feature) are dev-dependencies only; this test
//! builds the release binary exactly as a user would (the operator package alone, so that the
//! workspace's test build, which turns `verify` on, does not apply) and reads its symbols.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod support;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo build --release --locked --bin mpu-relay-operator`, once per test binary.
fn release_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The release profile has its own lock, so this runs beside the test build; `make bench`
        // shares its output.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"));
        println!(
            "[shipped-binary] cargo build --release --bin mpu-relay-operator (first time: minutes)"
        );
        // As a user's `cargo build --release` runs it, so that either's build is fresh for the
        // other (and for `make profile`'s).
        let status = support::controlplane::as_a_user(&mut Command::new(env!("CARGO")))
            .current_dir(repo())
            .args([
                "build",
                "--release",
                "--locked",
                "--bin",
                "mpu-relay-operator",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --release failed");
        target.join("release/mpu-relay-operator")
    })
}

/// Demangled symbol names of the binary (`nm -C`; the release profile strips debug info only,
/// so the symbol table is there).
fn symbols(bin: &Path) -> String {
    let out = Command::new("nm")
        .arg("-C")
        .arg(bin)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn release_binary_help_lists_no_simulate_subcommand() {
    let out = Command::new(release_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run"), "unexpected help: {help}");
    assert!(
        !help.contains("simulate"),
        "`simulate` is in the help: {help}"
    );
    let out = Command::new(release_binary())
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "`simulate` still answers: {out:?}");
}

#[test]
fn release_binary_contains_no_simulator_or_verifier_symbols() {
    let symbols = symbols(release_binary());
    // The check can see the crates it looks for: the signer is in, by name.
    assert!(
        symbols.contains("mpu_relay_sign::"),
        "no mpu_relay_sign symbol at all: is the binary stripped? the check would prove nothing"
    );
    assert!(symbols.contains("mpu_relay_operator::"));
    let leaked: Vec<&str> = symbols
        .lines()
        .filter(|line| {
            line.contains("mpu_cloud_sim::") || line.contains("mpu_relay_sign::verify::")
        })
        .take(10)
        .collect();
    assert!(
        leaked.is_empty(),
        "the release binary carries simulator or verifier code: {leaked:#?}"
    );
}
