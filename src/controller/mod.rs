//! The controllers: tasks are polled through their account's budget and their status written;
//! accounts are resolved and their status (readiness, budget) published.
//!
//! - [`task`]: one task's reconcile, thin I/O around [`decide`] (pure decisions).
//! - [`account`]: which account a task may use, what an account resolves to, and the account
//!   reconcile around [`account_status`] (pure decisions).
//! - [`status`]: what both statuses share (condition statuses, reasons, events).
//! - [`schedule`]: when a task is polled (the gate before a call, the plan after a decision),
//!   pure but for the budget's own state; the pacing simulation drives it.
//! - [`wake`]: which tasks a change to an account or a namespace wakes (pure), and the routes.
//! - [`ports`]: the seams to the cloud and the API server, production types and test fakes.
//! - this module: the shared [`Context`], the watches and their triggers, and running it all.

pub mod account;
pub mod account_status;
pub mod decide;
#[cfg(test)]
mod fixtures;
pub mod managed;
pub mod ownership;
pub mod ports;
pub mod schedule;
pub mod spec_changes;
pub mod status;
pub mod task;
pub mod wake;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::api::ApiResource;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::api::{ClusterMpuRelayAccount, MpuRelayAccount, MpuRelayTask, Phase};
use crate::budget::{ActionBudgets, Budgets};
use crate::cloud::client::CloudClient;
use crate::telemetry::Metrics;
use account::{AccountKey, AccountObject, Accounts, Resolver, ResolverSettings};
use decide::PollConfig;
use ports::{ApiServer, MpuApi, StatusTarget, StatusWriter};
use status::{EventSpec, Severity};
use wake::{TaskRef, Triggers, task_facing};

/// The field manager of every status write (server-side apply).
pub const FIELD_MANAGER: &str = "mpu-relay-operator";
/// The finalizer on a managed task: its relay is stopped (or left, under `deletionPolicy: Orphan`)
/// before the object goes.
pub const FINALIZER: &str = "mpurelay.io/relay";
/// Written by client-side apply: a copy of the whole object, useless to the controller.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The controller's name in events.
pub const CONTROLLER_NAME: &str = "mpu-relay-operator";
/// Kubernetes refuses event notes over 1 KiB.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// What the controllers need to know besides the objects.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    pub poll: PollConfig,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Whether tasks may use `MpuRelayAccount`s (off: only cluster accounts, which an admin
    /// creates; the operator then reads Secrets only in the namespaces cluster accounts name).
    pub namespaced_accounts: bool,
    /// The key `status.management` is signed with (`--ownership-key-secret`), or its promise.
    pub ownership: Arc<ownership::Ownership>,
}

/// Why a reconcile failed. Cloud and account problems are not errors here: they are outcomes
/// written to the status. What remains is the API server refusing our writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status failed: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("the object has no namespace")]
    MissingNamespace,
    #[error("the reconcile panicked (a bug); retried with backoff")]
    Panicked,
    #[error("changing the finalizer failed: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("a managed task without spec.relay (the CRD requires it)")]
    MissingRelay,
}

impl Error {
    /// PascalCase, for the metric label and log lines.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::StatusWrite(_) => "StatusWriteFailed",
            Error::MissingNamespace => "MissingNamespace",
            Error::Panicked => "Panicked",
            Error::Finalizer(_) => "FinalizerWriteFailed",
            Error::MissingRelay => "MissingRelay",
        }
    }

    /// When to reconcile the object again.
    pub fn retry(&self) -> Retry {
        match self {
            // The API server is unavailable or overloaded: try again soon, spread out.
            Error::StatusWrite(_) => Retry::After(Duration::from_secs(5)),
            // Cannot happen for a namespaced kind; do not spin on it.
            Error::MissingNamespace => Retry::Never,
            // A bug: try again, slowly, in case it depended on a passing state.
            Error::Panicked => Retry::After(Duration::from_secs(60)),
            // A conflict (someone else changed the finalizers) or an unavailable API server.
            Error::Finalizer(_) => Retry::Backoff,
            // Only an object stored around the CRD's rule: a change fixes it.
            Error::MissingRelay => Retry::Never,
        }
    }
}

/// When a failed reconcile is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// After this long, spread ±3 %.
    After(Duration),
    /// After [`schedule::backoff`] for the attempt: 1 s doubling to a minute, spread.
    Backoff,
    /// Only when the object changes.
    Never,
}

/// What to do after `error`, the `attempts`-th failure in a row, with `spread` drawn
/// uniformly from [0, 1) for the jitter.
///
/// kube-runtime's `error_policy` is given no attempt count, and no error backs off today, so
/// [`error_policy`] passes 1.
pub fn policy(error: &Error, attempts: u32, spread: f64) -> Action {
    match error.retry() {
        Retry::After(delay) => Action::requeue(decide::jittered(delay, spread)),
        Retry::Backoff => Action::requeue(schedule::backoff(attempts, spread)),
        Retry::Never => Action::await_change(),
    }
}

/// A task as the budgets and the refused-write cache know it: `namespace/name` in one
/// allocation (a namespace has no `/`). They hold an entry or two per task, and an `ObjectRef`
/// is 96 bytes and two allocations: 2 MB of the operator's memory at 10 000 tasks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey(Box<str>);

/// `namespace/name`, as log lines name a task.
impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TaskKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        let mut key = String::with_capacity(namespace.len() + 1 + name.len());
        key.push_str(namespace);
        key.push('/');
        key.push_str(name);
        TaskKey(key.into_boxed_str())
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// For the account reconcile's `Api`s; every write goes through `writer`.
    pub client: kube::Client,
    /// GetMPUTaskStatus.
    pub cloud: Arc<dyn MpuApi>,
    /// Status writes and events.
    pub writer: Arc<dyn StatusWriter>,
    pub accounts: Accounts,
    pub budgets: Arc<Budgets<TaskKey>>,
    /// The managed-relay actions' budgets, per (cloud account, operation).
    pub actions: ActionBudgets,
    /// Signs and checks `status.management`, and makes the event callbacks' tokens.
    pub ownership: Arc<ownership::Ownership>,
    /// Event callbacks: accounts' subscriptions and the hints waiting.
    pub events: account::events::EventsHub,
    /// One task cache per watched scope.
    pub tasks: Vec<Store<MpuRelayTask>>,
    pub metrics: Arc<Metrics>,
    pub poll: PollConfig,
    /// Status writes the API server refused, retried without new cloud calls.
    pub refused_writes: task::RefusedWrites,
    /// With leader election: whether this process may call the cloud now (its Lease is
    /// provably its own); checked right before each call. `None`: always.
    pub fence: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// How many cached tasks reference each account, counted at most once per
    /// [`TASK_COUNTS_MAX_AGE`]: every account's status shows its count, and counting per account
    /// went through every task once per account (at 10 000 tasks over 100 accounts, the largest
    /// single cost in the profile of issue 11).
    pub task_counts: Mutex<Option<(Instant, TaskCounts)>>,
}

/// How many cached tasks reference each account.
pub type TaskCounts = Arc<HashMap<AccountKey, u32>>;

/// How stale the per-account task counts in account statuses may be.
const TASK_COUNTS_MAX_AGE: Duration = Duration::from_secs(1);

impl Context {
    /// Every cached task.
    pub(crate) fn all_tasks(&self) -> impl Iterator<Item = Arc<MpuRelayTask>> + '_ {
        self.tasks.iter().flat_map(|s| s.state())
    }

    /// Whether every task cache holds its first full list.
    pub fn tasks_synced(&self) -> bool {
        self.tasks
            .iter()
            .all(|store| store.wait_until_ready().now_or_never().is_some())
    }

    /// Tasks that reference `account`.
    pub fn tasks_of(&self, account: &AccountKey) -> Vec<TaskRef> {
        self.all_tasks()
            .filter(|t| {
                t.metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| account.is_referenced_by(t, ns))
            })
            .map(|t| ObjectRef::from_obj(&*t))
            .collect()
    }

    /// How many cached tasks reference each account (at most a second old).
    pub fn task_counts(&self) -> TaskCounts {
        let mut cached = self.task_counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, counts)) = cached.as_ref()
            && at.elapsed() < TASK_COUNTS_MAX_AGE
        {
            return counts.clone();
        }
        let mut counts: HashMap<AccountKey, u32> = HashMap::new();
        for task in self.all_tasks() {
            if let Some(key) = task
                .metadata
                .namespace
                .as_deref()
                .and_then(|ns| AccountKey::of_task(&task, ns))
            {
                let count = counts.entry(key).or_insert(0);
                *count = count.saturating_add(1);
            }
        }
        let counts = Arc::new(counts);
        *cached = Some((Instant::now(), counts.clone()));
        counts
    }

    /// Refreshes the gauges derived from the caches; called before each scrape.
    pub fn refresh_gauges(&self) {
        let mut by_phase: HashMap<&'static str, i64> = HashMap::new();
        let mut oldest_sync: Option<i64> = None;
        for task in self.all_tasks() {
            if !task.spec.suspend
                && let Some(last) = task.status.as_ref().and_then(|s| s.last_sync_time.as_ref())
            {
                let seconds = last.0.as_second();
                oldest_sync = Some(oldest_sync.map_or(seconds, |o| o.min(seconds)));
            }
            let phase = task
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .map_or("Pending", Phase::as_str);
            *by_phase.entry(phase).or_default() += 1;
        }
        self.metrics.set_tasks_by_phase(by_phase);
        self.metrics.set_oldest_sync(oldest_sync);
        let now = std::time::Instant::now();
        self.metrics.set_budgets(
            self.budgets
                .all()
                .into_iter()
                .map(|b| (b.alias().to_string(), b.view(now))),
        );
    }

    /// Publishes events on `object`, best effort.
    async fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, events: &[EventSpec]) {
        if events.is_empty() {
            return;
        }
        let reference = object.object_ref(&());
        for event in events {
            let published = self
                .writer
                .publish(
                    &Event {
                        type_: match event.severity {
                            Severity::Normal => EventType::Normal,
                            Severity::Warning => EventType::Warning,
                        },
                        reason: event.reason.to_string(),
                        note: Some(truncate_bytes(&event.note, EVENT_NOTE_MAX_BYTES)),
                        action: event.action.clone(),
                        secondary: None,
                    },
                    &reference,
                )
                .await;
            if let Err(e) = published {
                // Events are best effort: losing one must not fail the reconcile.
                warn!(
                    object = %Named(object),
                    error = %e,
                    reason = event.reason,
                    "publishing an event failed"
                );
            }
        }
    }

    /// Writes `status` to `object`, in the scope of `api`, with server-side apply (the
    /// operator alone owns `.status`).
    async fn write_status<K>(
        &self,
        api: Api<K>,
        object: &K,
        status: &impl Serialize,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.apply_status(api.namespace(), object, status).await
    }

    /// Writes `status` to `object` (in its own namespace) with server-side apply.
    async fn write_status_of<K>(&self, object: &K, status: &impl Serialize) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let namespace = object.meta().namespace.as_deref();
        self.apply_status(namespace, object, status).await
    }

    async fn apply_status<K>(
        &self,
        namespace: Option<&str>,
        object: &K,
        status: &impl Serialize,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let resource = ApiResource::erase::<K>(&());
        let name = object.meta().name.as_deref().unwrap_or_default();
        let target = StatusTarget {
            resource: &resource,
            namespace,
            name,
        };
        match self.writer.apply_status(target, &patch).await {
            Ok(_) => {
                self.metrics.record_status_write(&K::kind(&()), true);
                Ok(())
            }
            // Deleted meanwhile: nothing left to write to.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.metrics.record_status_write(&K::kind(&()), false);
                Err(Error::StatusWrite(e))
            }
        }
    }
}

/// Runs `fut`, turning a panic inside it into an error that names it: one object's bug must
/// not take the controller (and every other object's reconciles) down with it.
/// One task's reconcile: a managed task (or one letting go of its relay) its own way
/// ([`managed::reconcile`]), any other, and a managed one that is observed for now (suspended,
/// account unusable), the observe path ([`task::reconcile`]).
pub async fn reconcile_task(task: Arc<MpuRelayTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    if task.spec.managed() || !task.finalizers().is_empty() {
        let namespace = task.namespace().ok_or(Error::MissingNamespace)?;
        let key = TaskKey::new(
            &namespace,
            task.metadata.name.as_deref().unwrap_or_default(),
        );
        if let Some(action) = managed::reconcile(&task, &namespace, &key, &ctx).await? {
            ctx.metrics.record_reconcile();
            return Ok(action);
        }
    }
    task::reconcile(task, ctx).await
}

pub async fn guarded<T>(fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            truncate_bytes(&text, 512)
        })
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// Spreads requeues by ±3 % so objects created together drift apart ([`decide::jittered`]
/// with a fresh draw).
fn jitter(delay: Duration) -> Duration {
    decide::jittered(delay, spread())
}

/// A draw from [0, 1) for [`schedule`]'s jitter.
fn spread() -> f64 {
    rand::rng().random_range(0.0..1.0)
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

/// An object as log lines name it: `Kind namespace/name` (`Kind name` for a cluster object).
///
/// Log lines of a reconcile carry it as a field rather than through a span: kube-runtime's
/// `reconciling object` span at info is created for every reconcile and entered and left at
/// every poll of it, work spent on every poll for the rare line logged, so the logging setup
/// leaves it off ([`crate::telemetry::log_filter`]).
pub struct Named<'a, K>(pub &'a K);

impl<K: Resource<DynamicType = ()>> std::fmt::Display for Named<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meta = self.0.meta();
        let name = meta.name.as_deref().unwrap_or_default();
        match meta.namespace.as_deref() {
            Some(namespace) => write!(f, "{} {namespace}/{name}", K::kind(&())),
            None => write!(f, "{} {name}", K::kind(&())),
        }
    }
}

/// What to do when a reconcile fails (the status write was refused).
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.record_reconcile_error(error.reason());
    warn!(object = %Named(&*object), error = %error, "reconcile failed");
    policy(error, 1, spread())
}

/// The watched scopes: one per namespace, or the whole cluster.
fn scopes<K>(client: &kube::Client, namespaces: &[String]) -> Vec<(Option<String>, Api<K>)>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![(None, Api::all(client.clone()))]
    } else {
        namespaces
            .iter()
            .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
            .collect()
    }
}

/// Everything `run` builds before it starts the controllers.
pub struct Prepared {
    pub context: Arc<Context>,
    runs: Vec<BoxFuture<'static, ()>>,
    /// Tells every controller to stop taking work (in-flight reconciles finish).
    stop: tokio::sync::watch::Sender<bool>,
    /// Resolves when every cache has its first full list.
    synced: BoxFuture<'static, ()>,
    health: Option<crate::telemetry::Health>,
}

/// Resolves once the controllers are told to stop; every controller and watch shares it.
type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Builds the controllers, their watches and their shared context.
pub fn prepare(
    client: kube::Client,
    cloud: CloudClient,
    resolver: ResolverSettings,
    settings: &ControllerSettings,
    metrics: Arc<Metrics>,
    instance: String,
    fence: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
) -> Prepared {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown: Shutdown = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|s| *s).await;
    }
    .boxed()
    .shared();
    let budgets = Arc::new(Budgets::new(Instant::now()));
    let (cluster_reader, cluster_writer) = reflector::store();
    let (namespaces_reader, namespaces_writer) = reflector::store();
    let tasks = Caches::of(scopes::<MpuRelayTask>(&client, &settings.namespaces));
    let accounts = Caches::of(if settings.namespaced_accounts {
        scopes::<MpuRelayAccount>(&client, &settings.namespaces)
    } else {
        Vec::new()
    });
    let (triggers, trigger_streams) = routes(&tasks.scopes);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(instance),
        },
    );
    let context = Arc::new(Context {
        accounts: Accounts {
            namespaced: accounts.readers.clone(),
            cluster: cluster_reader.clone(),
            namespaces: namespaces_reader,
            namespaced_enabled: settings.namespaced_accounts,
            resolver: Resolver::new(client.clone(), cloud.clone(), resolver, budgets.clone()),
        },
        client: client.clone(),
        cloud: Arc::new(cloud),
        writer: Arc::new(ApiServer {
            client: client.clone(),
            recorder,
        }),
        budgets,
        actions: ActionBudgets::default(),
        ownership: settings.ownership.clone(),
        events: Default::default(),
        tasks: tasks.readers.clone(),
        metrics,
        poll: settings.poll.clone(),
        refused_writes: Default::default(),
        task_counts: Default::default(),
        fence,
    });

    context.events.set_triggers(triggers.clone());
    let config = ControllerConfig::default().concurrency(settings.concurrency);
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for ((api, writer, reader), trigger) in tasks.each().zip(trigger_streams) {
        runs.push(task_controller(
            api, writer, reader, trigger, &context, &config, &shutdown,
        ));
    }
    // Cluster accounts: one controller; their changes wake the tasks that use them.
    runs.push(account_controller(
        Api::<ClusterMpuRelayAccount>::all(client.clone()),
        cluster_writer,
        cluster_reader,
        &context,
        &triggers,
        &config,
        &shutdown,
    ));
    // Namespaced accounts, when enabled: one controller per scope.
    for (api, writer, reader) in accounts.each() {
        runs.push(account_controller(
            api, writer, reader, &context, &triggers, &config, &shutdown,
        ));
    }
    runs.push(namespace_watch(
        &client,
        namespaces_writer,
        context.clone(),
        triggers,
        shutdown,
    ));
    Prepared {
        synced: stores_synced(context.clone()),
        context,
        runs,
        stop,
        health: None,
    }
}

/// The caches of one kind, one per watched scope, and the API each watches.
struct Caches<K: Resource<DynamicType = ()> + Clone + 'static> {
    scopes: Vec<Option<String>>,
    apis: Vec<Api<K>>,
    readers: Vec<Store<K>>,
    writers: Vec<reflector::store::Writer<K>>,
}

impl<K> Caches<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn of(scopes: Vec<(Option<String>, Api<K>)>) -> Self {
        let mut caches = Caches {
            scopes: Vec::new(),
            apis: Vec::new(),
            readers: Vec::new(),
            writers: Vec::new(),
        };
        for (scope, api) in scopes {
            let (reader, writer) = reflector::store();
            caches.scopes.push(scope);
            caches.apis.push(api);
            caches.readers.push(reader);
            caches.writers.push(writer);
        }
        caches
    }

    /// Each scope's API, cache writer and cache reader.
    fn each(self) -> impl Iterator<Item = (Api<K>, reflector::store::Writer<K>, Store<K>)> {
        self.apis
            .into_iter()
            .zip(self.writers)
            .zip(self.readers)
            .map(|((api, writer), reader)| (api, writer, reader))
    }
}

/// One wake-up route per task scope, and the stream each task controller reads it from.
fn routes(scopes: &[Option<String>]) -> (Triggers, Vec<mpsc::UnboundedReceiver<TaskRef>>) {
    let mut triggers = Triggers::default();
    let mut streams = Vec::new();
    for scope in scopes {
        let (tx, rx) = mpsc::unbounded();
        triggers.routes.push((scope.clone(), tx));
        streams.push(rx);
    }
    (triggers, streams)
}

/// The task controller of one scope.
///
/// Only spec changes (generation) and annotations (sync-requested-at) trigger a reconcile:
/// our own status writes must not, or every write would cause another poll. Account and
/// namespace changes arrive through `trigger`.
fn task_controller(
    api: Api<MpuRelayTask>,
    writer: reflector::store::Writer<MpuRelayTask>,
    reader: Store<MpuRelayTask>,
    trigger: mpsc::UnboundedReceiver<TaskRef>,
    ctx: &Arc<Context>,
    config: &ControllerConfig,
    shutdown: &Shutdown,
) -> BoxFuture<'static, ()> {
    let tasks = watcher(api, watcher::Config::default())
        // The cache holds every task: keep only what reconciles read. kubectl and Argo CD's
        // client-side apply store a whole copy of the object in this annotation.
        .modify(|t: &mut MpuRelayTask| {
            t.managed_fields_mut().clear();
            t.annotations_mut().remove(LAST_APPLIED);
        })
        .reflect(writer)
        .applied_objects();
    // What passes on is what the controller queues, and its queue keys each task by the reference
    // it makes of the object: with the uid and resourceVersion (kube-runtime's `Extra`, which no
    // lookup compares), two strings held twice (its map and its delay queue), 1 MiB at 10 000
    // tasks. The queue needs only namespace and name; the store above keeps the whole object.
    let tasks = spec_changes::filter(tasks).map(|event| event.map(for_the_queue));
    Box::pin(
        Controller::for_stream(tasks, reader)
            .with_config(config.clone())
            .trigger_backoff(WatchBackoff::default())
            .reconcile_on(trigger)
            .graceful_shutdown_on(shutdown.clone())
            .run(task::reconcile_traced, error_policy, ctx.clone())
            .for_each(log_controller_event),
    )
}

/// A task as the controller's queue needs it: the uid and resourceVersion are dropped, so the
/// reference it queues holds neither (see `task_controller`).
fn for_the_queue(mut task: MpuRelayTask) -> MpuRelayTask {
    task.metadata.uid = None;
    task.metadata.resource_version = None;
    task
}

/// The controller of one account kind in one scope; the account's changes wake its tasks.
fn account_controller<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    reader: Store<K>,
    ctx: &Arc<Context>,
    triggers: &Triggers,
    config: &ControllerConfig,
    shutdown: &Shutdown,
) -> BoxFuture<'static, ()>
where
    K: AccountResource,
{
    let stream = account_watch(api, writer, ctx.clone(), triggers.clone());
    Box::pin(
        Controller::for_stream(stream, reader)
            .with_config(config.clone())
            .trigger_backoff(WatchBackoff::default())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                |a, ctx| account::reconcile_traced(K::account_object(a), ctx),
                error_policy,
                ctx.clone(),
            )
            .for_each(log_controller_event),
    )
}

/// The watch of one account kind: cached, with deletions forgotten (budget, metrics) and
/// task-facing changes sent to the tasks that use the account.
fn account_watch<K: AccountResource>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    ctx: Arc<Context>,
    triggers: Triggers,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    let seen: Arc<Mutex<HashMap<AccountKey, u64>>> = Arc::default();
    watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|a: &mut K| {
            a.meta_mut().managed_fields = None;
            a.meta_mut().annotations = None;
        })
        .reflect(writer)
        .inspect(move |event| {
            let Ok(event) = event else { return };
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                watcher::Event::Delete(a) => {
                    let key = a.account_key();
                    seen.remove(&key);
                    ctx.accounts.resolver.forget(&key);
                    ctx.events.set_account(&key, None);
                    ctx.metrics.forget_account_object(key.label());
                    triggers.send(ctx.tasks_of(&key));
                }
                watcher::Event::Apply(a) | watcher::Event::InitApply(a) => {
                    let key = a.account_key();
                    let hash = task_facing(a, a.account_status());
                    if wake::account_changed(&mut seen, key.clone(), hash) {
                        triggers.send(ctx.tasks_of(&key));
                    }
                }
                _ => {}
            }
        })
        .touched_objects()
}

/// Namespaces (labels only), for the namespaceSelector of cluster accounts: a relabelled
/// namespace wakes its tasks that use a cluster account.
fn namespace_watch(
    client: &kube::Client,
    writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    ctx: Arc<Context>,
    triggers: Triggers,
    shutdown: Shutdown,
) -> BoxFuture<'static, ()> {
    let mut labels_seen: HashMap<String, u64> = HashMap::new();
    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .modify(|ns| {
        ns.managed_fields_mut().clear();
        ns.annotations_mut().clear();
    })
    .reflect(writer)
    .applied_objects()
    .for_each(move |ns| {
        if let Ok(ns) = ns {
            let name = ns.name_any();
            let hash = predicates::labels(&ns).unwrap_or_default();
            if wake::relabelled(&mut labels_seen, &name, hash) {
                triggers.send(
                    ctx.all_tasks()
                        .filter(|t| wake::wakes_on_relabel(t, &name))
                        .map(|t| ObjectRef::from_obj(&*t)),
                );
            }
        }
        futures::future::ready(())
    });
    Box::pin(async move {
        tokio::select! {
            _ = namespaces => {},
            _ = shutdown => {},
        }
    })
}

/// Resolves when every cache has its first full list.
fn stores_synced(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    async move {
        for store in &ctx.tasks {
            let _ = store.wait_until_ready().await;
        }
        for store in &ctx.accounts.namespaced {
            let _ = store.wait_until_ready().await;
        }
        let _ = ctx.accounts.cluster.wait_until_ready().await;
        let _ = ctx.accounts.namespaces.wait_until_ready().await;
    }
    .boxed()
}

/// What the account controllers need of either account kind.
pub trait AccountResource:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Both kinds share one status type.
    fn account_status(&self) -> Option<&crate::api::AccountStatus>;
    fn account_object(this: Arc<Self>) -> AccountObject;
    fn account_key(&self) -> AccountKey;
}

impl AccountResource for MpuRelayAccount {
    fn account_status(&self) -> Option<&crate::api::AccountStatus> {
        self.status.as_ref()
    }
    fn account_object(this: Arc<Self>) -> AccountObject {
        AccountObject::Namespaced(this)
    }
    fn account_key(&self) -> AccountKey {
        AccountKey::Namespaced {
            namespace: self.namespace().unwrap_or_default(),
            name: self.name_any(),
        }
    }
}

impl AccountResource for ClusterMpuRelayAccount {
    fn account_status(&self) -> Option<&crate::api::AccountStatus> {
        self.status.as_ref()
    }
    fn account_object(this: Arc<Self>) -> AccountObject {
        AccountObject::Cluster(this)
    }
    fn account_key(&self) -> AccountKey {
        AccountKey::Cluster {
            name: self.name_any(),
        }
    }
}

async fn log_controller_event<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        debug!(error = %e, "controller event");
    }
}

impl Prepared {
    /// Reports readiness (every cache synced) and liveness (the controllers run) to `health`.
    pub fn with_health(mut self, health: crate::telemetry::Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Runs every controller until `shutdown` resolves; in-flight reconciles finish first.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let health = self.health;
        if let Some(h) = &health {
            h.set_ready(false);
        }
        let ready = {
            let health = health.clone();
            let synced = self.synced;
            async move {
                synced.await;
                if let Some(h) = health {
                    info!("caches synced: ready");
                    h.set_ready(true);
                }
                std::future::pending::<()>().await
            }
        };
        let all = futures::future::join_all(self.runs);
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => {
                // Nothing asked them to stop: the process is no longer doing its job.
                warn!("the controllers stopped on their own");
                if let Some(h) = &health {
                    h.set_stopped();
                }
            },
            _ = ready => {},
            _ = shutdown => {
                let _ = self.stop.send(true);
                all.await;
            }
        }
        info!("controllers stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refers_to_a_task_by_namespace_and_name_alone() {
        let mut task = fixtures::Fixture::task("t1");
        task.metadata.uid = Some("6f1c2e9a-0c3d-4b1e-9a53-2f4e1d7c8b90".into());
        task.metadata.resource_version = Some("12345".into());
        let queued = ObjectRef::from_obj(&for_the_queue(task.clone()));
        assert_eq!(queued.extra.uid, None);
        assert_eq!(queued.extra.resource_version, None);
        // The same task for every lookup: the store's key keeps both, and compares equal.
        assert!(ObjectRef::from_obj(&task).extra.uid.is_some());
        assert_eq!(queued, ObjectRef::from_obj(&task));
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_an_error_naming_the_panic_not_a_crash() {
        let caught = guarded(async {
            if std::hint::black_box(true) {
                panic!("overflow when adding duration to instant");
            }
        })
        .await;
        assert_eq!(
            caught.unwrap_err(),
            "overflow when adding duration to instant"
        );
        let fine = guarded(async { 7 }).await;
        assert_eq!(fine, Ok(7));
    }

    #[tokio::test]
    async fn other_reconciles_go_on_while_one_panics() {
        let results = futures::future::join_all((0..5).map(|i| {
            guarded(async move {
                tokio::task::yield_now().await;
                assert!(i != 2, "task {i} is broken");
                i
            })
        }))
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
        assert!(
            results[2]
                .as_ref()
                .unwrap_err()
                .contains("task 2 is broken")
        );
    }

    fn refused() -> Error {
        Error::StatusWrite(ports::fakes::refusal(503))
    }

    #[test]
    fn each_error_has_a_pascal_case_reason_and_a_retry() {
        assert_eq!(refused().reason(), "StatusWriteFailed");
        assert_eq!(refused().retry(), Retry::After(Duration::from_secs(5)));
        assert_eq!(Error::MissingNamespace.reason(), "MissingNamespace");
        assert_eq!(Error::MissingNamespace.retry(), Retry::Never);
        assert_eq!(Error::Panicked.reason(), "Panicked");
        assert_eq!(
            Error::Panicked.retry(),
            Retry::After(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_refused_status_write_is_retried_in_five_seconds_spread() {
        let five = Duration::from_secs(5);
        assert_eq!(policy(&refused(), 1, 0.5), Action::requeue(five));
        assert_eq!(
            policy(&refused(), 1, 0.0),
            Action::requeue(five.mul_f64(0.97))
        );
        assert_eq!(
            policy(&refused(), 9, 1.0),
            Action::requeue(five.mul_f64(1.03))
        );
    }

    #[test]
    fn a_panicked_reconcile_is_retried_in_a_minute_spread() {
        let minute = Duration::from_secs(60);
        assert_eq!(policy(&Error::Panicked, 1, 0.5), Action::requeue(minute));
        assert_eq!(
            policy(&Error::Panicked, 3, 0.0),
            Action::requeue(minute.mul_f64(0.97))
        );
    }

    #[test]
    fn an_object_without_a_namespace_waits_for_a_change_instead_of_spinning() {
        assert_eq!(
            policy(&Error::MissingNamespace, 1, 0.5),
            Action::await_change()
        );
    }

    #[tokio::test]
    async fn error_policy_counts_the_error_by_reason_and_follows_the_policy() {
        let fx = fixtures::Fixture::new();
        let task = Arc::new(fixtures::Fixture::task("a"));
        let action = error_policy(task.clone(), &Error::MissingNamespace, fx.ctx.clone());
        assert_eq!(action, Action::await_change());
        let action = error_policy(task.clone(), &refused(), fx.ctx.clone());
        let after = fixtures::requeue_after(&action).unwrap();
        assert!((4.85..=5.15).contains(&after.as_secs_f64()), "{action:?}");
        let action = error_policy(task, &Error::Panicked, fx.ctx.clone());
        let after = fixtures::requeue_after(&action).unwrap();
        assert!((58.2..=61.8).contains(&after.as_secs_f64()), "{action:?}");
        let metrics = fx.ctx.metrics.encode();
        for reason in ["MissingNamespace", "StatusWriteFailed", "Panicked"] {
            assert!(metrics.contains(reason), "{reason}: {metrics}");
        }
    }

    #[test]
    fn event_notes_are_cut_to_bytes_on_a_character_boundary() {
        let note = "é".repeat(600); // 1200 bytes
        let cut = truncate_bytes(&note, EVENT_NOTE_MAX_BYTES);
        assert!(cut.len() <= EVENT_NOTE_MAX_BYTES);
        assert_eq!(cut.len(), 1024);
        let odd = format!("x{note}");
        let cut = truncate_bytes(&odd, EVENT_NOTE_MAX_BYTES);
        assert_eq!(cut.len(), 1023, "a two-byte character is not split");
        assert_eq!(truncate_bytes("short", 1024), "short");
    }
}
