//! The MpuRelayTask API as the real kube-apiserver serves it: the CRD, kubectl's view of it,
//! validation, and the status subresource.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mpu_relay_operator::api::{MpuRelayTask, MpuRelayTaskStatus, Phase, conditions};
use serde_json::json;

fn task(name: &str, spec: serde_json::Value) -> MpuRelayTask {
    serde_json::from_value(json!({
        "apiVersion": "mpurelay.io/v1alpha1",
        "kind": "MpuRelayTask",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a well-formed MpuRelayTask")
}

/// Creates `obj` bypassing the Rust types (so required fields can be left out) and returns the
/// API server's error message.
async fn create_raw_error(client: &kube::Client, ns: &str, obj: serde_json::Value) -> String {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<MpuRelayTask>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("the API server accepted an invalid object"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn integration_every_crd_is_accepted_and_established() {
    let cp = support::shared();
    let crds: Api<CustomResourceDefinition> = Api::all(cp.client().await);
    for name in [
        "mpurelaytasks.mpurelay.io",
        "mpurelayaccounts.mpurelay.io",
        "clustermpurelayaccounts.mpurelay.io",
    ] {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "the CRD {name} is not Established");
    }
}

#[tokio::test]
async fn integration_sample_task_is_listed_by_kubectl_with_printer_columns_short_name_and_category()
{
    let cp = support::shared();
    let ns = support::test_namespace(&cp.client().await, "sample").await;
    let sample = support::controlplane::repo_root().join("examples/task.yaml");
    cp.kubectl_run(&["apply", "-n", &ns, "-f", sample.to_str().unwrap()])
        .expect("kubectl apply of the sample");

    let table = cp
        .kubectl_run(&["get", "mpurelaytasks", "-n", &ns])
        .unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "APP", "TASK", "ACCOUNT", "POLICY", "PHASE", "READY", "LAST", "SYNC", "AGE"
        ]
    );
    assert!(table.contains("lobby-relay"), "{table}");
    assert!(table.contains("demo-app"), "{table}");
    assert!(table.contains("lobby-relay-1"), "{table}");
    assert!(table.contains("live-prod"), "{table}");

    let out = cp
        .kubectl_run(&["get", "mpt", "-n", &ns, "-o", "name"])
        .unwrap();
    assert_eq!(out.trim(), "mpurelaytask.mpurelay.io/lobby-relay");
    // The categories hold every kind (cluster accounts of other tests show up too).
    for resource in ["mpurelay", "alibabacloud"] {
        let out = cp
            .kubectl_run(&["get", resource, "-n", &ns, "-o", "name"])
            .unwrap();
        assert!(
            out.lines()
                .any(|l| l == "mpurelaytask.mpurelay.io/lobby-relay"),
            "kubectl get {resource}: {out}"
        );
    }
}

#[tokio::test]
async fn integration_kubectl_explain_shows_field_descriptions() {
    let cp = support::shared();
    let spec = cp.kubectl_run(&["explain", "mpurelaytask.spec"]).unwrap();
    for expected in [
        "ID of the relay task inside the application",
        "Stop polling this task while true",
        "appId",
        "accountRef",
        "pollInterval",
    ] {
        assert!(spec.contains(expected), "missing {expected:?} in:\n{spec}");
    }
    let account = cp
        .kubectl_run(&["explain", "mpurelayaccount.spec"])
        .unwrap();
    for expected in ["allowed-endpoints", "qps", "credentials", "accountId"] {
        assert!(
            account.contains(expected),
            "missing {expected:?} in:\n{account}"
        );
    }
    let cluster = cp
        .kubectl_run(&["explain", "clustermpurelayaccount.spec.credentials"])
        .unwrap();
    for expected in ["secretRef", "rrsa", "operator"] {
        assert!(
            cluster.contains(expected),
            "missing {expected:?} in:\n{cluster}"
        );
    }
    let events = cp
        .kubectl_run(&["explain", "clustermpurelayaccount.spec.events"])
        .unwrap();
    for expected in [
        "callbackURL",
        "backstopInterval",
        "hintSharePercent",
        "tokenRotation",
    ] {
        assert!(
            events.contains(expected),
            "missing {expected:?} in:\n{events}"
        );
    }
    let status = cp
        .kubectl_run(&["explain", "mpurelaytask.status.phase"])
        .unwrap();
    assert!(
        status.contains("CdnError (5: stopped by a CDN problem)"),
        "{status}"
    );
}

#[tokio::test]
async fn integration_task_without_app_id_is_rejected() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "no-app-id").await;
    let message = create_raw_error(
        &client,
        &ns,
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": "no-app"}, "spec": {"taskId": "t1"}
        }),
    )
    .await;
    assert!(message.contains("spec.appId: Required value"), "{message}");
}

#[tokio::test]
async fn integration_task_with_empty_task_id_is_rejected() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "empty-task-id").await;
    let message = create_raw_error(
        &client,
        &ns,
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": "empty"}, "spec": {"appId": "a1", "taskId": ""}
        }),
    )
    .await;
    assert!(message.contains("spec.taskId"), "{message}");
    assert!(message.contains("at least 1 chars long"), "{message}");
}

#[tokio::test]
async fn integration_task_with_malformed_poll_interval_is_rejected() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "bad-interval").await;
    let message = create_raw_error(
        &client,
        &ns,
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": "bad"},
            "spec": {"appId": "a1", "taskId": "t1", "pollInterval": "soon"}
        }),
    )
    .await;
    assert!(message.contains("spec.pollInterval"), "{message}");
}

#[tokio::test]
async fn integration_changing_task_id_on_update_is_rejected() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "immutable").await;
    let api: Api<MpuRelayTask> = Api::namespaced(client, &ns);
    api.create(
        &PostParams::default(),
        &task("t", json!({"appId": "a1", "taskId": "t1"})),
    )
    .await
    .unwrap();

    let err = api
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taskId": "t2"}})),
        )
        .await
        .expect_err("taskId must be immutable");
    let kube::Error::Api(status) = err else {
        panic!("unexpected error: {err}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("taskId is immutable"),
        "{}",
        status.message
    );

    // Other fields stay editable.
    api.patch(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend is mutable");
}

#[tokio::test]
async fn integration_status_round_trips_and_survives_spec_updates() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "status").await;
    let api: Api<MpuRelayTask> = Api::namespaced(client, &ns);
    api.create(
        &PostParams::default(),
        &task("t", json!({"appId": "a1", "taskId": "t1"})),
    )
    .await
    .unwrap();

    let now = Time(jiff::Timestamp::from_second(1_790_000_000).unwrap());
    let status = MpuRelayTaskStatus {
        status_code: Some(1),
        phase: Some(Phase::Running),
        message: Some(Phase::Running.description().into()),
        request_id: Some("5D6E7F-REQ".into()),
        conditions: vec![Condition {
            type_: conditions::READY.into(),
            status: "True".into(),
            reason: "Running".into(),
            message: "the relay is running".into(),
            last_transition_time: now.clone(),
            observed_generation: Some(1),
        }],
        observed_generation: Some(1),
        last_sync_time: Some(now.clone()),
        phase_since: Some(now),
        auto_stop_time: None,
        sync_interval: Some("30s".parse().unwrap()),
        management: None,
    };
    api.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
    assert_eq!(api.get("t").await.unwrap().status.as_ref(), Some(&status));

    // A spec change bumps the generation and leaves the status alone.
    let updated = api
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"pollInterval": "1m"}})),
        )
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.status.as_ref(), Some(&status));

    // And the main resource ignores any status it is sent.
    let mut replaced = updated.clone();
    replaced.status = None;
    let replaced = api
        .replace("t", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(replaced.status.as_ref(), Some(&status));
}

/// Creates `obj` (any kind of ours) and returns the API server's 422 message.
async fn refusal(client: &kube::Client, ns: Option<&str>, obj: serde_json::Value) -> String {
    let kind = obj["kind"].as_str().unwrap().to_string();
    let resource = match kind.as_str() {
        "MpuRelayTask" => kube::api::ApiResource::erase::<MpuRelayTask>(&()),
        "MpuRelayAccount" => {
            kube::api::ApiResource::erase::<mpu_relay_operator::api::MpuRelayAccount>(&())
        }
        _ => kube::api::ApiResource::erase::<mpu_relay_operator::api::ClusterMpuRelayAccount>(&()),
    };
    let api: Api<kube::api::DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("the API server accepted {kind} {:?}", obj.data),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn integration_poll_intervals_outside_one_second_to_a_day_are_refused() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "poll-bounds").await;
    for (i, interval) in ["0s", "500ms", "25h", "900000000000000h"]
        .iter()
        .enumerate()
    {
        let message = refusal(
            &client,
            Some(&ns),
            json!({
                "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
                "metadata": {"name": format!("t{i}")},
                "spec": {"appId": "a", "taskId": "t", "pollInterval": interval}
            }),
        )
        .await;
        assert!(
            message.contains("spec.pollInterval"),
            "{interval}: {message}"
        );
    }
    let tasks: Api<MpuRelayTask> = Api::namespaced(client, &ns);
    for (i, interval) in ["1s", "24h", "1h30m"].iter().enumerate() {
        let t = task(
            &format!("ok{i}"),
            json!({"appId": "a", "taskId": "t", "pollInterval": interval}),
        );
        tasks.create(&PostParams::default(), &t).await.unwrap();
    }
}

#[tokio::test]
async fn integration_hostile_account_fields_are_refused_with_the_rule_message() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "account-bounds").await;
    let account = |spec: serde_json::Value| {
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayAccount",
            "metadata": {"name": "a"}, "spec": spec
        })
    };
    let secret = json!({"secretRef": {"name": "ak"}});
    let cases = [
        (json!({"credentials": secret, "qps": 0}), "spec.qps"),
        (json!({"credentials": secret, "qps": 100000}), "spec.qps"),
        (
            json!({"credentials": secret, "qpsMarginPercent": 90}),
            "spec.qpsMarginPercent",
        ),
        (
            json!({"credentials": secret, "endpoint": "https://x.aliyuncs.com/path"}),
            "spec.endpoint",
        ),
        (
            json!({"credentials": secret, "endpoint": "user@evil.example"}),
            "spec.endpoint",
        ),
        (
            json!({"credentials": secret, "endpoint": "a".repeat(300)}),
            "spec.endpoint",
        ),
        (
            json!({"credentials": secret, "accountId": "12ab"}),
            "spec.accountId",
        ),
        (json!({"credentials": secret, "api": "ecs"}), "spec.api"),
        (
            json!({"credentials": {"secretRef": {"name": "../x"}}}),
            "spec.credentials.secretRef.name",
        ),
        (json!({}), "spec.credentials"),
    ];
    for (spec, field) in cases {
        let message = refusal(&client, Some(&ns), account(spec.clone())).await;
        assert!(message.contains(field), "{spec}: {message}");
    }
    // A namespaced account cannot name another namespace's Secret: the field does not exist,
    // and the API server drops it before anyone reads the object.
    let accounts: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<mpu_relay_operator::api::MpuRelayAccount>(&()),
    );
    let sneaky: kube::api::DynamicObject = serde_json::from_value(account(
        json!({"credentials": {"secretRef": {"name": "ak", "namespace": "kube-system"}}}),
    ))
    .unwrap();
    let stored = accounts
        .create(&PostParams::default(), &sneaky)
        .await
        .unwrap();
    assert_eq!(
        stored.data["spec"]["credentials"]["secretRef"],
        json!({"name": "ak"}),
        "the namespace was kept"
    );
}

#[tokio::test]
async fn integration_hostile_events_fields_are_refused_with_the_rule_message() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "events-bounds").await;
    let account = |events: serde_json::Value| {
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayAccount",
            "metadata": {"name": "a"},
            "spec": {"credentials": {"secretRef": {"name": "ak"}}, "events": events}
        })
    };
    let url = "https://mpu-events.example.com/hooks";
    let cases = [
        // The token travels in the URL: never over plain HTTP, never to userinfo or a query.
        (
            json!({"callbackURL": "http://mpu-events.example.com/hooks"}),
            "spec.events.callbackURL",
        ),
        (
            json!({"callbackURL": "https://user@evil.example/x"}),
            "spec.events.callbackURL",
        ),
        (
            json!({"callbackURL": "https://x.example/?next=evil"}),
            "spec.events.callbackURL",
        ),
        (
            json!({"callbackURL": format!("https://x.example/{}", "a".repeat(1600))}),
            "spec.events.callbackURL",
        ),
        (json!({}), "spec.events.callbackURL"),
        (
            json!({"callbackURL": url, "hintSharePercent": 0}),
            "spec.events.hintSharePercent",
        ),
        (
            json!({"callbackURL": url, "hintSharePercent": 95}),
            "spec.events.hintSharePercent",
        ),
        (
            json!({"callbackURL": url, "backstopInterval": "10s"}),
            "spec.events.backstopInterval",
        ),
        (
            json!({"callbackURL": url, "backstopInterval": "48h"}),
            "spec.events.backstopInterval",
        ),
        (
            json!({"callbackURL": url, "tokenRotation": -1}),
            "spec.events.tokenRotation",
        ),
    ];
    for (events, field) in cases {
        let message = refusal(&client, Some(&ns), account(events.clone())).await;
        assert!(message.contains(field), "{events}: {message}");
    }
    let accounts: Api<mpu_relay_operator::api::MpuRelayAccount> =
        Api::namespaced(client.clone(), &ns);
    let ok: mpu_relay_operator::api::MpuRelayAccount = serde_json::from_value(account(json!({
        "callbackURL": url, "backstopInterval": "10m", "hintSharePercent": 20, "tokenRotation": 3
    })))
    .unwrap();
    let stored = accounts.create(&PostParams::default(), &ok).await.unwrap();
    let events = stored.spec.connection.events.unwrap();
    assert_eq!(events.hint_share(), 0.2);
    assert_eq!(events.token_rotation, 3);
}

#[tokio::test]
async fn integration_cluster_account_needs_exactly_one_credential_source_and_sane_conditions() {
    let cp = support::shared();
    let client = cp.client().await;
    let cluster = |name: &str, spec: serde_json::Value| {
        json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "ClusterMpuRelayAccount",
            "metadata": {"name": name}, "spec": spec
        })
    };
    let rrsa = json!({
        "roleArn": "acs:ram::1234:role/r",
        "oidcProviderArn": "acs:ram::1234:oidc-provider/p"
    });
    let two = refusal(
        &client,
        None,
        cluster(
            "two-sources",
            json!({"credentials": {"operator": {}, "rrsa": rrsa}}),
        ),
    )
    .await;
    assert!(
        two.contains("exactly one of secretRef, rrsa or operator"),
        "{two}"
    );
    let none = refusal(
        &client,
        None,
        cluster("no-source", json!({"credentials": {}})),
    )
    .await;
    assert!(
        none.contains("exactly one of secretRef, rrsa or operator"),
        "{none}"
    );
    let bad_arn = refusal(
        &client,
        None,
        cluster(
            "bad-arn",
            json!({"credentials": {"rrsa": {"roleArn": "arn:aws:iam::1:role/x",
                                            "oidcProviderArn": "acs:ram::1:oidc-provider/p"}}}),
        ),
    )
    .await;
    assert!(bad_arn.contains("roleArn"), "{bad_arn}");
    let empty_condition = refusal(
        &client,
        None,
        cluster(
            "empty-condition",
            json!({"credentials": {"operator": {}}, "conditions": [{}]}),
        ),
    )
    .await;
    assert!(
        empty_condition.contains("a condition needs namespaces or a namespaceSelector"),
        "{empty_condition}"
    );
}

/// A managed task's relay as the user wrote it, with `change` merged into `relay`.
fn managed_spec(task_id: &str, relay_change: serde_json::Value) -> serde_json::Value {
    let mut relay = json!({
        "channelId": "lobby", "mixMode": "Single", "streamURL": "rtmp://push.example.com/live/a",
        "singleSubParams": {"userId": "host-1"}
    });
    if let (Some(relay), serde_json::Value::Object(change)) = (relay.as_object_mut(), relay_change)
    {
        for (k, v) in change {
            if v.is_null() {
                relay.remove(&k);
            } else {
                relay.insert(k, v);
            }
        }
    }
    json!({"appId": "a", "taskId": task_id, "managementPolicy": "Manage", "relay": relay})
}

#[tokio::test]
async fn integration_a_relay_the_cloud_would_refuse_is_refused_at_apply_with_the_reason() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "relay-bounds").await;
    let pane = |x: f64, width: f64| {
        json!({"mixMode": "Mixed", "singleSubParams": null,
               "transcodeParams": {"layout": {"userPanes": [{"left": x, "width": width}]}}})
    };
    let cases = [
        (
            json!({"appId": "a", "taskId": "t", "managementPolicy": "Manage"}),
            "needs spec.relay",
        ),
        (
            managed_spec("t", json!({"multiStreamURL": [{"url": "rtmp://b/c"}]})),
            "exactly one output",
        ),
        (
            managed_spec("t", json!({"streamURL": null})),
            "exactly one output",
        ),
        (
            managed_spec("t", json!({"singleSubParams": null})),
            "needs singleSubParams",
        ),
        (
            managed_spec("t", json!({"mixMode": "Mixed"})),
            "needs transcodeParams",
        ),
        (managed_spec("t", pane(0.5, 0.75)), "left + width <= 1"),
        (
            managed_spec("t", pane(1.5, 0.1)),
            "spec.relay.transcodeParams.layout.userPanes[0].left",
        ),
        (
            managed_spec("t", json!({"streamURL": "http://not-rtmp/x"})),
            "spec.relay.streamURL",
        ),
        (
            managed_spec("t", json!({"maxIdleTime": 5})),
            "spec.relay.maxIdleTime",
        ),
        (
            managed_spec("t", json!({"region": "US-Nowhere"})),
            "spec.relay.region",
        ),
        (managed_spec(&"x".repeat(56), json!({})), "at most 55"),
        (managed_spec("dotted.id", json!({})), "at most 55"),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let message = refusal(
            &client,
            Some(&ns),
            json!({"apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
                   "metadata": {"name": format!("t{i}")}, "spec": spec}),
        )
        .await;
        assert!(message.contains(expected), "case {i}: {message}");
    }
    // An observed task keeps today's rules: a dotted 64-character taskId is fine.
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let observed = task(
        "observed",
        json!({"appId": "a", "taskId": format!("{}.x", "y".repeat(62))}),
    );
    tasks
        .create(&PostParams::default(), &observed)
        .await
        .unwrap();
}

#[tokio::test]
async fn integration_the_managed_example_is_accepted() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "managed-example").await;
    let sample = support::controlplane::repo_root().join("examples/managed-task.yaml");
    cp.kubectl_run(&["apply", "-n", &ns, "-f", sample.to_str().unwrap()])
        .expect("kubectl apply of the managed example");
    let table = cp
        .kubectl_run(&["get", "mpurelaytasks", "-n", &ns])
        .unwrap();
    assert_eq!(table.matches("Manage").count(), 2, "{table}");
}

#[tokio::test]
async fn integration_a_managed_relays_channel_region_and_idle_time_cannot_change() {
    let cp = support::shared();
    let client = cp.client().await;
    let ns = support::test_namespace(&client, "relay-immutable").await;
    let tasks: Api<MpuRelayTask> = Api::namespaced(client.clone(), &ns);
    let spec = managed_spec("t", json!({"region": "CN-Shanghai", "maxIdleTime": 600}));
    tasks
        .create(&PostParams::default(), &task("relay", spec))
        .await
        .unwrap();
    for change in [
        json!({"channelId": "stage"}),
        json!({"region": "AP-Singapore"}),
        json!({"maxIdleTime": 601}),
    ] {
        let refused = tasks
            .patch(
                "relay",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"relay": change.clone()}})),
            )
            .await
            .expect_err("an immutable field changed");
        assert!(
            refused.to_string().contains("cannot change"),
            "{change}: {refused}"
        );
    }
    // What may change does.
    tasks
        .patch(
            "relay",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"relay": {"streamURL": "rtmp://push.example.com/live/b"}, "restartPolicy": "Always"}})),
        )
        .await
        .unwrap();
}
