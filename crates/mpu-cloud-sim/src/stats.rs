//! Call accounting for tests and benchmarks: per account totals by outcome and by error code, the
//! densest 1-second window, and per-second buckets on the wall clock, each with its calls by
//! `User-Agent` (so a test can show that no two operator processes called in the same second).

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::Serialize;

use super::limiter::WindowMax;

/// Per-second buckets kept per account: a day, enough for any benchmark, bounded for a long demo.
pub const MAX_BUCKETS: usize = 24 * 60 * 60;
/// Distinct `User-Agent`s named in the buckets; later ones are counted as [`USER_AGENT_OTHER`], so a
/// client varying its agent cannot grow every bucket without bound.
pub const MAX_USER_AGENTS: usize = 64;
/// Longest `User-Agent` kept; a longer one is cut (at a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 256;
/// The label of agents past the first [`MAX_USER_AGENTS`].
pub const USER_AGENT_OTHER: &str = "other";
/// The label of requests without a `User-Agent` header (or with an empty one).
pub const USER_AGENT_NONE: &str = "none";

/// The `User-Agent`s seen since the last reset, at most [`MAX_USER_AGENTS`].
#[derive(Debug, Clone, Default)]
pub struct UserAgents {
    known: HashSet<String>,
}

impl UserAgents {
    /// The label a request's agent is counted under.
    pub fn label(&mut self, user_agent: Option<&str>) -> String {
        let agent = user_agent.map(str::trim).unwrap_or_default();
        if agent.is_empty() {
            return USER_AGENT_NONE.to_owned();
        }
        let mut end = agent.len().min(MAX_USER_AGENT_BYTES);
        while !agent.is_char_boundary(end) {
            end -= 1;
        }
        let agent = &agent[..end];
        if self.known.contains(agent) {
            return agent.to_owned();
        }
        if self.known.len() >= MAX_USER_AGENTS {
            return USER_AGENT_OTHER.to_owned();
        }
        self.known.insert(agent.to_owned());
        agent.to_owned()
    }
}

/// How a call ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Throttled,
    /// An error answer or an injected failure (5xx, malformed, huge, dropped).
    Error,
}

/// Calls in one wall-clock second.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Unix seconds.
    pub second: i64,
    pub total: u64,
    pub ok: u64,
    pub throttled: u64,
    pub errors: u64,
    /// Calls (any outcome) by `User-Agent`; see [`UserAgents`] for the labels.
    pub user_agents: BTreeMap<String, u64>,
}

/// Counters of one account (or of the calls no account could be named for).
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub total: u64,
    pub ok: u64,
    pub throttled: u64,
    pub errors: u64,
    /// Injected faults among `errors` (and latency faults among `ok`).
    pub faults: u64,
    pub codes: BTreeMap<String, u64>,
    window_total: WindowMax,
    window_ok: WindowMax,
    buckets: VecDeque<Bucket>,
}

/// The JSON view of [`CallStats`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallStatsView {
    pub total: u64,
    pub ok: u64,
    pub throttled: u64,
    pub errors: u64,
    pub faults: u64,
    /// Error answers by code.
    pub codes: BTreeMap<String, u64>,
    /// Most calls (any outcome) in any sliding 1-second window.
    pub max_calls_in_any_second: u64,
    /// Most successful calls in any sliding 1-second window.
    pub max_ok_in_any_second: u64,
    pub per_second: Vec<Bucket>,
}

impl CallStats {
    /// Counts one call; `agent` is its [`UserAgents::label`].
    pub fn record(
        &mut self,
        outcome: Outcome,
        code: Option<&str>,
        fault: bool,
        now_micros: u64,
        unix_second: i64,
        agent: &str,
    ) {
        self.total += 1;
        self.window_total.record(now_micros);
        if fault {
            self.faults += 1;
        }
        if let Some(code) = code {
            // Codes come from our own constants or configured faults, so the map stays small.
            *self.codes.entry(code.to_owned()).or_default() += 1;
        }
        if self.buckets.back().is_none_or(|b| b.second != unix_second) {
            if self.buckets.len() >= MAX_BUCKETS {
                self.buckets.pop_front();
            }
            self.buckets.push_back(Bucket {
                second: unix_second,
                ..Bucket::default()
            });
        }
        let mut bucket = Bucket::default();
        let bucket = self.buckets.back_mut().unwrap_or(&mut bucket);
        bucket.total += 1;
        match bucket.user_agents.get_mut(agent) {
            Some(count) => *count += 1,
            None => {
                bucket.user_agents.insert(agent.to_owned(), 1);
            }
        }
        match outcome {
            Outcome::Ok => {
                bucket.ok += 1;
                self.ok += 1;
                self.window_ok.record(now_micros);
            }
            Outcome::Throttled => {
                bucket.throttled += 1;
                self.throttled += 1;
            }
            Outcome::Error => {
                bucket.errors += 1;
                self.errors += 1;
            }
        }
    }

    pub fn view(&self, with_buckets: bool) -> CallStatsView {
        CallStatsView {
            total: self.total,
            ok: self.ok,
            throttled: self.throttled,
            errors: self.errors,
            faults: self.faults,
            codes: self.codes.clone(),
            max_calls_in_any_second: self.window_total.max(),
            max_ok_in_any_second: self.window_ok.max(),
            per_second: if with_buckets {
                self.buckets.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_outcomes_codes_and_buckets() {
        let mut stats = CallStats::default();
        stats.record(Outcome::Ok, None, false, 0, 100, "a");
        stats.record(
            Outcome::Throttled,
            Some("Throttling.User"),
            false,
            10,
            100,
            "b",
        );
        stats.record(
            Outcome::Error,
            Some("InternalError"),
            true,
            2_000_000,
            102,
            "a",
        );
        let view = stats.view(true);
        assert_eq!(
            (
                view.total,
                view.ok,
                view.throttled,
                view.errors,
                view.faults
            ),
            (3, 1, 1, 1, 1)
        );
        assert_eq!(view.codes["Throttling.User"], 1);
        assert_eq!(view.max_calls_in_any_second, 2);
        assert_eq!(view.per_second.len(), 2);
        assert_eq!(view.per_second[0].total, 2);
        assert_eq!(view.per_second[1].second, 102);
        assert_eq!(
            view.per_second[0].user_agents,
            BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)])
        );
        assert_eq!(
            view.per_second[1].user_agents,
            BTreeMap::from([("a".to_owned(), 1)])
        );
    }

    #[test]
    fn user_agents_past_the_limit_are_counted_as_other() {
        let mut agents = UserAgents::default();
        for i in 0..MAX_USER_AGENTS {
            assert_eq!(agents.label(Some(&format!("op/{i}"))), format!("op/{i}"));
        }
        assert_eq!(agents.label(Some("late/1")), USER_AGENT_OTHER);
        // Known agents keep their name after the limit is reached.
        assert_eq!(agents.label(Some("op/3")), "op/3");
        assert_eq!(agents.label(None), USER_AGENT_NONE);
        assert_eq!(agents.label(Some("  ")), USER_AGENT_NONE);
    }

    #[test]
    fn user_agent_too_long_is_cut_at_a_character_boundary() {
        let mut agents = UserAgents::default();
        let long = "é".repeat(MAX_USER_AGENT_BYTES);
        let label = agents.label(Some(&long));
        assert!(label.len() <= MAX_USER_AGENT_BYTES && label.len() >= MAX_USER_AGENT_BYTES - 1);
        assert!(label.chars().all(|c| c == 'é'));
    }
}
