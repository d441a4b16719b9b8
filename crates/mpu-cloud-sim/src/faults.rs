//! Injected faults: what can go wrong on purpose (5xx, latency, malformed or huge body, dropped
//! connection, throttling storm), for which actions (GetMPUTaskStatus unless told otherwise, so
//! STS keeps working while the status API fails, and the other way round), for which account, and
//! for how many calls or how long.

use serde::{Deserialize, Serialize};

use super::wire::{Action, codes};

/// Actions a rule applies to when it names none: GetMPUTaskStatus, as before STS faults existed.
pub const DEFAULT_FAULT_ACTIONS: [Action; 1] = [Action::GetMpuTaskStatus];

/// Size of a `huge` body when the rule does not say: 10 MiB, past any sane client limit.
pub const DEFAULT_HUGE_BYTES: usize = 10 * 1024 * 1024;
/// Upper bound on a `huge` body and on `latency`, so an admin typo cannot exhaust the machine.
pub const MAX_HUGE_BYTES: usize = 256 * 1024 * 1024;
pub const MAX_LATENCY_MS: u64 = 10 * 60 * 1000;

/// One kind of fault, as the admin API names it (`{"kind": "http5xx", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultKind {
    /// An error answer with a 5xx status: `InternalError` (500) by default, or `ServiceUnavailable`
    /// (503), or any code with an explicit `status`.
    #[serde(rename = "http5xx", rename_all = "camelCase")]
    Http5xx {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        status: Option<u16>,
    },
    /// The normal answer, `ms` milliseconds late.
    Latency { ms: u64 },
    /// HTTP 200 with a truncated JSON body.
    Malformed,
    /// HTTP 200 with a valid JSON body of `bytes` bytes (10 MiB by default).
    Huge {
        #[serde(default)]
        bytes: Option<usize>,
    },
    /// Close the connection without answering.
    Drop,
    /// `Throttling.User` whatever the budget says; does not consume the budget.
    Throttle,
}

impl FaultKind {
    /// Rejects values the simulator cannot serve sensibly.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            FaultKind::Http5xx {
                status: Some(s), ..
            } if !(500..=599).contains(s) => Err(format!("http5xx status {s} is not a 5xx status")),
            FaultKind::Latency { ms } if *ms > MAX_LATENCY_MS => {
                Err(format!("latency {ms} ms exceeds {MAX_LATENCY_MS} ms"))
            }
            FaultKind::Huge { bytes: Some(b) } if *b > MAX_HUGE_BYTES => {
                Err(format!("huge body {b} bytes exceeds {MAX_HUGE_BYTES}"))
            }
            _ => Ok(()),
        }
    }

    /// Status, code and message of an `http5xx` fault.
    pub fn server_error(code: Option<&str>, status: Option<u16>) -> (u16, String) {
        let code = code.unwrap_or(codes::INTERNAL_ERROR);
        let default_status = if code == codes::SERVICE_UNAVAILABLE {
            503
        } else {
            500
        };
        (status.unwrap_or(default_status), code.to_owned())
    }
}

/// A fault rule as the admin API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// AccessKeyId of a configured account (its STS sessions included); every account when absent.
    #[serde(default)]
    pub account: Option<String>,
    /// Apply to the next `count` calls. With neither `count` nor `durationMs`, one call.
    #[serde(default)]
    pub count: Option<u64>,
    /// Apply to every call for this long from now.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// A fault rule and the actions it applies to, as `POST /admin/faults` takes it: the
/// [`FaultSpec`] fields plus `actions` (Alibaba's names, e.g.
/// `["AssumeRoleWithOIDC", "GetCallerIdentity"]`; `["GetMPUTaskStatus"]` when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRequest {
    #[serde(flatten)]
    pub spec: FaultSpec,
    #[serde(default = "default_actions")]
    pub actions: Vec<Action>,
}

fn default_actions() -> Vec<Action> {
    DEFAULT_FAULT_ACTIONS.to_vec()
}

/// A fault rule in force.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    pub id: u64,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// The actions it applies to.
    pub actions: Vec<Action>,
    pub account: Option<String>,
    /// Calls left; `None` when only a duration limits the rule.
    pub remaining: Option<u64>,
    /// Monotonic microseconds after which the rule lapses.
    #[serde(skip)]
    pub until_micros: Option<u64>,
    /// Milliseconds left, for the admin listing.
    pub remaining_ms: Option<u64>,
    pub applied: u64,
}

/// The rules in force, first match wins.
#[derive(Debug, Clone, Default)]
pub struct FaultSet {
    rules: Vec<FaultRule>,
    next_id: u64,
}

impl FaultSet {
    /// Adds a rule for `actions` (at least one).
    pub fn add(
        &mut self,
        spec: FaultSpec,
        actions: &[Action],
        now_micros: u64,
    ) -> Result<u64, String> {
        spec.kind.validate()?;
        if actions.is_empty() {
            return Err("a fault must apply to at least one action".into());
        }
        let mut actions = actions.to_vec();
        actions.sort();
        actions.dedup();
        let remaining = match (spec.count, spec.duration_ms) {
            (None, None) => Some(1),
            (count, _) => count,
        };
        if remaining == Some(0) {
            return Err("count must be at least 1".into());
        }
        self.next_id += 1;
        self.rules.push(FaultRule {
            id: self.next_id,
            kind: spec.kind,
            actions,
            account: spec.account,
            remaining,
            until_micros: spec
                .duration_ms
                .map(|ms| now_micros.saturating_add(ms.saturating_mul(1000))),
            remaining_ms: None,
            applied: 0,
        });
        Ok(self.next_id)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Rules still in force, with `remainingMs` filled in.
    pub fn list(&mut self, now_micros: u64) -> Vec<FaultRule> {
        self.expire(now_micros);
        self.rules
            .iter()
            .map(|r| FaultRule {
                remaining_ms: r.until_micros.map(|u| u.saturating_sub(now_micros) / 1000),
                ..r.clone()
            })
            .collect()
    }

    /// Takes the first rule for `action` matching `accounts` (the request's AccessKeyId and its
    /// budget account) and `want`, consuming one of its calls.
    pub fn take(
        &mut self,
        action: Action,
        accounts: &[&str],
        now_micros: u64,
        want: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        if self.rules.is_empty() {
            return None;
        }
        self.expire(now_micros);
        let index = self.rules.iter().position(|r| {
            r.actions.contains(&action)
                && want(&r.kind)
                && r.account.as_deref().is_none_or(|a| accounts.contains(&a))
        })?;
        let rule = self.rules.get_mut(index)?;
        rule.applied += 1;
        let kind = rule.kind.clone();
        if let Some(left) = rule.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.rules.remove(index);
            }
        }
        Some(kind)
    }

    fn expire(&mut self, now_micros: u64) {
        self.rules
            .retain(|r| r.until_micros.is_none_or(|until| now_micros < until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            account: None,
            count: None,
            duration_ms: None,
        }
    }

    const MPU: Action = Action::GetMpuTaskStatus;

    #[test]
    fn fault_without_count_or_duration_applies_once() {
        let mut set = FaultSet::default();
        set.add(spec(FaultKind::Malformed), &[MPU], 0).unwrap();
        assert_eq!(
            set.take(MPU, &["A"], 0, |_| true),
            Some(FaultKind::Malformed)
        );
        assert_eq!(set.take(MPU, &["A"], 0, |_| true), None);
    }

    #[test]
    fn fault_for_sts_actions_spares_get_mpu_task_status_and_vice_versa() {
        let mut set = FaultSet::default();
        let mut s = spec(FaultKind::Drop);
        s.count = Some(10);
        set.add(s.clone(), &Action::STS, 0).unwrap();
        assert_eq!(set.take(MPU, &["A"], 0, |_| true), None);
        assert_eq!(
            set.take(Action::GetCallerIdentity, &["A"], 0, |_| true),
            Some(FaultKind::Drop)
        );
        assert_eq!(
            set.take(Action::AssumeRoleWithOidc, &[], 0, |_| true),
            Some(FaultKind::Drop)
        );
        set.clear();
        set.add(s, &DEFAULT_FAULT_ACTIONS, 0).unwrap();
        assert_eq!(set.take(Action::AssumeRoleWithOidc, &[], 0, |_| true), None);
        assert_eq!(set.take(MPU, &["A"], 0, |_| true), Some(FaultKind::Drop));
    }

    #[test]
    fn fault_for_no_action_is_rejected() {
        let mut set = FaultSet::default();
        assert!(set.add(spec(FaultKind::Drop), &[], 0).is_err());
    }

    #[test]
    fn fault_request_without_actions_targets_get_mpu_task_status() {
        let r: FaultRequest =
            serde_json::from_str(r#"{"kind":"latency","ms":5,"account":"AK","count":2}"#).unwrap();
        assert_eq!(r.actions, DEFAULT_FAULT_ACTIONS);
        assert_eq!(r.spec.kind, FaultKind::Latency { ms: 5 });
        assert_eq!(
            (r.spec.account.as_deref(), r.spec.count),
            (Some("AK"), Some(2))
        );
        let r: FaultRequest = serde_json::from_str(
            r#"{"kind":"http5xx","code":"ServiceUnavailable","actions":["AssumeRoleWithOIDC","GetCallerIdentity"]}"#,
        )
        .unwrap();
        assert_eq!(r.actions, Action::STS);
        assert!(
            serde_json::from_str::<FaultRequest>(r#"{"kind":"drop","actions":["Nope"]}"#).is_err()
        );
    }

    #[test]
    fn fault_with_duration_lapses_after_it() {
        let mut set = FaultSet::default();
        let mut s = spec(FaultKind::Drop);
        s.duration_ms = Some(100);
        set.add(s, &[MPU], 0).unwrap();
        for _ in 0..5 {
            assert_eq!(
                set.take(MPU, &["A"], 99_999, |_| true),
                Some(FaultKind::Drop)
            );
        }
        assert_eq!(set.take(MPU, &["A"], 100_000, |_| true), None);
    }

    #[test]
    fn fault_for_one_account_spares_others() {
        let mut set = FaultSet::default();
        let mut s = spec(FaultKind::Throttle);
        s.account = Some("B".into());
        s.count = Some(2);
        set.add(s, &[MPU], 0).unwrap();
        assert_eq!(set.take(MPU, &["A"], 0, |_| true), None);
        assert_eq!(
            set.take(MPU, &["STS.x", "B"], 0, |_| true),
            Some(FaultKind::Throttle)
        );
    }

    #[test]
    fn fault_filter_skips_rules_of_another_stage() {
        let mut set = FaultSet::default();
        set.add(spec(FaultKind::Malformed), &[MPU], 0).unwrap();
        assert_eq!(
            set.take(MPU, &["A"], 0, |k| matches!(k, FaultKind::Throttle)),
            None
        );
        assert_eq!(set.list(0).len(), 1);
    }

    #[test]
    fn fault_spec_parses_from_admin_json() {
        let s: FaultSpec = serde_json::from_str(
            r#"{"kind":"http5xx","code":"ServiceUnavailable","account":"AK","count":3}"#,
        )
        .unwrap();
        assert_eq!(s.count, Some(3));
        assert_eq!(
            FaultKind::server_error(Some(codes::SERVICE_UNAVAILABLE), None),
            (503, codes::SERVICE_UNAVAILABLE.to_owned())
        );
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn fault_with_silly_values_is_rejected() {
        let mut set = FaultSet::default();
        let mut s = spec(FaultKind::Latency { ms: u64::MAX });
        assert!(set.add(s.clone(), &[MPU], 0).is_err());
        s.kind = FaultKind::Malformed;
        s.count = Some(0);
        assert!(set.add(s, &[MPU], 0).is_err());
    }
}
