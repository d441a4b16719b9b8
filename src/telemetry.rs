//! Operations: the Prometheus metrics, logging setup, and the HTTP server for `/metrics`,
//! `/healthz` and `/readyz`.
//!
//! Labels are bounded: an account appears as a non-secret alias (a hash of its identity, never
//! the AccessKeyId), errors as their PascalCase reason, never as text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Sets up `tracing` to stderr. `RUST_LOG` filters (default `info`); see [`log_filter`].
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let directives = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("RUST_LOG={directives:?} is not a valid filter ({e}); logging at info");
        EnvFilter::new(log_filter(None))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The logging filter for a `RUST_LOG` value (`info` when unset): kube-runtime's controller
/// logs only warnings unless the value names `kube_runtime` itself. Its `reconciling object`
/// span, at info, wraps every reconcile and is entered and left at every poll of it (an earlier
/// profile at 10 000 tasks put it and a span of ours at a fifth of the CPU per poll; at 1 000
/// tasks and one reconcile per poll it is within the profile's run-to-run noise, docs/benchmarks-history.md);
/// the operator's own log lines name their object in a field instead.
pub fn log_filter(rust_log: Option<&str>) -> String {
    let base = rust_log
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("info");
    if base.contains("kube_runtime") {
        base.to_string()
    } else {
        format!("{base},kube_runtime::controller=warn")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub account: String,
    /// `ok`, or the error class: `throttled`, `transient`, `terminal`.
    pub result: &'static str,
    /// `Polled`, or the error's reason.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `startMPUTask`, `updateMPUTask` or `stopMPUTask`.
    pub operation: &'static str,
    /// `ok`, `throttled`, `refused` (the cloud said no) or `error` (no answer).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    /// `hinted` (a task was woken), `duplicate` (its MsgId seen), `unknown_task` (no task
    /// watches it), `bad_token`, `bad_body` (unreadable or over 64 KiB), `wrong_app`; and
    /// `replayed` (a task hinted from the delivery log: a callback that did not get through).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusWriteLabels {
    pub result: &'static str,
    /// `MpuRelayTask`, `MpuRelayAccount` or `ClusterMpuRelayAccount`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountObjectLabels {
    /// The account object: `namespace/name`, or `name` for a ClusterMpuRelayAccount. Not
    /// `account`, which is always a cloud account's alias (`acct-1a2b3c4d`).
    pub account_object: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric the operator exports, prefixed `mpu_relay_`. Fields are private: callers say
/// what happened (`record_call`, ...), and the names and labels are decided here.
pub struct Metrics {
    registry: Registry,
    cloud_calls: Family<CallLabels, Counter>,
    cloud_call_seconds: Histogram,
    throttled: Family<AccountLabels, Counter>,
    budget_rate: Family<AccountLabels, FloatGauge>,
    budget_limit: Family<AccountLabels, FloatGauge>,
    budget_used: Family<AccountLabels, FloatGauge>,
    budget_tasks: Family<AccountLabels, Gauge>,
    account_ready: Family<AccountObjectLabels, Gauge>,
    tasks: Family<PhaseLabels, Gauge>,
    oldest_sync: Gauge,
    status_writes: Family<StatusWriteLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    callbacks: Family<CallbackLabels, Counter>,
    change_detected_seconds: Histogram,
    reconcile_errors: Family<ReasonLabels, Counter>,
    reconciles: Counter,
    reconcile_panics: Counter,
    /// Every call series by cloud account alias, so the series of a cloud account no task uses
    /// any more can be dropped (the families cannot be iterated).
    call_series:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<CallLabels>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mpu_relay");
        let cloud_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "cloud_calls",
            "GetMPUTaskStatus calls by cloud account, result and reason",
            cloud_calls.clone(),
        );
        let cloud_call_seconds = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "cloud_call_duration_seconds",
            "Latency of GetMPUTaskStatus calls",
            cloud_call_seconds.clone(),
        );
        let throttled = Family::<AccountLabels, Counter>::default();
        registry.register(
            "cloud_throttled",
            "Calls the cloud answered with a throttling error, by cloud account",
            throttled.clone(),
        );
        let budget_rate = Family::default();
        registry.register(
            "budget_rate",
            "Calls per second the cloud account's budget currently allows",
            budget_rate.clone(),
        );
        let budget_limit = Family::default();
        registry.register(
            "budget_limit",
            "The cloud account's limit, calls per second",
            budget_limit.clone(),
        );
        let budget_used = Family::default();
        registry.register(
            "budget_used",
            "Calls per second made through the cloud account's budget (last 10 s)",
            budget_used.clone(),
        );
        let budget_tasks = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "budget_tasks",
            "Tasks polled through the cloud account's budget",
            budget_tasks.clone(),
        );
        let account_ready = Family::<AccountObjectLabels, Gauge>::default();
        registry.register(
            "account_ready",
            "1 when the account object is Ready, 0 when not",
            account_ready.clone(),
        );
        let tasks = Family::<PhaseLabels, Gauge>::default();
        registry.register("tasks", "MpuRelayTasks by phase", tasks.clone());
        let oldest_sync = Gauge::default();
        registry.register(
            "oldest_sync_timestamp_seconds",
            "Unix time of the oldest status.lastSyncTime among watched, unsuspended tasks (0: none)",
            oldest_sync.clone(),
        );
        let status_writes = Family::<StatusWriteLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status patches by result (ok, error) and kind of object",
            status_writes.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "actions",
            "Managed-relay actions sent to the cloud, by operation and result",
            actions.clone(),
        );
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "callbacks",
            "Event callbacks received, by what came of them",
            callbacks.clone(),
        );
        let change_detected_seconds = Histogram::new([
            0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]);
        registry.register(
            "change_detected_seconds",
            "From a change's event (its callback's EventTs, or its arrival) to the status write it led to",
            change_detected_seconds.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error, by reason",
            reconcile_errors.clone(),
        );
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let reconcile_panics = Counter::default();
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked (a bug); the object is retried, the others go on",
            reconcile_panics.clone(),
        );
        Metrics {
            registry,
            cloud_calls,
            cloud_call_seconds,
            throttled,
            budget_rate,
            budget_limit,
            budget_used,
            budget_tasks,
            account_ready,
            tasks,
            oldest_sync,
            status_writes,
            actions,
            callbacks,
            change_detected_seconds,
            reconcile_errors,
            reconciles,
            reconcile_panics,
            call_series: Default::default(),
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One GetMPUTaskStatus call through the budget `account` (its alias) and what it gave.
    pub fn record_call(
        &self,
        account: &str,
        result: &Result<crate::cloud::MpuTaskStatus, crate::cloud::CloudError>,
        elapsed: std::time::Duration,
    ) {
        use crate::cloud::ErrorClass;
        self.cloud_call_seconds.observe(elapsed.as_secs_f64());
        let (result_label, reason) = match result {
            Ok(_) => ("ok", "Polled"),
            Err(e) => (
                match e.class() {
                    ErrorClass::Throttled => "throttled",
                    ErrorClass::Transient => "transient",
                    ErrorClass::Terminal => "terminal",
                },
                e.reason(),
            ),
        };
        let account = account.to_string();
        let labels = CallLabels {
            account: account.clone(),
            result: result_label,
            reason,
        };
        let known = self.cloud_calls.get(&labels).is_some();
        if !known {
            self.call_series
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(account.clone())
                .or_default()
                .insert(labels.clone());
        }
        self.cloud_calls.get_or_create(&labels).inc();
        if result_label == "throttled" {
            self.throttled
                .get_or_create(&AccountLabels { account })
                .inc();
        }
    }

    pub fn record_reconcile(&self) {
        self.reconciles.inc();
    }

    pub fn record_action(&self, operation: &'static str, result: &'static str) {
        self.actions
            .get_or_create(&ActionLabels { operation, result })
            .inc();
    }

    pub fn record_callback(&self, result: &'static str) {
        self.callbacks
            .get_or_create(&CallbackLabels { result })
            .inc();
    }

    pub fn record_change_detected(&self, seconds: f64) {
        self.change_detected_seconds.observe(seconds);
    }

    pub fn record_panic(&self) {
        self.reconcile_panics.inc();
    }

    pub fn record_status_write(&self, kind: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.status_writes
            .get_or_create(&StatusWriteLabels {
                result,
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn record_reconcile_error(&self, reason: &'static str) {
        self.reconcile_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn record_account_ready(&self, account_object: String, ready: bool) {
        self.account_ready
            .get_or_create(&AccountObjectLabels { account_object })
            .set(i64::from(ready));
    }

    /// The account object is gone: drop its series.
    pub fn forget_account_object(&self, account_object: String) {
        self.account_ready
            .remove(&AccountObjectLabels { account_object });
    }

    /// The oldest last sync of the tasks, as Unix seconds (`None`: no task has synced).
    pub fn set_oldest_sync(&self, seconds: Option<i64>) {
        self.oldest_sync.set(seconds.unwrap_or(0));
    }

    /// Replaces the task-by-phase counts.
    pub fn set_tasks_by_phase(&self, counts: impl IntoIterator<Item = (&'static str, i64)>) {
        self.tasks.clear();
        for (phase, count) in counts {
            self.tasks.get_or_create(&PhaseLabels { phase }).set(count);
        }
    }

    /// Replaces the budget gauges with the budgets that exist now; the call counters of cloud
    /// accounts that have no budget any more (no account object uses them) are dropped too, so
    /// series do not pile up as tenants come and go.
    pub fn set_budgets(
        &self,
        budgets: impl IntoIterator<Item = (String, crate::budget::BudgetView)>,
    ) {
        self.budget_rate.clear();
        self.budget_limit.clear();
        self.budget_used.clear();
        self.budget_tasks.clear();
        let budgets: Vec<_> = budgets.into_iter().collect();
        {
            let live: std::collections::HashSet<&str> =
                budgets.iter().map(|(alias, _)| alias.as_str()).collect();
            let mut series = self.call_series.lock().unwrap_or_else(|e| e.into_inner());
            series.retain(|alias, labels| {
                if live.contains(alias.as_str()) {
                    return true;
                }
                for l in labels.iter() {
                    self.cloud_calls.remove(l);
                }
                self.throttled.remove(&AccountLabels {
                    account: alias.clone(),
                });
                false
            });
        }
        for (alias, view) in budgets {
            let labels = AccountLabels { account: alias };
            self.budget_rate.get_or_create(&labels).set(view.rate);
            self.budget_limit.get_or_create(&labels).set(view.limit);
            self.budget_used.get_or_create(&labels).set(view.used);
            self.budget_tasks
                .get_or_create(&labels)
                .set(i64::try_from(view.members).unwrap_or(i64::MAX));
        }
    }
}

/// Health as the endpoints report it: ready (`/readyz`), and alive (`/healthz`): the
/// controllers still run and the runtime still ticks.
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    origin: std::time::Instant,
    /// Milliseconds since `origin` of the last heartbeat.
    beat: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: Arc::default(),
            stopped: Arc::default(),
            origin: std::time::Instant::now(),
            beat: Arc::default(),
        }
    }
}

/// A runtime that has not ticked for this long is stuck.
const HEARTBEAT_STALE: std::time::Duration = std::time::Duration::from_secs(30);

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.is_alive()
    }

    /// The controllers ended while they should be running: the process needs a restart.
    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Records that the runtime still runs tasks (called every second by [`Health::tick`]).
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.beat.store(ms, Ordering::Relaxed);
    }

    /// Beats every second until the process ends.
    pub async fn tick(self) {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            interval.tick().await;
            self.beat();
        }
    }

    pub fn is_alive(&self) -> bool {
        let last = std::time::Duration::from_millis(self.beat.load(Ordering::Relaxed));
        !self.stopped.load(Ordering::Relaxed)
            && self.origin.elapsed().saturating_sub(last) < HEARTBEAT_STALE
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves. `before_scrape`
/// refreshes gauges derived from the operator's caches.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    before_scrape: Arc<dyn Fn() + Send + Sync>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                let refresh = before_scrape.clone();
                async move {
                    refresh();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get({
                let health = health.clone();
                move || {
                    let alive = health.is_alive();
                    async move {
                        if alive {
                            (StatusCode::OK, "ok")
                        } else {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "controllers stopped or stuck",
                            )
                        }
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = health.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_runtime_s_per_reconcile_span_is_off_unless_the_filter_names_it() {
        assert_eq!(log_filter(None), "info,kube_runtime::controller=warn");
        assert_eq!(log_filter(Some("  ")), "info,kube_runtime::controller=warn");
        assert_eq!(
            log_filter(Some("info,mpu_relay_operator=debug")),
            "info,mpu_relay_operator=debug,kube_runtime::controller=warn"
        );
        assert_eq!(
            log_filter(Some("info,kube_runtime=debug")),
            "info,kube_runtime=debug"
        );
        // Every filter made is valid for tracing's EnvFilter.
        for value in [None, Some("warn"), Some("mpu_relay_operator=trace")] {
            assert!(tracing_subscriber::EnvFilter::try_new(log_filter(value)).is_ok());
        }
    }

    #[test]
    fn call_series_of_a_cloud_account_without_a_budget_are_dropped() {
        let m = Metrics::default();
        let answer = Ok(crate::cloud::MpuTaskStatus {
            request_id: "r".into(),
            status: 1,
        });
        m.record_call("acct-gone", &answer, std::time::Duration::ZERO);
        m.record_call("acct-kept", &answer, std::time::Duration::ZERO);
        let view = crate::budget::BudgetView {
            members: 1,
            limit: 10.0,
            rate: 10.0,
            used: 0.0,
            throttled: 0,
            slowed: false,
            floor: std::time::Duration::ZERO,
        };
        m.set_budgets([("acct-kept".to_string(), view)]);
        let text = m.encode();
        assert!(text.contains("acct-kept"), "{text}");
        assert!(!text.contains("acct-gone"), "{text}");
    }

    #[test]
    fn account_ready_is_labelled_by_account_object_not_by_cloud_account() {
        let m = Metrics::default();
        m.record_account_ready("team-a/acme".into(), false);
        let text = m.encode();
        assert!(
            text.contains("mpu_relay_account_ready{account_object=\"team-a/acme\"} 0"),
            "{text}"
        );
        m.forget_account_object("team-a/acme".into());
        assert!(!m.encode().contains("team-a/acme"));
    }

    #[test]
    fn health_is_alive_while_it_beats_and_ready_only_when_said() {
        let h = Health::default();
        h.beat();
        assert!(h.is_alive());
        assert!(!h.is_ready(), "not ready before the caches synced");
        h.set_ready(true);
        assert!(h.is_ready());
        h.set_stopped();
        assert!(!h.is_alive());
        assert!(!h.is_ready());
    }

    #[test]
    fn metrics_are_prefixed_and_labelled_by_alias() {
        let m = Metrics::default();
        let answer = Ok(crate::cloud::MpuTaskStatus {
            request_id: "r".into(),
            status: 1,
        });
        m.record_call("acct-1a2b3c4d", &answer, std::time::Duration::ZERO);
        let text = m.encode();
        assert!(text.contains("mpu_relay_cloud_calls_total{"), "{text}");
        assert!(text.contains("account=\"acct-1a2b3c4d\""), "{text}");
        assert!(text.contains("result=\"ok\""), "{text}");
    }
}
