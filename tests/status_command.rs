//! `mpu-relay-operator status` and the cloud client against the simulator over HTTPS, as an
//! operator at a terminal would use them: the simulator's CA trusted through `--ca-bundle` (or
//! `ClientOptions::extra_roots`), and each certificate failure a clear, terminal `TlsError`
//! before anything is sent.

use std::process::Command;

// For `support::ca_bundle`; this file needs no control plane.
#[allow(unused_imports)]
mod support;

use mpu_cloud_sim::{
    AccountConfig, FaultKind, FaultSpec, Scheme, ServerCertificate, Simulator, SimulatorConfig,
    SimulatorHandle, TaskConfig,
};
use mpu_relay_operator::api::{CloudApi, SignatureVersion};
use mpu_relay_operator::cloud::CloudError;
use mpu_relay_operator::cloud::ErrorClass;
use mpu_relay_operator::cloud::access_key::Credentials;
use mpu_relay_operator::cloud::client::{CaBundle, ClientOptions, CloudClient, StatusQuery};
use mpu_relay_operator::cloud::endpoint::Endpoint;

const AK: &str = "LTAI5tStatusCommand";
const SK: &str = "status-command-secret-3d9e";

async fn simulator() -> SimulatorHandle {
    simulator_presenting(ServerCertificate::Valid).await
}

fn sim_config() -> SimulatorConfig {
    SimulatorConfig {
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
    }
}

async fn simulator_presenting(certificate: ServerCertificate) -> SimulatorHandle {
    let loopback = "127.0.0.1:0".parse().unwrap();
    Simulator::start_with(loopback, Scheme::Https(certificate), sim_config())
        .await
        .unwrap()
}

/// A client that trusts the simulator's CA besides the platform's roots, as `--ca-bundle` does.
fn client(sim: &SimulatorHandle) -> CloudClient {
    let roots = CaBundle::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap();
    CloudClient::new(&ClientOptions {
        extra_roots: roots,
        ..ClientOptions::default()
    })
    .unwrap()
}

fn query(endpoint: &Endpoint) -> StatusQuery<'_> {
    StatusQuery {
        endpoint,
        api: CloudApi::Live,
        signature: SignatureVersion::V1,
        region_id: None,
        app_id: "app",
        task_id: "relay-1",
    }
}

/// Runs `status` with the given extra arguments and AccessKey; returns (exit code, stdout, stderr).
async fn status(sim: &SimulatorHandle, secret: &str, extra: &[&str]) -> (i32, String, String) {
    let ca = support::ca_bundle(sim).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"));
    cmd.args(["status", "--app-id", "app", "--endpoint", &sim.base_url()])
        .args(["--ca-bundle", &ca])
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
    let client = client(&sim);
    let creds = Credentials::access_key(AK, SK, None);
    let endpoint = Endpoint::parse(&sim.base_url()).unwrap();
    let query = query(&endpoint);
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
    let client = client(&sim);
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

#[tokio::test]
async fn client_over_tls_reuses_one_connection_and_one_handshake_for_many_calls() {
    let sim = simulator().await;
    let client = client(&sim);
    let creds = Credentials::access_key(AK, SK, None);
    let endpoint = Endpoint::parse(&sim.base_url()).unwrap();
    for _ in 0..8 {
        let answer = client.get_mpu_task_status(&creds, &query(&endpoint)).await;
        assert_eq!(answer.map(|a| a.status).ok(), Some(5));
    }
    assert_eq!(sim.handshakes_completed(), 1, "one handshake, then reuse");
    assert_eq!(sim.connections_accepted(), 1);
}

#[tokio::test]
async fn client_refuses_a_wrong_host_an_expired_certificate_and_an_unknown_ca_before_sending() {
    for (certificate, trusted, cause) in [
        (ServerCertificate::WrongHost, true, "not valid for name"),
        (ServerCertificate::Expired, true, "expired"),
        (ServerCertificate::Valid, false, "UnknownIssuer"),
    ] {
        let sim = simulator_presenting(certificate).await;
        let client = if trusted {
            client(&sim)
        } else {
            // The platform's roots only: the simulator's CA is no public CA.
            CloudClient::new(&ClientOptions::default()).unwrap()
        };
        let creds = Credentials::access_key(AK, SK, None);
        let endpoint = Endpoint::parse(&sim.base_url()).unwrap();
        let error = client
            .get_mpu_task_status(&creds, &query(&endpoint))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CloudError::Tls(_)),
            "{certificate:?}: {error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Terminal, "{certificate:?}");
        assert_eq!(error.reason(), "TlsError", "{certificate:?}");
        let text = error.to_string();
        assert!(text.contains(cause), "{certificate:?}: {text}");
        assert!(!text.contains(SK) && !text.contains("Signature="), "{text}");
        assert_eq!(
            sim.stats(false).all.total,
            0,
            "{certificate:?}: nothing sent"
        );
        assert_eq!(sim.handshakes_completed(), 0, "{certificate:?}");
    }
}

#[tokio::test]
async fn status_without_the_ca_bundle_exits_terminal_with_tls_error() {
    let sim = simulator().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"));
    cmd.args(["status", "--app-id", "app", "--task-id", "relay-1"])
        .args(["--endpoint", &sim.base_url()])
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("TLS handshake") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(sim.stats(false).all.total, 0);
}

#[tokio::test]
async fn status_with_a_ca_bundle_that_is_not_pem_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for (path, words) in [(&missing, "cannot read"), (&garbage, "no PEM certificate")] {
        let out = Command::new(env!("CARGO_BIN_EXE_mpu-relay-operator"))
            .args(["status", "--app-id", "app", "--task-id", "t"])
            .arg("--ca-bundle")
            .arg(path)
            .env_clear()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(words) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
}
