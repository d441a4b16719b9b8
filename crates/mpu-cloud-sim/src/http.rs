//! The simulator's HTTP side: the accept loop (TCP_NODELAY, the TLS handshake when serving HTTPS,
//! one write per response, dropping a connection on demand), the `/` handler that feeds
//! [`State::handle`], and rendering of replies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::Shared;
use super::state::{Answer, Incoming, Reply};
use super::wire::{self, ApiError, CONTENT_TYPE_JSON, ErrorBody, HEADER_REQUEST_ID, StatusBody};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// A client that opens a connection and never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection handle a handler uses to close its connection without answering.
#[derive(Clone, Default)]
struct ConnControl {
    drop: Arc<Notify>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", any(rpc))
        .nest("/admin", super::admin::router())
        .fallback(not_found)
        .with_state(shared)
}

/// Serves (over TLS when `tls` is given) until `shutdown` changes or its sender is dropped; open
/// connections then finish their current request.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = router(shared.clone());
    loop {
        let stream: TcpStream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "simulator: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        // Without it a keep-alive client pays Nagle + delayed ACK (about 40 ms) on every call.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "simulator: cannot set TCP_NODELAY");
        }
        match &tls {
            Some(acceptor) => {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                let (shared, router, shutdown) = (shared.clone(), router.clone(), shutdown.clone());
                tokio::spawn(async move {
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            shared.handshakes.fetch_add(1, Ordering::Relaxed);
                            serve_connection(stream, router, shutdown).await;
                        }
                        Ok(Err(error)) => {
                            shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%error, "simulator: TLS handshake failed");
                        }
                        Err(_) => {
                            shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("simulator: TLS handshake timed out");
                        }
                    }
                });
            }
            None => {
                tokio::spawn(serve_connection(stream, router.clone(), shutdown.clone()));
            }
        }
    }
}

async fn serve_connection<S>(stream: S, router: Router, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let control = ConnControl::default();
    let dropped = control.drop.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(control.clone());
            router.clone().oneshot(req)
        });
    // Flattened writes: status line, headers and body go out in one buffer, so one `write`, as
    // a loopback server must for keep-alive clients (see the notes on the 40 ms delay).
    let conn = http1::Builder::new()
        .writev(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulator: connection ended with an error");
            }
        }
        // Dropping the connection future closes the socket with the request unanswered.
        _ = dropped.notified() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// `/`: every cloud API call (GetMPUTaskStatus, AssumeRoleWithOIDC, GetCallerIdentity).
async fn rpc(
    AxumState(shared): AxumState<Arc<Shared>>,
    control: Option<Extension<ConnControl>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let incoming = Incoming {
        method: method.as_str(),
        query: uri.query().unwrap_or_default(),
        headers: &headers,
        body: &body,
    };
    let Answer { reply, delay_ms } = {
        let now = shared.clock();
        shared.lock().handle(&incoming, now)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if let Reply::Error { error, .. } = &reply
        && error.code == wire::codes::SIGNATURE_DOES_NOT_MATCH
    {
        // The server's string to sign holds no secret and makes signature bugs easy to find.
        tracing::debug!(message = %error.message, "simulator: signature mismatch");
    }
    if matches!(reply, Reply::Drop) {
        if let Some(Extension(control)) = control {
            control.drop.notify_one();
            // The connection task drops this future with the connection.
            std::future::pending::<()>().await;
        }
        // Only reachable when the router is driven without our accept loop.
        return StatusCode::BAD_GATEWAY.into_response();
    }
    render(reply)
}

/// Renders a reply as Alibaba would send it: JSON, `x-acs-request-id`, a realistic status.
pub fn render(reply: Reply) -> Response {
    match reply {
        Reply::Status { request_id, status } => json_response(
            StatusCode::OK,
            &request_id,
            serde_json::to_vec(&StatusBody {
                request_id: &request_id,
                status,
            }),
        ),
        Reply::Error {
            request_id,
            host_id,
            error,
        } => {
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
            json_response(
                status,
                &request_id,
                serde_json::to_vec(&ErrorBody::new(&error, &request_id, host_id)),
            )
        }
        Reply::Json { body } => {
            let request_id = body
                .get("RequestId")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            json_response(StatusCode::OK, &request_id, serde_json::to_vec(&body))
        }
        Reply::Malformed { request_id } => {
            let body = format!(r#"{{"RequestId":"{request_id}","Status":"#);
            json_response(StatusCode::OK, &request_id, Ok(body.into_bytes()))
        }
        Reply::Huge {
            request_id,
            status,
            bytes,
        } => {
            let head = format!(r#"{{"RequestId":"{request_id}","Status":{status},"Padding":""#);
            let tail = "\"}";
            let padding = bytes.saturating_sub(head.len() + tail.len());
            let mut body = Vec::with_capacity(head.len() + padding + tail.len());
            body.extend_from_slice(head.as_bytes());
            body.resize(head.len() + padding, b'x');
            body.extend_from_slice(tail.as_bytes());
            json_response(StatusCode::OK, &request_id, Ok(body))
        }
        Reply::Drop => StatusCode::BAD_GATEWAY.into_response(),
    }
}

fn json_response(
    status: StatusCode,
    request_id: &str,
    body: Result<Vec<u8>, serde_json::Error>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "simulator: cannot encode a reply");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HEADER_REQUEST_ID, value);
    }
    response
}

/// Any other path: Alibaba's RPC endpoints serve only `/`.
async fn not_found(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let request_id = shared.lock().next_request_id();
    let error = ApiError::new(
        404,
        wire::codes::INVALID_ACTION_NOT_FOUND,
        wire::messages::INVALID_ACTION_NOT_FOUND,
    );
    render(Reply::Error {
        request_id,
        host_id: wire::HOST_LIVE,
        error,
    })
}
