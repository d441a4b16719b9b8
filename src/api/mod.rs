//! The `mpurelay.io/v1alpha1` API: the task (`MpuRelayTask`), the accounts tasks call the cloud
//! through (`MpuRelayAccount`, `ClusterMpuRelayAccount`), condition names, and the CRDs generated
//! from these types.
//!
//! Doc comments on the types become the CRDs' field descriptions, so they are written for someone
//! reading `kubectl explain`.

mod account;
pub mod duration;
mod events;
mod relay;
mod task;

pub use account::*;
pub use events::*;
pub use relay::*;
pub use task::*;

use kube::CustomResourceExt;

/// Condition types written to `status.conditions` (kstatus style, so `kubectl wait`, Flux and
/// Argo CD understand them).
pub mod conditions {
    /// Task: True only while the relay is running. Account: True when tasks can call through it.
    pub const READY: &str = "Ready";
    /// Task: whether the last poll of the cloud succeeded, and if not, why.
    pub const SYNCED: &str = "Synced";
    /// Task: True when polling cannot make progress until something changes (spec, Secret,
    /// account), or when the cloud stopped the relay and it will not restart by itself.
    pub const STALLED: &str = "Stalled";
    /// Account: True while the cloud has throttled the account and its budget runs below the limit.
    pub const THROTTLED: &str = "Throttled";
    /// Task: True while the operator retries a passing error (kstatus reads it as in progress).
    pub const RECONCILING: &str = "Reconciling";
    /// Account with `spec.events`: True while its subscriptions are in place and the
    /// operator's events endpoint serves them.
    pub const EVENTS_READY: &str = "EventsReady";
}

/// One generated CRD: its file name under `crds/` and its YAML.
pub struct CrdFile {
    pub file_name: String,
    pub yaml: String,
}

/// Every CRD the operator owns, as `crds/` and the chart ship them (one file each).
pub fn crd_files() -> Vec<CrdFile> {
    [
        MpuRelayTask::crd(),
        MpuRelayAccount::crd(),
        ClusterMpuRelayAccount::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes to YAML");
        CrdFile {
            file_name: format!("{name}.yaml"),
            yaml: format!(
                "# Generated from the Rust types by `mpu-relay-operator crd`. Do not edit by hand.\n{body}"
            ),
        }
    })
    .collect()
}

/// Every CRD as one multi-document YAML stream (what `mpu-relay-operator crd` prints).
pub fn crd_yaml() -> String {
    crd_files()
        .into_iter()
        .map(|f| f.yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}
