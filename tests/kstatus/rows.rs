//! The GitOps health table: for every state an MpuRelayTask can be in (each phase, each class of
//! error, suspended, before the first poll, a spec change not yet observed), the object as the
//! operator's own `decide` leaves it, and what Flux (kstatus) and Argo CD (examples/argocd/
//! health.lua) must make of it. README "GitOps health" shows the same table.
//!
//! Used by tests/kstatus.rs (kstatus itself, on objects read back from a real API server) and
//! tests/argocd_health.rs (the Lua health check); `#[path]`-included, so each test binary has
//! its own copy.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use mpu_relay_operator::api::ManagementStatus;
use mpu_relay_operator::api::MpuRelayTask;
use mpu_relay_operator::cloud::CloudError;
use mpu_relay_operator::cloud::response::{ApiError, MpuTaskStatus};
use mpu_relay_operator::controller::decide::{Outcome, PollConfig, decide};
use mpu_relay_operator::controller::managed::lifecycle::{Refusal, Seen, Step};
use mpu_relay_operator::controller::managed::{Acted, Done, managed_decision};
use mpu_relay_operator::controller::status::Problem;
use serde_json::json;

/// One row of the table.
pub struct Row {
    /// Also the object's name in the API server.
    pub name: &'static str,
    /// The state, in the README's words.
    pub state: &'static str,
    /// The object: spec, metadata.generation and the status `decide` wrote.
    pub task: MpuRelayTask,
    /// kstatus (`status.Compute`): Current, InProgress, Failed.
    pub kstatus: &'static str,
    /// Argo CD health: Healthy, Progressing, Degraded, Suspended, Unknown.
    pub argocd: &'static str,
}

/// Rows whose kstatus needs the condition changes of `decide` that are under way (issue 12: a
/// relay the cloud stopped sets Stalled=True; a transient error on a settled task is
/// Reconciling; a relay stopped by its user and a suspended task are Current). Until they land
/// these rows may still show the kstatus given here, which is what the landed `decide` gives;
/// tests/kstatus.rs accepts either and says which. Remove the entries as they land.
pub const AWAITING_DECIDE_CHANGE: &[(&str, &str)] = &[];

/// A task as a user writes it: only the fields every version of the spec has.
pub fn task(name: &str, generation: i64, suspend: bool) -> MpuRelayTask {
    serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
        "metadata": {"name": name, "generation": generation},
        "spec": {"appId": "app", "taskId": format!("task-{name}"), "suspend": suspend},
    }))
    .unwrap()
}

/// The object after the operator reconciled `task` with `outcome`.
pub fn reconciled(task: &MpuRelayTask, outcome: Outcome) -> MpuRelayTask {
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

pub fn polled(code: i64) -> Outcome {
    Outcome::Polled(MpuTaskStatus {
        request_id: "req-1".into(),
        status: code,
    })
}

fn api_error(code: &str, http_status: u16) -> Outcome {
    Outcome::CloudFailed(CloudError::Api(Box::new(ApiError {
        http_status,
        code: code.into(),
        message: format!("{code} for the test"),
        request_id: "req-err".into(),
        host_id: None,
        recommend: None,
        retry_after: None,
    })))
}

/// A task that manages its relay.
pub fn managed_task(name: &str) -> MpuRelayTask {
    serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
        "metadata": {"name": name, "generation": 1},
        "spec": {"appId": "app", "taskId": format!("task-{name}"), "managementPolicy": "Manage",
                 "relay": {"channelId": "lobby", "mixMode": "Single", "streamURL": "rtmp://x/y",
                           "singleSubParams": {"userId": "host-1"}}},
    }))
    .unwrap()
}

/// The managed `task` after a poll gave `outcome` (the cloud's `seen`) and the operator took
/// `step`, which came to `acted`.
fn managed_after(
    task: &MpuRelayTask,
    outcome: Outcome,
    step: Step,
    acted: Option<Acted>,
) -> MpuRelayTask {
    let now = jiff::Timestamp::now();
    let seen = match &outcome {
        Outcome::Polled(answer) => Seen::Status(answer.status),
        _ => Seen::NotFound,
    };
    let mut decision = decide(task, &outcome, now, &PollConfig::default(), Duration::ZERO);
    let prev = task.status.clone().unwrap_or_default();
    let done = Done {
        management: Some(ManagementStatus {
            // A relay it did not start is not its own; every other step is an owner's.
            started_at: (!matches!(step, Step::Refuse(Refusal::TaskExists)))
                .then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            ..Default::default()
        }),
        acted,
        ..Default::default()
    };
    managed_decision(
        &mut decision,
        &prev,
        step,
        &done,
        seen,
        now,
        task.metadata.generation,
    );
    let mut next = task.clone();
    next.status = Some(decision.status);
    next
}

fn suspended(mut last: MpuRelayTask) -> MpuRelayTask {
    last.spec.suspend = true;
    last.metadata.generation = Some(last.metadata.generation.unwrap_or(1) + 1);
    reconciled(&last, Outcome::Suspended)
}

/// Every row, in the README's order.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |name, state, task: MpuRelayTask, kstatus, argocd| {
        let mut task = task;
        task.metadata.name = Some(String::from(name));
        rows.push(Row {
            name,
            state,
            task,
            kstatus,
            argocd,
        })
    };
    let fresh = |name| task(name, 1, false);
    let after = |name, code| reconciled(&fresh(name), polled(code));

    row(
        "running",
        "`Running`",
        after("running", 1),
        "Current",
        "Healthy",
    );
    row(
        "waiting-for-channel",
        "`WaitingForChannel`",
        after("waiting-for-channel", 0),
        "InProgress",
        "Progressing",
    );
    for (name, code, phase) in [
        ("stopped", 2, "`Stopped`"),
        ("channel-stopped", 4, "`ChannelStopped`"),
        ("cdn-error", 5, "`CdnError`"),
        ("stream-url-error", 6, "`StreamUrlError`"),
    ] {
        row(name, phase, after(name, code), "Failed", "Degraded");
    }
    row(
        "stopped-by-user",
        "`StoppedByUser`",
        after("stopped-by-user", 3),
        "InProgress",
        "Suspended",
    );
    row(
        "unknown-code",
        "`Unknown` (a code the operator does not know)",
        after("unknown-code", 42),
        "InProgress",
        "Unknown",
    );
    row(
        "secret-not-found",
        "terminal error: credentials missing (`SecretNotFound`)",
        reconciled(
            &fresh("secret-not-found"),
            Outcome::AccountUnusable(Problem {
                reason: "SecretNotFound",
                message: "Secret team/alibaba-cloud-credentials not found".into(),
                permanent: true,
            }),
        ),
        "Failed",
        "Degraded",
    );
    row(
        "auth-error",
        "terminal error: credentials refused (`AuthError`)",
        reconciled(
            &after("auth-error", 1),
            api_error("InvalidAccessKeyId.NotFound", 404),
        ),
        "Failed",
        "Degraded",
    );
    row(
        "task-not-found",
        "terminal error: no such task (`TaskNotFound`)",
        reconciled(
            &fresh("task-not-found"),
            api_error("InvalidTask.NotFound", 404),
        ),
        "Failed",
        "Degraded",
    );
    row(
        "transient-error-while-running",
        "transient error (timeout, 5xx) after `Running`",
        reconciled(
            &after("transient-error-while-running", 1),
            Outcome::CloudFailed(CloudError::Timeout),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "throttled-while-running",
        "throttled by the cloud after `Running`",
        reconciled(
            &after("throttled-while-running", 1),
            api_error("Throttling.User", 400),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "transient-error-before-first-poll",
        "transient error before any answer",
        reconciled(
            &fresh("transient-error-before-first-poll"),
            Outcome::CloudFailed(CloudError::Timeout),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "transient-error-after-cdn-error",
        "transient error after `CdnError` (the relay is still stopped)",
        reconciled(
            &after("transient-error-after-cdn-error", 5),
            Outcome::CloudFailed(CloudError::Timeout),
        ),
        "Failed",
        "Degraded",
    );
    row(
        "suspended-while-running",
        "`spec.suspend: true` (last seen `Running`)",
        suspended(after("suspended-while-running", 1)),
        "Current",
        "Suspended",
    );
    row(
        "suspended-after-cdn-error",
        "`spec.suspend: true` (last seen `CdnError`)",
        suspended(after("suspended-after-cdn-error", 5)),
        "InProgress",
        "Suspended",
    );
    row(
        "suspended-while-waiting",
        "`spec.suspend: true` (last seen `WaitingForChannel`)",
        suspended(after("suspended-while-waiting", 0)),
        "InProgress",
        "Suspended",
    );
    let managed = |name| managed_task(name);
    row(
        "managed-running",
        "managed: `Running` as declared",
        managed_after(&managed("managed-running"), polled(1), Step::Hold, None),
        "Current",
        "Healthy",
    );
    row(
        "managed-starting",
        "managed: started, waiting for its first status",
        managed_after(
            &managed("managed-starting"),
            api_error("InvalidTask.NotFound", 404),
            Step::Start { restart: false },
            Some(Acted::Started { restart: false }),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "managed-restarting",
        "managed: restarted after `CdnError`, waiting for its first status",
        managed_after(
            &reconciled(&managed("managed-restarting"), polled(5)),
            polled(5),
            Step::Start { restart: true },
            Some(Acted::Started { restart: true }),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "managed-backing-off",
        "managed: `CdnError`, backing off before the restart",
        managed_after(
            &managed("managed-backing-off"),
            polled(5),
            Step::Backoff {
                until: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(10),
            },
            None,
        ),
        "Failed",
        "Degraded",
    );
    row(
        "managed-start-refused",
        "managed: the cloud refused the Start (`StartFailed`, retried)",
        managed_after(
            &managed("managed-start-refused"),
            api_error("InvalidTask.NotFound", 404),
            Step::Start { restart: false },
            Some(Acted::Failed("StartFailed")),
        ),
        "InProgress",
        "Progressing",
    );
    row(
        "managed-task-exists",
        "managed: a relay it did not start runs under the TaskId (`TaskExists`)",
        managed_after(
            &managed("managed-task-exists"),
            polled(1),
            Step::Refuse(Refusal::TaskExists),
            None,
        ),
        "Failed",
        "Degraded",
    );
    row(
        "managed-stopped-by-user",
        "managed: `StoppedByUser` (never restarted)",
        managed_after(
            &managed("managed-stopped-by-user"),
            polled(3),
            Step::Refuse(Refusal::StoppedByUser),
            None,
        ),
        "Failed",
        "Degraded",
    );
    row(
        "managed-not-allowed",
        "managed through an account that does not grant it (`ManageNotAllowed`, `TaskClaimed`)",
        reconciled(
            &managed("managed-not-allowed"),
            Outcome::AccountUnusable(Problem {
                reason: "ManageNotAllowed",
                message: "ClusterMpuRelayAccount/shared does not let namespace team manage relays"
                    .into(),
                permanent: true,
            }),
        ),
        "Failed",
        "Degraded",
    );
    row(
        "suspended-before-first-poll",
        "`spec.suspend: true` before any poll",
        reconciled(
            &task("suspended-before-first-poll", 1, true),
            Outcome::Suspended,
        ),
        "Current",
        "Suspended",
    );
    rows
}

/// A spec change the operator has not observed yet: kstatus and Argo CD both wait for it. Made
/// in the API server by changing the spec after the status was written (tests/kstatus.rs), and
/// in memory by bumping metadata.generation (tests/argocd_health.rs).
pub const SPEC_CHANGE_NOT_OBSERVED: (&str, &str, &str) =
    ("spec-change-not-observed", "InProgress", "Progressing");

/// A task the operator has not polled yet (no status): kstatus cannot tell it from a settled
/// object without conditions and says Current; the Argo CD check says Progressing.
pub const NOT_POLLED_YET: (&str, &str, &str) = ("not-polled-yet", "Current", "Progressing");
