//! A TCP fault proxy: client ⇄ proxy ⇄ upstream, with the fault switchable at run time.
//!
//! The proxy runs on its own small tokio runtime (one worker thread), so sync tests (rdkafka's
//! `BaseProducer`) and async tests can both use it, and dropping it never blocks.
//!
//! Each connection has four tasks: for each direction a reader and a writer joined by a bounded
//! channel, so `Delay(d)` adds latency without capping throughput. All tasks watch the mode:
//! - `Pass`: bytes flow.
//! - `Delay(d)`: each chunk is written `d` after it was read.
//! - `Blackhole`: nothing is read or written (the kernel buffers fill and the sender stalls, as
//!   with a silent network partition); new connections are accepted and held. Returning to
//!   `Pass` lets held bytes through, like TCP retransmission after a partition heals.
//! - `Reset`: every connection, existing and new, is closed with RST (SO_LINGER 0).
//! - `Refuse`: the listener is closed (connects get ECONNREFUSED) and existing connections are
//!   reset; leaving `Refuse` binds the same address again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::HarnessError;

/// What the proxy does to traffic. See the module documentation for the exact semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward bytes unchanged.
    Pass,
    /// Accept, hold every byte, never answer.
    Blackhole,
    /// Reset every connection, existing and new.
    Reset,
    /// Close the listener: connects are refused; existing connections are reset.
    Refuse,
    /// Forward every chunk after this delay.
    Delay(Duration),
}

impl FaultMode {
    fn flows(self) -> bool {
        matches!(self, FaultMode::Pass | FaultMode::Delay(_))
    }
    fn kills(self) -> bool {
        matches!(self, FaultMode::Reset | FaultMode::Refuse)
    }
}

/// Traffic counters of a [`FaultProxy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Bytes forwarded from clients to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_to_client: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections currently open.
    pub connections_open: u64,
    /// Connections closed with RST by `Reset` or `Refuse`.
    pub connections_reset: u64,
}

#[derive(Debug, Default)]
struct Counters {
    to_upstream: AtomicU64,
    to_client: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    reset: AtomicU64,
}

/// A switchable fault proxy in front of one upstream address. Dropping it closes everything.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<FaultMode>,
    counters: Arc<Counters>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`, in `Pass` mode.
    pub fn start(upstream: SocketAddr) -> Result<Self, HarnessError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// Starts a proxy listening on `listen` (port 0 picks a free port).
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .map_err(HarnessError::io("starting the fault proxy runtime"))?;
        let listener = std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(HarnessError::io(format!("binding fault proxy on {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("fault proxy local address"))?;
        let (mode, mode_rx) = watch::channel(FaultMode::Pass);
        let counters = Arc::new(Counters::default());
        let accept_counters = counters.clone();
        // Registered with the reactor from inside the proxy's runtime: `block_on` here would
        // panic when the caller itself runs on a tokio runtime.
        runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(l) => accept_loop(l, addr, upstream, mode_rx, accept_counters).await,
                Err(e) => tracing::error!(%addr, "fault proxy listener: {e}"),
            }
        });
        Ok(Self {
            addr,
            upstream,
            mode,
            counters,
            runtime: Some(runtime),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault mode; takes effect on existing connections at once.
    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    /// The current fault mode.
    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }

    /// A snapshot of the traffic counters.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            bytes_to_upstream: c.to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.to_client.load(Ordering::Relaxed),
            connections_accepted: c.accepted.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            connections_reset: c.reset.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
    counters: Arc<Counters>,
) {
    loop {
        if *mode.borrow_and_update() == FaultMode::Refuse {
            drop(listener);
            if mode.wait_for(|m| *m != FaultMode::Refuse).await.is_err() {
                return;
            }
            listener = match rebind(addr).await {
                Some(l) => l,
                None => return,
            };
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, upstream, mode.clone(), counters.clone()));
            }
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

/// Binds `addr` again after `Refuse`, retrying briefly (the old socket may linger).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        let _ = socket.set_reuseaddr(true);
        if socket.bind(addr).is_ok() {
            if let Ok(l) = socket.listen(1024) {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::error!(%addr, "fault proxy could not bind its address again after Refuse");
    None
}

fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
    counters: Arc<Counters>,
) {
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(counters.clone());
    let _ = client.set_nodelay(true);
    // Hold a new connection while blackholed; reset it if the mode kills.
    let Ok(m) = mode
        .wait_for(|m| !matches!(m, FaultMode::Blackhole))
        .await
        .map(|m| *m)
    else {
        return;
    };
    if m.kills() {
        counters.reset.fetch_add(1, Ordering::Relaxed);
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(
        cr,
        sw,
        mode.clone(),
        counters.clone(),
        Direction::ToUpstream,
    );
    let down = pump(sr, cw, mode.clone(), counters.clone(), Direction::ToClient);
    let (killed_up, killed_down) = tokio::join!(up, down);
    if killed_up || killed_down {
        counters.reset.fetch_add(1, Ordering::Relaxed);
    }
}

struct OpenGuard(Arc<Counters>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// Moves bytes one way until EOF, an error, or a killing mode. Returns true if killed (both
/// sockets then get RST when the halves drop).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<FaultMode>,
    counters: Arc<Counters>,
    dir: Direction,
) -> bool {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut read_mode = mode.clone();
    let from_ref = &mut from;
    let reader = async {
        let tx = tx;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok(m) = read_mode
                .wait_for(|m| !matches!(m, FaultMode::Blackhole))
                .await
                .map(|m| *m)
            else {
                return false;
            };
            if m.kills() {
                return true;
            }
            let delay = match m {
                FaultMode::Delay(d) => d,
                _ => Duration::ZERO,
            };
            tokio::select! {
                n = from_ref.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        if tx.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                            return false;
                        }
                    }
                },
                // A mode change while waiting to read: look at the new mode.
                _ = read_mode.changed() => {}
            }
        }
    };
    let mut write_mode = mode;
    let write_half = &mut to;
    let counters = &counters;
    let writer = async {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let Ok(m) = write_mode
                .wait_for(|m| m.flows() || m.kills())
                .await
                .map(|m| *m)
            else {
                return false;
            };
            if m.kills() {
                return true;
            }
            if write_half.write_all(&chunk).await.is_err() {
                return false;
            }
            let counter = match dir {
                Direction::ToUpstream => &counters.to_upstream,
                Direction::ToClient => &counters.to_client,
            };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = write_half.shutdown().await;
        false
    };
    let killed = {
        tokio::pin!(reader, writer);
        let (mut reader_done, mut writer_done, mut killed) = (false, false, false);
        while !(killed || reader_done && writer_done) {
            tokio::select! {
                k = &mut reader, if !reader_done => { reader_done = true; killed = k; }
                k = &mut writer, if !writer_done => { writer_done = true; killed = k; }
            }
        }
        killed
    };
    if killed {
        reset(to.as_ref());
        reset(from.as_ref());
    }
    killed
}
