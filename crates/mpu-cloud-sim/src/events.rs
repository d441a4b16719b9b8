//! MPU event subscriptions and their callbacks, as a pure model (issue 27): what
//! CreateRtcMPUEventSub, UpdateRtcMPUEventSub, DescribeRtcMPUEventSub and DeleteRtcMPUEventSub
//! keep, which callbacks a relay's status change queues, how they are retried, and the delivery
//! log ListRtcMPUEventSubRecord pages through.
//!
//! What Alibaba documents (docs/research/live-mpu/live-mpu-docs.md, sections 6-10):
//! - one subscription per AppId (Update, Describe and Delete name the AppId alone), with an
//!   optional list of at most 20 ChannelIds (none: every channel) and a CallbackUrl of at most
//!   2 083 characters;
//! - a callback is a JSON POST, delivered when the receiver answers HTTP 200; the body is
//!   `{"EventType","MsgId","AppId","SubId","TaskId","CallbackTs","Payload":{"DstUrl","EventTs",
//!   "EventCode","ErrorCode","ErrorMessage"}}`;
//! - the delivery log keeps, per callback, MsgId, Data (the body), HTTPCode, Cost (ms) and Time,
//!   for 7 days.
//!
//! What it does not document, and the simulator chooses (the operator reads none of it: a
//! callback is only a hint to poll): EventType 1 for a status change, EventCode the new status,
//! ErrorCode 0. Other Alibaba callbacks are retried about every 10 s up to 3 times and may come
//! twice or out of order; [`DeliveryRules`] scripts all of that, and a delay before the first try.
//!
//! Pure: no I/O, no clock; times are Unix milliseconds passed in.

use std::collections::BTreeMap;

/// The parameters of the subscription operations, as Alibaba spells them (AppId, PageNo and
/// PageSize are the relay operations' own, [`crate::relay::params`]).
pub mod params {
    pub const CALLBACK_URL: &str = "CallbackUrl";
    pub const CHANNEL_IDS: &str = "ChannelIds";
    pub const SUB_ID: &str = "SubId";
    pub const START_TIME: &str = "StartTime";
    pub const END_TIME: &str = "EndTime";
}

/// The most ChannelIds a subscription may name.
pub const MAX_CHANNELS: usize = 20;
/// The longest CallbackUrl.
pub const MAX_CALLBACK_URL: usize = 2083;
/// How long the delivery log keeps a record.
pub const LOG_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// One AppId's subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub sub_id: String,
    pub app_id: String,
    /// Empty: every channel of the app.
    pub channel_ids: Vec<String>,
    pub callback_url: String,
    pub created_ms: i64,
}

impl Subscription {
    fn covers(&self, channel: Option<&str>) -> bool {
        self.channel_ids.is_empty()
            || channel.is_some_and(|c| self.channel_ids.iter().any(|id| id == c))
    }
}

/// How callbacks are delivered (scripted by a test: `PUT /admin/events/rules`, camelCase; a
/// field left out keeps its default).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryRules {
    /// Before the first try.
    pub delay_ms: i64,
    /// Between tries after an answer other than 200.
    pub retry_every_ms: i64,
    /// Tries after the first.
    pub retries: u32,
    /// Every n-th callback is sent twice (0: never).
    pub duplicate_every: u32,
    /// Every n-th callback is held back one retry interval, so it arrives after later ones
    /// (0: never).
    pub late_every: u32,
    /// The receiver cannot be reached (the network between the cloud and it is down): every
    /// try fails at once, logged with HTTP code 0, and retried as any failure is.
    pub unreachable: bool,
}

impl Default for DeliveryRules {
    fn default() -> Self {
        DeliveryRules {
            delay_ms: 0,
            retry_every_ms: 10_000,
            retries: 3,
            duplicate_every: 0,
            late_every: 0,
            unreachable: false,
        }
    }
}

/// A callback waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub msg_id: String,
    pub app_id: String,
    pub sub_id: String,
    pub task_id: String,
    pub callback_url: String,
    /// The JSON body, as sent.
    pub body: String,
    /// Tries made so far.
    pub tries: u32,
    pub due_ms: i64,
}

/// One try of a callback, as ListRtcMPUEventSubRecord shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub msg_id: String,
    pub app_id: String,
    pub sub_id: String,
    pub callback_url: String,
    pub data: String,
    /// The receiver's HTTP status as text; `"0"` when it could not be reached.
    pub http_code: String,
    pub cost_ms: i64,
    pub time_ms: i64,
}

/// A relay task's status change, as a callback reports it.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub app_id: &'a str,
    pub task_id: &'a str,
    /// The relay's channel; unknown for a task the admin API set.
    pub channel: Option<&'a str>,
    /// Where the relay pushes (`Payload.DstUrl`).
    pub dst_url: &'a str,
    pub status: i64,
}

/// Why a subscription operation is refused (`InvalidParam` with this text, as Alibaba answers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("the app {0} already has a subscription")]
    Exists(String),
    #[error("the app {0} has no subscription")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// Every subscription (by AppId: the simulator keeps tasks by AppId and TaskId, whoever asks),
/// the callbacks queued and the delivery log.
#[derive(Debug, Default)]
pub struct Events {
    pub rules: DeliveryRules,
    subscriptions: BTreeMap<String, Subscription>,
    queue: Vec<Callback>,
    log: Vec<Record>,
    /// Callbacks queued so far: MsgIds and the duplicate and late rules count them.
    sent: u64,
    subs_created: u64,
}

fn check_channels(channel_ids: &str) -> Result<Vec<String>, EventsError> {
    let ids: Vec<String> = channel_ids
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.len() > MAX_CHANNELS {
        return Err(EventsError::Invalid(format!(
            "ChannelIds names {} channels; at most {MAX_CHANNELS}",
            ids.len()
        )));
    }
    let mut seen = ids.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != ids.len() {
        return Err(EventsError::Invalid(
            "ChannelIds names a channel twice".into(),
        ));
    }
    if let Some(bad) = ids.iter().find(|c| {
        c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(EventsError::Invalid(format!(
            "ChannelIds: {bad:?} is not a channel ID"
        )));
    }
    Ok(ids)
}

fn check_url(url: &str) -> Result<(), EventsError> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let chars_ok = url
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_?%=#./+:&~".contains(&b));
    if url.len() > MAX_CALLBACK_URL || !scheme_ok || !chars_ok {
        return Err(EventsError::Invalid(
            "CallbackUrl must be an http(s) URL of at most 2083 characters".into(),
        ));
    }
    Ok(())
}

impl Events {
    /// CreateRtcMPUEventSub: the new subscription's SubId.
    pub fn create(
        &mut self,
        app_id: &str,
        channel_ids: Option<&str>,
        callback_url: &str,
        now_ms: i64,
    ) -> Result<String, EventsError> {
        check_url(callback_url)?;
        let channel_ids = check_channels(channel_ids.unwrap_or_default())?;
        let key = app_id.to_owned();
        if self.subscriptions.contains_key(&key) {
            return Err(EventsError::Exists(app_id.to_owned()));
        }
        self.subs_created += 1;
        let sub_id = format!("Sub-{:024X}", self.subs_created);
        self.subscriptions.insert(
            key,
            Subscription {
                sub_id: sub_id.clone(),
                app_id: app_id.to_owned(),
                channel_ids,
                callback_url: callback_url.to_owned(),
                created_ms: now_ms,
            },
        );
        Ok(sub_id)
    }

    /// UpdateRtcMPUEventSub: what is given replaces what was.
    pub fn update(
        &mut self,
        app_id: &str,
        channel_ids: Option<&str>,
        callback_url: Option<&str>,
    ) -> Result<(), EventsError> {
        if let Some(url) = callback_url {
            check_url(url)?;
        }
        let channels = channel_ids.map(check_channels).transpose()?;
        let sub = self
            .subscriptions
            .get_mut(app_id)
            .ok_or_else(|| EventsError::NotFound(app_id.to_owned()))?;
        if let Some(url) = callback_url {
            sub.callback_url = url.to_owned();
        }
        if let Some(channels) = channels {
            sub.channel_ids = channels;
        }
        Ok(())
    }

    /// DescribeRtcMPUEventSub.
    pub fn describe(&self, app_id: &str) -> Option<&Subscription> {
        self.subscriptions.get(app_id)
    }

    /// DeleteRtcMPUEventSub: its callbacks not yet sent are dropped.
    pub fn delete(&mut self, app_id: &str) -> Result<(), EventsError> {
        let sub = self
            .subscriptions
            .remove(app_id)
            .ok_or_else(|| EventsError::NotFound(app_id.to_owned()))?;
        self.queue.retain(|c| c.sub_id != sub.sub_id);
        Ok(())
    }

    /// A relay task changed: queues a callback to its app's subscription, when
    /// that covers the relay's channel.
    pub fn status_changed(&mut self, change: Change<'_>, now_ms: i64) {
        let Change {
            app_id,
            task_id,
            channel,
            dst_url,
            status,
        } = change;
        let Some(sub) = self.subscriptions.get(app_id) else {
            return;
        };
        if !sub.covers(channel) {
            return;
        }
        self.sent += 1;
        let n = self.sent;
        let msg_id = format!("{:08x}-0000-4000-8000-{:012x}", n as u32, n);
        let body = serde_json::json!({
            "EventType": 1,
            "MsgId": msg_id,
            "AppId": app_id,
            "SubId": sub.sub_id,
            "TaskId": task_id,
            "CallbackTs": now_ms,
            "Payload": {
                "DstUrl": dst_url,
                "EventTs": now_ms,
                "EventCode": status,
                "ErrorCode": 0,
                "ErrorMessage": "",
            },
        })
        .to_string();
        let every = |k: u32| k > 0 && n.is_multiple_of(u64::from(k));
        let late = if every(self.rules.late_every) {
            self.rules.retry_every_ms
        } else {
            0
        };
        let callback = Callback {
            msg_id,
            app_id: app_id.to_owned(),
            sub_id: sub.sub_id.clone(),
            task_id: task_id.to_owned(),
            callback_url: sub.callback_url.clone(),
            body,
            tries: 0,
            due_ms: now_ms + self.rules.delay_ms + late,
        };
        if every(self.rules.duplicate_every) {
            self.queue.push(callback.clone());
        }
        self.queue.push(callback);
    }

    /// The callbacks due at `now_ms`, taken out of the queue (oldest due first).
    pub fn due(&mut self, now_ms: i64) -> Vec<Callback> {
        let (mut due, rest): (Vec<Callback>, Vec<Callback>) =
            self.queue.drain(..).partition(|c| c.due_ms <= now_ms);
        self.queue = rest;
        due.sort_by_key(|c| c.due_ms);
        due
    }

    /// When the next callback is due.
    pub fn next_due(&self) -> Option<i64> {
        self.queue.iter().map(|c| c.due_ms).min()
    }

    /// What came of one try: logged, and tried again later unless the receiver said 200 or the
    /// retries are spent. `http_code` 0: the receiver could not be reached.
    pub fn tried(&mut self, mut callback: Callback, http_code: u16, cost_ms: i64, now_ms: i64) {
        self.log.retain(|r| now_ms - r.time_ms < LOG_KEPT_MS);
        self.log.push(Record {
            msg_id: callback.msg_id.clone(),
            app_id: callback.app_id.clone(),
            sub_id: callback.sub_id.clone(),
            callback_url: callback.callback_url.clone(),
            data: callback.body.clone(),
            http_code: http_code.to_string(),
            cost_ms,
            time_ms: now_ms,
        });
        callback.tries += 1;
        if http_code != 200 && callback.tries <= self.rules.retries {
            callback.due_ms = now_ms + self.rules.retry_every_ms;
            self.queue.push(callback);
        }
    }

    /// ListRtcMPUEventSubRecord: the records of `app_id` (and `sub_id` when given) between
    /// `start_ms` and `end_ms`, page `page_no` (from 1) of `page_size`; and whether more follow.
    pub fn records(
        &self,
        app_id: &str,
        sub_id: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        page_no: usize,
        page_size: usize,
    ) -> (Vec<&Record>, bool) {
        let matching: Vec<&Record> = self
            .log
            .iter()
            .filter(|r| r.app_id == app_id && sub_id.is_none_or(|s| r.sub_id == s))
            .filter(|r| (start_ms..=end_ms).contains(&r.time_ms))
            .collect();
        let from = page_no.saturating_sub(1).saturating_mul(page_size);
        let page: Vec<&Record> = matching
            .iter()
            .skip(from)
            .take(page_size)
            .copied()
            .collect();
        let more = matching.len() > from.saturating_add(page.len());
        (page, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://operator.example.com/mpu-events/t0ken";

    fn subscribed(channels: Option<&str>) -> Events {
        let mut e = Events::default();
        e.create("app", channels, URL, 0).unwrap();
        e
    }

    fn change(e: &mut Events, task: &str, channel: Option<&str>, status: i64, now: i64) {
        let change = Change {
            app_id: "app",
            task_id: task,
            channel,
            dst_url: "rtmp://x/y",
            status,
        };
        e.status_changed(change, now);
    }

    #[test]
    fn one_subscription_per_app_with_its_bounds() {
        let mut e = subscribed(None);
        assert_eq!(
            e.create("app", None, URL, 1),
            Err(EventsError::Exists("app".into()))
        );
        let many: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
        assert!(matches!(
            e.create("b", Some(&many.join(",")), URL, 0),
            Err(EventsError::Invalid(_))
        ));
        assert!(matches!(
            e.create("b", Some("a,a"), URL, 0),
            Err(EventsError::Invalid(_))
        ));
        assert!(matches!(
            e.create("b", None, "ftp://x", 0),
            Err(EventsError::Invalid(_))
        ));
        let long = format!("https://x/{}", "a".repeat(2100));
        assert!(matches!(
            e.create("b", None, &long, 0),
            Err(EventsError::Invalid(_))
        ));
        e.update("app", Some("lobby"), Some("https://new.example.com/cb"))
            .unwrap();
        let sub = e.describe("app").unwrap();
        assert_eq!(sub.channel_ids, ["lobby"]);
        assert_eq!(sub.callback_url, "https://new.example.com/cb");
        e.delete("app").unwrap();
        assert_eq!(e.delete("app"), Err(EventsError::NotFound("app".into())));
        assert!(e.describe("app").is_none());
    }

    #[test]
    fn a_status_change_queues_the_documented_body_after_the_scripted_delay() {
        let mut e = subscribed(None);
        e.rules.delay_ms = 1500;
        change(&mut e, "t1", None, 5, 1000);
        assert!(e.due(2499).is_empty());
        let due = e.due(2500);
        assert_eq!(due.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        for key in [
            "EventType",
            "MsgId",
            "AppId",
            "SubId",
            "TaskId",
            "CallbackTs",
            "Payload",
        ] {
            assert!(body.get(key).is_some(), "{key} in {body}");
        }
        assert_eq!(body["TaskId"], "t1");
        assert_eq!(body["Payload"]["EventCode"], 5);
        assert_eq!(due[0].callback_url, URL);
    }

    #[test]
    fn channels_outside_the_subscription_and_apps_without_one_send_nothing() {
        let mut e = subscribed(Some("lobby,stage"));
        change(&mut e, "t1", Some("other"), 1, 0);
        change(&mut e, "t2", None, 1, 0);
        let other_app = Change {
            app_id: "no-sub",
            task_id: "t3",
            channel: None,
            dst_url: "rtmp://x",
            status: 1,
        };
        e.status_changed(other_app, 0);
        assert!(e.due(0).is_empty());
        change(&mut e, "t4", Some("stage"), 1, 0);
        assert_eq!(e.due(0).len(), 1);
    }

    #[test]
    fn a_refused_callback_is_tried_three_times_more_ten_seconds_apart_and_logged_each_time() {
        let mut e = subscribed(None);
        change(&mut e, "t1", None, 4, 0);
        let mut now = 0;
        let mut tries = 0;
        while let Some(due) = e.next_due() {
            now = due;
            for callback in e.due(now) {
                e.tried(callback, 500, 3, now);
                tries += 1;
            }
        }
        assert_eq!((tries, now), (4, 30_000));
        let (records, more) = e.records("app", None, 0, 40_000, 1, 100);
        assert_eq!(records.len(), 4);
        assert!(!more);
        assert!(
            records
                .iter()
                .all(|r| r.http_code == "500" && r.cost_ms == 3)
        );
    }

    #[test]
    fn a_delivered_callback_is_not_tried_again() {
        let mut e = subscribed(None);
        change(&mut e, "t1", None, 1, 0);
        let callback = e.due(0).pop().unwrap();
        e.tried(callback, 200, 1, 0);
        assert_eq!(e.next_due(), None);
    }

    #[test]
    fn scripted_duplicates_and_late_arrivals() {
        let mut e = subscribed(None);
        e.rules.duplicate_every = 2;
        e.rules.late_every = 3;
        for (i, task) in ["a", "b", "c"].iter().enumerate() {
            change(&mut e, task, None, 1, i as i64);
        }
        let first: Vec<String> = e.due(100).into_iter().map(|c| c.task_id).collect();
        assert_eq!(first, ["a", "b", "b"], "b twice; c held back");
        let later: Vec<String> = e.due(20_000).into_iter().map(|c| c.task_id).collect();
        assert_eq!(later, ["c"]);
    }

    #[test]
    fn the_log_pages_and_filters_by_time_and_subscription() {
        let mut e = subscribed(None);
        for i in 0..5 {
            change(&mut e, &format!("t{i}"), None, 1, i * 1000);
        }
        for (i, callback) in e.due(10_000).into_iter().enumerate() {
            e.tried(callback, 200, 1, i as i64 * 1000);
        }
        let (page, more) = e.records("app", None, 0, 10_000, 1, 2);
        assert_eq!(page.len(), 2);
        assert!(more);
        let (last, more) = e.records("app", None, 0, 10_000, 3, 2);
        assert_eq!(last.len(), 1);
        assert!(!more);
        let (window, _) = e.records("app", None, 1000, 2000, 1, 100);
        assert_eq!(window.len(), 2);
        let sub = e.describe("app").unwrap().sub_id.clone();
        assert_eq!(e.records("app", Some(&sub), 0, 10_000, 1, 100).0.len(), 5);
        assert!(
            e.records("app", Some("Sub-other"), 0, 10_000, 1, 100)
                .0
                .is_empty()
        );
    }

    #[test]
    fn deleting_a_subscription_drops_its_queued_callbacks() {
        let mut e = subscribed(None);
        change(&mut e, "t1", None, 1, 0);
        e.delete("app").unwrap();
        assert!(e.due(100).is_empty());
    }
}
