//! `mpu-relay-operator run` refuses settings that would make it spin, sleep for ages or call
//! where it should not, before it connects to anything.

use std::process::Command;

fn run_with(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"))
        .arg("run")
        .args(args)
        .env_clear()
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn zero_or_absurd_durations_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--stalled-retry", "0s"),
        ("--min-backoff", "0s"),
        ("--running-interval", "0s"),
        ("--status-heartbeat", "0s"),
        ("--cloud-timeout", "0s"),
        ("--running-interval", "900000000000000h"),
        ("--stopped-interval", "48h"),
    ] {
        let (code, stderr) = run_with(&[flag, value]);
        assert_ne!(code, Some(0), "{flag} {value} was accepted");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

#[test]
fn a_lease_too_short_to_renew_or_absurdly_long_is_refused() {
    for value in ["0", "1", "2", "3601", "18446744073709551615"] {
        let (code, stderr) = run_with(&["--leader-election", "--lease-duration", value]);
        assert_ne!(code, Some(0), "--lease-duration {value} was accepted");
        assert!(stderr.contains("--lease-duration"), "{value}: {stderr}");
    }
}

#[test]
fn malformed_allowed_endpoints_are_refused() {
    let (code, stderr) = run_with(&["--allowed-endpoints", "*.aliyuncs.com"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--allowed-endpoints"), "{stderr}");
}
