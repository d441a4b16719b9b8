//! mpu-relay-operator: keeps `MpuRelayTask` objects in step with the Alibaba Cloud stream relay
//! (MPU) tasks they name, by polling GetMPUTaskStatus through the accounts they reference,
//! within each cloud account's rate budget.
//!
//! Module map (one concern each):
//! - [`api`]: the CRD types (task, account, cluster account), phases, conditions, the CRDs.
//! - [`budget`]: the call budget of each cloud account (future slots, adaptive rate, fair floor).
//! - [`cli`]: the command line: `run`, `status`, `crd`.
//! - [`cloud`]: endpoints and the allow-list, signing, decoding, the HTTP client (GetMPUTaskStatus
//!   and STS), AccessKeys and where they come from.
//! - [`controller`]: the task and account reconciles; [`controller::decide`] and
//!   [`controller::account_status`] hold their decisions, pure, over [`controller::status`].
//! - [`leader`]: leader election through a Lease, and the fence that stops a leader's cloud
//!   calls before a standby can take over.
//! - [`telemetry`]: metrics, logging, and the /metrics, /healthz, /readyz server.

pub mod api;
pub mod budget;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod leader;
pub mod telemetry;
