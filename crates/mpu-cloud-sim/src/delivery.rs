//! The callbacks' postman: every 20 ms, the callbacks due ([`crate::events`]) are POSTed to
//! their subscription's URL, each in a task of its own (a slow receiver holds up only its own
//! callbacks), and what came of each try goes back to the model, which retries and logs it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::Shared;
use crate::events::Callback;

/// How often due callbacks are looked for.
const TICK: Duration = Duration::from_millis(20);
/// How long a receiver may take to answer before the try counts as failed (HTTP code 0).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The headers Alibaba's callbacks carry. How `Ali-Rtc-Signature` is computed is not
/// documented; the simulator sends a digest of its own making, which nobody can (or should)
/// verify.
pub const HEADER_TIMESTAMP: &str = "Ali-Rtc-Timestamp";
pub const HEADER_SIGNATURE: &str = "Ali-Rtc-Signature";

/// Delivers until `shutdown` says so.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The receiver's certificate is not checked: what Alibaba's client checks is not
    // documented, and the operator's own TLS is tested by clients that do check it.
    let client = match reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for event callbacks; none is delivered");
            return;
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = shared.clock().wall.as_millisecond();
        let mut state = shared.lock();
        let due = state.events.due(now);
        if state.events.rules.unreachable {
            for callback in due {
                state.events.tried(callback, 0, 0, now);
            }
            continue;
        }
        drop(state);
        for callback in due {
            tokio::spawn(deliver(client.clone(), shared.clone(), callback));
        }
    }
}

async fn deliver(client: reqwest::Client, shared: Arc<Shared>, callback: Callback) {
    let started = Instant::now();
    let timestamp = shared.clock().wall.as_millisecond().to_string();
    let signature = hex::encode(Sha256::digest(
        format!("{timestamp}{}", callback.msg_id).as_bytes(),
    ));
    let answer = client
        .post(&callback.callback_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_TIMESTAMP, timestamp)
        .header(HEADER_SIGNATURE, signature)
        .body(callback.body.clone())
        .send()
        .await;
    let code = match answer {
        Ok(response) => response.status().as_u16(),
        Err(e) => {
            tracing::debug!(url = %callback.callback_url, error = %e, "callback not delivered");
            0
        }
    };
    let cost = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let now = shared.clock().wall.as_millisecond();
    shared.lock().events.tried(callback, code, cost, now);
}
