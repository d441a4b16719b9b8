//! A [`Context`] over the fakes of [`ports`](super::ports) and in-memory caches, for unit tests
//! of the reconcile shells: no cluster, no cloud.
//!
//! It holds one `ClusterMpuRelayAccount` "live" that admits namespace `team` and resolves
//! without I/O (the operator's own static credentials and a declared account ID), so a task
//! of [`Fixture::task`] goes all the way to the fake cloud.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;

use super::account::{Accounts, Resolver, ResolverSettings};
use super::decide::PollConfig;
use super::ports::fakes::{FakeApiServer, FakeCloud};
use super::{Context, TaskKey};
use crate::api::{
    AccountKind, AccountRef, ClusterCredentials, ClusterMpuRelayAccount,
    ClusterMpuRelayAccountSpec, Connection, MpuRelayTask, MpuRelayTaskSpec, NamespaceCondition,
    OperatorCredentialsRef,
};
use crate::budget::Budgets;
use crate::cloud::access_key::Credentials;
use crate::cloud::client::{ClientOptions, CloudClient};
use crate::cloud::credentials::{OperatorCredentials, RrsaSettings};
use crate::cloud::endpoint::{AllowedEndpoints, Endpoint};
use crate::telemetry::Metrics;

pub const NAMESPACE: &str = "team";
pub const ACCOUNT: &str = "live";
/// A second cluster account, which admits `team` but does not let it manage relays.
pub const OBSERVE_ONLY: &str = "observe-only";

pub struct Fixture {
    pub ctx: Arc<Context>,
    pub cloud: Arc<FakeCloud>,
    pub api: Arc<FakeApiServer>,
    tasks: Writer<MpuRelayTask>,
}

impl Fixture {
    /// Needs a Tokio runtime (the unused kube client starts its buffer task).
    pub fn new() -> Fixture {
        let cloud = Arc::new(FakeCloud::default());
        let api = Arc::new(FakeApiServer::default());
        // Nothing listens there: every write goes through the fake API server, and the
        // account resolves without reading a Secret.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URL"));
        let client = kube::Client::try_from(config).expect("a client for an unused URL");
        let cloud_client = CloudClient::new(&ClientOptions::default()).expect("a cloud client");
        let sts = Endpoint::parse("https://sts.aliyuncs.com").expect("a valid endpoint");
        let budgets = Arc::new(Budgets::<TaskKey>::new(Instant::now()));
        let resolver = ResolverSettings {
            allowed: AllowedEndpoints::default(),
            sts: sts.clone(),
            operator_namespace: "mpu-relay-system".into(),
            operator_credentials: OperatorCredentials::Static(Credentials::access_key(
                "LTAI-test",
                "secret",
                None,
            )),
            rrsa: RrsaSettings {
                token_file: None,
                session_name: "test".into(),
                sts,
                cloud: cloud_client.clone(),
            },
        };
        let (cluster, mut cluster_writer) = reflector::store();
        cluster_writer.apply_watcher_event(&watcher::Event::Apply(account()));
        cluster_writer
            .apply_watcher_event(&watcher::Event::Apply(cluster_account(OBSERVE_ONLY, false)));
        let (namespaces, _) = reflector::store();
        let (tasks_reader, tasks) = reflector::store();
        let ctx = Arc::new(Context {
            accounts: Accounts {
                namespaced: Vec::new(),
                cluster,
                namespaces,
                namespaced_enabled: false,
                resolver: Resolver::new(client.clone(), cloud_client, resolver, budgets.clone()),
            },
            client,
            cloud: cloud.clone(),
            writer: api.clone(),
            budgets,
            actions: Default::default(),
            ownership: Arc::new(super::ownership::Ownership::signed_by(
                super::ownership::OwnershipKey::new(&[b'k'; 32]).expect("a valid key"),
            )),
            events: Default::default(),
            tasks: vec![tasks_reader],
            metrics: Arc::new(Metrics::default()),
            poll: PollConfig::default(),
            refused_writes: Default::default(),
            fence: None,
            task_counts: Default::default(),
        });
        Fixture {
            ctx,
            cloud,
            api,
            tasks,
        }
    }

    /// A task of namespace `team` that uses the account "live".
    pub fn task(name: &str) -> MpuRelayTask {
        let mut task = MpuRelayTask::new(
            name,
            MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: format!("task-{name}"),
                account_ref: Some(AccountRef {
                    kind: AccountKind::ClusterMpuRelayAccount,
                    name: ACCOUNT.into(),
                }),
                poll_interval: None,
                suspend: false,
                ..Default::default()
            },
        );
        task.metadata.namespace = Some(NAMESPACE.into());
        task.metadata.generation = Some(1);
        task
    }

    /// A task of [`Fixture::task`] that manages a single-stream relay.
    pub fn managed_task(name: &str) -> MpuRelayTask {
        let mut task = Fixture::task(name);
        task.spec.management_policy = crate::api::ManagementPolicy::Manage;
        task.spec.relay = Some(
            serde_json::from_value(serde_json::json!({
                "channelId": "lobby", "mixMode": "Single",
                "streamURL": format!("rtmp://push.example.com/live/{name}"),
                "singleSubParams": {"userId": "host-1"}
            }))
            .expect("a valid relay"),
        );
        task.metadata.uid = Some(format!("uid-{name}"));
        task.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(1_800_000_000).expect("a valid time"),
            ));
        task
    }

    /// Lists `tasks` into the task cache, as the watch's initial list would (the cache is
    /// ready after it, which kube-runtime's controller waits for).
    pub fn list(&mut self, tasks: &[MpuRelayTask]) {
        self.tasks.apply_watcher_event(&watcher::Event::Init);
        for task in tasks {
            self.tasks
                .apply_watcher_event(&watcher::Event::InitApply(task.clone()));
        }
        self.tasks.apply_watcher_event(&watcher::Event::InitDone);
    }

    /// The task cache, for a controller to read from.
    pub fn task_store(&self) -> reflector::Store<MpuRelayTask> {
        self.ctx.tasks[0].clone()
    }

    /// The budget of the account "live" (the fixture's only one), once a task resolved it.
    pub fn budget(&self) -> Option<Arc<crate::budget::Budget<TaskKey>>> {
        self.ctx.budgets.all().into_iter().next()
    }
}

/// The account every fixture task uses: a hundred calls a second, so tests do not wait long
/// for slots. It lets namespace `team` manage relays.
fn account() -> ClusterMpuRelayAccount {
    cluster_account(ACCOUNT, true)
}

/// A cluster account admitting namespace `team`, letting it manage relays or not.
pub fn cluster_account(name: &str, manage: bool) -> ClusterMpuRelayAccount {
    ClusterMpuRelayAccount::new(
        name,
        ClusterMpuRelayAccountSpec {
            connection: Connection {
                qps: 100,
                ..Connection::default()
            },
            credentials: ClusterCredentials {
                secret_ref: None,
                rrsa: None,
                operator: Some(OperatorCredentialsRef {}),
            },
            account_id: Some("1234567890".into()),
            conditions: vec![NamespaceCondition {
                namespaces: Some(vec![NAMESPACE.into()]),
                namespace_selector: None,
                manage,
                ..Default::default()
            }],
        },
    )
}

/// When `action` requeues (`None`: only on a change). kube-runtime's `Action` shows it only
/// through `Debug` (`Action { requeue_after: Some(1.5s) }`).
pub fn requeue_after(action: &kube::runtime::controller::Action) -> Option<std::time::Duration> {
    let text = format!("{action:?}");
    let inner = text.split("Some(").nth(1)?.split(')').next()?;
    let split = inner
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .expect("a unit");
    let (number, unit) = inner.split_at(split);
    let number: f64 = number.parse().expect("a number");
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        other => panic!("unit {other} in {text}"),
    };
    Some(std::time::Duration::from_secs_f64(number * scale))
}

/// The reason of condition `type_` in a written status.
pub fn condition_reason(status: &serde_json::Value, type_: &str) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
}
