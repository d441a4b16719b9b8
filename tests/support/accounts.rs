//! Accounts for the integration tests: Secrets, `MpuRelayAccount`s and tasks that use them, the
//! way a tenant writes them.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use mpu_relay_operator::api::{ClusterMpuRelayAccount, MpuRelayAccount, MpuRelayTask};
use serde_json::{Value, json};

/// The operator flags every test needs to call a simulator on loopback: loopback endpoints
/// allowed (and Alibaba's, as in production), namespaced accounts enabled. Plain HTTP stays
/// allowed on loopback for the tests whose stand-in is a raw HTTP listener.
pub const LOOPBACK: &[&str] = &[
    "--allowed-endpoints",
    "https://*.aliyuncs.com,https://127.0.0.1:*,http://127.0.0.1:*",
    "--namespaced-accounts",
];

/// Creates a credentials Secret with the fixed key names.
pub async fn secret(client: &kube::Client, ns: &str, name: &str, id: &str, key: &str) {
    secret_with(
        client,
        ns,
        name,
        json!({"accessKeyId": id, "accessKeySecret": key}),
    )
    .await;
}

/// Creates a Secret with any `stringData`.
pub async fn secret_with(client: &kube::Client, ns: &str, name: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// Creates an `MpuRelayAccount` calling `endpoint` with the Secret `secret`; `extra` is merged
/// into its spec.
pub async fn account(
    client: &kube::Client,
    ns: &str,
    name: &str,
    endpoint: &str,
    secret: &str,
    extra: Value,
) {
    let mut spec = json!({"endpoint": endpoint, "credentials": {"secretRef": {"name": secret}}});
    merge(&mut spec, extra);
    let a: MpuRelayAccount = serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayAccount",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    Api::<MpuRelayAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &a)
        .await
        .unwrap();
}

/// Creates a `ClusterMpuRelayAccount` with `spec`.
pub async fn cluster_account(client: &kube::Client, name: &str, spec: Value) {
    let a: ClusterMpuRelayAccount = serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "ClusterMpuRelayAccount",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    Api::<ClusterMpuRelayAccount>::all(client.clone())
        .create(&PostParams::default(), &a)
        .await
        .unwrap();
}

/// A task of app `app` using the namespaced account `account`.
pub fn task(name: &str, task_id: &str, account: &str) -> MpuRelayTask {
    task_with(
        name,
        json!({"appId": "app", "taskId": task_id, "accountRef": {"name": account}}),
    )
}

/// A task with any spec.
pub fn task_with(name: &str, spec: Value) -> MpuRelayTask {
    serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// Creates the task in `ns`.
pub async fn create_task(client: &kube::Client, ns: &str, task: &MpuRelayTask) {
    Api::<MpuRelayTask>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), task)
        .await
        .unwrap();
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        for (k, v) in extra {
            into.insert(k, v);
        }
    }
}
