//! The account kinds: what tasks call the cloud through. An account holds everything sensitive
//! or shared (credentials, the endpoint, the signature scheme and the calls-per-second limit), so
//! a task names only which relay to watch and which account to use.
//!
//! - `MpuRelayAccount` (namespaced): usable only by tasks of its own namespace; credentials from a
//!   Secret in that namespace.
//! - `ClusterMpuRelayAccount` (cluster-scoped, owned by the cluster admin): credentials from a
//!   Secret in a namespace the admin names, from RRSA or from the operator's own environment;
//!   `conditions` say which task namespaces may use it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default API host of ApsaraVideo Live, which documents `GetMPUTaskStatus`.
pub const LIVE_ENDPOINT: &str = "live.aliyuncs.com";
/// The API host of ApsaraVideo RTC, which carries the same operation in today's SDKs.
pub const RTC_ENDPOINT: &str = "rtc.aliyuncs.com";
/// Alibaba's documented limit for GetMPUTaskStatus, per account.
pub const DEFAULT_QPS: u32 = 10;
/// Share of the limit left unused by default: clocks and networks are not exact, and a call
/// landing a millisecond early must not be the eleventh in the cloud's window.
pub const DEFAULT_QPS_MARGIN_PERCENT: u8 = 3;
/// Names of the keys read from a credentials Secret. Fixed, so that a reference can never
/// point the operator at some other key of a Secret.
pub mod secret_keys {
    pub const ACCESS_KEY_ID: &str = "accessKeyId";
    pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
    pub const SECURITY_TOKEN: &str = "securityToken";
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

    /// The host called when the account names no endpoint.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            CloudApi::Live => LIVE_ENDPOINT,
            CloudApi::Rtc => RTC_ENDPOINT,
        }
    }
}

/// Which signature scheme calls are signed with.
#[derive(
    JsonSchema,
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    /// HMAC-SHA1 over the query (SignatureVersion 1.0), as the core SDK sends it.
    #[default]
    V1,
    /// ACS3-HMAC-SHA256 in the Authorization header, as today's SDKs send it.
    V3,
}

/// How to reach the cloud and how fast: the part of the spec both account kinds share.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API host to call, optionally with a scheme and port (`live.aliyuncs.com`,
    /// `https://live.cn-shanghai.aliyuncs.com`). HTTPS unless `http://` is written. It must
    /// match the operator's `--allowed-endpoints` (by default `https://*.aliyuncs.com`), or the
    /// account is not Ready (`EndpointNotAllowed`) and nothing is sent. Defaults to the API's
    /// public host (`live.aliyuncs.com` or `rtc.aliyuncs.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 263),
        regex(pattern = r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
    )]
    pub endpoint: Option<String>,

    /// Region sent as `RegionId`, e.g. `cn-shanghai`. Omitted from calls when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region_id: Option<String>,

    /// Which product API to call: `live` (ApsaraVideo Live, version 2016-11-01) or `rtc`
    /// (ApsaraVideo RTC, version 2018-01-11, which has the same operation).
    #[serde(default)]
    pub api: CloudApi,

    /// Signature scheme: `v1` (HMAC-SHA1 query signature) or `v3` (ACS3-HMAC-SHA256 header).
    #[serde(default)]
    pub signature: SignatureVersion,

    /// Calls per second the cloud allows this Alibaba Cloud account for GetMPUTaskStatus
    /// (10 unless Alibaba raised the quota). Every task of every account object that uses the
    /// same cloud account and host shares this budget; if such objects disagree, the smallest
    /// limit is used.
    #[serde(default = "default_qps")]
    #[schemars(range(min = 1, max = 10000))]
    pub qps: u32,

    /// Percent of `qps` left unused, for clock and network slack.
    #[serde(default = "default_margin")]
    #[schemars(range(min = 0, max = 50))]
    pub qps_margin_percent: u8,

    /// Per-operation limits, for accounts whose quotas Alibaba raised or lowered: e.g.
    /// `{startMPUTask: 500, getMPUTaskStatus: 10}`. Each operation has its own budget per
    /// cloud account; `qpsMarginPercent` applies to each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<OperationLimits>,

    /// Event callbacks as hints: the operator subscribes to the cloud's MPU task events for
    /// each AppId this account's tasks use, and polls a task as soon as a callback names it.
    /// Polling stays the source of truth and the backstop. Needs the operator's events endpoint
    /// (`--events-bind-address`, chart `events.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<super::EventsSpec>,
}

fn default_qps() -> u32 {
    DEFAULT_QPS
}
fn default_margin() -> u8 {
    DEFAULT_QPS_MARGIN_PERCENT
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            endpoint: None,
            region_id: None,
            api: CloudApi::default(),
            signature: SignatureVersion::default(),
            qps: DEFAULT_QPS,
            qps_margin_percent: DEFAULT_QPS_MARGIN_PERCENT,
            limits: None,
            events: None,
        }
    }
}

impl Connection {
    /// The share (0 to 0.9) of every limit left unused: `qpsMarginPercent`.
    pub fn margin(&self) -> f64 {
        f64::from(self.qps_margin_percent.min(90)) / 100.0
    }

    /// The GetMPUTaskStatus rate: `limits.getMPUTaskStatus` when set, else `qps`.
    pub fn status_qps(&self) -> u32 {
        self.limits
            .as_ref()
            .and_then(|l| l.get_mpu_task_status)
            .unwrap_or(self.qps)
    }

    /// The rate of a managed-relay operation: its `limits` entry or the documented default.
    pub fn action_qps(&self, operation: RelayOperation) -> u32 {
        let limits = self.limits.as_ref();
        match operation {
            RelayOperation::Start => limits.and_then(|l| l.start_mpu_task),
            RelayOperation::Update => limits.and_then(|l| l.update_mpu_task),
            RelayOperation::Stop => limits.and_then(|l| l.stop_mpu_task),
            RelayOperation::Subscribe => Some(DEFAULT_SUBSCRIBE_QPS),
            RelayOperation::EventRecords => Some(DEFAULT_EVENT_RECORDS_QPS),
        }
        .unwrap_or(DEFAULT_RELAY_ACTION_QPS)
    }

    /// The endpoint to call: the spec's own, or the API's default host.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or_else(|| self.api.default_endpoint())
    }
}

/// The operations other than GetMPUTaskStatus, each with its own rate per cloud account: those
/// that change a managed relay, and those of event subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayOperation {
    Start,
    Update,
    Stop,
    /// Create/Update/Describe/DeleteRtcMPUEventSub (50 calls/s each, documented; one budget
    /// for the four keeps them all under it).
    Subscribe,
    /// ListRtcMPUEventSubRecord (100 calls/s, documented).
    EventRecords,
}

impl RelayOperation {
    pub const ALL: [RelayOperation; 5] = [
        RelayOperation::Start,
        RelayOperation::Update,
        RelayOperation::Stop,
        RelayOperation::Subscribe,
        RelayOperation::EventRecords,
    ];

    /// The name used in `spec.limits`, in metrics (`operation`) and in the account's status.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayOperation::Start => "startMPUTask",
            RelayOperation::Update => "updateMPUTask",
            RelayOperation::Stop => "stopMPUTask",
            RelayOperation::Subscribe => "eventSubscription",
            RelayOperation::EventRecords => "eventRecords",
        }
    }
}

/// An account in a namespace, usable by the tasks of that namespace only.
// clippy reads the repeated `type_ = ...` of the printcolumn(...) entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mpurelay.io",
    version = "v1alpha1",
    kind = "MpuRelayAccount",
    plural = "mpurelayaccounts",
    singular = "mpurelayaccount",
    shortname = "mpa",
    category = "mpurelay",
    category = "alibabacloud",
    namespaced,
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "An Alibaba Cloud account that MpuRelayTasks of this namespace call GetMPUTaskStatus through: credentials from a Secret here, the endpoint, and the account's shared calls-per-second budget.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.tasks"),
    printcolumn(name = "Limit", type_ = "number", json_path = ".status.budget.limit"),
    printcolumn(name = "Rate", type_ = "number", json_path = ".status.budget.rate"),
    printcolumn(name = "Used", type_ = "number", json_path = ".status.budget.used"),
    printcolumn(
        name = "Interval",
        type_ = "string",
        json_path = ".status.budget.interval"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MpuRelayAccountSpec {
    #[serde(flatten)]
    pub connection: Connection,

    /// Where the AccessKey comes from.
    pub credentials: NamespacedCredentials,

    /// The Alibaba Cloud account ID (UID) these credentials belong to, if you want it checked:
    /// the operator learns the UID from STS GetCallerIdentity and refuses the account
    /// (`AccountIdMismatch`) when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,32}$"))]
    pub account_id: Option<String>,
}

/// Credentials of an `MpuRelayAccount`: a Secret in the account's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedCredentials {
    /// A Secret in the account's namespace with the keys `accessKeyId`, `accessKeySecret` and
    /// optionally `securityToken`. No other key is ever read.
    pub secret_ref: LocalSecretRef,
}

/// A Secret in the referring object's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// An account for the whole cluster, owned by the cluster admin; `conditions` say which task
/// namespaces may use it.
// clippy reads the repeated `type_ = ...` of the printcolumn(...) entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mpurelay.io",
    version = "v1alpha1",
    kind = "ClusterMpuRelayAccount",
    plural = "clustermpurelayaccounts",
    singular = "clustermpurelayaccount",
    shortname = "cmpa",
    category = "mpurelay",
    category = "alibabacloud",
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "A cluster-wide Alibaba Cloud account that MpuRelayTasks of the namespaces its conditions admit call GetMPUTaskStatus through.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.tasks"),
    printcolumn(name = "Limit", type_ = "number", json_path = ".status.budget.limit"),
    printcolumn(name = "Rate", type_ = "number", json_path = ".status.budget.rate"),
    printcolumn(name = "Used", type_ = "number", json_path = ".status.budget.used"),
    printcolumn(
        name = "Interval",
        type_ = "string",
        json_path = ".status.budget.interval"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMpuRelayAccountSpec {
    #[serde(flatten)]
    pub connection: Connection,

    /// Where the credentials come from: exactly one of `secretRef`, `rrsa` or `operator`.
    pub credentials: ClusterCredentials,

    /// The Alibaba Cloud account ID (UID) of the credentials. When set, the operator trusts it
    /// (this object is the cluster admin's) instead of asking STS GetCallerIdentity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,32}$"))]
    pub account_id: Option<String>,

    /// Which task namespaces may use this account: a namespace may if any condition admits it
    /// (a condition with both fields admits a namespace matching both). None: no namespace may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub conditions: Vec<NamespaceCondition>,
}

/// Credentials of a `ClusterMpuRelayAccount`: exactly one source.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.secretRef), has(self.rrsa), has(self.operator)].filter(x, x).size() == 1").message("credentials must set exactly one of secretRef, rrsa or operator"))]
pub struct ClusterCredentials {
    /// A Secret with the keys `accessKeyId`, `accessKeySecret` and optionally `securityToken`,
    /// in `namespace` (the operator's own namespace when unset). The operator can read it only
    /// where its RBAC allows (by default: its own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// RRSA: the operator's service-account token exchanged with STS AssumeRoleWithOIDC for this
    /// role's temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrsa: Option<RrsaRole>,
    /// The operator's own credentials: its environment (`ALIBABA_CLOUD_ACCESS_KEY_ID`/
    /// `ALIBABA_CLOUD_ACCESS_KEY_SECRET`) or the RRSA role it was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorCredentialsRef>,
}

/// A Secret in a namespace the cluster admin names.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Namespace of the Secret; the operator's own namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// A RAM role assumed through RRSA (ACK's OIDC federation).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct RrsaRole {
    /// ARN of the RAM role, `acs:ram::<uid>:role/<name>`.
    #[schemars(
        length(max = 256),
        regex(pattern = r"^acs:ram::[0-9]{1,32}:role/[A-Za-z0-9._-]{1,64}$")
    )]
    pub role_arn: String,
    /// ARN of the cluster's OIDC provider, `acs:ram::<uid>:oidc-provider/<name>`.
    #[schemars(
        length(max = 256),
        regex(pattern = r"^acs:ram::[0-9]{1,32}:oidc-provider/[A-Za-z0-9._-]{1,128}$")
    )]
    pub oidc_provider_arn: String,
}

/// Selects the operator's own credentials (no fields).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorCredentialsRef {}

/// Task namespaces a `ClusterMpuRelayAccount` admits.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaces) || has(self.namespaceSelector)").message("a condition needs namespaces or a namespaceSelector"))]
pub struct NamespaceCondition {
    /// Namespaces admitted by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    pub namespaces: Option<Vec<String>>,
    /// Namespaces admitted by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Whether tasks of these namespaces may manage relays through this account (start,
    /// update, restart, stop: `managementPolicy: Manage`). False by default: they may only
    /// observe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manage: bool,
    /// With `manage: true`: whether their tasks may take over a relay that already runs under
    /// their TaskId (`spec.adopt`), which someone else may have started. `Forbidden` by default.
    #[serde(default, skip_serializing_if = "Adoption::is_forbidden")]
    pub adoption: Adoption,
}

/// Whether a cluster account lets tasks adopt relays they did not start.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Adoption {
    #[default]
    Forbidden,
    Allowed,
}

impl Adoption {
    fn is_forbidden(&self) -> bool {
        *self == Adoption::Forbidden
    }
}

/// Calls per second the cloud allows each managed-relay operation, per Alibaba Cloud account.
/// Unset fields take Alibaba's documented limits.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperationLimits {
    /// GetMPUTaskStatus; when set, it replaces `qps`.
    #[serde(
        default,
        rename = "getMPUTaskStatus",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 10000))]
    pub get_mpu_task_status: Option<u32>,
    /// StartLiveMPUTask (documented: 500).
    #[serde(
        default,
        rename = "startMPUTask",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 10000))]
    pub start_mpu_task: Option<u32>,
    /// UpdateLiveMPUTask (documented: 500).
    #[serde(
        default,
        rename = "updateMPUTask",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 10000))]
    pub update_mpu_task: Option<u32>,
    /// StopLiveMPUTask (documented: 500).
    #[serde(
        default,
        rename = "stopMPUTask",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 10000))]
    pub stop_mpu_task: Option<u32>,
}

/// Alibaba's documented limit of StartLiveMPUTask, UpdateLiveMPUTask and StopLiveMPUTask.
pub const DEFAULT_RELAY_ACTION_QPS: u32 = 500;
/// Alibaba's documented limit of each event subscription operation, per account.
pub const DEFAULT_SUBSCRIBE_QPS: u32 = 50;
/// Alibaba's documented limit of ListRtcMPUEventSubRecord, per account.
pub const DEFAULT_EVENT_RECORDS_QPS: u32 = 100;

/// What the operator knows of an account: whether tasks can use it, and its budget.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// Ready (credentials resolved, endpoint allowed, last call not refused for
    /// authentication) and Throttled (the cloud throttled the account; its budget runs below
    /// the limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Tasks that reference this account.
    #[serde(default)]
    pub tasks: u32,

    /// The budget of the cloud account (UID and host) these credentials call; shared by every
    /// account object that uses the same cloud account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,

    /// Its event subscriptions and callbacks (with `spec.events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<super::EventsStatus>,
}

/// A cloud account's budget as the operator runs it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// Tasks sharing the budget, across every account object of the same cloud account.
    pub tasks: u32,
    /// The cloud's limit, calls per second.
    pub limit: f64,
    /// Calls per second the budget currently allows (below the limit less its margin after the
    /// cloud throttled).
    pub rate: f64,
    /// Calls per second actually made, over the last ten seconds.
    pub used: f64,
    /// Calls the cloud answered with a throttling error since the operator started.
    pub throttled: u64,
    /// The managed-relay operations called through the cloud account since the operator
    /// started, each with its own limit (`spec.limits`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["operation".into()]))]
    pub operations: Vec<OperationUse>,
    /// The shortest interval every task of the budget can be polled at (max-min fair: tasks
    /// asking for longer intervals keep them, the rest share what remains).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::duration::lenient"
    )]
    pub interval: Option<Duration>,
}

/// One managed-relay operation's use of its cloud account's budget.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperationUse {
    /// `startMPUTask`, `updateMPUTask` or `stopMPUTask`.
    #[schemars(length(max = 32))]
    pub operation: String,
    /// Its calls per second (`spec.limits` or the documented default).
    pub limit: u32,
    /// Calls made since the operator started.
    pub calls: u64,
    /// Of which the cloud throttled.
    pub throttled: u64,
}

/// Shared access to both account kinds' specs.
pub trait AccountSpec {
    fn connection(&self) -> &Connection;
    /// The declared cloud account ID.
    fn account_id(&self) -> Option<&str>;
}

impl AccountSpec for MpuRelayAccountSpec {
    fn connection(&self) -> &Connection {
        &self.connection
    }
    fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }
}

impl AccountSpec for ClusterMpuRelayAccountSpec {
    fn connection(&self) -> &Connection {
        &self.connection
    }
    fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }
}

impl AccountStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn account_spec_defaults_to_live_v1_at_ten_calls_per_second() {
        let spec: MpuRelayAccountSpec = serde_json::from_value(serde_json::json!({
            "credentials": {"secretRef": {"name": "ak"}}
        }))
        .unwrap();
        assert_eq!(spec.connection.endpoint(), "live.aliyuncs.com");
        assert_eq!(spec.connection.api, CloudApi::Live);
        assert_eq!(spec.connection.signature, SignatureVersion::V1);
        assert_eq!(spec.connection.qps, 10);
        assert_eq!(spec.connection.qps_margin_percent, 3);
        let rtc: MpuRelayAccountSpec = serde_json::from_value(serde_json::json!({
            "api": "rtc", "signature": "v3", "credentials": {"secretRef": {"name": "ak"}}
        }))
        .unwrap();
        assert_eq!(rtc.connection.endpoint(), "rtc.aliyuncs.com");
        assert_eq!(rtc.connection.api.version(), "2018-01-11");
    }

    #[test]
    fn namespaced_account_secret_ref_has_no_namespace_or_key_overrides() {
        let crd = serde_json::to_value(MpuRelayAccount::crd()).unwrap();
        let secret_ref = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["credentials"]["properties"]["secretRef"];
        let fields: Vec<&String> = secret_ref["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(fields, ["name"]);
    }

    #[test]
    fn both_kinds_print_readiness_tasks_and_budget_columns() {
        for crd in [MpuRelayAccount::crd(), ClusterMpuRelayAccount::crd()] {
            let columns: Vec<_> = crd.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(
                columns,
                ["Ready", "Tasks", "Limit", "Rate", "Used", "Interval", "Age"]
            );
            assert_eq!(
                crd.spec.names.categories,
                Some(vec!["mpurelay".to_string(), "alibabacloud".to_string()])
            );
        }
        assert_eq!(MpuRelayAccount::crd().spec.scope, "Namespaced");
        assert_eq!(ClusterMpuRelayAccount::crd().spec.scope, "Cluster");
    }
}
