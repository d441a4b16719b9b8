//! The admin HTTP API under `/admin/`: task statuses, account and uid QPS, fault injection (per
//! action) and call statistics, as JSON. Not part of Alibaba Cloud; tests, the demo and benchmarks drive it.
//!
//! Bodies are parsed by hand (not with axum's `Json` extractor) so a bad body gets a JSON error
//! naming the problem, like every other answer of the simulator.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Shared;
use super::faults::FaultRequest;

/// Admin paths, relative to `/admin`.
pub mod paths {
    pub const HEALTH: &str = "/health";
    pub const STATS: &str = "/stats";
    pub const STATS_RESET: &str = "/stats/reset";
    pub const TASKS: &str = "/tasks";
    pub const TASK: &str = "/tasks/{app_id}/{task_id}";
    pub const ACCOUNT: &str = "/accounts/{access_key_id}";
    pub const ACCOUNT_QPS: &str = "/accounts/{access_key_id}/qps";
    pub const UID_QPS: &str = "/uids/{uid}/qps";
    pub const FAULTS: &str = "/faults";
    pub const CHANNEL: &str = "/channels/{app_id}/{channel_id}";
    pub const RELAY: &str = "/relays/{app_id}/{task_id}";
    pub const EVENT_RULES: &str = "/events/rules";
}

type SharedState = AxumState<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::STATS, get(stats))
        .route(paths::STATS_RESET, post(reset_stats))
        .route(paths::TASKS, get(list_tasks).post(set_tasks))
        .route(paths::TASK, get(get_task).put(put_task).delete(delete_task))
        .route(paths::ACCOUNT, put(put_account))
        .route(paths::ACCOUNT_QPS, put(put_qps))
        .route(paths::UID_QPS, put(put_uid_qps))
        .route(paths::CHANNEL, put(put_channel))
        .route(paths::RELAY, get(get_relay))
        .route(
            paths::EVENT_RULES,
            get(get_event_rules).put(put_event_rules),
        )
        .route(
            paths::FAULTS,
            get(list_faults).post(add_faults).delete(clear_faults),
        )
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    AdminError {
        status,
        message: message.to_string(),
    }
    .into_response()
}

/// An admin request the simulator cannot act on, answered as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct AdminError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError {
        status: StatusCode::BAD_REQUEST,
        message: e.to_string(),
    })
}

/// One item or a list of them, so a benchmark can load 10 000 tasks in one call.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(t) => vec![t],
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChannelUsers {
    users: usize,
}

/// `PUT /admin/channels/{app}/{channel}` `{"users": N}`: how many users are in the channel.
async fn put_channel(
    AxumState(shared): SharedState,
    Path((app_id, channel_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ChannelUsers { users } = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let now = shared.clock();
    shared
        .lock()
        .set_channel_users(&app_id, &channel_id, users, now);
    axum::Json(json!({ "appId": app_id, "channelId": channel_id, "users": users })).into_response()
}

async fn get_relay(
    AxumState(shared): SharedState,
    Path((app_id, task_id)): Path<(String, String)>,
) -> Response {
    let now = shared.clock();
    match shared.lock().relay(&app_id, &task_id, now) {
        Some(relay) => axum::Json(relay).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no relay {app_id}/{task_id}"),
        ),
    }
}

/// `PUT /admin/events/rules` ([`crate::events::DeliveryRules`], camelCase): how callbacks are
/// delivered from now on.
async fn put_event_rules(AxumState(shared): SharedState, body: Bytes) -> Response {
    let rules = match parse::<crate::events::DeliveryRules>(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    shared.lock().events.rules = rules.clone();
    axum::Json(rules).into_response()
}

async fn get_event_rules(AxumState(shared): SharedState) -> Response {
    axum::Json(shared.lock().events.rules.clone()).into_response()
}

async fn health() -> Response {
    axum::Json(json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsQuery {
    /// Include every task's call count and last call time.
    #[serde(default)]
    tasks: bool,
    /// Include per-second buckets (default true).
    #[serde(default = "yes")]
    buckets: bool,
}

fn yes() -> bool {
    true
}

async fn stats(AxumState(shared): SharedState, Query(query): Query<StatsQuery>) -> Response {
    let now = shared.clock().wall.as_millisecond();
    let view = shared.lock().stats(query.tasks, query.buckets, now);
    axum::Json(view).into_response()
}

async fn reset_stats(AxumState(shared): SharedState) -> Response {
    let now = shared.clock();
    shared.lock().reset_stats(now);
    axum::Json(json!({ "reset": true })).into_response()
}

async fn list_tasks(AxumState(shared): SharedState) -> Response {
    let now = shared.clock().wall.as_millisecond();
    axum::Json(shared.lock().tasks(now)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskStatus {
    app_id: String,
    task_id: String,
    status: i64,
}

async fn set_tasks(AxumState(shared): SharedState, body: Bytes) -> Response {
    let tasks = match parse::<OneOrMany<TaskStatus>>(&body) {
        Ok(t) => t.into_vec(),
        Err(e) => return e.into_response(),
    };
    let count = tasks.len();
    let now = shared.clock();
    let mut state = shared.lock();
    for t in tasks {
        state.set_task(&t.app_id, &t.task_id, t.status, now);
    }
    axum::Json(json!({ "updated": count })).into_response()
}

async fn get_task(
    AxumState(shared): SharedState,
    Path((app, task)): Path<(String, String)>,
) -> Response {
    let now = shared.clock().wall.as_millisecond();
    match shared.lock().task(&app, &task, now) {
        Some(view) => axum::Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no task {app}/{task}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusOnly {
    status: i64,
}

async fn put_task(
    AxumState(shared): SharedState,
    Path((app, task)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let StatusOnly { status } = match parse(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let clock = shared.clock();
    let now = clock.wall.as_millisecond();
    let mut state = shared.lock();
    state.set_task(&app, &task, status, clock);
    match state.task(&app, &task, now) {
        Some(view) => axum::Json(view).into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "task vanished"),
    }
}

async fn delete_task(
    AxumState(shared): SharedState,
    Path((app, task)): Path<(String, String)>,
) -> Response {
    if shared.lock().remove_task(&app, &task) {
        axum::Json(json!({ "deleted": true })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no task {app}/{task}"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountBody {
    access_key_secret: String,
    /// The uid's new QPS (the uid shared with the account's other keys).
    #[serde(default)]
    qps: Option<u32>,
    /// The uid the account belongs to; its current one (or a derived one) when absent.
    #[serde(default)]
    uid: Option<String>,
}

async fn put_account(
    AxumState(shared): SharedState,
    Path(access_key_id): Path<String>,
    body: Bytes,
) -> Response {
    let account: AccountBody = match parse(&body) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut state = shared.lock();
    if let Err(message) = state.upsert_account(
        &access_key_id,
        &account.access_key_secret,
        account.qps,
        account.uid.as_deref(),
    ) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let uid = state.uid_of(&access_key_id);
    axum::Json(json!({ "accessKeyId": access_key_id, "uid": uid })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QpsBody {
    qps: u32,
}

async fn put_qps(
    AxumState(shared): SharedState,
    Path(access_key_id): Path<String>,
    body: Bytes,
) -> Response {
    let QpsBody { qps } = match parse(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let mut state = shared.lock();
    if state.set_qps(&access_key_id, qps) {
        let uid = state.uid_of(&access_key_id);
        axum::Json(json!({ "accessKeyId": access_key_id, "uid": uid, "qps": qps })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no account {access_key_id}"))
    }
}

async fn put_uid_qps(
    AxumState(shared): SharedState,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    let QpsBody { qps } = match parse(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    if shared.lock().set_uid_qps(&uid, qps) {
        axum::Json(json!({ "uid": uid, "qps": qps })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no uid {uid}"))
    }
}

async fn list_faults(AxumState(shared): SharedState) -> Response {
    let now = shared.clock();
    axum::Json(shared.lock().faults(now)).into_response()
}

async fn add_faults(AxumState(shared): SharedState, body: Bytes) -> Response {
    let requests = match parse::<OneOrMany<FaultRequest>>(&body) {
        Ok(s) => s.into_vec(),
        Err(e) => return e.into_response(),
    };
    let now = shared.clock();
    let mut state = shared.lock();
    let mut ids = Vec::with_capacity(requests.len());
    for request in requests {
        match state.add_fault(request.spec, &request.actions, now) {
            Ok(id) => ids.push(id),
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        }
    }
    axum::Json(json!({ "ids": ids })).into_response()
}

async fn clear_faults(AxumState(shared): SharedState) -> Response {
    shared.lock().clear_faults();
    axum::Json(json!({ "cleared": true })).into_response()
}
