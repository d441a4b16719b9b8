//! Event callbacks as hints (issue 27): what an account asks for (`spec.events`) and what the
//! operator reports of them (`status.events`, condition `EventsReady`).
//!
//! A callback from the cloud is only ever a hint that a task changed: it makes the operator poll
//! that task now (through the account's budget), and nothing from its body is written anywhere.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use kube::core::Duration;
use serde::{Deserialize, Serialize};

/// The share of an account's calls hinted polls may take, by default.
pub const DEFAULT_HINT_SHARE_PERCENT: u8 = 50;
/// The most AppIds an account holds subscriptions for: one subscription (and one cloud call to
/// keep it) per AppId its tasks use.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// `spec.events`: subscribe to the cloud's MPU task events and poll a task as soon as one says
/// it changed.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventsSpec {
    /// Where the cloud reaches the operator's events endpoint (`--events-bind-address`, exposed
    /// by the chart's events Service or Ingress), e.g. `https://mpu-events.example.com/hooks`.
    /// The operator registers this URL plus a path of its own per AppId, carrying an unguessable
    /// token; callbacks without a valid token are refused. HTTPS only: the token is in the URL.
    #[schemars(
        length(min = 9, max = 1500),
        regex(pattern = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
    )]
    #[serde(rename = "callbackURL")]
    pub callback_url: String,

    /// The share of the account's GetMPUTaskStatus rate that polls hinted by callbacks may take,
    /// in percent (1 to 90): ordinary polling keeps the rest whatever the callbacks say.
    #[serde(default = "default_hint_share")]
    #[schemars(range(min = 1, max = 90))]
    pub hint_share_percent: u8,

    /// While this account's events are healthy (EventsReady), its tasks are polled at most this
    /// often as a backstop (at least their own interval), e.g. `10m`: a change is brought in by
    /// its callback in seconds, and the polls left over go to the other tasks. Unset: tasks keep
    /// their intervals. 1m to 24h.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::duration::lenient"
    )]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('24h')").message("backstopInterval must be between 1m and 24h"))]
    pub backstop_interval: Option<Duration>,

    /// Change it (to any other number) to rotate the tokens in the callback URLs: every
    /// subscription is updated to a new token, and the old one is refused from then on.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 1000000))]
    pub token_rotation: u32,
}

fn default_hint_share() -> u8 {
    DEFAULT_HINT_SHARE_PERCENT
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventsSpec {
    /// The hinted polls' share of the rate, 0.01 to 0.9.
    pub fn hint_share(&self) -> f64 {
        f64::from(self.hint_share_percent.clamp(1, 90)) / 100.0
    }
}

/// `status.events`: the account's subscriptions and what its callbacks did.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventsStatus {
    /// The subscriptions the operator made for this account, one per AppId its tasks use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["appId".into()]))]
    pub subscriptions: Vec<SubscriptionStatus>,
    /// When the last valid callback arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Time>,
    /// Valid callbacks received since the operator started.
    #[serde(default)]
    pub delivered: u64,
    /// Callbacks refused (bad token, oversized, unreadable) since the operator started.
    #[serde(default)]
    pub refused: u64,
    /// The backstop interval in force while events are healthy (`spec.events.backstopInterval`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::duration::lenient"
    )]
    pub backstop_interval: Option<Duration>,
}

/// One subscription.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    #[schemars(length(max = 64))]
    pub app_id: String,
    /// The cloud's `SubId`.
    #[schemars(length(max = 128))]
    pub sub_id: String,
}
