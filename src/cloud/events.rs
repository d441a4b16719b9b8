//! The wire form of the MPU event operations of Live 2016-11-01 (CreateRtcMPUEventSub,
//! UpdateRtcMPUEventSub, DescribeRtcMPUEventSub, DeleteRtcMPUEventSub,
//! ListRtcMPUEventSubRecord) and of the callbacks the cloud POSTs, as documented
//! (docs/research/live-mpu/live-mpu-docs.md, sections 6-10).
//!
//! Everything read here comes from outside and is bounded: identifiers must look like
//! identifiers, and what does not is dropped, never passed on. Pure: no I/O, no clock.

use serde::Deserialize;

/// The operations, by their `Action` names.
pub mod actions {
    pub const CREATE: &str = "CreateRtcMPUEventSub";
    pub const UPDATE: &str = "UpdateRtcMPUEventSub";
    pub const DESCRIBE: &str = "DescribeRtcMPUEventSub";
    pub const DELETE: &str = "DeleteRtcMPUEventSub";
    pub const LIST_RECORDS: &str = "ListRtcMPUEventSubRecord";
}

/// The largest callback body the receiver reads (the documented body is a few hundred bytes).
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;
/// Records asked for per ListRtcMPUEventSubRecord page (its maximum).
pub const RECORDS_PAGE_SIZE: u32 = 100;

type Params = Vec<(&'static str, String)>;

pub fn create_params(app_id: &str, callback_url: &str) -> Params {
    vec![
        ("AppId", app_id.to_owned()),
        ("CallbackUrl", callback_url.to_owned()),
    ]
}

pub fn update_params(app_id: &str, callback_url: &str) -> Params {
    create_params(app_id, callback_url)
}

pub fn app_params(app_id: &str) -> Params {
    vec![("AppId", app_id.to_owned())]
}

/// One page of the delivery log between two instants (Unix seconds).
pub fn records_params(app_id: &str, sub_id: &str, start: i64, end: i64, page_no: u32) -> Params {
    let iso = |s: i64| {
        jiff::Timestamp::from_second(s)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    vec![
        ("AppId", app_id.to_owned()),
        ("SubId", sub_id.to_owned()),
        ("StartTime", iso(start)),
        ("EndTime", iso(end)),
        ("PageNo", page_no.to_string()),
        ("PageSize", RECORDS_PAGE_SIZE.to_string()),
    ]
}

/// An identifier as Alibaba's are (AppId, TaskId, SubId, MsgId): 1 to 128 of letters, digits,
/// `_`, `-`, `.`.
fn identifier(text: &str) -> Option<String> {
    let ok = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then(|| text.to_owned())
}

/// A subscription as DescribeRtcMPUEventSub shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub sub_id: String,
    pub callback_url: String,
}

/// What DescribeRtcMPUEventSub answered: the app's subscription, or `None` without one.
pub fn described(answer: &serde_json::Value) -> Option<Subscription> {
    let info = answer.get("SubInfo")?;
    let sub_id = identifier(info.get("SubId")?.as_str()?)?;
    let callback_url = info.get("CallbackUrl")?.as_str()?;
    (callback_url.len() <= 2083).then(|| Subscription {
        sub_id,
        callback_url: callback_url.to_owned(),
    })
}

/// The `SubId` CreateRtcMPUEventSub answered.
pub fn created(answer: &serde_json::Value) -> Option<String> {
    identifier(answer.get("SubId")?.as_str()?)
}

/// A callback as the cloud POSTs it: only what makes a hint. Nothing else of the body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub app_id: String,
    pub task_id: String,
    pub msg_id: String,
    /// `Payload.EventTs`, Unix milliseconds, when given.
    pub event_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    #[serde(borrow)]
    app_id: &'a str,
    #[serde(borrow)]
    task_id: &'a str,
    #[serde(borrow)]
    msg_id: &'a str,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Payload {
    #[serde(default)]
    event_ts: Option<i64>,
}

/// Reads a callback body; `None` when it is not one (unparseable, a field missing or not an
/// identifier).
pub fn callback(body: &[u8]) -> Option<Callback> {
    if body.len() > MAX_CALLBACK_BYTES {
        return None;
    }
    let parsed: Body<'_> = serde_json::from_slice(body).ok()?;
    Some(Callback {
        app_id: identifier(parsed.app_id)?,
        task_id: identifier(parsed.task_id)?,
        msg_id: identifier(parsed.msg_id)?,
        event_ms: parsed.payload.and_then(|p| p.event_ts),
    })
}

/// One page of the delivery log: the callbacks it holds that did not get through (a try whose
/// `HTTPCode` is not `"200"`: the receiver refused it, or could not be reached), and whether
/// more pages follow. A callback that got through was a hint when it came.
pub fn records(answer: &serde_json::Value) -> (Vec<Callback>, bool) {
    let more = answer
        .get("HasMore")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let logs = answer
        .get("Logs")
        .and_then(serde_json::Value::as_array)
        .map(|logs| {
            logs.iter()
                .take(RECORDS_PAGE_SIZE as usize)
                .filter(|log| {
                    log.get("HTTPCode").and_then(serde_json::Value::as_str) != Some("200")
                })
                .filter_map(|log| log.get("Data")?.as_str())
                .filter_map(|data| callback(data.as_bytes()))
                .collect()
        })
        .unwrap_or_default();
    (logs, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOCUMENTED: &str = r#"{"EventType":1,"MsgId":"42bba8b5-1","AppId":"rtcdev","SubId":"Sub-9799B2C45009799B2C4500","TaskId":"mpucallbacktest","CallbackTs":1712656430476,"Payload":{"DstUrl":"rtmp://domain/app/stream?auth","EventTs":1712656430384,"EventCode":1,"ErrorCode":0,"ErrorMessage":""}}"#;

    #[test]
    fn the_documented_callback_reads_as_a_hint_for_its_task() {
        let hint = callback(DOCUMENTED.as_bytes()).unwrap();
        assert_eq!(
            hint,
            Callback {
                app_id: "rtcdev".into(),
                task_id: "mpucallbacktest".into(),
                msg_id: "42bba8b5-1".into(),
                event_ms: Some(1_712_656_430_384),
            }
        );
    }

    #[test]
    fn bodies_that_are_not_callbacks_are_refused() {
        let too_big = format!("{{\"AppId\":\"{}\"}}", "a".repeat(MAX_CALLBACK_BYTES));
        let long_task = DOCUMENTED.replace("mpucallbacktest", &"t".repeat(129));
        for body in [
            "",
            "null",
            "[1]",
            r#"{"AppId":"a","TaskId":"t"}"#,
            r#"{"AppId":"a","TaskId":"../x","MsgId":"m"}"#,
            r#"{"AppId":"a b","TaskId":"t","MsgId":"m"}"#,
            r#"{"AppId":1,"TaskId":"t","MsgId":"m"}"#,
            too_big.as_str(),
            long_task.as_str(),
        ] {
            assert_eq!(callback(body.as_bytes()), None, "{body:.80}");
        }
    }

    #[test]
    fn describe_create_and_the_log_read_only_what_is_well_formed() {
        let answer = json!({"RequestId": "r", "SubInfo": {"SubId": "Sub-1", "AppId": "a", "CallbackUrl": "https://x/y"}});
        assert_eq!(
            described(&answer),
            Some(Subscription {
                sub_id: "Sub-1".into(),
                callback_url: "https://x/y".into()
            })
        );
        assert_eq!(described(&json!({"RequestId": "r"})), None);
        assert_eq!(described(&json!({"SubInfo": {"SubId": "bad id"}})), None);
        assert_eq!(
            created(&json!({"SubId": "Sub-2"})).as_deref(),
            Some("Sub-2")
        );
        assert_eq!(created(&json!({"SubId": 3})), None);
        let page = json!({"HasMore": true, "Logs": [
            {"Data": DOCUMENTED, "HTTPCode": "0"},
            {"Data": DOCUMENTED.replace("mpucallbacktest", "delivered"), "HTTPCode": "200"},
            {"Data": "garbage", "HTTPCode": "500"},
            {"Time": "x"},
        ]});
        let (logs, more) = records(&page);
        assert!(more);
        assert_eq!(
            logs.len(),
            1,
            "only what did not get through, and reads as a callback"
        );
        assert_eq!(logs[0].task_id, "mpucallbacktest");
    }

    #[test]
    fn a_records_page_asks_for_a_window_in_iso_8601() {
        let params = records_params("a", "Sub-1", 0, 86_400, 2);
        assert!(params.contains(&("StartTime", "1970-01-01T00:00:00Z".into())));
        assert!(params.contains(&("EndTime", "1970-01-02T00:00:00Z".into())));
        assert!(params.contains(&("PageNo", "2".into())));
    }
}
