//! The proof on `status.management`: the record that makes an object a relay's owner lives in
//! the object's status, which anyone with status rights on the object can write. A tenant who
//! wrote `startedAt` on their own object, naming a TaskId that another team's relay runs under,
//! would have the operator update or stop that relay. So the operator signs what it writes
//! (HMAC-SHA256 under a key only it reads, `--ownership-key-file`) over the object's UID, the
//! AppId and TaskId and the times that make it the owner, and trusts no record without it: a
//! forged or copied record (another object's UID) counts as none.
//!
//! The key lives in a Secret of the operator's namespace (`--ownership-key-secret`), which
//! the operator creates with a random key when it is absent: every replica and restart signs
//! alike, and no install method (`helm template` included) rotates it by accident.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::api::{ManagementStatus, MpuRelayTask};

/// The operator's ownership key. Without one (`None` in the context) records are trusted as
/// written, and the operator says so at start.
#[derive(Clone)]
pub struct OwnershipKey(Vec<u8>);

impl std::fmt::Debug for OwnershipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnershipKey(..)")
    }
}

/// The shortest key accepted: 32 bytes of a random text.
pub const MIN_KEY_BYTES: usize = 32;
/// The key's entry in its Secret.
pub const SECRET_KEY: &str = "key";

/// A new Secret `name` with a random key (48 alphanumerics, 285 bits).
pub fn new_secret(name: &str) -> k8s_openapi::api::core::v1::Secret {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let key: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "mpu-relay-operator".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        string_data: Some([(SECRET_KEY.to_owned(), key)].into()),
        ..Default::default()
    }
}

impl OwnershipKey {
    /// A key of at least [`MIN_KEY_BYTES`] (surrounding whitespace, a file's newline, ignored).
    pub fn new(bytes: &[u8]) -> Result<OwnershipKey, String> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the ownership key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                trimmed.len()
            ));
        }
        Ok(OwnershipKey(trimmed.to_vec()))
    }

    fn mac(&self, task: &MpuRelayTask, management: &ManagementStatus) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("any key size"));
        let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map(|t| t.0.as_second().to_string()).unwrap_or_default()
        };
        for part in [
            "mpurelay.io/ownership/v1",
            task.metadata.uid.as_deref().unwrap_or_default(),
            &task.spec.app_id,
            &task.spec.task_id,
            &time(management.started_at.as_ref()),
            &time(management.starting.as_ref().map(|s| &s.since)),
            if management.adopted { "adopted" } else { "" },
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    fn callback_mac(&self, account_uid: &str, app_id: &str, rotation: u32) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("any key size"));
        for part in [
            "mpurelay.io/events/v1",
            account_uid,
            app_id,
            &rotation.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// The token in the callback URL of the subscription of `app_id` for the account object
    /// `account_uid`: only this operator can make it, so a subscription carrying it is this
    /// operator's, and a callback carrying it was sent to the URL the operator registered.
    pub fn callback_token(&self, account_uid: &str, app_id: &str, rotation: u32) -> String {
        hex::encode(
            self.callback_mac(account_uid, app_id, rotation)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `token` is [`OwnershipKey::callback_token`]'s, compared in constant time.
    pub fn verify_callback_token(
        &self,
        account_uid: &str,
        app_id: &str,
        rotation: u32,
        token: &str,
    ) -> bool {
        // 32 bytes as 64 hex digits: anything else is refused before any MAC is computed.
        if token.len() != 64 {
            return false;
        }
        let Ok(tag) = hex::decode(token) else {
            return false;
        };
        self.callback_mac(account_uid, app_id, rotation)
            .verify_slice(&tag)
            .is_ok()
    }

    /// `management` with its proof for `task`.
    pub fn sign(&self, task: &MpuRelayTask, mut management: ManagementStatus) -> ManagementStatus {
        management.proof = None;
        let tag = self.mac(task, &management).finalize().into_bytes();
        management.proof = Some(hex::encode(tag));
        management
    }

    /// Whether `management` carries this operator's proof for `task`.
    pub fn verify(&self, task: &MpuRelayTask, management: &ManagementStatus) -> bool {
        let Some(proof) = management
            .proof
            .as_deref()
            .and_then(|p| hex::decode(p).ok())
        else {
            return false;
        };
        self.mac(task, management).verify_slice(&proof).is_ok()
    }
}

/// Where the operator's key stands: none configured (records trusted as written), known, or
/// still being read (the API server was not reachable at start): managed tasks wait for it,
/// observed ones do not.
#[derive(Debug, Default)]
pub struct Ownership {
    required: bool,
    key: std::sync::OnceLock<OwnershipKey>,
}

/// The key is configured but not read yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPending;

impl Ownership {
    /// No key: records are trusted as written.
    pub fn trusting() -> Ownership {
        Ownership::default()
    }

    /// A key that [`Ownership::set`] will bring.
    pub fn awaiting() -> Ownership {
        Ownership {
            required: true,
            key: std::sync::OnceLock::new(),
        }
    }

    /// A key known now.
    pub fn signed_by(key: OwnershipKey) -> Ownership {
        let ownership = Ownership::awaiting();
        ownership.set(key);
        ownership
    }

    /// The key, once read (later calls keep the first).
    pub fn set(&self, key: OwnershipKey) {
        let _ = self.key.set(key);
    }

    /// The key to sign and check with (`None`: trusting), or `KeyPending` while it is awaited.
    pub fn key(&self) -> Result<Option<&OwnershipKey>, KeyPending> {
        match (self.key.get(), self.required) {
            (Some(key), _) => Ok(Some(key)),
            (None, false) => Ok(None),
            (None, true) => Err(KeyPending),
        }
    }
}

/// The record of `task` the operator may act on: its own (verified when there is a key).
pub fn trusted(task: &MpuRelayTask, key: Option<&OwnershipKey>) -> Option<ManagementStatus> {
    let management = task.status.as_ref()?.management.as_ref()?;
    match key {
        Some(key) if !key.verify(task, management) => None,
        _ => Some(ManagementStatus::clone(management)),
    }
}

/// `management` as written: signed when there is a key.
pub fn signed(
    task: &MpuRelayTask,
    key: Option<&OwnershipKey>,
    management: ManagementStatus,
) -> ManagementStatus {
    match key {
        Some(key) => key.sign(task, management),
        None => management,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{MpuRelayTaskSpec, MpuRelayTaskStatus};

    fn key() -> OwnershipKey {
        OwnershipKey::new(b"0123456789abcdef0123456789abcdef\n").unwrap()
    }

    fn task(uid: &str, task_id: &str) -> MpuRelayTask {
        let mut t = MpuRelayTask::new(
            "relay",
            MpuRelayTaskSpec {
                app_id: "app".into(),
                task_id: task_id.into(),
                ..Default::default()
            },
        );
        t.metadata.uid = Some(uid.into());
        t
    }

    #[test]
    fn a_callback_token_is_its_accounts_apps_and_rotations_own() {
        let token = key().callback_token("uid-a", "app", 0);
        assert_eq!(token.len(), 64);
        assert!(key().verify_callback_token("uid-a", "app", 0, &token));
        for (uid, app, rotation) in [
            ("uid-b", "app", 0),
            ("uid-a", "other", 0),
            ("uid-a", "app", 1),
        ] {
            assert!(!key().verify_callback_token(uid, app, rotation, &token));
        }
        let other_key = OwnershipKey::new(b"ffffffffffffffffffffffffffffffff").unwrap();
        assert!(!other_key.verify_callback_token("uid-a", "app", 0, &token));
        for bad in ["", "zz", &token[..63], &format!("{token}0")] {
            assert!(!key().verify_callback_token("uid-a", "app", 0, bad));
        }
    }

    fn owner() -> ManagementStatus {
        ManagementStatus {
            started_at: Some(Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())),
            spec_hash: Some("h".into()),
            ..Default::default()
        }
    }

    fn with(mut task: MpuRelayTask, management: ManagementStatus) -> MpuRelayTask {
        task.status = Some(MpuRelayTaskStatus {
            management: Some(Box::new(management)),
            ..Default::default()
        });
        task
    }

    #[test]
    fn the_operators_own_record_is_trusted() {
        let t = task("uid-a", "t1");
        let signed = key().sign(&t, owner());
        assert!(trusted(&with(t, signed), Some(&key())).is_some());
    }

    #[test]
    fn a_record_written_by_someone_else_or_copied_from_another_object_is_not() {
        let t = task("uid-b", "t1");
        assert!(
            trusted(&with(t.clone(), owner()), Some(&key())).is_none(),
            "no proof"
        );
        let copied = key().sign(&task("uid-a", "t1"), owner());
        assert!(
            trusted(&with(t.clone(), copied), Some(&key())).is_none(),
            "another UID"
        );
        let mut moved = key().sign(&t, owner());
        moved.started_at = None;
        moved.starting = Some(crate::api::StartIntent {
            spec_hash: "h".into(),
            since: Time(jiff::Timestamp::from_second(1).unwrap()),
        });
        assert!(
            trusted(&with(t.clone(), moved), Some(&key())).is_none(),
            "fields changed"
        );
        let other_key = OwnershipKey::new(&[b'x'; 40]).unwrap();
        let foreign = other_key.sign(&t, owner());
        assert!(
            trusted(&with(t, foreign), Some(&key())).is_none(),
            "another key"
        );
    }

    #[test]
    fn what_may_change_without_a_new_proof_does_not_void_it() {
        let t = task("uid-a", "t1");
        let mut m = key().sign(&t, owner());
        m.spec_hash = Some("updated".into());
        m.restarts = 3;
        assert!(trusted(&with(t, m), Some(&key())).is_some());
    }

    #[test]
    fn managed_tasks_wait_for_a_configured_key_and_trust_without_one() {
        assert_eq!(Ownership::trusting().key().map(|k| k.is_none()), Ok(true));
        let awaited = Ownership::awaiting();
        assert_eq!(awaited.key().map(|_| ()), Err(KeyPending));
        awaited.set(key());
        assert!(awaited.key().unwrap().is_some());
        assert!(Ownership::signed_by(key()).key().unwrap().is_some());
    }

    #[test]
    fn short_keys_are_refused_and_the_key_never_prints() {
        assert!(OwnershipKey::new(b"short").is_err());
        assert_eq!(format!("{:?}", key()), "OwnershipKey(..)");
    }
}
