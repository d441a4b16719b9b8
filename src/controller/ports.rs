//! The two seams of the reconcile shells: the cloud ([`MpuApi`]: GetMPUTaskStatus and the
//! managed-relay actions) and the API server's writes ([`StatusWriter`]: status patches,
//! finalizers and events). Each is the few operations the
//! reconciles call, held in the [`Context`](super::Context) as a trait object; the production
//! types implement them here, and `#[cfg(test)]` fakes ([`fakes`]) record what the shell did.
//!
//! Object safe (`Arc<dyn …>`): the methods return boxed futures, as the reconcile futures
//! already are ([`super::task::reconcile_traced`]), rather than `async fn`, which would not be.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, Recorder};

use super::FIELD_MANAGER;
use crate::cloud::access_key::Credentials;
use crate::cloud::client::{CloudClient, RelayCall, StatusQuery};
use crate::cloud::{CloudError, MpuTaskStatus};

/// The cloud operations a task's reconcile calls: GetMPUTaskStatus, and for a managed relay
/// Start/Update/StopLiveMPUTask.
///
/// Account resolution (STS GetCallerIdentity, RRSA) stays on the [`CloudClient`] the
/// resolver owns: its tests run against the simulator.
pub trait MpuApi: Send + Sync {
    /// Asks the cloud for the status of one relay task.
    fn get_mpu_task_status<'a>(
        &'a self,
        credentials: &'a Credentials,
        query: &'a StatusQuery<'a>,
    ) -> BoxFuture<'a, Result<MpuTaskStatus, CloudError>>;

    /// Any other Live operation: a managed relay's Start, Update or Stop, an event
    /// subscription's; the answer's JSON.
    fn relay_action<'a>(
        &'a self,
        credentials: &'a Credentials,
        call: &'a RelayCall<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value, CloudError>>;
}

impl MpuApi for CloudClient {
    fn get_mpu_task_status<'a>(
        &'a self,
        credentials: &'a Credentials,
        query: &'a StatusQuery<'a>,
    ) -> BoxFuture<'a, Result<MpuTaskStatus, CloudError>> {
        Box::pin(CloudClient::get_mpu_task_status(self, credentials, query))
    }

    fn relay_action<'a>(
        &'a self,
        credentials: &'a Credentials,
        call: &'a RelayCall<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value, CloudError>> {
        Box::pin(CloudClient::relay_action(self, credentials, call))
    }
}

/// Which object's status a write is for.
#[derive(Clone, Copy, Debug)]
pub struct StatusTarget<'a> {
    /// Its kind (group, version, plural) as the API server serves it.
    pub resource: &'a ApiResource,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// What the reconciles write to the API server: status patches and events.
pub trait StatusWriter: Send + Sync {
    /// Server-side apply of `patch` ({apiVersion, kind, status}) to the object's `/status`,
    /// as [`FIELD_MANAGER`], forced (the operator alone owns `.status`).
    fn apply_status<'a>(
        &'a self,
        target: StatusTarget<'a>,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;

    /// Publishes one event on the object `reference` names.
    fn publish<'a>(
        &'a self,
        event: &'a Event,
        reference: &'a ObjectReference,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;

    /// Adds (`present`) or removes one of the operator's finalizers on an object whose
    /// finalizers are `current`, with a JSON patch that fails if they changed meanwhile (never
    /// dropping anyone else's).
    fn set_finalizer<'a>(
        &'a self,
        target: StatusTarget<'a>,
        finalizer: &'static str,
        current: &'a [String],
        present: bool,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
}

/// The JSON patch that adds or removes `finalizer` from `current`; `None` when nothing changes.
pub fn finalizer_patch(
    current: &[String],
    finalizer: &str,
    present: bool,
) -> Option<json_patch::Patch> {
    let patch: serde_json::Value = match (current.iter().position(|f| f == finalizer), present) {
        (Some(_), true) | (None, false) => return None,
        (None, true) if current.is_empty() => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ]),
        (None, true) => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
        (Some(i), false) => serde_json::json!([
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
        ]),
    };
    serde_json::from_value(patch).ok()
}

/// The API server, through the operator's client and its event recorder.
pub struct ApiServer {
    pub client: kube::Client,
    pub recorder: Recorder,
}

impl StatusWriter for ApiServer {
    fn apply_status<'a>(
        &'a self,
        target: StatusTarget<'a>,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            let api: Api<DynamicObject> = match target.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, target.resource),
                None => Api::all_with(self.client.clone(), target.resource),
            };
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch_status(target.name, &params, &Patch::Apply(patch))
                .await
                .map(drop)
        })
    }

    fn publish<'a>(
        &'a self,
        event: &'a Event,
        reference: &'a ObjectReference,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(self.recorder.publish(event, reference))
    }

    fn set_finalizer<'a>(
        &'a self,
        target: StatusTarget<'a>,
        finalizer: &'static str,
        current: &'a [String],
        present: bool,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            let Some(patch) = finalizer_patch(current, finalizer, present) else {
                return Ok(());
            };
            let api: Api<DynamicObject> = match target.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, target.resource),
                None => Api::all_with(self.client.clone(), target.resource),
            };
            api.patch(
                target.name,
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
            .map(drop)
        })
    }
}

/// In-memory doubles of both seams, for the shells' unit tests.
#[cfg(test)]
pub mod fakes {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use super::*;
    use crate::api::RelayOperation;

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A relay action's parameters, by wire name.
    pub type Params = Vec<(&'static str, String)>;

    /// A cloud whose every relay task answers `status` (1: Running), except those given their
    /// own answers; a task id in `panics_on` makes the call panic (a bug in the shell's path).
    #[derive(Default)]
    pub struct FakeCloud {
        pub answers: Mutex<HashMap<String, VecDeque<Result<MpuTaskStatus, CloudError>>>>,
        pub panics_on: Mutex<Vec<String>>,
        /// The task ids called, in order.
        pub calls: Mutex<Vec<String>>,
        /// The relay actions called: (operation, parameters), in order.
        pub actions: Mutex<Vec<(RelayOperation, Params)>>,
        /// Answers to the next relay actions (then success).
        pub action_answers: Mutex<VecDeque<Result<String, CloudError>>>,
    }

    impl FakeCloud {
        /// Answers the next call for `task_id` with `answer` (then Running again).
        pub fn answer(&self, task_id: &str, answer: Result<MpuTaskStatus, CloudError>) {
            lock(&self.answers)
                .entry(task_id.to_string())
                .or_default()
                .push_back(answer);
        }

        pub fn panic_on(&self, task_id: &str) {
            lock(&self.panics_on).push(task_id.to_string());
        }

        pub fn calls(&self) -> Vec<String> {
            lock(&self.calls).clone()
        }

        /// The operations of the relay actions called, in order.
        pub fn actions(&self) -> Vec<RelayOperation> {
            lock(&self.actions).iter().map(|(op, _)| *op).collect()
        }

        /// Answers the next relay action with `answer`.
        pub fn answer_action(&self, answer: Result<String, CloudError>) {
            lock(&self.action_answers).push_back(answer);
        }
    }

    impl MpuApi for FakeCloud {
        fn get_mpu_task_status<'a>(
            &'a self,
            _credentials: &'a Credentials,
            query: &'a StatusQuery<'a>,
        ) -> BoxFuture<'a, Result<MpuTaskStatus, CloudError>> {
            let task_id = query.task_id.to_string();
            Box::pin(async move {
                lock(&self.calls).push(task_id.clone());
                tokio::task::yield_now().await;
                if lock(&self.panics_on).contains(&task_id) {
                    panic!("the fake cloud panics on {task_id}");
                }
                let queued = lock(&self.answers)
                    .get_mut(&task_id)
                    .and_then(VecDeque::pop_front);
                queued.unwrap_or_else(|| {
                    Ok(MpuTaskStatus {
                        request_id: format!("req-{task_id}"),
                        status: 1,
                    })
                })
            })
        }

        fn relay_action<'a>(
            &'a self,
            _credentials: &'a Credentials,
            call: &'a RelayCall<'a>,
        ) -> BoxFuture<'a, Result<serde_json::Value, CloudError>> {
            Box::pin(async move {
                lock(&self.actions).push((call.operation, call.params.to_vec()));
                let answer = lock(&self.action_answers)
                    .pop_front()
                    .unwrap_or_else(|| Ok("req-action".into()));
                answer.map(|id| serde_json::json!({ "RequestId": id }))
            })
        }
    }

    /// A status write the fake API server took.
    #[derive(Clone, Debug)]
    pub struct Written {
        pub kind: String,
        pub namespace: Option<String>,
        pub name: String,
        /// The patch's `status`.
        pub status: serde_json::Value,
    }

    /// An API server that takes every write, or refuses the next `refuse` ones with `code`.
    #[derive(Default)]
    pub struct FakeApiServer {
        pub writes: Mutex<Vec<Written>>,
        /// (HTTP code, how many writes to refuse before taking them again).
        pub refuse: Mutex<Option<(u16, u32)>>,
        /// Every write attempted, taken or refused.
        pub attempts: Mutex<u32>,
        /// Names of objects whose status writes panic (a bug in the shell's path).
        pub panics_on: Mutex<Vec<String>>,
        /// (object name, event reason) of every event published.
        pub events: Mutex<Vec<(String, String)>>,
        /// (object name, finalizer present) of every finalizer change.
        pub finalizers: Mutex<Vec<(String, bool)>>,
    }

    impl FakeApiServer {
        /// Refuses the next `times` status writes with HTTP `code`.
        pub fn refuse(&self, code: u16, times: u32) {
            *lock(&self.refuse) = Some((code, times));
        }

        pub fn panic_on(&self, name: &str) {
            lock(&self.panics_on).push(name.to_string());
        }

        pub fn writes(&self) -> Vec<Written> {
            lock(&self.writes).clone()
        }

        pub fn attempts(&self) -> u32 {
            *lock(&self.attempts)
        }

        /// The reasons of the events published, with the name of their object.
        pub fn event_reasons(&self) -> Vec<(String, String)> {
            lock(&self.events).clone()
        }
    }

    /// A refusal as kube's client reports one.
    pub fn refusal(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused by the fake API server", "ServiceUnavailable")
                .with_code(code)
                .boxed(),
        )
    }

    impl StatusWriter for FakeApiServer {
        fn apply_status<'a>(
            &'a self,
            target: StatusTarget<'a>,
            patch: &'a serde_json::Value,
        ) -> BoxFuture<'a, Result<(), kube::Error>> {
            Box::pin(async move {
                *lock(&self.attempts) += 1;
                if lock(&self.panics_on).iter().any(|n| n == target.name) {
                    panic!("the fake API server panics on {}", target.name);
                }
                {
                    let mut refuse = lock(&self.refuse);
                    if let Some((code, left)) = refuse.as_mut()
                        && *left > 0
                    {
                        *left -= 1;
                        return Err(refusal(*code));
                    }
                }
                lock(&self.writes).push(Written {
                    kind: target.resource.kind.clone(),
                    namespace: target.namespace.map(str::to_string),
                    name: target.name.to_string(),
                    status: patch["status"].clone(),
                });
                Ok(())
            })
        }

        fn publish<'a>(
            &'a self,
            event: &'a Event,
            reference: &'a ObjectReference,
        ) -> BoxFuture<'a, Result<(), kube::Error>> {
            Box::pin(async move {
                let name = reference.name.clone().unwrap_or_default();
                lock(&self.events).push((name, event.reason.clone()));
                Ok(())
            })
        }

        fn set_finalizer<'a>(
            &'a self,
            target: StatusTarget<'a>,
            _finalizer: &'static str,
            _current: &'a [String],
            present: bool,
        ) -> BoxFuture<'a, Result<(), kube::Error>> {
            Box::pin(async move {
                lock(&self.finalizers).push((target.name.to_string(), present));
                Ok(())
            })
        }
    }
}
