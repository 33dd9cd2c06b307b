//! The admin listener: `/health`, `/metrics` and the operator API on their own address
//! (`admin.listen`, loopback by default), served by one thread with its own `mio::Poll`, the
//! same machinery as the event loops, so there is no async runtime and no thread per request.
//!
//! Nothing here ever blocks on another thread. A request that needs a processor (listing charge
//! points, sending a call) hands it a question with an [`Answer`] that wakes this poll, parks the
//! client as [`Waiting`] with a deadline, and goes on serving others; so `/health` answers even
//! while a processor is stuck, which is exactly when it matters.
//!
//! Bounds: at most [`MAX_CLIENTS`] connections, a request head of [`http::MAX_HEAD`] and a body
//! of [`http::MAX_BODY`] bytes, [`REQUEST_TIMEOUT`] from a request's first byte to its last
//! (408 after; bytes that trickle in do not extend it), [`IDLE_TIMEOUT`] between requests. A
//! new connection to a full table evicts the longest-idle client, else the slowest request
//! (408), else the longest-parked one (503): no set of clients can keep `/health` out.
//! With `admin.token` (or `OCPP_GATEWAY_ADMIN_TOKEN`) every endpoint but `/health` needs
//! `Authorization: Bearer <token>`.

mod api;
pub mod health;
pub mod http;
mod lockouts;
pub mod metrics;
mod router;
mod server;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::info;
use mio::net::TcpListener;
use mio::{Interest, Poll, Token, Waker};
use slab::Slab;

use crate::commands::Commands;
use crate::config::Config;
use crate::journal::JournalStatus;
use crate::mailbox::{Loops, Processors};
use crate::stats::Stats;
use crate::trace::TraceList;
use health::Probes;
use server::AdminLoop;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Admin connections held at once.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has to send a (next) request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request must be complete this long after its first byte (trickling bytes do not extend
/// it), or it gets 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a query may wait for the processors.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Charge points per page of a listing.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The OS refused a thread, a poll instance or a waker: the host is out of resources.
    #[error("cannot start the admin {what}: {source}")]
    Spawn {
        what: &'static str,
        source: io::Error,
    },
}

/// What the admin thread needs: its bound listener and handles on the rest of the gateway.
pub struct AdminParts {
    pub listener: std::net::TcpListener,
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
    pub loops: Loops,
    pub processors: Processors,
    pub commands: Commands,
    pub traces: Arc<TraceList>,
    pub journal: Option<Arc<JournalStatus>>,
    /// The Redis events stream's sink (`cluster.events`).
    pub events_stream: Option<Arc<crate::cluster::stream::StreamStatus>>,
    /// The Kafka sink (`events.sink` names "kafka").
    pub kafka: Option<Arc<crate::kafka::KafkaStatus>>,
    /// The Kafka commands consumer (`kafka.consume_commands`).
    pub kafka_commands: Option<Arc<crate::commands::SourceStatus>>,
    /// Credentials the API sets (`PUT /api/v1/chargepoints/{id}/password`).
    pub security: Arc<crate::security::Security>,
    /// The transaction id counter: `/health` is degraded once it is used up.
    pub transactions: Arc<crate::policy::TransactionIds>,
    /// Cluster mode: whether Redis answers (`/health` is degraded while it does not).
    pub redis_reachable: Option<Arc<AtomicBool>>,
    /// Cluster mode: calls for charge points other nodes hold, the cluster listing.
    pub cluster_api: Option<crossbeam_channel::Sender<crate::cluster::remote::Request>>,
    /// Cluster mode: where a key set through the API goes for the other nodes.
    pub cluster: Option<crate::mailbox::ClusterSender>,
}

/// The running admin thread.
pub struct Admin {
    addr: SocketAddr,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Admin {
    pub fn start(parts: AdminParts) -> Result<Admin, AdminError> {
        let spawn_err = |what| move |source| AdminError::Spawn { what, source };
        parts
            .listener
            .set_nonblocking(true)
            .map_err(spawn_err("listener"))?;
        let addr = parts.listener.local_addr().map_err(spawn_err("listener"))?;
        let mut listener =
            TcpListener::from_std(parts.listener.try_clone().map_err(spawn_err("listener"))?);
        let poll = Poll::new().map_err(spawn_err("poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(spawn_err("listener"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(spawn_err("waker"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let token = parts
            .config
            .admin
            .token
            .clone()
            .map(|t| format!("Bearer {t}").into_bytes());
        let now = Instant::now();
        let mut admin_loop = AdminLoop {
            poll,
            listener,
            waker: Arc::clone(&waker),
            stop: Arc::clone(&stop),
            clients: Slab::with_capacity(MAX_CLIENTS),
            probes: Probes::new(parts.config.admin.stuck_after),
            loop_progress: Probes::progress(parts.loops.len(), now),
            processor_progress: Probes::progress(parts.processors.len(), now),
            next_probe: now,
            token,
            started: now,
            parts,
        };
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || admin_loop.run())
            .map_err(spawn_err("thread"))?;
        info!("admin endpoints on http://{addr}");
        Ok(Admin {
            addr,
            waker,
            stop,
            thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (clients waiting on a call get no answer) and waits for it.
    pub fn stop(self) -> std::thread::Result<()> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.thread.join()
    }
}
