//! The wire form of the managed-relay operations of Live 2016-11-01 (StartLiveMPUTask,
//! UpdateLiveMPUTask, StopLiveMPUTask, ListRtcMPUTaskDetail), exactly as Alibaba's official SDK
//! of today (`alibabacloud-live20161101`, the Tea SDK) sends them, so that a request signed here
//! is the request that SDK would sign for the same relay.
//!
//! What that SDK does (captured, docs/research/live-mpu/):
//! - every parameter in the query string of a `POST /`, the body empty;
//! - each nested block (`SingleSubParams`, `TranscodeParams`, `SeiParams`, `MultiStreamURL`) as
//!   one JSON string: compact, keys in the alphabetical order of their wire names, unset fields
//!   left out but lists always present (`"UserInfos":[]`, `"UserPanes":[]`), every leaf a string
//!   but `IsAliCdn`, text as raw UTF-8.
//!
//! The structs below are those blocks: their fields are declared in wire-name order, which is
//! the order serde writes them in, and a test holds that order to the SDK's captured bytes.
//! Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::api;

/// The operations, by their `Action` names.
pub mod actions {
    pub const START: &str = "StartLiveMPUTask";
    pub const UPDATE: &str = "UpdateLiveMPUTask";
    pub const STOP: &str = "StopLiveMPUTask";
    pub const LIST_DETAIL: &str = "ListRtcMPUTaskDetail";
}

/// The API version of all four.
pub const VERSION: &str = "2016-11-01";

/// `MixMode`: one user's stream relayed as it is, or several mixed and transcoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixMode {
    Single,
    Mixed,
}

impl MixMode {
    pub fn wire(self) -> &'static str {
        match self {
            MixMode::Single => "0",
            MixMode::Mixed => "1",
        }
    }
}

/// Where the relay is pushed: one `StreamURL`, or several (`MultiStreamURL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Single(String),
    Multi(Vec<StreamUrl>),
}

/// One entry of `MultiStreamURL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamUrl {
    #[serde(rename = "IsAliCdn", default, skip_serializing_if = "Option::is_none")]
    pub is_ali_cdn: Option<bool>,
    #[serde(rename = "URL")]
    pub url: String,
}

/// `SingleSubParams`: whose stream a single-stream relay carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SingleSubParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_type: Option<String>,
    pub user_id: String,
}

/// `TranscodeParams`: how a mixed relay composes its users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TranscodeParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_params: Option<EncodeParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// Always sent, `[]` when empty (every user of the channel is mixed).
    #[serde(default)]
    pub user_infos: Vec<UserInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Background {
    #[serde(
        rename = "RenderMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub render_mode: Option<String>,
    #[serde(rename = "URL", default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EncodeParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bitrate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_channels: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_only: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_sample_rate: Option<String>,
    /// Itself a JSON string (`{"profile":..,"preset":..}`), sent as such inside the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced_param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_bitrate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_framerate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_gop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_height: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_width: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Layout {
    /// Always sent, `[]` when empty.
    #[serde(default)]
    pub user_panes: Vec<UserPane>,
}

/// One pane of the mixed picture; coordinates and sizes are normalized (0 to 1) and sent as the
/// strings they were written as (`"0.5"` stays `"0.5"`, `"0.50"` stays `"0.50"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPane {
    #[serde(
        rename = "BackgroundImageUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub background_image_url: Option<String>,
    #[serde(rename = "Height", default, skip_serializing_if = "Option::is_none")]
    pub height: Option<String>,
    #[serde(
        rename = "RenderMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub render_mode: Option<String>,
    #[serde(rename = "UserInfo", default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<PaneUser>,
    #[serde(rename = "Width", default, skip_serializing_if = "Option::is_none")]
    pub width: Option<String>,
    #[serde(rename = "X", default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(rename = "Y", default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(rename = "ZOrder", default, skip_serializing_if = "Option::is_none")]
    pub z_order: Option<String>,
}

/// The user a pane shows (no `StreamType` here, unlike [`UserInfo`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PaneUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// A user subscribed for mixing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UserInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_type: Option<String>,
    pub user_id: String,
}

/// `SeiParams`. `PayloadType` is StartLiveMPUTask's only: UpdateLiveMPUTask has no such field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SeiParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout_volume: Option<SeiTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_through: Option<PassThrough>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SeiTiming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_idr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PassThrough {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_idr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content_key: Option<String>,
}

/// A relay as the cloud is asked to run it: everything StartLiveMPUTask takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    pub app_id: String,
    pub channel_id: String,
    pub task_id: String,
    pub mix_mode: MixMode,
    pub output: Output,
    pub single_sub_params: Option<SingleSubParams>,
    pub transcode_params: Option<TranscodeParams>,
    pub sei_params: Option<SeiParams>,
    /// `CN-Shanghai`, `AP-Singapore` or `EMAA-Saudi`; fixed once started.
    pub region: Option<String>,
    /// Seconds; fixed once started.
    pub max_idle_time: Option<u32>,
}

impl Relay {
    /// The relay `spec` declares for task `task_id` of app `app_id`, in the wire form: numbers
    /// as the strings the SDK sends (`0.5` as `"0.5"`, `1` as `"1.0"` for a fraction), enums
    /// by their wire names.
    pub fn from_spec(app_id: &str, task_id: &str, spec: &api::RelaySpec) -> Relay {
        let text = |n: Option<u32>| n.map(|n| n.to_string());
        let small = |n: Option<u8>| n.map(|n| n.to_string());
        // As Python's `str(float)` writes it (`1.0`, `0.5`), which is what the SDK's users pass.
        let fraction = |f: Option<f64>| f.map(|f| format!("{f:?}"));
        let source = |s: Option<api::RelaySourceType>| s.map(|s| s.as_str().to_owned());
        let output = match (&spec.stream_url, &spec.multi_stream_url) {
            (Some(url), _) => Output::Single(url.clone()),
            (None, urls) => Output::Multi(
                urls.iter()
                    .flatten()
                    .map(|u| StreamUrl {
                        is_ali_cdn: u.is_ali_cdn,
                        url: u.url.clone(),
                    })
                    .collect(),
            ),
        };
        let transcode_params = spec.transcode_params.as_ref().map(|t| TranscodeParams {
            background: t.background.as_ref().map(|b| Background {
                render_mode: small(b.render_mode),
                url: b.url.clone(),
            }),
            encode_params: t.encode_params.as_ref().map(|e| EncodeParams {
                audio_bitrate: text(e.audio_bitrate),
                audio_channels: small(e.audio_channels),
                audio_only: e.audio_only.map(|b| b.to_string()),
                audio_sample_rate: text(e.audio_sample_rate),
                enhanced_param: e.enhanced_param.clone(),
                video_bitrate: text(e.video_bitrate),
                video_codec: e.video_codec.clone(),
                video_framerate: text(e.video_framerate),
                video_gop: text(e.video_gop),
                video_height: text(e.video_height),
                video_width: text(e.video_width),
            }),
            layout: t.layout.as_ref().map(|l| Layout {
                user_panes: l
                    .user_panes
                    .iter()
                    .map(|p| UserPane {
                        background_image_url: p.background_image_url.clone(),
                        height: fraction(p.height),
                        render_mode: small(p.render_mode),
                        user_info: p.user_info.as_ref().map(|u| PaneUser {
                            channel_id: u.channel_id.clone(),
                            source_type: source(u.source_type),
                            user_id: u.user_id.clone(),
                        }),
                        width: fraction(p.width),
                        x: fraction(p.left),
                        y: fraction(p.top),
                        z_order: small(p.z_order),
                    })
                    .collect(),
            }),
            user_infos: t
                .user_infos
                .iter()
                .map(|u| UserInfo {
                    channel_id: u.channel_id.clone(),
                    source_type: source(u.source_type),
                    stream_type: small(u.stream_type),
                    user_id: u.user_id.clone(),
                })
                .collect(),
        });
        Relay {
            app_id: app_id.to_owned(),
            channel_id: spec.channel_id.clone(),
            task_id: task_id.to_owned(),
            mix_mode: match spec.mix_mode {
                api::RelayMixMode::Single => MixMode::Single,
                api::RelayMixMode::Mixed => MixMode::Mixed,
            },
            output,
            single_sub_params: spec.single_sub_params.as_ref().map(|p| SingleSubParams {
                source_type: source(p.source_type),
                stream_type: small(p.stream_type),
                user_id: p.user_id.clone(),
            }),
            transcode_params,
            sei_params: None,
            region: spec.region.map(|r| r.as_str().to_owned()),
            max_idle_time: spec.max_idle_time,
        }
    }

    /// A short digest of everything the relay runs with (StartLiveMPUTask's parameters): two
    /// specs that would start the same relay have the same hash.
    pub fn spec_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for (name, value) in self.start_params() {
            digest.update(name.as_bytes());
            digest.update([0]);
            digest.update(value.as_bytes());
            digest.update([0]);
        }
        hex::encode(&digest.finalize()[..8])
    }
}

/// A block as the SDK writes it: compact JSON, fields in declaration (= wire-name) order.
fn block<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| unreachable!("plain structs of strings"))
}

impl Relay {
    /// StartLiveMPUTask's parameters, by wire name (the signer sorts them, as the SDK does).
    pub fn start_params(&self) -> Vec<(&'static str, String)> {
        let mut p = self.common_params();
        if let Some(region) = &self.region {
            p.push(("Region", region.clone()));
        }
        if let Some(idle) = self.max_idle_time {
            p.push(("MaxIdleTime", idle.to_string()));
        }
        p.sort_by_key(|(k, _)| *k);
        p
    }

    /// UpdateLiveMPUTask's parameters: what Start sends but `Region` and `MaxIdleTime`, which
    /// cannot change, and `SeiParams.PayloadType`, which Update does not take.
    pub fn update_params(&self) -> Vec<(&'static str, String)> {
        let mut p = self.common_params();
        if let Some((_, sei)) = p.iter_mut().find(|(k, _)| *k == "SeiParams") {
            let mut without = self.sei_params.clone().unwrap_or_default();
            without.payload_type = None;
            *sei = block(&without);
        }
        p.sort_by_key(|(k, _)| *k);
        p
    }

    fn common_params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("AppId", self.app_id.clone()),
            ("ChannelId", self.channel_id.clone()),
            ("MixMode", self.mix_mode.wire().to_owned()),
            ("TaskId", self.task_id.clone()),
        ];
        match &self.output {
            Output::Single(url) => p.push(("StreamURL", url.clone())),
            Output::Multi(urls) => p.push(("MultiStreamURL", block(urls))),
        }
        if let Some(single) = &self.single_sub_params {
            p.push(("SingleSubParams", block(single)));
        }
        if let Some(transcode) = &self.transcode_params {
            p.push(("TranscodeParams", block(transcode)));
        }
        if let Some(sei) = &self.sei_params {
            p.push(("SeiParams", block(sei)));
        }
        p
    }
}

/// StopLiveMPUTask's parameters.
pub fn stop_params(app_id: &str, task_id: &str) -> Vec<(&'static str, String)> {
    vec![("AppId", app_id.to_owned()), ("TaskId", task_id.to_owned())]
}

/// ListRtcMPUTaskDetail's parameters for one task.
pub fn detail_params(app_id: &str, task_id: &str) -> Vec<(&'static str, String)> {
    stop_params(app_id, task_id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cloud::sign;

    /// The Tea SDK's requests, captured with a pinned nonce and date (docs/research/live-mpu/).
    const TEA_CAPTURES: &str =
        include_str!("../../docs/research/live-mpu/capture_tea_v3_fixed.jsonl");
    /// The fake key the captures were signed with.
    const AK: &str = "LTAI5tFakeAccessKeyId01";

    struct Capture {
        action: String,
        params: BTreeMap<String, String>,
        headers: Vec<(String, String)>,
        authorization: String,
    }

    fn captures() -> Vec<Capture> {
        TEA_CAPTURES
            .lines()
            .map(|line| {
                let c: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut headers = Vec::new();
                let mut authorization = String::new();
                for h in c["headers"].as_array().unwrap() {
                    let (name, value) = h.as_str().unwrap().split_once(": ").unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "authorization" => authorization = value.to_owned(),
                        "accept-encoding" | "content-length" => {}
                        lower => headers.push((lower.to_owned(), value.to_owned())),
                    }
                }
                Capture {
                    action: headers
                        .iter()
                        .find(|(k, _)| k == "x-acs-action")
                        .unwrap()
                        .1
                        .clone(),
                    params: c["decoded_query"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|kv| {
                            (
                                kv[0].as_str().unwrap().to_owned(),
                                kv[1].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect(),
                    headers,
                    authorization,
                }
            })
            .collect()
    }

    /// The relay a captured Start or Update request describes, read back through our types.
    fn relay_of(p: &BTreeMap<String, String>) -> Relay {
        let parse = |name: &str| p.get(name).map(|raw| raw.as_str());
        Relay {
            app_id: p["AppId"].clone(),
            channel_id: p["ChannelId"].clone(),
            task_id: p["TaskId"].clone(),
            mix_mode: if p.get("MixMode").map(String::as_str) == Some("0") {
                MixMode::Single
            } else {
                MixMode::Mixed
            },
            output: match (parse("StreamURL"), parse("MultiStreamURL")) {
                (Some(url), _) => Output::Single(url.to_owned()),
                (None, Some(multi)) => Output::Multi(serde_json::from_str(multi).unwrap()),
                (None, None) => panic!("no output"),
            },
            single_sub_params: parse("SingleSubParams").map(|s| serde_json::from_str(s).unwrap()),
            transcode_params: parse("TranscodeParams").map(|s| serde_json::from_str(s).unwrap()),
            sei_params: parse("SeiParams").map(|s| serde_json::from_str(s).unwrap()),
            region: p.get("Region").cloned(),
            max_idle_time: p.get("MaxIdleTime").map(|v| v.parse().unwrap()),
        }
    }

    /// Captures whose blocks hold strings only, as the SDK's typed models are meant to be used
    /// (the others pass Python numbers through, which our string-typed blocks never send).
    fn typed(c: &Capture) -> bool {
        let blocks = ["SingleSubParams", "TranscodeParams", "SeiParams"];
        blocks.iter().all(|b| {
            c.params.get(*b).is_none_or(|raw| {
                fn strings_only(v: &serde_json::Value) -> bool {
                    match v {
                        serde_json::Value::Object(m) => m.values().all(strings_only),
                        serde_json::Value::Array(a) => a.iter().all(strings_only),
                        serde_json::Value::String(_) => true,
                        _ => false,
                    }
                }
                strings_only(&serde_json::from_str(raw).unwrap())
            })
        })
    }

    #[test]
    fn starts_and_updates_carry_the_same_bytes_as_the_official_sdk_and_sign_to_its_signature() {
        let mut checked = 0;
        for c in captures()
            .iter()
            .filter(|c| c.action == actions::START || c.action == actions::UPDATE)
            .filter(|c| typed(c))
        {
            let relay = relay_of(&c.params);
            let ours = if c.action == actions::START {
                relay.start_params()
            } else {
                relay.update_params()
            };
            let ours: BTreeMap<String, String> =
                ours.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            assert_eq!(ours, c.params, "{}", c.action);

            // Signed over the SDK's own header set, our canonical form gives its signature.
            let signed = sign::v3_sign(
                sign::Method::Post,
                "/",
                &ours,
                &c.headers,
                sign::EMPTY_PAYLOAD_SHA256,
                AK,
                FAKE_SECRET,
            );
            assert_eq!(signed.authorization, c.authorization, "{}", c.action);
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} typed captures checked");
    }

    /// The manifests a user writes for the relays of the first two captures (the issue's
    /// example, and a mixed relay with every block): the operator's Start for them is the
    /// official SDK's request for the same relay, byte for byte.
    #[test]
    fn a_manifests_relay_starts_with_the_official_sdks_request() {
        let single: api::RelaySpec = serde_json::from_value(serde_json::json!({
            "channelId": "lobby",
            "mixMode": "Single",
            "streamURL": "rtmp://push.example.com/live/lobby",
            "singleSubParams": {"userId": "host-1", "streamType": 0, "sourceType": "camera"},
            "region": "CN-Shanghai",
            "maxIdleTime": 600
        }))
        .unwrap();
        let pane = |user: &str, x: f64, render: u8, z: u8| {
            serde_json::json!({
                "left": x, "top": 0.0, "width": 0.5, "height": 1.0, "zOrder": z, "renderMode": render,
                "userInfo": {"userId": user, "sourceType": "camera"}
            })
        };
        let mixed: api::RelaySpec = serde_json::from_value(serde_json::json!({
            "channelId": "lobby",
            "mixMode": "Mixed",
            "multiStreamURL": [
                {"url": "rtmp://a/x", "isAliCdn": true},
                {"url": "rtmp://b/y", "isAliCdn": false}
            ],
            "transcodeParams": {
                "background": {"url": "https://img.example.com/bg.png", "renderMode": 1},
                "encodeParams": {
                    "audioBitrate": 64, "audioChannels": 2, "audioOnly": false,
                    "audioSampleRate": 48000,
                    "enhancedParam": "{\"profile\":\"main\",\"preset\":\"superfast\"}",
                    "videoBitrate": 1500, "videoCodec": "H.264", "videoFramerate": 25,
                    "videoGop": 50, "videoHeight": 720, "videoWidth": 1280
                },
                "layout": {"userPanes": [pane("host-1", 0.0, 0, 0), pane("guest-2", 0.5, 1, 1)]},
                "userInfos": [
                    {"userId": "host-1", "sourceType": "camera", "streamType": 0},
                    {"userId": "guest-2", "channelId": "lobby", "sourceType": "camera", "streamType": 0}
                ]
            },
            "region": "CN-Shanghai",
            "maxIdleTime": 600
        }))
        .unwrap();
        let captured = captures();
        let starts: Vec<&Capture> = captured
            .iter()
            .filter(|c| c.action == actions::START)
            .collect();
        for (spec, capture) in [(&single, starts[0]), (&mixed, starts[1])] {
            let relay = Relay::from_spec(&capture.params["AppId"], &capture.params["TaskId"], spec);
            let ours: BTreeMap<String, String> = relay
                .start_params()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            assert_eq!(ours, capture.params);
        }
    }

    #[test]
    fn the_spec_hash_follows_what_the_relay_runs_with() {
        let spec = |user: &str| -> api::RelaySpec {
            serde_json::from_value(serde_json::json!({
                "channelId": "lobby", "mixMode": "Single", "streamURL": "rtmp://x/y",
                "singleSubParams": {"userId": user}
            }))
            .unwrap()
        };
        let hash = |s: &api::RelaySpec| Relay::from_spec("a", "t", s).spec_hash();
        assert_eq!(hash(&spec("u1")), hash(&spec("u1")));
        assert_ne!(hash(&spec("u1")), hash(&spec("u2")));
        assert_eq!(hash(&spec("u1")).len(), 16);
    }

    /// The secret the captures were signed with (fake).
    const FAKE_SECRET: &str = "FakeAccessKeySecretForTests0123";

    #[test]
    fn stop_and_detail_are_the_task_alone() {
        for c in captures()
            .iter()
            .filter(|c| c.action == actions::STOP || c.action == actions::LIST_DETAIL)
            .filter(|c| c.params.contains_key("TaskId") && c.params.len() == 2)
        {
            let ours: BTreeMap<String, String> =
                stop_params(&c.params["AppId"], &c.params["TaskId"])
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
            assert_eq!(ours, c.params);
        }
    }

    #[test]
    fn empty_lists_are_sent_and_unset_fields_are_not() {
        let transcode = TranscodeParams {
            layout: Some(Layout::default()),
            ..TranscodeParams::default()
        };
        assert_eq!(
            block(&transcode),
            r#"{"Layout":{"UserPanes":[]},"UserInfos":[]}"#
        );
        let single = SingleSubParams {
            user_id: "host-é".into(),
            ..SingleSubParams::default()
        };
        assert_eq!(
            block(&single),
            r#"{"UserId":"host-é"}"#,
            "raw UTF-8, no escapes"
        );
    }

    #[test]
    fn an_update_never_sends_region_max_idle_time_or_the_sei_payload_type() {
        let relay = Relay {
            app_id: "a".into(),
            channel_id: "c".into(),
            task_id: "t".into(),
            mix_mode: MixMode::Single,
            output: Output::Single("rtmp://x/y".into()),
            single_sub_params: Some(SingleSubParams {
                user_id: "u".into(),
                ..SingleSubParams::default()
            }),
            transcode_params: None,
            sei_params: Some(SeiParams {
                payload_type: Some("100".into()),
                ..SeiParams::default()
            }),
            region: Some("CN-Shanghai".into()),
            max_idle_time: Some(600),
        };
        let names =
            |p: Vec<(&'static str, String)>| p.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(relay.start_params()),
            [
                "AppId",
                "ChannelId",
                "MaxIdleTime",
                "MixMode",
                "Region",
                "SeiParams",
                "SingleSubParams",
                "StreamURL",
                "TaskId"
            ]
        );
        let update = relay.update_params();
        assert_eq!(
            names(update.clone()),
            [
                "AppId",
                "ChannelId",
                "MixMode",
                "SeiParams",
                "SingleSubParams",
                "StreamURL",
                "TaskId"
            ]
        );
        assert_eq!(
            update.iter().find(|(k, _)| *k == "SeiParams").unwrap().1,
            "{}"
        );
    }
}
