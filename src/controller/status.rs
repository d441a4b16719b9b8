//! What the task and the account status code share: the words their conditions use (the
//! statuses [`TRUE`] and [`FALSE`], the operator's own [`reasons`]), the one way a condition is
//! set (`Stamp::set`), and the events and problems a decision carries.
//!
//! The condition types are the API's ([`crate::api::conditions`]). Reasons the cloud's errors
//! bring stay with the cloud ([`crate::cloud::response::reasons`]): they are its vocabulary,
//! decided where its answers are read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition's `status` when it holds.
pub const TRUE: &str = "True";
/// A condition's `status` when it does not hold. (`Unknown` is never written: every condition
/// the operator sets, it has decided.)
pub const FALSE: &str = "False";

/// Longest message kept in a condition or `status.message`.
pub const MESSAGE_MAX_CHARS: usize = 1024;

/// Condition and event reasons of the operator's own, for tasks and accounts (PascalCase, as
/// Kubernetes asks).
pub mod reasons {
    // Accounts' events (EventsReady).
    pub const SUBSCRIBED: &str = "Subscribed";
    pub const SUBSCRIBING: &str = "Subscribing";
    pub const SUBSCRIBE_FAILED: &str = "SubscribeFailed";
    pub const SUBSCRIPTION_EXISTS: &str = "SubscriptionExists";
    pub const TOO_MANY_APPS: &str = "TooManyApps";
    pub const TOKEN_KEY_PENDING: &str = "TokenKeyPending";
    pub const NO_TOKEN_KEY: &str = "NoTokenKey";
    pub const EVENTS_ENDPOINT_DISABLED: &str = "EventsEndpointDisabled";
    pub const ACCOUNT_NOT_READY: &str = "AccountNotReady";
    // Tasks.
    pub const POLLED: &str = "Polled";
    pub const SUSPENDED: &str = "Suspended";
    pub const NOT_STALLED: &str = "Polling";
    pub const AUTO_STOP_SOON: &str = "AutoStopSoon";
    pub const INTERNAL_ERROR: &str = "InternalError";
    // Managed relays.
    pub const MANAGE_NOT_ALLOWED: &str = "ManageNotAllowed";
    pub const MANAGE_UNSUPPORTED: &str = "ManageUnsupported";
    pub const TASK_CLAIMED: &str = "TaskClaimed";
    pub const TASK_EXISTS: &str = "TaskExists";
    pub const STOPPED_BY_USER: &str = "StoppedByUser";
    pub const NOT_STARTED: &str = "NotStarted";
    pub const STARTING: &str = "Starting";
    pub const STARTED: &str = "Started";
    pub const RESTARTED: &str = "Restarted";
    pub const ADOPTED: &str = "Adopted";
    pub const UPDATED: &str = "Updated";
    pub const STOPPED: &str = "Stopped";
    pub const START_FAILED: &str = "StartFailed";
    pub const UPDATE_FAILED: &str = "UpdateFailed";
    pub const STOP_FAILED: &str = "StopFailed";
    // Accounts, and tasks that cannot use theirs.
    pub const ACCOUNT_REF_MISSING: &str = "AccountRefMissing";
    pub const ACCOUNT_NOT_FOUND: &str = "AccountNotFound";
    pub const ACCOUNT_NOT_ALLOWED: &str = "AccountNotAllowed";
    pub const NAMESPACED_ACCOUNTS_DISABLED: &str = "NamespacedAccountsDisabled";
    pub const ENDPOINT_NOT_ALLOWED: &str = "EndpointNotAllowed";
    pub const IDENTITY_UNKNOWN: &str = "IdentityUnknown";
    pub const ACCOUNT_ID_MISMATCH: &str = "AccountIdMismatch";
    pub const AUTH_FAILED: &str = "AuthFailed";
    pub const READY: &str = "Ready";
    pub const THROTTLED: &str = "Throttled";
    pub const NOT_THROTTLED: &str = "WithinLimit";
}

/// Why an account cannot be used: its Ready condition says it, and so do the conditions of
/// every task that references it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// PascalCase condition and event reason.
    pub reason: &'static str,
    /// For people: what is wrong and what to change. Never holds a secret.
    pub message: String,
    /// Only a change (of the task, the account, its Secret) can fix it.
    pub permanent: bool,
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An event to publish on the object a decision is about (a task or an account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub severity: Severity,
    pub reason: &'static str,
    /// What the operator was doing. Events with the same reason and action on one object are
    /// merged into one with a count (keeping the first note), so a transition carries where it
    /// came from here: "StoppedByUser -> Running" stays visible after "first observed Running".
    pub action: String,
    pub note: String,
}

/// What every condition written by one decision carries: the generation it describes and the
/// decision's time.
pub(crate) struct Stamp {
    pub generation: Option<i64>,
    pub time: Time,
}

impl Stamp {
    /// Sets a condition, keeping its lastTransitionTime unless its status flips.
    pub fn set(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        value: &str,
        reason: &str,
        message: &str,
    ) {
        let previous = conditions.iter().position(|c| c.type_ == type_);
        // Nothing new (most polls): keep the condition as it is, without building it again.
        if let Some(i) = previous {
            let c = &conditions[i];
            if c.status == value
                && c.reason == reason
                && c.observed_generation == self.generation
                && message.len() <= MESSAGE_MAX_CHARS
                && c.message == message
            {
                return;
            }
        }
        let transition = match previous {
            Some(i) if conditions[i].status == value => conditions[i].last_transition_time.clone(),
            _ => self.time.clone(),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            // Kubernetes bounds condition messages at 32768 bytes; ours are short, but error
            // texts come from outside.
            message: message.chars().take(MESSAGE_MAX_CHARS).collect(),
            last_transition_time: transition,
            observed_generation: self.generation,
        };
        match previous {
            Some(i) => conditions[i] = condition,
            None => conditions.push(condition),
        }
    }
}
