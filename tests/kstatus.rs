//! GitOps health as Flux computes it: kstatus itself (sigs.k8s.io/cli-utils
//! pkg/kstatus/status.Compute, built from the Go module proxy by tests/tools/build.sh) on
//! MpuRelayTasks read back from a real API server, whose statuses the operator's own `decide`
//! produced, for every row of the table in tests/kstatus/rows.rs (README "GitOps health").

mod support;

#[path = "kstatus/rows.rs"]
mod rows;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kube::api::{Api, Patch, PatchParams, PostParams};
use mpu_relay_operator::api::MpuRelayTask;
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, repo_root};

/// Builds (once, cached) the kstatus program and returns its path; fails the test when it
/// cannot.
pub fn kstatus_binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/tools/build.sh"))
        .arg("kstatus")
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/tools/build.sh");
    assert!(
        out.status.success(),
        "tests/tools/build.sh kstatus failed; see the lines above"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// kstatus of every object in `list` (a List as `kubectl get -o json` prints it): name ->
/// (status, message).
fn kstatus(list: &str) -> BTreeMap<String, (String, String)> {
    let mut child = Command::new(kstatus_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kstatus");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kstatus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("kstatus prints JSON lines");
            (
                v["name"].as_str().unwrap().to_string(),
                (
                    v["status"].as_str().unwrap().to_string(),
                    v["message"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// Creates `task` in `ns` and writes its status through the status subresource, as the
/// operator does.
async fn store(api: &Api<MpuRelayTask>, task: &MpuRelayTask) {
    let mut created = task.clone();
    created.status = None;
    created.metadata.generation = None;
    let name = task.metadata.name.clone().unwrap();
    // The API server starts at generation 1; a row at generation 2 was suspended after its
    // last poll: created unsuspended, then suspended.
    let later_suspended = task.metadata.generation == Some(2);
    if later_suspended {
        created.spec.suspend = false;
    }
    api.create(&PostParams::default(), &created)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    if later_suspended {
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": serde_json::to_value(&task.spec).unwrap()})),
        )
        .await
        .unwrap_or_else(|e| panic!("updating the spec of {name}: {e}"));
    }
    if let Some(status) = &task.status {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("writing the status of {name}: {e}"));
    }
}

fn kubectl_get(cp: &ControlPlane, ns: &str) -> String {
    let out = cp
        .kubectl()
        .args(["get", "mpurelaytasks", "-n", ns, "-o", "json"])
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn integration_kstatus_of_every_state_matches_the_gitops_table() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "kstatus").await;
    let api: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);

    let table = rows::rows();
    for row in &table {
        store(&api, &row.task).await;
    }
    // Not polled yet: no status at all.
    let (fresh, fresh_kstatus, _) = rows::NOT_POLLED_YET;
    store(&api, &rows::task(fresh, 1, false)).await;
    // A spec change the operator has not observed: status of generation 1, object at 2.
    let (changed, changed_kstatus, _) = rows::SPEC_CHANGE_NOT_OBSERVED;
    let mut running = rows::reconciled(&rows::task(changed, 1, false), rows::polled(1));
    running.metadata.name = Some(changed.into());
    store(&api, &running).await;
    api.patch(
        changed,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"pollInterval": "45s"}})),
    )
    .await
    .expect("changing the spec");
    let current = api.get(changed).await.unwrap();
    assert_eq!(current.metadata.generation, Some(2), "the spec changed");

    let computed = kstatus(&kubectl_get(cp, &ns));
    let mut expected: Vec<(&str, &str)> = table.iter().map(|r| (r.name, r.kstatus)).collect();
    expected.push((fresh, fresh_kstatus));
    expected.push((changed, changed_kstatus));

    let mut wrong = Vec::new();
    let mut awaiting = Vec::new();
    for (name, want) in expected {
        let (got, message) = computed
            .get(name)
            .unwrap_or_else(|| panic!("kstatus printed nothing for {name}: {computed:?}"));
        if got == want {
            if rows::AWAITING_DECIDE_CHANGE.iter().any(|(n, _)| *n == name) {
                println!("{name}: {got} as intended: remove it from rows::AWAITING_DECIDE_CHANGE");
            }
            continue;
        }
        match rows::AWAITING_DECIDE_CHANGE
            .iter()
            .find(|(n, _)| *n == name)
        {
            Some((_, today)) if got == today => awaiting.push(format!(
                "{name}: {got} ({message}); {want} once decide() changes"
            )),
            _ => wrong.push(format!("{name}: kstatus {got} ({message}), want {want}")),
        }
    }
    for line in &awaiting {
        println!("awaiting the decide() change: {line}");
    }
    assert!(wrong.is_empty(), "kstatus disagrees:\n{}", wrong.join("\n"));
}
