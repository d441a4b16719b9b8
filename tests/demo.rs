//! `make demo`, exactly as the README says to run it, for 32 seconds: it must build, start its
//! own control plane, simulator (over HTTPS) and operator, and show the tasks following the
//! cloud through the first steps of its script. A demo that no longer shows what it promises
//! fails here, not in front of a new user.

use std::path::Path;
use std::process::{Command, Stdio};

mod support;
use support::controlplane::as_a_user;

const PHASES: &[&str] = &[
    "WaitingForChannel",
    "Running",
    "Stopped",
    "StoppedByUser",
    "ChannelStopped",
    "CdnError",
    "StreamUrlError",
    "Unknown",
];

/// The `PHASE` column of `name` in each `kubectl get mpurelaytasks` table the demo printed, in
/// order (repeats collapsed): the phases a user watching it saw.
fn phases_seen(output: &str, name: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut status_column = None;
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"NAME") {
            status_column = fields.iter().position(|f| *f == "PHASE");
            continue;
        }
        if fields.first() != Some(&name) {
            continue;
        }
        // Before the first poll the cell is empty and the words shift: only phases count.
        if let Some(phase) = status_column.and_then(|c| fields.get(c))
            && PHASES.contains(phase)
            && seen.last().map(String::as_str) != Some(*phase)
        {
            seen.push((*phase).to_string());
        }
    }
    seen
}

/// Whether `want` appears in `seen` in order (other phases may come between).
fn in_order(seen: &[String], want: &[&str]) -> bool {
    let mut rest = seen.iter();
    want.iter().all(|w| rest.any(|s| s == w))
}

#[test]
fn make_demo_shows_the_tasks_following_the_scripted_cloud() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("[demo] make demo DEMO_SECONDS=32 (builds the operator first: a minute when cold)");
    // The demo's own make and cargo run as a user's would.
    let out = as_a_user(&mut Command::new("make"))
        .current_dir(repo)
        .args(["--no-print-directory", "demo", "DEMO_SECONDS=32"])
        .stdin(Stdio::null())
        .output()
        .expect("running make demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "make demo failed ({}):\n{all}",
        out.status
    );

    assert!(
        stderr.contains("[demo] cloud simulator at https://127.0.0.1:"),
        "{all}"
    );
    assert!(stderr.contains("[demo] done"), "{all}");
    // The script's steps come at about 8, 12, 16, 20 s ...; each shows by the next table. The
    // managed relay, started by the operator, stopped by the CDN at 8 s, is restarted after its
    // 10 s backoff.
    let main = phases_seen(&stdout, "main-stage");
    assert!(
        in_order(&main, &["Running", "CdnError", "Running"]),
        "main-stage went {main:?}:\n{all}"
    );
    assert!(stdout.contains("Restarted"), "no Restarted event:\n{all}");
    assert!(stdout.contains("Manage"), "{all}");
    let stage = phases_seen(&stdout, "stage-relay");
    assert!(
        in_order(&stage, &["Running", "CdnError", "Running"]),
        "stage-relay went {stage:?}:\n{all}"
    );
    let backstage = phases_seen(&stdout, "backstage-relay");
    assert!(
        in_order(&backstage, &["WaitingForChannel", "Running"]),
        "backstage-relay went {backstage:?}:\n{all}"
    );
    let lobby = phases_seen(&stdout, "lobby-relay");
    assert_eq!(lobby.last().map(String::as_str), Some("Running"), "{all}");
    // The account was usable over TLS all along, and the CDN problem was announced.
    assert!(!stdout.contains("TlsError"), "{all}");
    assert!(stdout.contains("CdnError"), "{all}");
    // It cleaned up after itself.
    assert!(!repo.join(".controlplane/demo").exists());
}
