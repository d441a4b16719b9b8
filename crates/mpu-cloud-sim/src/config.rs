//! The simulator's configuration: accounts (AccessKey pairs and their QPS), the Alibaba account IDs
//! (uids) they belong to, tasks and their initial statuses, RRSA roles, and the clock-skew tolerance.
//! Read from YAML or JSON; every field has a default so a tiny file (or none) gives a working
//! simulator.
//!
//! Rate limits are counted per uid, as Alibaba counts GetMPUTaskStatus' QPS per Alibaba Cloud
//! account: every AccessKey of one uid (two RAM users of one account, say) and every STS session of
//! a role whose `account` is one of those keys share one sliding 1-second window. The uid's QPS is
//! `uids[].qps` when set, otherwise the largest `qps` among its keys (each key's `qps` defaulting to
//! `defaultQps`). A key without a uid gets one derived from its AccessKeyId ([`derive_uid`]), so a
//! config that names no uid keeps one limit per key, at that key's `qps`.
//!
//! A role may issue sessions shorter than Alibaba ever does ([`SimulatorConfig::role_session_seconds`],
//! `sessionSeconds` on a role in a file), so that a test sees temporary credentials expire and be
//! refreshed in seconds rather than after Alibaba's shortest session of 15 minutes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Alibaba's documented QPS for GetMPUTaskStatus, per account.
pub const DEFAULT_QPS: u32 = 10;
/// Alibaba rejects a Timestamp more than 15 minutes away from its clock.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 15 * 60;
/// The account used when the configuration names none: the AccessKey pair of Alibaba's published
/// signature example, so a bare `mpu-cloud-sim` accepts requests signed as the documentation shows.
pub const DEFAULT_ACCESS_KEY_ID: &str = "testid";
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "testsecret";
/// STS limits for AssumeRoleWithOIDC's `DurationSeconds`.
pub const DEFAULT_MAX_SESSION_SECONDS: u64 = 3600;
/// Upper bound on tasks generated from `taskSets`, so a typo cannot exhaust memory.
pub const MAX_GENERATED_TASKS: u64 = 1_000_000;
/// Longest uid accepted. Alibaba's are 16 digits; a little room for made-up ones.
pub const MAX_UID_DIGITS: usize = 32;
/// Digits of a uid derived from an AccessKeyId, as many as Alibaba's.
pub const DERIVED_UID_DIGITS: u32 = 16;

/// What went wrong reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read simulator config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid simulator config (YAML): {0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("invalid simulator config (JSON): {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid simulator config: {0}")]
    Invalid(String),
}

/// The whole configuration file.
///
/// Deserialized through a mirror of itself that also accepts a `uid` on each account (moved into
/// [`SimulatorConfig::uids`]); serialized as it is, which reads back the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawConfig")]
pub struct SimulatorConfig {
    /// How far `Timestamp`/`x-acs-date` may be from the simulator's clock, either way.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// How far the cloud's clock is ahead of this machine's (negative: behind), to reproduce a
    /// node whose clock is off: requests then carry timestamps the cloud finds stale.
    #[serde(default)]
    pub clock_offset_seconds: i64,
    /// QPS of an account that does not set its own.
    #[serde(default = "default_qps")]
    pub default_qps: u32,
    /// AccessKey pairs the simulator accepts. Empty means one account `testid`/`testsecret`.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Tasks and their initial statuses.
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
    /// Generated tasks, for benchmarks with thousands of tasks: `{appId, taskIdPrefix, count, status}`
    /// gives tasks `<prefix>0` .. `<prefix><count-1>`.
    #[serde(default)]
    pub task_sets: Vec<TaskSetConfig>,
    /// RAM roles that AssumeRoleWithOIDC may assume.
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
    /// Roles with a shorter session lifetime, by role ARN: a session issued for the role expires
    /// this many seconds after it was issued, whatever `DurationSeconds` asked for (which is still
    /// checked against Alibaba's bounds and the role's `maxSessionSeconds`), and its `Expiration`
    /// says so. Calls made with it afterwards are refused with `InvalidSecurityToken.Expired`, as
    /// with any expired session. Alibaba's shortest session is 900 s; this lets a test watch
    /// credentials expire, and be refreshed, within a minute. From 1 to the role's
    /// `maxSessionSeconds`. In a file, `sessionSeconds` on a role is shorthand for an entry here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_session_seconds: BTreeMap<String, u64>,
    /// Calls per second per uid of each relay action, replacing Alibaba's documented limits
    /// (StartLiveMPUTask, UpdateLiveMPUTask, StopLiveMPUTask 500; ListRtcMPUTaskDetail 50),
    /// e.g. `{"StartLiveMPUTask": 10}` to see throttling with few calls.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relay_qps: BTreeMap<crate::wire::Action, u32>,
    /// Alibaba account IDs: which AccessKeys belong to each (so share its rate limit) and its QPS.
    /// In a file, `uid` on an account is shorthand for listing the key here.
    #[serde(default)]
    pub uids: Vec<UidConfig>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            clock_offset_seconds: 0,
            default_qps: DEFAULT_QPS,
            accounts: Vec::new(),
            tasks: Vec::new(),
            task_sets: Vec::new(),
            roles: Vec::new(),
            role_session_seconds: BTreeMap::new(),
            relay_qps: BTreeMap::new(),
            uids: Vec::new(),
        }
    }
}

/// One Alibaba Cloud account (uid): the unit GetMPUTaskStatus' QPS is counted against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UidConfig {
    /// Decimal digits, like Alibaba's 16-digit account IDs.
    pub uid: String,
    /// Calls admitted in any sliding 1-second window, summed over all the uid's keys and STS
    /// sessions. When absent: the largest `qps` among its keys (each defaulting to `defaultQps`).
    #[serde(default)]
    pub qps: Option<u32>,
    /// AccessKeyIds of configured accounts that belong to this uid.
    #[serde(default)]
    pub access_key_ids: Vec<String>,
}

/// The file as written: [`SimulatorConfig`] plus an optional `uid` on each account and an optional
/// `sessionSeconds` on each role. Converted by moving each account's `uid` into
/// [`SimulatorConfig::uids`] and each role's `sessionSeconds` into
/// [`SimulatorConfig::role_session_seconds`] (where it replaces an entry for the same ARN);
/// conflicts (one key under two uids) are left for [`SimulatorConfig::validate`] to report.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    clock_offset_seconds: i64,
    #[serde(default = "default_qps")]
    default_qps: u32,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    tasks: Vec<TaskConfig>,
    #[serde(default)]
    task_sets: Vec<TaskSetConfig>,
    #[serde(default)]
    roles: Vec<RawRole>,
    #[serde(default)]
    role_session_seconds: BTreeMap<String, u64>,
    #[serde(default)]
    relay_qps: BTreeMap<crate::wire::Action, u32>,
    #[serde(default)]
    uids: Vec<UidConfig>,
}

/// A role as written: [`RoleConfig`] and its sessions' lifetime, when shorter.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRole {
    role_arn: String,
    account: String,
    #[serde(default)]
    oidc_provider_arn: Option<String>,
    #[serde(default = "default_max_session")]
    max_session_seconds: u64,
    /// See [`SimulatorConfig::role_session_seconds`].
    #[serde(default)]
    session_seconds: Option<u64>,
}

/// An account as written: [`AccountConfig`] and the uid it belongs to.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAccount {
    access_key_id: String,
    access_key_secret: String,
    #[serde(default)]
    qps: Option<u32>,
    /// The Alibaba account ID this key belongs to; derived from the AccessKeyId when absent.
    #[serde(default)]
    uid: Option<String>,
}

impl From<RawConfig> for SimulatorConfig {
    fn from(raw: RawConfig) -> Self {
        let mut uids = raw.uids;
        let mut accounts = Vec::with_capacity(raw.accounts.len());
        for account in raw.accounts {
            if let Some(uid) = account.uid {
                let index = match uids.iter().position(|u| u.uid == uid) {
                    Some(index) => index,
                    None => {
                        uids.push(UidConfig {
                            uid,
                            ..UidConfig::default()
                        });
                        uids.len() - 1
                    }
                };
                if let Some(entry) = uids.get_mut(index)
                    && !entry.access_key_ids.contains(&account.access_key_id)
                {
                    entry.access_key_ids.push(account.access_key_id.clone());
                }
            }
            accounts.push(AccountConfig {
                access_key_id: account.access_key_id,
                access_key_secret: account.access_key_secret,
                qps: account.qps,
            });
        }
        let mut role_session_seconds = raw.role_session_seconds;
        let roles = raw
            .roles
            .into_iter()
            .map(|role| {
                if let Some(seconds) = role.session_seconds {
                    role_session_seconds.insert(role.role_arn.clone(), seconds);
                }
                RoleConfig {
                    role_arn: role.role_arn,
                    account: role.account,
                    oidc_provider_arn: role.oidc_provider_arn,
                    max_session_seconds: role.max_session_seconds,
                }
            })
            .collect();
        Self {
            clock_skew_seconds: raw.clock_skew_seconds,
            clock_offset_seconds: raw.clock_offset_seconds,
            default_qps: raw.default_qps,
            accounts,
            tasks: raw.tasks,
            task_sets: raw.task_sets,
            roles,
            role_session_seconds,
            relay_qps: raw.relay_qps,
            uids,
        }
    }
}

/// One AccessKey pair (a RAM user) and its rate limit. In a file it may also carry `uid`, the
/// Alibaba account it belongs to (see [`UidConfig`]); in Rust that goes in
/// [`SimulatorConfig::uids`], so this struct keeps its three fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountConfig {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Calls admitted in any sliding 1-second window; `defaultQps` when absent. The limit is the
    /// uid's: keys sharing a uid share one window, at the largest `qps` among them unless the
    /// uid sets its own.
    #[serde(default)]
    pub qps: Option<u32>,
}

/// One task and the status it starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskConfig {
    pub app_id: String,
    pub task_id: String,
    #[serde(default)]
    pub status: i64,
}

/// A generated family of tasks in one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSetConfig {
    pub app_id: String,
    pub task_id_prefix: String,
    pub count: u64,
    #[serde(default)]
    pub status: i64,
}

/// A RAM role for RRSA: temporary credentials issued for it draw on the QPS budget of `account`'s
/// uid, as an STS session's calls count against the Alibaba account that owns the role. When
/// `account` has an explicit uid, the uid in `roleArn` must be that one. In a file a role may also
/// carry `sessionSeconds`, a shorter lifetime of its sessions (see
/// [`SimulatorConfig::role_session_seconds`]); in Rust that goes in that map, so this struct keeps
/// its four fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleConfig {
    /// `acs:ram::<uid>:role/<name>`.
    pub role_arn: String,
    /// AccessKeyId of the configured account whose budget the role's sessions use.
    pub account: String,
    /// When set, AssumeRoleWithOIDC must name this provider.
    #[serde(default)]
    pub oidc_provider_arn: Option<String>,
    /// Largest `DurationSeconds` accepted (the role's MaxSessionDuration).
    #[serde(default = "default_max_session")]
    pub max_session_seconds: u64,
}

fn default_clock_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}

fn default_qps() -> u32 {
    DEFAULT_QPS
}

fn default_max_session() -> u64 {
    DEFAULT_MAX_SESSION_SECONDS
}

/// A stable 16-digit uid for an AccessKeyId that names none: the same key always gets the same
/// uid (across runs and versions: SHA-256 is fixed), and no leading zero, as real uids have none.
pub fn derive_uid(access_key_id: &str) -> String {
    derive_digits("uid:", access_key_id)
}

/// A stable 16-digit id from `salt` and `text` (RAM user ids, role ids).
pub fn derive_digits(salt: &str, text: &str) -> String {
    let digest = Sha256::digest(format!("{salt}{text}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let low = 10u64.pow(DERIVED_UID_DIGITS - 1);
    let span = 10u64.pow(DERIVED_UID_DIGITS) - low;
    (low + u64::from_be_bytes(first) % span).to_string()
}

/// Checks a uid: 1 to [`MAX_UID_DIGITS`] ASCII digits.
pub fn validate_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() || uid.len() > MAX_UID_DIGITS || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "uid {uid:?} is not 1 to {MAX_UID_DIGITS} decimal digits"
        ));
    }
    Ok(())
}

/// The parts of `acs:ram::<uid>:role/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleArn<'a> {
    pub uid: &'a str,
    pub name: &'a str,
}

/// Parses a RAM role ARN; `None` when it is not `acs:ram::<digits>:role/<name>`.
pub fn parse_role_arn(arn: &str) -> Option<RoleArn<'_>> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (uid, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?;
    (validate_uid(uid).is_ok() && !name.is_empty()).then_some(RoleArn { uid, name })
}

impl SimulatorConfig {
    /// Parses YAML (JSON is YAML too, but a `.json` file goes through serde_json for exact errors).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        // An empty file is a valid "all defaults" config.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_saphyr::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a file; `.json` is parsed as JSON, anything else as YAML.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Self::from_json(&text)
        } else {
            Self::from_yaml(&text)
        }
    }

    /// The accounts in effect: the configured ones, or the default `testid` account.
    pub fn effective_accounts(&self) -> Vec<AccountConfig> {
        if self.accounts.is_empty() {
            vec![AccountConfig {
                access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
                access_key_secret: DEFAULT_ACCESS_KEY_SECRET.to_owned(),
                qps: None,
            }]
        } else {
            self.accounts.clone()
        }
    }

    /// The uid `access_key_id` belongs to: the one `uids` names for it, or one derived from it.
    pub fn uid_of(&self, access_key_id: &str) -> String {
        self.explicit_uid_of(access_key_id)
            .map_or_else(|| derive_uid(access_key_id), str::to_owned)
    }

    fn explicit_uid_of(&self, access_key_id: &str) -> Option<&str> {
        self.uids
            .iter()
            .find(|u| u.access_key_ids.iter().any(|k| k == access_key_id))
            .map(|u| u.uid.as_str())
    }

    /// Every uid in effect with its QPS and keys (sorted), configured or derived.
    pub fn effective_uids(&self) -> BTreeMap<String, (u32, Vec<String>)> {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut key_max: HashMap<String, u32> = HashMap::new();
        for account in self.effective_accounts() {
            let uid = self.uid_of(&account.access_key_id);
            let qps = account.qps.unwrap_or(self.default_qps);
            let max = key_max.entry(uid.clone()).or_insert(qps);
            *max = (*max).max(qps);
            keys.entry(uid).or_default().push(account.access_key_id);
        }
        for configured in &self.uids {
            keys.entry(configured.uid.clone()).or_default();
        }
        keys.into_iter()
            .map(|(uid, mut ids)| {
                ids.sort();
                let explicit = self.uids.iter().find(|u| u.uid == uid).and_then(|u| u.qps);
                let qps = explicit
                    .or_else(|| key_max.get(&uid).copied())
                    .unwrap_or(self.default_qps);
                (uid, (qps, ids))
            })
            .collect()
    }

    /// Checks what serde cannot: unique keys, roles pointing at known accounts, session lifetimes of
    /// known roles within their maximum, bounded task sets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let accounts = self.effective_accounts();
        let mut seen = std::collections::HashSet::new();
        for account in &accounts {
            if account.access_key_id.is_empty() {
                return Err(ConfigError::Invalid(
                    "an account has an empty accessKeyId".into(),
                ));
            }
            if !seen.insert(account.access_key_id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "account {:?} is listed twice",
                    account.access_key_id
                )));
            }
        }
        self.validate_uids(&seen)?;
        for role in &self.roles {
            if !seen.contains(role.account.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "role {:?} names unknown account {:?}",
                    role.role_arn, role.account
                )));
            }
            // A derived uid is a stand-in, so only an explicit one must agree with the ARN.
            if let (Some(key_uid), Some(arn)) = (
                self.explicit_uid_of(&role.account),
                parse_role_arn(&role.role_arn),
            ) && arn.uid != key_uid
            {
                return Err(ConfigError::Invalid(format!(
                    "role {:?} belongs to uid {} but its account {:?} to uid {key_uid}",
                    role.role_arn, arn.uid, role.account
                )));
            }
        }
        for (arn, seconds) in &self.role_session_seconds {
            let Some(role) = self.roles.iter().find(|r| &r.role_arn == arn) else {
                return Err(ConfigError::Invalid(format!(
                    "sessionSeconds is given for unknown role {arn:?}"
                )));
            };
            if !(1..=role.max_session_seconds).contains(seconds) {
                return Err(ConfigError::Invalid(format!(
                    "role {arn:?}: sessionSeconds {seconds} is not between 1 and its maxSessionSeconds {}",
                    role.max_session_seconds
                )));
            }
        }
        let generated: u64 = self.task_sets.iter().map(|s| s.count).sum();
        if generated > MAX_GENERATED_TASKS {
            return Err(ConfigError::Invalid(format!(
                "taskSets generate {generated} tasks, more than {MAX_GENERATED_TASKS}"
            )));
        }
        Ok(())
    }

    fn validate_uids(&self, accounts: &HashSet<&str>) -> Result<(), ConfigError> {
        let mut uids = HashSet::new();
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for entry in &self.uids {
            validate_uid(&entry.uid).map_err(ConfigError::Invalid)?;
            if !uids.insert(entry.uid.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "uid {} is listed twice",
                    entry.uid
                )));
            }
            for key in &entry.access_key_ids {
                if !accounts.contains(key.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "uid {} lists unknown account {key:?}",
                        entry.uid
                    )));
                }
                if let Some(other) = owner.insert(key, &entry.uid)
                    && other != entry.uid
                {
                    return Err(ConfigError::Invalid(format!(
                        "account {key:?} is given two uids, {other} and {}",
                        entry.uid
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every configured task, generated ones included, as (appId, taskId, status).
    pub fn all_tasks(&self) -> impl Iterator<Item = (String, String, i64)> + '_ {
        let listed = self
            .tasks
            .iter()
            .map(|t| (t.app_id.clone(), t.task_id.clone(), t.status));
        let generated = self.task_sets.iter().flat_map(|set| {
            (0..set.count).map(move |i| {
                (
                    set.app_id.clone(),
                    format!("{}{i}", set.task_id_prefix),
                    set.status,
                )
            })
        });
        listed.chain(generated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sample_config_parses() {
        let config =
            SimulatorConfig::from_yaml(include_str!("../../../examples/simulator.yaml")).unwrap();
        assert_eq!(config.accounts.len(), 3);
        assert_eq!(config.all_tasks().count(), 10_002);
        let uids = config.effective_uids();
        assert_eq!(
            uids["1234567890123456"],
            (
                10,
                vec![
                    "LTAI5tSimulatorDemo1".to_owned(),
                    "LTAI5tSimulatorDemo3".to_owned()
                ]
            )
        );
        assert_eq!(
            uids[&derive_uid("LTAI5tSimulatorDemo2")],
            (20, vec!["LTAI5tSimulatorDemo2".to_owned()])
        );
    }

    #[test]
    fn uid_on_an_account_joins_the_keys_of_that_uid() {
        let text = r#"
accounts:
  - {accessKeyId: A, accessKeySecret: s, uid: "1111111111111111", qps: 5}
  - {accessKeyId: B, accessKeySecret: s, uid: "1111111111111111", qps: 8}
  - {accessKeyId: C, accessKeySecret: s}
"#;
        let config = SimulatorConfig::from_yaml(text).unwrap();
        assert_eq!(
            config.uids,
            [UidConfig {
                uid: "1111111111111111".into(),
                qps: None,
                access_key_ids: vec!["A".into(), "B".into()],
            }]
        );
        assert_eq!(config.uid_of("B"), "1111111111111111");
        assert_eq!(config.uid_of("C"), derive_uid("C"));
        let uids = config.effective_uids();
        // Without its own qps a uid takes the largest of its keys'.
        assert_eq!(uids["1111111111111111"].0, 8);
        assert_eq!(uids[&derive_uid("C")], (10, vec!["C".to_owned()]));
    }

    #[test]
    fn uids_section_sets_the_qps_and_may_list_keys() {
        let text = r#"
accounts:
  - {accessKeyId: A, accessKeySecret: s, uid: "42", qps: 50}
  - {accessKeyId: B, accessKeySecret: s}
uids:
  - {uid: "42", qps: 3, accessKeyIds: [B]}
"#;
        let config = SimulatorConfig::from_yaml(text).unwrap();
        assert_eq!(
            config.effective_uids()["42"],
            (3, vec!["A".to_owned(), "B".to_owned()])
        );
    }

    #[test]
    fn derived_uid_is_sixteen_digits_and_stable_across_versions() {
        // Pinned: a changed derivation would silently move existing configs' budgets.
        assert_eq!(derive_uid("testid"), "1819689791407413");
        assert_eq!(derive_uid("LTAI5tSimulatorDemo2"), "3783256741410502");
        assert_ne!(derive_uid("a"), derive_uid("b"));
    }

    #[test]
    fn config_without_uids_keeps_one_limit_per_key() {
        let config = SimulatorConfig::from_yaml(
            "accounts:\n  - {accessKeyId: A, accessKeySecret: s}\n  - {accessKeyId: B, accessKeySecret: s, qps: 20}\n",
        )
        .unwrap();
        let uids = config.effective_uids();
        assert_eq!(uids.len(), 2);
        assert_eq!(uids[&derive_uid("A")].0, 10);
        assert_eq!(uids[&derive_uid("B")].0, 20);
    }

    #[test]
    fn bad_uids_are_rejected() {
        for (text, expect) in [
            (
                "accounts:\n  - {accessKeyId: A, accessKeySecret: s, uid: \"12x\"}\n",
                "decimal digits",
            ),
            (
                "accounts:\n  - {accessKeyId: A, accessKeySecret: s, uid: \"\"}\n",
                "decimal digits",
            ),
            (
                "accounts:\n  - {accessKeyId: A, accessKeySecret: s, uid: \"1\"}\nuids:\n  - {uid: \"2\", accessKeyIds: [A]}\n",
                "two uids",
            ),
            (
                "uids:\n  - {uid: \"2\", accessKeyIds: [nobody]}\n",
                "unknown account",
            ),
            (
                "uids:\n  - {uid: \"2\"}\n  - {uid: \"2\"}\n",
                "listed twice",
            ),
            (
                "accounts:\n  - {accessKeyId: A, accessKeySecret: s, uid: \"1\"}\nroles:\n  - {roleArn: \"acs:ram::2:role/r\", account: A}\n",
                "belongs to uid 2",
            ),
        ] {
            let err = SimulatorConfig::from_yaml(text).unwrap_err();
            assert!(err.to_string().contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn serialized_config_reads_back_the_same() {
        let config =
            SimulatorConfig::from_yaml(include_str!("../../../examples/simulator.yaml")).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(SimulatorConfig::from_json(&json).unwrap(), config);
    }

    #[test]
    fn role_arn_parses_into_uid_and_name() {
        assert_eq!(
            parse_role_arn("acs:ram::1234:role/mpu-relay"),
            Some(RoleArn {
                uid: "1234",
                name: "mpu-relay"
            })
        );
        for bad in [
            "acs:ram::x:role/r",
            "acs:ram::1:user/r",
            "acs:ram::1:role/",
            "arn:aws",
        ] {
            assert_eq!(parse_role_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_config_gives_default_account_and_limits() {
        let config = SimulatorConfig::from_yaml("").unwrap();
        assert_eq!(config.clock_skew_seconds, 900);
        assert_eq!(config.default_qps, 10);
        let accounts = config.effective_accounts();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].access_key_id, DEFAULT_ACCESS_KEY_ID);
    }

    #[test]
    fn yaml_config_with_every_section_parses() {
        let text = r#"
clockSkewSeconds: 60
defaultQps: 5
accounts:
  - accessKeyId: AK1
    accessKeySecret: s1
    qps: 20
  - accessKeyId: AK2
    accessKeySecret: s2
tasks:
  - appId: app
    taskId: t1
    status: 2
taskSets:
  - appId: bench
    taskIdPrefix: task-
    count: 3
roles:
  - roleArn: acs:ram::1:role/r
    account: AK2
"#;
        let config = SimulatorConfig::from_yaml(text).unwrap();
        assert_eq!(config.clock_skew_seconds, 60);
        assert_eq!(config.accounts[0].qps, Some(20));
        assert_eq!(config.accounts[1].qps, None);
        assert_eq!(config.roles[0].max_session_seconds, 3600);
        let tasks: Vec<_> = config.all_tasks().collect();
        assert_eq!(tasks.len(), 4);
        assert_eq!(tasks[3], ("bench".into(), "task-2".into(), 0));
    }

    #[test]
    fn json_config_parses_like_yaml() {
        let config = SimulatorConfig::from_json(
            r#"{"accounts":[{"accessKeyId":"AK","accessKeySecret":"s"}],"tasks":[{"appId":"a","taskId":"t"}]}"#,
        )
        .unwrap();
        assert_eq!(config.accounts[0].access_key_id, "AK");
        assert_eq!(config.tasks[0].status, 0);
    }

    #[test]
    fn role_naming_unknown_account_is_rejected() {
        let err = SimulatorConfig::from_yaml(
            "roles:\n  - roleArn: acs:ram::1:role/r\n    account: nobody\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown account"), "{err}");
    }

    #[test]
    fn duplicate_account_is_rejected() {
        let text = "accounts:\n  - {accessKeyId: A, accessKeySecret: s}\n  - {accessKeyId: A, accessKeySecret: t}\n";
        assert!(SimulatorConfig::from_yaml(text).is_err());
    }

    #[test]
    fn unknown_field_is_rejected_rather_than_ignored() {
        assert!(SimulatorConfig::from_yaml("clockSkew: 5\n").is_err());
    }

    #[test]
    fn garbage_config_is_an_error_not_a_panic() {
        for text in [
            "[",
            ": : :",
            "accounts: 7",
            "\u{0}\u{1}",
            "tasks: [{appId: 1}]",
        ] {
            assert!(SimulatorConfig::from_yaml(text).is_err(), "{text:?}");
        }
    }
}
