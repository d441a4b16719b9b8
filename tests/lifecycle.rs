//! The lifecycle faults users hit, end to end: the operator binary against the real
//! kube-apiserver and the cloud simulator over TLS, while the objects it depends on change under
//! it. An account deleted under its tasks, a Secret rotated or fixed, short-lived STS
//! credentials and an STS outage past their expiry, one AccessKeyId with two secrets.
//!
//! Each test says what the user does, and what must (not) happen without a restart.

mod support;

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use mpu_cloud_sim::{
    Action, FaultKind, FaultSpec, RoleConfig, Simulator, SimulatorConfig, SimulatorHandle,
};
use mpu_relay_operator::api::{AccountStatus, MpuRelayAccount, MpuRelayTask, conditions};
use serde_json::json;
use support::accounts;
use support::operator::{FAST_POLLING, Operator, eventually};

const AK: &str = "LTAI5tLifecycleOne";
const SK: &str = "lifecycle-secret-one-7c1e";
/// A second key of the same Alibaba account, for rotation.
const AK2: &str = "LTAI5tLifecycleTwo";
const SK2: &str = "lifecycle-secret-two-92ad";
const UID: &str = "1234567890123456";

struct World {
    client: kube::Client,
    ns: String,
}

impl World {
    async fn new(test: &str) -> World {
        let client = support::shared().client().await;
        let ns = support::test_namespace(&client, test).await;
        World { client, ns }
    }

    fn tasks(&self) -> Api<MpuRelayTask> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn accounts(&self) -> Api<MpuRelayAccount> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn task_condition(&self, name: &str, type_: &str) -> Option<(String, String)> {
        self.tasks()
            .get(name)
            .await
            .ok()
            .and_then(|t| t.status)
            .and_then(|s| {
                s.condition(type_)
                    .map(|c| (c.status.clone(), c.reason.clone()))
            })
    }

    async fn all_tasks(&self, names: &[String], type_: &str, want: (&str, &str)) -> bool {
        for name in names {
            if self.task_condition(name, type_).await != Some((want.0.into(), want.1.into())) {
                return false;
            }
        }
        true
    }

    async fn account_status(&self, name: &str) -> AccountStatus {
        self.accounts()
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

    /// A Secret `ak` with the first key, an account `live` using it, and `n` tasks `relay-<i>`
    /// of cloud tasks `t<i>` on it; returns the tasks' names.
    async fn live_account_with_tasks(&self, sim: &SimulatorHandle, n: usize) -> Vec<String> {
        accounts::secret(&self.client, &self.ns, "ak", AK, SK).await;
        accounts::account(
            &self.client,
            &self.ns,
            "live",
            &sim.base_url(),
            "ak",
            json!({}),
        )
        .await;
        let relays = names("relay", n);
        for (i, name) in relays.iter().enumerate() {
            let task = accounts::task(name, &format!("t{i}"), "live");
            accounts::create_task(&self.client, &self.ns, &task).await;
        }
        relays
    }

    /// Replaces the Secret's data, as `kubectl apply` of a new version does.
    async fn rewrite_secret(&self, name: &str, data: &[(&str, &str)]) {
        let mut secret: Secret = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(name)
            .await
            .unwrap();
        secret.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret.metadata.managed_fields = None;
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .replace(name, &Default::default(), &secret)
            .await
            .unwrap();
    }
}

/// A simulator with `tasks` running tasks `t0..` of app `app`, and the two keys of one account.
fn two_key_config(tasks: usize) -> SimulatorConfig {
    serde_json::from_value(json!({
        "accounts": [
            {"accessKeyId": AK, "accessKeySecret": SK, "uid": UID},
            {"accessKeyId": AK2, "accessKeySecret": SK2, "uid": UID},
        ],
        "tasks": (0..tasks).map(|i| json!({"appId": "app", "taskId": format!("t{i}"), "status": 1}))
            .collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn integration_an_account_deleted_under_its_tasks_stalls_them_and_recreating_it_resumes_them_untouched()
 {
    let w = World::new("account-deleted").await;
    let sim = Simulator::start(two_key_config(3))
        .await
        .expect("simulator");
    let relays = w.live_account_with_tasks(&sim, 3).await;
    let op = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(20), || w.all_tasks(
            &relays,
            conditions::READY,
            ("True", "Running")
        ))
        .await,
        "{}",
        op.output()
    );
    let budget_series = || async {
        op.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("mpu_relay_budget_tasks{") && !l.ends_with(" 0"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        !budget_series().await.is_empty(),
        "the test needs a budget to exist"
    );
    let generations: Vec<Option<i64>> = {
        let mut g = Vec::new();
        for name in &relays {
            g.push(w.tasks().get(name).await.unwrap().metadata.generation);
        }
        g
    };

    // The admin (or a GitOps prune) deletes the account; the tasks stay.
    w.accounts()
        .delete("live", &Default::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || w.all_tasks(
            &relays,
            conditions::STALLED,
            ("True", "AccountNotFound")
        ))
        .await,
        "{:?}\n{}",
        w.task_condition("relay-0", conditions::STALLED).await,
        op.output()
    );
    // No calls through the deleted account, and its budget is given back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sim.stats(false).all.total;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sim.stats(false).all.total,
        before,
        "calls were made for tasks whose account is gone"
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            budget_series().await.is_empty()
        })
        .await,
        "the deleted account's budget is still held: {:?}",
        budget_series().await
    );

    // The account comes back (the same manifest applied again): the tasks resume on their own.
    w.accounts().delete("live", &Default::default()).await.ok();
    accounts::account(&w.client, &w.ns, "live", &sim.base_url(), "ak", json!({})).await;
    assert!(
        eventually(Duration::from_secs(30), || w.all_tasks(
            &relays,
            conditions::READY,
            ("True", "Running")
        ))
        .await,
        "{:?}\n{}",
        w.task_condition("relay-0", conditions::STALLED).await,
        op.output()
    );
    assert_eq!(
        w.task_condition("relay-0", conditions::STALLED)
            .await
            .map(|c| c.0),
        Some("False".into())
    );
    for (name, generation) in relays.iter().zip(generations) {
        assert_eq!(
            w.tasks().get(name).await.unwrap().metadata.generation,
            generation,
            "{name}'s spec was touched"
        );
    }
    assert!(!budget_series().await.is_empty());
}

#[tokio::test]
async fn integration_a_rotated_secret_signs_the_next_calls_with_the_new_key_without_a_restart() {
    let w = World::new("secret-rotated").await;
    let sim = Simulator::start(two_key_config(2))
        .await
        .expect("simulator");
    let relays = w.live_account_with_tasks(&sim, 2).await;
    let mut op = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    let pid = op.pid();
    let calls = |key: &str| sim.stats(false).accounts[key].calls.ok;
    assert!(
        eventually(Duration::from_secs(20), || async { calls(AK) >= 4 }).await,
        "{}",
        op.output()
    );
    assert_eq!(calls(AK2), 0);

    // The tenant rotates: the Secret now holds the account's second key.
    w.rewrite_secret("ak", &[("accessKeyId", AK2), ("accessKeySecret", SK2)])
        .await;
    assert!(
        eventually(Duration::from_secs(20), || async { calls(AK2) >= 2 }).await,
        "the new key is never used\n{}",
        op.output()
    );
    // Once the new key is in use the old one is not used again: nothing older than the
    // Secret's current version is cached.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = calls(AK);
    let new = calls(AK2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls(AK), old, "the old key was used after the rotation");
    assert!(calls(AK2) >= new + 4, "polling slowed after the rotation");
    assert_eq!(
        sim.stats(false).all.throttled,
        0,
        "one budget across the two keys"
    );
    assert!(op.exited().is_none(), "the operator restarted");
    assert_eq!(op.pid(), pid);
    assert!(
        w.all_tasks(&relays, conditions::READY, ("True", "Running"))
            .await
    );
    assert!(!op.output().contains(SK2) && !op.output().contains(SK));
}

#[tokio::test]
async fn integration_a_fixed_secret_recovers_its_account_from_secret_invalid_and_from_auth_failed()
{
    let w = World::new("secret-fixed").await;
    let sim = Simulator::start(two_key_config(1))
        .await
        .expect("simulator");
    // A first version with a typo in a key name.
    accounts::secret_with(
        &w.client,
        &w.ns,
        "ak",
        json!({"accessKeyID": AK, "accessKeySecret": SK}),
    )
    .await;
    accounts::account(&w.client, &w.ns, "live", &sim.base_url(), "ak", json!({})).await;
    accounts::create_task(&w.client, &w.ns, &accounts::task("relay", "t0", "live")).await;
    let op = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            w.account_ready("live").await == Some(("False".into(), "SecretInvalid".into()))
        })
        .await,
        "{:?}\n{}",
        w.account_status("live").await,
        op.output()
    );
    assert_eq!(
        sim.stats(false).all.total,
        0,
        "a call with an invalid Secret"
    );

    // Fixed: the account and its task recover without a restart or an edit of either.
    w.rewrite_secret("ak", &[("accessKeyId", AK), ("accessKeySecret", SK)])
        .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.account_ready("live").await == Some(("True".into(), "Ready".into()))
                && w.task_condition("relay", conditions::READY).await
                    == Some(("True".into(), "Running".into()))
        })
        .await,
        "{:?} {:?}\n{}",
        w.account_status("live").await,
        w.task_condition("relay", conditions::READY).await,
        op.output()
    );

    // A wrong secret for the right key: Alibaba refuses the signature.
    w.rewrite_secret(
        "ak",
        &[("accessKeyId", AK), ("accessKeySecret", "not-the-secret")],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.account_ready("live").await == Some(("False".into(), "AuthFailed".into()))
        })
        .await,
        "{:?}\n{}",
        w.account_status("live").await,
        op.output()
    );
    // Fixed again.
    w.rewrite_secret("ak", &[("accessKeyId", AK), ("accessKeySecret", SK)])
        .await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            w.account_ready("live").await == Some(("True".into(), "Ready".into()))
                && w.task_condition("relay", conditions::READY).await
                    == Some(("True".into(), "Running".into()))
        })
        .await,
        "{:?} {:?}\n{}",
        w.account_status("live").await,
        w.task_condition("relay", conditions::READY).await,
        op.output()
    );
    assert!(!op.output().contains("not-the-secret"));
}

#[tokio::test]
async fn integration_one_access_key_id_with_two_secrets_never_shares_a_budget_and_the_wrong_one_fails_auth()
 {
    let w = World::new("same-key-two-secrets").await;
    let sim = Simulator::start(two_key_config(4))
        .await
        .expect("simulator");
    accounts::secret(&w.client, &w.ns, "right", AK, SK).await;
    // Someone knows the AccessKeyId (it is not a secret) and hopes to ride on its budget.
    accounts::secret(&w.client, &w.ns, "guess", AK, "a-guessed-secret").await;
    let url = sim.base_url();
    accounts::account(&w.client, &w.ns, "right", &url, "right", json!({})).await;
    accounts::account(&w.client, &w.ns, "guess", &url, "guess", json!({})).await;
    for i in 0..4 {
        let account = if i < 2 { "right" } else { "guess" };
        accounts::create_task(
            &w.client,
            &w.ns,
            &accounts::task(&format!("relay-{i}"), &format!("t{i}"), account),
        )
        .await;
    }
    let op = Operator::with_simulator(support::shared(), &w.ns, &sim, FAST_POLLING, &[]);
    assert!(
        eventually(Duration::from_secs(20), || async {
            w.account_ready("guess").await == Some(("False".into(), "AuthFailed".into()))
                && w.account_ready("right").await == Some(("True".into(), "Ready".into()))
        })
        .await,
        "{:?} {:?}\n{}",
        w.account_status("right").await,
        w.account_status("guess").await,
        op.output()
    );
    // The right account's budget counts its own two tasks only; the guess has none. Budget
    // figures reach the account's status at its refresh, every 15 s: allow two.
    assert!(
        eventually(Duration::from_secs(35), || async {
            w.account_status("right")
                .await
                .budget
                .is_some_and(|b| b.tasks == 2)
        })
        .await,
        "{:?}",
        w.account_status("right").await
    );
    assert_eq!(w.account_status("guess").await.budget, None);
    // The guess's tasks are never polled; the right ones keep their pace.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polled = |task: &str| {
        sim.stats(true)
            .tasks
            .unwrap()
            .iter()
            .find(|t| t.task_id == task)
            .map_or(0, |t| t.calls)
    };
    let before = polled("t0");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(polled("t0") >= before + 3, "the right account slowed");
    assert_eq!(
        polled("t2") + polled("t3"),
        0,
        "a task of the guess was polled"
    );
    for name in ["relay-2", "relay-3"] {
        let ready = w.task_condition(name, conditions::READY).await;
        assert_ne!(ready, Some(("True".into(), "Running".into())), "{name}");
    }
    assert!(!op.output().contains("a-guessed-secret"));
}

const ROLE: &str = "acs:ram::1234567890123456:role/mpu-relay";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
/// The session lifetime the simulator's role issues: Alibaba's shortest is 900 s, far too long
/// to watch in a test.
const SESSION_SECONDS: u64 = 20;

#[tokio::test]
async fn integration_short_sts_sessions_are_refreshed_before_use_and_an_sts_outage_past_expiry_sends_no_expired_call()
 {
    let w = World::new("sts-expiry").await;
    let mut config = two_key_config(2);
    config.roles = vec![RoleConfig {
        role_arn: ROLE.into(),
        account: AK.into(),
        oidc_provider_arn: Some(PROVIDER.into()),
        max_session_seconds: 3600,
    }];
    config
        .role_session_seconds
        .insert(ROLE.into(), SESSION_SECONDS);
    let sim = Simulator::start(config).await.expect("simulator");
    let account = format!("{}-rrsa", w.ns);
    accounts::cluster_account(
        &w.client,
        &account,
        json!({"endpoint": sim.base_url(),
               "credentials": {"rrsa": {"roleArn": ROLE, "oidcProviderArn": PROVIDER}},
               "conditions": [{"namespaces": [w.ns]}]}),
    )
    .await;
    let relays = names("relay", 2);
    for (i, name) in relays.iter().enumerate() {
        let task = accounts::task_with(
            name,
            json!({"appId": "app", "taskId": format!("t{i}"),
                   "accountRef": {"kind": "ClusterMpuRelayAccount", "name": account}}),
        );
        accounts::create_task(&w.client, &w.ns, &task).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln").unwrap();
    let op = Operator::with_simulator(
        support::shared(),
        &w.ns,
        &sim,
        FAST_POLLING,
        &[("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap())],
    );
    assert!(
        eventually(Duration::from_secs(20), || w.all_tasks(
            &relays,
            conditions::READY,
            ("True", "Running")
        ))
        .await,
        "{}",
        op.output()
    );
    let expired_refusals = || {
        sim.stats(false)
            .all
            .codes
            .get("InvalidSecurityToken.Expired")
            .copied()
            .unwrap_or(0)
    };

    // Three session lifetimes: each session is replaced before it expires, once, not per call.
    let issued_before = sim.stats(false).sts.issued;
    let polls_before = sim.stats(false).accounts[AK].calls.ok;
    tokio::time::sleep(Duration::from_secs(3 * SESSION_SECONDS)).await;
    let issued = sim.stats(false).sts.issued - issued_before;
    let polls = sim.stats(false).accounts[AK].calls.ok - polls_before;
    eprintln!(
        "{polls} polls and {issued} STS sessions in {} s of {SESSION_SECONDS} s sessions",
        3 * SESSION_SECONDS
    );
    assert!(
        (3..=6).contains(&issued),
        "{issued} sessions issued in three lifetimes"
    );
    assert!(polls >= 60, "polling stalled around a refresh: {polls}");
    assert_eq!(
        expired_refusals(),
        0,
        "a call was signed with an expired session"
    );
    assert!(
        w.all_tasks(&relays, conditions::READY, ("True", "Running"))
            .await
    );

    // STS goes down for longer than a session lives: the credentials in hand are used while
    // they last, then not at all; the tasks say why, and recover when STS does.
    sim.add_fault_for(
        &Action::STS,
        FaultSpec {
            kind: FaultKind::Http5xx {
                code: Some("ServiceUnavailable".into()),
                status: Some(503),
            },
            account: None,
            count: None,
            duration_ms: Some(2_000 * SESSION_SECONDS),
        },
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(2 * SESSION_SECONDS), || w.all_tasks(
            &relays,
            conditions::SYNCED,
            ("False", "RrsaError")
        ))
        .await,
        "{:?}\n{}",
        w.task_condition("relay-0", conditions::SYNCED).await,
        op.output()
    );
    let polls_at_expiry = sim.stats(false).accounts[AK].calls.total;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sim.stats(false).accounts[AK].calls.total,
        polls_at_expiry,
        "calls were made without usable credentials"
    );
    assert_eq!(
        expired_refusals(),
        0,
        "a call was signed with an expired session"
    );
    assert!(
        eventually(Duration::from_secs(3 * SESSION_SECONDS), || w.all_tasks(
            &relays,
            conditions::READY,
            ("True", "Running")
        ))
        .await,
        "{:?}\n{}",
        w.task_condition("relay-0", conditions::SYNCED).await,
        op.output()
    );
    assert_eq!(expired_refusals(), 0);
}
