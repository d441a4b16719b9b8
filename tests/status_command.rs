//! `mpu-relay-operator status` and the cloud client against the simulator, as an operator at a
//! terminal would use them.

use std::process::Command;

use mpu_cloud_sim::{
    AccountConfig, FaultKind, FaultSpec, Simulator, SimulatorConfig, SimulatorHandle, TaskConfig,
};
use mpu_relay_operator::api::{CloudApi, SignatureVersion};
use mpu_relay_operator::cloud::ErrorClass;
use mpu_relay_operator::cloud::access_key::Credentials;
use mpu_relay_operator::cloud::client::{ClientOptions, CloudClient, StatusQuery};
use mpu_relay_operator::cloud::endpoint::Endpoint;

const AK: &str = "LTAI5tStatusCommand";
const SK: &str = "status-command-secret-3d9e";

async fn simulator() -> SimulatorHandle {
    Simulator::start(SimulatorConfig {
        accounts: vec![AccountConfig {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            qps: Some(10),
        }],
        tasks: vec![TaskConfig {
            app_id: "app".into(),
            task_id: "relay-1".into(),
            status: 5,
        }],
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

/// Runs `status` with the given extra arguments and AccessKey; returns (exit code, stdout, stderr).
async fn status(sim: &SimulatorHandle, secret: &str, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"));
    cmd.args(["status", "--app-id", "app", "--endpoint", &sim.base_url()])
        .args(extra)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn status_prints_the_decoded_phase_as_json_and_as_a_table_with_both_signatures() {
    let sim = simulator().await;
    for signature in ["v1", "v3"] {
        let (code, out, err) = status(
            &sim,
            SK,
            &[
                "--task-id",
                "relay-1",
                "--signature",
                signature,
                "--output",
                "json",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["statusCode"], 5);
        assert_eq!(json["phase"], "CdnError");
        assert!(json["requestId"].as_str().is_some_and(|r| !r.is_empty()));

        let (code, out, _) = status(
            &sim,
            SK,
            &["--task-id", "relay-1", "--signature", signature],
        )
        .await;
        assert_eq!(code, 0);
        assert!(out.contains("CdnError") && out.contains("relay-1"), "{out}");
    }
}

#[tokio::test]
async fn status_with_a_wrong_secret_exits_terminal_and_prints_code_message_request_id_not_the_secret()
 {
    let sim = simulator().await;
    let (code, out, err) = status(&sim, "wrong-secret-value-0a1b", &["--task-id", "relay-1"]).await;
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("Code: SignatureDoesNotMatch"), "{err}");
    assert!(err.contains("Message: "), "{err}");
    assert!(err.contains("RequestId: "), "{err}");
    assert!(!err.contains("wrong-secret-value-0a1b") && !out.contains("wrong-secret-value-0a1b"));
}

#[tokio::test]
async fn status_of_an_unknown_task_exits_terminal() {
    let sim = simulator().await;
    let (code, _, err) = status(&sim, SK, &["--task-id", "nope"]).await;
    assert_eq!(code, 5);
    assert!(err.contains("InvalidTask.NotFound"), "{err}");
}

#[tokio::test]
async fn status_exits_with_distinct_codes_for_throttled_and_transient_errors() {
    let sim = simulator().await;
    sim.add_fault(FaultSpec {
        kind: FaultKind::Throttle,
        account: None,
        count: Some(1),
        duration_ms: None,
    })
    .unwrap();
    let (code, _, err) = status(&sim, SK, &["--task-id", "relay-1"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Throttling.User"), "{err}");

    sim.add_fault(FaultSpec {
        kind: FaultKind::Http5xx {
            code: Some("ServiceUnavailable".into()),
            status: None,
        },
        account: None,
        count: Some(1),
        duration_ms: None,
    })
    .unwrap();
    let (code, _, err) = status(&sim, SK, &["--task-id", "relay-1"]).await;
    assert_eq!(code, 4, "{err}");
}

#[tokio::test]
async fn status_without_credentials_or_arguments_is_a_usage_error() {
    let no_creds = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"))
        .args(["status", "--app-id", "a", "--task-id", "t"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(no_creds.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_creds.stderr).contains("ALIBABA_CLOUD_ACCESS_KEY_ID"));

    let no_task = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"))
        .args(["status", "--app-id", "a"])
        .output()
        .unwrap();
    assert_eq!(no_task.status.code(), Some(2));
}

#[tokio::test]
async fn client_is_throttled_at_the_eleventh_call_within_one_second() {
    let sim = simulator().await;
    let client = CloudClient::new(&ClientOptions::default()).unwrap();
    let creds = Credentials::access_key(AK, SK, None);
    let endpoint = Endpoint::parse(&sim.base_url()).unwrap();
    let query = StatusQuery {
        endpoint: &endpoint,
        api: CloudApi::Live,
        signature: SignatureVersion::V1,
        region_id: None,
        app_id: "app",
        task_id: "relay-1",
    };
    let started = std::time::Instant::now();
    for i in 0..10 {
        let answer = client.get_mpu_task_status(&creds, &query).await;
        assert_eq!(answer.map(|a| a.status).ok(), Some(5), "call {}", i + 1);
    }
    let eleventh = client
        .get_mpu_task_status(&creds, &query)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "too slow to test the window"
    );
    assert_eq!(eleventh.class(), ErrorClass::Throttled);
    assert_eq!(eleventh.api().unwrap().code, "Throttling.User");
}

#[tokio::test]
async fn client_signs_v3_and_rtc_calls_the_simulator_accepts() {
    let sim = simulator().await;
    let client = CloudClient::new(&ClientOptions::default()).unwrap();
    let creds = Credentials::access_key(AK, SK, None);
    let endpoint = Endpoint::parse(&sim.base_url()).unwrap();
    let answer = client
        .get_mpu_task_status(
            &creds,
            &StatusQuery {
                endpoint: &endpoint,
                api: CloudApi::Rtc,
                signature: SignatureVersion::V3,
                region_id: Some("cn-shanghai"),
                app_id: "app",
                task_id: "relay-1",
            },
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 5);
}
