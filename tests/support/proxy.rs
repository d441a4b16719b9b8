//! A TCP proxy for tests: forwards bytes both ways between a loopback port and an upstream, and can
//! break the link on demand, as a network partition or a dead endpoint would.
//!
//! - [`Proxy::cut`]: drops every open connection; new ones are accepted and held, their bytes read
//!   and thrown away (a black hole: clients wait for their own timeouts, and nothing sent during a
//!   cut ever reaches upstream). [`Proxy::restore`] forwards new connections again and closes the
//!   held ones, whose bytes were lost.
//! - [`Proxy::refuse`]: drops every open connection and closes the listening socket, so new
//!   connections are refused (`ECONNREFUSED`) until [`Proxy::restore`] listens on the same port again.
//!
//! Everything runs on the calling Tokio runtime and stops when the [`Proxy`] is dropped: its tasks
//! watch a channel whose sender the `Proxy` owns. Loopback only.

#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Attempts to listen on the proxy's port again after [`Proxy::refuse`], and the pause between
/// them: the port is normally free at once (SO_REUSEADDR), the retries cover a slow kernel.
const REBIND_ATTEMPTS: u32 = 50;
const REBIND_PAUSE: Duration = Duration::from_millis(20);
const BACKLOG: u32 = 1024;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Accept and hold without forwarding.
    Hang,
    /// Not listening.
    Refuse,
}

/// The control state: the mode and how many times open connections were told to drop.
#[derive(Debug, Clone, Copy)]
struct Control {
    mode: Mode,
    /// Bumped by every cut and refuse; a forwarding connection ends when it changes.
    generation: u64,
}

/// A running proxy; see the module docs. Dropping it stops it and closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    accepted: Arc<AtomicU64>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:<free port>` to `upstream`. Must be called inside a Tokio
    /// runtime. Panics when no loopback port can be bound (a test cannot go on without one).
    pub fn start(upstream: SocketAddr) -> Proxy {
        Self::try_start(upstream).expect("the test proxy binds a loopback port")
    }

    /// [`Proxy::start`], returning the bind error instead of panicking.
    pub fn try_start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let (control, watcher) = watch::channel(Control {
            mode: Mode::Forward,
            generation: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let acceptor = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            watcher,
            accepted.clone(),
        ));
        Ok(Proxy {
            addr,
            upstream,
            control,
            accepted,
            acceptor,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Connections accepted so far (held and dropped ones included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn mode(&self) -> Mode {
        self.control.borrow().mode
    }

    /// Drops every open connection; new ones are accepted and held, their bytes discarded, until
    /// [`Proxy::restore`] or [`Proxy::refuse`] closes them.
    pub fn cut(&self) {
        self.set(Mode::Hang, true);
    }

    /// Drops every open connection and stops listening: new connections are refused until
    /// [`Proxy::restore`].
    pub fn refuse(&self) {
        self.set(Mode::Refuse, true);
    }

    /// Forwards new connections again; connections held during the cut are closed.
    pub fn restore(&self) {
        self.set(Mode::Forward, false);
    }

    fn set(&self, mode: Mode, drop_open: bool) {
        self.control.send_modify(|c| {
            c.mode = mode;
            if drop_open {
                c.generation += 1;
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Connection tasks end on their own when `control` (dropped next) closes the channel.
        self.acceptor.abort();
    }
}

/// A listener with SO_REUSEADDR, so the port can be taken again right after [`Proxy::refuse`].
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..REBIND_ATTEMPTS {
        match bind(addr) {
            Ok(listener) => return Some(listener),
            Err(_) => tokio::time::sleep(REBIND_PAUSE).await,
        }
    }
    eprintln!("[proxy] cannot listen on {addr} again; the proxy stops");
    None
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
    accepted: Arc<AtomicU64>,
) {
    let mut listener = Some(listener);
    loop {
        let mode = control.borrow_and_update().mode;
        match (mode, listener.is_some()) {
            (Mode::Refuse, true) => listener = None,
            (Mode::Forward | Mode::Hang, false) => match rebind(addr).await {
                Some(l) => listener = Some(l),
                None => return,
            },
            _ => {}
        }
        let Some(open) = listener.as_ref() else {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            result = open.accept() => {
                // An accept error (e.g. out of descriptors) is transient; the next loop retries.
                if let Ok((client, _)) = result {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(client, upstream, control.clone()));
                }
            }
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One client connection: forwarded until the next cut, or, when accepted during a cut, held
/// (its bytes discarded) until the cut ends, then closed.
async fn serve(mut client: TcpStream, upstream: SocketAddr, mut control: watch::Receiver<Control>) {
    let now = *control.borrow_and_update();
    match now.mode {
        Mode::Forward => {}
        Mode::Refuse => return,
        Mode::Hang => return hold(client, control).await,
    }
    let generation = now.generation;
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // Upstream down: the client sees its connection close, as through a real proxy.
        return;
    };
    // Small request/response exchanges would otherwise pay Nagle's delay at each hop.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = dropped(&mut control, generation) => {}
    }
    // Both streams are dropped (closed) here.
}

/// Reads and discards what a client sends during a cut, until the cut ends or the client leaves.
async fn hold(mut client: TcpStream, mut control: watch::Receiver<Control>) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            changed = control.changed() => {
                if changed.is_err() || control.borrow_and_update().mode != Mode::Hang {
                    return;
                }
            }
        }
    }
}

/// Resolves when the connection must drop: a cut or refuse since `generation`, or the proxy gone.
async fn dropped(control: &mut watch::Receiver<Control>, generation: u64) {
    loop {
        if control.borrow_and_update().generation != generation {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}
