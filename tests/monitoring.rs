//! The chart's monitoring, checked with the ecosystem's own tools: the PrometheusRule by
//! Prometheus' `promtool` (`check rules`, and `test rules` with tests/promtool/alerts.test.yaml,
//! which fires every alert from synthetic series and keeps each quiet when all is well), the
//! Grafana dashboard as JSON, and every metric name either uses against a real scrape of the
//! operator's `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, PostParams};
use mpu_cloud_sim::{AccountConfig, Simulator, SimulatorConfig, TaskConfig};
use mpu_relay_operator::api::MpuRelayTask;
use serde_json::Value;
use support::controlplane::repo_root;
use support::operator::{FAST_POLLING, Operator};

const CHART: &str = "charts/mpu-relay-operator";
/// The release the rules are rendered for; tests/promtool/alerts.test.yaml's series carry the
/// labels its ServiceMonitor would give them (job="<release>-metrics", namespace).
const RELEASE: &str = "mpu-relay-operator";
const NAMESPACE: &str = "mpu-relay-system";

/// Metric names the rules or the dashboard may use before the operator exports them (none now).
/// The scrape test accepts their absence, and says when one appears so it can be removed here.
const PENDING_METRICS: &[&str] = &[];

/// Builds (once, cached) a tool of tests/tools/build.sh; fails the test when it cannot.
fn tool(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/tools/build.sh"))
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/tools/build.sh");
    assert!(
        out.status.success(),
        "tests/tools/build.sh {name} failed; see the lines above"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `helm template` of the chart with `sets`, as YAML documents parsed to JSON.
fn render(sets: &[&str]) -> Vec<Value> {
    let helm = support::controlplane::binaries()
        .expect("the control-plane binaries (helm) build")
        .join("helm");
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(helm);
    cmd.current_dir(repo_root())
        .args(["template", RELEASE, CHART, "-n", NAMESPACE])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"));
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = run(&mut cmd).unwrap_or_else(|e| panic!("helm template {sets:?}:\n{e}"));
    out.split("\n---")
        .filter(|d| d.contains("kind:"))
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("helm renders YAML"))
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The rendered PrometheusRule's `spec`: a Prometheus rule file.
fn rule_file() -> Value {
    let objects = render(&["prometheusRule.enabled=true"]);
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    rules[0]["spec"].clone()
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect()
}

/// Writes the rule file and the unit tests side by side in a temporary directory.
fn promtool_dir() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let rules = rule_file();
    std::fs::write(
        dir.path().join("rules.json"),
        serde_json::to_string_pretty(&rules).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("tests/promtool/alerts.test.yaml"),
        dir.path().join("alerts.test.yaml"),
    )
    .unwrap();
    (dir, rules)
}

#[test]
fn promtool_check_rules_accepts_the_rendered_prometheus_rule() {
    let promtool = tool("promtool");
    let (dir, rules) = promtool_dir();
    let out =
        run(Command::new(&promtool)
            .current_dir(dir.path())
            .args(["check", "rules", "rules.json"]))
        .unwrap_or_else(|e| panic!("promtool check rules:\n{e}"));
    println!("{out}");
    let count = alert_names(&rules).len();
    assert!(count >= 4, "{rules}");
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

#[test]
fn promtool_unit_tests_fire_every_alert_and_keep_it_quiet_when_healthy() {
    let promtool = tool("promtool");
    let (dir, rules) = promtool_dir();
    // Every alert has a test where it fires and one where it stays quiet.
    let tests = std::fs::read_to_string(dir.path().join("alerts.test.yaml")).unwrap();
    let tests: Value = serde_saphyr::from_str(&tests).unwrap();
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for check in test["alert_rule_test"].as_array().unwrap() {
            let name = check["alertname"].as_str().unwrap().to_string();
            match check["exp_alerts"].as_array() {
                Some(alerts) if !alerts.is_empty() => fired.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let alerts = alert_names(&rules);
    assert_eq!(fired, alerts, "an alert no unit test fires");
    assert_eq!(quiet, alerts, "an alert no unit test keeps quiet");

    let out = run(Command::new(&promtool).current_dir(dir.path()).args([
        "test",
        "rules",
        "alerts.test.yaml",
    ]))
    .unwrap_or_else(|e| panic!("promtool test rules:\n{e}"));
    println!("{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The dashboard's JSON as the chart ships it in the ConfigMap.
fn dashboard() -> Value {
    let objects = render(&["grafanaDashboard.enabled=true"]);
    let maps: Vec<_> = of_kind(&objects, "ConfigMap")
        .into_iter()
        .filter(|m| m["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(
        maps.len(),
        1,
        "one ConfigMap labelled grafana_dashboard: \"1\""
    );
    let data = maps[0]["data"].as_object().unwrap();
    assert_eq!(data.len(), 1);
    let (key, json) = data.iter().next().unwrap();
    assert!(key.ends_with(".json"), "{key}");
    let rendered: Value = serde_json::from_str(json.as_str().unwrap())
        .unwrap_or_else(|e| panic!("the dashboard in the ConfigMap is not JSON: {e}"));
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root()
                .join(CHART)
                .join("dashboards/mpu-relay-operator.json"),
        )
        .unwrap(),
    )
    .expect("dashboards/mpu-relay-operator.json is JSON");
    assert_eq!(rendered, file, "the ConfigMap holds the dashboard file");
    rendered
}

/// Every PromQL expression of the dashboard: panel targets and template variable queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            queries.push(q.to_string());
        }
    }
    queries
}

#[test]
fn grafana_dashboard_is_off_by_default_and_valid_json_with_the_promised_panels() {
    let default = render(&[]);
    assert!(
        of_kind(&default, "ConfigMap").is_empty(),
        "no dashboard unless grafanaDashboard.enabled"
    );
    let dashboard = dashboard();
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Relays by phase",
        "Budget use per account",
        "Throttled calls",
        "Cloud call latency",
        "Staleness: oldest last sync",
        "Reconcile errors",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "panel ids are unique"
        );
        assert!(panel["gridPos"]["w"].as_i64().unwrap() > 0);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
    }
    for query in dashboard_queries(&dashboard) {
        assert!(query.contains("mpu_relay_"), "{query}");
    }
    assert_eq!(dashboard["uid"], "mpu-relay-operator");
}

/// Every metric name the rendered PrometheusRule and the dashboard use, with which one.
fn used_metric_names() -> BTreeSet<(String, &'static str)> {
    let mut used = BTreeSet::new();
    for name in metric_names(&rule_file().to_string()) {
        used.insert((name, "PrometheusRule"));
    }
    for query in dashboard_queries(&dashboard()) {
        for name in metric_names(&query) {
            used.insert((name, "dashboard"));
        }
    }
    used
}

/// The `mpu_relay_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("mpu_relay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every series name an OpenMetrics exposition can hold, from its `# TYPE` lines (families
/// without samples yet are listed too) and its samples.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

const AK: &str = "LTAI5tMetricNames";
const SK: &str = "metric-names-secret-7c1f";

/// A ValidatingAdmissionPolicy that refuses status writes of the tasks labelled
/// `metrics-test/refuse-status` in one namespace: the API server refusing the operator's writes
/// is what `mpu_relay_reconcile_errors_total` counts.
fn refuse_status_writes(cp: &support::controlplane::ControlPlane, ns: &str) {
    let policy = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: refuse-status-{ns}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["mpurelay.io"]
      apiVersions: ["*"]
      operations: ["CREATE", "UPDATE"]
      resources: ["mpurelaytasks/status"]
  validations:
  - expression: "!has(object.metadata.labels) || !('metrics-test/refuse-status' in object.metadata.labels)"
    message: status writes of this task are refused by the metrics test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: refuse-status-{ns}}}
spec:
  policyName: refuse-status-{ns}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
"#
    );
    let mut child = cp
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(policy.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "applying the admission policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn integration_every_metric_of_the_rules_and_the_dashboard_is_exported() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "metric-names").await;
    // A cloud that answers, throttles a few calls, and an API server that refuses one task's
    // status writes: every family of the operator gets a sample.
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![AccountConfig {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            qps: Some(10),
        }],
        tasks: vec![
            TaskConfig {
                app_id: "app".into(),
                task_id: "t1".into(),
                status: 1,
            },
            TaskConfig {
                app_id: "app".into(),
                task_id: "t2".into(),
                status: 5,
            },
        ],
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    sim.add_fault(
        serde_json::from_value(serde_json::json!({"kind": "throttle", "count": 3})).unwrap(),
    )
    .unwrap();
    refuse_status_writes(cp, &ns);
    support::accounts::secret(&client, &ns, "ak", AK, SK).await;
    support::accounts::account(
        &client,
        &ns,
        "ak",
        &sim.base_url(),
        "ak",
        serde_json::json!({}),
    )
    .await;
    let operator = Operator::with_simulator(cp, &ns, &sim, FAST_POLLING, &[]);
    let api: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    for (name, task, refuse) in [("polled", "t1", false), ("refused", "t2", true)] {
        // The task calls the simulator through the account `ak`.
        let labels = if refuse {
            serde_json::json!({"metrics-test/refuse-status": "true"})
        } else {
            serde_json::json!({})
        };
        let task: MpuRelayTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": name, "labels": labels},
            "spec": {"appId": "app", "taskId": task, "accountRef": {"name": "ak"}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &task).await.unwrap();
    }

    let used = used_metric_names();
    let wanted: Vec<&String> = used
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !PENDING_METRICS.contains(&name.as_str()))
        .collect();
    let mut exposition = String::new();
    for _ in 0..600 {
        exposition = operator.try_metrics().await.unwrap_or_default();
        let exported = exported_names(&exposition);
        if wanted.iter().all(|name| exported.contains(*name)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exposition.contains("# EOF"),
        "no /metrics from the operator:\n{}",
        operator.output()
    );
    let exported = exported_names(&exposition);

    assert!(used.len() >= 8, "{used:?}");
    let mut missing = Vec::new();
    for (name, by) in &used {
        let present = exported.contains(name);
        if PENDING_METRICS.contains(&name.as_str()) {
            if present {
                println!("{name} is exported now: remove it from PENDING_METRICS");
            } else {
                println!("pending: {name} ({by}) is not exported yet");
            }
        } else if !present {
            missing.push(format!("{name} (used by the {by})"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in the operator's /metrics: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"sum(rate(mpu_relay_reconciles_total{job="x"}[5m])) and mpu_relay_tasks > 0"#
        ),
        BTreeSet::from([
            "mpu_relay_reconciles_total".to_string(),
            "mpu_relay_tasks".to_string()
        ])
    );
    let exposition = "# TYPE mpu_relay_reconciles counter\n# TYPE mpu_relay_d histogram\nmpu_relay_tasks{phase=\"Running\"} 1\n# EOF\n";
    let names = exported_names(exposition);
    for name in [
        "mpu_relay_reconciles_total",
        "mpu_relay_d_bucket",
        "mpu_relay_tasks",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    assert!(Path::new(&repo_root().join(CHART)).is_dir());
}
