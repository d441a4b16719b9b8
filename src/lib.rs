//! mpu-relay-operator: keeps `MpuRelayTask` objects in step with the Alibaba Cloud stream relay
//! (MPU) tasks they name, by polling GetMPUTaskStatus within each account's rate budget.
//!
//! Module map (one concern each):
//! - [`api`]: the CRD types, phase decoding, condition names and the generated CRD.
//! - [`budget`]: the per-account call budget (future slots, adaptive rate).
//! - [`cli`]: the command line: `run`, `status`, `simulate`, `crd`.
//! - [`cloud`]: signing, decoding and calling GetMPUTaskStatus; credentials.
//! - [`controller`]: the reconcile loop; [`controller::decide`] holds its decisions, pure.
//! - [`simulator`]: a stand-in of the cloud endpoint for tests, the demo and benchmarks.
//! - [`telemetry`]: metrics, logging, and the /metrics, /healthz, /readyz server.

pub mod api;
pub mod budget;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod simulator;
pub mod telemetry;
