//! The `MpuRelayTask` API (`mpurelay.io/v1alpha1`): spec and status types, the decoding of the
//! cloud's status codes, condition names, and the CRD generated from these types.
//!
//! Doc comments on the types become the CRD's field descriptions, so they are written for someone
//! reading `kubectl explain mpurelaytask.spec`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every object this operator owns.
pub const GROUP: &str = "mpurelay.io";
/// File name of the generated CRD under `crds/` (and the chart's `crds/`).
pub const CRD_FILE_NAME: &str = "mpurelaytasks.mpurelay.io.yaml";

/// The default API host of ApsaraVideo Live, which documents `GetMPUTaskStatus`.
pub const LIVE_ENDPOINT: &str = "live.aliyuncs.com";
/// The API host of ApsaraVideo RTC, which carries the same operation in today's SDKs.
pub const RTC_ENDPOINT: &str = "rtc.aliyuncs.com";

/// The desired state of an MpuRelayTask: which cloud relay task to observe and how.
///
/// The operator only observes: it never starts or stops the task in the cloud.
// clippy reads the repeated `type_ = ...` of the printcolumn(...) entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
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
    doc = "An Alibaba Cloud ApsaraVideo Live stream relay (MPU) task, observed through GetMPUTaskStatus.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.appId"),
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.taskId"),
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

    /// API host to call, optionally with a scheme and port (`live.aliyuncs.com`,
    /// `https://live.cn-shanghai.aliyuncs.com`, `http://127.0.0.1:8080`). HTTPS unless `http://`
    /// is written explicitly. Defaults to `live.aliyuncs.com` for `api: live` and
    /// `rtc.aliyuncs.com` for `api: rtc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
    )]
    pub endpoint: Option<String>,

    /// Region of the task (`RegionId`), e.g. `cn-shanghai`. Omitted from the call when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region_id: Option<String>,

    /// Which product API to call: `live` (ApsaraVideo Live, version 2016-11-01) or `rtc`
    /// (ApsaraVideo RTC, version 2018-01-11, which has the same operation).
    #[serde(default)]
    pub api: CloudApi,

    /// Secret in this namespace holding the AccessKey to call the API with. When unset, the
    /// operator's own credentials are used (environment or RRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,

    /// How often to poll this task, overriding the operator's interval for the task's phase
    /// (Go duration syntax: `30s`, `5m`, `1h30m`). The account's shared rate budget may stretch
    /// it; `status.syncInterval` shows the interval in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub poll_interval: Option<Duration>,

    /// Stop polling this task while true. The last observed status is kept.
    #[serde(default)]
    pub suspend: bool,
}

/// The product API that serves GetMPUTaskStatus.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CloudApi {
    /// ApsaraVideo Live, API version 2016-11-01.
    #[default]
    Live,
    /// ApsaraVideo RTC, API version 2018-01-11.
    Rtc,
}

impl CloudApi {
    /// The `Version` parameter sent with each call.
    pub fn version(self) -> &'static str {
        match self {
            CloudApi::Live => "2016-11-01",
            CloudApi::Rtc => "2018-01-11",
        }
    }

    /// The host called when the spec names no endpoint.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            CloudApi::Live => LIVE_ENDPOINT,
            CloudApi::Rtc => RTC_ENDPOINT,
        }
    }
}

impl MpuRelayTaskSpec {
    /// The endpoint to call: the spec's own, or the API's default host.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or_else(|| self.api.default_endpoint())
    }
}

/// A reference to a Secret in the task's namespace holding an Alibaba Cloud AccessKey.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the AccessKey ID in the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the AccessKey secret in the Secret.
    #[serde(default = "default_access_key_secret_key")]
    pub access_key_secret_key: String,
    /// Key of the STS security token in the Secret, used when present.
    #[serde(default = "default_security_token_key")]
    pub security_token_key: String,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".into()
}
fn default_access_key_secret_key() -> String {
    "accessKeySecret".into()
}
fn default_security_token_key() -> String {
    "securityToken".into()
}

impl CredentialsSecretRef {
    /// A reference to `name` with the default key names.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            access_key_id_key: default_access_key_id_key(),
            access_key_secret_key: default_access_key_secret_key(),
            security_token_key: default_security_token_key(),
        }
    }
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

    /// The poll interval in effect: the phase's interval or `spec.pollInterval`, stretched when
    /// the account's shared rate budget cannot poll all of its tasks that often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<Duration>,
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

    /// True for the phases in which the relay has ended (codes 2..6).
    pub fn is_stopped(self) -> bool {
        !matches!(
            self,
            Phase::WaitingForChannel | Phase::Running | Phase::Unknown
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types written to `status.conditions` (kstatus style, so `kubectl wait`, Flux and
/// Argo CD understand them).
pub mod conditions {
    /// True only while the relay is running; otherwise False with the phase as reason.
    pub const READY: &str = "Ready";
    /// Whether the last poll of the cloud succeeded, and if not, why.
    pub const SYNCED: &str = "Synced";
    /// True when polling cannot make progress until something changes (spec, Secret, account).
    pub const STALLED: &str = "Stalled";
}

/// The CRD as YAML, exactly as `crds/` and the chart ship it.
pub fn crd_yaml() -> String {
    let crd = MpuRelayTask::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes to YAML");
    format!(
        "# Generated from the Rust types by `mpu-relay-operator crd`. Do not edit by hand.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_codes_two_to_six_count_as_stopped() {
        let stopped: Vec<i64> = (-1..=8)
            .filter(|c| Phase::from_code(*c).is_stopped())
            .collect();
        assert_eq!(stopped, vec![2, 3, 4, 5, 6]);
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
    fn endpoint_defaults_follow_the_api() {
        let mut spec: MpuRelayTaskSpec =
            serde_json::from_value(serde_json::json!({"appId": "a", "taskId": "t"})).unwrap();
        assert_eq!(spec.api, CloudApi::Live);
        assert_eq!(spec.endpoint(), "live.aliyuncs.com");
        assert_eq!(spec.api.version(), "2016-11-01");
        spec.api = CloudApi::Rtc;
        assert_eq!(spec.endpoint(), "rtc.aliyuncs.com");
        assert_eq!(spec.api.version(), "2018-01-11");
        spec.endpoint = Some("http://127.0.0.1:8080".into());
        assert_eq!(spec.endpoint(), "http://127.0.0.1:8080");
    }

    #[test]
    fn secret_ref_key_names_default_to_the_documented_ones() {
        let r: CredentialsSecretRef =
            serde_json::from_value(serde_json::json!({"name": "ak"})).unwrap();
        assert_eq!(r, CredentialsSecretRef::named("ak"));
        assert_eq!(r.access_key_id_key, "accessKeyId");
        assert_eq!(r.access_key_secret_key, "accessKeySecret");
        assert_eq!(r.security_token_key, "securityToken");
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
            ["App", "Task", "Phase", "Ready", "Last Sync", "Age"]
        );
    }

    #[test]
    fn crd_makes_app_and_task_ids_immutable_and_conditions_a_map() {
        let yaml = crd_yaml();
        assert!(yaml.contains("appId is immutable"));
        assert!(yaml.contains("taskId is immutable"));
        assert!(yaml.contains("x-kubernetes-list-map-keys"));
    }
}
