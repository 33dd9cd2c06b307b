//! Starting and stopping the gateway: bind one `SO_REUSEPORT` listener per loop, spawn the
//! loops (pinned) and the processors, and on shutdown let the loops drain, then join everything.
//! Tests start a [`Server`] in-process; `main` does the same and adds signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use log::{info, warn};
use mio::net::TcpListener;
use mio::{Poll, Waker};
use serde_json::value::RawValue;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::net::event_loop::{EventLoop, LoopParts, WAKER};
use crate::net::{LoopHandle, LoopShared};
use crate::ocpp::rpc::CallErrorCode;
use crate::ocpp::v16::{self, Action, Invalid};
use crate::outbound::{CallOutcome, OutboundCall, PendingCall};
use crate::processor::handlers::Policy;
use crate::processor::policy::{IdTags, Identities, PolicyError, TransactionIds};
use crate::processor::pool::ProcessorPool;
use crate::processor::{Inbound, shard_of};
use crate::stats::{Stats, StatsSnapshot};

/// Why the gateway could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken, not local, or not permitted: change `server.listen`.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The OS refused a thread, a poll instance or a waker: the host is out of resources.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    /// A policy file (`ocpp.allowed_charge_points`, `ocpp.id_tags`, the transaction counter)
    /// cannot be used: the message names the file.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A thread panicked; its panic message is in the log.
    #[error("{0} thread panicked")]
    Panicked(String),
}

/// A running gateway.
pub struct Server {
    local_addr: SocketAddr,
    loops: Vec<LoopHandle>,
    loop_threads: Vec<JoinHandle<()>>,
    /// For calls of the central system: routed to the charge point's processor.
    processors: Vec<Sender<Inbound>>,
    processor_threads: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// A cloneable way to ask a running server to stop (for signal handlers).
#[derive(Clone)]
pub struct ShutdownHandle {
    loops: Vec<LoopHandle>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        for handle in &self.loops {
            handle.request_shutdown();
        }
    }
}

impl Server {
    pub fn start(config: Config) -> Result<Server, ServerError> {
        let config = Arc::new(config);
        let workers = config.server.workers.get();
        let listeners = bind_listeners(&config)?;
        let local_addr = listeners[0]
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let stats = Arc::new(Stats::new(workers, config.processor.threads.get()));

        let spawn_err = |what| move |source| ServerError::Spawn { what, source };
        let mut polls = Vec::with_capacity(workers);
        let mut loops = Vec::with_capacity(workers);
        let mut inboxes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new().map_err(spawn_err("event loop"))?;
            let waker = Waker::new(poll.registry(), WAKER).map_err(spawn_err("waker"))?;
            let (tx, rx) = crossbeam_channel::bounded(config.processor.queue_capacity.get());
            loops.push(LoopHandle {
                tx,
                shared: Arc::new(LoopShared::new(waker)),
            });
            polls.push(poll);
            inboxes.push(rx);
        }

        let policy = Arc::new(load_policy(&config)?);
        // Remember disconnected, accepted charge points up to about the fleet size.
        let remember_limit = config.server.max_connections / config.processor.threads.get() + 1024;
        let pool = ProcessorPool::spawn(
            config.processor.threads.get(),
            config.processor.queue_capacity.get(),
            &loops,
            &policy,
            remember_limit,
            &stats,
        )
        .map_err(spawn_err("processor thread"))?;

        let cores = if config.server.pin_cores {
            core_affinity::get_core_ids()
        } else {
            None
        };
        let cores = cores.unwrap_or_default();
        let mut loop_threads = Vec::with_capacity(workers);
        let parts = polls
            .into_iter()
            .zip(listeners)
            .zip(inboxes)
            .zip(&loops)
            .enumerate();
        for (index, (((poll, listener), inbox), handle)) in parts {
            let parts = LoopParts {
                index: index as u16,
                poll,
                listener,
                inbox,
                shared: Arc::clone(&handle.shared),
                processors: pool.senders.clone(),
                config: Arc::clone(&config),
                stats: Arc::clone(&stats),
                known_identities: policy
                    .identities
                    .clone()
                    .filter(|_| config.ocpp.refuse_unknown_at_handshake),
            };
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("loop-{index}"))
                .spawn(move || {
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        warn!("loop={index} could not be pinned to core {}", core.id);
                    }
                    match EventLoop::new(parts) {
                        Ok(event_loop) => event_loop.run(),
                        Err(e) => log::error!("loop={index} cannot start: {e}"),
                    }
                });
            match thread {
                Ok(thread) => loop_threads.push(thread),
                Err(source) => {
                    // Stop the loops already running: nothing else could ever stop them.
                    for handle in &loops[..loop_threads.len()] {
                        handle.request_shutdown();
                    }
                    for thread in loop_threads {
                        let _ = thread.join();
                    }
                    return Err(ServerError::Spawn {
                        what: "event loop thread",
                        source,
                    });
                }
            }
        }
        // The loops and this server hold the senders to the processors: when the last loop has
        // exited and `join` drops ours, the processors see their channels close and stop.
        info!(
            "listening on {local_addr} with {workers} loops and {} processors{}",
            config.processor.threads,
            if config.server.pin_cores {
                ", pinned"
            } else {
                ""
            }
        );
        Ok(Server {
            local_addr,
            loops,
            loop_threads,
            processors: pool.senders,
            processor_threads: pool.threads,
            stats,
        })
    }

    /// The address charge points connect to (the real port when `server.listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            loops: self.loops.clone(),
        }
    }

    /// Sends a call of the central system (`action` with `payload`) to charge point `cp`.
    /// The payload is checked first (`Err`: the CallError a charge point would answer, never
    /// sent). The returned [`PendingCall`] yields exactly one outcome.
    pub fn call(
        &self,
        cp: &str,
        action: Action,
        payload: Box<RawValue>,
    ) -> Result<PendingCall, Invalid> {
        if !action.sent_by_central_system() {
            return Err(Invalid {
                code: CallErrorCode::NotSupported,
                description: format!("{} is not sent by a central system", action.name()),
            });
        }
        v16::validate_request(action, &payload)?;
        let (call, pending) = OutboundCall::new(action, payload);
        let processor = &self.processors[shard_of(cp, self.processors.len())];
        if let Err(TrySendError::Full(Inbound::Call { call, .. })) =
            processor.try_send(Inbound::Call {
                cp: cp.into(),
                call,
            })
        {
            call.resolve(CallOutcome::Rejected);
        }
        Ok(pending)
    }

    /// Stops accepting and closes every connection (paced by `server.drain_rate`).
    pub fn shutdown(&self) {
        self.shutdown_handle().shutdown();
    }

    /// Waits until every thread has finished (call [`Server::shutdown`] first, or from a
    /// signal handler).
    pub fn join(self) -> Result<(), ServerError> {
        let Server {
            loops,
            loop_threads,
            processors,
            processor_threads,
            ..
        } = self;
        let mut result = Ok(());
        for thread in loop_threads {
            let name = thread.thread().name().unwrap_or("loop").to_owned();
            if thread.join().is_err() {
                result = Err(ServerError::Panicked(name));
            }
        }
        // Processors may still hold a sender to a loop; the loops are gone, so drop ours, and
        // our senders to the processors, which then stop.
        drop(loops);
        drop(processors);
        for thread in processor_threads {
            let name = thread.thread().name().unwrap_or("processor").to_owned();
            if thread.join().is_err() {
                result = Err(ServerError::Panicked(name));
            }
        }
        result
    }
}

/// The built-in policies, with their files loaded.
fn load_policy(config: &Config) -> Result<Policy, PolicyError> {
    let ocpp = &config.ocpp;
    let identities = ocpp
        .allowed_charge_points
        .as_deref()
        .map(Identities::load)
        .transpose()?;
    let id_tags = ocpp.id_tags.as_deref().map(IdTags::load).transpose()?;
    if let Some(ids) = &identities {
        info!("{} identities may boot", ids.len());
    }
    if let Some(tags) = &id_tags {
        info!("{} idTags listed", tags.len());
    }
    Ok(Policy {
        heartbeat_interval_secs: ocpp.heartbeat_interval.as_secs(),
        boot_status: ocpp.boot_status,
        identities: identities.map(Arc::new),
        id_tags,
        data_transfer_status: ocpp.data_transfer_status,
        transactions: TransactionIds::open(ocpp.transaction_id_file.as_deref())?,
    })
}

/// One listener per loop on the same address. With port 0, the first listener picks the port
/// and the others join it, so tests can ask for any free port.
fn bind_listeners(config: &Config) -> Result<Vec<TcpListener>, ServerError> {
    let mut addr = config.server.listen;
    let mut listeners = Vec::with_capacity(config.server.workers.get());
    for _ in 0..config.server.workers.get() {
        let bind_err = |source| ServerError::Bind { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_err)?;
        socket.set_reuse_address(true).map_err(bind_err)?;
        socket.set_reuse_port(true).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        socket.bind(&addr.into()).map_err(bind_err)?;
        socket
            .listen(config.server.listen_backlog.min(i32::MAX as u32) as i32)
            .map_err(bind_err)?;
        let listener: std::net::TcpListener = socket.into();
        if addr.port() == 0 {
            addr = listener.local_addr().map_err(bind_err)?;
        }
        listeners.push(TcpListener::from_std(listener));
    }
    Ok(listeners)
}
