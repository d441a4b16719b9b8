//! The simulator's configuration: accounts (AccessKey pairs and their QPS), tasks and their initial
//! statuses, RRSA roles, and the clock-skew tolerance. Read from YAML or JSON; every field has a
//! default so a tiny file (or none) gives a working simulator.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Alibaba's documented QPS for GetMPUTaskStatus, per account.
pub const DEFAULT_QPS: u32 = 10;
/// Alibaba rejects a Timestamp more than 15 minutes away from its clock.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 15 * 60;
/// The account used when the configuration names none: the AccessKey pair of Alibaba's published
/// signature example, so a bare `simulate` accepts requests signed as the documentation shows.
pub const DEFAULT_ACCESS_KEY_ID: &str = "testid";
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "testsecret";
/// STS limits for AssumeRoleWithOIDC's `DurationSeconds`.
pub const DEFAULT_MAX_SESSION_SECONDS: u64 = 3600;
/// Upper bound on tasks generated from `taskSets`, so a typo cannot exhaust memory.
pub const MAX_GENERATED_TASKS: u64 = 1_000_000;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
        }
    }
}

/// One AccessKey pair and its rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountConfig {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Calls admitted in any sliding 1-second window; `defaultQps` when absent.
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

/// A RAM role for RRSA: temporary credentials issued for it draw on `account`'s QPS budget, as an
/// STS session's calls count against the account that owns the role.
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

    /// Checks what serde cannot: unique keys, roles pointing at known accounts, bounded task sets.
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
        for role in &self.roles {
            if !seen.contains(role.account.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "role {:?} names unknown account {:?}",
                    role.role_arn, role.account
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
            SimulatorConfig::from_yaml(include_str!("../../examples/simulator.yaml")).unwrap();
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.all_tasks().count(), 10_002);
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
