//! Cross-check of our V1 and V3 signing against Alibaba Cloud's official Python SDKs (pinned in
//! `tests/sdk/requirements.txt`), byte for byte, on edge-case inputs. The SDKs' own signing code runs with a
//! fixed nonce and time (`tests/sdk/sign_vectors.py`). No Kubernetes needed; Python 3 and PyPI access (first run
//! only, the venv is cached outside the repo) are. If the SDKs cannot be set up, these tests fail: never skip.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use mpu_relay_operator::cloud::sign::{
    self, EMPTY_PAYLOAD_SHA256, Freshness, Method, MpuStatusCall, SigningKey, sign_v1, sign_v3,
    v1_sign, v3_sign,
};
use mpu_relay_sign::verify::decode_query;
use serde_json::{Value, json};

/// Values that exercise every branch of the encoders: spaces, `*`, `~`, `+`, `/`, `=`, `&`, `%`, non-ASCII.
const EDGE_VALUES: &[&str] = &[
    "plain-Value_1.0~",
    "a b  c",
    "*star*",
    "~tilde~",
    "plus+sign",
    "slash/and\\back",
    "eq=ual",
    "amp&ersand",
    "100%",
    "é",
    "任务-中文",
    "😀",
    "",
    "!'()@#$^[]{}|;:,<>?`\"",
];

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
}

/// The venv python with the SDKs, set up once per test binary.
fn sdk_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let setup = sdk_dir().join("setup.sh");
        let out = Command::new("bash")
            .arg(&setup)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}; bash is needed for the SDK cross-check", setup.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): the official Python SDKs could not be installed; this cross-check needs Python 3 \
             with venv and access to PyPI on first run (see the messages above)",
            setup.display(),
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(path.is_file(), "setup.sh printed {stdout:?}, which is not a python executable");
        path
    })
}

/// Runs `tests/sdk/<script>` on a JSON `input` and returns the JSON it prints.
fn run_sdk_script(script: &str, input: &Value) -> Value {
    let script = sdk_dir().join(script);
    let mut child = Command::new(sdk_python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start the SDK script {}: {e}", script.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&serde_json::to_vec(input).expect("the input serialises"))
        .expect("write the input to the SDK script");
    let out = child.wait_with_output().expect("SDK script runs");
    assert!(
        out.status.success(),
        "the SDK script {} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the SDK script prints JSON")
}

/// Runs `sign_vectors.py` on a list of cases and returns its list of answers.
fn sdk(cases: &[Value]) -> Vec<Value> {
    let answers: Vec<Value> = serde_json::from_value(run_sdk_script(
        "sign_vectors.py",
        &Value::Array(cases.to_vec()),
    ))
    .expect("the SDK script prints a JSON list");
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("SDK answer lacks string {key:?}: {v}"))
}

fn to_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().expect("test timestamp")
}

/// Every V1 parameter map we check: the published example, then each edge value in a realistic map.
fn v1_raw_cases() -> Vec<(Method, BTreeMap<String, String>, &'static str)> {
    let published = to_map(&[
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("Format", "XML"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Version", "2014-05-26"),
    ]);
    let mut cases = vec![(Method::Get, published, "testsecret")];
    for (i, value) in EDGE_VALUES.iter().enumerate() {
        let method = if i % 2 == 0 {
            Method::Get
        } else {
            Method::Post
        };
        let mut params = to_map(&[
            ("AccessKeyId", "LTAI5tEXAMPLE"),
            ("Action", "GetMPUTaskStatus"),
            ("AppId", value),
            ("TaskId", value),
            ("SignatureType", ""),
            ("Timestamp", "2024-02-29T23:59:59Z"),
        ]);
        // A key that itself needs encoding, and sorts before the others.
        params.insert(format!("A key {value}"), "k".to_owned());
        cases.push((method, params, "s3cr+t/=&é"));
    }
    cases
}

#[test]
fn v1_string_to_sign_and_signature_match_both_sdks_for_edge_case_parameters() {
    let cases = v1_raw_cases();
    let inputs: Vec<Value> = cases
        .iter()
        .map(|(method, params, secret)| json!({"mode": "v1_raw", "method": method.as_str(), "secret": secret, "params": params}))
        .collect();
    let answers = sdk(&inputs);
    assert_eq!(
        s(&answers[0], "signature"),
        "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
        "the SDK reproduces the published example"
    );
    for ((method, params, secret), answer) in cases.iter().zip(&answers) {
        let ours = v1_sign(*method, params, secret);
        assert_eq!(
            ours.string_to_sign,
            s(answer, "string_to_sign"),
            "string to sign for {params:?}"
        );
        assert_eq!(
            ours.signature,
            s(answer, "signature"),
            "old core SDK signature for {params:?}"
        );
        assert_eq!(
            ours.signature,
            s(answer, "signature_tea"),
            "tea-openapi V1 signature for {params:?}"
        );
    }
}

struct RequestCase {
    method: Method,
    version: &'static str,
    app_id: &'static str,
    task_id: &'static str,
    token: Option<&'static str>,
    nonce: &'static str,
    timestamp: &'static str,
}

fn request_cases() -> Vec<RequestCase> {
    let mut cases = vec![
        RequestCase {
            method: Method::Post,
            version: "2018-01-11",
            app_id: "app-123",
            task_id: "task_456",
            token: None,
            nonce: "0123456789abcdef0123456789abcdef",
            timestamp: "2024-01-02T03:04:05Z",
        },
        RequestCase {
            method: Method::Get,
            version: "2016-11-01",
            app_id: "app 1*~",
            task_id: "t/=&+%",
            token: Some("CAIS+token/with==&chars"),
            nonce: "ffffffffffffffffffffffffffffffff",
            timestamp: "2000-01-01T00:00:00Z",
        },
    ];
    for (i, value) in EDGE_VALUES
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
    {
        cases.push(RequestCase {
            method: if i % 2 == 0 {
                Method::Get
            } else {
                Method::Post
            },
            version: "2018-01-11",
            app_id: value,
            task_id: value,
            token: (i % 3 == 0).then_some("sts token é"),
            nonce: "d41d8cd98f00b204e9800998ecf8427e",
            timestamp: "2031-12-31T23:59:59Z",
        });
    }
    cases
}

const AK: &str = "LTAI5tEXAMPLEak";
const SECRET: &str = "secret+/=&é~";
const REGION: &str = "cn-hangzhou";

#[test]
fn signed_v1_requests_match_old_core_sdk_parameter_for_parameter() {
    let cases = request_cases();
    let inputs: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "mode": "v1_request", "method": c.method.as_str(), "access_key_id": AK, "secret": SECRET,
                "security_token": c.token, "region_id": REGION, "nonce": c.nonce, "timestamp": c.timestamp,
                "version": c.version, "action": "GetMPUTaskStatus",
                "params": {"AppId": c.app_id, "TaskId": c.task_id},
            })
        })
        .collect();
    for (c, answer) in cases.iter().zip(sdk(&inputs)) {
        let call = MpuStatusCall {
            api_version: c.version,
            app_id: c.app_id,
            task_id: c.task_id,
            region_id: Some(REGION),
        };
        let creds = SigningKey {
            access_key_id: AK,
            access_key_secret: SECRET,
            security_token: c.token,
        };
        let fresh = Freshness {
            nonce: c.nonce,
            timestamp: ts(c.timestamp),
        };
        let ours = sign_v1(c.method, &call, &creds, &fresh);
        assert_eq!(
            ours.string_to_sign,
            s(&answer, "string_to_sign"),
            "string to sign for {:?}",
            c.app_id
        );
        let sdk_params: BTreeMap<String, String> =
            serde_json::from_value::<Vec<(String, String)>>(answer["query"].clone())
                .expect("SDK query pairs")
                .into_iter()
                .collect();
        let our_params = decode_query(&ours.query).expect("our query decodes");
        assert_eq!(
            our_params, sdk_params,
            "every parameter, Signature included, for {:?}",
            c.app_id
        );
        for (name, value) in answer["signed_headers"].as_object().expect("SDK headers") {
            if name.starts_with("x-acs-") {
                assert!(
                    ours.headers
                        .contains(&(name.clone(), value.as_str().unwrap_or_default().to_owned())),
                    "header {name} as the SDK sends it"
                );
            }
        }
    }
}

/// Headers the SDK sends and signs that our builder leaves to the HTTP client (unsigned) or omits.
const SDK_ONLY_HEADERS: &[&str] = &[
    "accept",
    "user-agent",
    "x-acs-credentials-provider",
    "authorization",
];

#[test]
fn v3_canonical_request_and_authorization_match_todays_sdk() {
    let cases = request_cases();
    let hosts = ["rtc.aliyuncs.com", "127.0.0.1:8080"];
    let inputs: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "mode": "v3_request", "host": hosts[i % 2], "access_key_id": AK, "secret": SECRET,
                "security_token": c.token, "nonce": c.nonce, "timestamp": c.timestamp,
                "app_id": c.app_id, "task_id": c.task_id,
            })
        })
        .collect();
    let answers = sdk(&inputs);
    let mut raw_inputs = Vec::new();
    let mut ours_all = Vec::new();
    for (i, (c, answer)) in cases.iter().zip(&answers).enumerate() {
        assert_eq!(s(answer, "method"), "POST");
        assert_eq!(s(answer, "path"), "/");
        let sdk_headers: Vec<(String, String)> = answer["headers"]
            .as_object()
            .expect("SDK headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let sdk_query: BTreeMap<String, String> =
            serde_json::from_value(answer["query"].clone()).expect("SDK query map");
        let sdk_auth = sdk_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.clone())
            .expect("SDK sends Authorization");

        // 1. Our generic signer over exactly the SDK's signed headers gives the SDK's bytes.
        let signed: Vec<(String, String)> = sdk_headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
            .cloned()
            .collect();
        let generic = v3_sign(
            Method::Post,
            "/",
            &sdk_query,
            &signed,
            EMPTY_PAYLOAD_SHA256,
            AK,
            SECRET,
        );
        assert_eq!(
            generic.canonical_request,
            s(answer, "canonical_request"),
            "canonical request for {:?}",
            c.app_id
        );
        assert_eq!(
            generic.authorization, sdk_auth,
            "Authorization for {:?}",
            c.app_id
        );

        // 2. Our builder sends the same query and the same values for every header it signs.
        let call = MpuStatusCall {
            api_version: "2018-01-11",
            app_id: c.app_id,
            task_id: c.task_id,
            region_id: None,
        };
        let creds = SigningKey {
            access_key_id: AK,
            access_key_secret: SECRET,
            security_token: c.token,
        };
        let fresh = Freshness {
            nonce: c.nonce,
            timestamp: ts(c.timestamp),
        };
        let ours = sign_v3(hosts[i % 2], &call, &creds, &fresh);
        assert_eq!(
            decode_query(&ours.query).expect("our query decodes"),
            sdk_query
        );
        let sdk_comparable: BTreeMap<String, String> = sdk_headers
            .iter()
            .filter(|(k, _)| !SDK_ONLY_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let ours_signed: BTreeMap<String, String> = ours
            .headers
            .iter()
            .filter(|(k, _)| k != sign::headers::AUTHORIZATION)
            .cloned()
            .collect();
        assert_eq!(
            ours_signed, sdk_comparable,
            "signed headers for {:?}",
            c.app_id
        );

        // 3. The SDK's own signer over our builder's headers agrees with our Authorization.
        raw_inputs.push(json!({
            "mode": "v3_raw", "method": "POST", "path": "/", "query": sdk_query,
            "headers": ours_signed, "payload_sha256": EMPTY_PAYLOAD_SHA256, "access_key_id": AK, "secret": SECRET,
        }));
        ours_all.push(ours);
    }
    for (ours, answer) in ours_all.iter().zip(sdk(&raw_inputs)) {
        let our_auth = &ours.headers.last().expect("authorization last").1;
        assert_eq!(our_auth, s(&answer, "authorization"));
        let expected_sts = format!(
            "ACS3-HMAC-SHA256\n{}",
            hex_sha256(s(&answer, "canonical_request"))
        );
        assert_eq!(ours.string_to_sign, expected_sts);
    }
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Runs `relay_request.py` on relay cases: the query the official Live SDK builds for each.
fn sdk_relay_queries(cases: &[Value]) -> Vec<BTreeMap<String, String>> {
    serde_json::from_value(run_sdk_script(
        "relay_request.py",
        &Value::Array(cases.to_vec()),
    ))
    .expect("the SDK script prints a JSON list of queries")
}

/// The relays of a manifest, as users write them: every field of both modes, both outputs,
/// fractions with and without a fractional part, text beyond ASCII.
fn manifest_relays() -> Vec<Value> {
    vec![
        json!({"channelId": "lobby", "mixMode": "Single", "streamURL": "rtmp://push.example.com/live/lobby",
               "singleSubParams": {"userId": "host-1", "streamType": 0, "sourceType": "camera"},
               "region": "CN-Shanghai", "maxIdleTime": 600}),
        json!({"channelId": "stage", "mixMode": "Single",
               "streamURL": "rtmps://push.example.com/live/a?auth_key=1-0-0-abc&x=y",
               "singleSubParams": {"userId": "主持人-1", "streamType": 2, "sourceType": "shareScreen"}}),
        json!({"channelId": "mix", "mixMode": "Mixed",
               "multiStreamURL": [{"url": "rtmp://a/x", "isAliCdn": true}, {"url": "rtmp://b/y", "isAliCdn": false}, {"url": "rtmp://c/z"}],
               "transcodeParams": {
                   "layout": {"userPanes": [
                       {"left": 0.0, "top": 0.0, "width": 0.5, "height": 1.0, "zOrder": 0, "renderMode": 0,
                        "userInfo": {"userId": "host-1", "sourceType": "camera"}},
                       {"left": 0.5, "top": 0.25, "width": 0.5, "height": 0.75, "zOrder": 1, "renderMode": 2,
                        "backgroundImageUrl": "https://img.example.com/p.png",
                        "userInfo": {"userId": "guest-2", "channelId": "other", "sourceType": "shareScreen"}}
                   ]},
                   "encodeParams": {"videoWidth": 1280, "videoHeight": 720, "videoFramerate": 25,
                                    "videoBitrate": 1500, "videoGop": 50, "videoCodec": "H.264",
                                    "audioSampleRate": 48000, "audioBitrate": 64, "audioChannels": 2,
                                    "audioOnly": false, "enhancedParam": "{\"profile\":\"main\"}"},
                   "background": {"url": "https://img.example.com/bg.png", "renderMode": 1},
                   "userInfos": [{"userId": "host-1", "streamType": 0, "sourceType": "camera"},
                                 {"userId": "guest-2", "channelId": "other"}]
               },
               "region": "AP-Singapore", "maxIdleTime": 86400}),
        json!({"channelId": "audio", "mixMode": "Mixed", "streamURL": "rtmp://x/audio",
               "transcodeParams": {"encodeParams": {"audioOnly": true}}}),
    ]
}

/// A managed task's Start and Update carry exactly the query the official Live SDK's model
/// builds for the same relay (single and mixed, every block), so the cloud cannot tell the
/// operator from the SDK.
#[test]
fn managed_relay_requests_are_the_official_sdks_for_the_same_manifest() {
    use mpu_relay_operator::api::RelaySpec;
    use mpu_relay_operator::cloud::relay::Relay;
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (i, relay) in manifest_relays().into_iter().enumerate() {
        let spec: RelaySpec = serde_json::from_value(relay.clone()).expect("a manifest's relay");
        let task_id = format!("relay-{i}");
        let built = Relay::from_spec("demo-app", &task_id, &spec);
        for (action, params) in [
            ("start", built.start_params()),
            ("update", built.update_params()),
        ] {
            cases.push(
                json!({"action": action, "appId": "demo-app", "taskId": task_id, "relay": relay}),
            );
            ours.push(
                params
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<BTreeMap<_, _>>(),
            );
        }
    }
    let sdk = sdk_relay_queries(&cases);
    for ((case, ours), sdk) in cases.iter().zip(&ours).zip(&sdk) {
        assert_eq!(ours, sdk, "{case}");
    }
    assert_eq!(sdk.len(), 8);
}
