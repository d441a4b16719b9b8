//! What an account's status says, as a pure function of what the operator knows of it: whether
//! it resolved, whether calls through it were refused, its tasks and its budget.
//!
//! A busy account's figures move all the time; the status is rewritten only when something a
//! person would act on changed (readiness, throttling, the task count, the limit) or a figure
//! moved by more than a tenth, so an account never turns into a stream of API writes.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AccountStatus, BudgetStatus, EventsStatus, OperationUse, conditions};
use crate::budget::{ActionUse, BudgetView};
use crate::cloud::CloudError;
use crate::cloud::response::reasons as cloud_reasons;
use crate::controller::status::{EventSpec, FALSE, Problem, Severity, Stamp, TRUE, reasons};

/// Everything an account's status is made of.
#[derive(Clone, Debug)]
pub struct AccountFacts<'a> {
    pub generation: Option<i64>,
    /// `Err`: why the account cannot be used.
    pub resolution: Result<(), &'a Problem>,
    /// Why the last calls through the account failed, when that is the account's doing (its
    /// key refused, its endpoint's certificate untrusted) and no call succeeded since.
    pub call_failure: Option<&'a CallFailure>,
    /// Tasks that reference the account.
    pub tasks: u32,
    /// The budget it joined (when resolved).
    pub budget: Option<BudgetView>,
    /// The use of its cloud account's managed-relay operations (those called so far).
    pub operations: Vec<ActionUse>,
    /// Its event subscriptions (with `spec.events`): the EventsReady condition and
    /// `status.events`.
    pub events: Option<(Readiness, EventsStatus)>,
}

/// What the account's `EventsReady` condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A failure of calls through an account that belongs to the account (its key, its endpoint's
/// certificate), not to one task: the account's Ready condition shows it until a call succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailure {
    pub reason: &'static str,
    pub message: String,
}

/// The account's word for a call's reason: AuthFailed for a refused key, the reason itself
/// otherwise.
fn account_reason(call_reason: &'static str) -> &'static str {
    match call_reason {
        cloud_reasons::AUTH_ERROR => reasons::AUTH_FAILED,
        other => other,
    }
}

impl CallFailure {
    /// The account's failure in `error`, if it is one (a throttled call or a task the cloud
    /// does not know say nothing about the account).
    pub fn of(error: &CloudError) -> Option<CallFailure> {
        let (reason, what) = match error.reason() {
            cloud_reasons::AUTH_ERROR => {
                (account_reason(error.reason()), "the cloud refused a call")
            }
            cloud_reasons::TLS_ERROR => (
                cloud_reasons::TLS_ERROR,
                "calls cannot reach the endpoint securely (its certificate, or --ca-bundle)",
            ),
            _ => return None,
        };
        Some(CallFailure {
            reason,
            message: format!("{what} through this account: {error}"),
        })
    }
}

/// The status to write (if `write`), the events to publish, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountDecision {
    pub status: AccountStatus,
    pub write: bool,
    pub events: Vec<EventSpec>,
    /// When the account is reconciled again (before the ±3 % jitter).
    pub next: Duration,
}

/// How often an account's status is refreshed (its budget figures, its task count).
pub const ACCOUNT_REFRESH: Duration = Duration::from_secs(15);
/// How soon an account that could not be resolved is looked at again: a passing problem (STS
/// unreachable) soon, one that needs a change (a Secret created or fixed) a little later.
pub const ACCOUNT_RETRY: Duration = Duration::from_secs(5);
pub const ACCOUNT_RETRY_AFTER_CHANGE: Duration = Duration::from_secs(10);

/// When an account is looked at again, by what its resolution gave.
fn next_look(resolution: Result<(), &Problem>) -> Duration {
    match resolution {
        Err(p) if !p.permanent => ACCOUNT_RETRY,
        Err(_) => ACCOUNT_RETRY_AFTER_CHANGE,
        Ok(()) => ACCOUNT_REFRESH,
    }
}

/// The action of events about an account.
pub const RESOLVE_ACTION: &str = "Resolve";

pub fn decide_account(
    previous: Option<&AccountStatus>,
    facts: &AccountFacts<'_>,
    now: Timestamp,
) -> AccountDecision {
    let prev = previous.cloned().unwrap_or_default();
    let mut next = prev.clone();
    next.observed_generation = facts.generation;
    next.tasks = facts.tasks;
    let stamp = Stamp {
        generation: facts.generation,
        time: Time(now),
    };
    let mut events = Vec::new();

    let (ready, reason, message) = match (facts.resolution, facts.call_failure) {
        // A key STS refuses is the same fault as a key the Live API refuses: the account says
        // AuthFailed for both, so that alerts need not know which call saw it (its tasks say
        // the call's own reason, AuthError).
        (Err(problem), _) => (
            FALSE,
            account_reason(problem.reason),
            problem.message.clone(),
        ),
        (Ok(()), Some(failure)) => (FALSE, failure.reason, failure.message.clone()),
        (Ok(()), None) => (
            TRUE,
            reasons::READY,
            "credentials resolved and the endpoint allowed".to_string(),
        ),
    };
    stamp.set(
        &mut next.conditions,
        conditions::READY,
        ready,
        reason,
        &message,
    );
    let was_ready = prev
        .condition(conditions::READY)
        .map(|c| (c.status.as_str(), c.reason.as_str()));
    if ready == FALSE && was_ready != Some((FALSE, reason)) {
        events.push(EventSpec {
            severity: Severity::Warning,
            reason,
            action: RESOLVE_ACTION.to_string(),
            note: message,
        });
    } else if ready == TRUE && was_ready.is_some_and(|(s, _)| s != TRUE) {
        events.push(EventSpec {
            severity: Severity::Normal,
            reason: reasons::READY,
            action: RESOLVE_ACTION.to_string(),
            note: "the account is usable again".into(),
        });
    }

    next.budget = facts.budget.as_ref().map(|view| {
        let fresh = BudgetStatus {
            tasks: u32::try_from(view.members).unwrap_or(u32::MAX),
            limit: round2(view.limit),
            rate: round2(view.rate),
            used: round2(view.used),
            throttled: view.throttled,
            operations: facts
                .operations
                .iter()
                .map(|u| OperationUse {
                    operation: u.operation.as_str().to_owned(),
                    limit: u.limit,
                    calls: u.calls,
                    throttled: u.throttled,
                })
                .collect(),
            interval: (!view.floor.is_zero()).then(|| {
                std::time::Duration::from_millis(
                    u64::try_from(view.floor.as_millis()).unwrap_or(u64::MAX),
                )
                .into()
            }),
        };
        match &prev.budget {
            Some(old) => steady(old, fresh),
            None => fresh,
        }
    });
    let slowed = facts.budget.as_ref().is_some_and(|v| v.slowed);
    let was_slowed = prev
        .condition(conditions::THROTTLED)
        .is_some_and(|c| c.status == TRUE);
    if let Some(view) = &facts.budget {
        if slowed {
            // Stable text (the figures are in status.budget), so a recovering rate does not
            // rewrite the condition at every reconcile.
            let note = format!(
                "the cloud throttled calls; the budget runs below {} calls/s until it recovers",
                view.limit
            );
            if !was_slowed {
                events.push(EventSpec {
                    severity: Severity::Warning,
                    reason: reasons::THROTTLED,
                    action: RESOLVE_ACTION.to_string(),
                    note: note.clone(),
                });
            }
            stamp.set(
                &mut next.conditions,
                conditions::THROTTLED,
                TRUE,
                reasons::THROTTLED,
                &note,
            );
        } else {
            stamp.set(
                &mut next.conditions,
                conditions::THROTTLED,
                FALSE,
                reasons::NOT_THROTTLED,
                "calls stay within the account's limit",
            );
        }
    }

    match &facts.events {
        Some((readiness, fresh)) => {
            let (status, reason) = if readiness.ready {
                (TRUE, readiness.reason)
            } else {
                (FALSE, readiness.reason)
            };
            let was = prev
                .condition(conditions::EVENTS_READY)
                .map(|c| (c.status.clone(), c.reason.clone()));
            if status == FALSE && was != Some((FALSE.to_string(), reason.to_string())) {
                events.push(EventSpec {
                    severity: Severity::Warning,
                    reason,
                    action: RESOLVE_ACTION.to_string(),
                    note: readiness.message.clone(),
                });
            }
            stamp.set(
                &mut next.conditions,
                conditions::EVENTS_READY,
                status,
                reason,
                &readiness.message,
            );
            next.events = Some(match &prev.events {
                Some(old) => steady_events(old, fresh.clone()),
                None => fresh.clone(),
            });
        }
        None => {
            next.conditions
                .retain(|c| c.type_ != conditions::EVENTS_READY);
            next.events = None;
        }
    }

    let write = next != prev;
    AccountDecision {
        status: next,
        write,
        events,
        next: next_look(facts.resolution),
    }
}

fn round2(x: f64) -> f64 {
    let rounded = (x * 100.0).round() / 100.0;
    if rounded.is_finite() {
        rounded
    } else if x.is_finite() {
        // Past f64::MAX / 100 (nothing to round there anyway): not infinity, which JSON writes
        // as null.
        x
    } else {
        0.0
    }
}

/// Keeps the old figures where the new ones moved by no more than a tenth (or 0.5 calls/s),
/// so that only material changes are written.
fn steady(old: &BudgetStatus, fresh: BudgetStatus) -> BudgetStatus {
    let near = |a: f64, b: f64| (a - b).abs() <= (0.1 * a.abs().max(b.abs())).max(0.5);
    let interval = match (&old.interval, &fresh.interval) {
        (Some(a), Some(b)) => {
            let (a, b) = (
                std::time::Duration::from(*a).as_secs_f64(),
                std::time::Duration::from(*b).as_secs_f64(),
            );
            if (a - b).abs() <= 0.1 * a.max(b) {
                old.interval
            } else {
                fresh.interval
            }
        }
        _ => fresh.interval,
    };
    BudgetStatus {
        rate: if near(old.rate, fresh.rate) {
            old.rate
        } else {
            fresh.rate
        },
        used: if near(old.used, fresh.used) {
            old.used
        } else {
            fresh.used
        },
        interval,
        operations: steady_operations(&old.operations, fresh.operations),
        ..fresh
    }
}

/// Keeps an operation's old counts while they moved by at most a tenth: the delivery log is
/// read at every refresh, and a count that moves at every reconcile must not be a write at
/// every reconcile (each write is a watch event that reconciles the account again). A new
/// operation, and a count's first moves, are written.
fn steady_operations(old: &[OperationUse], fresh: Vec<OperationUse>) -> Vec<OperationUse> {
    let near = |a: u64, b: u64| a.abs_diff(b) <= a.max(b) / 10;
    fresh
        .into_iter()
        .map(|f| match old.iter().find(|o| o.operation == f.operation) {
            Some(o)
                if o.limit == f.limit
                    && near(o.calls, f.calls)
                    && near(o.throttled, f.throttled) =>
            {
                o.clone()
            }
            _ => f,
        })
        .collect()
}

/// Keeps the old counts and the old time of the last event unless they moved by more than a
/// tenth or a minute: callbacks arrive all the time, and each must not be a status write.
fn steady_events(old: &EventsStatus, fresh: EventsStatus) -> EventsStatus {
    let near = |a: u64, b: u64| a.abs_diff(b) <= a.max(b) / 10;
    let recent = match (&old.last_event_at, &fresh.last_event_at) {
        (Some(a), Some(b)) => b.0.duration_since(a.0) < jiff::SignedDuration::from_secs(60),
        (a, b) => a == b,
    };
    let counts_near = near(old.delivered, fresh.delivered) && near(old.refused, fresh.refused);
    if counts_near && recent {
        EventsStatus {
            delivered: old.delivered,
            refused: old.refused,
            last_event_at: old.last_event_at.clone(),
            ..fresh
        }
    } else {
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    fn view(members: usize, used: f64, floor: u64) -> BudgetView {
        BudgetView {
            members,
            limit: 10.0,
            rate: 9.7,
            used,
            throttled: 0,
            slowed: false,
            floor: Duration::from_secs(floor),
        }
    }

    fn api_error(code: &str) -> CloudError {
        crate::cloud::CloudError::api_for_test(code, 400)
    }

    fn ok_facts(tasks: u32, budget: BudgetView) -> AccountFacts<'static> {
        AccountFacts {
            generation: Some(1),
            resolution: Ok(()),
            call_failure: None,
            tasks,
            operations: Vec::new(),
            events: None,
            budget: Some(budget),
        }
    }

    #[test]
    fn an_account_is_looked_at_again_in_15_s_or_sooner_while_it_cannot_be_used() {
        let d = decide_account(None, &ok_facts(1, view(1, 9.7, 0)), at(0));
        assert_eq!(d.next, ACCOUNT_REFRESH);
        let passing = Problem {
            reason: reasons::IDENTITY_UNKNOWN,
            message: "STS unreachable".into(),
            permanent: false,
        };
        let needs_change = Problem {
            reason: "SecretNotFound",
            message: "no Secret".into(),
            permanent: true,
        };
        for (problem, next) in [
            (&passing, ACCOUNT_RETRY),
            (&needs_change, ACCOUNT_RETRY_AFTER_CHANGE),
        ] {
            let facts = AccountFacts {
                resolution: Err(problem),
                budget: None,
                ..ok_facts(1, view(1, 9.7, 0))
            };
            assert_eq!(
                decide_account(None, &facts, at(0)).next,
                next,
                "{}",
                problem.reason
            );
        }
    }

    #[test]
    fn resolved_account_is_ready_and_shows_its_budget() {
        let d = decide_account(None, &ok_facts(40, view(40, 9.6, 4)), at(0));
        let ready = d.status.condition(conditions::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (TRUE, "Ready")
        );
        let budget = d.status.budget.as_ref().unwrap();
        assert_eq!(budget.tasks, 40);
        assert_eq!(budget.limit, 10.0);
        assert_eq!(budget.used, 9.6);
        assert_eq!(
            budget.interval.map(Duration::from),
            Some(Duration::from_secs(4))
        );
        assert!(d.write);
    }

    #[test]
    fn figures_that_wobble_are_not_rewritten() {
        let first = decide_account(None, &ok_facts(40, view(40, 9.6, 4)), at(0));
        let wobble = decide_account(
            Some(&first.status),
            &ok_facts(
                40,
                BudgetView {
                    floor: Duration::from_millis(4100),
                    ..view(40, 9.3, 4)
                },
            ),
            at(10),
        );
        assert!(!wobble.write, "{:?}", wobble.status);
        let more_tasks =
            decide_account(Some(&first.status), &ok_facts(41, view(41, 9.6, 4)), at(10));
        assert!(more_tasks.write);
    }

    #[test]
    fn operation_counts_that_creep_are_not_rewritten_at_every_reconcile() {
        let uses = |calls: u64| {
            vec![ActionUse {
                operation: crate::api::RelayOperation::EventRecords,
                limit: 100,
                calls,
                throttled: 0,
            }]
        };
        let facts = |calls| AccountFacts {
            operations: uses(calls),
            ..ok_facts(3, view(3, 9.6, 0))
        };
        let first = decide_account(None, &facts(40), at(0));
        // The delivery log is read at every refresh: one more read is no write...
        let next = decide_account(Some(&first.status), &facts(41), at(15));
        assert!(!next.write, "{:?}", next.status);
        // ...a tenth more is.
        let later = decide_account(Some(&first.status), &facts(45), at(60));
        assert!(later.write);
    }

    #[test]
    fn a_key_sts_refuses_makes_the_account_auth_failed_as_a_key_the_live_api_refuses() {
        let problem = Problem {
            reason: crate::cloud::response::reasons::AUTH_ERROR,
            message: "STS GetCallerIdentity failed: SignatureDoesNotMatch".into(),
            permanent: true,
        };
        let facts = AccountFacts {
            generation: Some(1),
            resolution: Err(&problem),
            call_failure: None,
            tasks: 1,
            operations: Vec::new(),
            events: None,
            budget: None,
        };
        let ready = decide_account(None, &facts, at(0))
            .status
            .condition(conditions::READY)
            .cloned()
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "AuthFailed")
        );
    }

    #[test]
    fn unusable_account_is_not_ready_with_the_reason_and_warns_once() {
        let problem = Problem {
            reason: reasons::ENDPOINT_NOT_ALLOWED,
            message: "endpoint http://127.0.0.1:1 is not in the operator's allowed endpoints"
                .into(),
            permanent: true,
        };
        let facts = AccountFacts {
            generation: Some(2),
            resolution: Err(&problem),
            call_failure: None,
            tasks: 3,
            operations: Vec::new(),
            events: None,
            budget: None,
        };
        let d = decide_account(None, &facts, at(0));
        let ready = d.status.condition(conditions::READY).unwrap();
        assert_eq!(ready.status, FALSE);
        assert_eq!(ready.reason, "EndpointNotAllowed");
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].severity, Severity::Warning);
        let again = decide_account(Some(&d.status), &facts, at(10));
        assert!(again.events.is_empty());
        assert!(!again.write);
    }

    #[test]
    fn refused_calls_make_the_account_not_ready_with_the_cloud_error() {
        let failure = CallFailure::of(&api_error("InvalidAccessKeyId.NotFound")).unwrap();
        let facts = AccountFacts {
            call_failure: Some(&failure),
            ..ok_facts(1, view(1, 0.1, 0))
        };
        let d = decide_account(None, &facts, at(0));
        let ready = d.status.condition(conditions::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "AuthFailed")
        );
        assert!(
            ready.message.contains("InvalidAccessKeyId.NotFound"),
            "{}",
            ready.message
        );
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].reason, "AuthFailed");
    }

    #[test]
    fn a_tls_failure_makes_the_account_not_ready_with_tls_error() {
        let error = CloudError::Tls("invalid peer certificate: UnknownIssuer".into());
        let failure = CallFailure::of(&error).unwrap();
        let facts = AccountFacts {
            call_failure: Some(&failure),
            ..ok_facts(1, view(1, 0.1, 0))
        };
        let ready = decide_account(None, &facts, at(0))
            .status
            .condition(conditions::READY)
            .cloned()
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "TlsError")
        );
        assert!(ready.message.contains("UnknownIssuer"), "{}", ready.message);
        assert!(ready.message.contains("--ca-bundle"), "{}", ready.message);
    }

    #[test]
    fn failures_of_one_task_or_of_the_moment_are_not_the_accounts() {
        for error in [
            api_error("InvalidTask.NotFound"),
            api_error("Throttling.User"),
            CloudError::Timeout,
            CloudError::Connect("connection refused".into()),
        ] {
            assert_eq!(CallFailure::of(&error), None, "{error:?}");
        }
    }

    #[test]
    fn throttling_is_a_condition_with_an_event_when_it_starts() {
        let calm = decide_account(None, &ok_facts(5, view(5, 5.0, 0)), at(0));
        let throttled = BudgetView {
            slowed: true,
            rate: 4.85,
            throttled: 2,
            ..view(5, 5.0, 0)
        };
        let d = decide_account(Some(&calm.status), &ok_facts(5, throttled.clone()), at(5));
        assert_eq!(
            d.status.condition(conditions::THROTTLED).unwrap().status,
            TRUE
        );
        assert_eq!(d.events[0].reason, "Throttled");
        let still = decide_account(Some(&d.status), &ok_facts(5, throttled), at(10));
        assert!(still.events.is_empty());
    }
}
