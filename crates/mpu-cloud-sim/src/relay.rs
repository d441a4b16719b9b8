//! Managed relays as the cloud runs them, pure: what StartLiveMPUTask, UpdateLiveMPUTask,
//! StopLiveMPUTask and ListRtcMPUTaskDetail do to the relays of an AppId, with time passed in
//! (milliseconds of the wall clock), so every rule is unit-tested without waiting.
//!
//! The rules are Alibaba's documented ones (API reference of Live 2016-11-01):
//! - A relay starts only in a channel that has somebody in it ("the channel does not exist"
//!   otherwise); who is in a channel is scripted ([`Relays::join`], [`Relays::leave`]).
//! - A TaskId is unique: starting one that runs, or that stopped but is not yet cleared, answers
//!   "task already exists". A stopped task is cleared [`RelayRules::clear_after_ms`] after it
//!   stopped.
//! - One ingest URL serves one relay, and is not reused within [`RelayRules::url_reuse_ms`]
//!   (10 s) of its relay stopping.
//! - A relay stops by itself (status 4, channel stopped) 2 minutes after the last user left
//!   its channel, or after its `MaxIdleTime` when it has one.
//! - An AppId runs at most 200 single-stream and 40 mixed relays.
//! - An update changes the mode, the outputs and the parameter blocks; never the channel, the
//!   region or `MaxIdleTime`.
//!
//! A started relay is a task [`crate::state::State`] answers GetMPUTaskStatus for: its status
//! here (1 running, 3 stopped by the user, 4 channel stopped) is what that call reports.

use std::collections::{BTreeMap, HashMap};

/// Status of a running relay (GetMPUTaskStatus).
pub const RUNNING: i64 = 1;
/// Status of a relay stopped by StopLiveMPUTask.
pub const STOPPED_BY_USER: i64 = 3;
/// Status of a relay stopped because its channel emptied.
pub const CHANNEL_STOPPED: i64 = 4;

/// The documented regions.
pub const REGIONS: [&str; 3] = ["CN-Shanghai", "AP-Singapore", "EMAA-Saudi"];

/// The timings and quotas of the rules above; the defaults are Alibaba's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayRules {
    /// A relay stops this long after the last user left its channel (unless it has a
    /// `MaxIdleTime`).
    pub idle_stop_ms: i64,
    /// An ingest URL is not reused within this long of its relay stopping.
    pub url_reuse_ms: i64,
    /// A stopped relay's TaskId answers "task already exists" for this long.
    pub clear_after_ms: i64,
    pub single_quota: usize,
    pub mixed_quota: usize,
}

impl Default for RelayRules {
    fn default() -> Self {
        RelayRules {
            idle_stop_ms: 120_000,
            url_reuse_ms: 10_000,
            // Not documented: "until the system clears it". Short, so that a restart after a
            // fault is tested; a config may lengthen it.
            clear_after_ms: 5_000,
            single_quota: 200,
            mixed_quota: 40,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixMode {
    /// `MixMode=0`: one user's stream relayed as it is.
    Single,
    /// `MixMode=1`: several users mixed and transcoded.
    Mixed,
}

/// What a Start asks for, already read from the request.
#[derive(Clone, Debug, PartialEq)]
pub struct RelaySpec {
    pub channel_id: String,
    pub mix_mode: MixMode,
    /// The ingest URLs: one `StreamURL`, or each `MultiStreamURL[].URL`.
    pub outputs: Vec<String>,
    pub region: Option<String>,
    pub max_idle_seconds: Option<u64>,
    /// The parameter blocks as sent (`SingleSubParams`, `TranscodeParams`, `SeiParams`...), kept
    /// as they came for ListRtcMPUTaskDetail.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// What an Update changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelayChange {
    pub channel_id: String,
    pub mix_mode: Option<MixMode>,
    pub outputs: Option<Vec<String>>,
    pub region: Option<String>,
    pub max_idle_seconds: Option<u64>,
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Why an operation was refused, each a distinct answer of the cloud.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("the channel {0} does not exist (nobody is in it)")]
    ChannelNotFound(String),
    #[error("task already exists")]
    TaskExists,
    #[error("the task does not exist")]
    TaskNotFound,
    #[error("the stream URL {0} is in use by another task, or was released less than 10 s ago")]
    UrlInUse(String),
    #[error("the AppId runs its quota of {quota} {mode} tasks")]
    QuotaExceeded { mode: &'static str, quota: usize },
    #[error("{0} is mandatory for this action")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Relay {
    pub app_id: String,
    pub task_id: String,
    pub spec: RelaySpec,
    pub status: i64,
    pub started_at_ms: i64,
    stopped_at_ms: Option<i64>,
    /// Starts and updates it has seen: 1 after its start.
    pub revision: u64,
}

impl Relay {
    fn running(&self) -> bool {
        self.status == RUNNING
    }
}

#[derive(Clone, Debug, Default)]
struct Channel {
    users: usize,
    /// When the last user left (while nobody has come back).
    emptied_at_ms: Option<i64>,
}

/// The relays of every AppId, with the channels they stream from and the URLs they hold.
#[derive(Clone, Debug, Default)]
pub struct Relays {
    rules: RelayRules,
    relays: HashMap<(String, String), Relay>,
    channels: HashMap<(String, String), Channel>,
    /// Ingest URL -> when its relay stopped (`None` while one uses it).
    urls: HashMap<String, Option<i64>>,
}

impl Relays {
    pub fn new(rules: RelayRules) -> Self {
        Relays {
            rules,
            ..Relays::default()
        }
    }

    /// `users` more users are in `channel` of `app` (scripted: who streams is not the API's).
    pub fn join(&mut self, app: &str, channel: &str, users: usize) {
        let c = self
            .channels
            .entry((app.to_owned(), channel.to_owned()))
            .or_default();
        c.users += users;
        if c.users > 0 {
            c.emptied_at_ms = None;
        }
    }

    /// `users` users leave `channel`; when it empties, its relays stop after their idle time.
    pub fn leave(&mut self, app: &str, channel: &str, users: usize, now_ms: i64) {
        if let Some(c) = self.channels.get_mut(&(app.to_owned(), channel.to_owned())) {
            let before = c.users;
            c.users = c.users.saturating_sub(users);
            if before > 0 && c.users == 0 {
                c.emptied_at_ms = Some(now_ms);
            }
        }
    }

    pub fn users(&self, app: &str, channel: &str) -> usize {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .map_or(0, |c| c.users)
    }

    /// Applies what time does: relays of channels empty for their idle time stop (status 4).
    /// Returns the relays that stopped, so their GetMPUTaskStatus answer can follow.
    pub fn tick(&mut self, now_ms: i64) -> Vec<(String, String, i64)> {
        let mut stopped = Vec::new();
        for ((app, task), relay) in &mut self.relays {
            if !relay.running() {
                continue;
            }
            let Some(emptied) = self
                .channels
                .get(&(app.clone(), relay.spec.channel_id.clone()))
                .and_then(|c| c.emptied_at_ms)
            else {
                continue;
            };
            let idle_ms = relay
                .spec
                .max_idle_seconds
                .map_or(self.rules.idle_stop_ms, |s| {
                    i64::try_from(s).unwrap_or(i64::MAX / 1000) * 1000
                });
            if now_ms.saturating_sub(emptied.max(relay.started_at_ms)) >= idle_ms {
                relay.status = CHANNEL_STOPPED;
                relay.stopped_at_ms = Some(now_ms);
                for url in &relay.spec.outputs {
                    self.urls.insert(url.clone(), Some(now_ms));
                }
                stopped.push((app.clone(), task.clone(), CHANNEL_STOPPED));
            }
        }
        stopped
    }

    /// StartLiveMPUTask.
    pub fn start(
        &mut self,
        app: &str,
        task: &str,
        spec: RelaySpec,
        now_ms: i64,
    ) -> Result<&Relay, RelayError> {
        self.tick(now_ms);
        check_id("AppId", app, 64)?;
        check_id("TaskId", task, 55)?;
        check_spec(&spec)?;
        let key = (app.to_owned(), task.to_owned());
        if let Some(existing) = self.relays.get(&key) {
            let cleared = existing
                .stopped_at_ms
                .is_some_and(|at| now_ms - at >= self.rules.clear_after_ms);
            if existing.running() || !cleared {
                return Err(RelayError::TaskExists);
            }
        }
        if self.users(app, &spec.channel_id) == 0 {
            return Err(RelayError::ChannelNotFound(spec.channel_id));
        }
        self.check_urls(&spec.outputs, None, now_ms)?;
        let (mode, quota) = match spec.mix_mode {
            MixMode::Single => ("single-stream", self.rules.single_quota),
            MixMode::Mixed => ("mixed", self.rules.mixed_quota),
        };
        let running = self
            .relays
            .iter()
            .filter(|((a, _), r)| a == app && r.running() && r.spec.mix_mode == spec.mix_mode)
            .count();
        if running >= quota {
            return Err(RelayError::QuotaExceeded { mode, quota });
        }
        for url in &spec.outputs {
            self.urls.insert(url.clone(), None);
        }
        let relay = Relay {
            app_id: app.to_owned(),
            task_id: task.to_owned(),
            spec,
            status: RUNNING,
            started_at_ms: now_ms,
            stopped_at_ms: None,
            revision: 1,
        };
        self.relays.insert(key.clone(), relay);
        Ok(&self.relays[&key])
    }

    /// UpdateLiveMPUTask.
    pub fn update(
        &mut self,
        app: &str,
        task: &str,
        change: RelayChange,
        now_ms: i64,
    ) -> Result<&Relay, RelayError> {
        self.tick(now_ms);
        let key = (app.to_owned(), task.to_owned());
        let relay = self
            .relays
            .get(&key)
            .filter(|r| r.running())
            .ok_or(RelayError::TaskNotFound)?;
        if change.channel_id != relay.spec.channel_id {
            return Err(RelayError::Invalid(format!(
                "ChannelId {} is not the task's channel",
                change.channel_id
            )));
        }
        if change
            .region
            .as_ref()
            .is_some_and(|r| Some(r) != relay.spec.region.as_ref())
        {
            return Err(RelayError::Invalid("Region cannot be changed".into()));
        }
        if change
            .max_idle_seconds
            .is_some_and(|s| Some(s) != relay.spec.max_idle_seconds)
        {
            return Err(RelayError::Invalid("MaxIdleTime cannot be changed".into()));
        }
        let mut spec = relay.spec.clone();
        if let Some(mode) = change.mix_mode {
            spec.mix_mode = mode;
        }
        let old_outputs = spec.outputs.clone();
        if let Some(outputs) = change.outputs {
            spec.outputs = outputs;
        }
        spec.params.extend(change.params);
        check_spec(&spec)?;
        self.check_urls(&spec.outputs, Some(&old_outputs), now_ms)?;
        for url in old_outputs.iter().filter(|u| !spec.outputs.contains(u)) {
            self.urls.insert(url.clone(), Some(now_ms));
        }
        for url in &spec.outputs {
            self.urls.insert(url.clone(), None);
        }
        let relay = self.relays.get_mut(&key).expect("checked above");
        relay.spec = spec;
        relay.revision += 1;
        Ok(relay)
    }

    /// StopLiveMPUTask. Stopping a relay that already stopped answers as Alibaba does for a
    /// task it no longer runs.
    pub fn stop(&mut self, app: &str, task: &str, now_ms: i64) -> Result<(), RelayError> {
        self.halt(app, task, STOPPED_BY_USER, now_ms)
    }

    /// The cloud stops a running relay with `status` (2 stopped, 4 channel stopped, 5 a CDN
    /// problem, 6 a streaming-URL problem; 3 is a user's StopLiveMPUTask): it is cleared, and
    /// its URLs freed, as after any stop.
    pub fn halt(
        &mut self,
        app: &str,
        task: &str,
        status: i64,
        now_ms: i64,
    ) -> Result<(), RelayError> {
        self.tick(now_ms);
        let relay = self
            .relays
            .get_mut(&(app.to_owned(), task.to_owned()))
            .filter(|r| r.running())
            .ok_or(RelayError::TaskNotFound)?;
        relay.status = status;
        relay.stopped_at_ms = Some(now_ms);
        for url in &relay.spec.outputs {
            self.urls.insert(url.clone(), Some(now_ms));
        }
        Ok(())
    }

    /// One relay, as ListRtcMPUTaskDetail shows it (running or not yet cleared).
    pub fn get(&self, app: &str, task: &str) -> Option<&Relay> {
        self.relays.get(&(app.to_owned(), task.to_owned()))
    }

    /// The relays of `app` by TaskId, page `page` (from 1) of `size`.
    pub fn page(&self, app: &str, page: usize, size: usize) -> Vec<&Relay> {
        let mut of_app: Vec<&Relay> = self
            .relays
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|(_, r)| r)
            .collect();
        of_app.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        of_app
            .into_iter()
            .skip(page.saturating_sub(1).saturating_mul(size))
            .take(size)
            .collect()
    }

    /// Each URL must be free: not used by another running relay, not released within the reuse
    /// window. `own` are the URLs the updated relay holds already.
    fn check_urls(
        &self,
        urls: &[String],
        own: Option<&[String]>,
        now_ms: i64,
    ) -> Result<(), RelayError> {
        for url in urls {
            if own.is_some_and(|own| own.contains(url)) {
                continue;
            }
            match self.urls.get(url) {
                Some(None) => return Err(RelayError::UrlInUse(url.clone())),
                Some(Some(released)) if now_ms - released < self.rules.url_reuse_ms => {
                    return Err(RelayError::UrlInUse(url.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The request parameters of StartLiveMPUTask and UpdateLiveMPUTask, by wire name.
pub mod params {
    pub const APP_ID: &str = "AppId";
    pub const CHANNEL_ID: &str = "ChannelId";
    pub const TASK_ID: &str = "TaskId";
    pub const MIX_MODE: &str = "MixMode";
    pub const STREAM_URL: &str = "StreamURL";
    pub const MULTI_STREAM_URL: &str = "MultiStreamURL";
    pub const SINGLE_SUB_PARAMS: &str = "SingleSubParams";
    pub const TRANSCODE_PARAMS: &str = "TranscodeParams";
    pub const SEI_PARAMS: &str = "SeiParams";
    pub const REGION: &str = "Region";
    pub const MAX_IDLE_TIME: &str = "MaxIdleTime";
    pub const PAGE_NO: &str = "PageNo";
    pub const PAGE_SIZE: &str = "PageSize";
    /// The nested blocks, each sent as one JSON string by the official SDKs (compact with sorted
    /// keys by today's, `json.dumps` by the old core SDK: a JSON parser reads both).
    pub const BLOCKS: [&str; 3] = [SINGLE_SUB_PARAMS, TRANSCODE_PARAMS, SEI_PARAMS];
}

/// What a StartLiveMPUTask request asks for, read from its parameters as the official SDKs send
/// them.
pub fn start_from_params(
    p: &std::collections::BTreeMap<String, String>,
) -> Result<RelaySpec, RelayError> {
    let channel_id = p
        .get(params::CHANNEL_ID)
        .ok_or(RelayError::Missing(params::CHANNEL_ID))?
        .clone();
    let mix_mode = mix_mode(p)?.unwrap_or(MixMode::Mixed);
    let outputs = outputs(p)?.ok_or(RelayError::Missing(params::STREAM_URL))?;
    let max_idle_seconds = p
        .get(params::MAX_IDLE_TIME)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| RelayError::Invalid(format!("MaxIdleTime {v:?} is not a number")))
        })
        .transpose()?;
    let spec = RelaySpec {
        channel_id,
        mix_mode,
        outputs: outputs.0,
        region: p.get(params::REGION).cloned(),
        max_idle_seconds,
        params: blocks(p, outputs.1)?,
    };
    check_blocks(&spec.params)?;
    Ok(spec)
}

/// What an UpdateLiveMPUTask request changes. `Region` and `MaxIdleTime` are not among its
/// parameters; sent anyway, they are read so that the change can be refused.
pub fn change_from_params(
    p: &std::collections::BTreeMap<String, String>,
) -> Result<RelayChange, RelayError> {
    let channel_id = p
        .get(params::CHANNEL_ID)
        .ok_or(RelayError::Missing(params::CHANNEL_ID))?
        .clone();
    let outputs = outputs(p)?;
    let multi = outputs.as_ref().and_then(|o| o.1.clone());
    let params = blocks(p, multi)?;
    check_blocks(&params)?;
    Ok(RelayChange {
        channel_id,
        mix_mode: mix_mode(p)?,
        outputs: outputs.map(|o| o.0),
        region: p.get(params::REGION).cloned(),
        max_idle_seconds: p
            .get(params::MAX_IDLE_TIME)
            .and_then(|v| v.parse::<u64>().ok()),
        params,
    })
}

fn mix_mode(p: &std::collections::BTreeMap<String, String>) -> Result<Option<MixMode>, RelayError> {
    match p.get(params::MIX_MODE).map(String::as_str) {
        None => Ok(None),
        Some("0") => Ok(Some(MixMode::Single)),
        Some("1") => Ok(Some(MixMode::Mixed)),
        Some(other) => Err(RelayError::Invalid(format!(
            "MixMode {other:?} is not 0 or 1"
        ))),
    }
}

/// The ingest URLs: `StreamURL`, or the `URL` of each `MultiStreamURL` entry (kept whole, for
/// ListRtcMPUTaskDetail). Exactly one of the two.
#[allow(clippy::type_complexity)]
fn outputs(
    p: &std::collections::BTreeMap<String, String>,
) -> Result<Option<(Vec<String>, Option<serde_json::Value>)>, RelayError> {
    match (p.get(params::STREAM_URL), p.get(params::MULTI_STREAM_URL)) {
        (Some(_), Some(_)) => Err(RelayError::Invalid(
            "StreamURL and MultiStreamURL cannot both be set".into(),
        )),
        (Some(url), None) => Ok(Some((vec![url.clone()], None))),
        (None, Some(multi)) => {
            let value: serde_json::Value = serde_json::from_str(multi)
                .map_err(|_| RelayError::Invalid("MultiStreamURL is not a JSON array".into()))?;
            let urls = value
                .as_array()
                .ok_or_else(|| RelayError::Invalid("MultiStreamURL is not a JSON array".into()))?
                .iter()
                .map(|entry| {
                    entry
                        .get("URL")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            RelayError::Invalid("each MultiStreamURL entry needs a URL".into())
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((urls, Some(value))))
        }
        (None, None) => Ok(None),
    }
}

/// The nested blocks present, parsed; `multi` is `MultiStreamURL` when it was sent.
fn blocks(
    p: &std::collections::BTreeMap<String, String>,
    multi: Option<serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, RelayError> {
    let mut out = BTreeMap::new();
    for name in params::BLOCKS {
        if let Some(raw) = p.get(name) {
            let value: serde_json::Value = serde_json::from_str(raw)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| RelayError::Invalid(format!("{name} is not a JSON object")))?;
            out.insert(name.to_owned(), value);
        }
    }
    if let Some(multi) = multi {
        out.insert(params::MULTI_STREAM_URL.to_owned(), multi);
    }
    Ok(out)
}

/// A number sent as a string (today's SDK) or as a number (the old one, as the caller wrote it).
fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// What Alibaba checks inside the blocks: a single stream names its user, with a known stream
/// and source type; every pane of a layout lies within the frame (normalized coordinates).
fn check_blocks(blocks: &BTreeMap<String, serde_json::Value>) -> Result<(), RelayError> {
    if let Some(single) = blocks.get(params::SINGLE_SUB_PARAMS) {
        if single
            .get("UserId")
            .and_then(serde_json::Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(RelayError::Missing("SingleSubParams.UserId"));
        }
        if let Some(t) = single.get("StreamType")
            && !number(t).is_some_and(|t| [0.0, 1.0, 2.0].contains(&t))
        {
            return Err(RelayError::Invalid(format!(
                "SingleSubParams.StreamType {t} is not 0, 1 or 2"
            )));
        }
        if let Some(t) = single.get("SourceType")
            && !matches!(t.as_str(), Some("camera" | "shareScreen"))
        {
            return Err(RelayError::Invalid(format!(
                "SingleSubParams.SourceType {t} is not camera or shareScreen"
            )));
        }
    }
    let panes = blocks
        .get(params::TRANSCODE_PARAMS)
        .and_then(|t| t.pointer("/Layout/UserPanes"))
        .and_then(serde_json::Value::as_array);
    for (i, pane) in panes.into_iter().flatten().enumerate() {
        for field in ["X", "Y", "Width", "Height"] {
            if let Some(v) = pane.get(field)
                && !number(v).is_some_and(|n| (0.0..=1.0).contains(&n))
            {
                return Err(RelayError::Invalid(format!(
                    "TranscodeParams.Layout.UserPanes[{i}].{field} {v} is not between 0 and 1"
                )));
            }
        }
    }
    Ok(())
}

impl Relay {
    /// One entry of ListRtcMPUTaskDetail's `MPUTasks`: the parameters as last set, nested blocks
    /// as objects, scalars as strings.
    pub fn detail(&self) -> serde_json::Value {
        let mut entry = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            entry.insert(k.to_owned(), v);
        };
        put(params::APP_ID, self.app_id.clone().into());
        put(params::CHANNEL_ID, self.spec.channel_id.clone().into());
        put(params::TASK_ID, self.task_id.clone().into());
        put(
            params::MIX_MODE,
            match self.spec.mix_mode {
                MixMode::Single => "0",
                MixMode::Mixed => "1",
            }
            .into(),
        );
        if !self.spec.params.contains_key(params::MULTI_STREAM_URL)
            && let Some(url) = self.spec.outputs.first()
        {
            put(params::STREAM_URL, url.clone().into());
        }
        if let Some(region) = &self.spec.region {
            put(params::REGION, region.clone().into());
        }
        if let Some(idle) = self.spec.max_idle_seconds {
            put(params::MAX_IDLE_TIME, idle.to_string().into());
        }
        for (name, value) in &self.spec.params {
            put(name, value.clone());
        }
        serde_json::Value::Object(entry)
    }
}

/// An ID of at most `max` letters, digits, `_` and `-`.
fn check_id(name: &str, value: &str, max: usize) -> Result<(), RelayError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RelayError::Invalid(format!(
            "{name} must be 1 to {max} letters, digits, '_' or '-'"
        )))
    }
}

fn check_spec(spec: &RelaySpec) -> Result<(), RelayError> {
    check_id("ChannelId", &spec.channel_id, 64)?;
    if spec.outputs.is_empty() {
        return Err(RelayError::Invalid(
            "one of StreamURL or MultiStreamURL is required".into(),
        ));
    }
    if let Some(url) = spec.outputs.iter().find(|u| u.len() > 2048 || u.is_empty()) {
        return Err(RelayError::Invalid(format!(
            "stream URL of {} characters (1 to 2048)",
            url.len()
        )));
    }
    let needs = match spec.mix_mode {
        MixMode::Single => "SingleSubParams",
        MixMode::Mixed => "TranscodeParams",
    };
    if !spec.params.contains_key(needs) {
        return Err(RelayError::Invalid(format!(
            "{needs} is required with MixMode {}",
            match spec.mix_mode {
                MixMode::Single => 0,
                MixMode::Mixed => 1,
            }
        )));
    }
    if let Some(region) = &spec.region
        && !REGIONS.contains(&region.as_str())
    {
        return Err(RelayError::Invalid(format!(
            "Region {region:?} is not one of {REGIONS:?}"
        )));
    }
    if let Some(s) = spec.max_idle_seconds
        && !(10..=86_400).contains(&s)
    {
        return Err(RelayError::Invalid(format!(
            "MaxIdleTime {s} is not between 10 and 86400"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: &str = "demo-app";

    fn single(channel: &str, url: &str) -> RelaySpec {
        RelaySpec {
            channel_id: channel.into(),
            mix_mode: MixMode::Single,
            outputs: vec![url.into()],
            region: Some("CN-Shanghai".into()),
            max_idle_seconds: None,
            params: [(
                "SingleSubParams".to_owned(),
                json!({"UserId": "host-1", "StreamType": 0, "SourceType": "camera"}),
            )]
            .into(),
        }
    }

    fn mixed(channel: &str, url: &str) -> RelaySpec {
        RelaySpec {
            mix_mode: MixMode::Mixed,
            params: [(
                "TranscodeParams".to_owned(),
                json!({"Layout": {"UserPanes": []}}),
            )]
            .into(),
            ..single(channel, url)
        }
    }

    fn lobby() -> Relays {
        let mut r = Relays::new(RelayRules::default());
        r.join(APP, "lobby", 1);
        r
    }

    #[test]
    fn a_relay_starts_running_only_in_a_channel_with_somebody_in_it() {
        let mut r = Relays::new(RelayRules::default());
        assert_eq!(
            r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0),
            Err(RelayError::ChannelNotFound("lobby".into()))
        );
        r.join(APP, "lobby", 1);
        let relay = r
            .start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        assert_eq!((relay.status, relay.revision), (RUNNING, 1));
    }

    #[test]
    fn a_task_id_already_running_or_not_yet_cleared_answers_task_exists() {
        let mut r = lobby();
        r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        assert_eq!(
            r.start(APP, "t1", single("lobby", "rtmp://a/2"), 1_000)
                .map(|_| ()),
            Err(RelayError::TaskExists)
        );
        r.stop(APP, "t1", 2_000).unwrap();
        assert_eq!(r.get(APP, "t1").unwrap().status, STOPPED_BY_USER);
        assert_eq!(
            r.start(APP, "t1", single("lobby", "rtmp://a/2"), 2_000 + 4_999)
                .map(|_| ()),
            Err(RelayError::TaskExists),
            "not yet cleared"
        );
        assert!(
            r.start(APP, "t1", single("lobby", "rtmp://a/2"), 7_000)
                .is_ok()
        );
    }

    #[test]
    fn an_ingest_url_serves_one_relay_and_waits_10_s_after_its_relay_stopped() {
        let mut r = lobby();
        r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        assert_eq!(
            r.start(APP, "t2", single("lobby", "rtmp://a/1"), 0)
                .map(|_| ()),
            Err(RelayError::UrlInUse("rtmp://a/1".into()))
        );
        r.stop(APP, "t1", 1_000).unwrap();
        assert!(
            r.start(APP, "t2", single("lobby", "rtmp://a/1"), 10_999)
                .is_err()
        );
        assert!(
            r.start(APP, "t2", single("lobby", "rtmp://a/1"), 11_000)
                .is_ok()
        );
    }

    #[test]
    fn a_relay_stops_two_minutes_after_its_channel_empties_unless_somebody_comes_back() {
        let mut r = lobby();
        r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        r.leave(APP, "lobby", 1, 10_000);
        assert!(r.tick(10_000 + 119_999).is_empty());
        r.join(APP, "lobby", 1);
        assert!(r.tick(10_000 + 200_000).is_empty(), "somebody came back");
        r.leave(APP, "lobby", 1, 300_000);
        assert_eq!(
            r.tick(420_000),
            vec![(APP.to_owned(), "t1".to_owned(), CHANNEL_STOPPED)]
        );
        assert_eq!(r.get(APP, "t1").unwrap().status, CHANNEL_STOPPED);
        assert!(r.tick(500_000).is_empty(), "stops once");
    }

    #[test]
    fn max_idle_time_replaces_the_two_minutes() {
        let mut r = lobby();
        let spec = RelaySpec {
            max_idle_seconds: Some(10),
            ..single("lobby", "rtmp://a/1")
        };
        r.start(APP, "t1", spec, 0).unwrap();
        r.leave(APP, "lobby", 1, 1_000);
        assert!(r.tick(10_999).is_empty());
        assert_eq!(r.tick(11_000).len(), 1);
    }

    #[test]
    fn an_app_runs_at_most_its_quota_of_each_mode() {
        let mut r = Relays::new(RelayRules {
            single_quota: 2,
            mixed_quota: 1,
            ..RelayRules::default()
        });
        r.join(APP, "lobby", 1);
        for i in 0..2 {
            r.start(
                APP,
                &format!("s{i}"),
                single("lobby", &format!("rtmp://s/{i}")),
                0,
            )
            .unwrap();
        }
        assert_eq!(
            r.start(APP, "s2", single("lobby", "rtmp://s/2"), 0)
                .map(|_| ()),
            Err(RelayError::QuotaExceeded {
                mode: "single-stream",
                quota: 2
            })
        );
        r.start(APP, "m0", mixed("lobby", "rtmp://m/0"), 0).unwrap();
        assert!(r.start(APP, "m1", mixed("lobby", "rtmp://m/1"), 0).is_err());
        r.stop(APP, "s0", 1).unwrap();
        assert!(r.start(APP, "s2", single("lobby", "rtmp://s/2"), 2).is_ok());
    }

    #[test]
    fn a_start_missing_the_block_its_mode_needs_or_out_of_bounds_is_invalid() {
        let mut r = lobby();
        let mut no_block = single("lobby", "rtmp://a/1");
        no_block.params.clear();
        let long_task = "t".repeat(56);
        let cases = [
            ("t1", no_block),
            (long_task.as_str(), single("lobby", "rtmp://a/1")),
            (
                "t1",
                RelaySpec {
                    region: Some("Mars".into()),
                    ..single("lobby", "rtmp://a/1")
                },
            ),
            (
                "t1",
                RelaySpec {
                    max_idle_seconds: Some(9),
                    ..single("lobby", "rtmp://a/1")
                },
            ),
            (
                "t1",
                RelaySpec {
                    outputs: vec![],
                    ..single("lobby", "rtmp://a/1")
                },
            ),
        ];
        for (task, spec) in cases {
            let e = r.start(APP, task, spec.clone(), 0).map(|_| ()).unwrap_err();
            assert!(matches!(e, RelayError::Invalid(_)), "{spec:?}: {e:?}");
        }
        assert!(r.get(APP, "t1").is_none(), "nothing started");
    }

    #[test]
    fn an_update_changes_outputs_and_blocks_but_never_channel_region_or_max_idle_time() {
        let mut r = lobby();
        r.join(APP, "hall", 1);
        r.start(APP, "t1", mixed("lobby", "rtmp://a/1"), 0).unwrap();
        let change = |f: fn(&mut RelayChange)| {
            let mut c = RelayChange {
                channel_id: "lobby".into(),
                ..RelayChange::default()
            };
            f(&mut c);
            c
        };
        for refused in [
            change(|c| c.channel_id = "hall".into()),
            change(|c| c.region = Some("AP-Singapore".into())),
            change(|c| c.max_idle_seconds = Some(60)),
        ] {
            assert!(matches!(
                r.update(APP, "t1", refused, 1).map(|_| ()),
                Err(RelayError::Invalid(_))
            ));
        }
        let layout = change(|c| {
            c.outputs = Some(vec!["rtmp://a/2".into()]);
            c.params.insert(
                "TranscodeParams".into(),
                json!({"Layout": {"UserPanes": [{"X": 0.5}]}}),
            );
        });
        let relay = r.update(APP, "t1", layout, 2).unwrap();
        assert_eq!(relay.revision, 2);
        assert_eq!(relay.spec.outputs, vec!["rtmp://a/2".to_owned()]);
        assert_eq!(
            relay.status, RUNNING,
            "an update neither stops nor restarts"
        );
        assert_eq!(
            r.update(APP, "nope", change(|_| {}), 3).map(|_| ()),
            Err(RelayError::TaskNotFound)
        );
    }

    #[test]
    fn stopping_a_relay_that_is_not_running_answers_task_not_found() {
        let mut r = lobby();
        assert_eq!(r.stop(APP, "t1", 0), Err(RelayError::TaskNotFound));
        r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        r.stop(APP, "t1", 1).unwrap();
        assert_eq!(r.stop(APP, "t1", 2), Err(RelayError::TaskNotFound));
    }

    /// The official SDKs' requests for the MPU operations, captured against a local server
    /// (docs/research/live-mpu/): today's Tea SDK and the old core SDK.
    const TEA_CAPTURES: &str =
        include_str!("../../../docs/research/live-mpu/capture_tea_v3_fixed.jsonl");
    const CORE_CAPTURES: &str =
        include_str!("../../../docs/research/live-mpu/capture_core_fixed.jsonl");

    /// Each captured request of `action`, as its decoded query parameters.
    fn captured(captures: &str, action: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        captures
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|c| {
                let headers = c["headers"].as_array().cloned().unwrap_or_default();
                let named = |h: &serde_json::Value| {
                    h.as_str()
                        .is_some_and(|h| h.eq_ignore_ascii_case(&format!("x-acs-action: {action}")))
                };
                headers.iter().any(named)
            })
            .map(|c| {
                c["decoded_query"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap().to_owned(),
                            kv[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_start_and_update_the_official_sdks_send_is_understood() {
        for (sdk, captures) in [("tea", TEA_CAPTURES), ("core", CORE_CAPTURES)] {
            let starts = captured(captures, "StartLiveMPUTask");
            assert!(!starts.is_empty(), "{sdk}: no StartLiveMPUTask captured");
            for p in &starts {
                let spec = start_from_params(p).unwrap_or_else(|e| panic!("{sdk}: {e}: {p:?}"));
                assert!(!spec.outputs.is_empty());
                let mut relays = Relays::default();
                relays.join(&p["AppId"], &spec.channel_id, 1);
                relays
                    .start(&p["AppId"], &p["TaskId"], spec, 0)
                    .unwrap_or_else(|e| panic!("{sdk}: {e}: {p:?}"));
            }
            let updates = captured(captures, "UpdateLiveMPUTask");
            assert!(!updates.is_empty(), "{sdk}: no UpdateLiveMPUTask captured");
            for p in &updates {
                change_from_params(p).unwrap_or_else(|e| panic!("{sdk}: {e}: {p:?}"));
            }
        }
    }

    #[test]
    fn a_single_stream_start_reads_as_the_tea_sdk_sends_it() {
        let p = captured(TEA_CAPTURES, "StartLiveMPUTask")
            .into_iter()
            .find(|p| p.get("MixMode").map(String::as_str) == Some("0"))
            .expect("a single-stream capture");
        let spec = start_from_params(&p).unwrap();
        assert_eq!(spec.mix_mode, MixMode::Single);
        assert_eq!(spec.outputs, ["rtmp://push.example.com/live/lobby"]);
        assert_eq!(spec.region.as_deref(), Some("CN-Shanghai"));
        assert_eq!(spec.max_idle_seconds, Some(600));
        assert_eq!(
            spec.params["SingleSubParams"],
            json!({"SourceType": "camera", "StreamType": "0", "UserId": "host-1"})
        );
    }

    fn query(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_start_with_both_outputs_none_or_a_pane_outside_the_frame_is_refused() {
        let base = [
            ("AppId", "a"),
            ("ChannelId", "c"),
            ("TaskId", "t"),
            ("MixMode", "1"),
            (
                "TranscodeParams",
                r#"{"Layout":{"UserPanes":[{"X":"0.5","Width":"0.5"}]}}"#,
            ),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut q = query(&base);
            q.extend(query(extra));
            q
        };
        assert!(start_from_params(&with(&[("StreamURL", "rtmp://a/1")])).is_ok());
        assert_eq!(
            start_from_params(&with(&[])),
            Err(RelayError::Missing("StreamURL"))
        );
        assert!(matches!(
            start_from_params(&with(&[
                ("StreamURL", "rtmp://a/1"),
                (
                    "MultiStreamURL",
                    r#"[{"URL":"rtmp://b/1","IsAliCdn":true}]"#
                )
            ])),
            Err(RelayError::Invalid(_))
        ));
        assert!(matches!(
            start_from_params(&with(&[
                ("StreamURL", "rtmp://a/1"),
                ("TranscodeParams", r#"{"Layout":{"UserPanes":[{"X":1.5}]}}"#)
            ])),
            Err(RelayError::Invalid(_))
        ));
        assert!(matches!(
            start_from_params(&with(&[("StreamURL", "rtmp://a/1"), ("MixMode", "2")])),
            Err(RelayError::Invalid(_))
        ));
    }

    #[test]
    fn the_detail_of_a_relay_repeats_its_parameters_with_blocks_as_objects() {
        let mut r = lobby();
        r.start(APP, "t1", single("lobby", "rtmp://a/1"), 0)
            .unwrap();
        assert_eq!(
            r.get(APP, "t1").unwrap().detail(),
            json!({"AppId": APP, "ChannelId": "lobby", "TaskId": "t1", "MixMode": "0",
                   "StreamURL": "rtmp://a/1", "Region": "CN-Shanghai",
                   "SingleSubParams": {"UserId": "host-1", "StreamType": 0, "SourceType": "camera"}})
        );
    }

    #[test]
    fn pages_list_an_apps_relays_by_task_id() {
        let mut r = lobby();
        for i in [3, 1, 2] {
            r.start(
                APP,
                &format!("t{i}"),
                single("lobby", &format!("rtmp://a/{i}")),
                0,
            )
            .unwrap();
        }
        let ids = |p: Vec<&Relay>| p.iter().map(|r| r.task_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(r.page(APP, 1, 2)), ["t1", "t2"]);
        assert_eq!(ids(r.page(APP, 2, 2)), ["t3"]);
        assert!(r.page("other-app", 1, 100).is_empty());
    }
}
