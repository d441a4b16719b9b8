//! The simulator over HTTP (and, at the end, over HTTPS with its generated CA): requests signed with `mpu-relay-sign` (V1 and V3) against a simulator on a
//! loopback port, covering each answer Alibaba Cloud gives, throttling (per uid), faults (per
//! action), the admin API, calls per User-Agent, STS AssumeRoleWithOIDC and GetCallerIdentity, and
//! the test TCP proxy.

// The TCP proxy the operator's tests use too.
#[path = "../../../tests/support/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpu_cloud_sim::{
    Action, FaultKind, FaultSpec, RoleConfig, Scheme, ServerCertificate, Simulator,
    SimulatorConfig, SimulatorHandle, TaskConfig, UidConfig, config::AccountConfig,
};
use mpu_relay_sign::{self as sign, Freshness, Method, MpuStatusCall, SignedRequest, SigningKey};
use serde_json::{Value, json};

const AK: &str = "LTAItestAK1";
const SECRET: &str = "secret-one";
const AK2: &str = "LTAItestAK2";
const SECRET2: &str = "secret-two";
const APP: &str = "app-1";
const TASK: &str = "task-1";
/// The uid AK2 (and so the role's sessions) belongs to; AK's is derived from its AccessKeyId.
const UID2: &str = "1234567890";
const ROLE_ARN: &str = "acs:ram::1234567890:role/mpu-relay";
const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa";
/// A JWT-shaped OIDC token (header.claims.signature); the simulator reads but does not verify it.
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bXB1Om9wZXJhdG9yIiwiaXNzIjoiaHR0cHM6Ly9vaWRjLmV4YW1wbGUiLCJhdWQiOiJzdHMuYWxpeXVuY3MuY29tIn0.c2ln";
/// Every loop in these tests is bounded by this many attempts.
const MAX_ATTEMPTS: usize = 50;

fn config() -> SimulatorConfig {
    SimulatorConfig {
        accounts: vec![
            AccountConfig {
                access_key_id: AK.into(),
                access_key_secret: SECRET.into(),
                qps: None,
            },
            AccountConfig {
                access_key_id: AK2.into(),
                access_key_secret: SECRET2.into(),
                qps: Some(100),
            },
        ],
        tasks: vec![TaskConfig {
            app_id: APP.into(),
            task_id: TASK.into(),
            status: 1,
        }],
        roles: vec![RoleConfig {
            role_arn: ROLE_ARN.into(),
            account: AK2.into(),
            oidc_provider_arn: Some(PROVIDER_ARN.into()),
            max_session_seconds: 3600,
        }],
        uids: vec![UidConfig {
            uid: UID2.into(),
            qps: None,
            access_key_ids: vec![AK2.into()],
        }],
        ..SimulatorConfig::default()
    }
}

async fn start() -> SimulatorHandle {
    Simulator::start_http(config())
        .await
        .expect("simulator starts")
}

/// One client per test thread (each `#[tokio::test]` runs on its own thread and runtime), so a
/// test reuses its connections instead of paying a client and a connection per call: on a busy
/// machine that cost alone can push ten calls past one second.
fn http() -> reqwest::Client {
    thread_local! {
        static CLIENT: reqwest::Client = {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client builds")
        };
    }
    CLIENT.with(reqwest::Client::clone)
}

fn nonce() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = jiff::Timestamp::now().as_nanosecond() as u64;
    format!("{base:016x}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

struct Key<'a> {
    id: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
}

const KEY1: Key<'static> = Key {
    id: AK,
    secret: SECRET,
    token: None,
};

fn call(task: &str) -> MpuStatusCall<'_> {
    MpuStatusCall {
        api_version: "2016-11-01",
        app_id: APP,
        task_id: task,
        region_id: Some("cn-hangzhou"),
    }
}

fn creds<'a>(key: &'a Key<'a>) -> SigningKey<'a> {
    SigningKey {
        access_key_id: key.id,
        access_key_secret: key.secret,
        security_token: key.token,
    }
}

fn signed_v1(key: &Key<'_>, task: &str, nonce: &str, at: jiff::Timestamp) -> SignedRequest {
    sign::sign_v1(
        Method::Get,
        &call(task),
        &creds(key),
        &Freshness {
            nonce,
            timestamp: at,
        },
    )
}

fn signed_v3(sim: &SimulatorHandle, key: &Key<'_>, task: &str) -> SignedRequest {
    let mut c = call(task);
    c.api_version = "2018-01-11";
    sign::sign_v3(
        &sim.host(),
        &c,
        &creds(key),
        &Freshness {
            nonce: &nonce(),
            timestamp: jiff::Timestamp::now(),
        },
    )
}

/// Sends a signed request; returns HTTP status and parsed JSON body.
async fn send(sim: &SimulatorHandle, req: &SignedRequest) -> (u16, Value) {
    let response = send_raw(sim, req).await.expect("simulator answers");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body arrives");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

async fn send_raw(
    sim: &SimulatorHandle,
    req: &SignedRequest,
) -> Result<reqwest::Response, reqwest::Error> {
    send_raw_to(&sim.base_url(), req, None).await
}

/// Sends a signed request to `base` (the simulator or a proxy in front of it), as `user_agent`
/// when given (reqwest sends no User-Agent of its own).
async fn send_raw_to(
    base: &str,
    req: &SignedRequest,
    user_agent: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let url = format!("{base}{}?{}", req.path, req.query);
    let method = match req.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let mut builder = http().request(method, url);
    for (name, value) in &req.headers {
        // reqwest sets Host from the URL, to the same value the signer signed.
        if name != "host" {
            builder = builder.header(name, value);
        }
    }
    if let Some(agent) = user_agent {
        builder = builder.header("user-agent", agent);
    }
    builder.send().await
}

/// Status and JSON body of a response.
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body arrives");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

async fn v1(sim: &SimulatorHandle, key: &Key<'_>, task: &str) -> (u16, Value) {
    send(sim, &signed_v1(key, task, &nonce(), jiff::Timestamp::now())).await
}

fn code(body: &Value) -> &str {
    body["Code"].as_str().unwrap_or_default()
}

async fn admin(
    sim: &SimulatorHandle,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = http()
        .request(method, format!("{}/admin{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("admin JSON"))
}

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec {
        kind,
        account: None,
        count: None,
        duration_ms: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Success and authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_signed_call_for_known_task_returns_its_status() {
    let sim = start().await;
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Status"], 1);
    assert_eq!(body["RequestId"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn v3_signed_call_for_known_task_returns_its_status() {
    let sim = start().await;
    let (status, body) = send(&sim, &signed_v3(&sim, &KEY1, TASK)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Status"], 1);
}

#[tokio::test]
async fn v1_call_with_wrong_secret_is_rejected_with_the_server_string_to_sign() {
    let sim = start().await;
    let wrong = Key {
        secret: "not-the-secret",
        ..KEY1
    };
    let req = signed_v1(&wrong, TASK, &nonce(), jiff::Timestamp::now());
    let (status, body) = send(&sim, &req).await;
    assert_eq!((status, code(&body)), (400, "SignatureDoesNotMatch"));
    // As the old SDK does: the part after the last ':' is the server's string to sign, equal to ours.
    let message = body["Message"].as_str().unwrap();
    assert_eq!(message.rsplit_once(':').unwrap().1, req.string_to_sign);
    for field in ["RequestId", "HostId", "Recommend"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
}

#[tokio::test]
async fn v3_call_with_wrong_secret_is_rejected_with_signature_mismatch() {
    let sim = start().await;
    let wrong = Key {
        secret: "nope",
        ..KEY1
    };
    let req = signed_v3(&sim, &wrong, TASK);
    let (status, body) = send(&sim, &req).await;
    assert_eq!((status, code(&body)), (400, "SignatureDoesNotMatch"));
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .ends_with(&req.string_to_sign)
    );
}

#[tokio::test]
async fn call_with_unknown_access_key_is_rejected_with_404() {
    let sim = start().await;
    let stranger = Key {
        id: "LTAInobody",
        ..KEY1
    };
    let (status, body) = v1(&sim, &stranger, TASK).await;
    assert_eq!((status, code(&body)), (404, "InvalidAccessKeyId.NotFound"));
    assert_eq!(sim.stats(false).unattributed.errors, 1);
}

#[tokio::test]
async fn call_with_timestamp_sixteen_minutes_old_is_rejected_as_expired() {
    let sim = start().await;
    let stale = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(16);
    let (status, body) = send(&sim, &signed_v1(&KEY1, TASK, &nonce(), stale)).await;
    assert_eq!((status, code(&body)), (400, "InvalidTimeStamp.Expired"));
    let recent = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(14);
    let (status, _) = send(&sim, &signed_v1(&KEY1, TASK, &nonce(), recent)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn call_reusing_a_nonce_is_rejected() {
    let sim = start().await;
    let once = nonce();
    let (first, _) = send(&sim, &signed_v1(&KEY1, TASK, &once, jiff::Timestamp::now())).await;
    assert_eq!(first, 200);
    let (status, body) = send(&sim, &signed_v1(&KEY1, TASK, &once, jiff::Timestamp::now())).await;
    assert_eq!((status, code(&body)), (400, "SignatureNonceUsed"));
}

#[tokio::test]
async fn call_without_task_id_is_rejected_with_missing_task_id() {
    let sim = start().await;
    let fresh = nonce();
    let mut params = sign::v1_params(
        &call(TASK),
        &creds(&KEY1),
        &Freshness {
            nonce: &fresh,
            timestamp: jiff::Timestamp::now(),
        },
    );
    params.remove(sign::params::TASK_ID);
    let signature = sign::v1_sign(Method::Get, &params, SECRET).signature;
    let req = SignedRequest {
        method: Method::Get,
        path: sign::RPC_PATH,
        query: format!(
            "{}&Signature={}",
            sign::canonical_query(&params),
            sign::percent_encode(&signature)
        ),
        headers: Vec::new(),
        string_to_sign: String::new(),
    };
    let (status, body) = send(&sim, &req).await;
    assert_eq!((status, code(&body)), (400, "MissingTaskId"));
}

#[tokio::test]
async fn call_for_unknown_task_is_rejected_with_404() {
    let sim = start().await;
    let (status, body) = v1(&sim, &KEY1, "no-such-task").await;
    assert_eq!((status, code(&body)), (404, "InvalidTask.NotFound"));
}

#[tokio::test]
async fn long_term_key_with_a_token_the_simulator_never_issued_is_rejected() {
    let sim = start().await;
    let forged = Key {
        token: Some("CAISforged"),
        ..KEY1
    };
    let (status, body) = v1(&sim, &forged, TASK).await;
    assert_eq!(
        (status, code(&body)),
        (400, "InvalidSecurityToken.Malformed")
    );
}

// ---------------------------------------------------------------------------------------------
// Throttling
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn eleventh_call_within_one_second_is_throttled_without_consuming_budget() {
    let sim = start().await;
    let started = Instant::now();
    for i in 0..10 {
        let (status, body) = v1(&sim, &KEY1, TASK).await;
        assert_eq!(status, 200, "call {i}: {body}");
    }
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(900),
        "too slow to test: {elapsed:?}"
    );
    assert_eq!((status, code(&body)), (400, "Throttling.User"));
    assert_eq!(
        body["Message"],
        "Request was denied due to user flow control."
    );

    let stats = sim.stats(false);
    let account = &stats.accounts[AK];
    assert_eq!(
        (
            account.calls.total,
            account.calls.ok,
            account.calls.throttled
        ),
        (11, 10, 1)
    );
    assert_eq!(account.calls.max_ok_in_any_second, 10);
    assert_eq!(account.calls.max_calls_in_any_second, 11);
    // The other account has its own budget.
    let other = Key {
        id: AK2,
        secret: SECRET2,
        token: None,
    };
    assert_eq!(v1(&sim, &other, TASK).await.0, 200);
}

#[tokio::test]
async fn admin_qps_change_applies_to_the_next_call() {
    let sim = start().await;
    let (status, _) = admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/accounts/{AK}/qps"),
        serde_json::json!({"qps": 1}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert_eq!((status, code(&body)), (400, "Throttling.User"));
    let (status, _) = admin(
        &sim,
        reqwest::Method::PUT,
        "/accounts/nobody/qps",
        serde_json::json!({"qps": 1}),
    )
    .await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http5xx_fault_answers_internal_error_then_service_unavailable_then_normally() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Http5xx {
        code: None,
        status: None,
    }))
    .unwrap();
    sim.add_fault(fault(FaultKind::Http5xx {
        code: Some("ServiceUnavailable".into()),
        status: None,
    }))
    .unwrap();
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert_eq!((status, code(&body)), (500, "InternalError"));
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert_eq!((status, code(&body)), (503, "ServiceUnavailable"));
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    assert_eq!(sim.stats(false).accounts[AK].calls.faults, 2);
}

#[tokio::test]
async fn latency_fault_delays_the_normal_answer() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Latency { ms: 300 }))
        .unwrap();
    let started = Instant::now();
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((status, body["Status"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn malformed_fault_answers_200_with_truncated_json() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Malformed)).unwrap();
    let req = signed_v1(&KEY1, TASK, &nonce(), jiff::Timestamp::now());
    let response = send_raw(&sim, &req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "{body:?}");
}

#[tokio::test]
async fn huge_fault_answers_a_ten_mebibyte_body() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Huge { bytes: None }))
        .unwrap();
    let req = signed_v1(&KEY1, TASK, &nonce(), jiff::Timestamp::now());
    let response = send_raw(&sim, &req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert!(body.len() >= 10 * 1024 * 1024, "{}", body.len());
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["Status"], 1);
}

#[tokio::test]
async fn drop_fault_closes_the_connection_unanswered_and_the_server_keeps_serving() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Drop)).unwrap();
    let req = signed_v1(&KEY1, TASK, &nonce(), jiff::Timestamp::now());
    let result = send_raw(&sim, &req).await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
}

#[tokio::test]
async fn throttle_storm_for_one_account_spares_its_budget_and_other_accounts() {
    let sim = start().await;
    let (status, _) = admin(
        &sim,
        reqwest::Method::POST,
        "/faults",
        serde_json::json!({"kind": "throttle", "account": AK, "durationMs": 60000}),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..15 {
        let (status, body) = v1(&sim, &KEY1, TASK).await;
        assert_eq!((status, code(&body)), (400, "Throttling.User"));
    }
    let other = Key {
        id: AK2,
        secret: SECRET2,
        token: None,
    };
    assert_eq!(v1(&sim, &other, TASK).await.0, 200);
    let (status, _) = admin(&sim, reqwest::Method::DELETE, "/faults", Value::Null).await;
    assert_eq!(status, 200);
    // The storm consumed none of the budget: ten calls pass at once.
    for _ in 0..10 {
        assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    }
}

#[tokio::test]
async fn fault_for_next_n_calls_applies_to_exactly_n_calls() {
    let sim = start().await;
    let (status, _) = admin(
        &sim,
        reqwest::Method::POST,
        "/faults",
        serde_json::json!({"kind": "http5xx", "code": "ServiceUnavailable", "count": 3}),
    )
    .await;
    assert_eq!(status, 200);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(v1(&sim, &KEY1, TASK).await.0);
    }
    assert_eq!(statuses, [503, 503, 503, 200, 200]);
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_status_change_is_visible_to_the_next_call() {
    let sim = start().await;
    let (status, view) = admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/tasks/{APP}/{TASK}"),
        serde_json::json!({"status": 2}),
    )
    .await;
    assert_eq!((status, &view["status"]), (200, &serde_json::json!(2)));
    assert_eq!(v1(&sim, &KEY1, TASK).await.1["Status"], 2);

    // Created when absent, in bulk.
    let (status, _) = admin(
        &sim,
        reqwest::Method::POST,
        "/tasks",
        serde_json::json!([{"appId": APP, "taskId": "new-1", "status": 5}, {"appId": APP, "taskId": "new-2", "status": 6}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v1(&sim, &KEY1, "new-2").await.1["Status"], 6);
}

#[tokio::test]
async fn admin_stats_report_calls_per_account_second_and_task() {
    let sim = start().await;
    for _ in 0..3 {
        assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    }
    let (status, stats) = admin(&sim, reqwest::Method::GET, "/stats?tasks=true", Value::Null).await;
    assert_eq!(status, 200);
    let account = &stats["accounts"][AK];
    assert_eq!(
        (account["total"].as_u64(), account["ok"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(account["qps"], 10);
    let buckets = account["perSecond"].as_array().unwrap();
    let summed: u64 = buckets.iter().map(|b| b["total"].as_u64().unwrap()).sum();
    assert_eq!(summed, 3);
    let task = stats["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskId"] == TASK)
        .unwrap();
    assert_eq!(task["calls"], 3);
    assert!(task["lastCallUnixMs"].as_i64().unwrap() > 0);

    let (status, _) = admin(&sim, reqwest::Method::POST, "/stats/reset", Value::Null).await;
    assert_eq!(status, 200);
    let stats = sim.stats(true);
    assert_eq!(stats.accounts[AK].calls.total, 0);
    assert_eq!(sim.task(APP, TASK).unwrap().calls, 0);
}

/// Staleness as the cloud saw it, counted at every call: the longest a task went without a
/// call in the stats window, the wait that spans a reset included, so no measurement sampled
/// from outside can miss a call.
#[tokio::test]
async fn each_task_reports_its_longest_wait_without_a_call_since_the_reset() {
    let sim = start().await;
    assert_eq!(sim.task(APP, TASK).unwrap().longest_wait_ms, None);
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    let view = sim.task(APP, TASK).unwrap();
    let wait = view.longest_wait_ms.unwrap();
    assert!((300..1000).contains(&wait), "{wait} ms");
    assert_eq!(view.longest_wait_ended_unix_ms, view.last_call_unix_ms);

    // The reset keeps the last call: the first wait after it is measured from there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (before, reset_at) = sim.take_stats(true);
    let before = before
        .tasks
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == TASK);
    assert!(before.unwrap().longest_wait_ms.unwrap() >= wait);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Still waiting: the open wait counts, and began before the reset.
    let open = sim.task(APP, TASK).unwrap();
    assert_eq!((open.calls, open.longest_wait_ended_unix_ms), (0, None));
    assert!(open.longest_wait_ms.unwrap() >= 500, "{open:?}");
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    let after = sim.task(APP, TASK).unwrap();
    assert!(after.longest_wait_ms.unwrap() >= 500, "{after:?}");
    assert!(after.longest_wait_ended_unix_ms.unwrap() > reset_at);
}

#[tokio::test]
async fn admin_garbage_body_gets_a_json_400() {
    let sim = start().await;
    let response = http()
        .post(format!("{}/admin/faults", sim.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn garbage_requests_get_json_errors_and_the_server_keeps_serving() {
    let sim = start().await;
    let client = http();
    let garbage = [
        "",
        "Action=GetMPUTaskStatus",
        "Action=GetMPUTaskStatus&Version=2016-11-01",
        "Action=GetMPUTaskStatus&Version=1999-01-01",
        "Action=Nope",
        "%ZZ=%",
        "a=1&a=2",
        "Action=GetMPUTaskStatus&Version=2016-11-01&AccessKeyId=x&Signature=y&SignatureMethod=HMAC-SHA1&SignatureNonce=n&SignatureVersion=1.0&Timestamp=yesterday",
        "Action=AssumeRoleWithOIDC&Version=2015-04-01",
    ];
    for query in garbage {
        let mut request = client.get(format!("{}/?{query}", sim.base_url()));
        if query.is_empty() {
            request = request.header("authorization", "ACS3-HMAC-SHA256 junk");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!((400..500).contains(&status), "{query}: {status} {body}");
        assert!(code(&body).len() > 3, "{query}: {body}");
    }
    let response = client
        .delete(format!("{}/", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// STS AssumeRoleWithOIDC
// ---------------------------------------------------------------------------------------------

async fn assume_role(sim: &SimulatorHandle, form: &[(&str, &str)]) -> (u16, Value) {
    let mut all: BTreeMap<&str, &str> = BTreeMap::from([
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("RoleArn", ROLE_ARN),
        ("OIDCProviderArn", PROVIDER_ARN),
        ("OIDCToken", OIDC_TOKEN),
        ("RoleSessionName", "mpu-relay-operator"),
        ("DurationSeconds", "3600"),
    ]);
    for (k, v) in form {
        all.insert(k, v);
    }
    let response = http()
        .post(format!("{}/", sim.base_url()))
        .form(&all)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn sts_issued_credentials_are_accepted_with_their_token_under_the_role_account() {
    let sim = start().await;
    let (status, body) = assume_role(&sim, &[]).await;
    assert_eq!(status, 200, "{body}");
    let creds = &body["Credentials"];
    let id = creds["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("STS."));
    assert!(creds["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        format!("{ROLE_ARN}/mpu-relay-operator")
    );
    assert_eq!(body["OIDCTokenInfo"]["ClientIds"], "sts.aliyuncs.com");
    let key = Key {
        id,
        secret: creds["AccessKeySecret"].as_str().unwrap(),
        token: creds["SecurityToken"].as_str(),
    };
    let (status, answer) = v1(&sim, &key, TASK).await;
    assert_eq!(
        (status, answer["Status"].as_i64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, answer) = send(&sim, &signed_v3(&sim, &key, TASK)).await;
    assert_eq!(status, 200, "{answer}");
    // Counted against the account that owns the role.
    assert_eq!(sim.stats(false).accounts[AK2].calls.ok, 2);

    // Without its token, or with a token that is not its own, the temporary key is refused.
    let tokenless = Key { token: None, ..key };
    assert_eq!(
        code(&v1(&sim, &tokenless, TASK).await.1),
        "MissingSecurityToken"
    );
    let forged = Key {
        token: Some("CAISnot-issued"),
        ..key
    };
    assert_eq!(
        code(&v1(&sim, &forged, TASK).await.1),
        "InvalidSecurityToken.Malformed"
    );
}

#[tokio::test]
async fn sts_rejects_unknown_role_empty_token_and_short_duration() {
    let sim = start().await;
    let (status, body) = assume_role(&sim, &[("RoleArn", "acs:ram::1:role/other")]).await;
    assert_eq!((status, code(&body)), (404, "EntityNotExist.Role"));
    let (status, body) = assume_role(&sim, &[("OIDCToken", "")]).await;
    assert_eq!((status, code(&body)), (400, "MissingOIDCToken"));
    let (status, body) = assume_role(&sim, &[("DurationSeconds", "60")]).await;
    assert_eq!(
        (status, code(&body)),
        (400, "InvalidParameter.DurationSeconds")
    );
    assert_eq!(sim.stats(false).sts.errors, 3);
}

#[tokio::test]
async fn keep_alive_calls_on_one_connection_pay_no_nagle_delay() {
    let sim = start().await;
    let client = http();
    let url = format!("{}/admin/health", sim.base_url());
    const CALLS: u32 = 20;
    let started = Instant::now();
    for _ in 0..CALLS {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // One connection, reused: the server accepted exactly one.
    assert_eq!(
        sim.connections_accepted(),
        1,
        "calls did not share a connection"
    );
    // With Nagle and delayed ACK each call would take about 40 ms.
    let per_call = started.elapsed() / CALLS;
    assert!(
        per_call < Duration::from_millis(20),
        "{per_call:?} per call"
    );
}

#[tokio::test]
async fn simulator_stops_when_shut_down() {
    let sim = start().await;
    let url = sim.base_url();
    sim.shutdown().await;
    let mut refused = false;
    for _ in 0..MAX_ATTEMPTS {
        if http()
            .get(format!("{url}/admin/health"))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
}

// ---------------------------------------------------------------------------------------------
// Alibaba's official SDKs
// ---------------------------------------------------------------------------------------------

/// The workspace root, where the official SDKs' scripts are (`tests/sdk/`, shared with the
/// operator's signature cross-check).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv with the official SDKs, made (once, cached) by `tests/sdk/setup.sh`. Like the
/// signature cross-check, this fails rather than skips when the SDKs cannot be set up.
fn sdk_python() -> std::path::PathBuf {
    let setup = repo_root().join("tests/sdk/setup.sh");
    let out = std::process::Command::new("bash")
        .arg(&setup)
        .output()
        .expect("bash runs tests/sdk/setup.sh");
    assert!(
        out.status.success(),
        "tests/sdk/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test]
async fn official_python_sdks_v1_and_v3_calls_are_accepted() {
    let sim = start().await;
    sim.set_task_status(APP, TASK, 4);
    let python = sdk_python();
    let script = repo_root().join("tests/sdk/call_simulator.py");
    let host = sim.host();
    let run = |secret: &'static str| {
        let (python, script, host) = (python.clone(), script.clone(), host.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(script)
                .args([host.as_str(), AK, secret, APP, TASK])
                .output()
                .expect("python runs")
        })
    };
    let out = run(SECRET).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer, serde_json::json!({"v1": 4, "v3": 4}));

    // A wrong secret reaches each SDK as SignatureDoesNotMatch (the old SDK parses our message).
    let out = run("wrong-secret").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        answer,
        serde_json::json!({"v1": "SignatureDoesNotMatch", "v3": "SignatureDoesNotMatch"}),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// STS GetCallerIdentity
// ---------------------------------------------------------------------------------------------

const STS_VERSION: &str = "2015-04-01";
const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

/// A V1-signed GetCallerIdentity (all parameters in the query), as the old core SDK sends it.
fn caller_identity_v1(key: &Key<'_>, version: &str, at: jiff::Timestamp) -> SignedRequest {
    let fresh = nonce();
    let stamp = sign::format_timestamp(at);
    let mut params: BTreeMap<String, String> = [
        ("Format", "JSON"),
        ("Version", version),
        ("Action", GET_CALLER_IDENTITY),
        ("AccessKeyId", key.id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureType", ""),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", fresh.as_str()),
        ("Timestamp", stamp.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(token) = key.token {
        params.insert("SecurityToken".into(), token.into());
    }
    let signed = sign::v1_sign(Method::Get, &params, key.secret);
    SignedRequest {
        method: Method::Get,
        path: sign::RPC_PATH,
        query: format!(
            "{}&Signature={}",
            sign::canonical_query(&params),
            sign::percent_encode(&signed.signature)
        ),
        headers: vec![
            ("x-acs-action".into(), GET_CALLER_IDENTITY.into()),
            ("x-acs-version".into(), version.into()),
        ],
        string_to_sign: signed.string_to_sign,
    }
}

/// A V3-signed GetCallerIdentity (`POST /`, no query, empty body), as today's SDK sends it.
fn caller_identity_v3(host: &str, key: &Key<'_>) -> SignedRequest {
    let mut headers: Vec<(String, String)> = [
        ("host", host.to_owned()),
        ("x-acs-action", GET_CALLER_IDENTITY.to_owned()),
        ("x-acs-version", STS_VERSION.to_owned()),
        ("x-acs-date", sign::format_timestamp(jiff::Timestamp::now())),
        ("x-acs-signature-nonce", nonce()),
        (
            "x-acs-content-sha256",
            sign::EMPTY_PAYLOAD_SHA256.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(token) = key.token {
        headers.push(("x-acs-accesskey-id".into(), key.id.into()));
        headers.push(("x-acs-security-token".into(), token.into()));
    }
    let signed = sign::v3_sign(
        Method::Post,
        sign::RPC_PATH,
        &BTreeMap::new(),
        &headers,
        sign::EMPTY_PAYLOAD_SHA256,
        key.id,
        key.secret,
    );
    headers.push(("authorization".into(), signed.authorization));
    SignedRequest {
        method: Method::Post,
        path: sign::RPC_PATH,
        query: String::new(),
        headers,
        string_to_sign: signed.string_to_sign,
    }
}

fn is_digits(value: &Value, len: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test]
async fn caller_identity_of_a_ram_user_key_names_its_uid_and_user_in_v1_and_v3() {
    let sim = start().await;
    let uid = sim.uid_of(AK).unwrap();
    let (status, v1_body) = send(
        &sim,
        &caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now()),
    )
    .await;
    assert_eq!(status, 200, "{v1_body}");
    assert_eq!(v1_body["IdentityType"], "RAMUser");
    assert_eq!(v1_body["AccountId"], uid.as_str());
    assert_eq!(v1_body["Arn"], format!("acs:ram::{uid}:user/{AK}"));
    assert!(is_digits(&v1_body["UserId"], 16), "{v1_body}");
    assert_eq!(v1_body["PrincipalId"], v1_body["UserId"]);
    assert_eq!(v1_body["RequestId"].as_str().unwrap().len(), 36);
    assert!(v1_body.get("RoleId").is_none(), "{v1_body}");

    // V3, and a key whose uid is configured.
    let key2 = Key {
        id: AK2,
        secret: SECRET2,
        token: None,
    };
    let (status, v3_body) = send(&sim, &caller_identity_v3(&sim.host(), &key2)).await;
    assert_eq!(status, 200, "{v3_body}");
    assert_eq!(v3_body["AccountId"], UID2);
    assert_eq!(v3_body["Arn"], format!("acs:ram::{UID2}:user/{AK2}"));
    // The same key always has the same user id; different keys have different ones.
    let (_, again) = send(
        &sim,
        &caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now()),
    )
    .await;
    assert_eq!(again["UserId"], v1_body["UserId"]);
    assert_ne!(v3_body["UserId"], v1_body["UserId"]);
    let stats = sim.stats(false);
    assert_eq!(stats.sts.actions[GET_CALLER_IDENTITY], 3);
    assert_eq!(stats.all.ok, 3);
}

#[tokio::test]
async fn caller_identity_of_sts_credentials_names_the_assumed_role_session_and_role_uid() {
    let sim = start().await;
    let (status, assumed) = assume_role(&sim, &[]).await;
    assert_eq!(status, 200, "{assumed}");
    let creds = &assumed["Credentials"];
    let key = Key {
        id: creds["AccessKeyId"].as_str().unwrap(),
        secret: creds["AccessKeySecret"].as_str().unwrap(),
        token: creds["SecurityToken"].as_str(),
    };
    for request in [
        caller_identity_v1(&key, STS_VERSION, jiff::Timestamp::now()),
        caller_identity_v3(&sim.host(), &key),
    ] {
        let (status, body) = send(&sim, &request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["IdentityType"], "AssumedRoleUser");
        assert_eq!(body["AccountId"], UID2);
        assert_eq!(
            body["Arn"],
            format!("acs:ram::{UID2}:assumed-role/mpu-relay/mpu-relay-operator")
        );
        let role_id = body["RoleId"].as_str().unwrap();
        assert_eq!(body["PrincipalId"], format!("{role_id}:mpu-relay-operator"));
        // The same principal AssumeRoleWithOIDC reported.
        assert_eq!(
            body["PrincipalId"],
            assumed["AssumedRoleUser"]["AssumedRoleId"]
        );
        assert!(body.get("UserId").is_none(), "{body}");
    }
    // Without its token the temporary key is refused, as for GetMPUTaskStatus.
    let tokenless = Key { token: None, ..key };
    let (status, body) = send(
        &sim,
        &caller_identity_v1(&tokenless, STS_VERSION, jiff::Timestamp::now()),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "MissingSecurityToken"));
}

#[tokio::test]
async fn caller_identity_with_bad_signature_unknown_key_or_stale_timestamp_answers_as_get_mpu_task_status_does()
 {
    let sim = start().await;
    let wrong = Key {
        secret: "not-the-secret",
        ..KEY1
    };
    let stranger = Key {
        id: "LTAInobody",
        ..KEY1
    };
    let now = jiff::Timestamp::now;
    let stale = || jiff::Timestamp::now() - jiff::SignedDuration::from_mins(16);
    let cases: [(&Key<'_>, jiff::Timestamp, u16, &str); 3] = [
        (&wrong, now(), 400, "SignatureDoesNotMatch"),
        (&stranger, now(), 404, "InvalidAccessKeyId.NotFound"),
        (&KEY1, stale(), 400, "InvalidTimeStamp.Expired"),
    ];
    for (key, at, want_status, want_code) in cases {
        let (status, identity) = send(&sim, &caller_identity_v1(key, STS_VERSION, at)).await;
        let (mpu_status, mpu) = send(&sim, &signed_v1(key, TASK, &nonce(), at)).await;
        assert_eq!((status, code(&identity)), (want_status, want_code));
        assert_eq!((mpu_status, code(&mpu)), (want_status, want_code));
        assert_eq!(
            identity["Message"] == mpu["Message"],
            want_code != "SignatureDoesNotMatch"
        );
        assert_eq!(identity["HostId"], "sts.aliyuncs.com");
    }
    // The server's string to sign follows the last ':' of the message, as for GetMPUTaskStatus.
    let request = caller_identity_v1(&wrong, STS_VERSION, now());
    let (_, body) = send(&sim, &request).await;
    let message = body["Message"].as_str().unwrap();
    assert_eq!(message.rsplit_once(':').unwrap().1, request.string_to_sign);
    // V3 with a wrong secret too.
    let (status, body) = send(&sim, &caller_identity_v3(&sim.host(), &wrong)).await;
    assert_eq!((status, code(&body)), (400, "SignatureDoesNotMatch"));
    // A reused nonce: sending the very same signed request twice.
    let request = caller_identity_v1(&KEY1, STS_VERSION, now());
    assert_eq!(send(&sim, &request).await.0, 200);
    let (status, body) = send(&sim, &request).await;
    assert_eq!((status, code(&body)), (400, "SignatureNonceUsed"));
    // Another API version is not STS's.
    let (status, body) = send(&sim, &caller_identity_v1(&KEY1, "2016-11-01", now())).await;
    assert_eq!((status, code(&body)), (400, "InvalidVersion"));
    assert_eq!(sim.stats(false).sts.errors, 7);
}

#[tokio::test]
async fn caller_identity_draws_nothing_from_the_rate_budget() {
    let sim = start().await;
    assert!(sim.set_qps(AK, 1));
    for _ in 0..5 {
        let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
        assert_eq!(send(&sim, &request).await.0, 200);
    }
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    assert_eq!(code(&v1(&sim, &KEY1, TASK).await.1), "Throttling.User");
    let stats = sim.stats(false);
    assert_eq!(stats.accounts[AK].calls.total, 2);
    assert_eq!(stats.sts.calls, 5);
}

// ---------------------------------------------------------------------------------------------
// Rate limits per uid
// ---------------------------------------------------------------------------------------------

const AK_A: &str = "LTAIsharedA";
const SECRET_A: &str = "secret-a";
const AK_B: &str = "LTAIsharedB";
const SECRET_B: &str = "secret-b";
const SHARED_UID: &str = "5555555555555555";
const SHARED_ROLE_ARN: &str = "acs:ram::5555555555555555:role/shared";

const KEY_A: Key<'static> = Key {
    id: AK_A,
    secret: SECRET_A,
    token: None,
};
const KEY_B: Key<'static> = Key {
    id: AK_B,
    secret: SECRET_B,
    token: None,
};

/// Two RAM users of one account (uid) at `qps` per uid, and a role of that account.
fn shared_uid_config(qps: u32) -> SimulatorConfig {
    let mut config = config();
    config.accounts.extend([
        AccountConfig {
            access_key_id: AK_A.into(),
            access_key_secret: SECRET_A.into(),
            qps: None,
        },
        AccountConfig {
            access_key_id: AK_B.into(),
            access_key_secret: SECRET_B.into(),
            qps: None,
        },
    ]);
    config.uids.push(UidConfig {
        uid: SHARED_UID.into(),
        qps: Some(qps),
        access_key_ids: vec![AK_A.into(), AK_B.into()],
    });
    config.roles = vec![RoleConfig {
        role_arn: SHARED_ROLE_ARN.into(),
        account: AK_A.into(),
        oidc_provider_arn: None,
        max_session_seconds: 3600,
    }];
    config
}

#[tokio::test]
async fn keys_sharing_a_uid_share_one_sliding_second_and_other_uids_keep_theirs() {
    let sim = Simulator::start_http(shared_uid_config(2)).await.unwrap();
    let started = Instant::now();
    assert_eq!(v1(&sim, &KEY_A, TASK).await.0, 200);
    assert_eq!(v1(&sim, &KEY_B, TASK).await.0, 200);
    let (status, body) = v1(&sim, &KEY_A, TASK).await;
    let (status_b, body_b) = v1(&sim, &KEY_B, TASK).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(900),
        "too slow to test: {elapsed:?}"
    );
    assert_eq!((status, code(&body)), (400, "Throttling.User"));
    assert_eq!((status_b, code(&body_b)), (400, "Throttling.User"));
    // Another uid's budget is untouched.
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);

    let stats = sim.stats(false);
    let uid = &stats.uids[SHARED_UID];
    assert_eq!(uid.qps, 2);
    assert_eq!(uid.access_key_ids, [AK_A, AK_B]);
    assert_eq!(
        (uid.calls.total, uid.calls.ok, uid.calls.throttled),
        (4, 2, 2)
    );
    assert_eq!(uid.calls.max_ok_in_any_second, 2);
    for key in [AK_A, AK_B] {
        let account = &stats.accounts[key];
        assert_eq!((account.uid.as_str(), account.qps), (SHARED_UID, 2));
        assert_eq!((account.calls.ok, account.calls.throttled), (1, 1));
    }
}

#[tokio::test]
async fn sts_session_calls_draw_on_the_budget_of_the_uid_owning_the_role() {
    let sim = Simulator::start_http(shared_uid_config(2)).await.unwrap();
    let (status, assumed) = assume_role(
        &sim,
        &[("RoleArn", SHARED_ROLE_ARN), ("OIDCProviderArn", "any")],
    )
    .await;
    assert_eq!(status, 200, "{assumed}");
    let creds = &assumed["Credentials"];
    let session = Key {
        id: creds["AccessKeyId"].as_str().unwrap(),
        secret: creds["AccessKeySecret"].as_str().unwrap(),
        token: creds["SecurityToken"].as_str(),
    };
    let started = Instant::now();
    assert_eq!(v1(&sim, &KEY_B, TASK).await.0, 200);
    assert_eq!(v1(&sim, &session, TASK).await.0, 200);
    let (status, body) = v1(&sim, &KEY_B, TASK).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(900),
        "too slow to test: {elapsed:?}"
    );
    assert_eq!((status, code(&body)), (400, "Throttling.User"));
    let stats = sim.stats(false);
    // The session's call is counted under the role's account, A, and its uid.
    assert_eq!(stats.accounts[AK_A].calls.ok, 1);
    assert_eq!(stats.uids[SHARED_UID].calls.ok, 2);
}

#[tokio::test]
async fn set_qps_of_one_key_and_admin_uid_qps_change_the_shared_limit() {
    let sim = Simulator::start_http(shared_uid_config(10)).await.unwrap();
    assert!(sim.set_qps(AK_A, 1));
    assert_eq!(sim.stats(false).accounts[AK_B].qps, 1);
    assert_eq!(v1(&sim, &KEY_A, TASK).await.0, 200);
    assert_eq!(code(&v1(&sim, &KEY_B, TASK).await.1), "Throttling.User");

    let (status, body) = admin(
        &sim,
        reqwest::Method::PUT,
        &format!("/uids/{SHARED_UID}/qps"),
        json!({"qps": 50}),
    )
    .await;
    assert_eq!((status, &body["qps"]), (200, &json!(50)), "{body}");
    assert_eq!(v1(&sim, &KEY_B, TASK).await.0, 200);
    assert_eq!(sim.stats(false).uids[SHARED_UID].qps, 50);
    assert!(!sim.set_uid_qps("999", 1));
    let (status, _) = admin(
        &sim,
        reqwest::Method::PUT,
        "/uids/999/qps",
        json!({"qps": 1}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn account_without_uid_gets_a_stable_sixteen_digit_uid_of_its_own() {
    let sim = start().await;
    let other = Simulator::start_http(config()).await.unwrap();
    let uid = sim.uid_of(AK).unwrap();
    assert_eq!(uid.len(), 16);
    assert!(uid.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(other.uid_of(AK), Some(uid.clone()));
    assert_eq!(sim.uid_of(AK2).as_deref(), Some(UID2));
    assert_eq!(sim.uid_of("LTAInobody"), None);
    let stats = sim.stats(false);
    assert_eq!(stats.uids[&uid].access_key_ids, [AK]);
    assert_eq!(stats.uids[&uid].qps, 10);
    // A uid without its own qps takes its key's: AK2 is configured at 100.
    assert_eq!(stats.uids[UID2].qps, 100);
}

#[tokio::test]
async fn admin_account_upsert_can_join_an_existing_uid() {
    let sim = Simulator::start_http(shared_uid_config(1)).await.unwrap();
    let (status, body) = admin(
        &sim,
        reqwest::Method::PUT,
        "/accounts/LTAIsharedC",
        json!({"accessKeySecret": "secret-c", "uid": SHARED_UID}),
    )
    .await;
    assert_eq!((status, &body["uid"]), (200, &json!(SHARED_UID)), "{body}");
    let key_c = Key {
        id: "LTAIsharedC",
        secret: "secret-c",
        token: None,
    };
    assert_eq!(v1(&sim, &key_c, TASK).await.0, 200);
    assert_eq!(code(&v1(&sim, &KEY_A, TASK).await.1), "Throttling.User");
    let (status, body) = admin(
        &sim,
        reqwest::Method::PUT,
        "/accounts/LTAIsharedD",
        json!({"accessKeySecret": "s", "uid": "12ab"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Faults per action
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sts_fault_fails_assume_role_and_caller_identity_with_alibaba_errors_but_spares_get_mpu_task_status()
 {
    let sim = start().await;
    let mut spec = fault(FaultKind::Http5xx {
        code: Some("ServiceUnavailable".into()),
        status: None,
    });
    spec.count = Some(2);
    sim.add_fault_for(&Action::STS, spec).unwrap();

    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    let (status, body) = assume_role(&sim, &[]).await;
    assert_eq!((status, code(&body)), (503, "ServiceUnavailable"), "{body}");
    assert_eq!(body["HostId"], "sts.aliyuncs.com");
    for field in ["RequestId", "Message", "Recommend"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
    let (status, body) = send(&sim, &request).await;
    assert_eq!((status, code(&body)), (503, "ServiceUnavailable"), "{body}");
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    // The rule is spent: STS works again.
    assert_eq!(assume_role(&sim, &[]).await.0, 200);
    let stats = sim.stats(false);
    assert_eq!((stats.sts.faults, stats.sts.errors), (2, 2));
    assert_eq!(stats.accounts[AK].calls.faults, 0);
}

#[tokio::test]
async fn get_mpu_task_status_fault_leaves_sts_alone() {
    let sim = start().await;
    let mut spec = fault(FaultKind::Http5xx {
        code: None,
        status: None,
    });
    spec.duration_ms = Some(60_000);
    sim.add_fault(spec).unwrap();
    assert_eq!(assume_role(&sim, &[]).await.0, 200);
    let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
    assert_eq!(send(&sim, &request).await.0, 200);
    let (status, body) = v1(&sim, &KEY1, TASK).await;
    assert_eq!((status, code(&body)), (500, "InternalError"));
}

#[tokio::test]
async fn sts_latency_fault_from_the_admin_api_delays_sts_answers_only() {
    const LATENCY_MS: u64 = 1500;
    let sim = start().await;
    let (status, body) = admin(
        &sim,
        reqwest::Method::POST,
        "/faults",
        json!({"kind": "latency", "ms": LATENCY_MS, "durationMs": 60000,
               "actions": ["AssumeRoleWithOIDC", "GetCallerIdentity"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = admin(&sim, reqwest::Method::GET, "/faults", Value::Null).await;
    assert_eq!(
        listed[0]["actions"],
        json!(["AssumeRoleWithOIDC", "GetCallerIdentity"])
    );

    let started = Instant::now();
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
    let status_call = started.elapsed();
    assert!(
        status_call < Duration::from_millis(LATENCY_MS),
        "{status_call:?}"
    );
    let started = Instant::now();
    let (status, body) = assume_role(&sim, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(LATENCY_MS));
    let started = Instant::now();
    let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
    assert_eq!(send(&sim, &request).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(LATENCY_MS));

    // An unknown action name is refused with a JSON error.
    let (status, body) = admin(
        &sim,
        reqwest::Method::POST,
        "/faults",
        json!({"kind": "drop", "actions": ["DescribeRegions"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn sts_drop_fault_for_one_account_closes_only_that_accounts_sts_connections() {
    let sim = start().await;
    let mut spec = fault(FaultKind::Drop);
    spec.account = Some(AK.into());
    spec.count = Some(5);
    sim.add_fault_for(&[Action::GetCallerIdentity], spec)
        .unwrap();
    let other = Key {
        id: AK2,
        secret: SECRET2,
        token: None,
    };
    let request = caller_identity_v1(&other, STS_VERSION, jiff::Timestamp::now());
    assert_eq!(send(&sim, &request).await.0, 200);
    let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
    assert!(send_raw(&sim, &request).await.is_err());
    assert_eq!(v1(&sim, &KEY1, TASK).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Calls per caller (User-Agent) per second
// ---------------------------------------------------------------------------------------------

/// Calls by User-Agent summed over a list of per-second buckets (from the admin JSON).
fn agents_total(buckets: &Value) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for bucket in buckets.as_array().unwrap() {
        let agents = bucket["userAgents"].as_object().unwrap();
        let sum: u64 = agents.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(sum, bucket["total"].as_u64().unwrap(), "{bucket}");
        for (agent, count) in agents {
            *total.entry(agent.clone()).or_default() += count.as_u64().unwrap();
        }
    }
    total
}

#[tokio::test]
async fn per_second_buckets_break_calls_down_by_user_agent_for_every_action() {
    let sim = start().await;
    let calls = [
        Some("operator-a/1.0"),
        Some("operator-a/1.0"),
        Some("operator-b/1.0"),
        None,
    ];
    for agent in calls {
        let request = signed_v1(&KEY1, TASK, &nonce(), jiff::Timestamp::now());
        let response = send_raw_to(&sim.base_url(), &request, agent).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let request = caller_identity_v1(&KEY1, STS_VERSION, jiff::Timestamp::now());
    let response = send_raw_to(&sim.base_url(), &request, Some("operator-a/1.0"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, stats) = admin(&sim, reqwest::Method::GET, "/stats", Value::Null).await;
    assert_eq!(status, 200);
    let count = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        agents_total(&stats["accounts"][AK]["perSecond"]),
        count(&[("operator-a/1.0", 2), ("operator-b/1.0", 1), ("none", 1)])
    );
    // `all` counts every call to the cloud API, STS included.
    assert_eq!(
        agents_total(&stats["all"]["perSecond"]),
        count(&[("operator-a/1.0", 3), ("operator-b/1.0", 1), ("none", 1)])
    );
    let uid = sim.uid_of(AK).unwrap();
    assert_eq!(agents_total(&stats["uids"][&uid]["perSecond"]).len(), 3);
    // The typed view agrees.
    let typed = sim.stats(false);
    let from_typed: u64 = typed
        .all
        .per_second
        .iter()
        .map(|b| b.user_agents.get("operator-a/1.0").copied().unwrap_or(0))
        .sum();
    assert_eq!(from_typed, 3);
}

// ---------------------------------------------------------------------------------------------
// The test proxy (tests/support/proxy.rs)
// ---------------------------------------------------------------------------------------------

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How long a read may take before the tests call the link dead or held.
const IO_WAIT: Duration = Duration::from_secs(5);
/// How long a held connection must stay silent to count as held.
const HOLD_CHECK: Duration = Duration::from_millis(300);

/// A loopback echo server; it stops with the test's runtime.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

async fn echo(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    stream.write_all(text).await.unwrap();
    read_some(stream).await.expect("echo arrives")
}

/// Up to 64 bytes, or `None` when the connection closed or failed.
async fn read_some(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(IO_WAIT, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None,
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Err(_) => panic!("no answer and no close within {IO_WAIT:?}"),
    }
}

#[tokio::test]
async fn proxy_forwards_both_ways_cut_drops_open_connections_and_holds_new_ones_until_restore() {
    let upstream = echo_server().await;
    let proxy = proxy::Proxy::start(upstream);
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut open, b"ping").await, b"ping");

    proxy.cut();
    assert_eq!(proxy.mode(), proxy::Mode::Hang);
    assert_eq!(read_some(&mut open).await, None, "open connection dropped");

    let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
    held.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(HOLD_CHECK, held.read(&mut buf))
            .await
            .is_err(),
        "a connection made while cut gets nothing"
    );

    // Restoring closes the held connection: what it sent was lost, never forwarded.
    proxy.restore();
    assert_eq!(read_some(&mut held).await, None);
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut fresh, b"again").await, b"again");
    assert_eq!(proxy.accepted(), 3);

    // Dropping the proxy closes what it carries.
    drop(proxy);
    assert_eq!(read_some(&mut fresh).await, None);
}

#[tokio::test]
async fn proxy_refuse_makes_new_connections_fail_until_restore() {
    let upstream = echo_server().await;
    let proxy = proxy::Proxy::start(upstream);
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut open, b"x").await, b"x");

    proxy.refuse();
    assert_eq!(read_some(&mut open).await, None);
    // The listener closes asynchronously; give it a bounded number of tries.
    let mut refused = false;
    for _ in 0..MAX_ATTEMPTS {
        match TcpStream::connect(proxy.addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "connections are refused");

    proxy.restore();
    let mut back = None;
    for _ in 0..MAX_ATTEMPTS {
        if let Ok(stream) = TcpStream::connect(proxy.addr()).await {
            back = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut back = back.expect("the proxy listens again on the same port");
    assert_eq!(echo(&mut back, b"y").await, b"y");
}

#[tokio::test]
async fn proxy_in_front_of_the_simulator_carries_signed_calls_until_cut() {
    let sim = start().await;
    let proxy = proxy::Proxy::start(sim.addr());
    let host = proxy.addr().to_string();
    // V3 signs the host, so sign the proxy's.
    let mut c = call(TASK);
    c.api_version = "2018-01-11";
    let v3 = |host: &str| {
        sign::sign_v3(
            host,
            &c,
            &creds(&KEY1),
            &Freshness {
                nonce: &nonce(),
                timestamp: jiff::Timestamp::now(),
            },
        )
    };
    let response = send_raw_to(&proxy.url(), &v3(&host), None).await.unwrap();
    assert_eq!(status_and_json(response).await.0, 200);

    proxy.cut();
    let request = v3(&host);
    let client = reqwest::Client::builder()
        .timeout(HOLD_CHECK)
        .build()
        .unwrap();
    let url = format!("{}{}?{}", proxy.url(), request.path, request.query);
    let mut builder = client.post(url);
    for (name, value) in request.headers.iter().filter(|(n, _)| n != "host") {
        builder = builder.header(name, value);
    }
    assert!(
        builder.send().await.is_err(),
        "no answer through a cut link"
    );

    proxy.restore();
    let response = send_raw_to(&proxy.url(), &v3(&host), None).await.unwrap();
    assert_eq!(status_and_json(response).await.0, 200);
    // The call sent while cut never reached the simulator.
    assert_eq!(sim.stats(false).all.total, 2);
}

/// A client that trusts only `ca_pem`, as the operator does with `--ca-bundle` and no platform
/// CA that could vouch for the simulator.
fn https_client(ca_pem: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let roots = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("CA parses");
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .tls_certs_only(roots)
        .build()
        .expect("client builds")
}

async fn start_https(certificate: ServerCertificate) -> SimulatorHandle {
    Simulator::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Scheme::Https(certificate),
        config(),
    )
    .await
    .expect("simulator starts")
}

#[tokio::test]
async fn https_is_the_default_and_serves_signed_calls_to_a_client_trusting_its_ca() {
    let sim = Simulator::start(config()).await.unwrap();
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let client = https_client(sim.ca_pem().expect("an HTTPS simulator has a CA"));
    // Eight: within the account's 10 calls per second.
    for _ in 0..8 {
        let signed = signed_v1(&KEY1, TASK, &nonce(), jiff::Timestamp::now());
        let url = format!("{}{}?{}", sim.base_url(), signed.path, signed.query);
        let response = client.get(url).send().await.unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 200, "{body}");
    }
    // Eight calls, one connection, one handshake: reuse holds under TLS.
    assert_eq!(sim.connections_accepted(), 1);
    assert_eq!(sim.handshakes_completed(), 1);
    assert_eq!(sim.handshakes_failed(), 0);
    assert_eq!(sim.stats(false).all.total, 8);
}

#[tokio::test]
async fn a_client_refuses_a_certificate_for_another_host_an_expired_one_and_an_unknown_ca() {
    for (certificate, trusted, words) in [
        (ServerCertificate::WrongHost, true, "NotValidForName"),
        (ServerCertificate::Expired, true, "Expired"),
        (ServerCertificate::Valid, false, "UnknownIssuer"),
    ] {
        let sim = start_https(certificate).await;
        let ca = if trusted {
            sim.ca_pem().unwrap().to_owned()
        } else {
            // Another run's CA: valid, but not the one that signed this server.
            Simulator::start(config())
                .await
                .unwrap()
                .ca_pem()
                .unwrap()
                .to_owned()
        };
        let error = https_client(&ca)
            .get(format!("{}/admin/health", sim.base_url()))
            .send()
            .await
            .expect_err("the handshake must fail");
        let chain = error_chain(&error);
        assert!(chain.contains(words), "{certificate:?}: {chain}");
        assert_eq!(sim.handshakes_completed(), 0, "{certificate:?}");
        // The server counts the failure when the client's alert reaches it.
        for _ in 0..MAX_ATTEMPTS {
            if sim.handshakes_failed() >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sim.handshakes_failed() >= 1, "{certificate:?}");
        assert_eq!(sim.stats(false).all.total, 0, "{certificate:?}: no call");
    }
}

#[tokio::test]
async fn plain_http_is_refused_by_an_https_simulator_without_reaching_the_api() {
    let sim = Simulator::start(config()).await.unwrap();
    let url = sim.base_url().replacen("https://", "http://", 1);
    let _ = http().get(format!("{url}/admin/health")).send().await;
    assert_eq!(sim.handshakes_completed(), 0);
    assert_eq!(sim.stats(false).all.total, 0);
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause} ({cause:?})"));
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Managed relays: StartLiveMPUTask, UpdateLiveMPUTask, StopLiveMPUTask, ListRtcMPUTaskDetail
// ---------------------------------------------------------------------------------------------

/// A V1-signed call of a relay action with `own` parameters, as the old core SDK sends it.
async fn relay_action(sim: &SimulatorHandle, action: &str, own: &[(&str, &str)]) -> (u16, Value) {
    let operation = sign::RpcOperation {
        action,
        version: "2016-11-01",
        params: own,
    };
    let req = sign::sign_v1_rpc(
        Method::Post,
        &operation,
        &creds(&KEY1),
        &Freshness {
            nonce: &nonce(),
            timestamp: jiff::Timestamp::now(),
        },
    );
    send(sim, &req).await
}

const SINGLE_SUB: &str = r#"{"SourceType":"camera","StreamType":"0","UserId":"host-1"}"#;

fn start_params<'a>(task: &'a str, url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AppId", APP),
        ("ChannelId", "lobby"),
        ("TaskId", task),
        ("MixMode", "0"),
        ("StreamURL", url),
        ("SingleSubParams", SINGLE_SUB),
    ]
}

#[tokio::test]
async fn a_relay_started_in_an_occupied_channel_runs_and_get_mpu_task_status_reports_it() {
    let sim = start().await;
    let (status, body) = relay_action(
        &sim,
        "StartLiveMPUTask",
        &start_params("relay-1", "rtmp://push/1"),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "InvalidParam"), "{body}");
    assert!(
        body["Message"].as_str().unwrap().contains("does not exist"),
        "{body}"
    );

    sim.set_channel_users(APP, "lobby", 1);
    let (status, body) = relay_action(
        &sim,
        "StartLiveMPUTask",
        &start_params("relay-1", "rtmp://push/1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["RequestId"].is_string());
    assert_eq!(sim.relay(APP, "relay-1").unwrap()["Status"], 1);
    assert_eq!(v1(&sim, &KEY1, "relay-1").await.1["Status"], 1);

    // A second start of the same TaskId, and a start on the same URL, are refused.
    let (status, body) = relay_action(
        &sim,
        "StartLiveMPUTask",
        &start_params("relay-1", "rtmp://push/9"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["Message"].as_str().unwrap().contains("already exists"));
    let (status, body) = relay_action(
        &sim,
        "StartLiveMPUTask",
        &start_params("relay-2", "rtmp://push/1"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["Message"].as_str().unwrap().contains("in use"),
        "{body}"
    );

    // The detail repeats the parameters; an update changes them in place.
    let (status, body) = relay_action(
        &sim,
        "ListRtcMPUTaskDetail",
        &[("AppId", APP), ("TaskId", "relay-1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["MPUTasks"][0]["StreamURL"], "rtmp://push/1");
    assert_eq!(body["MPUTasks"][0]["SingleSubParams"]["UserId"], "host-1");
    let (status, body) = relay_action(
        &sim,
        "UpdateLiveMPUTask",
        &[
            ("AppId", APP),
            ("ChannelId", "lobby"),
            ("TaskId", "relay-1"),
            ("StreamURL", "rtmp://push/2"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let relay = sim.relay(APP, "relay-1").unwrap();
    assert_eq!(
        (relay["Revision"].clone(), relay["StreamURL"].clone()),
        (json!(2), json!("rtmp://push/2"))
    );

    // Stopped by the user: status 3 for GetMPUTaskStatus.
    let (status, _) = relay_action(
        &sim,
        "StopLiveMPUTask",
        &[("AppId", APP), ("TaskId", "relay-1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v1(&sim, &KEY1, "relay-1").await.1["Status"], 3);
    let stats = sim.stats(false);
    assert_eq!(stats.relay_actions["StartLiveMPUTask"], 4);
    assert_eq!(stats.relay_actions["StopLiveMPUTask"], 1);
    assert_eq!(
        stats.accounts[AK].calls.total, 2,
        "an account's counters are its GetMPUTaskStatus calls"
    );
}

#[tokio::test]
async fn a_start_missing_its_block_is_missing_param_and_each_relay_action_has_its_own_limit() {
    let mut config = config();
    config.relay_qps.insert(Action::StartLiveMpuTask, 2);
    let sim = Simulator::start_http(config).await.unwrap();
    sim.set_channel_users(APP, "lobby", 1);
    let (status, body) = relay_action(
        &sim,
        "StartLiveMPUTask",
        &[
            ("AppId", APP),
            ("TaskId", "r"),
            ("StreamURL", "rtmp://push/1"),
        ],
    )
    .await;
    assert_eq!((status, code(&body)), (400, "MissingParam"), "{body}");
    // That refused start counted against the limit of 2: one more passes, then throttling,
    // while GetMPUTaskStatus (its own limit) goes on.
    let urls = ["rtmp://push/a", "rtmp://push/b"];
    let (status, body) = relay_action(&sim, "StartLiveMPUTask", &start_params("a", urls[0])).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = relay_action(&sim, "StartLiveMPUTask", &start_params("b", urls[1])).await;
    assert_eq!((status, code(&body)), (400, "Throttling.User"), "{body}");
    assert_eq!(v1(&sim, &KEY1, "a").await.0, 200);
}

#[tokio::test]
async fn a_relay_whose_channel_empties_is_reported_channel_stopped_after_its_max_idle_time() {
    let sim = start().await;
    sim.set_channel_users(APP, "lobby", 1);
    let mut params = start_params("idle", "rtmp://push/idle");
    params.push(("MaxIdleTime", "10"));
    let (status, body) = relay_action(&sim, "StartLiveMPUTask", &params).await;
    assert_eq!(status, 200, "{body}");
    sim.set_channel_users(APP, "lobby", 0);
    assert_eq!(v1(&sim, &KEY1, "idle").await.1["Status"], 1);
    tokio::time::sleep(Duration::from_millis(10_200)).await;
    // Nothing but GetMPUTaskStatus has looked since: it sees the stop itself.
    assert_eq!(v1(&sim, &KEY1, "idle").await.1["Status"], 4);
}

// ---------------------------------------------------------------------------------------------
// MPU event subscriptions and their callbacks
// ---------------------------------------------------------------------------------------------

/// A callback receiver on a loopback port: what it was sent (body and headers), answering each
/// POST with the next of `answers` (200 once they run out).
struct Receiver {
    url: String,
    got: tokio::sync::mpsc::UnboundedReceiver<(Value, Vec<String>)>,
}

async fn receiver(answers: &[u16]) -> Receiver {
    use axum::http::{HeaderMap, StatusCode};
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(answers.to_vec()));
    let app = axum::Router::new().route(
        "/cb/{token}",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, answers) = (tx.clone(), answers.clone());
            async move {
                let names = ["ali-rtc-timestamp", "ali-rtc-signature"]
                    .iter()
                    .filter(|h| headers.contains_key(**h))
                    .map(|h| h.to_string())
                    .collect();
                let _ = tx.send((serde_json::from_slice(&body).unwrap_or(Value::Null), names));
                let mut answers = answers.lock().unwrap();
                let code = if answers.is_empty() {
                    200
                } else {
                    answers.remove(0)
                };
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb/t0ken", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, got }
}

impl Receiver {
    async fn next(&mut self) -> (Value, Vec<String>) {
        tokio::time::timeout(Duration::from_secs(10), self.got.recv())
            .await
            .expect("a callback within 10 s")
            .expect("the receiver runs")
    }
}

#[tokio::test]
async fn one_subscription_per_app_is_created_described_updated_and_deleted_over_the_wire() {
    let sim = start().await;
    let url = "https://operator.example.com/mpu-events/abc";
    let (status, body) = relay_action(
        &sim,
        "CreateRtcMPUEventSub",
        &[("AppId", APP), ("CallbackUrl", url)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sub_id = body["SubId"].as_str().unwrap().to_owned();
    assert!(sub_id.starts_with("Sub-"), "{body}");

    let again = [("AppId", APP), ("CallbackUrl", url)];
    let (status, body) = relay_action(&sim, "CreateRtcMPUEventSub", &again).await;
    assert_eq!((status, code(&body)), (400, "InvalidParam"), "{body}");

    let (status, body) = relay_action(&sim, "DescribeRtcMPUEventSub", &[("AppId", APP)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["SubInfo"]["SubId"], sub_id.as_str());
    assert_eq!(body["SubInfo"]["CallbackUrl"], url);
    assert!(body["SubInfo"].get("ChannelIds").is_none(), "every channel");

    let update = [("AppId", APP), ("ChannelIds", "lobby,stage")];
    let (status, body) = relay_action(&sim, "UpdateRtcMPUEventSub", &update).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.subscription(APP).unwrap().channel_ids,
        ["lobby", "stage"]
    );

    let (status, _) = relay_action(&sim, "DeleteRtcMPUEventSub", &[("AppId", APP)]).await;
    assert_eq!(status, 200);
    let (status, body) = relay_action(&sim, "DescribeRtcMPUEventSub", &[("AppId", APP)]).await;
    assert_eq!((status, code(&body)), (400, "InvalidParam"), "{body}");
    assert!(sim.stats(false).relay_actions["CreateRtcMPUEventSub"] >= 2);
}

#[tokio::test]
async fn a_status_change_is_posted_to_the_subscription_retried_on_refusal_and_logged() {
    let sim = start().await;
    let mut rx = receiver(&[503]).await;
    sim.set_delivery_rules(mpu_cloud_sim::events::DeliveryRules {
        retry_every_ms: 200,
        ..Default::default()
    });
    let create = [("AppId", APP), ("CallbackUrl", rx.url.as_str())];
    let (status, body) = relay_action(&sim, "CreateRtcMPUEventSub", &create).await;
    assert_eq!(status, 200, "{body}");

    // The same status again is no change: only the change to 5 is sent.
    sim.set_task_status(APP, TASK, 1);
    sim.set_task_status(APP, TASK, 5);
    let (first, headers) = rx.next().await;
    assert_eq!(headers, ["ali-rtc-timestamp", "ali-rtc-signature"]);
    assert_eq!(first["TaskId"], TASK);
    assert_eq!(first["AppId"], APP);
    assert_eq!(first["Payload"]["EventCode"], 5);
    // Refused with 503: tried again, the same message.
    let (second, _) = rx.next().await;
    assert_eq!(second["MsgId"], first["MsgId"]);

    let start = "2000-01-01T00:00:00Z";
    let end = "2100-01-01T00:00:00Z";
    let list = [
        ("AppId", APP),
        ("StartTime", start),
        ("EndTime", end),
        ("PageNo", "1"),
        ("PageSize", "10"),
    ];
    let mut logs = Value::Null;
    for _ in 0..MAX_ATTEMPTS {
        let (status, body) = relay_action(&sim, "ListRtcMPUEventSubRecord", &list).await;
        assert_eq!(status, 200, "{body}");
        if body["Count"] == 2 {
            logs = body["Logs"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let codes: Vec<&str> = logs
        .as_array()
        .expect("two tries logged")
        .iter()
        .map(|l| l["HTTPCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["503", "200"]);
    let data: Value = serde_json::from_str(logs[1]["Data"].as_str().unwrap()).unwrap();
    assert_eq!(data["MsgId"], first["MsgId"]);
}
