//! What a managed `MpuRelayTask` declares: whether the operator manages the relay at all
//! (`managementPolicy`), what deleting the object does (`deletionPolicy`), when a stopped relay
//! is started again (`restartPolicy`), and the relay itself (`relay`), which mirrors
//! StartLiveMPUTask's parameters in camelCase. `status.management` records what the operator did.
//!
//! The bounds are the cloud's documented ones, enforced by the API server (OpenAPI and CEL), so
//! that a relay the cloud would refuse is refused at `kubectl apply` with the reason.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the operator only watches the cloud task or owns its lifecycle.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ManagementPolicy {
    /// Poll the task's status; never start, change or stop it.
    #[default]
    Observe,
    /// Start the relay from `spec.relay`, update it when the spec changes, restart it under
    /// `restartPolicy`, and stop it on deletion under `deletionPolicy`.
    Manage,
}

/// What deleting a managed object does to its cloud relay.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    /// Stop the relay (StopLiveMPUTask), then let the object go.
    #[default]
    Delete,
    /// Leave the relay running; the object goes at once.
    Orphan,
}

/// When a managed relay the cloud stopped is started again.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Never.
    Never,
    /// After a failure: the channel stopped (4), a CDN problem (5), a streaming-URL problem (6).
    #[default]
    OnFailure,
    /// Also after a plain stop (2). A relay a user stopped (3) is never restarted.
    Always,
}

/// `MixMode`: one user's stream relayed as it is, or several users mixed and transcoded.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RelayMixMode {
    /// `MixMode=0`: relay one user's stream (`singleSubParams` says whose).
    Single,
    /// `MixMode=1` (the cloud's default): mix several users (`transcodeParams` says how).
    #[default]
    Mixed,
}

/// Where the cloud runs the relay (`Region`).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelayRegion {
    #[serde(rename = "CN-Shanghai")]
    CnShanghai,
    #[serde(rename = "AP-Singapore")]
    ApSingapore,
    #[serde(rename = "EMAA-Saudi")]
    EmaaSaudi,
}

impl RelayRegion {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayRegion::CnShanghai => "CN-Shanghai",
            RelayRegion::ApSingapore => "AP-Singapore",
            RelayRegion::EmaaSaudi => "EMAA-Saudi",
        }
    }
}

/// A relay as StartLiveMPUTask takes it (Live 2016-11-01), in camelCase.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.streamURL) != has(self.multiStreamURL)").message("set exactly one output: streamURL or multiStreamURL"),
    validation = Rule::new("self.mixMode != 'Single' || has(self.singleSubParams)").message("mixMode Single needs singleSubParams (whose stream to relay)"),
    validation = Rule::new("self.mixMode != 'Mixed' || has(self.transcodeParams)").message("mixMode Mixed needs transcodeParams (how to mix)"),
    validation = Rule::new("self.channelId == oldSelf.channelId && has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region) && has(self.maxIdleTime) == has(oldSelf.maxIdleTime) && (!has(self.maxIdleTime) || self.maxIdleTime == oldSelf.maxIdleTime)").message("relay.channelId, relay.region and relay.maxIdleTime cannot change: the cloud cannot move a relay to another channel or region, nor change its idle time; create a new MpuRelayTask instead")
)]
pub struct RelaySpec {
    /// The RTC channel to relay (`ChannelId`). Cannot change: a relay never moves channel;
    /// create a new object instead.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub channel_id: String,

    /// `Single` (MixMode 0: one user's stream) or `Mixed` (MixMode 1, the default).
    #[serde(default)]
    pub mix_mode: RelayMixMode,

    /// The RTMP URL the relay pushes to (`StreamURL`). Exactly one of `streamURL` and
    /// `multiStreamURL`. One ingest URL serves one relay, and the cloud refuses to reuse it for
    /// 10 s after its relay stopped.
    #[serde(default, rename = "streamURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^rtmps?://[^\s]+$"))]
    pub stream_url: Option<String>,

    /// Several RTMP URLs (`MultiStreamURL`), each with `isAliCdn`.
    #[serde(
        default,
        rename = "multiStreamURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 10))]
    pub multi_stream_url: Option<Vec<RelayStreamUrl>>,

    /// Whose stream a `Single` relay carries (`SingleSubParams`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_sub_params: Option<RelaySingleSubParams>,

    /// How a `Mixed` relay composes its users (`TranscodeParams`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcode_params: Option<RelayTranscodeParams>,

    /// `CN-Shanghai`, `AP-Singapore` or `EMAA-Saudi` (`Region`). Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RelayRegion>,

    /// Seconds the relay keeps running with nobody in its channel (`MaxIdleTime`, 10 to 86400;
    /// the cloud's default is 120). Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86400))]
    pub max_idle_time: Option<u32>,
}

/// One entry of `multiStreamURL`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayStreamUrl {
    /// RTMP URL to push to.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^rtmps?://[^\s]+$"))]
    pub url: String,
    /// Whether the URL is Alibaba Cloud CDN's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_ali_cdn: Option<bool>,
}

/// Which stream of a user a relay carries: the camera or the shared screen.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelaySourceType {
    #[serde(rename = "camera")]
    Camera,
    #[serde(rename = "shareScreen")]
    ShareScreen,
}

impl RelaySourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            RelaySourceType::Camera => "camera",
            RelaySourceType::ShareScreen => "shareScreen",
        }
    }
}

/// `SingleSubParams`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelaySingleSubParams {
    /// The user whose stream is relayed.
    #[schemars(length(min = 1, max = 64))]
    pub user_id: String,
    /// 0 (the default: the stream the user publishes), 1 (big), 2 (small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub stream_type: Option<u8>,
    /// `camera` or `shareScreen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<RelaySourceType>,
}

/// `TranscodeParams`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RelayTranscodeParams {
    /// Where each user appears in the mixed picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<RelayLayout>,
    /// Output encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_params: Option<RelayEncodeParams>,
    /// What fills the picture behind the panes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<RelayBackground>,
    /// The users mixed (none: every user of the channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub user_infos: Vec<RelayUserInfo>,
}

/// `Layout`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RelayLayout {
    /// The panes of the mixed picture.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub user_panes: Vec<RelayUserPane>,
}

/// One pane of the mixed picture. Coordinates and sizes are fractions of the picture (0 to 1)
/// and a pane stays inside it. `left` and `top` are the cloud's `X` and `Y`, named so because
/// YAML 1.1 (kubectl's) reads a bare `y` or `Y` key as `true`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.left) || !has(self.width) || self.left + self.width <= 1.0").message("a pane must stay inside the picture: left + width <= 1"),
    validation = Rule::new("!has(self.top) || !has(self.height) || self.top + self.height <= 1.0").message("a pane must stay inside the picture: top + height <= 1")
)]
pub struct RelayUserPane {
    /// Left edge (`X`), 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub left: Option<f64>,
    /// Top edge (`Y`), 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top: Option<f64>,
    /// Width, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub width: Option<f64>,
    /// Height, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub height: Option<f64>,
    /// Stacking order, 0 (bottom) to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub z_order: Option<u8>,
    /// 0 crop to fill, 1 fit inside, 2 stretch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub render_mode: Option<u8>,
    /// Image shown while the pane's user sends no video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub background_image_url: Option<String>,
    /// Who the pane shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<RelayPaneUser>,
}

/// The user a pane shows.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayPaneUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub user_id: Option<String>,
    /// Another channel of the app, for cross-channel mixing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<RelaySourceType>,
}

/// A user mixed.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayUserInfo {
    #[schemars(length(min = 1, max = 64))]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<RelaySourceType>,
    /// 0 (default), 1 (big), 2 (small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub stream_type: Option<u8>,
}

/// `EncodeParams`: the mixed output's encoding.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayEncodeParams {
    /// Video width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 7680))]
    pub video_width: Option<u32>,
    /// Video height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4320))]
    pub video_height: Option<u32>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub video_framerate: Option<u32>,
    /// Video bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub video_bitrate: Option<u32>,
    /// Frames between key frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub video_gop: Option<u32>,
    /// e.g. `H.264`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub video_codec: Option<String>,
    /// Audio bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub audio_bitrate: Option<u32>,
    /// Audio sample rate, Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8000, max = 96000))]
    pub audio_sample_rate: Option<u32>,
    /// 1 or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2))]
    pub audio_channels: Option<u8>,
    /// Relay the audio only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_only: Option<bool>,
    /// Encoder settings as the cloud's JSON text, e.g. `{"profile":"main","preset":"superfast"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 512))]
    pub enhanced_param: Option<String>,
}

/// `Background`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayBackground {
    /// Image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: Option<String>,
    /// 0 crop to fill, 1 fit inside, 2 stretch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub render_mode: Option<u8>,
}

/// What the operator did to a managed relay: the record that makes it the relay's owner.
///
/// `starting` is written before StartLiveMPUTask is sent, `startedAt` after the cloud accepted
/// it: a restart between the two looks at the cloud before starting again, so it never sends a
/// second Start for the same intent.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagementStatus {
    /// A Start about to be sent (or sent without an answer yet): for which spec, since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting: Option<StartIntent>,
    /// When this object's relay was started (or adopted). Unset: this object owns no relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Hash of the relay parameters the cloud runs (as last started or updated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub spec_hash: Option<String>,
    /// True when the relay was running before this object managed it (`spec.adopt`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// Restarts since the relay last ran ten minutes: the next one waits 10 s x 2^restarts,
    /// at most 5 min.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// When the operator last (re)started the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time: Option<Time>,
    /// The operator's signature of this record (over the object's UID, the task and the
    /// times above): a record without it, or copied from another object, makes no one owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub proof: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A Start the operator is about to send.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartIntent {
    #[schemars(length(max = 64))]
    pub spec_hash: String,
    pub since: Time,
}
