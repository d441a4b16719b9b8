//! An account's calls of the Live operations other than GetMPUTaskStatus (a managed relay's
//! Start, Update and Stop; the event subscriptions'): each takes a slot of its cloud account's
//! budget for that operation ([`crate::budget::actions`]), goes out only while this replica may
//! call, is counted in `mpu_relay_actions_total`, and a throttling answer holds the operation
//! back in its budget.

use std::time::{Duration, Instant};

use super::Resolved;
use crate::api::RelayOperation;
use crate::cloud::client::RelayCall;
use crate::cloud::{CloudError, ErrorClass};
use crate::controller::Context;

/// Takes a slot of the cloud account's budget for `operation`; `Err(wait)` when none is free.
pub fn admit(
    operation: RelayOperation,
    resolved: &Resolved,
    ctx: &Context,
) -> Result<(), Duration> {
    let connection = &resolved.connection;
    ctx.actions.admit(
        &resolved.cloud_account,
        operation,
        connection.action_qps(operation),
        connection.margin(),
        Instant::now(),
    )
}

/// Calls `action` (of `operation`'s budget, admitted already) with `params`: the answer's JSON.
pub async fn call(
    operation: RelayOperation,
    action: &'static str,
    params: &[(&'static str, String)],
    resolved: &Resolved,
    ctx: &Context,
) -> Result<serde_json::Value, CloudError> {
    // A leader that cannot prove its Lease makes no call.
    if ctx.fence.as_ref().is_some_and(|may_call| !may_call()) {
        return Err(CloudError::Connect("this replica is not the leader".into()));
    }
    let call = RelayCall {
        endpoint: &resolved.endpoint,
        signature: resolved.connection.signature,
        region_id: resolved.connection.region_id.as_deref(),
        operation,
        action,
        params,
    };
    let result = ctx.cloud.relay_action(&resolved.credentials, &call).await;
    let throttled = matches!(&result, Err(e) if e.class() == ErrorClass::Throttled);
    let label = match &result {
        Ok(_) => "ok",
        Err(_) if throttled => "throttled",
        Err(CloudError::Api(_)) => "refused",
        Err(_) => "error",
    };
    ctx.metrics.record_action(operation.as_str(), label);
    if throttled {
        ctx.actions
            .throttled(&resolved.cloud_account, operation, Instant::now());
    }
    result
}
