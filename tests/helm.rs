//! The Helm chart against the real kube-apiserver: it lints, every documented value set renders
//! objects the server accepts, it installs and uninstalls cleanly, its RBAC is exactly what the
//! operator needs (the operator reconciles with nothing more, and can do nothing else), bad
//! values fail with the schema's message, and the README's install section works as written.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, PostParams};
use mpu_cloud_sim::{AccountConfig, Simulator, SimulatorConfig, TaskConfig};
use mpu_relay_operator::api::{ClusterMpuRelayAccount, MpuRelayTask, conditions};
use serde_json::{Value, json};
use support::controlplane::{ControlPlane, repo_root};
use support::operator::{Operator, eventually};

const CHART: &str = "charts/mpu-relay-operator";

/// Tests that use the fixed namespaces of the examples and the README (`relay-team-a`,
/// `relay-team-b`, `mpu-relay-system`) take turns, so one never finds the other's half-made
/// namespace.
static FIXED_NAMESPACES: Mutex<()> = Mutex::new(());

/// Runs `cmd` with `stdin`; stdout on success, else stdout and stderr.
fn run(mut cmd: Command, stdin: Option<&str>) -> Result<String, String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr).into_owned()
        ))
    }
}

/// Keeps Helm's caches and config out of the user's home.
fn helm_homes(cp: &ControlPlane) -> [(&'static str, PathBuf); 3] {
    let home = cp.dir.join("helm-home");
    [
        ("HELM_CACHE_HOME", home.join("cache")),
        ("HELM_CONFIG_HOME", home.join("config")),
        ("HELM_DATA_HOME", home.join("data")),
    ]
}

/// Helm pointed at the control plane.
fn helm_cmd(cp: &ControlPlane) -> Command {
    let mut cmd = Command::new(cp.bin_dir.join("helm"));
    cmd.current_dir(repo_root())
        .env("KUBECONFIG", &cp.kubeconfig)
        .envs(helm_homes(cp));
    cmd
}

fn helm(cp: &ControlPlane, args: &[&str]) -> Result<String, String> {
    let mut cmd = helm_cmd(cp);
    cmd.args(args);
    run(cmd, None)
}

fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = cp.kubectl();
    cmd.current_dir(repo_root()).args(args);
    run(cmd, stdin)
}

fn ok(result: Result<String, String>, what: &str) -> String {
    result.unwrap_or_else(|e| panic!("{what} failed:\n{e}"))
}

/// Stand-ins for prometheus-operator's ServiceMonitor and PrometheusRule CRDs (the real ones
/// are not part of this repository): the group, versions, kinds and the shape of the fields the
/// chart sets, so that a typo there is still refused by the API server.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [selector, endpoints]
            properties:
              selector:
                type: object
                properties:
                  matchLabels: {type: object, additionalProperties: {type: string}}
              namespaceSelector:
                type: object
                properties:
                  matchNames: {type: array, items: {type: string}}
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {type: string}
                    path: {type: string}
                    interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                    scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule, listKind: PrometheusRuleList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              groups:
                type: array
                items:
                  type: object
                  required: [name, rules]
                  properties:
                    name: {type: string, minLength: 1}
                    rules:
                      type: array
                      items:
                        type: object
                        required: [expr]
                        properties:
                          alert: {type: string}
                          record: {type: string}
                          expr: {x-kubernetes-int-or-string: true}
                          for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                          labels: {type: object, additionalProperties: {type: string}}
                          annotations: {type: object, additionalProperties: {type: string}}
"#;

fn install_monitoring_crds(cp: &ControlPlane) {
    ok(
        kubectl(
            cp,
            &["apply", "--server-side", "-f", "-"],
            Some(MONITORING_CRDS),
        ),
        "applying the monitoring CRDs",
    );
    ok(
        kubectl(
            cp,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ],
            None,
        ),
        "waiting for the monitoring CRDs",
    );
}

/// Creates `name` unless it exists.
fn ensure_namespace(cp: &ControlPlane, name: &str) {
    if let Err(e) = kubectl(cp, &["create", "namespace", name], None)
        && !e.contains("AlreadyExists")
    {
        panic!("creating namespace {name}: {e}");
    }
}

/// The chart's default full name for a release.
fn fullname(release: &str) -> String {
    if release.contains("mpu-relay-operator") {
        release.to_string()
    } else {
        format!("{release}-mpu-relay-operator")
    }
}

/// The documented value sets: the files under examples/ that the README points at.
const VALUE_SETS: &[(&str, &[&str])] = &[
    ("default", &[]),
    (
        "namespace-scoped",
        &["examples/namespace-scoped/values.yaml"],
    ),
    (
        "high-availability",
        &["examples/values/high-availability.yaml"],
    ),
    ("access-key", &["examples/values/access-key.yaml"]),
    ("events", &["examples/values/events.yaml"]),
    ("rrsa", &["examples/values/rrsa.yaml"]),
    (
        "private-endpoint",
        &["examples/values/private-endpoint.yaml"],
    ),
    (
        "all-together",
        &[
            "examples/values/high-availability.yaml",
            "examples/namespace-scoped/values.yaml",
            "examples/values/rrsa.yaml",
            "examples/values/private-endpoint.yaml",
            "examples/values/events.yaml",
        ],
    ),
];

fn value_args(files: &[&str]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["-f".to_string(), f.to_string()])
        .collect()
}

#[test]
fn chart_passes_helm_lint_strict_with_every_documented_value_set() {
    let bin = support::controlplane::binaries().expect("the control-plane binaries build");
    for (name, files) in VALUE_SETS {
        let mut cmd = Command::new(bin.join("helm"));
        cmd.current_dir(repo_root())
            .args(["lint", "--strict", CHART])
            .args(value_args(files));
        let out = run(cmd, None).unwrap_or_else(|e| panic!("helm lint ({name}) failed:\n{e}"));
        assert!(out.contains("0 chart(s) failed"), "{name}: {out}");
    }
}

/// Objects as the API server returned them from a server-side dry run.
fn dry_run(cp: &ControlPlane, manifests: &str) -> Vec<Value> {
    let out = ok(
        kubectl(
            cp,
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(manifests),
        ),
        "kubectl apply --dry-run=server",
    );
    let v: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    match v["kind"].as_str() {
        Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![v],
    }
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn env_of(deployment: &Value) -> Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn env_value(deployment: &Value, name: &str) -> Option<String> {
    env_of(deployment)
        .into_iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(String::from))
}

#[tokio::test]
async fn integration_every_documented_value_set_renders_objects_the_api_server_accepts() {
    let cp = support::shared();
    let client = cp.client().await;
    install_monitoring_crds(cp);
    {
        let _fixed = FIXED_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
        ensure_namespace(cp, "relay-team-a");
        ensure_namespace(cp, "relay-team-b");
    }
    let ns = support::test_namespace(&client, "dry-run").await;
    let release = "dry";
    for (name, files) in VALUE_SETS {
        let mut args = vec!["template", release, CHART, "-n", &ns];
        let extra = value_args(files);
        args.extend(extra.iter().map(String::as_str));
        let manifests = helm(cp, &args).unwrap_or_else(|e| panic!("helm template ({name}):\n{e}"));
        let objects = dry_run(cp, &manifests);
        let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        let documents = manifests
            .split("\n---")
            .filter(|d| d.contains("kind:"))
            .count();
        assert_eq!(
            objects.len(),
            documents,
            "{name}: the server returned fewer objects than were rendered: {kinds:?}"
        );

        let deployments = find(&objects, "Deployment");
        assert_eq!(deployments.len(), 1, "{name}");
        let d = deployments[0];
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        let pod_name = env_of(d)
            .into_iter()
            .find(|e| e["name"] == "POD_NAME")
            .expect("POD_NAME is set");
        assert_eq!(
            pod_name["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );

        let replicas = d["spec"]["replicas"].as_i64().unwrap();
        let leader = env_value(d, "MPU_RELAY_LEADER_ELECTION");
        assert_eq!(
            find(&objects, "PodDisruptionBudget").len(),
            usize::from(replicas > 1),
            "{name}: a PDB exactly when replicas > 1"
        );
        if replicas > 1 {
            assert_eq!(leader.as_deref(), Some("true"), "{name}");
        }
        let lease_roles: Vec<_> = find(&objects, "Role")
            .into_iter()
            .filter(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with("leader-election")
            })
            .collect();
        assert_eq!(
            lease_roles.len(),
            usize::from(leader.as_deref() == Some("true")),
            "{name}: a Lease Role exactly when leader election is on"
        );
        for role in lease_roles {
            assert_eq!(role["metadata"]["namespace"], ns.as_str(), "{name}");
        }
        // Never two operators at once: without leader election the old pod stops first.
        let strategy = &d["spec"]["strategy"];
        if leader.as_deref() == Some("true") {
            assert_eq!(strategy["type"], "RollingUpdate", "{name}");
            assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0, "{name}");
        } else {
            assert_eq!(strategy["type"], "Recreate", "{name}: {strategy}");
        }

        // The account settings reach the operator.
        let env = env_of(d);
        let field_ref = |var: &str| {
            env.iter()
                .find(|e| e["name"] == var)
                .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
        };
        assert_eq!(
            field_ref("MPU_RELAY_OPERATOR_NAMESPACE"),
            Some(json!("metadata.namespace")),
            "{name}"
        );
        let allowed = if files.contains(&"examples/values/private-endpoint.yaml") {
            "https://*.aliyuncs.com,https://live-proxy.corp.example:8443"
        } else {
            "https://*.aliyuncs.com"
        };
        assert_eq!(
            env_value(d, "MPU_RELAY_ALLOWED_ENDPOINTS").as_deref(),
            Some(allowed),
            "{name}"
        );
        for gone in [
            "MPU_RELAY_QPS",
            "MPU_RELAY_QPS_MARGIN",
            "MPU_RELAY_SIGNATURE",
        ] {
            assert!(!env.iter().any(|e| e["name"] == gone), "{name}: {gone}");
        }

        let scoped = files.contains(&"examples/namespace-scoped/values.yaml");
        assert_eq!(
            env_value(d, "MPU_RELAY_NAMESPACED_ACCOUNTS").as_deref(),
            Some(if scoped { "true" } else { "false" }),
            "{name}: the namespace-scoped example lets teams keep their own accounts"
        );
        let roles_named = |suffix: &str| -> BTreeSet<&str> {
            find(&objects, "Role")
                .into_iter()
                .filter(|r| r["metadata"]["name"] == format!("dry-mpu-relay-operator{suffix}"))
                .filter_map(|r| r["metadata"]["namespace"].as_str())
                .collect()
        };
        // Secrets of cluster accounts: the release namespace only, `get` only.
        assert_eq!(
            roles_named("-account-secrets"),
            BTreeSet::from([ns.as_str()]),
            "{name}"
        );
        // Secrets are read one by one, never listed or watched; only the ownership key's
        // Role may create one (its own, in the release namespace).
        for role in find(&objects, "Role") {
            let ownership = role["metadata"]["name"] == "dry-mpu-relay-operator-ownership";
            for rule in role["rules"].as_array().unwrap() {
                if rule["resources"] == json!(["secrets"]) {
                    let allowed = if ownership && rule["resourceNames"].is_null() {
                        json!(["create"])
                    } else {
                        json!(["get"])
                    };
                    assert_eq!(rule["verbs"], allowed, "{name}: {role}");
                }
            }
        }
        assert_eq!(
            roles_named("-ownership"),
            BTreeSet::from([ns.as_str()]),
            "{name}"
        );
        // One ClusterRole for the operator, always; two aggregated into the default roles.
        let cluster_roles: BTreeSet<&str> = find(&objects, "ClusterRole")
            .into_iter()
            .filter_map(|r| r["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            cluster_roles,
            BTreeSet::from([
                "dry-mpu-relay-operator",
                "dry-mpu-relay-operator-edit",
                "dry-mpu-relay-operator-view",
            ]),
            "{name}"
        );
        let operator_role = find(&objects, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "dry-mpu-relay-operator")
            .unwrap();
        let cluster_wide: BTreeSet<String> = operator_role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        if scoped {
            assert_eq!(
                roles_named(""),
                BTreeSet::from(["relay-team-a", "relay-team-b"]),
                "{name}"
            );
            assert_eq!(
                env_value(d, "MPU_RELAY_NAMESPACES").as_deref(),
                Some("relay-team-a,relay-team-b")
            );
            // Tasks, accounts and their Secrets only in the watched namespaces.
            for resource in ["mpurelaytasks", "mpurelayaccounts", "secrets"] {
                assert!(!cluster_wide.contains(resource), "{name}: {resource}");
            }
        } else {
            assert!(roles_named("").is_empty(), "{name}");
            assert!(cluster_wide.contains("mpurelaytasks"), "{name}");
            assert!(
                !cluster_wide.contains("secrets"),
                "{name}: {cluster_wide:?}"
            );
        }

        // The operator's own credentials reach tasks only through the account the chart creates.
        let accounts = find(&objects, "ClusterMpuRelayAccount");
        let own_credentials = files.contains(&"examples/values/access-key.yaml")
            || files.contains(&"examples/values/rrsa.yaml");
        assert_eq!(accounts.len(), usize::from(own_credentials), "{name}");
        if let Some(account) = accounts.first() {
            assert_eq!(account["metadata"]["name"], "dry-mpu-relay-operator");
            assert_eq!(account["spec"]["credentials"], json!({"operator": {}}));
            assert_eq!(
                account["spec"]["conditions"],
                json!([{"namespaceSelector": {"matchLabels": {"mpurelay.io/tenant": "true"}}}]),
                "{name}"
            );
            assert_eq!(account["spec"]["qps"], 10, "{name}");
        }

        if files.contains(&"examples/values/rrsa.yaml") {
            let volume = &pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
            assert_eq!(volume["audience"], "sts.aliyuncs.com", "{name}");
            assert!(
                env_value(d, "ALIBABA_CLOUD_ROLE_ARN").is_some_and(|v| v.starts_with("acs:ram::")),
                "{name}"
            );
            assert!(env_value(d, "ALIBABA_CLOUD_OIDC_TOKEN_FILE").is_some());
        }
        let ca_volume = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "ca-bundle"));
        if files.contains(&"examples/values/private-endpoint.yaml") {
            // Only the bundle's key is mounted, read-only, where --ca-bundle points.
            let volume = ca_volume.expect("a ca-bundle volume");
            assert_eq!(
                volume["configMap"],
                json!({"name": "private-ca", "defaultMode": 0o444,
                       "items": [{"key": "ca.crt", "path": "ca-bundle.crt"}]}),
                "{name}"
            );
            let mount = pod["containers"][0]["volumeMounts"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == "ca-bundle"))
                .expect("the ca-bundle volume is mounted");
            assert_eq!(mount["readOnly"], true, "{name}");
            assert_eq!(
                env_value(d, "MPU_RELAY_CA_BUNDLE"),
                Some(format!(
                    "{}/ca-bundle.crt",
                    mount["mountPath"].as_str().unwrap()
                )),
                "{name}"
            );
        } else {
            assert!(ca_volume.is_none(), "{name}");
            assert_eq!(env_value(d, "MPU_RELAY_CA_BUNDLE"), None, "{name}");
        }
        let services: Vec<&str> = find(&objects, "Service")
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        let events_service = services.iter().any(|s| s.ends_with("-events"));
        if files.contains(&"examples/values/events.yaml") {
            // Its own port, Service and Ingress; HTTPS with the mounted Secret's files.
            assert_eq!(
                env_value(d, "MPU_RELAY_EVENTS_BIND_ADDRESS").as_deref(),
                Some("0.0.0.0:9443"),
                "{name}"
            );
            assert_eq!(
                env_value(d, "MPU_RELAY_EVENTS_TLS_CERT").as_deref(),
                Some("/etc/mpu-relay/events-tls/tls.crt"),
                "{name}"
            );
            assert!(events_service, "{name}: {services:?}");
            assert_eq!(find(&objects, "Ingress").len(), 1, "{name}");
        } else {
            assert_eq!(
                env_value(d, "MPU_RELAY_EVENTS_BIND_ADDRESS"),
                None,
                "{name}"
            );
            assert!(!events_service, "{name}: {services:?}");
            assert!(find(&objects, "Ingress").is_empty(), "{name}");
        }
        if files.contains(&"examples/values/access-key.yaml") {
            let id = env_of(d)
                .into_iter()
                .find(|e| e["name"] == "ALIBABA_CLOUD_ACCESS_KEY_ID")
                .expect("the AccessKey comes from the Secret");
            assert_eq!(
                id["valueFrom"]["secretKeyRef"]["name"],
                "alibaba-cloud-credentials"
            );
        }
        if files.contains(&"examples/values/high-availability.yaml") {
            assert_eq!(find(&objects, "ServiceMonitor").len(), 1, "{name}");
            let rule = find(&objects, "PrometheusRule");
            let text = rule[0]["spec"].to_string();
            for expr in [
                r#"phase=~\"CdnError|StreamUrlError|ChannelStopped|Stopped\"}) > 0"#,
                "rate(mpu_relay_cloud_throttled_total{",
                "rate(mpu_relay_reconciles_total{",
                "absent(mpu_relay_reconciles_total{",
            ] {
                assert!(text.contains(expr), "{name}: no {expr} in {text}");
            }
        }
        let metrics = find(&objects, "Service")
            .into_iter()
            .find(|s| {
                s["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-metrics"))
            })
            .expect("the metrics Service");
        assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics", "{name}");
    }
}

/// Everything listable left in `ns`, as `kind/name`.
fn leftovers(cp: &ControlPlane, ns: &str) -> Vec<String> {
    let types = ok(
        kubectl(
            cp,
            &[
                "api-resources",
                "--verbs=list",
                "--namespaced",
                "-o",
                "name",
            ],
            None,
        ),
        "kubectl api-resources",
    );
    // Events are records of what happened, not objects anyone installed: the API server's own
    // repair of Service IPs may write one about a Service just deleted (seen once:
    // `event/mpu-relay-operator-metrics.<id>` after the uninstall), and they expire on their own.
    let types: Vec<&str> = types
        .lines()
        .filter(|l| !l.is_empty() && !matches!(*l, "events" | "events.events.k8s.io"))
        .collect();
    let out = ok(
        kubectl(cp, &["get", &types.join(","), "-n", ns, "-o", "name"], None),
        "listing the namespace",
    );
    out.lines().map(String::from).collect()
}

fn cluster_leftovers(cp: &ControlPlane, release: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let out = ok(
        kubectl(
            cp,
            &[
                "get",
                "clusterroles,clusterrolebindings",
                "-l",
                &selector,
                "-o",
                "name",
            ],
            None,
        ),
        "listing cluster-scoped objects",
    );
    out.lines().map(String::from).collect()
}

/// The rules `--as` has in `ns`, from `kubectl auth can-i --list`, without the ones every
/// authenticated user has (self reviews, discovery).
fn granted(cp: &ControlPlane, as_user: &str, ns: &str) -> BTreeSet<String> {
    let out = ok(
        kubectl(
            cp,
            &[
                "auth",
                "can-i",
                "--list",
                "-n",
                ns,
                &format!("--as={as_user}"),
            ],
            None,
        ),
        "kubectl auth can-i --list",
    );
    out.lines()
        .skip(1)
        .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .filter(|l| !l.starts_with("selfsubject"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .map(|l| sorted_verbs(&l))
        .collect()
}

/// A `can-i --list` line with its verbs in alphabetical order: kubectl merges the verbs of
/// rules on one resource in whatever order it met the rules.
fn sorted_verbs(line: &str) -> String {
    let Some(open) = line.rfind('[') else {
        return line.to_owned();
    };
    let mut verbs: Vec<&str> = line[open + 1..].trim_end_matches(']').split(' ').collect();
    verbs.sort_unstable();
    format!("{}[{}]", &line[..open], verbs.join(" "))
}

fn can_i(cp: &ControlPlane, as_user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let as_arg = format!("--as={as_user}");
    all.push(&as_arg);
    match kubectl(cp, &all, None) {
        Ok(out) => out.trim() == "yes",
        Err(out) if out.trim_start().starts_with("no") => false,
        Err(e) => panic!("kubectl auth can-i {args:?}: {e}"),
    }
}

fn rules(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

/// The rules the operator has in every namespace, whichever it watches, as `kubectl auth can-i
/// --list` prints them: cluster accounts, namespace labels, Events.
fn cluster_rules() -> BTreeSet<String> {
    rules(&[
        "clustermpurelayaccounts.mpurelay.io [] [] [get list watch]",
        "clustermpurelayaccounts.mpurelay.io/status [] [] [patch]",
        "namespaces [] [] [get list watch]",
        "events.events.k8s.io [] [] [create patch]",
    ])
}

/// The rules of one watched scope: tasks, and with namespaced accounts those and `get` on the
/// Secrets they name. Never list or watch Secrets.
fn watch_rules(namespaced_accounts: bool) -> BTreeSet<String> {
    let mut r = rules(&[
        "mpurelaytasks.mpurelay.io [] [] [get list patch watch]",
        "mpurelaytasks.mpurelay.io/status [] [] [patch]",
    ]);
    if namespaced_accounts {
        r.extend(rules(&[
            "mpurelayaccounts.mpurelay.io [] [] [get list watch]",
            "mpurelayaccounts.mpurelay.io/status [] [] [patch]",
            "secrets [] [] [get]",
        ]));
    }
    r
}

fn union(sets: &[&BTreeSet<String>]) -> BTreeSet<String> {
    sets.iter().flat_map(|s| s.iter().cloned()).collect()
}

/// The Secrets of the release namespace: `get` for cluster accounts' credentials, and the
/// ownership key's Secret created once, then read by name (`kubectl auth can-i --list` merges
/// the verbs of the first two rules).
fn home_secret_rules(release: &str) -> BTreeSet<String> {
    rules(&[
        "secrets [] [] [create get]",
        &format!("secrets [] [{}-ownership] [get]", fullname(release)),
    ])
}

fn lease_rules(lease: &str) -> BTreeSet<String> {
    rules(&[
        "leases.coordination.k8s.io [] [] [create]",
        &format!("leases.coordination.k8s.io [] [{lease}] [get patch update]"),
    ])
}

/// Whether `as_user` may get, list and watch Secrets in `ns` (`None`: cluster-wide).
fn secret_access(cp: &ControlPlane, as_user: &str, ns: Option<&str>) -> [bool; 3] {
    ["get", "list", "watch"].map(|verb| {
        let mut args = vec![verb, "secrets"];
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        can_i(cp, as_user, &args)
    })
}

const GET_ONLY: [bool; 3] = [true, false, false];
const NOTHING: [bool; 3] = [false, false, false];

#[tokio::test]
async fn integration_helm_install_then_uninstall_leaves_only_the_crd() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "install-uninstall").await;
    let other = support::test_namespace(&client, "install-uninstall-other").await;
    let release = "roundtrip";
    let out = ok(
        helm(
            cp,
            &[
                "install",
                release,
                CHART,
                "-n",
                &ns,
                "--set",
                "replicaCount=2",
            ],
        ),
        "helm install",
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("leader election through Lease"),
        "NOTES: {out}"
    );
    let installed = leftovers(cp, &ns);
    for expected in [
        format!("deployment.apps/{}", fullname(release)),
        format!("serviceaccount/{}", fullname(release)),
        format!("service/{}-metrics", fullname(release)),
        format!("poddisruptionbudget.policy/{}", fullname(release)),
        format!(
            "role.rbac.authorization.k8s.io/{}-leader-election",
            fullname(release)
        ),
    ] {
        assert!(installed.contains(&expected), "{expected} in {installed:?}");
    }
    // The operator's ClusterRole and binding, and the two tenant roles.
    assert_eq!(cluster_leftovers(cp, release).len(), 4);
    let deployment: Value = serde_json::from_str(&ok(
        kubectl(
            cp,
            &[
                "get",
                "deployment",
                &fullname(release),
                "-n",
                &ns,
                "-o",
                "json",
            ],
            None,
        ),
        "reading the Deployment",
    ))
    .unwrap();
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");

    // Cluster-wide by default: exactly the watch rules, in any namespace; the Lease and the
    // cluster accounts' Secrets only at home.
    let sa = format!("system:serviceaccount:{ns}:{}", fullname(release));
    let everywhere = union(&[&cluster_rules(), &watch_rules(false)]);
    assert_eq!(granted(cp, &sa, &other), everywhere);
    assert_eq!(
        granted(cp, &sa, &ns),
        union(&[
            &everywhere,
            &lease_rules(&fullname(release)),
            &home_secret_rules(release)
        ])
    );

    ok(
        helm(cp, &["uninstall", release, "-n", &ns]),
        "helm uninstall",
    );
    assert_eq!(leftovers(cp, &ns), Vec::<String>::new());
    assert_eq!(cluster_leftovers(cp, release), Vec::<String>::new());
    ok(
        kubectl(cp, &["get", "crd", "mpurelaytasks.mpurelay.io"], None),
        "the CRD stays",
    );
}

/// Reads a cluster-scoped or namespaced object as JSON.
fn get_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(kubectl(cp, &all, None), "kubectl get")).unwrap()
}

/// Binds the ClusterRole `role` to `user` in `ns`, as a cluster admin hands out a default role.
fn bind(cp: &ControlPlane, ns: &str, role: &str, user: &str) {
    ok(
        kubectl(
            cp,
            &[
                "create",
                "rolebinding",
                &format!("{user}-{role}"),
                "-n",
                ns,
                &format!("--clusterrole={role}"),
                &format!("--user={user}"),
            ],
            None,
        ),
        "binding a tenant role",
    );
}

#[tokio::test]
async fn integration_default_install_gets_secrets_only_at_home_and_never_lists_them() {
    let cp = support::shared();
    let client = cp.client().await;
    let home = support::test_namespace(&client, "default-rbac-home").await;
    let tasks_ns = support::test_namespace(&client, "default-rbac-tasks").await;
    let release = "defaults";
    ok(
        helm(cp, &["install", release, CHART, "-n", &home]),
        "helm install",
    );
    let sa = format!("system:serviceaccount:{home}:{}", fullname(release));

    // Secrets: `get` in the release namespace (the Secrets of cluster accounts), nothing else:
    // no list or watch anywhere, and no read in a namespace whose tasks it watches.
    assert_eq!(secret_access(cp, &sa, None), NOTHING, "cluster-wide");
    assert_eq!(
        secret_access(cp, &sa, Some(&home)),
        GET_ONLY,
        "release namespace"
    );
    assert_eq!(
        secret_access(cp, &sa, Some(&tasks_ns)),
        NOTHING,
        "task namespace"
    );
    assert!(!can_i(
        cp,
        &sa,
        &["get", "mpurelayaccounts.mpurelay.io", "-n", &tasks_ns]
    ));
    let deployment = get_json(cp, &["deployment", &fullname(release), "-n", &home]);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        env_value(&deployment, "MPU_RELAY_NAMESPACED_ACCOUNTS").as_deref(),
        Some("false")
    );

    // Tenants: the aggregated roles carry tasks (not accounts while namespaced accounts are
    // off, never cluster accounts). No controller-manager aggregates here, so the test binds the
    // chart's roles the way admin/edit/view would carry them.
    let edit = format!("{}-edit", fullname(release));
    let view = format!("{}-view", fullname(release));
    let labels = |role: &str| get_json(cp, &["clusterrole", role])["metadata"]["labels"].clone();
    assert_eq!(
        labels(&edit)["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels(&edit)["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    assert_eq!(
        labels(&view)["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert!(labels(&view)["rbac.authorization.k8s.io/aggregate-to-edit"].is_null());
    let editor = format!("editor-{tasks_ns}");
    let viewer = format!("viewer-{tasks_ns}");
    bind(cp, &tasks_ns, &edit, &editor);
    bind(cp, &tasks_ns, &view, &viewer);
    let tenant_matrix = |namespaced_accounts: bool| {
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            let read = matches!(verb, "get" | "list" | "watch");
            for (user, may) in [(&editor, true), (&viewer, read)] {
                assert_eq!(
                    can_i(
                        cp,
                        user,
                        &[verb, "mpurelaytasks.mpurelay.io", "-n", &tasks_ns]
                    ),
                    may,
                    "{user} {verb} tasks"
                );
                assert_eq!(
                    can_i(
                        cp,
                        user,
                        &[verb, "mpurelayaccounts.mpurelay.io", "-n", &tasks_ns]
                    ),
                    may && namespaced_accounts,
                    "{user} {verb} accounts"
                );
                assert!(
                    !can_i(cp, user, &[verb, "clustermpurelayaccounts.mpurelay.io"]),
                    "{user} {verb} cluster accounts"
                );
                assert!(
                    !can_i(cp, user, &[verb, "secrets", "-n", &tasks_ns]),
                    "{user} {verb} secrets"
                );
            }
            assert!(!can_i(
                cp,
                &editor,
                &[
                    verb,
                    "mpurelaytasks.mpurelay.io",
                    "--subresource=status",
                    "-n",
                    &tasks_ns
                ]
            ));
        }
    };
    tenant_matrix(false);

    // Namespaced accounts on, every namespace watched: `get` on Secrets everywhere (the
    // accounts' Secrets are in the tasks' namespaces), still never list or watch.
    ok(
        helm(
            cp,
            &[
                "upgrade",
                release,
                CHART,
                "-n",
                &home,
                "--reuse-values",
                "--set",
                "accounts.namespaced.enabled=true",
            ],
        ),
        "helm upgrade",
    );
    assert_eq!(secret_access(cp, &sa, None), GET_ONLY, "cluster-wide");
    assert_eq!(
        secret_access(cp, &sa, Some(&tasks_ns)),
        GET_ONLY,
        "task namespace"
    );
    assert_eq!(
        granted(cp, &sa, &tasks_ns),
        union(&[&cluster_rules(), &watch_rules(true)])
    );
    tenant_matrix(true);

    ok(
        helm(cp, &["uninstall", release, "-n", &home]),
        "helm uninstall",
    );
    assert_eq!(cluster_leftovers(cp, release), Vec::<String>::new());
}

#[tokio::test]
async fn integration_scoped_service_account_cannot_read_secrets_elsewhere_nor_write_anything_else()
{
    let cp = support::shared();
    let client = cp.client().await;
    let home = support::test_namespace(&client, "scoped-home").await;
    let watched = support::test_namespace(&client, "scoped-watched").await;
    let elsewhere = support::test_namespace(&client, "scoped-elsewhere").await;
    let vault = support::test_namespace(&client, "scoped-vault").await;
    let release = "scoped";
    let set = format!("watchNamespaces={{{watched}}}");
    ok(
        helm(
            cp,
            &[
                "install",
                release,
                CHART,
                "-n",
                &home,
                "--set",
                &set,
                "--set",
                "leaderElection.enabled=true",
            ],
        ),
        "helm install",
    );
    let sa = format!("system:serviceaccount:{home}:{}", fullname(release));
    let lease = fullname(release);

    // The whole grant, per namespace: nothing beyond the list.
    assert_eq!(
        granted(cp, &sa, &watched),
        union(&[&cluster_rules(), &watch_rules(false)])
    );
    assert_eq!(
        granted(cp, &sa, &home),
        union(&[
            &cluster_rules(),
            &lease_rules(&lease),
            &home_secret_rules(release)
        ])
    );
    assert_eq!(granted(cp, &sa, &elsewhere), cluster_rules());

    // Secrets: `get` at home only (cluster accounts); not even where tasks are watched, as
    // namespaced accounts are off; never list or watch.
    assert_eq!(secret_access(cp, &sa, Some(&home)), GET_ONLY, "home");
    for ns in [&watched, &elsewhere, &vault] {
        assert_eq!(secret_access(cp, &sa, Some(ns)), NOTHING, "{ns}");
    }
    assert_eq!(secret_access(cp, &sa, None), NOTHING, "cluster-wide");

    // Writes: only the status patches, Events (anywhere: those of cluster accounts go to
    // `default`), its own Lease, its ownership key's Secret at home, and the finalizer of
    // managed tasks (a patch of tasks where they are watched).
    let resources = [
        "mpurelaytasks.mpurelay.io",
        "mpurelayaccounts.mpurelay.io",
        "secrets",
        "events",
        "events.events.k8s.io",
        "configmaps",
        "pods",
        "serviceaccounts",
        "deployments.apps",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "leases.coordination.k8s.io",
    ];
    for ns in [&watched, &home, &elsewhere] {
        for resource in resources {
            for verb in ["create", "update", "patch", "delete", "deletecollection"] {
                let allowed = (resource == "events.events.k8s.io"
                    && (verb == "create" || verb == "patch"))
                    || (ns == &home
                        && (resource == "leases.coordination.k8s.io" || resource == "secrets")
                        && verb == "create")
                    || (ns == &watched
                        && resource == "mpurelaytasks.mpurelay.io"
                        && verb == "patch");
                assert_eq!(
                    can_i(cp, &sa, &[verb, resource, "-n", ns]),
                    allowed,
                    "{verb} {resource} in {ns}"
                );
            }
        }
    }
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can_i(cp, &sa, &[verb, "clustermpurelayaccounts.mpurelay.io"]),
            "{verb} cluster accounts"
        );
        assert!(!can_i(cp, &sa, &[verb, "namespaces"]), "{verb} namespaces");
    }
    assert!(can_i(
        cp,
        &sa,
        &[
            "patch",
            "clustermpurelayaccounts.mpurelay.io",
            "--subresource=status"
        ]
    ));
    assert!(can_i(
        cp,
        &sa,
        &[
            "patch",
            "mpurelaytasks.mpurelay.io",
            "--subresource=status",
            "-n",
            &watched
        ]
    ));
    assert!(!can_i(
        cp,
        &sa,
        &[
            "update",
            "mpurelaytasks.mpurelay.io",
            "--subresource=status",
            "-n",
            &watched
        ]
    ));
    assert!(!can_i(
        cp,
        &sa,
        &[
            "patch",
            "mpurelaytasks.mpurelay.io",
            "--subresource=status",
            "-n",
            &elsewhere
        ]
    ));
    assert!(can_i(
        cp,
        &sa,
        &[
            "update",
            &format!("leases.coordination.k8s.io/{lease}"),
            "-n",
            &home
        ]
    ));
    assert!(!can_i(
        cp,
        &sa,
        &[
            "update",
            "leases.coordination.k8s.io/someone-elses",
            "-n",
            &home
        ]
    ));
    assert!(!can_i(
        cp,
        &sa,
        &[
            "delete",
            &format!("leases.coordination.k8s.io/{lease}"),
            "-n",
            &home
        ]
    ));

    // Namespaced accounts on, and a second namespace for cluster accounts' Secrets: `get` on
    // Secrets where tasks are watched and in that namespace, still nowhere else.
    let extra = format!("accounts.cluster.secretNamespaces={{{vault}}}");
    ok(
        helm(
            cp,
            &[
                "upgrade",
                release,
                CHART,
                "-n",
                &home,
                "--reuse-values",
                "--set",
                "accounts.namespaced.enabled=true",
                "--set",
                &extra,
            ],
        ),
        "helm upgrade",
    );
    assert_eq!(
        granted(cp, &sa, &watched),
        union(&[&cluster_rules(), &watch_rules(true)])
    );
    for ns in [&home, &watched, &vault] {
        assert_eq!(secret_access(cp, &sa, Some(ns)), GET_ONLY, "{ns}");
    }
    assert_eq!(
        secret_access(cp, &sa, Some(&elsewhere)),
        NOTHING,
        "elsewhere"
    );
    assert_eq!(secret_access(cp, &sa, None), NOTHING, "cluster-wide");
    assert!(can_i(
        cp,
        &sa,
        &[
            "patch",
            "mpurelayaccounts.mpurelay.io",
            "--subresource=status",
            "-n",
            &watched
        ]
    ));
    assert!(!can_i(
        cp,
        &sa,
        &["get", "mpurelayaccounts.mpurelay.io", "-n", &elsewhere]
    ));
    ok(
        helm(cp, &["uninstall", release, "-n", &home]),
        "helm uninstall",
    );
}

/// A kubeconfig for the admin token that impersonates `user` (kube-rs honours `as`).
/// The content of the file at `path` in the Deployment's pod, as the kubelet would mount it:
/// the volume mounted above it, and the key of the ConfigMap or Secret its item names.
fn mounted_file(cp: &ControlPlane, deployment: &Value, ns: &str, path: &str) -> String {
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("no volume is mounted above {path}"));
    let file = &path[mount["mountPath"].as_str().unwrap().len()..].trim_start_matches('/');
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume exists");
    let (kind, name, source) = if volume["configMap"].is_object() {
        (
            "configmap",
            &volume["configMap"]["name"],
            &volume["configMap"],
        )
    } else {
        ("secret", &volume["secret"]["secretName"], &volume["secret"])
    };
    let key = source["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["path"] == *file)
        .map(|i| i["key"].as_str().unwrap().to_string())
        .unwrap_or_else(|| file.to_string());
    let object = get_json(cp, &[kind, name.as_str().unwrap(), "-n", ns]);
    match kind {
        "configmap" => object["data"][&key].as_str().unwrap().to_string(),
        _ => {
            use base64::Engine as _;
            let b64 = object["data"][&key].as_str().unwrap();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
        }
    }
}

/// The environment of the release's Deployment, as its pod would have it here: field refs
/// resolved, the ca-bundle file placed where the env names it (what the kubelet mounts), and a
/// kubeconfig acting as the chart's ServiceAccount; `RUST_LOG` left to the test.
fn pod_env(cp: &ControlPlane, release: &str, home: &str, dir: &Path) -> Vec<(String, String)> {
    let deployment = get_json(cp, &["deployment", &fullname(release), "-n", home]);
    let mut env: Vec<(String, String)> = Vec::new();
    for e in env_of(&deployment) {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match (
            e["value"].as_str(),
            e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(v), _) => v.to_string(),
            (None, Some("metadata.namespace")) => home.to_string(),
            (None, Some("metadata.name")) => format!("{}-0", fullname(release)),
            _ => panic!("unexpected env {e}"),
        };
        // The test's log level is more useful than the chart's default when this fails.
        if name != "RUST_LOG" {
            env.push((name, value));
        }
    }
    for (name, value) in env.iter_mut() {
        if name == "MPU_RELAY_CA_BUNDLE" && value.starts_with('/') && !Path::new(value).exists() {
            let local = dir.join("ca-bundle.crt");
            std::fs::write(&local, mounted_file(cp, &deployment, home, value)).unwrap();
            *value = local.display().to_string();
        }
    }
    let kubeconfig = dir.join("kubeconfig");
    let sa = format!("system:serviceaccount:{home}:{}", fullname(release));
    impersonating_kubeconfig(cp, &sa, &kubeconfig);
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    env
}

fn impersonating_kubeconfig(cp: &ControlPlane, user: &str, path: &Path) {
    let token = std::fs::read_to_string(cp.dir.join("admin.token")).unwrap();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cp.server,
            "certificate-authority": cp.dir.join("ca.crt"),
        }}],
        "users": [{"name": "operator", "user": {"token": token.trim(), "as": user}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "operator",
    });
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[tokio::test]
async fn integration_operator_with_the_charts_service_account_reconciles_a_task_end_to_end() {
    const AK: &str = "LTAI5tHelmChartTest";
    const SK: &str = "helm-chart-test-secret-9c1d";
    let cp = support::shared();
    let client = cp.client().await;
    let home = support::test_namespace(&client, "chart-identity-home").await;
    let watched = support::test_namespace(&client, "chart-identity-watched").await;
    let release = "identity";
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![AccountConfig {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            qps: Some(10),
        }],
        tasks: vec![TaskConfig {
            app_id: "app".into(),
            task_id: "t1".into(),
            status: 1,
        }],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    // The simulator's CA, as a cluster admin ships a private CA: a ConfigMap in the release
    // namespace, named by the chart's caBundle value.
    ok(
        kubectl(
            cp,
            &[
                "create",
                "configmap",
                "sim-ca",
                "-n",
                &home,
                &format!("--from-literal=ca.crt={}", sim.ca_pem().unwrap()),
            ],
            None,
        ),
        "creating the CA ConfigMap",
    );
    let set = format!("watchNamespaces={{{watched}}}");
    ok(
        helm(
            cp,
            &[
                "install",
                release,
                CHART,
                "-n",
                &home,
                "--set",
                &set,
                "--set",
                "leaderElection.enabled=true",
                // The simulator listens on loopback, which the default allow-list refuses.
                "--set",
                "allowedEndpoints={https://*.aliyuncs.com,https://127.0.0.1:*}",
                "--set",
                "caBundle.configMapName=sim-ca",
            ],
        ),
        "helm install",
    );

    // The operator gets the installed Deployment's settings (its env), as the pod would.
    let dir = tempfile::tempdir().unwrap();
    let mut env = pod_env(cp, release, &home, dir.path());
    assert!(
        env.iter().any(|(name, _)| name == "MPU_RELAY_CA_BUNDLE"),
        "caBundle sets MPU_RELAY_CA_BUNDLE"
    );

    assert_eq!(
        env.iter()
            .find(|(k, _)| k == "MPU_RELAY_ALLOWED_ENDPOINTS")
            .map(|(_, v)| v.as_str()),
        Some("https://*.aliyuncs.com,https://127.0.0.1:*")
    );
    // STS (GetCallerIdentity: which cloud account the key belongs to) is the simulator too.
    env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), sim.base_url()));

    // The cluster admin's account, its Secret in the release namespace.
    let account = admin_account(&client, &home, &watched, &sim, (AK, SK)).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &watched);
    let task = support::accounts::task_with(
        "relay",
        json!({"appId": "app", "taskId": "t1",
               "accountRef": {"kind": "ClusterMpuRelayAccount", "name": account}}),
    );
    tasks.create(&PostParams::default(), &task).await.unwrap();

    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let op = Operator::start(cp, &watched, &[], &env_refs);

    let ready = eventually(Duration::from_secs(30), || async {
        tasks
            .get("relay")
            .await
            .ok()
            .and_then(|t| t.status)
            .and_then(|s| {
                s.condition(conditions::READY)
                    .map(|c| c.status == "True" && c.reason == "Running")
            })
            .unwrap_or(false)
    })
    .await;
    assert!(ready, "the task did not become Ready:\n{}", op.output());
    // The account's status is the operator's too (patched through the chart's ClusterRole).
    let accounts: Api<ClusterMpuRelayAccount> = Api::all(client.clone());
    let account_ready = eventually(Duration::from_secs(30), || async {
        accounts
            .get(&account)
            .await
            .ok()
            .and_then(|a| a.status)
            .is_some_and(|s| {
                s.tasks == 1
                    && s.condition(conditions::READY)
                        .is_some_and(|c| c.status == "True")
            })
    })
    .await;
    assert!(
        account_ready,
        "the ClusterMpuRelayAccount did not report Ready with its task:\n{}",
        op.output()
    );

    // It held the Lease (in the release namespace, under the chart's name) and published an
    // Event, both through the chart's RBAC.
    let lease = ok(
        kubectl(
            cp,
            &[
                "get",
                "lease",
                &fullname(release),
                "-n",
                &home,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        ),
        "reading the Lease",
    );
    assert_eq!(lease, format!("{}-0", fullname(release)));
    // A healthy first observation publishes nothing; a relay the cloud stops does.
    sim.set_task_status("app", "t1", 5);
    tasks
        .patch(
            "relay",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"mpurelay.io/sync-requested-at": "1"}}}),
            ),
        )
        .await
        .unwrap();
    let evented = eventually(Duration::from_secs(15), || async {
        kubectl(
            cp,
            &["get", "events.events.k8s.io", "-n", &watched, "-o", "name"],
            None,
        )
        .is_ok_and(|out| !out.trim().is_empty())
    })
    .await;
    assert!(evented, "no Event was published:\n{}", op.output());
    let log = op.output();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the operator hit an RBAC denial:\n{log}"
    );
}

#[test]
fn integration_invalid_values_fail_at_install_with_the_schemas_message() {
    let cp = support::shared();
    let ns = "invalid-values";
    ensure_namespace(cp, ns);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "replicaCount=-1"],
            "at '/replicaCount': minimum: got -1, want 0",
        ),
        (
            &["--set", "logFormat=xml"],
            "at '/logFormat': value must be one of 'text', 'json'",
        ),
        (
            &["--set", "accounts.operatorAccount.signature=v2"],
            "at '/accounts/operatorAccount/signature': value must be one of 'v1', 'v3'",
        ),
        (
            &["--set", "allowedEndpoints={ftp://live.aliyuncs.com}"],
            "at '/allowedEndpoints/0': 'ftp://live.aliyuncs.com' does not match pattern",
        ),
        (
            &["--set", "accounts.cluster.secretNamespaces={Vault}"],
            "at '/accounts/cluster/secretNamespaces/0'",
        ),
        // Per account now: the old operator-wide settings are refused, not ignored.
        (
            &["--set", "cloud.qps=20"],
            "additional properties 'cloud' not allowed",
        ),
        (
            &["--set", "accounts.operatorAccount.create=true"],
            "accounts.operatorAccount.create needs namespaces or a namespaceSelector",
        ),
        (
            &["--set", "polling.running=soon"],
            "at '/polling/running': 'soon' does not match pattern",
        ),
        (
            &["--set", "watchNamespaces={Team_A}"],
            "at '/watchNamespaces/0'",
        ),
        (
            &["--set", "rrsa.enabled=true"],
            "at '/rrsa/roleArn': '' does not match pattern",
        ),
        (
            &["--set", "replicas=2"],
            "additional properties 'replicas' not allowed",
        ),
        (
            &[
                "--set",
                "credentials.existingSecret=ak",
                "-f",
                "examples/values/rrsa.yaml",
            ],
            "credentials.existingSecret and rrsa.enabled are mutually exclusive",
        ),
        (
            &[
                "--set",
                "caBundle.secretName=ca",
                "--set",
                "caBundle.configMapName=ca",
            ],
            "caBundle.secretName and caBundle.configMapName are mutually exclusive",
        ),
        (
            &["--set", "caBundle.key=../../etc/shadow"],
            "at '/caBundle/key': '../../etc/shadow' does not match pattern",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["install", "bad", CHART, "-n", ns];
        all.extend_from_slice(args);
        match helm(cp, &all) {
            Ok(out) => panic!("helm install {args:?} succeeded:\n{out}"),
            Err(e) => assert!(
                e.contains(message),
                "{args:?}: expected {message:?} in\n{e}"
            ),
        }
        // The same values fail helm template, without a cluster.
        let mut template = vec!["template", "bad", CHART];
        template.extend_from_slice(args);
        let err = helm(cp, &template).expect_err("helm template must fail too");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let releases = ok(helm(cp, &["list", "-n", ns, "-a", "-q"]), "helm list");
    assert_eq!(releases.trim(), "", "a failed install left a release");
}

/// The ```sh blocks between the README's install markers, in order.
fn readme_install_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let begin = readme
        .find("<!-- install:begin -->")
        .expect("README has <!-- install:begin -->");
    let end = readme
        .find("<!-- install:end -->")
        .expect("README has <!-- install:end -->");
    let section = &readme[begin..end];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "an unterminated ```sh block in the README"
    );
    blocks
}

#[tokio::test]
async fn integration_readme_install_section_works_as_written() {
    let cp = support::shared();
    let blocks = readme_install_blocks();
    assert_eq!(
        blocks.len(),
        4,
        "install, upgrade, RRSA, uninstall; update this test with the README"
    );
    let _fixed = FIXED_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    let path = format!(
        "{}:{}",
        cp.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ns = "mpu-relay-system";
    let release = "mpu-relay-operator";
    let deployment = || -> Value {
        serde_json::from_str(&ok(
            kubectl(
                cp,
                &["get", "deployment", release, "-n", ns, "-o", "json"],
                None,
            ),
            "reading the Deployment",
        ))
        .unwrap()
    };
    for (i, block) in blocks.iter().enumerate() {
        let mut sh = Command::new("bash");
        sh.args(["-euo", "pipefail", "-c", block])
            .current_dir(repo_root())
            .env("PATH", &path)
            .env("KUBECONFIG", &cp.kubeconfig)
            .env("IMAGE", "registry.example.com/mpu-relay-operator")
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tReadmeTest")
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "readme-test-secret")
            .envs(helm_homes(cp));
        let out = run(sh, None).unwrap_or_else(|e| {
            panic!("README install block {} failed:\n{block}\n---\n{e}", i + 1)
        });
        match i {
            0 => {
                let d = deployment();
                assert_eq!(
                    d["spec"]["template"]["spec"]["containers"][0]["image"],
                    "registry.example.com/mpu-relay-operator:0.1.0"
                );
                assert!(
                    env_of(&d)
                        .iter()
                        .any(|e| e["name"] == "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
                            && e["valueFrom"]["secretKeyRef"]["name"]
                                == "alibaba-cloud-credentials"),
                    "{out}"
                );
                // The operator's ClusterRole and binding, and the two tenant roles.
                assert_eq!(cluster_leftovers(cp, release).len(), 4);
            }
            1 => {
                assert_eq!(
                    env_value(&deployment(), "MPU_RELAY_NAMESPACES").as_deref(),
                    Some("relay-team-a,relay-team-b")
                );
                // Scoped, the ClusterRole keeps only cluster accounts, namespace labels and
                // Events; tasks move to one Role per namespace.
                assert_eq!(cluster_leftovers(cp, release).len(), 4);
                let rules = ok(
                    kubectl(
                        cp,
                        &[
                            "get",
                            "clusterrole",
                            release,
                            "-o",
                            "jsonpath={.rules[*].resources}",
                        ],
                        None,
                    ),
                    "the operator's ClusterRole",
                );
                assert!(
                    !rules.contains("mpurelaytasks") && !rules.contains("secrets"),
                    "{rules}"
                );
                for team in ["relay-team-a", "relay-team-b"] {
                    ok(
                        kubectl(cp, &["get", "role", release, "-n", team], None),
                        "the team's Role",
                    );
                }
            }
            2 => {
                let d = deployment();
                assert!(env_value(&d, "ALIBABA_CLOUD_ROLE_ARN").is_some());
                assert!(
                    !env_of(&d)
                        .iter()
                        .any(|e| e["name"] == "ALIBABA_CLOUD_ACCESS_KEY_ID"),
                    "RRSA replaced the AccessKey"
                );
                // --reuse-values kept the namespaces of the previous step.
                assert_eq!(
                    env_value(&d, "MPU_RELAY_NAMESPACES").as_deref(),
                    Some("relay-team-a,relay-team-b")
                );
            }
            _ => {
                assert_eq!(leftovers(cp, ns), Vec::<String>::new());
                for team in ["relay-team-a", "relay-team-b"] {
                    assert_eq!(leftovers(cp, team), Vec::<String>::new(), "{team}");
                }
                assert_eq!(cluster_leftovers(cp, release), Vec::<String>::new());
                let selector = format!("app.kubernetes.io/instance={release}");
                let accounts = ok(
                    kubectl(
                        cp,
                        &[
                            "get",
                            "clustermpurelayaccounts",
                            "-l",
                            &selector,
                            "-o",
                            "name",
                        ],
                        None,
                    ),
                    "listing the chart's cluster accounts",
                );
                assert_eq!(
                    accounts.trim(),
                    "",
                    "a ClusterMpuRelayAccount outlived the chart"
                );
                ok(
                    kubectl(cp, &["get", "crd", "mpurelaytasks.mpurelay.io"], None),
                    "the CRD stays",
                );
            }
        }
    }
}

/// The cluster admin's account for `watched`: its Secret `ak` in the release namespace `home`
/// (where the chart lets the operator get Secrets), its endpoint the simulator, its conditions
/// admitting `watched`; named after `watched` (cluster-scoped objects are shared). Its name.
async fn admin_account(
    client: &kube::Client,
    home: &str,
    watched: &str,
    sim: &mpu_cloud_sim::SimulatorHandle,
    (id, secret): (&str, &str),
) -> String {
    support::accounts::secret(client, home, "ak", id, secret).await;
    let account = format!("{watched}-account");
    support::accounts::cluster_account(
        client,
        &account,
        json!({
            "endpoint": sim.base_url(),
            "credentials": {"secretRef": {"name": "ak"}},
            "conditions": [{"namespaces": [watched]}],
        }),
    )
    .await;
    account
}

/// The chart of the previous release, from git history: a chart release is the commit that
/// sets a new version in Chart.yaml (as it asks: bump on every chart change), so the previous
/// release is the commit that set the version before the current one. Returns its version,
/// commit and a directory holding that chart.
fn previous_release_chart(dir: &Path) -> (String, String, PathBuf) {
    let git = |args: &[&str]| -> String {
        let out = Command::new("git")
            .current_dir(repo_root())
            .args(args)
            .output()
            .expect("running git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        git(&["rev-parse", "--is-shallow-repository"]),
        "false",
        "the upgrade test builds the previous chart from git history: clone with full history"
    );
    let chart_yaml = "charts/mpu-relay-operator/Chart.yaml";
    let version_in = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("version:"))
            .map(|v| v.trim().to_string())
            .expect("Chart.yaml has a version")
    };
    let current = version_in(&std::fs::read_to_string(repo_root().join(chart_yaml)).unwrap());
    // Newest first: past the commits at the current version, the run at the previous one; its
    // oldest commit set that version, and is its release.
    let mut previous: Option<(String, String)> = None;
    for commit in git(&["log", "--format=%H", "--", chart_yaml]).lines() {
        let version = version_in(&git(&["show", &format!("{commit}:{chart_yaml}")]));
        match &previous {
            _ if version == current && previous.is_none() => continue,
            Some((v, _)) if *v != version => break,
            _ => previous = Some((version, commit.to_string())),
        }
    }
    let (_, previous) = previous.expect("a chart version before the current one");
    let archive = Command::new("git")
        .current_dir(repo_root())
        .args(["archive", &previous, "charts/mpu-relay-operator"])
        .output()
        .expect("git archive");
    assert!(archive.status.success(), "git archive {previous}");
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("tar");
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(
        tar.wait().unwrap().success(),
        "unpacking the previous chart"
    );
    let chart = dir.join("charts/mpu-relay-operator");
    let version = version_in(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap());
    assert_ne!(version, current, "the previous release has another version");
    (version, previous, chart)
}

/// A user on the previous release upgrades to this one as the README says (the CRDs applied
/// first, then `helm upgrade --reset-then-reuse-values`), with tasks running: the upgrade succeeds, the
/// tasks and their statuses survive it, and the new operator goes on following the cloud.
#[tokio::test]
async fn integration_helm_upgrade_from_the_previous_release_keeps_tasks_running() {
    const AK: &str = "LTAI5tHelmUpgradeTest";
    const SK: &str = "helm-upgrade-test-secret-5e2a";
    let cp = support::shared();
    let client = cp.client().await;
    let home = support::test_namespace(&client, "chart-upgrade-home").await;
    let watched = support::test_namespace(&client, "chart-upgrade-watched").await;
    let release = "upgrade";
    let dir = tempfile::tempdir().unwrap();
    let (old_version, old_commit, old_chart) = previous_release_chart(dir.path());
    println!("[helm] upgrading from chart {old_version} (commit {old_commit})");

    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![AccountConfig {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            qps: Some(10),
        }],
        tasks: (1..=2)
            .map(|i| TaskConfig {
                app_id: "app".into(),
                task_id: format!("t{i}"),
                status: 1,
            })
            .collect(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    let ca = support::ca_bundle(&sim).unwrap();
    // Values every release since the first understands: the simulator's CA reaches the
    // operator through extraEnv (the previous chart may have no caBundle).
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "watchNamespaces: [{watched}]\nallowedEndpoints: ['https://*.aliyuncs.com', 'https://127.0.0.1:*']\nextraEnv:\n  - name: MPU_RELAY_CA_BUNDLE\n    value: {ca}\n  - name: MPU_RELAY_RUNNING_INTERVAL\n    value: 1s\n"
        ),
    )
    .unwrap();
    let values = values.to_str().unwrap();
    ok(
        helm(
            cp,
            &[
                "install",
                release,
                old_chart.to_str().unwrap(),
                "-n",
                &home,
                "-f",
                values,
            ],
        ),
        "helm install of the previous release",
    );

    let account = admin_account(&client, &home, &watched, &sim, (AK, SK)).await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &watched);
    for i in 1..=2 {
        let task = support::accounts::task_with(
            &format!("relay-{i}"),
            json!({"appId": "app", "taskId": format!("t{i}"),
                   "accountRef": {"kind": "ClusterMpuRelayAccount", "name": account}}),
        );
        tasks.create(&PostParams::default(), &task).await.unwrap();
    }
    let phases = || async {
        let mut phases = Vec::new();
        for i in 1..=2 {
            phases.push(
                tasks
                    .get(&format!("relay-{i}"))
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .and_then(|s| s.phase),
            );
        }
        phases
    };
    use mpu_relay_operator::api::Phase;
    let running = vec![Some(Phase::Running), Some(Phase::Running)];

    let sts = sim.base_url();
    let start = |env: Vec<(String, String)>| {
        let mut env = env;
        env.push(("ALIBABA_CLOUD_STS_ENDPOINT".into(), sts.clone()));
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Operator::start(cp, &watched, &[], &refs)
    };
    // The previous release's tasks are running: their statuses written with the previous
    // chart's settings. Not by the previous binary (a release build of old sources would cost
    // minutes) and so not through the previous chart's RBAC, which this binary's watches
    // outgrew: an admin kubeconfig stands in for that pod.
    let old_dir = tempfile::tempdir().unwrap();
    let mut old_env = pod_env(cp, release, &home, old_dir.path());
    for (name, value) in old_env.iter_mut() {
        if name == "KUBECONFIG" {
            *value = cp.kubeconfig.display().to_string();
        }
    }
    let mut old = start(old_env);
    assert!(
        eventually(Duration::from_secs(30), || async {
            phases().await == running
        })
        .await,
        "the previous release's operator never ran the tasks: {:?}\n{}",
        phases().await,
        old.output()
    );
    let generations: Vec<Option<i64>> = {
        let mut g = Vec::new();
        for i in 1..=2 {
            g.push(
                tasks
                    .get(&format!("relay-{i}"))
                    .await
                    .unwrap()
                    .metadata
                    .generation,
            );
        }
        g
    };

    // The upgrade, as the README says: CRDs first, then the chart, values reused (plain
    // --reuse-values fails here: the previous values lack the new chart's settings). The old pod
    // stops before the new one starts (the chart's Recreate strategy without leader election).
    ok(
        kubectl(
            cp,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "charts/mpu-relay-operator/crds/",
            ],
            None,
        ),
        "applying the CRDs",
    );
    ok(
        helm(
            cp,
            &[
                "upgrade",
                release,
                CHART,
                "-n",
                &home,
                "--reset-then-reuse-values",
            ],
        ),
        "helm upgrade --reset-then-reuse-values to this chart",
    );
    assert!(old.terminate(Duration::from_secs(10)).await.is_some());
    let history = ok(
        helm(cp, &["history", release, "-n", &home, "-o", "json"]),
        "helm history",
    );
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    assert_eq!(history[1]["status"], "deployed", "{history}");
    // The statuses the previous operator wrote survive the upgrade untouched.
    assert_eq!(phases().await, running);

    let new_dir = tempfile::tempdir().unwrap();
    let new = start(pod_env(cp, release, &home, new_dir.path()));
    sim.set_task_status("app", "t2", 5);
    assert!(
        eventually(Duration::from_secs(30), || async {
            phases().await == vec![Some(Phase::Running), Some(Phase::CdnError)]
        })
        .await,
        "the upgraded operator does not follow the cloud: {:?}\n{}",
        phases().await,
        new.output()
    );
    // Nothing the user wrote changed: the upgrade touched no task.
    for (i, generation) in (1..=2).zip(generations) {
        let task = tasks.get(&format!("relay-{i}")).await.unwrap();
        assert_eq!(task.metadata.generation, generation, "relay-{i}");
    }
    ok(
        helm(cp, &["uninstall", release, "-n", &home]),
        "helm uninstall",
    );
}
