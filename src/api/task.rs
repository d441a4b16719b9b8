//! The `MpuRelayTask` kind: which cloud relay task to observe, through which account, and what
//! the operator last observed of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::relay::{DeletionPolicy, ManagementPolicy, ManagementStatus, RelaySpec, RestartPolicy};

/// The desired state of an MpuRelayTask: which cloud relay task, through which account, and
/// whether the operator only observes it (the default) or manages it: starts it from `relay`,
/// updates it when `relay` changes, restarts it under `restartPolicy`, stops it on deletion.
// clippy reads the repeated `type_ = ...` of the printcolumn(...) entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "mpurelay.io",
    version = "v1alpha1",
    kind = "MpuRelayTask",
    plural = "mpurelaytasks",
    singular = "mpurelaytask",
    shortname = "mpt",
    category = "mpurelay",
    category = "alibabacloud",
    namespaced,
    status = "MpuRelayTaskStatus",
    derive = "PartialEq",
    doc = "An Alibaba Cloud ApsaraVideo Live stream relay (MPU) task: observed through GetMPUTaskStatus, or managed (started, updated, restarted and stopped) from spec.relay.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.appId"),
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.taskId"),
    printcolumn(
        name = "Account",
        type_ = "string",
        json_path = ".spec.accountRef.name"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.managementPolicy"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.managementPolicy != 'Manage' || has(self.relay)").message("managementPolicy Manage needs spec.relay: the relay to start"),
    validation = Rule::new("self.managementPolicy != 'Manage' || (size(self.taskId) <= 55 && self.taskId.matches('^[A-Za-z0-9_-]+$'))").message("a managed taskId is at most 55 letters, digits, '_' or '-' (what StartLiveMPUTask accepts)"),
)]
pub struct MpuRelayTaskSpec {
    /// ID of the ApsaraVideo application that owns the relay task (GetMPUTaskStatus `AppId`).
    /// Immutable: point a new object at a different task instead.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("appId is immutable; create a new MpuRelayTask for another application"))]
    pub app_id: String,

    /// ID of the relay task inside the application (GetMPUTaskStatus `TaskId`).
    /// Immutable: point a new object at a different task instead.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("taskId is immutable; create a new MpuRelayTask for another task"))]
    pub task_id: String,

    /// The account to call the cloud through: an `MpuRelayAccount` in this namespace, or a
    /// `ClusterMpuRelayAccount` whose `conditions` admit this namespace. A task without one is
    /// Stalled and causes no cloud call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,

    /// How often to poll this task, overriding the operator's interval for the task's phase
    /// (Go duration syntax: `30s`, `5m`, `1h30m`), between 1s and 24h. The account's shared rate
    /// budget may stretch it: the account's `status.budget.interval` shows how far.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::duration::lenient"
    )]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("pollInterval must be between 1s and 24h"))]
    pub poll_interval: Option<Duration>,

    /// Stop polling this task while true. The last observed status is kept; a managed relay
    /// is neither started, updated, restarted nor stopped while suspended.
    #[serde(default)]
    pub suspend: bool,

    /// `Observe` (the default): poll the task's status only. `Manage`: the operator starts the
    /// relay from `relay`, updates it when `relay` changes, restarts it under `restartPolicy`
    /// and stops it on deletion under `deletionPolicy`. Managing needs the right from the
    /// account: an `MpuRelayAccount` grants it; a `ClusterMpuRelayAccount` only through a
    /// condition with `manage: true` for this namespace (else the task is Stalled
    /// `ManageNotAllowed` and nothing is called). Switching back to `Observe` changes nothing
    /// in the cloud.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// With `Manage`: what deleting this object does to the relay. `Delete` (the default)
    /// stops it, `Orphan` leaves it running. A relay this object did not start (or adopt) is
    /// never stopped.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// With `Manage`: when a relay the cloud stopped is started again, after a backoff of 10 s
    /// doubling to 5 min (reset once it has run 10 min). `Never`, `OnFailure` (the default: the
    /// channel stopped, a CDN or a streaming-URL problem) or `Always` (also a plain stop). A
    /// relay stopped by a user is never restarted.
    #[serde(default)]
    pub restart_policy: RestartPolicy,

    /// With `Manage`: take over a relay that already runs under this TaskId instead of refusing
    /// it (`TaskExists`). Only where the account allows adoption: always for an
    /// `MpuRelayAccount`, for a `ClusterMpuRelayAccount` through a condition with
    /// `adoption: Allowed`.
    #[serde(default)]
    pub adopt: bool,

    /// With `Manage`: the relay to run, as StartLiveMPUTask takes it. `channelId`, `region` and
    /// `maxIdleTime` cannot change; the rest is applied with UpdateLiveMPUTask.
    // Boxed: most tasks have none, and a cached task carries the field inline (10 000 tasks
    // carried 5 MiB of empty relays: the bench's RSS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Box<RelaySpec>>,
}

impl MpuRelayTaskSpec {
    /// True when the operator owns the relay's lifecycle.
    pub fn managed(&self) -> bool {
        self.management_policy == ManagementPolicy::Manage
    }
}

/// Which kind of account a task references.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// An `MpuRelayAccount` in the task's own namespace.
    #[default]
    MpuRelayAccount,
    /// A cluster-wide `ClusterMpuRelayAccount`, usable where its `conditions` allow.
    ClusterMpuRelayAccount,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::MpuRelayAccount => "MpuRelayAccount",
            AccountKind::ClusterMpuRelayAccount => "ClusterMpuRelayAccount",
        }
    }
}

/// A reference from a task to the account it calls the cloud through.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// `MpuRelayAccount` (the default: an account in the task's namespace) or
    /// `ClusterMpuRelayAccount`.
    #[serde(default)]
    pub kind: AccountKind,
    /// Name of the account.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// What the operator last observed of the relay task.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MpuRelayTaskStatus {
    /// The raw `Status` integer that GetMPUTaskStatus returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,

    /// The task's phase, decoded from `statusCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// A human-readable explanation of the phase or of the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// `RequestId` of the last cloud call, for Alibaba Cloud support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// Ready (the relay is running), Synced (the last poll succeeded) and Stalled (polling
    /// cannot make progress without a change: bad credentials, missing Secret, unknown task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the cloud was last asked successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// When the task entered its current phase (as first observed by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,

    /// While the task waits for its channel: when the cloud will stop it (30 days after the
    /// operator first saw it waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_stop_time: Option<Time>,

    /// The interval this task asks to be polled at: `spec.pollInterval` or the phase's interval.
    /// When the account's shared budget cannot poll all of its tasks that often, it stretches
    /// it to the account's `status.budget.interval`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::duration::lenient"
    )]
    pub sync_interval: Option<Duration>,

    /// With `managementPolicy: Manage`: what the operator started, and when.
    // Boxed for the same reason as `spec.relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<Box<ManagementStatus>>,
}

impl MpuRelayTaskStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The lifecycle phase of a relay task, decoded from GetMPUTaskStatus' `Status` code:
/// WaitingForChannel (0: waiting for the channel to start; the cloud stops the task after 30
/// days), Running (1), Stopped (2), StoppedByUser (3), ChannelStopped (4: the channel stopped),
/// CdnError (5: stopped by a CDN problem), StreamUrlError (6: stopped by a streaming-URL
/// problem), Unknown (any other code; `statusCode` keeps it).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// 0: waiting for the channel to start; the cloud stops the task after 30 days of waiting.
    WaitingForChannel,
    /// 1: relaying.
    Running,
    /// 2: stopped.
    Stopped,
    /// 3: stopped by the user.
    StoppedByUser,
    /// 4: the channel stopped.
    ChannelStopped,
    /// 5: stopped by a CDN problem.
    CdnError,
    /// 6: stopped by a streaming-URL problem.
    StreamUrlError,
    /// Any other code; `statusCode` keeps the raw value.
    Unknown,
}

impl Phase {
    /// Decodes the cloud's `Status` code. Codes the operator does not know map to `Unknown`;
    /// the caller keeps the raw code in `statusCode`.
    pub fn from_code(code: i64) -> Phase {
        match code {
            0 => Phase::WaitingForChannel,
            1 => Phase::Running,
            2 => Phase::Stopped,
            3 => Phase::StoppedByUser,
            4 => Phase::ChannelStopped,
            5 => Phase::CdnError,
            6 => Phase::StreamUrlError,
            _ => Phase::Unknown,
        }
    }

    /// The name written in `status.phase` and used as a condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::WaitingForChannel => "WaitingForChannel",
            Phase::Running => "Running",
            Phase::Stopped => "Stopped",
            Phase::StoppedByUser => "StoppedByUser",
            Phase::ChannelStopped => "ChannelStopped",
            Phase::CdnError => "CdnError",
            Phase::StreamUrlError => "StreamUrlError",
            Phase::Unknown => "Unknown",
        }
    }

    /// What the phase means, in the words of the cloud's documentation.
    pub fn description(self) -> &'static str {
        match self {
            Phase::WaitingForChannel => {
                "waiting for the channel to start (the cloud stops the task after 30 days)"
            }
            Phase::Running => "the relay is running",
            Phase::Stopped => "the relay stopped",
            Phase::StoppedByUser => "the relay was stopped by the user",
            Phase::ChannelStopped => "the relay stopped because the channel stopped",
            Phase::CdnError => "the relay stopped because of a CDN problem",
            Phase::StreamUrlError => "the relay stopped because of a streaming-URL problem",
            Phase::Unknown => "the cloud returned a status code this operator does not know",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn known_status_codes_decode_to_their_phase() {
        let expected = [
            (0, Phase::WaitingForChannel),
            (1, Phase::Running),
            (2, Phase::Stopped),
            (3, Phase::StoppedByUser),
            (4, Phase::ChannelStopped),
            (5, Phase::CdnError),
            (6, Phase::StreamUrlError),
        ];
        for (code, phase) in expected {
            assert_eq!(Phase::from_code(code), phase, "code {code}");
        }
    }

    #[test]
    fn unknown_status_codes_decode_to_unknown() {
        for code in [-1, 7, 42, i64::MAX, i64::MIN] {
            assert_eq!(Phase::from_code(code), Phase::Unknown, "code {code}");
        }
    }

    #[test]
    fn phase_serializes_as_its_display_name() {
        for code in -1..=7 {
            let phase = Phase::from_code(code);
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::json!(phase.as_str())
            );
        }
    }

    #[test]
    fn account_ref_kind_defaults_to_the_namespaced_account() {
        let spec: MpuRelayTaskSpec = serde_json::from_value(serde_json::json!({
            "appId": "a", "taskId": "t", "accountRef": {"name": "live-prod"}
        }))
        .unwrap();
        let account = spec.account_ref.unwrap();
        assert_eq!(account.kind, AccountKind::MpuRelayAccount);
        assert_eq!(account.name, "live-prod");
    }

    #[test]
    fn crd_declares_names_subresource_and_columns() {
        let crd = MpuRelayTask::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("mpurelaytasks.mpurelay.io")
        );
        let names = &crd.spec.names;
        assert_eq!(names.short_names, Some(vec!["mpt".to_string()]));
        assert_eq!(
            names.categories,
            Some(vec!["mpurelay".to_string(), "alibabacloud".to_string()])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "App",
                "Task",
                "Account",
                "Policy",
                "Phase",
                "Ready",
                "Last Sync",
                "Age"
            ]
        );
    }

    #[test]
    fn crd_makes_app_and_task_ids_immutable_and_conditions_a_map() {
        let yaml = serde_json::to_string(&MpuRelayTask::crd()).unwrap();
        assert!(yaml.contains("appId is immutable"));
        assert!(yaml.contains("taskId is immutable"));
        assert!(yaml.contains("x-kubernetes-list-map-keys"));
    }
}
