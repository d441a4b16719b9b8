//! The budgets of the managed-relay actions: one rate per (cloud account, operation), as Alibaba
//! counts StartLiveMPUTask, UpdateLiveMPUTask and StopLiveMPUTask each against its own limit.
//!
//! Actions are rare next to polls (a start, an update, a stop per relay lifetime), so each budget
//! is a plain GCRA without burst: a call is admitted at its theoretical arrival time and the next
//! one an interval later. No window of one second can then hold more than the rate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::CloudAccount;
use crate::api::RelayOperation;

/// How long the cloud's throttling answer holds an operation back.
const THROTTLED_PAUSE: Duration = Duration::from_secs(1);

/// One operation's budget.
#[derive(Debug)]
struct Gcra {
    /// When the next call may go.
    next: Instant,
    /// Calls per second in force (the limit less its margin).
    rate: f64,
    limit: u32,
    calls: u64,
    throttled: u64,
}

/// What an operation's budget shows in the account status.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionUse {
    pub operation: RelayOperation,
    pub limit: u32,
    pub calls: u64,
    pub throttled: u64,
}

/// Every (cloud account, operation) budget of the process.
#[derive(Debug, Default)]
pub struct ActionBudgets {
    inner: Mutex<HashMap<(CloudAccount, RelayOperation), Gcra>>,
}

impl ActionBudgets {
    fn lock(&self) -> MutexGuard<'_, HashMap<(CloudAccount, RelayOperation), Gcra>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May `operation` be called for `account` now, at `limit` calls per second less `margin`
    /// (0..1)? `Err(wait)`: not before this long. An admitted call counts at once.
    pub fn admit(
        &self,
        account: &CloudAccount,
        operation: RelayOperation,
        limit: u32,
        margin: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        let rate = (f64::from(limit.max(1)) * (1.0 - margin.clamp(0.0, 0.9))).max(0.1);
        let mut budgets = self.lock();
        let budget = budgets.entry((account.clone(), operation)).or_insert(Gcra {
            next: now,
            rate,
            limit,
            calls: 0,
            throttled: 0,
        });
        budget.rate = rate;
        budget.limit = limit;
        if budget.next > now {
            return Err(budget.next - now);
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        // A call a little after its time keeps the pace's phase (else each late asker would
        // lose the difference); one after a pause starts a new pace.
        let base = if now.saturating_duration_since(budget.next) > interval {
            now
        } else {
            budget.next
        };
        budget.next = base + interval;
        budget.calls += 1;
        Ok(())
    }

    /// The cloud throttled a call: nothing of this operation goes for a second.
    pub fn throttled(&self, account: &CloudAccount, operation: RelayOperation, now: Instant) {
        if let Some(budget) = self.lock().get_mut(&(account.clone(), operation)) {
            budget.throttled += 1;
            budget.next = budget.next.max(now + THROTTLED_PAUSE);
        }
    }

    /// Each operation's use for `account`, in operation order (only those called).
    pub fn view(&self, account: &CloudAccount) -> Vec<ActionUse> {
        let budgets = self.lock();
        let mut uses: BTreeMap<RelayOperation, ActionUse> = BTreeMap::new();
        for ((a, operation), b) in budgets.iter() {
            if a == account {
                uses.insert(
                    *operation,
                    ActionUse {
                        operation: *operation,
                        limit: b.limit,
                        calls: b.calls,
                        throttled: b.throttled,
                    },
                );
            }
        }
        uses.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> CloudAccount {
        CloudAccount {
            uid: "1".into(),
            host: "live.aliyuncs.com".into(),
        }
    }

    /// Admits every call it can over `seconds`, asking every millisecond; the admission times.
    fn saturate(budgets: &ActionBudgets, limit: u32, margin: f64, seconds: u64) -> Vec<Duration> {
        let start = Instant::now();
        let mut admitted = Vec::new();
        for ms in 0..seconds * 1000 {
            let now = start + Duration::from_millis(ms);
            if budgets
                .admit(&account(), RelayOperation::Start, limit, margin, now)
                .is_ok()
            {
                admitted.push(now - start);
            }
        }
        admitted
    }

    #[test]
    fn no_second_holds_more_calls_than_the_limit_less_its_margin() {
        let budgets = ActionBudgets::default();
        let admitted = saturate(&budgets, 500, 0.03, 3);
        for (i, at) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|t| **t < *at + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 486,
                "{in_window} calls in the second from {at:?}"
            );
        }
        assert!(admitted.len() >= 3 * 480, "{} calls in 3 s", admitted.len());
    }

    #[test]
    fn a_refused_call_is_told_when_to_come_back() {
        let budgets = ActionBudgets::default();
        let now = Instant::now();
        let op = RelayOperation::Stop;
        assert!(budgets.admit(&account(), op, 2, 0.0, now).is_ok());
        let wait = budgets.admit(&account(), op, 2, 0.0, now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(budgets.admit(&account(), op, 2, 0.0, now + wait).is_ok());
    }

    #[test]
    fn operations_and_accounts_have_budgets_of_their_own() {
        let budgets = ActionBudgets::default();
        let now = Instant::now();
        let other = CloudAccount {
            uid: "2".into(),
            host: "live.aliyuncs.com".into(),
        };
        for op in RelayOperation::ALL {
            assert!(budgets.admit(&account(), op, 1, 0.0, now).is_ok());
        }
        assert!(
            budgets
                .admit(&other, RelayOperation::Start, 1, 0.0, now)
                .is_ok()
        );
        assert!(
            budgets
                .admit(&account(), RelayOperation::Start, 1, 0.0, now)
                .is_err()
        );
        let view = budgets.view(&account());
        assert_eq!(view.len(), RelayOperation::ALL.len());
        assert!(view.iter().all(|u| u.calls == 1 && u.limit == 1));
    }

    #[test]
    fn throttling_holds_the_operation_back_a_second() {
        let budgets = ActionBudgets::default();
        let now = Instant::now();
        let op = RelayOperation::Start;
        assert!(budgets.admit(&account(), op, 500, 0.0, now).is_ok());
        budgets.throttled(&account(), op, now);
        let wait = budgets.admit(&account(), op, 500, 0.0, now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(budgets.view(&account())[0].throttled, 1);
    }
}
