//! mpu-relay-operator: keeps `MpuRelayTask` objects in step with the Alibaba Cloud stream relay
//! (MPU) tasks they name, by polling GetMPUTaskStatus within each account's rate budget.
//!
//! Module map (one concern each):
//! - [`api`]: the CRD types, phase decoding, condition names and the generated CRD.
//! - [`cli`]: the command line (`crd`, and the operator's other subcommands).
//! - [`cloud`]: signing, decoding and calling GetMPUTaskStatus; credentials.

pub mod api;
pub mod cli;
pub mod cloud;
