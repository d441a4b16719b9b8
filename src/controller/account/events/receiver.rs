//! The events endpoint: where the cloud POSTs MPU event callbacks (`--events-bind-address`),
//! over HTTPS with `--events-tls-cert`/`--events-tls-key`, or plain HTTP behind an Ingress that
//! terminates TLS. A port and Service of its own: metrics and probes stay inside the cluster.
//!
//! Every request is refused as early and cheaply as possible: a method other than POST, a path
//! without a valid token (checked before the body is read), a body over 64 KiB (never read
//! past that), a body that is not a callback. Nothing of a refused request is logged but its
//! verdict; a valid one is answered 200 at once, its hint handled by [`EventsHub`].
//!
//! `Ali-Rtc-Signature` is not checked: Alibaba does not document how it is computed, and a
//! guessed algorithm would be a check that proves nothing. The token in the path is what
//! proves a callback came to the URL the operator registered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{info, warn};

use super::{EventsHub, Verdict};
use crate::cloud::events::MAX_CALLBACK_BYTES;
use crate::controller::Context;

/// A client that opens a connection and never finishes its TLS handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are read again (cert-manager renews them in place).
const RELOAD_EVERY: Duration = Duration::from_secs(300);

/// Where and how the endpoint listens.
#[derive(Clone, Debug)]
pub struct ReceiverSettings {
    pub bind: SocketAddr,
    /// PEM certificate chain and key; `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("the events endpoint cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("the events endpoint's TLS files cannot be used: {0}")]
    Tls(String),
}

/// Reads a certificate chain and key into a server configuration.
fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ReceiverError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| ReceiverError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ReceiverError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ReceiverError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ReceiverError::Tls(e.to_string()))
}

/// Binds the endpoint (and reads its TLS files) now, so that a bad flag stops the operator at
/// start; the returned future serves until `shutdown`.
pub async fn bind(
    settings: &ReceiverSettings,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, ReceiverError> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some((server_config(cert, key)?, cert.clone(), key.clone())),
        None => None,
    };
    let listener = TcpListener::bind(settings.bind)
        .await
        .map_err(|e| ReceiverError::Bind(settings.bind, e))?;
    let addr = listener.local_addr().unwrap_or(settings.bind);
    info!(%addr, https = tls.is_some(), "events endpoint listening");
    ctx.events.set_receiving(true);
    let router = axum::Router::new().fallback(handle).with_state(ctx.clone());
    Ok(async move {
        match tls {
            None => {
                let served = axum::serve(listener, router).with_graceful_shutdown(shutdown);
                if let Err(e) = served.await {
                    warn!(error = %e, "the events endpoint stopped");
                }
            }
            Some((config, cert, key)) => {
                let acceptor = Arc::new(Mutex::new(TlsAcceptor::from(Arc::new(config))));
                tokio::select! {
                    _ = serve_tls(listener, acceptor.clone(), router) => {}
                    _ = reload(acceptor, cert, key) => {}
                    _ = shutdown => {}
                }
            }
        }
        ctx.events.set_receiving(false);
    })
}

async fn serve_tls(listener: TcpListener, acceptor: Arc<Mutex<TlsAcceptor>>, router: axum::Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "events endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                router.clone().oneshot(req.map(Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads the certificate files again every [`RELOAD_EVERY`]; a file that does not read keeps
/// the certificate in use.
async fn reload(acceptor: Arc<Mutex<TlsAcceptor>>, cert: PathBuf, key: PathBuf) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        match server_config(&cert, &key) {
            Ok(config) => {
                *acceptor.lock().unwrap_or_else(|e| e.into_inner()) =
                    TlsAcceptor::from(Arc::new(config));
            }
            Err(e) => warn!(error = %e, "keeping the events endpoint's certificate"),
        }
    }
}

/// One request: POST with a valid token and a callback body, or refused.
async fn handle(State(ctx): State<Arc<Context>>, request: Request<Body>) -> StatusCode {
    if request.method() != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    // A standby replica (leader election) polls nothing: the cloud is asked to try again,
    // which may reach the leader.
    if ctx.fence.as_ref().is_some_and(|may_call| !may_call()) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let hub: &EventsHub = &ctx.events;
    let to = match hub.authorize(&ctx, request.uri().path()) {
        Ok(to) => to,
        Err(verdict) => return status_of(verdict),
    };
    let body = axum::body::to_bytes(request.into_body(), MAX_CALLBACK_BYTES)
        .await
        .ok();
    status_of(hub.receive(&ctx, &to, body.as_deref()))
}

/// The answer for a verdict: 200 for what needs no second delivery, else why not.
fn status_of(verdict: Verdict) -> StatusCode {
    match verdict {
        Verdict::Hinted(_) | Verdict::Duplicate | Verdict::UnknownTask => StatusCode::OK,
        Verdict::BadToken => StatusCode::FORBIDDEN,
        Verdict::BadBody => StatusCode::BAD_REQUEST,
        Verdict::WrongApp => StatusCode::UNPROCESSABLE_ENTITY,
    }
}
