//! Shared helpers for the integration tests: the local control plane and per-test namespaces.

#![allow(dead_code)] // each test binary uses its own subset

pub mod accounts;
pub mod controlplane;
pub mod listener;
pub mod operator;
pub mod proxy;

#[allow(unused_imports)] // demo.rs and shipped_binary.rs use only `as_a_user`
pub use controlplane::shared;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

/// Creates a fresh namespace for one test, named after it, and returns its name.
///
/// Namespaces are never deleted: with no controller-manager, deletion would never finish, and
/// the whole control plane is thrown away when the test binary exits.
pub async fn test_namespace(client: &kube::Client, test: &str) -> String {
    let prefix: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", prefix.trim_matches('-'))),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating a test namespace");
    created
        .metadata
        .name
        .expect("the API server names the namespace")
}

/// The simulator's CA as a file, for `--ca-bundle` (what a user does for a private endpoint).
/// Named by a hash of its content, so each CA is written once per machine and a path never
/// changes meaning; `None` for a plain-HTTP simulator.
pub fn ca_bundle(sim: &mpu_cloud_sim::SimulatorHandle) -> Option<String> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let pem = sim.ca_pem()?;
    let mut hasher = DefaultHasher::new();
    pem.hash(&mut hasher);
    let dir = std::env::temp_dir().join("mpu-relay-operator-test-cas");
    std::fs::create_dir_all(&dir).expect("creating the CA directory");
    let path = dir.join(format!("{:016x}.crt", hasher.finish()));
    if !path.exists() {
        // Through a temporary name, so a reader never sees half a file.
        let partial = dir.join(format!(
            "{:016x}.{}.partial",
            hasher.finish(),
            std::process::id()
        ));
        std::fs::write(&partial, pem).expect("writing the CA");
        std::fs::rename(&partial, &path).expect("placing the CA");
    }
    Some(path.to_string_lossy().into_owned())
}

/// The reasons of the events published about object `name` in `ns`.
pub async fn events_of(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("listing events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}
