//! The simulator over HTTP: requests signed with `cloud::sign` (V1 and V3) against a simulator on a
//! loopback port, covering each answer Alibaba Cloud gives, throttling, faults, the admin API and
//! STS AssumeRoleWithOIDC.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpu_relay_operator::cloud::sign::{
    self, Freshness, Method, MpuStatusCall, SignedRequest, SigningKey,
};
use mpu_relay_operator::simulator::{
    FaultKind, FaultSpec, RoleConfig, Simulator, SimulatorConfig, SimulatorHandle, TaskConfig,
    config::AccountConfig,
};
use serde_json::Value;

const AK: &str = "LTAItestAK1";
const SECRET: &str = "secret-one";
const AK2: &str = "LTAItestAK2";
const SECRET2: &str = "secret-two";
const APP: &str = "app-1";
const TASK: &str = "task-1";
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
        ..SimulatorConfig::default()
    }
}

async fn start() -> SimulatorHandle {
    Simulator::start(config()).await.expect("simulator starts")
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client builds")
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
    let url = format!("{}{}?{}", sim.base_url(), req.path, req.query);
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
    builder.send().await
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

/// The venv with the official SDKs, made (once, cached) by `tests/sdk/setup.sh`. Like the
/// signature cross-check, this fails rather than skips when the SDKs cannot be set up.
fn sdk_python() -> std::path::PathBuf {
    let setup = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/setup.sh");
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
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/call_simulator.py");
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
