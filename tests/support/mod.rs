//! Shared helpers for the integration tests: the local control plane and per-test namespaces.

#![allow(dead_code)] // each test binary uses its own subset

pub mod accounts;
pub mod controlplane;
pub mod listener;
pub mod operator;
pub mod proxy;

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
