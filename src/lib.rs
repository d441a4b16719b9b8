//! mpu-relay-operator: keeps `MpuRelayTask` objects in step with the Alibaba Cloud stream relay
//! (MPU) tasks they name, by polling GetMPUTaskStatus within each account's rate budget.
//!
//! Module map (one concern each):
//! - [`api`]: the CRD types, phase decoding, condition names and the generated CRD.
//! - [`budget`]: the per-account call budget (future slots, adaptive rate).
//! - [`cli`]: the command line (`crd`, and the operator's other subcommands).
//! - [`cloud`]: signing, decoding and calling GetMPUTaskStatus; credentials.

pub mod api;
pub mod budget;
pub mod cli;
pub mod cloud;
pub mod simulator;
