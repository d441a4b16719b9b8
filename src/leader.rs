//! Leader election through a `coordination.k8s.io/v1` Lease, fenced: one caller per account.
//!
//! A leader cut off from the API server cannot renew its Lease, and a standby takes it over once
//! `leaseDuration` has passed. Stopping the controllers when the Lease is lost is not enough:
//! the leader only learns it has lost when it can talk to the API server again, so until then
//! two processes would call the cloud. The [`Fence`] closes that gap: it records when the last
//! renewal that succeeded was *sent*, and lets cloud calls through only while that is younger
//! than `leaseDuration - margin`. A standby acquires only once it has seen the same Lease record,
//! unchanged, for `leaseDuration` by its own clock, and that record was written after the
//! leader sent it; so the leader is fenced at least `margin` before any standby can call.
//!
//! The timings follow client-go's leader election defaults (15 s lease, 10 s renew deadline,
//! 2 s retry): with the default `--lease-duration 15`, the leader renews every 5 s, retries a
//! failed renewal every 1.25 s, and stops calling 10 s after the last renewal it sent that
//! succeeded; a standby acquires no earlier than 15 s after it.
//!
//! The renew loop is our own, on `Api<Lease>`, like client-go's: every write carries the
//! resourceVersion it was decided on (a concurrent change fails it with a conflict), and a
//! standby measures expiry on its own monotonic clock from when it saw the record change, not
//! from the holder's `renewTime` (which would trust the other node's wall clock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::controller::Prepared;

/// Why a leader stopped leading. Either way the process exits and its pod restarts as a
/// standby.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another replica holds the Lease now.
    #[error("lost the lease to another replica")]
    Lost,
    /// No renewal succeeded in time: the fence closed before a standby could take over.
    #[error(
        "the lease was not renewed for {fenced_after:?} (a standby may take it after {duration:?})"
    )]
    Fenced {
        fenced_after: Duration,
        duration: Duration,
    },
}

/// The timings of one Lease, all derived from its duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the leader renews: a third of the duration.
    pub renew_every: Duration,
    /// How long before the duration runs out the leader stops calling: a third of it.
    pub margin: Duration,
}

impl LeaseTiming {
    /// Shortest Lease: renewed every second.
    pub const MIN_SECONDS: u64 = 3;
    /// Longest Lease: a standby waits at most an hour for a dead leader (and the value fits the
    /// Lease's 32-bit field).
    pub const MAX_SECONDS: u64 = 3600;

    /// The timings of a Lease of `seconds`, or why it cannot be used: the duration must leave
    /// room for three renewals (one every `duration / 3`, at least a second apart).
    pub fn from_seconds(seconds: u64) -> Result<Self, String> {
        if !(Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
            return Err(format!(
                "--lease-duration must be between {} and {} seconds (got {seconds}): it is renewed every third of it, at least a second apart",
                Self::MIN_SECONDS,
                Self::MAX_SECONDS
            ));
        }
        let duration = Duration::from_secs(seconds);
        let timing = LeaseTiming {
            duration,
            renew_every: duration / 3,
            margin: duration / 3,
        };
        debug_assert!(timing.duration >= 3 * timing.renew_every);
        Ok(timing)
    }

    /// Age of the last renewal past which the leader no longer calls the cloud.
    pub fn fenced_after(&self) -> Duration {
        self.duration - self.margin
    }

    /// Pause after a renewal that failed (about four tries before the fence closes).
    fn retry(&self) -> Duration {
        (self.renew_every / 4).max(Duration::from_millis(200))
    }

    /// Longest one attempt (a read and a write) may take: a request into a black hole must not
    /// hold the renew loop past the fence. Half a renewal period (at least half a second).
    fn attempt_timeout(&self) -> Duration {
        self.renew_every / 2
    }

    /// How often a standby looks at the Lease (it also wakes when the Lease would expire).
    fn standby_poll(&self) -> Duration {
        (self.renew_every / 2).max(Duration::from_millis(500))
    }
}

/// Whether this process may call the cloud: only while the last Lease renewal that succeeded
/// was sent less than [`LeaseTiming::fenced_after`] ago. Closed until the first acquisition;
/// only moves forward.
#[derive(Debug)]
pub struct Fence {
    timing: LeaseTiming,
    renewed: Mutex<Option<Instant>>,
}

impl Fence {
    pub fn new(timing: LeaseTiming) -> Self {
        Fence {
            timing,
            renewed: Mutex::new(None),
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// A renewal (or acquisition) sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        if renewed.is_none_or(|r| sent > r) {
            *renewed = Some(sent);
        }
    }

    /// When the last successful renewal was sent.
    pub fn last_renewed(&self) -> Option<Instant> {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the fence closes unless renewed again (`None`: it is closed, never opened).
    pub fn closes_at(&self) -> Option<Instant> {
        self.last_renewed()
            .map(|r| r.checked_add(self.timing.fenced_after()).unwrap_or(r))
    }

    /// Whether a cloud call may start at `now`.
    pub fn may_call(&self, now: Instant) -> bool {
        self.closes_at().is_some_and(|closes| now < closes)
    }

    /// Resolves once the fence is closed (at once if it never opened).
    pub async fn closed(&self) {
        loop {
            match self.closes_at() {
                Some(at) if Instant::now() < at => {
                    tokio::time::sleep_until(at.into()).await;
                }
                _ => return,
            }
        }
    }
}

/// What the Lease record says this process should do.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// We hold it: write a new renewTime.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it.
    Acquire,
    /// Another holder's Lease runs for at least this long still.
    Wait { holder: String, left: Duration },
}

/// Decides from a Lease record, seen unchanged for `unchanged_for`, and our `identity`.
fn step(spec: &LeaseSpec, unchanged_for: Duration, identity: &str, ours: Duration) -> Step {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Step::Acquire;
    }
    if holder == identity {
        return Step::Renew;
    }
    // The holder's own duration: it fences itself by it. A missing or broken one counts as ours.
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(ours, |s| Duration::from_secs(s as u64));
    match duration.checked_sub(unchanged_for) {
        Some(left) if !left.is_zero() => Step::Wait {
            holder: holder.to_string(),
            left,
        },
        _ => Step::Acquire,
    }
}

/// The outcome of one attempt to acquire or renew.
#[derive(Debug)]
enum Attempt {
    /// We hold the Lease (and the fence was moved forward).
    Leader,
    /// Someone else does, for at least `left` more.
    Follower { holder: String, left: Duration },
    /// Someone else wrote the Lease between our read and our write: try again.
    Conflict,
}

/// One process's side of the election.
struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    /// The last record seen, and when (by our clock) it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    fn observe(&mut self, spec: &LeaseSpec, seen: Instant) -> Duration {
        match &self.observed {
            Some((old, at)) if old == spec => seen.saturating_duration_since(*at),
            _ => {
                self.observed = Some((spec.clone(), seen));
                Duration::ZERO
            }
        }
    }

    fn our_spec(&self, previous: &LeaseSpec, keep_acquired: bool) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let transitions = previous.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.duration.as_secs() as i32),
            acquire_time: if keep_acquired {
                previous.acquire_time.clone().or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if keep_acquired {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    async fn attempt(&mut self, fence: &Fence) -> Result<Attempt, kube::Error> {
        let lease = match self.api.get(&self.name).await {
            Ok(lease) => lease,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let spec = self.our_spec(&LeaseSpec::default(), false);
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                let sent = Instant::now();
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        fence.renewed(sent);
                        self.observe(&created.spec.unwrap_or_default(), Instant::now());
                        Ok(Attempt::Leader)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        // Taken after the answer: the record was written before it, never after.
        let seen = Instant::now();
        let spec = lease.spec.clone().unwrap_or_default();
        let unchanged_for = self.observe(&spec, seen);
        let ours = match step(&spec, unchanged_for, &self.identity, self.timing.duration) {
            Step::Wait { holder, left } => return Ok(Attempt::Follower { holder, left }),
            Step::Renew => self.our_spec(&spec, true),
            Step::Acquire => self.our_spec(&spec, false),
        };
        let mut next = lease;
        next.spec = Some(ours);
        // `next` carries the resourceVersion read above: a write in between is a conflict.
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                fence.renewed(sent);
                self.observe(&written.spec.unwrap_or_default(), Instant::now());
                Ok(Attempt::Leader)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, if we still hold it, so a standby takes over at once.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let mut lease = self.api.get(&self.name).await?;
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// Where the Lease is and who we are.
pub struct LeaseSettings<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub identity: &'a str,
}

/// Why the leader stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// SIGTERM: stop calling, then release the Lease.
    Stopping,
    /// Another process holds the Lease.
    Lost,
    /// No renewal succeeded in time: the Lease may be someone else's soon.
    Fenced,
}

/// How long the controllers may take to stop once the Lease is lost or fenced: reconciles in
/// flight may be stuck on the unreachable API server; the fence keeps them off the cloud, and
/// the process exits anyway after this.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the controllers only while this process holds the Lease and can prove it (see the
/// module docs). Shutting down releases it, so a standby takes over at once; losing it, or
/// failing to renew it in time, stops the controllers and returns an error (the process exits
/// and its pod restarts as a standby: simpler and safer than resetting every cache in place).
pub async fn run_as_leader(
    client: kube::Client,
    prepared: Prepared,
    fence: Arc<Fence>,
    lease: LeaseSettings<'_>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), LeaseError> {
    let timing = fence.timing();
    let mut elector = Elector {
        api: Api::namespaced(client, lease.namespace),
        name: lease.name.to_string(),
        identity: lease.identity.to_string(),
        timing,
        observed: None,
    };
    info!(
        lease = lease.name,
        namespace = lease.namespace,
        duration_s = timing.duration.as_secs(),
        "waiting to become the leader"
    );
    // Standby.
    loop {
        let pause =
            match tokio::time::timeout(timing.attempt_timeout(), elector.attempt(&fence)).await {
                Ok(Ok(Attempt::Leader)) => break,
                Ok(Ok(Attempt::Follower { holder, left })) => {
                    debug!(%holder, left_ms = left.as_millis() as u64, "the Lease is held");
                    // Wake when it would expire, or earlier to see a release.
                    left.min(timing.standby_poll())
                        .max(Duration::from_millis(100))
                }
                Ok(Ok(Attempt::Conflict)) => timing.retry(),
                Ok(Err(e)) => {
                    warn!(error = %e, "reading the Lease failed");
                    timing.retry()
                }
                Err(_) => {
                    warn!("the Lease request timed out");
                    timing.retry()
                }
            };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
    info!("became the leader");

    let (lost_tx, mut lost_rx) = watch::channel(false);
    let (quit_tx, quit_rx) = watch::channel(false);
    let renewer = tokio::spawn(renew(elector, fence.clone(), lost_tx, quit_rx));
    let (why_tx, why_rx) = watch::channel(None::<Why>);
    let shutdown = {
        let mut why = why_rx.clone();
        async move {
            let _ = why.wait_for(Option::is_some).await;
        }
    };
    let decide = async {
        let why = tokio::select! {
            _ = stop.wait_for(|s| *s) => Why::Stopping,
            _ = lost_rx.wait_for(|l| *l) => Why::Lost,
            _ = fence.closed() => Why::Fenced,
        };
        match why {
            Why::Stopping => {}
            Why::Lost => warn!("lost the Lease to another replica: stopping"),
            Why::Fenced => warn!(
                fenced_after_s = timing.fenced_after().as_secs_f64(),
                "the Lease could not be renewed in time: no more cloud calls, stopping"
            ),
        }
        why_tx.send_replace(Some(why));
        std::future::pending::<()>().await
    };
    let overdue = {
        let mut why = why_rx.clone();
        async move {
            let _ = why
                .wait_for(|w| matches!(w, Some(Why::Lost | Why::Fenced)))
                .await;
            tokio::time::sleep(STOP_GRACE).await;
        }
    };
    tokio::select! {
        _ = prepared.run(shutdown) => {}
        _ = decide => {}
        _ = overdue => warn!("the controllers did not stop in time; exiting anyway"),
    }
    let why = (*why_rx.borrow()).unwrap_or(Why::Stopping);
    let _ = quit_tx.send(true);
    let elector = renewer.await;
    match why {
        Why::Stopping => {
            // The controllers have stopped: no call of ours is in flight any more.
            if let Ok(mut elector) = elector {
                match tokio::time::timeout(timing.attempt_timeout(), elector.release()).await {
                    Ok(Ok(())) => info!("released the Lease"),
                    Ok(Err(e)) => warn!(error = %e, "releasing the Lease failed"),
                    Err(_) => warn!("releasing the Lease timed out"),
                }
            }
            Ok(())
        }
        Why::Lost => Err(LeaseError::Lost),
        Why::Fenced => Err(LeaseError::Fenced {
            fenced_after: timing.fenced_after(),
            duration: timing.duration,
        }),
    }
}

/// Renews the Lease every [`LeaseTiming::renew_every`] (failed renewals every
/// [`LeaseTiming::retry`]) until told to quit; reports a Lease held by someone else on `lost`.
async fn renew(
    mut elector: Elector,
    fence: Arc<Fence>,
    lost: watch::Sender<bool>,
    mut quit: watch::Receiver<bool>,
) -> Elector {
    let timing = elector.timing;
    let mut next = fence
        .last_renewed()
        .map_or_else(Instant::now, |r| r + timing.renew_every);
    loop {
        tokio::select! {
            _ = quit.wait_for(|q| *q) => return elector,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let attempt = tokio::time::timeout(timing.attempt_timeout(), elector.attempt(&fence)).await;
        next = match attempt {
            Ok(Ok(Attempt::Leader)) => {
                debug!("renewed the Lease");
                Instant::now() + timing.renew_every
            }
            Ok(Ok(Attempt::Follower { holder, .. })) => {
                warn!(%holder, "the Lease is held by another replica");
                let _ = lost.send(true);
                let _ = quit.wait_for(|q| *q).await;
                return elector;
            }
            Ok(Ok(Attempt::Conflict)) => Instant::now() + timing.retry(),
            Ok(Err(e)) => {
                warn!(error = %e, "renewing the Lease failed");
                Instant::now() + timing.retry()
            }
            Err(_) => {
                warn!("renewing the Lease timed out");
                Instant::now() + timing.retry()
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(seconds: u64) -> LeaseTiming {
        LeaseTiming::from_seconds(seconds).unwrap()
    }

    #[test]
    fn a_fenced_leader_s_error_says_how_long_it_went_unrenewed() {
        let t = timing(15);
        let e = LeaseError::Fenced {
            fenced_after: t.fenced_after(),
            duration: t.duration,
        };
        assert_eq!(
            e.to_string(),
            "the lease was not renewed for 10s (a standby may take it after 15s)"
        );
    }

    #[test]
    fn lease_settings_are_validated() {
        for bad in [0, 1, 2, 3601, u64::MAX] {
            let e = LeaseTiming::from_seconds(bad).unwrap_err();
            assert!(e.contains("--lease-duration"), "{e}");
        }
        for good in [3, 4, 15, 3600] {
            let t = timing(good);
            assert!(t.duration >= 3 * t.renew_every, "{t:?}");
            assert!(t.renew_every >= Duration::from_secs(1), "{t:?}");
            // A renewal that times out is retried before the fence closes.
            assert!(
                t.renew_every + t.attempt_timeout() + t.retry() < t.fenced_after(),
                "{t:?}"
            );
            assert!(!t.margin.is_zero());
        }
        let t = timing(15);
        assert_eq!(t.renew_every, Duration::from_secs(5));
        assert_eq!(t.fenced_after(), Duration::from_secs(10));
    }

    #[test]
    fn the_fence_is_closed_until_acquired_and_closes_a_margin_before_the_lease_ends() {
        let t = timing(6);
        let fence = Fence::new(t);
        let start = Instant::now();
        assert!(!fence.may_call(start));
        fence.renewed(start);
        assert!(fence.may_call(start));
        assert!(fence.may_call(start + Duration::from_millis(3999)));
        assert!(!fence.may_call(start + Duration::from_secs(4)));
        assert!(!fence.may_call(start + t.duration));
        // Renewals only move it forward.
        fence.renewed(start + Duration::from_secs(2));
        fence.renewed(start + Duration::from_secs(1));
        assert!(fence.may_call(start + Duration::from_millis(5999)));
        assert!(!fence.may_call(start + Duration::from_secs(6)));
    }

    fn held_by(holder: &str, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_standby_waits_the_holders_full_duration_from_when_it_saw_the_record() {
        let ours = Duration::from_secs(6);
        let s = |spec: &LeaseSpec, secs: f64| step(spec, Duration::from_secs_f64(secs), "b", ours);
        assert_eq!(s(&LeaseSpec::default(), 0.0), Step::Acquire);
        assert_eq!(s(&held_by("", Some(6)), 0.0), Step::Acquire);
        assert_eq!(s(&held_by("b", Some(6)), 0.0), Step::Renew);
        assert_eq!(
            s(&held_by("a", Some(6)), 5.9),
            Step::Wait {
                holder: "a".into(),
                left: Duration::from_millis(100)
            }
        );
        assert_eq!(s(&held_by("a", Some(6)), 6.0), Step::Acquire);
        // The holder's duration counts, longer or shorter than ours.
        assert!(matches!(
            s(&held_by("a", Some(60)), 30.0),
            Step::Wait { .. }
        ));
        assert_eq!(s(&held_by("a", Some(3)), 3.0), Step::Acquire);
        // A missing or broken duration counts as ours.
        for broken in [None, Some(0), Some(-5)] {
            assert!(matches!(s(&held_by("a", broken), 5.0), Step::Wait { .. }));
            assert_eq!(s(&held_by("a", broken), 6.0), Step::Acquire);
        }
    }

    #[test]
    fn the_leader_is_fenced_before_any_standby_can_acquire() {
        // Worst case for the standby: it sees the renewal the instant the leader sends it.
        for seconds in [3, 4, 6, 15, 3600] {
            let t = timing(seconds);
            let fence = Fence::new(t);
            let sent = Instant::now();
            fence.renewed(sent);
            let spec = held_by("a", Some(seconds as i32));
            let acquirable_from = (0..=seconds * 10)
                .map(|tenths| Duration::from_millis(tenths * 100))
                .find(|d| step(&spec, *d, "b", t.duration) == Step::Acquire)
                .unwrap();
            let fenced_from = fence.closes_at().unwrap() - sent;
            assert!(
                acquirable_from >= fenced_from + t.margin,
                "{seconds} s: fenced at {fenced_from:?}, acquirable at {acquirable_from:?}"
            );
        }
    }
}
