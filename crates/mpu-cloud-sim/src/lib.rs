//! A simulator of Alibaba Cloud's GetMPUTaskStatus endpoint (and of STS AssumeRoleWithOIDC and
//! GetCallerIdentity, and of the managed relays' StartLiveMPUTask, UpdateLiveMPUTask,
//! StopLiveMPUTask and ListRtcMPUTaskDetail), for tests, the demo and benchmarks where Alibaba Cloud cannot be reached. It
//! checks V1 and V3 signatures, timestamps, nonces and STS tokens, enforces each Alibaba account's
//! (uid's) QPS over any sliding second, serves per-task statuses, injects faults per action and
//! counts calls, per second and per User-Agent (admin API under `/admin/`). It serves HTTPS with
//! a CA generated for the run ([`tls`]), as the cloud does, or plain HTTP where a test is about HTTP.
//!
//! Submodules: [`config`] (the file), [`limiter`] (sliding windows), [`state`] (the request logic,
//! pure), [`relay`] (the rules of managed relays: start, update, stop, idle stop; pure),
//! [`events`] (subscriptions and callbacks; pure), [`delivery`] (POSTs the callbacks),
//! [`faults`], [`stats`], [`wire`] (codes and bodies), [`tls`] (certificates), `http`
//! (server) and `admin` (routes).

mod admin;
pub mod config;
pub mod delivery;
pub mod events;
pub mod faults;
mod http;
pub mod limiter;
pub mod relay;
pub mod state;
pub mod stats;
pub mod tls;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::paths as admin_paths;
pub use config::{AccountConfig, ConfigError, RoleConfig, SimulatorConfig, TaskConfig, UidConfig};
pub use faults::{FaultKind, FaultRequest, FaultRule, FaultSpec};
pub use state::{AccountView, StatsView, StsStats, TaskView, UidView};
pub use stats::{Bucket, CallStatsView};
pub use tls::{ServerCertificate, Tls, TlsError};
pub use wire::Action;

use state::{Clock, State};

/// What can stop the simulator from starting.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("simulator cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid fault: {0}")]
    Fault(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How the simulator speaks to its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// HTTPS with a CA generated for the run, presenting this certificate: what the cloud does.
    Https(ServerCertificate),
    /// Plain HTTP, for tests about HTTP itself and for measuring what TLS costs.
    Http,
}

impl Default for Scheme {
    fn default() -> Self {
        Scheme::Https(ServerCertificate::Valid)
    }
}

/// Entry point for tests: `Simulator::start(config).await?` gives a running HTTPS simulator on a
/// free loopback port; give clients [`SimulatorHandle::ca_pem`].
pub struct Simulator;

impl Simulator {
    /// Starts on `127.0.0.1:0`, over HTTPS with a valid certificate.
    pub async fn start(config: SimulatorConfig) -> Result<SimulatorHandle, SimulatorError> {
        Self::start_with(loopback(), Scheme::default(), config).await
    }

    /// Starts on `127.0.0.1:0` over plain HTTP.
    pub async fn start_http(config: SimulatorConfig) -> Result<SimulatorHandle, SimulatorError> {
        Self::start_with(loopback(), Scheme::Http, config).await
    }

    /// Starts on `listen`, speaking `scheme`.
    pub async fn start_with(
        listen: SocketAddr,
        scheme: Scheme,
        config: SimulatorConfig,
    ) -> Result<SimulatorHandle, SimulatorError> {
        config.validate()?;
        let tls = match scheme {
            Scheme::Https(certificate) => Some(Tls::generate(certificate)?),
            Scheme::Http => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SimulatorError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind {
                addr: listen,
                source,
            })?;
        let shared = Arc::new(Shared::new(&config));
        let (shutdown, watcher) = watch::channel(false);
        let server = tokio::spawn(http::serve(
            listener,
            tls.as_ref().map(Tls::acceptor),
            shared.clone(),
            watcher,
        ));
        tokio::spawn(delivery::run(shared.clone(), shutdown.subscribe()));
        tracing::info!(%addr, https = tls.is_some(), "simulator listening");
        Ok(SimulatorHandle {
            addr,
            tls,
            shared,
            shutdown,
            server,
        })
    }
}

/// The state plus the monotonic origin every request's clock reading is taken from.
pub(crate) struct Shared {
    state: Mutex<State>,
    started: Instant,
    /// Connections accepted since the start: how a test tells reuse from reconnecting.
    connections: AtomicU64,
    /// TLS handshakes completed, and those that failed (the client refused the certificate,
    /// or spoke something else).
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: &SimulatorConfig) -> Self {
        // The monotonic origin is now: the state's first reading is 0 us on it.
        let now = Clock {
            wall: jiff::Timestamp::now(),
            mono_micros: 0,
        };
        Self {
            state: Mutex::new(State::new(config, now)),
            started: Instant::now(),
            connections: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn clock(&self) -> Clock {
        Clock {
            wall: jiff::Timestamp::now(),
            mono_micros: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// The state; a handler that panicked mid-update cannot leave it worse than a fuzzer could,
    /// so a poisoned lock is taken over rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulator. Dropping it stops the server (open connections finish their request).
pub struct SimulatorHandle {
    addr: SocketAddr,
    tls: Option<Tls>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl SimulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (`http://` when serving plain HTTP), the endpoint to give a
    /// client.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA a client must trust to reach this simulator (PEM); `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(Tls::ca_pem)
    }

    /// `127.0.0.1:<port>`, the `host` a V3 signer signs.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// TCP connections the server has accepted since it started.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed since the start: a client that reuses its connections makes one
    /// per connection, not one per call.
    pub fn handshakes_completed(&self) -> u64 {
        self.shared.handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed since the start (e.g. the client refused the certificate).
    pub fn handshakes_failed(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::Relaxed)
    }

    /// Sets a task's status (creating it), as `PUT /admin/tasks/{app}/{task}` does.
    pub fn set_task_status(&self, app_id: &str, task_id: &str, status: i64) {
        let now = self.shared.clock();
        self.shared.lock().set_task(app_id, task_id, status, now);
    }

    /// Sets how many users are in `channel_id` of `app_id`, as
    /// `PUT /admin/channels/{app}/{channel}` does: a relay starts only in a channel with users,
    /// and stops by itself after its idle time once the channel empties.
    pub fn set_channel_users(&self, app_id: &str, channel_id: &str, users: usize) {
        let now = self.shared.clock();
        self.shared
            .lock()
            .set_channel_users(app_id, channel_id, users, now);
    }

    /// A managed relay as ListRtcMPUTaskDetail shows it, plus its `Status` and `Revision` (1
    /// after its start, one more per update); `None` when it was never started.
    pub fn relay(&self, app_id: &str, task_id: &str) -> Option<serde_json::Value> {
        let now = self.shared.clock();
        self.shared.lock().relay(app_id, task_id, now)
    }

    /// Scripts how event callbacks are delivered (delay, retries, duplicates, late arrivals),
    /// as `PUT /admin/events/rules` does.
    pub fn set_delivery_rules(&self, rules: events::DeliveryRules) {
        self.shared.lock().events.rules = rules;
    }

    /// The delivery log of `app_id`'s callbacks (every try), oldest first.
    pub fn event_records(&self, app_id: &str) -> Vec<events::Record> {
        let state = self.shared.lock();
        let (records, _) = state
            .events
            .records(app_id, None, 0, i64::MAX, 1, usize::MAX);
        records.into_iter().cloned().collect()
    }

    /// Subscribes `app_id`'s events to `callback_url`, as someone with the account's keys
    /// might outside the operator; `false` when the app has a subscription already.
    pub fn create_subscription(&self, app_id: &str, callback_url: &str) -> bool {
        let now = self.shared.clock().wall.as_millisecond();
        self.shared
            .lock()
            .events
            .create(app_id, None, callback_url, now)
            .is_ok()
    }

    /// `app_id`'s event subscription, if any.
    pub fn subscription(&self, app_id: &str) -> Option<events::Subscription> {
        self.shared.lock().events.describe(app_id).cloned()
    }

    pub fn remove_task(&self, app_id: &str, task_id: &str) -> bool {
        self.shared.lock().remove_task(app_id, task_id)
    }

    pub fn task(&self, app_id: &str, task_id: &str) -> Option<TaskView> {
        let now = self.shared.clock().wall.as_millisecond();
        self.shared.lock().task(app_id, task_id, now)
    }

    /// Changes the QPS of the uid `access_key_id` belongs to (shared by all that uid's keys);
    /// false when the account is unknown.
    pub fn set_qps(&self, access_key_id: &str, qps: u32) -> bool {
        self.shared.lock().set_qps(access_key_id, qps)
    }

    /// Changes a uid's QPS, as `PUT /admin/uids/{uid}/qps` does; false when the uid is unknown.
    pub fn set_uid_qps(&self, uid: &str, qps: u32) -> bool {
        self.shared.lock().set_uid_qps(uid, qps)
    }

    /// The uid (Alibaba account ID) `access_key_id` belongs to; `None` for an unknown key.
    pub fn uid_of(&self, access_key_id: &str) -> Option<String> {
        self.shared.lock().uid_of(access_key_id)
    }

    /// Adds a fault rule for GetMPUTaskStatus (STS answers are left alone); returns its id.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, SimulatorError> {
        self.add_fault_for(&faults::DEFAULT_FAULT_ACTIONS, spec)
    }

    /// Adds a fault rule for the given actions (at least one), e.g. [`Action::STS`] to make STS
    /// fail or slow while GetMPUTaskStatus answers normally; returns its id.
    pub fn add_fault_for(
        &self,
        actions: &[Action],
        spec: FaultSpec,
    ) -> Result<u64, SimulatorError> {
        let now = self.shared.clock();
        self.shared
            .lock()
            .add_fault(spec, actions, now)
            .map_err(SimulatorError::Fault)
    }

    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    /// Counters, with per-second buckets (each with its calls by User-Agent) and (when asked)
    /// every task.
    pub fn stats(&self, with_tasks: bool) -> StatsView {
        let now = self.shared.clock().wall.as_millisecond();
        self.shared.lock().stats(with_tasks, true, now)
    }

    /// The counters (and every task) and a reset, under one lock, so that no call falls
    /// between the two; and the instant of the reset, Unix milliseconds. Each task's longest
    /// wait in the view runs up to the reset, and the next one starts from there.
    pub fn take_stats(&self, with_tasks: bool) -> (StatsView, i64) {
        let now = self.shared.clock();
        let at = now.wall.as_millisecond();
        let mut state = self.shared.lock();
        let view = state.stats(with_tasks, true, at);
        state.reset_stats(now);
        (view, at)
    }

    pub fn reset_stats(&self) {
        let now = self.shared.clock();
        self.shared.lock().reset_stats(now);
    }

    /// Stops accepting, lets open connections finish, and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}
