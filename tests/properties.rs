//! Property tests of the pure decisions and of decoding, over inputs nobody would write by hand:
//! previous statuses anyone with status rights could have written (any phase, any conditions,
//! timestamps at the ends of the calendar, garbage intervals), specs stored before the CRD's
//! bounds, every kind of cloud answer (codes at the i64 extremes, every error class, waits of
//! centuries), and call sequences at arbitrary instants.
//!
//! - `decide()`: never panics; Synced and Stalled always present, Ready whenever the outcome
//!   says something about the relay; the conditions agree with each other and with the phase;
//!   the requeue is always within (0, max(24 h, stalled retry, longest backoff)].
//! - `decide_account()`: never panics; Ready says whether the account resolved and was not
//!   refused; Throttled follows the budget; figures are finite; a second look at the same facts
//!   writes nothing.
//! - the budget: never more calls granted in any window than the limit in force allows; every
//!   task that keeps asking is admitted within a bound.
//! - deserialization of arbitrary JSON into every spec and status never panics.
//!
//! Regressions the properties found are kept as named tests at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mpu_relay_operator::api::{
    AccountStatus, BudgetStatus, ClusterMpuRelayAccount, MpuRelayAccount, MpuRelayTask,
    MpuRelayTaskSpec, MpuRelayTaskStatus, Phase, conditions,
};
use mpu_relay_operator::budget::{Admission, Budgets, CloudAccount, Feedback, Limit};
use mpu_relay_operator::cloud::response::{ApiError, DecodeProblem};
use mpu_relay_operator::cloud::{CloudError, ErrorClass, MpuTaskStatus};
use mpu_relay_operator::controller::account_status::{AccountFacts, CallFailure, decide_account};
use mpu_relay_operator::controller::decide::{
    self, Decision, NextSync, Outcome, PollConfig, decide,
};
use mpu_relay_operator::controller::status::{MESSAGE_MAX_CHARS, Problem};
use proptest::prelude::*;
use serde_json::Value;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn config() -> ProptestConfig {
    // Enough cases to find edge values, few enough for a shared 2-core machine.
    // Failures are kept below as named regression tests, not in a file beside this one.
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Instants anywhere in jiff's calendar, with the ends and today's neighbourhood likely.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    let now = 1_790_000_000i64;
    prop_oneof![
        Just(Timestamp::MIN),
        Just(Timestamp::MAX),
        (min..=max).prop_map(|s| Timestamp::from_second(s).unwrap()),
        (now - 40 * 86_400..now + 40 * 86_400, 0..1_000_000_000i32)
            .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap()),
    ]
}

/// Standard durations from nothing to `Duration::MAX`, short ones likely.
fn std_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..100_000).prop_map(Duration::from_millis),
        (0u64..10 * 86_400).prop_map(Duration::from_secs),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// `kube::core::Duration`s as an object may hold them: any length, negative too.
fn kube_duration() -> impl Strategy<Value = kube::core::Duration> {
    prop_oneof![
        std_duration().prop_map(kube::core::Duration::from),
        (0u64..1_000_000_000).prop_map(|s| format!("-{s}s").parse().unwrap()),
        Just("-0s".parse().unwrap()),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z .:-]{0,40}",
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
        (1usize..=3).prop_map(move |n| "é".repeat(max * n / 2)),
    ]
}

const CONDITION_TYPES: &[&str] = &[
    conditions::READY,
    conditions::SYNCED,
    conditions::STALLED,
    conditions::THROTTLED,
    "Reconciling",
    "Other",
];

fn condition_status() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("True".to_string()),
        Just("False".to_string()),
        Just("Unknown".to_string()),
        "[a-z]{0,6}",
    ]
}

/// A condition list as the API server keeps it: at most one condition of each type (the CRD
/// declares a list-map keyed by type, so duplicates are refused).
fn conditions_list() -> impl Strategy<Value = Vec<Condition>> {
    proptest::collection::vec(
        (
            condition_status(),
            "[A-Za-z]{0,12}",
            text(1500),
            timestamp(),
            proptest::option::of(any::<i64>()),
        ),
        CONDITION_TYPES.len(),
    )
    .prop_flat_map(|fields| {
        let all: Vec<Condition> = fields
            .into_iter()
            .zip(CONDITION_TYPES)
            .map(
                |((status, reason, message, at, generation), type_)| Condition {
                    type_: type_.to_string(),
                    status,
                    reason,
                    message,
                    last_transition_time: Time(at),
                    observed_generation: generation,
                },
            )
            .collect();
        proptest::sample::subsequence(all, 0..=CONDITION_TYPES.len()).prop_shuffle()
    })
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::WaitingForChannel),
        Just(Phase::Running),
        Just(Phase::Stopped),
        Just(Phase::StoppedByUser),
        Just(Phase::ChannelStopped),
        Just(Phase::CdnError),
        Just(Phase::StreamUrlError),
        Just(Phase::Unknown),
    ]
}

fn task_status() -> impl Strategy<Value = MpuRelayTaskStatus> {
    (
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(phase()),
            proptest::option::of(text(2000)),
            proptest::option::of(text(100)),
        ),
        conditions_list(),
        proptest::option::of(any::<i64>()),
        (
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
        ),
        proptest::option::of(kube_duration()),
    )
        .prop_map(
            |(
                (status_code, phase, message, request_id),
                conditions,
                observed_generation,
                (last_sync, phase_since, auto_stop),
                sync_interval,
            )| MpuRelayTaskStatus {
                status_code,
                phase,
                message,
                request_id,
                conditions,
                observed_generation,
                last_sync_time: last_sync.map(Time),
                phase_since: phase_since.map(Time),
                auto_stop_time: auto_stop.map(Time),
                sync_interval,
                management: None,
            },
        )
}

/// A task named `relay` of app `app` and task `task`, at generation 1, without an account.
fn relay(poll_interval: Option<kube::core::Duration>, suspend: bool) -> MpuRelayTask {
    let mut t = MpuRelayTask::new(
        "relay",
        MpuRelayTaskSpec {
            app_id: "app".into(),
            task_id: "task".into(),
            account_ref: None,
            poll_interval,
            suspend,
            ..Default::default()
        },
    );
    t.metadata.generation = Some(1);
    t
}

fn task() -> impl Strategy<Value = MpuRelayTask> {
    (
        proptest::option::of(kube_duration()),
        any::<bool>(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(task_status()),
    )
        .prop_map(|(poll_interval, suspend, generation, status)| {
            let mut t = relay(poll_interval, suspend);
            t.metadata.namespace = Some("ns".into());
            t.metadata.generation = generation;
            t.status = status;
            t
        })
}

/// The controller's configuration as `run` accepts it: every duration between 1 ms and 24 h,
/// the stopped interval possibly 0, the shortest backoff not above the longest.
fn poll_config() -> impl Strategy<Value = PollConfig> {
    let flag = || {
        prop_oneof![
            Just(Duration::from_millis(1)),
            Just(DAY),
            (1u64..=DAY.as_millis() as u64).prop_map(Duration::from_millis),
        ]
    };
    (
        (flag(), flag(), prop_oneof![Just(Duration::ZERO), flag()]),
        (flag(), flag(), flag(), flag()),
        (0u64..=40 * 86_400).prop_map(Duration::from_secs),
    )
        .prop_map(
            |((running, waiting, stopped), (a, b, stalled_retry, heartbeat), warning)| PollConfig {
                running,
                waiting,
                stopped,
                min_backoff: a.min(b),
                max_backoff: a.max(b),
                stalled_retry,
                heartbeat,
                auto_stop_warning: warning,
            },
        )
}

/// What one poll can give, as data (an `Outcome` is built from it for each run).
#[derive(Clone, Debug)]
enum OutcomeSpec {
    Polled(i64),
    Api {
        http_status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    Decode(u16, u8),
    Redirected(u16),
    Timeout,
    Connect(String),
    Transport(String),
    Account {
        reason: &'static str,
        message: String,
        permanent: bool,
    },
    Suspended,
    Internal(String),
}

impl OutcomeSpec {
    fn outcome(&self) -> Outcome {
        match self.clone() {
            OutcomeSpec::Polled(status) => Outcome::Polled(MpuTaskStatus {
                request_id: format!("req-{status}"),
                status,
            }),
            OutcomeSpec::Api {
                http_status,
                code,
                message,
                retry_after,
            } => Outcome::CloudFailed(CloudError::Api(Box::new(ApiError {
                http_status,
                code,
                message,
                request_id: "req".into(),
                host_id: None,
                recommend: None,
                retry_after,
            }))),
            OutcomeSpec::Decode(http_status, which) => Outcome::CloudFailed(CloudError::Decode {
                http_status,
                problem: match which % 8 {
                    0 => DecodeProblem::NotJson,
                    1 => DecodeProblem::NotObject,
                    2 => DecodeProblem::MissingStatus,
                    3 => DecodeProblem::StatusNotInteger,
                    4 => DecodeProblem::MissingRequestId,
                    5 => DecodeProblem::MissingCode,
                    6 => DecodeProblem::MissingField("Code"),
                    _ => DecodeProblem::TooLarge { limit: 1 << 20 },
                },
            }),
            OutcomeSpec::Redirected(http_status) => {
                Outcome::CloudFailed(CloudError::Redirected { http_status })
            }
            OutcomeSpec::Timeout => Outcome::CloudFailed(CloudError::Timeout),
            OutcomeSpec::Connect(s) => Outcome::CloudFailed(CloudError::Connect(s)),
            OutcomeSpec::Transport(s) => Outcome::CloudFailed(CloudError::Transport(s)),
            OutcomeSpec::Account {
                reason,
                message,
                permanent,
            } => Outcome::AccountUnusable(Problem {
                reason,
                message,
                permanent,
            }),
            OutcomeSpec::Suspended => Outcome::Suspended,
            OutcomeSpec::Internal(s) => Outcome::Internal(s),
        }
    }
}

const CLOUD_CODES: &[&str] = &[
    "Throttling",
    "Throttling.User",
    "ServiceUnavailable",
    "InternalError",
    "SignatureNonceUsed",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId.NotFound",
    "InvalidSecurityToken.Expired",
    "InvalidTimeStamp.Expired",
    "Forbidden.RAM",
    "InvalidTask.IDError",
    "InvalidTask.NotFound",
    "MissingParameter.TaskId",
    "",
];

const ACCOUNT_REASONS: &[&str] = &[
    "AccountRefMissing",
    "AccountNotFound",
    "AccountNotAllowed",
    "NamespacedAccountsDisabled",
    "EndpointNotAllowed",
    "IdentityUnknown",
    "AccountIdMismatch",
    "SecretNotFound",
    "AccountNotReady",
];

fn outcome() -> impl Strategy<Value = OutcomeSpec> {
    let code = prop_oneof![
        proptest::sample::select(CLOUD_CODES).prop_map(str::to_string),
        "[A-Za-z.]{0,30}",
    ];
    prop_oneof![
        prop_oneof![(-1i64..=8), Just(i64::MIN), Just(i64::MAX), any::<i64>()]
            .prop_map(OutcomeSpec::Polled),
        (
            prop_oneof![Just(400u16), Just(429), Just(500), Just(503), any::<u16>()],
            code,
            text(3000),
            proptest::option::of(std_duration()),
        )
            .prop_map(
                |(http_status, code, message, retry_after)| OutcomeSpec::Api {
                    http_status,
                    code,
                    message,
                    retry_after,
                }
            ),
        (any::<u16>(), any::<u8>()).prop_map(|(s, w)| OutcomeSpec::Decode(s, w)),
        any::<u16>().prop_map(OutcomeSpec::Redirected),
        Just(OutcomeSpec::Timeout),
        text(300).prop_map(OutcomeSpec::Connect),
        text(300).prop_map(OutcomeSpec::Transport),
        (
            proptest::sample::select(ACCOUNT_REASONS),
            text(2000),
            any::<bool>()
        )
            .prop_map(|(reason, message, permanent)| OutcomeSpec::Account {
                reason,
                message,
                permanent,
            }),
        Just(OutcomeSpec::Suspended),
        text(600).prop_map(OutcomeSpec::Internal),
    ]
}

// ---------------------------------------------------------------------------------------------
// decide()
// ---------------------------------------------------------------------------------------------

fn condition<'a>(status: &'a MpuRelayTaskStatus, type_: &str) -> Vec<&'a Condition> {
    status
        .conditions
        .iter()
        .filter(|c| c.type_ == type_)
        .collect()
}

fn is_bool(c: &Condition) -> bool {
    c.status == "True" || c.status == "False"
}

/// Everything one decision must satisfy, whatever the task and the outcome.
fn check_decision(
    task: &MpuRelayTask,
    spec: &OutcomeSpec,
    outcome: &Outcome,
    config: &PollConfig,
    d: &Decision,
    spread: f64,
    reachable: bool,
) -> Result<(), TestCaseError> {
    let status = &d.status;
    let prev = task.status.clone().unwrap_or_default();
    let (ready, synced, stalled) = (
        condition(status, conditions::READY),
        condition(status, conditions::SYNCED),
        condition(status, conditions::STALLED),
    );
    // Present, once each (Ready: see below), and never more than one per type.
    prop_assert_eq!(synced.len(), 1, "Synced: {:?}", status.conditions);
    prop_assert_eq!(stalled.len(), 1, "Stalled: {:?}", status.conditions);
    prop_assert!(ready.len() <= 1, "Ready: {:?}", status.conditions);
    prop_assert!(is_bool(synced[0]) && is_bool(stalled[0]));
    let (synced, stalled, ready) = (synced[0], stalled[0], ready.first().copied());
    let terminal = match outcome {
        Outcome::CloudFailed(e) => e.class() == ErrorClass::Terminal,
        Outcome::AccountUnusable(p) => p.permanent,
        _ => false,
    };
    // Synced is True exactly when the cloud answered.
    prop_assert_eq!(
        synced.status == "True",
        matches!(outcome, Outcome::Polled(_)),
        "Synced {:?} after {:?}",
        synced,
        spec
    );
    let news = matches!(outcome, Outcome::Polled(_)) || terminal;
    // Stalled implies not Ready: always in what decide writes from news of the relay, and in
    // every status decide reaches (without news it keeps what it had, garbage included).
    if stalled.status == "True" && (news || reachable) {
        prop_assert!(
            ready.is_some_and(|r| r.status == "False"),
            "Stalled but Ready {:?}",
            ready
        );
    }
    match outcome {
        Outcome::Polled(answer) => {
            let ready = ready.expect("Ready after a poll");
            prop_assert!(is_bool(ready));
            prop_assert_eq!(status.phase, Some(Phase::from_code(answer.status)));
            prop_assert_eq!(status.status_code, Some(answer.status));
            // Ready True iff the relay runs and the poll succeeded.
            prop_assert_eq!(
                ready.status == "True",
                status.phase == Some(Phase::Running) && synced.status == "True",
                "Ready {:?} for phase {:?}",
                ready,
                status.phase
            );
            prop_assert_eq!(
                stalled.status == "True",
                decide::stopped_by_the_cloud(Phase::from_code(answer.status))
            );
        }
        _ if terminal => {
            prop_assert_eq!(ready.map(|r| r.status.as_str()), Some("False"));
            prop_assert_eq!(stalled.status.as_str(), "True");
        }
        _ => {
            // No news of the relay: its readiness is what it was, and it is not stalled,
            // unless the cloud had stopped it (a passing error does not hide that).
            let was = |type_: &str| {
                prev.conditions
                    .iter()
                    .find(|c| c.type_ == type_)
                    .map(|c| c.status.as_str())
            };
            prop_assert_eq!(ready.map(|r| r.status.as_str()), was(conditions::READY));
            let stopped = !matches!(outcome, Outcome::Suspended)
                && prev.phase.is_some_and(decide::stopped_by_the_cloud);
            prop_assert_eq!(
                stalled.status.as_str(),
                if stopped { "True" } else { "False" },
                "Stalled {:?} after {:?} from {:?}",
                stalled,
                spec,
                prev.conditions
            );
            // The last observed phase is kept.
            prop_assert_eq!(status.phase, prev.phase);
        }
    }
    // What this decision wrote is bounded (conditions it kept are as they were).
    for c in &status.conditions {
        if !prev.conditions.contains(c) {
            prop_assert!(c.message.chars().count() <= MESSAGE_MAX_CHARS, "{:?}", c);
        }
    }
    if let Some(m) = &status.message {
        prop_assert!(m.chars().count() <= MESSAGE_MAX_CHARS);
    }
    prop_assert_eq!(status.observed_generation, task.metadata.generation);

    // When to come back: within (0, max(24 h, stalled retry, longest backoff)].
    let longest = DAY.max(config.stalled_retry).max(config.max_backoff);
    match d.next.bounded() {
        NextSync::After(delay) => {
            prop_assert!(!delay.is_zero(), "requeue(0) after {:?}", spec);
            prop_assert!(delay <= longest, "{:?} after {:?}", delay, spec);
        }
        NextSync::OnChange => {
            // Only a suspended task, or a stopped one when stopped tasks are not polled.
            let stopped_not_polled = matches!(outcome, Outcome::Polled(_))
                && config.stopped.is_zero()
                && !matches!(
                    status.phase,
                    Some(Phase::Running) | Some(Phase::WaitingForChannel)
                );
            prop_assert!(
                matches!(outcome, Outcome::Suspended) || stopped_not_polled,
                "never polled again after {:?} (pollInterval {:?}, phase {:?})",
                spec,
                task.spec.poll_interval,
                status.phase
            );
        }
    }
    if !matches!(outcome, Outcome::Polled(_))
        && let NextSync::After(delay) = d.next
    {
        prop_assert!(delay <= longest, "{:?} after {:?}", delay, spec);
    }
    match (d.requeue(spread), d.next) {
        (None, NextSync::OnChange) => {}
        (Some(delay), NextSync::After(_)) => {
            prop_assert!(!delay.is_zero(), "requeue(0) with spread {spread}");
            prop_assert!(delay <= longest.mul_f64(1.03), "{:?}", delay);
        }
        (r, n) => prop_assert!(false, "requeue {:?} for {:?}", r, n),
    }
    Ok(())
}

fn spread() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1.0,
        Just(0.0),
        Just(0.999_999),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        any::<f64>()
    ]
}

proptest! {
    #![proptest_config(config())]

    /// One decision from any previous status, spec, outcome, time and configuration.
    #[test]
    fn decide_never_panics_and_keeps_its_conditions_and_requeue_in_bounds(
        task in task(),
        spec in outcome(),
        now in timestamp(),
        config in poll_config(),
        floor in prop_oneof![Just(Duration::ZERO), (0u64..10_000_000).prop_map(Duration::from_millis)],
        spread in spread(),
    ) {
        let outcome = spec.outcome();
        let d = decide(&task, &outcome, now, &config, floor);
        check_decision(&task, &spec, &outcome, &config, &d, spread, false)?;
    }

    /// Any sequence of outcomes from a new task: every status reached is consistent, and a
    /// Ready condition that says True is about a running relay.
    #[test]
    fn every_status_decide_reaches_is_consistent(
        interval in proptest::option::of(kube_duration()),
        steps in proptest::collection::vec((outcome(), 0u64..4 * 86_400), 1..24),
        config in poll_config(),
    ) {
        let mut task = relay(interval, false);
        let mut now = Timestamp::from_second(1_790_000_000).unwrap();
        for (spec, advance) in steps {
            now = now.checked_add(jiff::SignedDuration::from_secs(advance as i64)).unwrap();
            let outcome = spec.outcome();
            let d = decide(&task, &outcome, now, &config, Duration::ZERO);
            check_decision(&task, &spec, &outcome, &config, &d, 0.5, true)?;
            let ready = d.status.condition(conditions::READY);
            if ready.is_some_and(|r| r.status == "True") {
                prop_assert_eq!(d.status.phase, Some(Phase::Running), "{:?}", d.status);
            }
            task.status = Some(d.status);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// decide_account()
// ---------------------------------------------------------------------------------------------

fn figure() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..100.0,
        Just(0.0),
        Just(-1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
    ]
}

fn budget_view() -> impl Strategy<Value = mpu_relay_operator::budget::BudgetView> {
    (
        any::<usize>(),
        (figure(), figure(), figure()),
        any::<u64>(),
        any::<bool>(),
        std_duration(),
    )
        .prop_map(|(members, (limit, rate, used), throttled, slowed, floor)| {
            mpu_relay_operator::budget::BudgetView {
                members,
                limit,
                rate,
                used,
                throttled,
                slowed,
                floor,
            }
        })
}

/// Account statuses as the API server may hold them (JSON numbers are finite).
fn account_status() -> impl Strategy<Value = AccountStatus> {
    let finite = || prop_oneof![0.0..100.0, -1e300..1e300f64];
    (
        conditions_list(),
        proptest::option::of(any::<i64>()),
        any::<u32>(),
        proptest::option::of((
            any::<u32>(),
            (finite(), finite(), finite()),
            any::<u64>(),
            proptest::option::of(kube_duration()),
        )),
    )
        .prop_map(
            |(conditions, observed_generation, tasks, budget)| AccountStatus {
                conditions,
                observed_generation,
                tasks,
                budget: budget.map(|(tasks, (limit, rate, used), throttled, interval)| {
                    BudgetStatus {
                        tasks,
                        limit,
                        rate,
                        used,
                        throttled,
                        interval,
                        operations: Vec::new(),
                    }
                }),
                events: None,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decide_account_never_panics_is_consistent_and_settles(
        previous in proptest::option::of(account_status()),
        generation in proptest::option::of(any::<i64>()),
        problem in proptest::option::of((proptest::sample::select(ACCOUNT_REASONS), text(2000), any::<bool>())),
        call_failure in proptest::option::of((proptest::sample::select(&["AuthFailed", "TlsError"][..]), text(2000))),
        tasks in any::<u32>(),
        budget in proptest::option::of(budget_view()),
        now in timestamp(),
        later in 0i64..86_400,
    ) {
        let problem = problem.map(|(reason, message, permanent)| Problem { reason, message, permanent });
        let call_failure = call_failure.map(|(reason, message)| CallFailure { reason, message });
        let facts = AccountFacts {
            generation,
            resolution: problem.as_ref().map_or(Ok(()), Err),
            call_failure: call_failure.as_ref(),
            tasks,
            operations: Vec::new(),
            events: None,
            budget: budget.clone(),
        };
        let d = decide_account(previous.as_ref(), &facts, now);
        let status = &d.status;
        let ready: Vec<_> = status.conditions.iter().filter(|c| c.type_ == conditions::READY).collect();
        prop_assert_eq!(ready.len(), 1);
        prop_assert_eq!(
            ready[0].status == "True",
            problem.is_none() && call_failure.is_none()
        );
        prop_assert!(ready[0].message.chars().count() <= MESSAGE_MAX_CHARS);
        prop_assert_eq!(status.observed_generation, generation);
        prop_assert_eq!(status.tasks, tasks);
        let throttled: Vec<_> = status.conditions.iter().filter(|c| c.type_ == conditions::THROTTLED).collect();
        prop_assert!(throttled.len() <= 1);
        if let Some(view) = &budget {
            prop_assert_eq!(throttled.len(), 1);
            prop_assert_eq!(throttled[0].status == "True", view.slowed);
            let b = status.budget.as_ref().expect("a budget status");
            // What is written is JSON: a non-finite figure would be written as null.
            prop_assert!(
                b.limit.is_finite() && b.rate.is_finite() && b.used.is_finite(),
                "{:?}",
                b
            );
            prop_assert!(serde_json::to_value(status).is_ok());
        } else {
            prop_assert!(status.budget.is_none());
        }
        // The same facts a moment later change nothing: no stream of writes, no new events.
        let later = now.checked_add(jiff::SignedDuration::from_secs(later)).unwrap_or(now);
        let again = decide_account(Some(status), &facts, later);
        prop_assert!(!again.write, "rewritten: {:?} -> {:?}", status, again.status);
        prop_assert!(again.events.is_empty(), "{:?}", again.events);
    }
}

// ---------------------------------------------------------------------------------------------
// The budget
// ---------------------------------------------------------------------------------------------

/// One step of a call sequence against one cloud account's budget.
#[derive(Clone, Debug)]
enum Step {
    /// Task `task` asks for a call, wanting to be polled every `desired`.
    Admit {
        task: u8,
        desired: Duration,
    },
    Feedback(u8),
    Release(u8),
    /// Account object `object` (one of two) declares a new limit.
    Limit {
        object: u8,
        qps: u32,
        margin: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..12, std_duration()).prop_map(|(task, desired)| Step::Admit { task, desired }),
        2 => (0u8..3).prop_map(Step::Feedback),
        1 => (0u8..12).prop_map(Step::Release),
        1 => (0u8..2, prop_oneof![1u32..30, Just(u32::MAX)], 0u8..=90)
            .prop_map(|(object, qps, margin)| Step::Limit { object, qps, margin }),
    ]
}

/// Time between steps: often nothing, often a little, sometimes long.
fn advance() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => Just(Duration::ZERO),
        4 => (0u64..200_000).prop_map(Duration::from_micros),
        2 => (0u64..3_000).prop_map(Duration::from_millis),
        1 => (0u64..200_000).prop_map(Duration::from_secs),
    ]
}

fn limit(qps: u32, margin: u8) -> Limit {
    // As the account reconcile declares it.
    Limit {
        qps: f64::from(qps.max(1)),
        margin: f64::from(margin.min(90)) / 100.0,
    }
}

fn cloud_account() -> CloudAccount {
    CloudAccount {
        uid: "1234567890".into(),
        host: "live.aliyuncs.com".into(),
    }
}

/// The cloud's rule as the budget declares it: at most `floor(limit)` calls in any 1.025 s.
fn window_calls(limit_in_force: f64) -> usize {
    (limit_in_force.floor() as usize).max(1)
}
const WINDOW: Duration = Duration::from_millis(1025);

/// Runs `steps` on a fresh budget whose slots lie on a lattice begun `epoch_before` earlier;
/// returns each granted call's instant and the calls allowed in a window at that instant.
fn run_steps(
    first: (u32, u8),
    epoch_before: Duration,
    steps: &[(Duration, Step)],
) -> Vec<(Instant, usize)> {
    let start = Instant::now();
    let budgets: Budgets<u8> = Budgets::new(start.checked_sub(epoch_before).unwrap_or(start));
    let mut now = start;
    let budget = budgets.join(&cloud_account(), "a", limit(first.0, first.1), now);
    let mut grants = Vec::new();
    // Feedback is about the latest granted call (none before the first grant).
    let mut last_call = None;
    for (advance, step) in steps {
        now += *advance;
        match step {
            Step::Admit { task, desired } => {
                if let Admission::Go { call, .. } = budget.admit(task, *desired, now) {
                    grants.push((now, window_calls(budget.view(now).limit)));
                    last_call = Some(call);
                }
            }
            Step::Feedback(kind) => {
                if let Some(call) = last_call {
                    budget.feedback(
                        call,
                        match kind {
                            0 => Feedback::Answered,
                            1 => Feedback::Throttled,
                            _ => Feedback::NoAnswer,
                        },
                        now,
                    )
                }
            }
            Step::Release(task) => budget.release(task),
            Step::Limit {
                object,
                qps,
                margin,
            } => {
                let object = if *object == 0 { "a" } else { "b" };
                budgets.join(&cloud_account(), object, limit(*qps, *margin), now);
            }
        }
    }
    grants
}

/// The first grant that was one too many in the window before it, if any.
fn overfull_window(grants: &[(Instant, usize)]) -> Option<String> {
    for (i, (at, allowed)) in grants.iter().enumerate() {
        let before = grants[..i]
            .iter()
            .filter(|(g, _)| *at < *g + WINDOW)
            .count();
        if before >= *allowed {
            return Some(format!(
                "grant {i} came with {before} others in the {WINDOW:?} before it (limit {allowed})"
            ));
        }
    }
    None
}

proptest! {
    #![proptest_config(config())]

    /// Whatever tasks ask, whatever the cloud answers, whatever limits the account objects
    /// declare: no grant is one too many in the cloud's window.
    #[test]
    fn the_budget_never_grants_more_than_the_limit_in_any_window(
        first in (prop_oneof![1u32..30, Just(u32::MAX)], 0u8..=90),
        steps in proptest::collection::vec((advance(), step()), 1..300),
        epoch_before in 0u64..10_000,
    ) {
        let grants = run_steps(first, Duration::from_millis(epoch_before), &steps);
        if let Some(problem) = overfull_window(&grants) {
            prop_assert!(false, "{}", problem);
        }
    }

    /// Tasks that come back when told (a little late at most) and keep asking after each call
    /// are all admitted in bounded time, whatever the cloud answers to the calls.
    #[test]
    fn every_task_that_keeps_asking_is_admitted_within_a_bound(
        qps in 1u32..30,
        margin in 0u8..=90,
        tasks in 1usize..12,
        intervals in proptest::collection::vec(0u64..5_000, 12),
        answers in proptest::collection::vec(0u8..3, 200),
        lateness in proptest::collection::vec(0u64..100, 400),
        epoch_before in 0u64..10_000,
    ) {
        let start = Instant::now();
        // The lattice the slots lie on began some time before.
        let epoch = start.checked_sub(Duration::from_millis(epoch_before)).unwrap_or(start);
        let budgets: Budgets<usize> = Budgets::new(epoch);
        let budget = budgets.join(&cloud_account(), "a", limit(qps, margin), start);
        // Each task's next ask, and since when it has been waiting.
        let mut next: Vec<Instant> = (0..tasks).map(|_| start).collect();
        let mut waiting_since: Vec<Instant> = next.clone();
        let mut answers = answers.into_iter().cycle();
        let mut lateness = lateness.into_iter().cycle();
        // The slowest the budget runs (the rate never drops below a twentieth of its limit,
        // and never below 0.01/s), for every task in line and a full window ahead.
        let max_rate = (f64::from(qps) * (1.0 - f64::from(margin) / 100.0)).max(0.01);
        let min_rate = (max_rate / 20.0).max(0.01);
        let bound = Duration::from_secs_f64((tasks as f64 + window_calls(f64::from(qps)) as f64 + 2.0) / min_rate) + 2 * WINDOW;
        let mut clock = start;
        for _ in 0..600 {
            let (task, &at) = next.iter().enumerate().min_by_key(|(_, at)| **at).unwrap();
            clock = at;
            let desired = Duration::from_millis(intervals[task]);
            match budget.admit(&task, desired, at) {
                Admission::Wait(delay) => {
                    next[task] = at + delay + Duration::from_millis(lateness.next().unwrap());
                }
                Admission::Go { call, .. } => {
                    let waited = at - waiting_since[task];
                    prop_assert!(
                        waited <= bound,
                        "task {} waited {:?} (bound {:?})", task, waited, bound
                    );
                    let answered = at + Duration::from_millis(50);
                    budget.feedback(
                        call,
                        match answers.next().unwrap() {
                            0 => Feedback::Answered,
                            1 => Feedback::Throttled,
                            _ => Feedback::NoAnswer,
                        },
                        answered,
                    );
                    next[task] = answered + desired;
                    waiting_since[task] = next[task];
                }
            }
        }
        // Nobody is still waiting past the bound either (a starved task never gets to the
        // check above).
        for (task, since) in waiting_since.iter().enumerate() {
            prop_assert!(
                clock.saturating_duration_since(*since) <= bound,
                "task {} still waiting after {:?} (bound {:?})",
                task,
                clock.saturating_duration_since(*since),
                bound
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "generation",
    "spec",
    "status",
    "appId",
    "taskId",
    "accountRef",
    "pollInterval",
    "suspend",
    "statusCode",
    "phase",
    "message",
    "requestId",
    "conditions",
    "type",
    "reason",
    "lastTransitionTime",
    "observedGeneration",
    "lastSyncTime",
    "phaseSince",
    "autoStopTime",
    "syncInterval",
    "tasks",
    "budget",
    "limit",
    "rate",
    "used",
    "throttled",
    "interval",
    "connection",
    "endpoint",
    "qps",
    "qpsMarginPercent",
    "credentials",
    "secretRef",
    "accountId",
    "api",
    "signature",
    "regionId",
    "namespaces",
    "namespaceSelector",
];

/// Strings a field may hold: durations of every size and sign, timestamps, names, anything.
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,25}(\\.[0-9]{1,6})?(ns|us|µs|ms|s|m|h)",
        "([0-9]{1,12}(ns|us|ms|s|m|h)){1,4}",
        "-?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z",
        proptest::sample::select(
            &[
                "True",
                "False",
                "Running",
                "MpuRelayAccount",
                "ClusterMpuRelayAccount",
                "Live",
                "Rtc",
                "V1",
                "V3",
                "mpurelay.io/v1alpha1",
                "MpuRelayTask",
                "https://live.aliyuncs.com",
                "",
            ][..]
        )
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    4 => proptest::sample::select(KEYS).prop_map(str::to_string),
                    1 => "[a-zA-Z]{0,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Wraps `value` where a field of the given path expects it, so that shapes the types accept
/// are reached often, not only by chance.
fn placed(path: &[&str], value: Value) -> Value {
    path.iter()
        .rev()
        .fold(value, |inner, key| serde_json::json!({ *key: inner }))
}

fn decode_all(value: &Value) {
    let _ = serde_json::from_value::<MpuRelayTask>(value.clone());
    let _ = serde_json::from_value::<MpuRelayTaskSpec>(value.clone());
    let _ = serde_json::from_value::<MpuRelayTaskStatus>(value.clone());
    let _ = serde_json::from_value::<MpuRelayAccount>(value.clone());
    let _ = serde_json::from_value::<ClusterMpuRelayAccount>(value.clone());
    let _ = serde_json::from_value::<AccountStatus>(value.clone());
    let _ = serde_json::from_value::<BudgetStatus>(value.clone());
    // As the watcher gets them: bytes.
    let bytes = serde_json::to_vec(value).unwrap();
    let _ = serde_json::from_slice::<MpuRelayTask>(&bytes);
    let _ = serde_json::from_slice::<MpuRelayAccount>(&bytes);
}

/// Where the typed values are: durations and times of every object and status.
const FIELD_PATHS: &[&[&str]] = &[
    &["spec", "pollInterval"],
    &["status", "syncInterval"],
    &["status", "budget", "interval"],
    &["interval"],
    &["syncInterval"],
    &["pollInterval"],
    &["status", "lastSyncTime"],
    &["status", "phaseSince"],
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_arbitrary_json_never_panics(value in json()) {
        decode_all(&value);
    }

    #[test]
    fn decoding_arbitrary_field_values_never_panics(
        value in json_string().prop_map(Value::String),
        path in proptest::sample::select(FIELD_PATHS),
    ) {
        let mut object = serde_json::json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": "relay", "namespace": "ns"},
            "spec": {"appId": "app", "taskId": "task"},
            "budget": {"tasks": 1, "limit": 10.0, "rate": 10.0, "used": 0.0, "throttled": 0},
            "status": {"budget": {"tasks": 1, "limit": 10.0, "rate": 10.0, "used": 0.0, "throttled": 0}},
        });
        merge(&mut object, placed(path, value));
        decode_all(&object);
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties (each failed before its fix)
// ---------------------------------------------------------------------------------------------

/// kube-core's duration parser panicked on a term past u64::MAX seconds or a negative term
/// inside the string: one such value in a status (anyone with status rights can write one) or
/// in a spec stored before the CRD's bounds panicked the watch, and the process, at every start.
#[test]
fn regression_an_interval_kube_core_cannot_hold_reads_as_absent_instead_of_panicking() {
    for garbage in [
        "20000000000000000000s",
        "1s-5s",
        "9000000000000000h",
        "soon",
    ] {
        let task: MpuRelayTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "mpurelay.io/v1alpha1", "kind": "MpuRelayTask",
            "metadata": {"name": "relay", "namespace": "ns"},
            "spec": {"appId": "app", "taskId": "task", "pollInterval": garbage},
            "status": {"phase": "Running", "syncInterval": garbage},
        }))
        .unwrap_or_else(|e| panic!("{garbage}: {e}"));
        assert_eq!(task.spec.poll_interval, None, "{garbage}");
        let status = task.status.unwrap();
        assert_eq!(
            (status.phase, status.sync_interval),
            (Some(Phase::Running), None)
        );
        let budget: BudgetStatus = serde_json::from_value(serde_json::json!({
            "tasks": 1, "limit": 10.0, "rate": 10.0, "used": 0.0, "throttled": 0,
            "interval": garbage,
        }))
        .unwrap();
        assert_eq!(budget.interval, None, "{garbage}");
    }
    // Good values read as before, a number as absent.
    let status: MpuRelayTaskStatus =
        serde_json::from_value(serde_json::json!({"syncInterval": "1h30m"})).unwrap();
    assert_eq!(status.sync_interval, Some("1h30m".parse().unwrap()));
    let status: MpuRelayTaskStatus =
        serde_json::from_value(serde_json::json!({"syncInterval": 5})).unwrap();
    assert_eq!(status.sync_interval, None);
}

/// `pollInterval: 0s` (stored before the CRD's 1 s minimum) stopped polling a running relay
/// for good; it is now polled at the minimum.
#[test]
fn regression_a_zero_poll_interval_does_not_stop_polling() {
    let task = relay(Some("0s".parse().unwrap()), false);
    let outcome = OutcomeSpec::Polled(0).outcome();
    let d = decide(
        &task,
        &outcome,
        Timestamp::from_second(1_790_000_000).unwrap(),
        &PollConfig::default(),
        Duration::ZERO,
    );
    assert_eq!(d.next, NextSync::After(decide::MIN_POLL_INTERVAL));
}

/// The window guard looked at the oldest of the calls kept for the old limit: after an
/// account object lowered the limit (u32::MAX to 1 call/s), a second call went out 140 ms after
/// the first.
#[test]
fn regression_lowering_the_limit_counts_the_calls_already_in_the_window() {
    let steps = [
        (
            Duration::ZERO,
            Step::Limit {
                object: 0,
                qps: u32::MAX,
                margin: 0,
            },
        ),
        (
            Duration::ZERO,
            Step::Admit {
                task: 0,
                desired: Duration::ZERO,
            },
        ),
        (
            Duration::from_millis(885),
            Step::Admit {
                task: 0,
                desired: Duration::ZERO,
            },
        ),
        (
            Duration::from_micros(54_945),
            Step::Limit {
                object: 0,
                qps: 1,
                margin: 0,
            },
        ),
        (
            Duration::from_micros(85_055),
            Step::Admit {
                task: 0,
                desired: Duration::ZERO,
            },
        ),
    ];
    let grants = run_steps((1, 0), Duration::ZERO, &steps);
    assert_eq!(overfull_window(&grants), None, "{} grants", grants.len());
}

/// Throttling dropped every reservation: the throttled task asked again at once and went ahead
/// of the tasks waiting for theirs. With every call throttled, one of two tasks was never
/// called again (its wait grew without bound: 20 000 s in 3 000 asks).
#[test]
fn regression_sustained_throttling_does_not_starve_a_waiting_task() {
    let start = Instant::now();
    let budgets: Budgets<usize> = Budgets::new(start);
    let budget = budgets.join(&cloud_account(), "a", limit(1, 0), start);
    let mut next = [start; 3];
    let mut waiting_since = [start; 3];
    let mut calls = [0u32; 3];
    for _ in 0..3000 {
        let (task, &at) = next.iter().enumerate().min_by_key(|(_, at)| **at).unwrap();
        match budget.admit(&task, Duration::ZERO, at) {
            Admission::Wait(delay) => next[task] = at + delay,
            Admission::Go { call, .. } => {
                // At 1 call/s throttled down to 0.05/s: 20 s apart, three tasks in line.
                assert!(
                    at - waiting_since[task] <= Duration::from_secs(70),
                    "task {task} waited {:?}",
                    at - waiting_since[task]
                );
                calls[task] += 1;
                let answered = at + Duration::from_millis(50);
                budget.feedback(call, Feedback::Throttled, answered);
                next[task] = answered;
                waiting_since[task] = answered;
            }
        }
    }
    let fewest = *calls.iter().min().unwrap();
    let most = *calls.iter().max().unwrap();
    assert!(most - fewest <= 1, "calls per task {calls:?}");
}

/// A budget figure past f64::MAX / 100 was rounded to infinity, which JSON writes as null.
#[test]
fn regression_huge_budget_figures_are_written_finite() {
    let facts = AccountFacts {
        generation: Some(1),
        resolution: Ok(()),
        call_failure: None,
        tasks: 0,
        operations: Vec::new(),
        events: None,
        budget: Some(mpu_relay_operator::budget::BudgetView {
            members: 0,
            limit: f64::MAX,
            rate: 0.0,
            used: 0.0,
            throttled: 0,
            slowed: false,
            floor: Duration::ZERO,
        }),
    };
    let d = decide_account(None, &facts, Timestamp::from_second(1_790_000_000).unwrap());
    let budget = d.status.budget.unwrap();
    assert_eq!(budget.limit, f64::MAX);
}

/// After c2e5100 a passing error on a relay the cloud had stopped kept Stalled as it was:
/// absent from a status without it, `Unknown` or garbage as someone wrote it, or False from a
/// suspension in between. It now says True with the phase, as the poll that saw the phase did.
#[test]
fn regression_a_passing_error_after_a_cloud_stop_says_stalled() {
    let config = PollConfig::default();
    let mut task = relay(None, false);
    let at = |s| Timestamp::from_second(1_790_000_000 + s).unwrap();
    let stalled = |d: &Decision| {
        let c = d.status.condition(conditions::STALLED).expect("Stalled");
        (c.status.clone(), c.reason.clone())
    };
    // A status with the phase and nothing else.
    task.status = Some(MpuRelayTaskStatus {
        phase: Some(Phase::Stopped),
        ..MpuRelayTaskStatus::default()
    });
    let d = decide(
        &task,
        &OutcomeSpec::Timeout.outcome(),
        at(0),
        &config,
        Duration::ZERO,
    );
    assert_eq!(stalled(&d), ("True".into(), "Stopped".into()));
    // Stopped by the cloud, suspended, resumed, then a timeout.
    task.status = None;
    for (i, spec) in [
        OutcomeSpec::Polled(2),
        OutcomeSpec::Suspended,
        OutcomeSpec::Timeout,
    ]
    .into_iter()
    .enumerate()
    {
        let d = decide(
            &task,
            &spec.outcome(),
            at(i as i64 * 10),
            &config,
            Duration::ZERO,
        );
        task.status = Some(d.status);
    }
    let status = task.status.unwrap();
    let c = status.condition(conditions::STALLED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Stopped"));
}
