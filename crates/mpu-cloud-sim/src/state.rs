//! The simulator's in-memory world and the request logic that reads and changes it: accounts
//! (AccessKeys) and the uids whose rate budgets they share, issued STS sessions, tasks, seen
//! nonces, faults and stats.
//!
//! Nothing here does I/O or reads a clock: the HTTP layer passes the received request and a
//! [`Clock`] reading in and renders the [`Answer`] that comes out, so the whole of Alibaba Cloud's
//! behaviour as simulated is plain synchronous code behind one mutex.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mpu_relay_sign::verify;
use mpu_relay_sign::{self as sign, Method, params};

use super::config::{self, RoleConfig, SimulatorConfig};
use super::events::{self, Change, Events};
use super::faults::{DEFAULT_HUGE_BYTES, FaultKind, FaultRule, FaultSet, FaultSpec};
use super::limiter::SlidingWindowLimiter;
use super::relay::{self, RelayRules, Relays};
use super::stats::{CallStats, CallStatsView, Outcome, UserAgents};
use super::wire::{self, Action, ApiError, IdGenerator, codes, messages};

/// STS form parameters of AssumeRoleWithOIDC.
pub mod sts_params {
    pub const ROLE_ARN: &str = "RoleArn";
    pub const OIDC_PROVIDER_ARN: &str = "OIDCProviderArn";
    pub const OIDC_TOKEN: &str = "OIDCToken";
    pub const ROLE_SESSION_NAME: &str = "RoleSessionName";
    pub const DURATION_SECONDS: &str = "DurationSeconds";
}

/// Alibaba's bounds on `DurationSeconds`: at least 15 minutes, 1 hour when absent.
pub const STS_MIN_DURATION_SECONDS: u64 = 900;
pub const STS_DEFAULT_DURATION_SECONDS: u64 = 3600;
/// Session name used when the caller sends none.
pub const STS_DEFAULT_SESSION_NAME: &str = "simulator-session";
/// Prefix of every temporary AccessKeyId, as Alibaba issues them.
pub const STS_ACCESS_KEY_PREFIX: &str = "STS.";
/// Prefix of every issued SecurityToken (Alibaba's tokens start this way).
const STS_TOKEN_PREFIX: &str = "CAIS";
/// Expired sessions are forgotten after this long, so they answer `Expired` for a while first.
const STS_FORGET_AFTER_SECONDS: i64 = 3600;
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const CONTENT_TYPE: &str = "content-type";
const USER_AGENT: &str = "user-agent";
/// Salts of the ids derived for GetCallerIdentity: a key's RAM user id, a role's RoleId.
const USER_ID_SALT: &str = "user:";
const ROLE_ID_SALT: &str = "role:";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A clock reading, taken once per request by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub wall: jiff::Timestamp,
    /// Microseconds of a monotonic clock; only differences matter.
    pub mono_micros: u64,
}

/// A received request, as the HTTP layer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Raw (still percent-encoded) query string, without `?`.
    pub query: &'a str,
    /// Header names lowercase; values that are not UTF-8 are left out.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// What to send back. Bodies are rendered by the HTTP layer, outside the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status {
        request_id: String,
        status: i64,
    },
    Error {
        request_id: String,
        host_id: &'static str,
        error: ApiError,
    },
    /// HTTP 200 with this JSON body (STS answers, relay operations).
    Json {
        body: serde_json::Value,
    },
    /// HTTP 200 with a JSON body cut short.
    Malformed {
        request_id: String,
    },
    /// HTTP 200 with a valid JSON body of about `bytes` bytes.
    Huge {
        request_id: String,
        status: i64,
        bytes: usize,
    },
    /// Close the connection without answering.
    Drop,
}

/// A reply and how long to hold it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub reply: Reply,
    pub delay_ms: u64,
}

/// One AccessKey (a RAM user).
struct Account {
    secret: String,
    /// The Alibaba account it belongs to, whose budget its calls draw on.
    uid: String,
    stats: CallStats,
}

/// One Alibaba account: the rate budget shared by all its keys and their STS sessions.
struct Uid {
    limiter: SlidingWindowLimiter,
    stats: CallStats,
}

struct StsSession {
    secret: String,
    token: String,
    expires: jiff::Timestamp,
    /// AccessKeyId of the configured account whose uid's budget the session draws on.
    account: String,
    role_arn: String,
    session_name: String,
}

#[derive(Default)]
struct Task {
    status: i64,
    /// Calls since the stats were reset.
    calls: u64,
    /// The last call ever (a reset keeps it: the first wait after a reset starts there).
    last_call_unix_ms: Option<i64>,
    /// The longest wait between two calls that ended since the reset, and when it ended.
    longest_wait: Option<(i64, i64)>,
}

impl Task {
    fn record_call(&mut self, at_ms: i64) {
        self.calls += 1;
        if let Some(previous) = self.last_call_unix_ms {
            let wait = at_ms - previous;
            if self.longest_wait.is_none_or(|(longest, _)| wait > longest) {
                self.longest_wait = Some((wait, at_ms));
            }
        }
        self.last_call_unix_ms = Some(at_ms);
    }

    /// The longest this task went without a call since the reset, counting the wait still
    /// open at `now_ms`; `None` while it was never called.
    fn longest_wait_ms(&self, now_ms: i64) -> Option<i64> {
        let open = now_ms - self.last_call_unix_ms?;
        Some(
            self.longest_wait
                .map_or(open, |(longest, _)| longest.max(open)),
        )
    }
}

/// Nonces seen per AccessKeyId, remembered as long as a request carrying them could still pass the
/// timestamp check (twice the skew tolerance, as the clock may be off either way).
#[derive(Default)]
struct NonceCache {
    seen: HashSet<(String, String)>,
    order: VecDeque<(u64, (String, String))>,
}

impl NonceCache {
    /// Records the nonce; false when it was seen already.
    fn insert(&mut self, key: (String, String), now_micros: u64, ttl_micros: u64) -> bool {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now_micros {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order
            .push_back((now_micros.saturating_add(ttl_micros), key));
        true
    }
}

/// Calls to the STS actions (AssumeRoleWithOIDC, GetCallerIdentity).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StsStats {
    pub calls: u64,
    /// Credentials issued by AssumeRoleWithOIDC.
    pub issued: u64,
    /// Answers other than success (error bodies, malformed or huge bodies, dropped connections).
    pub errors: u64,
    /// Calls an injected fault shaped (latency included).
    pub faults: u64,
    /// Calls by `Action`.
    pub actions: BTreeMap<String, u64>,
}

/// One task as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub app_id: String,
    pub task_id: String,
    pub status: i64,
    /// GetMPUTaskStatus calls that reached this task (authenticated and within budget).
    pub calls: u64,
    pub last_call_unix_ms: Option<i64>,
    /// The longest the task went without a call since the stats were reset, in milliseconds:
    /// between two calls (the first measured from the last call before the reset) or since its
    /// last call until this view was taken. Every call counts, so this is exact where sampling
    /// `lastCallUnixMs` misses a call. Absent while the task was never called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_wait_ms: Option<i64>,
    /// When the longest wait between two calls ended (absent when it is the open one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_wait_ended_unix_ms: Option<i64>,
}

/// Everything the stats endpoint reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    /// When the counters were last reset (or the simulator started), Unix milliseconds.
    pub since_unix_ms: i64,
    /// GetMPUTaskStatus calls per configured AccessKeyId; calls made with its STS sessions are
    /// counted here too.
    pub accounts: BTreeMap<String, AccountView>,
    /// GetMPUTaskStatus calls per uid (Alibaba account), the unit the QPS limit is counted in: the
    /// sum over its keys.
    pub uids: BTreeMap<String, UidView>,
    /// Calls that named no known account (bad or missing AccessKeyId, malformed requests).
    pub unattributed: CallStatsView,
    /// Every call to the cloud API (`/`), whatever its action, account or outcome: STS calls and
    /// unattributed ones included. Its per-second buckets show which callers called when.
    pub all: CallStatsView,
    pub sts: StsStats,
    /// Admitted calls of the relay actions (StartLiveMPUTask, ...) by action.
    pub relay_actions: BTreeMap<String, u64>,
    /// Present when asked for (`?tasks=true`): every task with its call count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
}

/// One account (AccessKey) in the stats.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// The limit in force for the key: its uid's, shared with the uid's other keys.
    pub qps: u32,
    /// The uid the key belongs to.
    pub uid: String,
    #[serde(flatten)]
    pub calls: CallStatsView,
}

/// One uid in the stats.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UidView {
    pub qps: u32,
    /// Its AccessKeyIds, sorted.
    pub access_key_ids: Vec<String>,
    #[serde(flatten)]
    pub calls: CallStatsView,
}

/// Where a call's counters go and whether a fault shaped its answer.
#[derive(Default)]
struct CallRecord {
    account: Option<String>,
    fault: bool,
    /// An STS call: counted in `sts` (and `all`), not against an account.
    sts: bool,
    /// A relay action: counted in `relay_actions` (and `all`); an account's and a uid's
    /// counters are its GetMPUTaskStatus calls, the ones its configured QPS limits.
    relay: bool,
}

/// The simulator's whole state.
pub struct State {
    clock_skew_micros: u64,
    /// How far the simulated cloud's clock is ahead of this machine's (negative: behind).
    clock_offset_micros: i64,
    default_qps: u32,
    accounts: HashMap<String, Account>,
    uids: HashMap<String, Uid>,
    sts_sessions: HashMap<String, StsSession>,
    sts_tokens: HashMap<String, String>,
    roles: HashMap<String, RoleConfig>,
    /// Session lifetimes shorter than `DurationSeconds`, by role ARN
    /// ([`crate::config::SimulatorConfig::role_session_seconds`]).
    role_session_seconds: std::collections::BTreeMap<String, u64>,
    tasks: HashMap<(String, String), Task>,
    /// Managed relays (Start/Update/Stop); each started one is also a task above.
    relays: Relays,
    /// The relay actions' own limits, per (uid, action), created on first use.
    relay_limiters: HashMap<(String, Action), SlidingWindowLimiter>,
    /// Limits per relay action that replace Alibaba's documented ones.
    relay_qps: BTreeMap<Action, u32>,
    /// Admitted relay calls by action, since the stats were reset.
    relay_actions: BTreeMap<String, u64>,
    /// MPU event subscriptions, the callbacks they queue and the delivery log.
    pub(crate) events: Events,
    nonces: NonceCache,
    faults: FaultSet,
    unattributed: CallStats,
    all: CallStats,
    user_agents: UserAgents,
    sts_stats: StsStats,
    since_unix_ms: i64,
    ids: IdGenerator,
}

impl State {
    pub fn new(config: &SimulatorConfig, now: Clock) -> Self {
        let accounts = config
            .effective_accounts()
            .into_iter()
            .map(|a| {
                let uid = config.uid_of(&a.access_key_id);
                (
                    a.access_key_id,
                    Account {
                        secret: a.access_key_secret,
                        uid,
                        stats: CallStats::default(),
                    },
                )
            })
            .collect();
        let uids = config
            .effective_uids()
            .into_iter()
            .map(|(uid, (qps, _))| {
                (
                    uid,
                    Uid {
                        limiter: SlidingWindowLimiter::new(qps),
                        stats: CallStats::default(),
                    },
                )
            })
            .collect();
        let tasks = config
            .all_tasks()
            .map(|(app, task, status)| {
                (
                    (app, task),
                    Task {
                        status,
                        ..Task::default()
                    },
                )
            })
            .collect();
        let seed = now.wall.as_nanosecond() as u64 ^ u64::from(std::process::id());
        Self {
            clock_skew_micros: config.clock_skew_seconds.saturating_mul(1_000_000),
            clock_offset_micros: config.clock_offset_seconds.saturating_mul(1_000_000),
            default_qps: config.default_qps,
            accounts,
            uids,
            sts_sessions: HashMap::new(),
            sts_tokens: HashMap::new(),
            roles: config
                .roles
                .iter()
                .map(|r| (r.role_arn.clone(), r.clone()))
                .collect(),
            role_session_seconds: config.role_session_seconds.clone(),
            tasks,
            relays: Relays::new(RelayRules::default()),
            relay_limiters: HashMap::new(),
            relay_qps: config.relay_qps.clone(),
            relay_actions: BTreeMap::new(),
            events: Events::default(),
            nonces: NonceCache::default(),
            faults: FaultSet::default(),
            unattributed: CallStats::default(),
            all: CallStats::default(),
            user_agents: UserAgents::default(),
            sts_stats: StsStats::default(),
            since_unix_ms: now.wall.as_millisecond(),
            ids: IdGenerator::new(seed),
        }
    }

    // -------------------------------------------------------------------------------------------
    // The cloud API
    // -------------------------------------------------------------------------------------------

    /// Answers one request to `/`: GetMPUTaskStatus (V1 or V3), STS AssumeRoleWithOIDC (unsigned)
    /// or STS GetCallerIdentity (V1 or V3).
    pub fn handle(&mut self, req: &Incoming<'_>, now: Clock) -> Answer {
        let request_id = self.ids.request_id();
        let mut record = CallRecord::default();
        let mut delay_ms = 0;
        let result = self.dispatch(req, now, &request_id, &mut record, &mut delay_ms);
        let (reply, outcome, code) = match result {
            Ok(reply) => {
                let outcome = match &reply {
                    Reply::Status { .. } | Reply::Json { .. } => Outcome::Ok,
                    _ => Outcome::Error,
                };
                (reply, outcome, None)
            }
            Err((error, host_id)) => {
                let outcome = if error.is_throttling() {
                    Outcome::Throttled
                } else {
                    Outcome::Error
                };
                let code = error.code.clone();
                (
                    Reply::Error {
                        request_id,
                        host_id,
                        error,
                    },
                    outcome,
                    Some(code),
                )
            }
        };
        let unix_second = now.wall.as_second();
        let agent = self.user_agents.label(header(req.headers, USER_AGENT));
        let (code, fault, micros) = (code.as_deref(), record.fault, now.mono_micros);
        self.all
            .record(outcome, code, fault, micros, unix_second, &agent);
        if record.sts {
            if fault {
                self.sts_stats.faults += 1;
            }
        } else if !record.relay {
            match record
                .account
                .as_ref()
                .and_then(|a| self.accounts.get_mut(a))
            {
                Some(account) => {
                    account
                        .stats
                        .record(outcome, code, fault, micros, unix_second, &agent);
                    if let Some(uid) = self.uids.get_mut(&account.uid) {
                        uid.stats
                            .record(outcome, code, fault, micros, unix_second, &agent);
                    }
                }
                None => {
                    self.unattributed
                        .record(outcome, code, fault, micros, unix_second, &agent);
                }
            }
        }
        Answer { reply, delay_ms }
    }

    fn dispatch(
        &mut self,
        req: &Incoming<'_>,
        now: Clock,
        request_id: &str,
        record: &mut CallRecord,
        delay_ms: &mut u64,
    ) -> Result<Reply, (ApiError, &'static str)> {
        let live = wire::HOST_LIVE;
        let method: Method = req.method.parse().map_err(|_| {
            (
                ApiError::new(
                    405,
                    codes::UNSUPPORTED_HTTP_METHOD,
                    messages::UNSUPPORTED_HTTP_METHOD,
                ),
                live,
            )
        })?;
        let query_params =
            verify::decode_query(req.query).map_err(|e| (ApiError::invalid_parameter(e), live))?;
        let params = merge_form_body(&query_params, req).map_err(|e| (e, live))?;
        let action = params
            .get(params::ACTION)
            .map(String::as_str)
            .or_else(|| header(req.headers, sign::headers::ACTION));
        let version = params
            .get(params::VERSION)
            .map(String::as_str)
            .or_else(|| header(req.headers, sign::headers::VERSION));
        let Some(action) = action else {
            return Err((ApiError::missing(params::ACTION), live));
        };
        match Action::from_name(action) {
            Some(action @ (Action::AssumeRoleWithOidc | Action::GetCallerIdentity)) => {
                record.sts = true;
                self.sts_stats.calls += 1;
                *self
                    .sts_stats
                    .actions
                    .entry(action.as_str().to_owned())
                    .or_default() += 1;
                let result = if action == Action::AssumeRoleWithOidc {
                    self.assume_role_with_oidc(&params, version, now, request_id, record, delay_ms)
                } else {
                    self.get_caller_identity(
                        req,
                        method,
                        &query_params,
                        &params,
                        version,
                        now,
                        request_id,
                        record,
                        delay_ms,
                    )
                };
                match &result {
                    Ok(Reply::Json { .. }) if action == Action::AssumeRoleWithOidc => {
                        self.sts_stats.issued += 1;
                    }
                    Ok(Reply::Json { .. }) => {}
                    _ => self.sts_stats.errors += 1,
                }
                result.map_err(|e| (e, wire::HOST_STS))
            }
            Some(Action::GetMpuTaskStatus) => {
                let host = wire::host_for_version(version);
                self.get_mpu_task_status(
                    req,
                    method,
                    &query_params,
                    &params,
                    version,
                    now,
                    request_id,
                    record,
                    delay_ms,
                )
                .map_err(|e| (e, host))
            }
            Some(action) => self
                .relay_call(
                    action,
                    req,
                    method,
                    &query_params,
                    &params,
                    version,
                    now,
                    request_id,
                    record,
                    delay_ms,
                )
                .map_err(|e| (e, live)),
            None => Err((
                ApiError::new(
                    404,
                    codes::INVALID_ACTION_NOT_FOUND,
                    messages::INVALID_ACTION_NOT_FOUND,
                ),
                live,
            )),
        }
    }

    /// An injected throttling storm for `action` on these keys answers at once, before the
    /// budget is consulted, so it consumes none of it.
    fn throttling_storm(
        &mut self,
        action: Action,
        keys: [&str; 2],
        now: Clock,
        record: &mut CallRecord,
    ) -> Result<(), ApiError> {
        let storm = self.faults.take(action, &keys, now.mono_micros, |k| {
            matches!(k, FaultKind::Throttle)
        });
        if storm.is_some() {
            record.fault = true;
            return Err(ApiError::throttled());
        }
        Ok(())
    }

    /// StartLiveMPUTask, UpdateLiveMPUTask, StopLiveMPUTask and ListRtcMPUTaskDetail: signed
    /// like GetMPUTaskStatus, each drawing on its own limit of the uid ([`Action::default_qps`]),
    /// with the rules of [`crate::relay`].
    #[allow(clippy::too_many_arguments)] // the parts of one received request, split once by dispatch
    fn relay_call(
        &mut self,
        action: Action,
        req: &Incoming<'_>,
        method: Method,
        query_params: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
        version: Option<&str>,
        now: Clock,
        request_id: &str,
        record: &mut CallRecord,
        delay_ms: &mut u64,
    ) -> Result<Reply, ApiError> {
        record.relay = true;
        check_version(version, &[wire::VERSION_LIVE])?;
        let access_key_id = self.authenticate(req, method, query_params, params, now, record)?;
        let budget_account = record.account.clone().unwrap_or_default();
        self.throttling_storm(action, [&access_key_id, &budget_account], now, record)?;
        let uid = self
            .accounts
            .get(&budget_account)
            .map(|a| a.uid.clone())
            .unwrap_or_default();
        let limit = self
            .relay_qps
            .get(&action)
            .copied()
            .or(action.default_qps())
            .unwrap_or(self.default_qps);
        let admitted = self
            .relay_limiters
            .entry((uid, action))
            .or_insert_with(|| SlidingWindowLimiter::new(limit))
            .try_acquire(now.mono_micros);
        if !admitted {
            return Err(ApiError::throttled());
        }
        // Injected faults for the action (`"actions": ["StartLiveMPUTask"]`): latency answers
        // late after the action took effect, as a slow cloud does.
        let keys = [access_key_id.as_str(), budget_account.as_str()];
        let fault = self.faults.take(action, &keys, now.mono_micros, |k| {
            !matches!(k, FaultKind::Throttle)
        });
        if let Some(reply) = apply_fault(fault, request_id, || 0, record, delay_ms)? {
            return Ok(reply);
        }
        *self
            .relay_actions
            .entry(action.as_str().to_owned())
            .or_default() += 1;
        let app = required(params, relay::params::APP_ID)?.to_owned();
        let at = now.wall.as_millisecond();
        self.apply_relay_stops(at);
        let task_id = params.get(relay::params::TASK_ID).cloned();
        let body = match action {
            Action::StartLiveMpuTask => {
                let task = required(params, relay::params::TASK_ID)?.to_owned();
                let spec = relay::start_from_params(params).map_err(relay_error)?;
                self.relays
                    .start(&app, &task, spec, at)
                    .map_err(relay_error)?;
                self.set_status(&app, &task, relay::RUNNING, at);
                serde_json::json!({"RequestId": request_id})
            }
            Action::UpdateLiveMpuTask => {
                let task = required(params, relay::params::TASK_ID)?.to_owned();
                let change = relay::change_from_params(params).map_err(relay_error)?;
                self.relays
                    .update(&app, &task, change, at)
                    .map_err(relay_error)?;
                serde_json::json!({"RequestId": request_id})
            }
            Action::StopLiveMpuTask => {
                let task = required(params, relay::params::TASK_ID)?.to_owned();
                self.relays.stop(&app, &task, at).map_err(relay_error)?;
                self.set_status(&app, &task, relay::STOPPED_BY_USER, at);
                serde_json::json!({"RequestId": request_id})
            }
            Action::CreateRtcMpuEventSub
            | Action::UpdateRtcMpuEventSub
            | Action::DescribeRtcMpuEventSub
            | Action::DeleteRtcMpuEventSub
            | Action::ListRtcMpuEventSubRecord => {
                let mut body = self.events_call(action, &app, params, at)?;
                body["RequestId"] = request_id.into();
                body
            }
            _ => {
                let tasks: Vec<serde_json::Value> = match task_id {
                    Some(task) => self
                        .relays
                        .get(&app, &task)
                        .map(relay::Relay::detail)
                        .into_iter()
                        .collect(),
                    None => {
                        let (page, size) = page_params(params)?;
                        self.relays
                            .page(&app, page, size)
                            .into_iter()
                            .map(relay::Relay::detail)
                            .collect()
                    }
                };
                serde_json::json!({"RequestId": request_id, "MPUTasks": tasks})
            }
        };
        Ok(Reply::Json { body })
    }

    /// The four subscription operations and the delivery log, on `app`'s subscription
    /// ([`crate::events`]); the answer without its `RequestId`.
    fn events_call(
        &mut self,
        action: Action,
        app: &str,
        params: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<serde_json::Value, ApiError> {
        let param = |name: &str| params.get(name).map(String::as_str);
        let iso = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default()
        };
        Ok(match action {
            Action::CreateRtcMpuEventSub => {
                let url = required(params, events::params::CALLBACK_URL)?;
                let sub_id = self
                    .events
                    .create(app, param(events::params::CHANNEL_IDS), url, now_ms)
                    .map_err(events_error)?;
                serde_json::json!({ "SubId": sub_id })
            }
            Action::UpdateRtcMpuEventSub => {
                self.events
                    .update(
                        app,
                        param(events::params::CHANNEL_IDS),
                        param(events::params::CALLBACK_URL),
                    )
                    .map_err(events_error)?;
                serde_json::json!({})
            }
            Action::DescribeRtcMpuEventSub => {
                let sub = self
                    .events
                    .describe(app)
                    .ok_or_else(|| events_error(events::EventsError::NotFound(app.to_owned())))?;
                let mut info = serde_json::json!({
                    "SubId": sub.sub_id,
                    "AppId": sub.app_id,
                    "CreateTime": iso(sub.created_ms),
                    "CallbackUrl": sub.callback_url,
                });
                if !sub.channel_ids.is_empty() {
                    info["ChannelIds"] = sub.channel_ids.join(",").into();
                }
                serde_json::json!({ "SubInfo": info })
            }
            Action::DeleteRtcMpuEventSub => {
                self.events.delete(app).map_err(events_error)?;
                serde_json::json!({})
            }
            _ => {
                let time = |name: &str| -> Result<i64, ApiError> {
                    let value = required(params, name)?;
                    value
                        .parse::<jiff::Timestamp>()
                        .map(|t| t.as_millisecond())
                        .map_err(|_| {
                            events_error(events::EventsError::Invalid(format!(
                                "{name} {value:?} is not yyyy-MM-ddTHH:mm:ssZ"
                            )))
                        })
                };
                let (start, end) = (
                    time(events::params::START_TIME)?,
                    time(events::params::END_TIME)?,
                );
                let (page, size) = page_params(params)?;
                let (records, more) =
                    self.events
                        .records(app, param(events::params::SUB_ID), start, end, page, size);
                let logs: Vec<serde_json::Value> = records
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "AppId": r.app_id,
                            "SubId": r.sub_id,
                            "CallbackUrl": r.callback_url,
                            "Cost": r.cost_ms,
                            "Data": r.data,
                            "HTTPCode": r.http_code,
                            "MsgId": r.msg_id,
                            "Time": iso(r.time_ms),
                        })
                    })
                    .collect();
                serde_json::json!({ "Count": logs.len(), "HasMore": more, "Logs": logs })
            }
        })
    }

    /// Relays whose channel has been empty for their idle time stop, and their tasks answer so.
    fn apply_relay_stops(&mut self, now_ms: i64) {
        for (app, task, status) in self.relays.tick(now_ms) {
            self.set_status(&app, &task, status, now_ms);
        }
    }

    /// Every change of a task's status goes through here: a change (not a repeat) queues a
    /// callback to its app's event subscription, as the cloud's do.
    fn set_status(&mut self, app: &str, task: &str, status: i64, now_ms: i64) {
        let entry = self
            .tasks
            .entry((app.to_owned(), task.to_owned()))
            .or_default();
        if std::mem::replace(&mut entry.status, status) == status {
            return;
        }
        let relay = self.relays.get(app, task);
        let change = Change {
            app_id: app,
            task_id: task,
            channel: relay.map(|r| r.spec.channel_id.as_str()),
            dst_url: relay
                .and_then(|r| r.spec.outputs.first())
                .map_or("", String::as_str),
            status,
        };
        self.events.status_changed(change, now_ms);
    }

    /// Sets how many users are in a channel, as scripted from the admin API: who streams is not
    /// the API's business. A channel that empties stops its relays after their idle time.
    pub fn set_channel_users(&mut self, app: &str, channel: &str, users: usize, now: Clock) {
        let at = now.wall.as_millisecond();
        let present = self.relays.users(app, channel);
        if users >= present {
            self.relays.join(app, channel, users - present);
        } else {
            self.relays.leave(app, channel, present - users, at);
        }
        self.apply_relay_stops(at);
    }

    /// A relay as ListRtcMPUTaskDetail shows it, with its status.
    pub fn relay(&mut self, app: &str, task: &str, now: Clock) -> Option<serde_json::Value> {
        self.apply_relay_stops(now.wall.as_millisecond());
        let relay = self.relays.get(app, task)?;
        let mut detail = relay.detail();
        detail["Status"] = relay.status.into();
        detail["Revision"] = relay.revision.into();
        Some(detail)
    }

    #[allow(clippy::too_many_arguments)] // the parts of one received request, split once by dispatch
    fn get_mpu_task_status(
        &mut self,
        req: &Incoming<'_>,
        method: Method,
        query_params: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
        version: Option<&str>,
        now: Clock,
        request_id: &str,
        record: &mut CallRecord,
        delay_ms: &mut u64,
    ) -> Result<Reply, ApiError> {
        check_version(version, &[wire::VERSION_LIVE, wire::VERSION_RTC])?;
        let access_key_id = self.authenticate(req, method, query_params, params, now, record)?;
        let budget_account = record.account.clone().unwrap_or_default();

        let action = Action::GetMpuTaskStatus;
        let keys = [access_key_id.as_str(), budget_account.as_str()];
        self.throttling_storm(action, keys, now, record)?;
        // The budget is the uid's, shared by all keys of one Alibaba account.
        let admitted = self.accounts.get(&budget_account).is_some_and(|account| {
            self.uids
                .get_mut(&account.uid)
                .is_some_and(|uid| uid.limiter.try_acquire(now.mono_micros))
        });
        if !admitted {
            return Err(ApiError::throttled());
        }
        let fault = self.faults.take(action, &keys, now.mono_micros, |k| {
            !matches!(k, FaultKind::Throttle)
        });
        let huge_status = || self.peek_status(params).unwrap_or(0);
        if let Some(reply) = apply_fault(fault, request_id, huge_status, record, delay_ms)? {
            return Ok(reply);
        }

        let app_id = required(params, params::APP_ID)?;
        let task_id = required(params, params::TASK_ID)?;
        if self.relays.get(app_id, task_id).is_some() {
            // A managed relay may have stopped by itself since anyone last looked.
            self.apply_relay_stops(now.wall.as_millisecond());
        }
        let task = self
            .tasks
            .get_mut(&(app_id.to_owned(), task_id.to_owned()))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    codes::INVALID_TASK_NOT_FOUND,
                    messages::INVALID_TASK_NOT_FOUND,
                )
            })?;
        task.record_call(now.wall.as_millisecond());
        Ok(Reply::Status {
            request_id: request_id.to_owned(),
            status: task.status,
        })
    }

    /// The status a huge body should carry, when the request names a known task.
    fn peek_status(&self, params: &BTreeMap<String, String>) -> Option<i64> {
        let app = params.get(params::APP_ID)?;
        let task = params.get(params::TASK_ID)?;
        self.tasks
            .get(&(app.clone(), task.clone()))
            .map(|t| t.status)
    }

    /// Checks a signed call (V3 when it carries `Authorization`, V1 otherwise): timestamp,
    /// credentials, signature and nonce. Returns its AccessKeyId; `record.account` names the
    /// configured account whose budget it draws on.
    fn authenticate(
        &mut self,
        req: &Incoming<'_>,
        method: Method,
        query_params: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
        now: Clock,
        record: &mut CallRecord,
    ) -> Result<String, ApiError> {
        let (access_key_id, nonce) = match header(req.headers, sign::headers::AUTHORIZATION) {
            Some(authorization) => {
                self.verify_v3(req, method, query_params, authorization, now, record)?
            }
            None => self.verify_v1(method, params, now, record)?,
        };
        let ttl = self.clock_skew_micros.saturating_mul(2).max(1_000_000);
        if !self
            .nonces
            .insert((access_key_id.clone(), nonce), now.mono_micros, ttl)
        {
            return Err(ApiError::new(
                400,
                codes::SIGNATURE_NONCE_USED,
                messages::SIGNATURE_NONCE_USED,
            ));
        }
        Ok(access_key_id)
    }

    /// STS GetCallerIdentity: signed like GetMPUTaskStatus (and rejected the same way), but it
    /// draws on no rate budget, as STS limits are not the status API's. Answers who the key is:
    /// a RAM user of its uid, or the role session that STS credentials were issued for.
    #[allow(clippy::too_many_arguments)] // the parts of one received request, split once by dispatch
    fn get_caller_identity(
        &mut self,
        req: &Incoming<'_>,
        method: Method,
        query_params: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
        version: Option<&str>,
        now: Clock,
        request_id: &str,
        record: &mut CallRecord,
        delay_ms: &mut u64,
    ) -> Result<Reply, ApiError> {
        check_version(version, &[wire::VERSION_STS])?;
        let access_key_id = self.authenticate(req, method, query_params, params, now, record)?;
        let budget_account = record.account.clone().unwrap_or_default();
        let keys = [access_key_id.as_str(), budget_account.as_str()];
        let fault = self
            .faults
            .take(Action::GetCallerIdentity, &keys, now.mono_micros, |_| true);
        if let Some(reply) = apply_fault(fault, request_id, || 0, record, delay_ms)? {
            return Ok(reply);
        }
        // Authenticated under the same lock, so the key is known; the fallback is for safety.
        let body = self.identity(&access_key_id, request_id).ok_or_else(|| {
            ApiError::new(
                404,
                codes::INVALID_ACCESS_KEY_ID_NOT_FOUND,
                messages::INVALID_ACCESS_KEY_ID_NOT_FOUND,
            )
        })?;
        Ok(Reply::Json { body })
    }

    /// GetCallerIdentity's body for a configured key or an issued STS session. Field presence as
    /// Alibaba documents it: `UserId` only for a RAM user, `RoleId` only for an assumed role.
    fn identity(&self, access_key_id: &str, request_id: &str) -> Option<serde_json::Value> {
        if let Some(account) = self.accounts.get(access_key_id) {
            // The simulator knows no user names: a key's RAM user is named after the key.
            let user_id = config::derive_digits(USER_ID_SALT, access_key_id);
            return Some(serde_json::json!({
                "RequestId": request_id,
                "IdentityType": wire::IDENTITY_RAM_USER,
                "AccountId": account.uid,
                "UserId": user_id,
                "PrincipalId": user_id,
                "Arn": format!("acs:ram::{}:user/{access_key_id}", account.uid),
            }));
        }
        let session = self.sts_sessions.get(access_key_id)?;
        let (uid, role_name) = match config::parse_role_arn(&session.role_arn) {
            Some(arn) => (arn.uid.to_owned(), arn.name),
            // A role ARN that is not `acs:ram::<uid>:role/<name>`: the budget account's uid.
            None => (
                self.accounts.get(&session.account)?.uid.clone(),
                session.role_arn.rsplit('/').next().unwrap_or_default(),
            ),
        };
        let role_id = role_id(&session.role_arn);
        Some(serde_json::json!({
            "RequestId": request_id,
            "IdentityType": wire::IDENTITY_ASSUMED_ROLE_USER,
            "AccountId": uid,
            "RoleId": role_id,
            "PrincipalId": format!("{role_id}:{}", session.session_name),
            "Arn": format!("acs:ram::{uid}:assumed-role/{role_name}/{}", session.session_name),
        }))
    }

    /// Checks a V1 request; returns its AccessKeyId and nonce.
    fn verify_v1(
        &mut self,
        method: Method,
        params: &BTreeMap<String, String>,
        now: Clock,
        record: &mut CallRecord,
    ) -> Result<(String, String), ApiError> {
        let access_key_id = required(params, params::ACCESS_KEY_ID)?;
        let signature = required(params, params::SIGNATURE)?;
        let signature_method = required(params, params::SIGNATURE_METHOD)?;
        let nonce = required(params, params::SIGNATURE_NONCE)?;
        let signature_version = required(params, params::SIGNATURE_VERSION)?;
        let timestamp = required(params, params::TIMESTAMP)?;
        if signature_method != sign::V1_SIGNATURE_METHOD
            || signature_version != sign::V1_SIGNATURE_VERSION
        {
            return Err(incomplete_signature(format!(
                "SignatureMethod {signature_method:?} / SignatureVersion {signature_version:?} is not supported."
            )));
        }
        self.check_timestamp(timestamp, now)?;
        let token = params.get(params::SECURITY_TOKEN).map(String::as_str);
        let (secret, account) = self.resolve_credentials(access_key_id, token, now)?;
        record.account = Some(account);
        let expected = verify::v1_recompute(method, params, &secret);
        if !verify::signatures_equal(signature, &expected.signature) {
            return Err(ApiError::signature_mismatch(&expected.string_to_sign));
        }
        Ok((access_key_id.to_owned(), nonce.to_owned()))
    }

    /// Checks a V3 request; returns its AccessKeyId and nonce.
    fn verify_v3(
        &mut self,
        req: &Incoming<'_>,
        method: Method,
        query_params: &BTreeMap<String, String>,
        authorization: &str,
        now: Clock,
        record: &mut CallRecord,
    ) -> Result<(String, String), ApiError> {
        let auth = verify::parse_v3_authorization(authorization)
            .map_err(|e| incomplete_signature(e.to_string()))?;
        let date = required_header(req.headers, sign::headers::DATE)?;
        let nonce = required_header(req.headers, sign::headers::SIGNATURE_NONCE)?;
        self.check_timestamp(date, now)?;
        let token = header(req.headers, sign::headers::SECURITY_TOKEN);
        let (secret, account) = self.resolve_credentials(&auth.access_key_id, token, now)?;
        record.account = Some(account);
        // Our own hash of what arrived, not the client's claim: a body changed in transit must fail.
        let payload_sha256 = hex::encode(Sha256::digest(req.body));
        let expected = verify::v3_recompute(
            method,
            sign::RPC_PATH,
            query_params,
            req.headers,
            &auth.signed_headers,
            &payload_sha256,
            &auth.access_key_id,
            &secret,
        )
        .map_err(|e| incomplete_signature(e.to_string()))?;
        if !verify::signatures_equal(&auth.signature, &expected.signature) {
            return Err(ApiError::signature_mismatch(&expected.string_to_sign));
        }
        Ok((auth.access_key_id, nonce.to_owned()))
    }

    fn check_timestamp(&self, value: &str, now: Clock) -> Result<(), ApiError> {
        let stamp: jiff::Timestamp = value.parse().map_err(|_| {
            ApiError::new(
                400,
                codes::INVALID_TIMESTAMP_FORMAT,
                messages::INVALID_TIMESTAMP_FORMAT,
            )
        })?;
        let cloud_now = now
            .wall
            .as_microsecond()
            .saturating_add(self.clock_offset_micros);
        let skew = cloud_now.abs_diff(stamp.as_microsecond());
        if u128::from(skew) > u128::from(self.clock_skew_micros) {
            return Err(ApiError::new(
                400,
                codes::INVALID_TIMESTAMP_EXPIRED,
                messages::INVALID_TIMESTAMP_EXPIRED,
            ));
        }
        Ok(())
    }

    /// The secret for `access_key_id` and the account whose budget it uses, checking the
    /// SecurityToken: required and matching for STS keys, never accepted with a long-term key.
    fn resolve_credentials(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now: Clock,
    ) -> Result<(String, String), ApiError> {
        let token = token.filter(|t| !t.is_empty());
        if let Some(account) = self.accounts.get(access_key_id) {
            if let Some(token) = token {
                return Err(self.bad_token(token));
            }
            return Ok((account.secret.clone(), access_key_id.to_owned()));
        }
        if let Some(session) = self.sts_sessions.get(access_key_id) {
            let Some(token) = token else {
                return Err(ApiError::missing("SecurityToken"));
            };
            if !verify::signatures_equal(token, &session.token) {
                return Err(self.bad_token(token));
            }
            if session.expires <= now.wall {
                return Err(ApiError::new(
                    400,
                    codes::INVALID_SECURITY_TOKEN_EXPIRED,
                    messages::INVALID_SECURITY_TOKEN_EXPIRED,
                ));
            }
            return Ok((session.secret.clone(), session.account.clone()));
        }
        Err(ApiError::new(
            404,
            codes::INVALID_ACCESS_KEY_ID_NOT_FOUND,
            messages::INVALID_ACCESS_KEY_ID_NOT_FOUND,
        ))
    }

    fn bad_token(&self, token: &str) -> ApiError {
        if self.sts_tokens.contains_key(token) {
            ApiError::new(
                400,
                codes::INVALID_SECURITY_TOKEN_MISMATCH,
                messages::INVALID_SECURITY_TOKEN_MISMATCH,
            )
        } else {
            ApiError::new(
                400,
                codes::INVALID_SECURITY_TOKEN_MALFORMED,
                messages::INVALID_SECURITY_TOKEN_MALFORMED,
            )
        }
    }

    /// STS AssumeRoleWithOIDC: unsigned; checks the role, provider, token presence and duration,
    /// then issues a session the GetMPUTaskStatus path accepts. The OIDC token itself is not
    /// verified (no issuer keys here); its claims are echoed when it decodes as a JWT.
    ///
    /// Injected faults for it apply first, before any check, as an STS outage would; a rule for
    /// one account applies when `RoleArn` names a role of that account.
    fn assume_role_with_oidc(
        &mut self,
        params: &BTreeMap<String, String>,
        version: Option<&str>,
        now: Clock,
        request_id: &str,
        record: &mut CallRecord,
        delay_ms: &mut u64,
    ) -> Result<Reply, ApiError> {
        let account = params
            .get(sts_params::ROLE_ARN)
            .and_then(|arn| self.roles.get(arn))
            .map(|role| role.account.clone());
        let keys: Vec<&str> = account.as_deref().into_iter().collect();
        let fault = self
            .faults
            .take(Action::AssumeRoleWithOidc, &keys, now.mono_micros, |_| true);
        if let Some(reply) = apply_fault(fault, request_id, || 0, record, delay_ms)? {
            return Ok(reply);
        }
        check_version(version, &[wire::VERSION_STS])?;
        let role_arn = required(params, sts_params::ROLE_ARN)?;
        let provider_arn = required(params, sts_params::OIDC_PROVIDER_ARN)?;
        let oidc_token = required(params, sts_params::OIDC_TOKEN)?;
        let role = self.roles.get(role_arn).ok_or_else(|| {
            ApiError::new(
                404,
                codes::ENTITY_NOT_EXIST_ROLE,
                messages::ENTITY_NOT_EXIST_ROLE,
            )
        })?;
        if role
            .oidc_provider_arn
            .as_deref()
            .is_some_and(|p| p != provider_arn)
        {
            return Err(ApiError::new(
                404,
                codes::ENTITY_NOT_EXIST_OIDC_PROVIDER,
                messages::ENTITY_NOT_EXIST_OIDC_PROVIDER,
            ));
        }
        let duration = match params.get(sts_params::DURATION_SECONDS) {
            None => STS_DEFAULT_DURATION_SECONDS,
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|d| (STS_MIN_DURATION_SECONDS..=role.max_session_seconds).contains(d))
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        codes::INVALID_DURATION_SECONDS,
                        messages::INVALID_DURATION_SECONDS,
                    )
                })?,
        };
        let session_name = match params.get(sts_params::ROLE_SESSION_NAME) {
            None => STS_DEFAULT_SESSION_NAME,
            Some(name) if valid_session_name(name) => name.as_str(),
            Some(_) => {
                return Err(ApiError::new(
                    400,
                    codes::INVALID_ROLE_SESSION_NAME,
                    messages::INVALID_ROLE_SESSION_NAME,
                ));
            }
        };
        let account = role.account.clone();
        let assumed_role_arn = format!("{role_arn}/{session_name}");
        let role_id = role_id(role_arn);
        // A role configured with a shorter session lifetime overrides what was asked for (which
        // has still been checked against Alibaba's bounds above), so tests see expiry in seconds.
        let lifetime = self
            .role_session_seconds
            .get(role_arn)
            .map_or(duration, |&short| short.min(duration));
        let expires = now
            .wall
            .checked_add(jiff::SignedDuration::from_secs(
                i64::try_from(lifetime).unwrap_or(i64::MAX),
            ))
            .unwrap_or(jiff::Timestamp::MAX);

        self.forget_old_sessions(now);
        let access_key_id = format!("{STS_ACCESS_KEY_PREFIX}{}", self.ids.string(ALNUM, 28));
        let secret = self.ids.string(ALNUM, 44);
        let token = format!("{STS_TOKEN_PREFIX}{}", self.ids.string(TOKEN_ALPHABET, 300));
        self.sts_tokens.insert(token.clone(), access_key_id.clone());
        self.sts_sessions.insert(
            access_key_id.clone(),
            StsSession {
                secret: secret.clone(),
                token: token.clone(),
                expires,
                account,
                role_arn: role_arn.to_owned(),
                session_name: session_name.to_owned(),
            },
        );

        let mut body = serde_json::json!({
            "RequestId": request_id,
            "AssumedRoleUser": {
                "AssumedRoleId": format!("{role_id}:{session_name}"),
                "Arn": assumed_role_arn,
            },
            "Credentials": {
                "SecurityToken": token,
                "Expiration": sign::format_timestamp(expires),
                "AccessKeySecret": secret,
                "AccessKeyId": access_key_id,
            },
        });
        if let (Some(info), Some(obj)) = (oidc_token_info(oidc_token), body.as_object_mut()) {
            obj.insert("OIDCTokenInfo".to_owned(), info);
        }
        Ok(Reply::Json { body })
    }

    fn forget_old_sessions(&mut self, now: Clock) {
        let cutoff = now
            .wall
            .as_second()
            .saturating_sub(STS_FORGET_AFTER_SECONDS);
        let tokens = &mut self.sts_tokens;
        self.sts_sessions.retain(|_, s| {
            let keep = s.expires.as_second() > cutoff;
            if !keep {
                tokens.remove(&s.token);
            }
            keep
        });
    }

    // -------------------------------------------------------------------------------------------
    // The admin API
    // -------------------------------------------------------------------------------------------

    /// A fresh request id, for answers given outside [`State::handle`].
    pub fn next_request_id(&mut self) -> String {
        self.ids.request_id()
    }

    /// Sets a task's status, creating the task if absent. Call counts are kept. A managed relay
    /// set to a stopped status (2..6) stops in the relay model too, as when the cloud stops it
    /// (a CDN fault): it can then be started again once cleared.
    pub fn set_task(&mut self, app_id: &str, task_id: &str, status: i64, now: Clock) {
        let at = now.wall.as_millisecond();
        if (2..=6).contains(&status) {
            let _ = self.relays.halt(app_id, task_id, status, at);
        }
        self.set_status(app_id, task_id, status, at);
    }

    /// Removes a task; true when it existed. Later calls get `InvalidTask.NotFound`.
    pub fn remove_task(&mut self, app_id: &str, task_id: &str) -> bool {
        self.tasks
            .remove(&(app_id.to_owned(), task_id.to_owned()))
            .is_some()
    }

    /// A task as it stands at `now_ms` (Unix milliseconds: the end of its open wait).
    pub fn task(&self, app_id: &str, task_id: &str, now_ms: i64) -> Option<TaskView> {
        self.tasks
            .get(&(app_id.to_owned(), task_id.to_owned()))
            .map(|t| task_view(app_id, task_id, t, now_ms))
    }

    /// Every task at `now_ms`, sorted by (appId, taskId).
    pub fn tasks(&self, now_ms: i64) -> Vec<TaskView> {
        let mut all: Vec<TaskView> = self
            .tasks
            .iter()
            .map(|((app, task), t)| task_view(app, task, t, now_ms))
            .collect();
        all.sort_by(|a, b| (&a.app_id, &a.task_id).cmp(&(&b.app_id, &b.task_id)));
        all
    }

    /// Changes the QPS of the uid an account belongs to (so of all the uid's keys); false when
    /// the account is unknown.
    pub fn set_qps(&mut self, access_key_id: &str, qps: u32) -> bool {
        match self.accounts.get(access_key_id) {
            Some(account) => self.set_uid_qps(&account.uid.clone(), qps),
            None => false,
        }
    }

    /// Changes a uid's QPS; false when no key or configuration names the uid.
    pub fn set_uid_qps(&mut self, uid: &str, qps: u32) -> bool {
        match self.uids.get_mut(uid) {
            Some(entry) => {
                entry.limiter.set_limit(qps);
                true
            }
            None => false,
        }
    }

    /// The uid an account belongs to.
    pub fn uid_of(&self, access_key_id: &str) -> Option<String> {
        self.accounts.get(access_key_id).map(|a| a.uid.clone())
    }

    /// Adds an account, or replaces its secret (keeping its counters). `uid`: the uid it joins
    /// (default: its current one, or one derived from the AccessKeyId). `qps`: the uid's new
    /// QPS; when absent a new uid gets `defaultQps` and an existing one keeps its limit.
    pub fn upsert_account(
        &mut self,
        access_key_id: &str,
        secret: &str,
        qps: Option<u32>,
        uid: Option<&str>,
    ) -> Result<(), String> {
        if let Some(uid) = uid {
            config::validate_uid(uid)?;
        }
        let uid = match (uid, self.accounts.get(access_key_id)) {
            (Some(uid), _) => uid.to_owned(),
            (None, Some(account)) => account.uid.clone(),
            (None, None) => config::derive_uid(access_key_id),
        };
        let default_qps = self.default_qps;
        let entry = self.uids.entry(uid.clone()).or_insert_with(|| Uid {
            limiter: SlidingWindowLimiter::new(qps.unwrap_or(default_qps)),
            stats: CallStats::default(),
        });
        if let Some(qps) = qps {
            entry.limiter.set_limit(qps);
        }
        let account = self
            .accounts
            .entry(access_key_id.to_owned())
            .or_insert_with(|| Account {
                secret: String::new(),
                uid: uid.clone(),
                stats: CallStats::default(),
            });
        secret.clone_into(&mut account.secret);
        account.uid = uid;
        Ok(())
    }

    /// Adds a fault rule for `actions`; returns its id.
    pub fn add_fault(
        &mut self,
        spec: FaultSpec,
        actions: &[Action],
        now: Clock,
    ) -> Result<u64, String> {
        self.faults.add(spec, actions, now.mono_micros)
    }

    pub fn faults(&mut self, now: Clock) -> Vec<FaultRule> {
        self.faults.list(now.mono_micros)
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The counters since the last reset; with every task as it stands at `now_ms`.
    pub fn stats(&self, with_tasks: bool, with_buckets: bool, now_ms: i64) -> StatsView {
        let qps_of = |uid: &str| self.uids.get(uid).map_or(0, |u| u.limiter.limit());
        let mut keys_of: HashMap<&str, Vec<String>> = HashMap::new();
        for (id, account) in &self.accounts {
            keys_of.entry(&account.uid).or_default().push(id.clone());
        }
        StatsView {
            since_unix_ms: self.since_unix_ms,
            accounts: self
                .accounts
                .iter()
                .map(|(id, a)| {
                    (
                        id.clone(),
                        AccountView {
                            qps: qps_of(&a.uid),
                            uid: a.uid.clone(),
                            calls: a.stats.view(with_buckets),
                        },
                    )
                })
                .collect(),
            uids: self
                .uids
                .iter()
                .map(|(uid, u)| {
                    let mut access_key_ids = keys_of.remove(uid.as_str()).unwrap_or_default();
                    access_key_ids.sort();
                    (
                        uid.clone(),
                        UidView {
                            qps: u.limiter.limit(),
                            access_key_ids,
                            calls: u.stats.view(with_buckets),
                        },
                    )
                })
                .collect(),
            unattributed: self.unattributed.view(with_buckets),
            all: self.all.view(with_buckets),
            sts: self.sts_stats.clone(),
            relay_actions: self.relay_actions.clone(),
            tasks: with_tasks.then(|| self.tasks(now_ms)),
        }
    }

    /// Zeroes every counter (accounts, uids, tasks, STS, relay actions) and forgets the user agents seen.
    /// Budgets, nonces and faults are untouched.
    pub fn reset_stats(&mut self, now: Clock) {
        for account in self.accounts.values_mut() {
            account.stats = CallStats::default();
        }
        for uid in self.uids.values_mut() {
            uid.stats = CallStats::default();
        }
        self.all = CallStats::default();
        self.user_agents = UserAgents::default();
        for task in self.tasks.values_mut() {
            task.calls = 0;
            task.longest_wait = None;
        }
        self.unattributed = CallStats::default();
        self.sts_stats = StsStats::default();
        self.relay_actions.clear();
        self.since_unix_ms = now.wall.as_millisecond();
    }
}

/// Turns a taken fault into the call's fate: `Ok(None)` lets the call go on (after `delay_ms`),
/// `Ok(Some(reply))` answers in its place, `Err` fails it. `huge_status` gives the Status a huge
/// body carries (looked up only then, to keep the common path free of it).
fn apply_fault(
    fault: Option<FaultKind>,
    request_id: &str,
    huge_status: impl FnOnce() -> i64,
    record: &mut CallRecord,
    delay_ms: &mut u64,
) -> Result<Option<Reply>, ApiError> {
    let Some(fault) = fault else {
        return Ok(None);
    };
    record.fault = true;
    match fault {
        FaultKind::Latency { ms } => {
            *delay_ms = ms;
            Ok(None)
        }
        FaultKind::Http5xx { code, status } => {
            let (status, code) = FaultKind::server_error(code.as_deref(), status);
            let message = match code.as_str() {
                codes::SERVICE_UNAVAILABLE => messages::SERVICE_UNAVAILABLE,
                _ => messages::INTERNAL_ERROR,
            };
            Err(ApiError::new(status, &code, message))
        }
        FaultKind::Malformed => Ok(Some(Reply::Malformed {
            request_id: request_id.to_owned(),
        })),
        FaultKind::Drop => Ok(Some(Reply::Drop)),
        FaultKind::Huge { bytes } => Ok(Some(Reply::Huge {
            request_id: request_id.to_owned(),
            status: huge_status(),
            bytes: bytes.unwrap_or(DEFAULT_HUGE_BYTES),
        })),
        FaultKind::Throttle => Err(ApiError::throttled()),
    }
}

/// A role's stable RoleId, derived from its ARN (the same role always has the same id).
fn role_id(role_arn: &str) -> String {
    config::derive_digits(ROLE_ID_SALT, role_arn)
}

fn task_view(app_id: &str, task_id: &str, task: &Task, now_ms: i64) -> TaskView {
    let longest_wait_ms = task.longest_wait_ms(now_ms);
    TaskView {
        app_id: app_id.to_owned(),
        task_id: task_id.to_owned(),
        status: task.status,
        calls: task.calls,
        // Since the reset only, as the view's other counters.
        last_call_unix_ms: task.last_call_unix_ms.filter(|_| task.calls > 0),
        longest_wait_ms,
        longest_wait_ended_unix_ms: task
            .longest_wait
            .filter(|(wait, _)| Some(*wait) == longest_wait_ms)
            .map(|(_, ended)| ended),
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A required parameter; absent or empty is `Missing<Name>`.
fn required<'p>(params: &'p BTreeMap<String, String>, name: &str) -> Result<&'p str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missing(name))
}

/// A required V3 header; absent or empty is Alibaba's generic `MissingParameter`.
fn required_header<'h>(headers: &'h [(String, String)], name: &str) -> Result<&'h str, ApiError> {
    header(headers, name).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    })
}

fn incomplete_signature(detail: String) -> ApiError {
    ApiError::new(
        400,
        codes::INCOMPLETE_SIGNATURE,
        format!("The request signature does not conform to Aliyun standards. {detail}"),
    )
}

/// Query parameters plus those of a form body (V1 signs both; STS sends its parameters as a form).
fn merge_form_body(
    query: &BTreeMap<String, String>,
    req: &Incoming<'_>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let is_form = header(req.headers, CONTENT_TYPE)
        .is_some_and(|ct| ct.trim_start().starts_with(FORM_CONTENT_TYPE));
    if !is_form || req.body.is_empty() {
        return Ok(query.clone());
    }
    let body = std::str::from_utf8(req.body)
        .map_err(|_| ApiError::invalid_parameter("The form body is not UTF-8."))?;
    let form = verify::decode_query(body).map_err(ApiError::invalid_parameter)?;
    let mut merged = query.clone();
    for (key, value) in form {
        if merged.contains_key(&key) {
            return Err(ApiError::invalid_parameter(format!(
                "Parameter {key} is given twice."
            )));
        }
        merged.insert(key, value);
    }
    Ok(merged)
}

/// Alibaba allows 2 to 64 of `A-Z a-z 0-9 . @ - _`.
fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'))
}

/// `OIDCTokenInfo` from a JWT's claims (sub, iss, aud), without verifying it.
fn oidc_token_info(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let audience = match claims.get("aud") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Some(serde_json::Value::String(one)) => one.clone(),
        _ => String::new(),
    };
    Some(serde_json::json!({
        "Subject": claims.get("sub").and_then(|v| v.as_str()).unwrap_or_default(),
        "Issuer": claims.get("iss").and_then(|v| v.as_str()).unwrap_or_default(),
        "ClientIds": audience,
    }))
}

/// `Version` must be present and one the action is served in.
fn check_version(version: Option<&str>, served: &[&str]) -> Result<(), ApiError> {
    match version {
        None => Err(ApiError::missing(params::VERSION)),
        Some(v) if served.contains(&v) => Ok(()),
        Some(_) => Err(ApiError::new(
            400,
            codes::INVALID_VERSION,
            messages::INVALID_VERSION,
        )),
    }
}

/// The cloud's answer to a refused relay operation (the codes of its documented tables).
/// A refused subscription operation: `InvalidParam` with its reason, as the documented error
/// tables answer (`%s`).
fn events_error(error: events::EventsError) -> ApiError {
    ApiError::new(400, codes::INVALID_PARAM, error.to_string())
}

/// `PageNo` (from 1) and `PageSize` (1 to 100) of a listing (ListRtcMPUTaskDetail,
/// ListRtcMPUEventSubRecord).
fn page_params(params: &BTreeMap<String, String>) -> Result<(usize, usize), ApiError> {
    let number = |name: &str| -> Result<usize, ApiError> {
        let value = required(params, name)?;
        value.parse().map_err(|_| {
            relay_error(relay::RelayError::Invalid(format!(
                "{name} {value:?} is not a number"
            )))
        })
    };
    let (page, size) = (
        number(relay::params::PAGE_NO)?,
        number(relay::params::PAGE_SIZE)?,
    );
    if !(1..=100).contains(&size) || page == 0 {
        return Err(relay_error(relay::RelayError::Invalid(
            "PageNo starts at 1; PageSize is 1 to 100".into(),
        )));
    }
    Ok((page, size))
}

fn relay_error(error: relay::RelayError) -> ApiError {
    use relay::RelayError as E;
    match &error {
        E::Missing(name) => ApiError::new(
            400,
            codes::MISSING_PARAM,
            format!("{name}. Please check and try again later."),
        ),
        E::QuotaExceeded { .. } => ApiError::new(403, codes::FORBIDDEN, error.to_string()),
        _ => ApiError::new(400, codes::INVALID_PARAM, format!("{error}.")),
    }
}
