//! Accounts as the trust boundary, end to end: the operator binary against the real
//! kube-apiserver, the cloud simulator, and listeners standing in for hosts a tenant owns.
//!
//! Each test is written from the hostile tenant's side: what they write, and what must (not)
//! happen.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mpu_cloud_sim::{
    AccountConfig, Scheme, ServerCertificate, Simulator, SimulatorConfig, SimulatorHandle,
    TaskConfig,
};
use mpu_relay_operator::api::{
    AccountStatus, ClusterMpuRelayAccount, MpuRelayAccount, MpuRelayTask, MpuRelayTaskStatus,
    conditions,
};
use serde_json::json;
use support::accounts;
use support::listener::Listener;
use support::operator::{FAST_POLLING, Operator, eventually};

const AK: &str = "LTAI5tAccountsTest";
const SK: &str = "accounts-test-secret-value-3b9d";
/// What a tenant may not read, in a Secret of their own namespace.
const PASSWORD: &str = "hunter2-database-password-0c41";

struct World {
    client: kube::Client,
    ns: String,
    sim: SimulatorHandle,
}

fn sim_config(tasks: usize, qps: u32) -> SimulatorConfig {
    SimulatorConfig {
        accounts: vec![
            serde_json::from_value::<AccountConfig>(
                json!({"accessKeyId": AK, "accessKeySecret": SK, "qps": qps}),
            )
            .unwrap(),
        ],
        tasks: (0..tasks)
            .map(|i| TaskConfig {
                app_id: "app".into(),
                task_id: format!("t{i}"),
                status: 1,
            })
            .collect(),
        ..SimulatorConfig::default()
    }
}

async fn world(test: &str, tasks: usize, qps: u32) -> World {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, test).await;
    let sim = Simulator::start(sim_config(tasks, qps))
        .await
        .expect("simulator starts");
    World { client, ns, sim }
}

impl World {
    fn tasks(&self) -> Api<MpuRelayTask> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn task_status(&self, name: &str) -> MpuRelayTaskStatus {
        self.tasks()
            .get(name)
            .await
            .ok()
            .and_then(|t| t.status)
            .unwrap_or_default()
    }

    async fn task_condition(&self, name: &str, type_: &str) -> Option<(String, String)> {
        self.task_status(name)
            .await
            .condition(type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
    }

    async fn account_status(&self, name: &str) -> AccountStatus {
        Api::<MpuRelayAccount>::namespaced(self.client.clone(), &self.ns)
            .get(name)
            .await
            .ok()
            .and_then(|a| a.status)
            .unwrap_or_default()
    }

    async fn account_ready(&self, name: &str) -> Option<(String, String)> {
        self.account_status(name)
            .await
            .condition(conditions::READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    }

    fn operator(&self, args: &[&str]) -> Operator {
        Operator::with_simulator(support::shared(), &self.ns, &self.sim, args, &[])
    }

    /// Only the simulator's own address allowed (not loopback at large).
    fn operator_allowing(&self, allowed: &str) -> Operator {
        let ca = support::ca_bundle(&self.sim).expect("an HTTPS simulator");
        Operator::start(
            support::shared(),
            &self.ns,
            &[
                "--namespaced-accounts",
                "--allowed-endpoints",
                allowed,
                "--ca-bundle",
                &ca,
            ],
            &[("ALIBABA_CLOUD_STS_ENDPOINT", &self.sim.base_url())],
        )
    }

    fn status_calls(&self) -> u64 {
        self.sim.stats(false).accounts[AK].calls.ok
    }
}

#[tokio::test]
async fn integration_account_aimed_outside_the_allow_list_sends_nothing_there() {
    let w = world("endpoint-not-allowed", 1, 10).await;
    let owned = Listener::answering_running().await;
    // A tenant's Secret with a password, and an account pointing at a host they own.
    accounts::secret_with(
        &w.client,
        &w.ns,
        "db",
        json!({"accessKeyId": AK, "accessKeySecret": SK, "password": PASSWORD}),
    )
    .await;
    accounts::account(&w.client, &w.ns, "evil", &owned.url(), "db", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "evil")).await;
    let op = w.operator_allowing(&w.sim.base_url());

    assert!(
        eventually(Duration::from_secs(15), || async {
            w.account_ready("evil").await == Some(("False".into(), "EndpointNotAllowed".into()))
        })
        .await,
        "{:?}\n{}",
        w.account_status("evil").await,
        op.output()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            w.task_condition("relay", conditions::STALLED).await
                == Some(("True".into(), "EndpointNotAllowed".into()))
        })
        .await,
        "{:?}",
        w.task_status("relay").await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(owned.requests().is_empty(), "{:?}", owned.requests());
}

#[tokio::test]
async fn integration_secret_with_other_key_names_is_invalid_and_nothing_is_sent() {
    let w = world("secret-invalid", 1, 10).await;
    let owned = Listener::answering_running().await;
    // Key names of the tenant's choosing: the operator reads only its fixed ones.
    accounts::secret_with(
        &w.client,
        &w.ns,
        "db",
        json!({"username": AK, "password": PASSWORD}),
    )
    .await;
    accounts::account(&w.client, &w.ns, "evil", &owned.url(), "db", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "evil")).await;
    let op = w.operator(&[]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.account_ready("evil").await == Some(("False".into(), "SecretInvalid".into()))
        })
        .await,
        "{:?}\n{}",
        w.account_status("evil").await,
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(owned.requests().is_empty(), "{:?}", owned.requests());
    assert!(!op.output().contains(PASSWORD));
}

#[tokio::test]
async fn integration_other_keys_of_a_secret_never_leave_the_process() {
    let w = world("other-keys", 1, 10).await;
    let owned = Listener::answering_running().await;
    accounts::secret_with(
        &w.client,
        &w.ns,
        "db",
        json!({"accessKeyId": AK, "accessKeySecret": SK, "password": PASSWORD}),
    )
    .await;
    accounts::account(&w.client, &w.ns, "owned", &owned.url(), "db", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "owned")).await;
    let op = w.operator(FAST_POLLING);
    assert!(
        eventually(Duration::from_secs(15), || async {
            !owned.requests().is_empty()
        })
        .await,
        "{:?}\n{}",
        w.account_status("owned").await,
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for request in owned.requests() {
        assert!(!request.contains(PASSWORD), "{request}");
        assert!(
            !request.contains(SK),
            "the secret itself was sent: {request}"
        );
    }
}

#[tokio::test]
async fn integration_redirects_from_an_allowed_endpoint_are_not_followed() {
    let w = world("redirect", 1, 10).await;
    let target = Listener::answering_running().await;
    let redirector = Listener::redirecting_to(&format!("{}/steal", target.url())).await;
    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    accounts::account(&w.client, &w.ns, "ak", &redirector.url(), "ak", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "ak")).await;
    let op = w.operator(FAST_POLLING);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::SYNCED).await
                == Some(("False".into(), "Redirected".into()))
        })
        .await,
        "{:?}\n{}",
        w.task_status("relay").await,
        op.output()
    );
    assert!(!redirector.requests().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(target.requests().is_empty(), "{:?}", target.requests());
}

#[tokio::test]
async fn integration_cluster_account_admits_only_the_namespaces_its_conditions_name() {
    let w = world("cluster-conditions", 1, 10).await;
    // The admin's Secret lives in the operator's namespace (here: another test namespace).
    let operator_ns = support::test_namespace(&w.client, "cluster-conditions-operator").await;
    accounts::secret(&w.client, &operator_ns, "ak", AK, SK).await;
    let name = format!("{}-shared", w.ns);
    accounts::cluster_account(
        &w.client,
        &name,
        json!({
            "endpoint": w.sim.base_url(),
            "credentials": {"secretRef": {"name": "ak"}},
            "conditions": [{"namespaces": ["team-a"]}],
        }),
    )
    .await;
    let task = accounts::task_with(
        "relay",
        json!({"appId": "app", "taskId": "t0",
               "accountRef": {"kind": "ClusterMpuRelayAccount", "name": name}}),
    );
    accounts::create_task(&w.client, &w.ns, &task).await;
    let op = w.operator(&["--operator-namespace", &operator_ns]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::STALLED).await
                == Some(("True".into(), "AccountNotAllowed".into()))
        })
        .await,
        "{:?}\n{}",
        w.task_status("relay").await,
        op.output()
    );
    assert_eq!(w.status_calls(), 0, "a refused task called the cloud");

    // The admin admits the namespace; the task is not touched.
    Api::<ClusterMpuRelayAccount>::all(w.client.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"conditions": [
                {"namespaces": ["team-a"]}, {"namespaces": [w.ns]}
            ]}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::READY).await
                == Some(("True".into(), "Running".into()))
        })
        .await,
        "{:?}\n{}",
        w.task_status("relay").await,
        op.output()
    );
}

#[tokio::test]
async fn integration_task_without_an_account_never_uses_the_operators_credentials() {
    let w = world("no-account-ref", 1, 10).await;
    let task = accounts::task_with("relay", json!({"appId": "app", "taskId": "t0"}));
    accounts::create_task(&w.client, &w.ns, &task).await;
    // The operator has credentials of its own that the cloud would accept.
    let op = Operator::with_simulator(
        support::shared(),
        &w.ns,
        &w.sim,
        &[],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", AK),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK),
        ],
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::STALLED).await
                == Some(("True".into(), "AccountRefMissing".into()))
        })
        .await,
        "{:?}\n{}",
        w.task_status("relay").await,
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.sim.stats(false).accounts[AK].calls.total, 0);
}

#[tokio::test]
async fn integration_two_accounts_with_one_key_share_one_budget() {
    let w = world("shared-key", 40, 10).await;
    accounts::secret(&w.client, &w.ns, "ak-1", AK, SK).await;
    accounts::secret(&w.client, &w.ns, "ak-2", AK, SK).await;
    // Two spellings of one endpoint, too (more spellings: cloud::endpoint's unit tests).
    let url = w.sim.base_url();
    accounts::account(&w.client, &w.ns, "one", &url, "ak-1", json!({})).await;
    accounts::account(
        &w.client,
        &w.ns,
        "two",
        &format!("{url}/"),
        "ak-2",
        json!({}),
    )
    .await;
    for i in 0..40 {
        let account = if i % 2 == 0 { "one" } else { "two" };
        accounts::create_task(
            &w.client,
            &w.ns,
            &accounts::task(&format!("relay-{i}"), &format!("t{i}"), account),
        )
        .await;
    }
    let op = w.operator(FAST_POLLING);
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.sim.stats(true).tasks.unwrap().iter().all(|t| t.calls > 0)
        })
        .await,
        "not every task was polled\n{}",
        op.output()
    );
    w.sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = w.sim.stats(false).accounts[AK].calls.clone();
    assert_eq!(calls.throttled, 0, "{calls:?}");
    assert!(calls.max_calls_in_any_second <= 10, "{calls:?}");
    // 97 calls would be the whole budget; a loaded CI machine starts reconciles late, which
    // costs a little (tests/pacing_simulation.rs), and must not fail the test.
    assert!(calls.ok >= 70, "the shared budget was not used: {calls:?}");
    // Both objects show the one budget: 40 tasks, one limit.
    assert!(
        eventually(Duration::from_secs(20), || async {
            let one = w.account_status("one").await.budget.unwrap_or_default();
            let two = w.account_status("two").await.budget.unwrap_or_default();
            one.tasks == 40 && two.tasks == 40 && one.limit == 10.0
        })
        .await,
        "{:?} {:?}",
        w.account_status("one").await,
        w.account_status("two").await
    );
    assert_eq!(w.account_status("one").await.tasks, 20);
}

#[tokio::test]
async fn integration_account_status_shows_tasks_limit_rate_and_interval_in_kubectl() {
    let w = world("kubectl-columns", 20, 10).await;
    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    accounts::account(
        &w.client,
        &w.ns,
        "live",
        &w.sim.base_url(),
        "ak",
        json!({"qps": 10}),
    )
    .await;
    for i in 0..20 {
        accounts::create_task(
            &w.client,
            &w.ns,
            &accounts::task(&format!("relay-{i}"), &format!("t{i}"), "live"),
        )
        .await;
    }
    let op = w.operator(FAST_POLLING);
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = w.account_status("live").await;
            s.tasks == 20
                && s.budget
                    .is_some_and(|b| b.interval.is_some() && b.used > 1.0)
        })
        .await,
        "{:?}\n{}",
        w.account_status("live").await,
        op.output()
    );
    let cp = support::shared();
    let out = std::process::Command::new(cp.bin_dir.join("kubectl"))
        .args(["--kubeconfig", cp.kubeconfig.to_str().unwrap()])
        .args(["get", "mpurelayaccounts", "-n", &w.ns])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "TASKS", "LIMIT", "RATE", "USED", "INTERVAL", "AGE"
        ],
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), header.len(), "{text}");
    assert_eq!(&row[..4], ["live", "True", "20", "10"], "{text}");
    // RATE: calls/s allowed now, the limit less its 3 % margin.
    let rate: f64 = row[4]
        .parse()
        .unwrap_or_else(|_| panic!("RATE {:?}: {text}", row[4]));
    assert!((9.0..=10.0).contains(&rate), "RATE {rate}: {text}");
    // USED: calls/s over the last 10 s, 20 tasks polling as fast as the budget lets them.
    let used: f64 = row[5]
        .parse()
        .unwrap_or_else(|_| panic!("USED {:?}: {text}", row[5]));
    assert!(used > 1.0 && used <= 10.0, "USED {used}: {text}");
    // INTERVAL: the budget's floor, 20 tasks / 9.7 calls/s, about 2 s, as the status says.
    let interval = w
        .account_status("live")
        .await
        .budget
        .and_then(|b| b.interval)
        .expect("an interval");
    let printed: kube::core::Duration = row[6]
        .parse()
        .unwrap_or_else(|_| panic!("INTERVAL {:?}: {text}", row[6]));
    let printed = std::time::Duration::from(printed);
    assert!(
        printed >= Duration::from_millis(1900) && printed <= Duration::from_millis(2300),
        "INTERVAL {printed:?} (status {interval:?}): {text}"
    );
    assert!(!row[7].is_empty(), "AGE: {text}");
}

#[tokio::test]
async fn integration_unrelated_secrets_cost_the_operator_no_memory() {
    let w = world("unrelated-secrets", 1, 10).await;
    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    accounts::account(&w.client, &w.ns, "live", &w.sim.base_url(), "ak", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "live")).await;
    let op = w.operator(&[]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::READY).await
                == Some(("True".into(), "Running".into()))
        })
        .await,
        "{}",
        op.output()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = op.rss_bytes();
    // 300 Secrets of 100 KiB each in the watched namespace: 30 MiB the operator must not hold.
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let blob = "x".repeat(100 * 1024);
    for i in 0..300 {
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("unrelated-{i}")},
            "stringData": {"blob": blob},
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = op.rss_bytes();
    let grown = after.saturating_sub(before);
    eprintln!(
        "operator RSS {} KiB -> {} KiB (+{} KiB) with 300 x 100 KiB unrelated Secrets",
        before / 1024,
        after / 1024,
        grown / 1024
    );
    assert!(before > 0, "could not read the operator's RSS");
    assert!(grown < 5 * 1024 * 1024, "grew by {grown} bytes");
}

#[tokio::test]
async fn integration_two_ram_users_of_one_cloud_account_share_its_budget() {
    const UID: &str = "5550001112223334";
    const AK2: &str = "LTAI5tAccountsTestSecondUser";
    const SK2: &str = "accounts-test-second-user-secret";
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "one-uid-two-users").await;
    let sim = Simulator::start(SimulatorConfig {
        accounts: [(AK, SK), (AK2, SK2)]
            .iter()
            .map(|(id, key)| {
                serde_json::from_value::<AccountConfig>(
                    json!({"accessKeyId": id, "accessKeySecret": key}),
                )
                .unwrap()
            })
            .collect(),
        uids: vec![
            serde_json::from_value(json!({"uid": UID, "qps": 10, "accessKeyIds": [AK, AK2]}))
                .unwrap(),
        ],
        tasks: (0..40)
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
    accounts::secret(&client, &ns, "user-1", AK, SK).await;
    accounts::secret(&client, &ns, "user-2", AK2, SK2).await;
    accounts::account(&client, &ns, "one", &sim.base_url(), "user-1", json!({})).await;
    accounts::account(&client, &ns, "two", &sim.base_url(), "user-2", json!({})).await;
    for i in 0..40 {
        let account = if i % 2 == 0 { "one" } else { "two" };
        let task = accounts::task(&format!("relay-{i}"), &format!("t{i}"), account);
        accounts::create_task(&client, &ns, &task).await;
    }
    let op = Operator::with_simulator(cp, &ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            sim.stats(true).tasks.unwrap().iter().all(|t| t.calls > 0)
        })
        .await,
        "not every task was polled\n{}",
        op.output()
    );
    sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = sim.stats(false).uids[UID].calls.clone();
    assert_eq!(calls.throttled, 0, "{calls:?}");
    assert!(calls.max_calls_in_any_second <= 10, "{calls:?}");
    // 97 calls would be the whole budget; a loaded CI machine starts reconciles late, which
    // costs a little (tests/pacing_simulation.rs), and must not fail the test.
    assert!(calls.ok >= 70, "the shared budget was not used: {calls:?}");
}

#[tokio::test]
async fn integration_a_tenants_account_id_claim_is_checked_against_sts() {
    let w = world("account-id-mismatch", 1, 10).await;
    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    // Claiming another cloud account's UID would put this tenant in that account's budget.
    accounts::account(
        &w.client,
        &w.ns,
        "liar",
        &w.sim.base_url(),
        "ak",
        json!({"accountId": "9999999999999999"}),
    )
    .await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "liar")).await;
    let op = w.operator(&[]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.account_ready("liar").await == Some(("False".into(), "AccountIdMismatch".into()))
        })
        .await,
        "{:?}\n{}",
        w.account_status("liar").await,
        op.output()
    );
    assert_eq!(w.status_calls(), 0);
}

#[tokio::test]
async fn integration_namespaced_accounts_are_refused_unless_enabled() {
    let w = world("namespaced-disabled", 1, 10).await;
    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    accounts::account(&w.client, &w.ns, "live", &w.sim.base_url(), "ak", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "live")).await;
    // The default: only cluster accounts, which the admin creates.
    let ca = support::ca_bundle(&w.sim).expect("an HTTPS simulator");
    let op = Operator::start(
        support::shared(),
        &w.ns,
        &[
            "--allowed-endpoints",
            "https://127.0.0.1:*",
            "--ca-bundle",
            &ca,
        ],
        &[("ALIBABA_CLOUD_STS_ENDPOINT", &w.sim.base_url())],
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.task_condition("relay", conditions::STALLED).await
                == Some(("True".into(), "NamespacedAccountsDisabled".into()))
        })
        .await,
        "{:?}\n{}",
        w.task_status("relay").await,
        op.output()
    );
    assert_eq!(w.sim.stats(false).accounts[AK].calls.total, 0);
}

#[tokio::test]
async fn integration_an_sts_outage_holds_up_only_the_tasks_that_need_sts() {
    use mpu_cloud_sim::{Action, FaultKind, FaultSpec, RoleConfig};
    const ROLE: &str = "acs:ram::1234567890123456:role/mpu-relay";
    const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "sts-outage").await;
    let mut config: SimulatorConfig = serde_json::from_value(json!({
        "accounts": [{"accessKeyId": AK, "accessKeySecret": SK}],
        "tasks": (0..4).map(|i| json!({"appId": "app", "taskId": format!("t{i}"), "status": 1}))
            .collect::<Vec<_>>(),
    }))
    .unwrap();
    config.roles = vec![RoleConfig {
        role_arn: ROLE.into(),
        account: AK.into(),
        oidc_provider_arn: Some(PROVIDER.into()),
        max_session_seconds: 3600,
    }];
    let sim = Simulator::start(config).await.expect("simulator starts");
    // STS is down from the start: every exchange fails for 20 s.
    sim.add_fault_for(
        &Action::STS,
        FaultSpec {
            kind: FaultKind::Http5xx {
                code: Some("ServiceUnavailable".into()),
                status: Some(503),
            },
            account: None,
            count: None,
            duration_ms: Some(20_000),
        },
    )
    .unwrap();
    // One cluster account with a key (its UID declared: no STS needed), one with RRSA.
    accounts::secret(&client, &ns, "ak", AK, SK).await;
    let keys = format!("{ns}-keys");
    let rrsa = format!("{ns}-rrsa");
    accounts::cluster_account(
        &client,
        &keys,
        json!({"endpoint": sim.base_url(), "accountId": "1234567890123456",
               "credentials": {"secretRef": {"namespace": ns, "name": "ak"}},
               "conditions": [{"namespaces": [ns]}]}),
    )
    .await;
    accounts::cluster_account(
        &client,
        &rrsa,
        json!({"endpoint": sim.base_url(),
               "credentials": {"rrsa": {"roleArn": ROLE, "oidcProviderArn": PROVIDER}},
               "conditions": [{"namespaces": [ns]}]}),
    )
    .await;
    for i in 0..4 {
        let account = if i < 2 { &keys } else { &rrsa };
        let task = accounts::task_with(
            &format!("relay-{i}"),
            json!({"appId": "app", "taskId": format!("t{i}"),
                   "accountRef": {"kind": "ClusterMpuRelayAccount", "name": account}}),
        );
        accounts::create_task(&client, &ns, &task).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln").unwrap();
    let op = Operator::with_simulator(
        cp,
        &ns,
        &sim,
        FAST_POLLING,
        &[("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap())],
    );
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let condition = |name: String, type_: &'static str| {
        let tasks = tasks.clone();
        async move {
            tasks
                .get(&name)
                .await
                .ok()
                .and_then(|t| t.status)
                .and_then(|s| {
                    s.condition(type_)
                        .map(|c| (c.status.clone(), c.reason.clone()))
                })
        }
    };
    // The key's tasks run; the RRSA tasks wait for STS, retrying (not stalled).
    assert!(
        eventually(Duration::from_secs(15), || async {
            condition("relay-0".into(), conditions::READY).await
                == Some(("True".into(), "Running".into()))
                && condition("relay-2".into(), conditions::SYNCED).await
                    == Some(("False".into(), "RrsaError".into()))
        })
        .await,
        "{:?} {:?}\n{}",
        condition("relay-0".into(), conditions::READY).await,
        condition("relay-2".into(), conditions::SYNCED).await,
        op.output()
    );
    assert_eq!(
        condition("relay-2".into(), conditions::STALLED)
            .await
            .map(|c| c.0),
        Some("False".into())
    );
    // During the outage the key's tasks keep their pace, and STS is not hammered.
    let sts_before = sim.stats(false).sts.calls;
    let ok_before = sim.stats(false).accounts[AK].calls.ok;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sts_calls = sim.stats(false).sts.calls - sts_before;
    let polls = sim.stats(false).accounts[AK].calls.ok - ok_before;
    eprintln!(
        "during the STS outage: {polls} polls of the key's 2 tasks, {sts_calls} STS calls in 8 s"
    );
    assert!(
        polls >= 10,
        "the key's tasks were held up: {polls} polls in 8 s"
    );
    assert!(sts_calls <= 4, "STS was hammered: {sts_calls} calls in 8 s");

    // STS comes back, slowly: the RRSA tasks recover; the key's tasks never noticed.
    sim.clear_faults();
    sim.add_fault_for(
        &Action::STS,
        FaultSpec {
            kind: FaultKind::Latency { ms: 3000 },
            account: None,
            count: None,
            duration_ms: Some(30_000),
        },
    )
    .unwrap();
    let ok_before = sim.stats(false).accounts[AK].calls.ok;
    assert!(
        eventually(Duration::from_secs(40), || async {
            condition("relay-2".into(), conditions::READY).await
                == Some(("True".into(), "Running".into()))
                && condition("relay-3".into(), conditions::READY).await
                    == Some(("True".into(), "Running".into()))
        })
        .await,
        "{:?}\n{}",
        condition("relay-2".into(), conditions::SYNCED).await,
        op.output()
    );
    assert!(sim.stats(false).accounts[AK].calls.ok - ok_before >= 4);
}

#[tokio::test]
async fn integration_two_hundred_accounts_come_and_go_and_leave_no_state_behind() {
    const N: usize = 200;
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "accounts-soak").await;
    let key = |i: usize| format!("LTAI5tSoak{i:03}");
    let sim = Simulator::start(
        serde_json::from_value(json!({
            "accounts": (0..N).map(|i| json!({"accessKeyId": key(i), "accessKeySecret": "s"}))
                .collect::<Vec<_>>(),
            "tasks": (0..N).map(|i| json!({"appId": "app", "taskId": format!("t{i}"), "status": 1}))
                .collect::<Vec<_>>(),
        }))
        .unwrap(),
    )
    .await
    .expect("simulator starts");
    let op = Operator::with_simulator(cp, &ns, &sim, &[], &[]);
    let series = || async {
        op.metrics()
            .await
            .lines()
            .filter(|l| l.contains("account=\""))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(15), || async {
            op.try_metrics()
                .await
                .is_some_and(|m| m.contains("mpu_relay_reconciles_total"))
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_start, series_start) = (op.rss_bytes(), series().await);

    // 200 tenants, each with its own cloud account (its own budget), a Secret and a task; then
    // every tenant leaves. Twice: the second round must not grow on the first.
    let accounts_api: Api<MpuRelayAccount> = Api::namespaced(client.clone(), &ns);
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut after_rounds = Vec::new();
    for round in 0..2 {
        sim.reset_stats();
        let create = futures::stream::iter(0..N).for_each_concurrent(16, |i| {
            let client = client.clone();
            let ns = ns.clone();
            let url = sim.base_url();
            async move {
                let name = format!("tenant-{round}-{i}");
                accounts::secret(&client, &ns, &name, &key(i), "s").await;
                accounts::account(&client, &ns, &name, &url, &name, json!({})).await;
                let task = accounts::task(&format!("relay-{round}-{i}"), &format!("t{i}"), &name);
                accounts::create_task(&client, &ns, &task).await;
            }
        });
        create.await;
        assert!(
            eventually(Duration::from_secs(90), || async {
                sim.stats(true)
                    .tasks
                    .unwrap()
                    .iter()
                    .filter(|t| t.calls > 0)
                    .count()
                    == N
            })
            .await,
            "not every task was polled\n{}",
            op.output()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss_full, series_full) = (op.rss_bytes(), series().await);
        assert!(
            series_full >= N,
            "the test needs series to exist: {series_full}"
        );
        for i in 0..N {
            tasks
                .delete(&format!("relay-{round}-{i}"), &Default::default())
                .await
                .unwrap();
            accounts_api
                .delete(&format!("tenant-{round}-{i}"), &Default::default())
                .await
                .unwrap();
        }
        assert!(
            eventually(Duration::from_secs(30), || async {
                series().await <= series_start
            })
            .await,
            "series left: {} (start {series_start})\n{}",
            series().await,
            op.metrics().await
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_end = op.rss_bytes();
        eprintln!(
            "soak round {round} of {N} accounts: RSS {:.1} -> {:.1} -> {:.1} MiB, account series {series_start} -> {series_full} -> {}",
            mib(rss_start),
            mib(rss_full),
            mib(rss_end),
            series().await
        );
        after_rounds.push(rss_end);
    }
    // Freed memory stays with the allocator for reuse; what matters is that it is reused.
    assert!(
        after_rounds[1] < after_rounds[0] + 3 * 1024 * 1024,
        "the second round grew the operator: {:.1} -> {:.1} MiB",
        mib(after_rounds[0]),
        mib(after_rounds[1])
    );
}

#[tokio::test]
async fn integration_certificates_for_another_host_expired_or_from_an_unknown_ca_stop_an_account_before_any_call()
 {
    let w = world("tls-failures", 2, 10).await;
    let presenting = |certificate| async move {
        let loopback = "127.0.0.1:0".parse().unwrap();
        Simulator::start_with(loopback, Scheme::Https(certificate), sim_config(1, 10))
            .await
            .unwrap()
    };
    let wrong_host = presenting(ServerCertificate::WrongHost).await;
    let expired = presenting(ServerCertificate::Expired).await;
    let unknown_ca = presenting(ServerCertificate::Valid).await;
    // The operator trusts the CAs that signed the wrong-host and the expired certificates (so
    // those fail for what they are), and the good simulator's; never the unknown one's.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca-bundle.crt");
    let pems = [&w.sim, &wrong_host, &expired].map(|s| s.ca_pem().unwrap().to_owned());
    std::fs::write(&bundle, pems.concat()).unwrap();

    accounts::secret(&w.client, &w.ns, "ak", AK, SK).await;
    for (name, sim) in [
        ("good", &w.sim),
        ("wrong-host", &wrong_host),
        ("expired", &expired),
        ("unknown-ca", &unknown_ca),
    ] {
        accounts::account(&w.client, &w.ns, name, &sim.base_url(), "ak", json!({})).await;
        let task_id = if name == "good" { "t1" } else { "t0" };
        let task = accounts::task(&format!("relay-{name}"), task_id, name);
        accounts::create_task(&w.client, &w.ns, &task).await;
    }
    let mut args = accounts::LOOPBACK.to_vec();
    args.extend(["--ca-bundle", bundle.to_str().unwrap()]);
    args.extend_from_slice(FAST_POLLING);
    let op = Operator::start(
        support::shared(),
        &w.ns,
        &args,
        &[("ALIBABA_CLOUD_STS_ENDPOINT", &w.sim.base_url())],
    );

    for (name, sim, cause) in [
        ("wrong-host", &wrong_host, "not valid for name"),
        ("expired", &expired, "expired"),
        ("unknown-ca", &unknown_ca, "UnknownIssuer"),
    ] {
        assert!(
            eventually(Duration::from_secs(20), || async {
                w.account_ready(name).await == Some(("False".into(), "TlsError".into()))
                    && w.task_condition(&format!("relay-{name}"), conditions::STALLED)
                        .await
                        == Some(("True".into(), "TlsError".into()))
            })
            .await,
            "{name}: {:?}\n{:?}\n{}",
            w.account_status(name).await,
            w.task_status(&format!("relay-{name}")).await,
            op.output()
        );
        let status = w.account_status(name).await;
        let message = &status.condition(conditions::READY).unwrap().message;
        assert!(message.contains(cause), "{name}: {message}");
        assert!(message.contains("--ca-bundle"), "{name}: {message}");
        // The handshake failed, so nothing (no signature, no AccessKeyId) was sent.
        assert_eq!(sim.stats(false).all.total, 0, "{name}");
        assert_eq!(sim.handshakes_completed(), 0, "{name}");
        assert!(sim.handshakes_failed() >= 1, "{name}");
    }

    // The good account works over TLS, and once the start's concurrent STS calls are done its
    // polls reuse the connections they opened: more calls, no new handshake.
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.account_ready("good").await == Some(("True".into(), "Ready".into()))
                && w.status_calls() >= 3
        })
        .await,
        "{:?}\n{}",
        w.account_status("good").await,
        op.output()
    );
    let (calls, handshakes) = (w.status_calls(), w.sim.handshakes_completed());
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.status_calls() >= calls + 6
        })
        .await
    );
    assert_eq!(
        w.sim.handshakes_completed(),
        handshakes,
        "{} calls after the start took new handshakes",
        w.status_calls() - calls
    );

    // Pointing the expired account at a good endpoint heals it, without touching its task.
    Api::<MpuRelayAccount>::namespaced(w.client.clone(), &w.ns)
        .patch(
            "expired",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"endpoint": w.sim.base_url()}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.account_ready("expired").await == Some(("True".into(), "Ready".into()))
                && w.task_status("relay-expired").await.phase
                    == Some(mpu_relay_operator::api::Phase::Running)
        })
        .await,
        "{:?}\n{:?}\n{}",
        w.account_status("expired").await,
        w.task_status("relay-expired").await,
        op.output()
    );
}
