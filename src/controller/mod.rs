//! The controller: watches MpuRelayTasks (and the Secrets they name), and reconciles each by
//! polling GetMPUTaskStatus within its account's budget and writing what it learns to `.status`.
//!
//! [`decide`] holds every decision; [`reconcile`] is the thin I/O around it, in this order:
//! credentials -> budget slot -> cloud call -> decide -> status patch (only on change) ->
//! events -> requeue.

pub mod decide;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{MpuRelayTask, Phase};
use crate::budget::{BudgetConfig, Budgets, Grant};
use crate::cloud::ErrorClass;
use crate::cloud::client::{CloudClient, StatusQuery};
use crate::cloud::credentials::{self, Credentials, OperatorCredentials};
use crate::telemetry::{self, AccountLabels, CallLabels, Metrics, ReasonLabels, ResultLabels};
use decide::{Decision, NextSync, Outcome, PollConfig, Severity, decide};

/// The field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "mpu-relay-operator";
/// Written by client-side apply: a copy of the whole object, useless to the controller.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The controller's name in events.
pub const CONTROLLER_NAME: &str = "mpu-relay-operator";

/// What the controller needs to know besides the objects.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    pub poll: PollConfig,
    pub budget: BudgetConfig,
    /// Reconciles running at once.
    pub concurrency: u16,
}

/// Why a reconcile failed. Cloud and credential problems are not errors here: they are
/// outcomes written to the status. What remains is the API server refusing our writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status failed: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("the object has no namespace")]
    MissingNamespace,
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::StatusWrite(_) => "StatusWriteFailed",
            Error::MissingNamespace => "MissingNamespace",
        }
    }
}

type TaskRef = ObjectRef<MpuRelayTask>;

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub cloud: CloudClient,
    pub operator_credentials: OperatorCredentials,
    /// One Secret cache per watched scope (a namespace, or the whole cluster).
    pub secrets: Vec<Store<Secret>>,
    /// One task cache per watched scope, for metrics.
    pub tasks: Vec<Store<MpuRelayTask>>,
    /// The budget of each account, keyed by account identity and endpoint.
    pub budgets: Mutex<Budgets<String, TaskRef>>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub poll: PollConfig,
}

impl Context {
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let key = ObjectRef::new(name).within(namespace);
        self.secrets.iter().find_map(|store| store.get(&key))
    }

    /// Refreshes the gauges derived from the caches; called before each scrape.
    pub fn refresh_gauges(&self) {
        let mut by_phase: HashMap<&'static str, i64> = HashMap::new();
        for store in &self.tasks {
            for task in store.state() {
                let phase = task
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map_or("Pending", Phase::as_str);
                *by_phase.entry(phase).or_default() += 1;
            }
        }
        self.metrics.tasks.clear();
        for (phase, count) in by_phase {
            self.metrics
                .tasks
                .get_or_create(&telemetry::PhaseLabels { phase })
                .set(count);
        }
        let snapshot = self.budgets.lock().expect("budget lock").snapshot();
        for (account, rate, members) in snapshot {
            let labels = AccountLabels {
                account: telemetry::account_alias(&account),
            };
            self.metrics.budget_rate.get_or_create(&labels).set(rate);
            self.metrics
                .budget_tasks
                .get_or_create(&labels)
                .set(members as i64);
        }
    }
}

/// Credentials for the task: its Secret, or the operator's own.
async fn credentials_for(
    task: &MpuRelayTask,
    namespace: &str,
    ctx: &Context,
) -> Result<Credentials, credentials::CredentialsError> {
    match &task.spec.credentials_secret_ref {
        Some(reference) => {
            let secret = ctx.secret(namespace, &reference.name);
            credentials::from_secret(secret.as_deref(), reference)
        }
        None => ctx.operator_credentials.get().await,
    }
}

/// One reconcile of one task. Never sleeps: a task without a budget slot is requeued for the
/// slot it was given.
pub async fn reconcile(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = task.namespace().ok_or(Error::MissingNamespace)?;
    let key = ObjectRef::from_obj(&*task);
    ctx.metrics.reconciles.inc();

    let outcome = if task.spec.suspend {
        ctx.budgets
            .lock()
            .expect("budget lock")
            .release_everywhere(&key);
        (Outcome::Suspended, Duration::ZERO, None)
    } else {
        match credentials_for(&task, &namespace, &ctx).await {
            Err(e) => (Outcome::NoCredentials(e), Duration::ZERO, None),
            Ok(creds) => match poll(&task, &key, &creds, &ctx).await {
                Polled::Wait(delay) => return Ok(Action::requeue(delay)),
                Polled::Done(outcome, floor, account) => (outcome, floor, Some(account)),
            },
        }
    };
    let (outcome, floor, account) = outcome;
    let decision = decide(&task, &outcome, jiff::Timestamp::now(), &ctx.poll, floor);
    apply(&task, &namespace, &decision, &ctx).await?;

    Ok(match decision.next {
        // When the budget sets the pace, come back a little early and queue for the next free
        // slot: the budget then never idles while tasks wait, and the queue keeps them in turn.
        NextSync::After(delay) if !floor.is_zero() && delay <= floor => {
            Action::requeue(delay.mul_f64(rand::rng().random_range(0.90..0.97)))
        }
        NextSync::After(delay) => Action::requeue(jitter(delay)),
        NextSync::OnChange => {
            if account.is_some() {
                ctx.budgets
                    .lock()
                    .expect("budget lock")
                    .release_everywhere(&key);
            }
            Action::await_change()
        }
    })
}

enum Polled {
    /// No slot yet: come back after this long.
    Wait(Duration),
    /// The call was made; here is what it gave, the account's floor and the account.
    Done(Outcome, Duration, String),
}

/// Takes a budget slot and, when it is this task's turn, calls the cloud.
async fn poll(task: &MpuRelayTask, key: &TaskRef, creds: &Credentials, ctx: &Context) -> Polled {
    // The cloud limits calls per account; a key used against two endpoints (regions) counts
    // twice, so the budget is per (account, endpoint).
    let account = format!("{}@{}", creds.account, task.spec.endpoint());
    let now = Instant::now();
    let floor = {
        let mut budgets = ctx.budgets.lock().expect("budget lock");
        let budget = budgets.account(&account);
        if let Grant::At(at) = budget.acquire(key, now) {
            debug!(
                wait_ms = (at - now).as_millis() as u64,
                "waiting for a budget slot"
            );
            return Polled::Wait(at.saturating_duration_since(now));
        }
        // Only a task that calls renews its membership and needs the floor (a sort over the
        // account's members), so a reconcile that just waits for its slot skips both.
        let desired = decide::sync_interval(
            task,
            task.status.as_ref().and_then(|s| s.phase),
            &ctx.poll,
            Duration::ZERO,
        )
        .unwrap_or(ctx.poll.stopped.max(ctx.poll.running));
        // A member counts until it has missed a few of its polls (then it is gone or moved).
        budget.floor(
            key,
            desired,
            now,
            now + desired * 3 + Duration::from_secs(60),
        )
    };

    let query = StatusQuery {
        endpoint: task.spec.endpoint(),
        api: task.spec.api,
        region_id: task.spec.region_id.as_deref(),
        app_id: &task.spec.app_id,
        task_id: &task.spec.task_id,
    };
    let started = Instant::now();
    let result = ctx.cloud.get_mpu_task_status(creds, &query).await;
    ctx.metrics
        .cloud_call_seconds
        .observe(started.elapsed().as_secs_f64());
    let alias = telemetry::account_alias(&account);
    let (result_label, reason) = match &result {
        Ok(_) => ("ok", decide::reasons::POLLED),
        Err(e) => (
            match e.class() {
                ErrorClass::Throttled => "throttled",
                ErrorClass::Transient => "transient",
                ErrorClass::Terminal => "terminal",
            },
            e.reason(),
        ),
    };
    ctx.metrics
        .cloud_calls
        .get_or_create(&CallLabels {
            account: alias.clone(),
            result: result_label,
            reason,
        })
        .inc();
    {
        let mut budgets = ctx.budgets.lock().expect("budget lock");
        let budget = budgets.account(&account);
        match &result {
            Ok(_) => budget.on_success(),
            Err(e) if e.class() == ErrorClass::Throttled => {
                budget.on_throttled(Instant::now());
                ctx.metrics
                    .throttled
                    .get_or_create(&AccountLabels { account: alias })
                    .inc();
                warn!(
                    rate = budget.rate(),
                    "the cloud throttled a call; slowing down"
                );
            }
            Err(_) => {}
        }
    }
    let outcome = match result {
        Ok(status) => Outcome::Polled(status),
        Err(e) => Outcome::CloudFailed(e),
    };
    Polled::Done(outcome, floor, account)
}

/// Writes the decided status (when it changed) and publishes the decided events.
async fn apply(
    task: &MpuRelayTask,
    namespace: &str,
    decision: &Decision,
    ctx: &Context,
) -> Result<(), Error> {
    if let Some(class) = decision.class {
        let condition = decision
            .status
            .condition(crate::api::conditions::SYNCED)
            .map(|c| c.message.as_str())
            .unwrap_or_default();
        warn!(?class, error = condition, "polling failed");
    }
    if decision.write {
        let api: Api<MpuRelayTask> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({
            "apiVersion": MpuRelayTask::api_version(&()),
            "kind": MpuRelayTask::kind(&()),
            "status": decision.status,
        });
        // force: the operator alone owns .status.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&task.name_any(), &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => {
                ctx.metrics
                    .status_writes
                    .get_or_create(&ResultLabels { result: "ok" })
                    .inc();
            }
            // Deleted meanwhile: nothing left to write to.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                ctx.metrics
                    .status_writes
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                return Err(Error::StatusWrite(e));
            }
        }
    }
    for event in &decision.events {
        let published = ctx
            .recorder
            .publish(
                &Event {
                    type_: match event.severity {
                        Severity::Normal => EventType::Normal,
                        Severity::Warning => EventType::Warning,
                    },
                    reason: event.reason.to_string(),
                    note: Some(event.note.chars().take(1024).collect()),
                    action: "Poll".to_string(),
                    secondary: None,
                },
                &task.object_ref(&()),
            )
            .await;
        if let Err(e) = published {
            // Events are best effort: losing one must not fail the reconcile.
            warn!(error = %e, reason = event.reason, "publishing an event failed");
        }
    }
    Ok(())
}

/// Spreads requeues by ±3 % so tasks created together drift apart.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(rand::rng().random_range(0.97..1.03))
}

/// Backoff of the watches (all of a controller's triggers share it): 0.5 s doubling to 5 s,
/// reset by any event.
///
/// kube's default grows to 30 s, and after an API server outage the first watches fail with
/// "resource version too old" while its cache warms up; each failure grows the delay, so spec
/// changes were seen half a minute late. Five seconds is cheap for one watch per scope.
#[derive(Default)]
struct WatchBackoff {
    next: Option<Duration>,
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let current = self.next.unwrap_or(Duration::from_millis(500));
        self.next = Some((current * 2).min(Duration::from_secs(5)));
        Some(jitter(current))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = None;
    }
}

/// What to do when a reconcile fails (the status write was refused).
pub fn error_policy(_task: Arc<MpuRelayTask>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: error.reason(),
        })
        .inc();
    warn!(error = %error, "reconcile failed");
    match error {
        // The API server is unavailable or overloaded: try again soon, spread out.
        Error::StatusWrite(_) => Action::requeue(jitter(Duration::from_secs(5))),
        // Cannot happen for a namespaced kind; do not spin on it.
        Error::MissingNamespace => Action::await_change(),
    }
}

/// The watched scopes: one per namespace, or the whole cluster.
fn scopes<K>(client: &kube::Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Everything `run` builds before it starts the controllers.
pub struct Prepared {
    pub context: Arc<Context>,
    controllers: Vec<Controller<MpuRelayTask>>,
}

/// Builds the controllers (one per watched scope) and their shared context.
pub fn prepare(
    client: kube::Client,
    cloud: CloudClient,
    operator_credentials: OperatorCredentials,
    settings: &ControllerSettings,
    metrics: Arc<Metrics>,
    instance: String,
) -> Prepared {
    let mut controllers = Vec::new();
    let mut secret_stores = Vec::new();
    let mut task_stores = Vec::new();
    let task_apis = scopes::<MpuRelayTask>(&client, &settings.namespaces);
    let secret_apis = scopes::<Secret>(&client, &settings.namespaces);
    for (tasks_api, secrets_api) in task_apis.into_iter().zip(secret_apis) {
        let (task_reader, task_writer) = reflector::store();
        // Only spec changes (generation) and annotations (sync-requested-at) trigger a
        // reconcile: our own status writes must not, or every write would cause another poll.
        let tasks = watcher(tasks_api, watcher::Config::default())
            // The cache holds every task: keep only what reconciles read. kubectl and Argo CD's
            // client-side apply store a whole copy of the object in this annotation.
            .modify(|t: &mut MpuRelayTask| {
                t.managed_fields_mut().clear();
                t.annotations_mut().remove(LAST_APPLIED);
            })
            .reflect(task_writer)
            .applied_objects()
            .predicate_filter(
                (predicates::generation as fn(&MpuRelayTask) -> Option<u64>)
                    .combine(predicates::annotations as fn(&MpuRelayTask) -> Option<u64>),
                Default::default(),
            );
        let (secret_reader, secret_writer) = reflector::store();
        let secrets = watcher(secrets_api, watcher::Config::default())
            .modify(|s: &mut Secret| {
                s.managed_fields_mut().clear();
                s.annotations_mut().clear();
            })
            .reflect(secret_writer)
            .touched_objects();
        let by_secret = task_reader.clone();
        let controller = Controller::for_stream(tasks, task_reader.clone())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency))
            .trigger_backoff(WatchBackoff::default())
            // A changed Secret retries every task that names it at once (a Stalled task
            // recovers without waiting for its slow retry).
            .watches_stream(secrets, move |secret: Secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                by_secret
                    .state()
                    .into_iter()
                    .filter(|t| {
                        t.namespace() == namespace
                            && t.spec
                                .credentials_secret_ref
                                .as_ref()
                                .is_some_and(|r| r.name == name)
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            });
        secret_stores.push(secret_reader);
        task_stores.push(task_reader);
        controllers.push(controller);
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(instance),
        },
    );
    let context = Arc::new(Context {
        client,
        cloud,
        operator_credentials,
        secrets: secret_stores,
        tasks: task_stores,
        budgets: Mutex::new(Budgets::new(settings.budget.clone())),
        recorder,
        metrics,
        poll: settings.poll.clone(),
    });
    Prepared {
        context,
        controllers,
    }
}

impl Prepared {
    /// Runs every controller until `shutdown` resolves; in-flight reconciles finish first.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ) {
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let runs = self.controllers.into_iter().map(|controller| {
            let ctx = self.context.clone();
            controller
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile_traced, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        debug!(error = %e, "controller event");
                    }
                })
        });
        futures::future::join_all(runs).await;
        info!("controllers stopped");
    }
}

/// [`reconcile`] inside a span naming the object, so every log line says which task it is about.
async fn reconcile_traced(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        namespace = task.namespace().unwrap_or_default(),
        name = task.name_any()
    );
    reconcile(task, ctx).instrument(span).await
}
