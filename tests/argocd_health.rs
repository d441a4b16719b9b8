//! The Argo CD health check in `examples/argocd/health.lua`, run by a real Lua interpreter (Lua
//! 5.1, the language of Argo CD's gopher-lua) against statuses the operator's own `decide`
//! writes, and against the states before the operator has written anything.

#[path = "kstatus/rows.rs"]
mod rows;

use std::path::Path;
use std::time::Duration;

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt};
use mpu_relay_operator::api::MpuRelayTask;
use mpu_relay_operator::cloud::CloudError;
use mpu_relay_operator::cloud::response::MpuTaskStatus;
use mpu_relay_operator::controller::decide::{Outcome, PollConfig, decide};
use mpu_relay_operator::controller::status::Problem;
use serde_json::{Value, json};

fn script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/argocd/health.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs the health check as Argo CD does: the object as the global `obj`, JSON nulls and absent
/// fields both nil, and the returned table's `status` and `message`.
fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua
        .to_value_with(obj, options)
        .expect("the object converts to Lua");
    lua.globals().set("obj", value).unwrap();
    let hs: mlua::Table = lua
        .load(script())
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: Option<String> = hs.get("message").unwrap();
    (status, message.unwrap_or_default())
}

fn task(generation: i64, suspend: bool) -> MpuRelayTask {
    serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
        "metadata": {"name": "relay", "namespace": "team", "generation": generation},
        "spec": {"appId": "app", "taskId": "t1", "suspend": suspend},
    }))
    .unwrap()
}

/// The object after the operator reconciled `task` with `outcome`.
fn reconciled(task: &MpuRelayTask, outcome: Outcome) -> MpuRelayTask {
    let decision = decide(
        task,
        &outcome,
        jiff::Timestamp::now(),
        &PollConfig::default(),
        Duration::ZERO,
    );
    let mut next = task.clone();
    next.status = Some(decision.status);
    next
}

fn polled(code: i64) -> Outcome {
    Outcome::Polled(MpuTaskStatus {
        request_id: "req-1".into(),
        status: code,
    })
}

fn health_of(task: &MpuRelayTask) -> (String, String) {
    health(&serde_json::to_value(task).unwrap())
}

#[test]
fn running_relay_is_healthy() {
    let (status, message) = health_of(&reconciled(&task(1, false), polled(1)));
    assert_eq!(status, "Healthy", "{message}");
}

#[test]
fn relay_stopped_by_the_cloud_is_degraded_with_the_phase_in_the_message() {
    for (code, phase) in [
        (2, "Stopped"),
        (4, "ChannelStopped"),
        (5, "CdnError"),
        (6, "StreamUrlError"),
    ] {
        let obj = reconciled(&task(1, false), polled(code));
        let (status, message) = health_of(&obj);
        assert_eq!(status, "Degraded", "code {code}: {message}");
        assert_eq!(
            obj.status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| p.as_str()),
            Some(phase)
        );
        assert!(!message.is_empty(), "code {code} has no message");
    }
}

#[test]
fn relay_waiting_for_its_channel_is_progressing() {
    let (status, message) = health_of(&reconciled(&task(1, false), polled(0)));
    assert_eq!(status, "Progressing", "{message}");
}

#[test]
fn relay_stopped_by_its_owner_is_suspended_not_degraded() {
    let (status, message) = health_of(&reconciled(&task(1, false), polled(3)));
    assert_eq!(status, "Suspended", "{message}");
}

#[test]
fn unknown_status_code_is_unknown() {
    let (status, message) = health_of(&reconciled(&task(1, false), polled(42)));
    assert_eq!(status, "Unknown", "{message}");
}

#[test]
fn suspended_task_is_suspended_whatever_its_last_status() {
    let mut running = reconciled(&task(1, false), polled(1));
    running.spec.suspend = true;
    running.metadata.generation = Some(2);
    let (status, message) = health_of(&reconciled(&running, Outcome::Suspended));
    assert_eq!(status, "Suspended", "{message}");
    assert!(message.contains("spec.suspend"), "{message}");
}

#[test]
fn stalled_task_is_degraded_with_the_stall_reason() {
    let missing = Problem {
        reason: "SecretNotFound",
        message: "Secret team/ak not found".into(),
        permanent: true,
    };
    let obj = reconciled(&task(1, false), Outcome::AccountUnusable(missing));
    let (status, message) = health_of(&obj);
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.contains("ak"), "{message}");
}

#[test]
fn transient_cloud_error_is_progressing_even_when_the_relay_was_running() {
    let running = reconciled(&task(1, false), polled(1));
    let obj = reconciled(&running, Outcome::CloudFailed(CloudError::Timeout));
    let (status, message) = health_of(&obj);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.starts_with("Retrying"), "{message}");
}

#[test]
fn transient_error_does_not_hide_a_stopped_relay() {
    let stopped = reconciled(&task(1, false), polled(5));
    let obj = reconciled(&stopped, Outcome::CloudFailed(CloudError::Timeout));
    assert_eq!(health_of(&obj).0, "Degraded");
}

#[test]
fn task_without_status_is_progressing() {
    let (status, message) = health_of(&task(1, false));
    assert_eq!(status, "Progressing", "{message}");
    let empty = json!({
        "metadata": {"name": "relay", "generation": 1},
        "spec": {"appId": "app", "taskId": "t1"},
        "status": {"conditions": []},
    });
    assert_eq!(health(&empty).0, "Progressing");
}

#[test]
fn status_of_an_older_generation_is_progressing() {
    let mut obj = reconciled(&task(1, false), polled(1));
    obj.metadata.generation = Some(2);
    let (status, message) = health_of(&obj);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.contains("generation 2"), "{message}");
}

#[test]
fn every_row_of_the_gitops_table_has_its_argocd_health() {
    let mut wrong = Vec::new();
    for row in rows::rows() {
        let (status, message) = health_of(&row.task);
        if status != row.argocd {
            wrong.push(format!(
                "{}: {status} ({message}), want {}",
                row.name, row.argocd
            ));
        }
        assert!(!message.is_empty(), "{}: no message", row.name);
    }
    let (name, _, want) = rows::NOT_POLLED_YET;
    let (status, _) = health_of(&rows::task(name, 1, false));
    if status != want {
        wrong.push(format!("{name}: {status}, want {want}"));
    }
    let (name, _, want) = rows::SPEC_CHANGE_NOT_OBSERVED;
    let mut changed = rows::reconciled(&rows::task(name, 1, false), rows::polled(1));
    changed.metadata.generation = Some(2);
    let (status, _) = health_of(&changed);
    if status != want {
        wrong.push(format!("{name}: {status}, want {want}"));
    }
    assert!(
        wrong.is_empty(),
        "health.lua disagrees:\n{}",
        wrong.join("\n")
    );
}

/// The README's table (between the gitops-table markers) is the one the tests check: one line
/// per row, in order, with its kstatus and Argo CD health.
#[test]
fn readme_gitops_table_is_the_tested_one() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split("<!-- gitops-table:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- gitops-table:end -->").next())
        .expect("README.md has the gitops-table markers");
    let lines: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| state"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let mut expected: Vec<(String, &str, &str)> = rows::rows()
        .into_iter()
        .map(|r| (r.state.to_string(), r.kstatus, r.argocd))
        .collect();
    expected.push((
        "not polled yet (no status)".into(),
        rows::NOT_POLLED_YET.1,
        rows::NOT_POLLED_YET.2,
    ));
    expected.push((
        "spec changed, not observed yet".into(),
        rows::SPEC_CHANGE_NOT_OBSERVED.1,
        rows::SPEC_CHANGE_NOT_OBSERVED.2,
    ));
    let found: Vec<(String, &str, &str)> = lines
        .iter()
        .map(|c| (c[0].clone(), c[2].as_str(), c[3].as_str()))
        .collect();
    assert_eq!(
        found, expected,
        "README's GitOps table (state | conditions | kstatus | Argo CD) drifted from tests/kstatus/rows.rs"
    );
}

#[test]
fn argocd_cm_patch_embeds_health_lua_verbatim() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/argocd/argocd-cm-patch.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let patch: Value = serde_saphyr::from_str(&text).expect("argocd-cm-patch.yaml is YAML");
    let embedded = patch["data"]["resource.customizations.health.mpurelay.io_MpuRelayTask"]
        .as_str()
        .expect("the patch sets the MpuRelayTask health key of argocd-cm");
    assert!(
        embedded == script(),
        "argocd-cm-patch.yaml no longer holds health.lua verbatim; copy it again"
    );
}

/// Runs `examples/argocd/account-health.lua` on an account object.
fn account_health(obj: &Value) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/argocd/account-health.lua");
    let script = std::fs::read_to_string(path).unwrap();
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    lua.globals()
        .set("obj", lua.to_value_with(obj, options).unwrap())
        .unwrap();
    let hs: mlua::Table = lua.load(script).eval().unwrap();
    (
        hs.get("status").unwrap(),
        hs.get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

/// An account whose status the operator's own `decide_account` wrote.
fn account(facts: &mpu_relay_operator::controller::account_status::AccountFacts<'_>) -> Value {
    let decision = mpu_relay_operator::controller::account_status::decide_account(
        None,
        facts,
        jiff::Timestamp::now(),
    );
    json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayAccount",
        "metadata": {"name": "live", "namespace": "team", "generation": 1},
        "spec": {"credentials": {"secretRef": {"name": "ak"}}},
        "status": decision.status,
    })
}

#[test]
fn account_health_follows_its_ready_condition() {
    use mpu_relay_operator::budget::BudgetView;
    use mpu_relay_operator::controller::account_status::AccountFacts;
    let view = BudgetView {
        members: 3,
        limit: 10.0,
        rate: 9.7,
        used: 1.0,
        throttled: 0,
        slowed: false,
        floor: Duration::ZERO,
    };
    let ready = AccountFacts {
        generation: Some(1),
        resolution: Ok(()),
        call_failure: None,
        tasks: 3,
        operations: Vec::new(),
        events: None,
        budget: Some(view.clone()),
    };
    assert_eq!(account_health(&account(&ready)).0, "Healthy");
    let throttled = AccountFacts {
        budget: Some(BudgetView {
            slowed: true,
            ..view
        }),
        ..ready.clone()
    };
    let (status, message) = account_health(&account(&throttled));
    assert_eq!(status, "Healthy");
    assert!(message.starts_with("throttled"), "{message}");
    let problem = Problem {
        reason: "EndpointNotAllowed",
        message: "endpoint http://10.0.0.1 is not in the operator's allowed endpoints".into(),
        permanent: true,
    };
    let refused = AccountFacts {
        resolution: Err(&problem),
        budget: None,
        ..ready
    };
    let (status, message) = account_health(&account(&refused));
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("EndpointNotAllowed"), "{message}");
    let fresh = json!({"metadata": {"name": "live", "generation": 1}, "spec": {}});
    assert_eq!(account_health(&fresh).0, "Progressing");
}

#[test]
fn argocd_cm_patch_embeds_the_account_health_check_for_both_kinds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/argocd/argocd-cm-patch.yaml")).unwrap();
    let patch: Value = serde_saphyr::from_str(&text).unwrap();
    let script = std::fs::read_to_string(root.join("examples/argocd/account-health.lua")).unwrap();
    for kind in ["MpuRelayAccount", "ClusterMpuRelayAccount"] {
        let key = format!("resource.customizations.health.mpurelay.io_{kind}");
        assert_eq!(
            patch["data"][key.as_str()].as_str(),
            Some(script.as_str()),
            "{kind}"
        );
    }
}
