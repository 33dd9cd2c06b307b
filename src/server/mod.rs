//! Starting and stopping the gateway: bind one `SO_REUSEPORT` listener per loop, start the
//! journal, spawn the loops (pinned), the processors and the admin listener, and on shutdown let
//! the loops drain, then join everything in dependency order (loops, admin, the Kafka commands
//! consumer, the cluster's threads, processors, then the sinks: journal, Kafka, state file, and
//! the cluster's writer last). Tests start a [`Server`] in-process; `main` does the same and adds signals.
//! Starting is `start.rs`; what a running server offers and how it stops is here.

mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};
use mio::net::TcpListener;
use mio::{Poll, Waker};
use serde_json::value::RawValue;
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::{Admin, AdminError, AdminParts};
use crate::batch::Pool;
use crate::call::PendingCall;
use crate::cluster::stream::StreamStatus;
use crate::cluster::{self, Cluster};
use crate::commands::Commands;
use crate::config::{Config, ListenerConfig};
use crate::events::{EventSink, Events, ReplyRoute, Tee};
use crate::journal::{Journal, JournalStatus, LineSink, Lines};
use crate::kafka::{KafkaSink, KafkaStatus};
use crate::mailbox::{
    LoopHandle, LoopShared, Loops, ProcessorInbox, Processors, ToLoop, processor_channel,
};
use crate::net::event_loop::{EventLoop, LoopParts, WAKER};
use crate::policy::{IdTags, Identities, PolicyError, TransactionIds};
use crate::processor::handlers::{Policy, Signer};
use crate::processor::journal_budget::BudgetRule;
use crate::processor::pool::{self, PoolParts};
use crate::security::signing::CertificateAuthority;
use crate::security::{Security, SecurityError};
use crate::state::{self, Restored, StateError, StateSender};
use crate::stats::{Stats, StatsSnapshot};
use crate::trace::TraceList;
use ocpp::v16::Invalid;

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
    /// The journal file (`events.path`) cannot be opened: fix the path or its permissions,
    /// or set `events.sink = "none"`.
    #[error("cannot open the journal {path}: {source}")]
    Journal {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The state file (`ocpp.state_file`) cannot be opened: fix the path or its permissions,
    /// or set it to "" (nothing survives a restart then).
    #[error(transparent)]
    State(#[from] StateError),
    /// The admin listener could not start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The sub-CA (`security.ca_cert`, `security.ca_key`) cannot be used: the message names
    /// the file.
    #[error(transparent)]
    CertificateAuthority(#[from] crate::security::signing::CaError),
    /// A certificate, key, CA or credentials file cannot be used: the message names the key
    /// and the file.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// librdkafka refused the `[kafka]` settings (a property it does not know, a bad value).
    #[error("kafka: {0}")]
    Kafka(String),
    /// A thread panicked; its panic message is in the log.
    #[error("{0} thread panicked")]
    Panicked(String),
}

/// Answer batches that may wait in a loop's mailbox; a processor sending to a full one waits.
const LOOP_INBOX: usize = 1024;
/// Buffers kept for reuse per (loop, processor) pair: about what is in flight between them at
/// once (one being filled, one in the channel).
const POOLED_PER_PAIR: usize = 2;

/// A running gateway.
pub struct Server {
    /// Per listener, in `Config::listeners` order.
    local_addrs: Vec<SocketAddr>,
    security: Arc<Security>,
    loops: Loops,
    loop_threads: Vec<JoinHandle<()>>,
    /// For calls of the central system: routed to the charge point's processor.
    commands: Commands,
    processor_threads: Vec<JoinHandle<()>>,
    admin: Option<Admin>,
    journal_thread: Option<JoinHandle<()>>,
    /// The Kafka sink's thread, and the commands consumer (with its stop flag).
    kafka_thread: Option<JoinHandle<()>>,
    /// `cluster.events`: the Redis stream's sink thread.
    stream_thread: Option<JoinHandle<()>>,
    kafka_status: Option<Arc<KafkaStatus>>,
    kafka_commands: Option<(
        Arc<AtomicBool>,
        JoinHandle<()>,
        Arc<crate::commands::SourceStatus>,
    )>,
    state_thread: Option<JoinHandle<()>>,
    cluster: Option<Cluster>,
    stats: Arc<Stats>,
}

/// A cloneable way to reload a running server's certificates, CRLs and credentials (SIGHUP).
#[derive(Clone)]
pub struct ReloadHandle {
    security: Arc<Security>,
    loops: Arc<[LoopHandle]>,
}

impl ReloadHandle {
    /// Reads them again; then every loop closes the connections a CRL now revokes.
    pub fn reload(&self) {
        self.security.reload();
        for handle in self.loops.iter() {
            handle.send(ToLoop::SweepRevoked);
        }
    }
}

/// A cloneable way to ask a running server to stop (for signal handlers).
#[derive(Clone)]
pub struct ShutdownHandle {
    loops: Loops,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        for handle in self.loops.handles.iter() {
            handle.request_shutdown();
        }
    }
}

impl Server {
    /// The address charge points connect to (the real port when `server.listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listener's address, in `Config::listeners` order (`server.listen` first).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Reads certificates, CRLs and credentials again (what SIGHUP does); connections stay,
    /// but those whose client certificate a CRL now revokes are closed.
    pub fn reload(&self) {
        self.reload_handle().reload();
    }

    /// What the SIGHUP handler calls [`ReloadHandle::reload`] on.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            security: Arc::clone(&self.security),
            loops: Arc::clone(&self.loops.handles),
        }
    }

    /// The credentials and certificates connections are checked against.
    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// The admin listener's address (None when `admin.listen = ""`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::local_addr)
    }

    /// Test hook: blocks processor `index` until the returned sender is dropped, as a stuck
    /// thread would be (for `/health`).
    #[cfg(feature = "test-hooks")]
    pub fn stall_processor(&self, index: usize) -> crossbeam_channel::Sender<()> {
        let (tx, rx) = crossbeam_channel::bounded(0);
        if let Some(processor) = self.commands.processors.handles.get(index) {
            processor.send(crate::mailbox::ToProcessor::Stall(rx));
        }
        tx
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
        action: impl Into<ocpp::AnyAction>,
        payload: Box<RawValue>,
    ) -> Result<PendingCall, Invalid> {
        self.commands.call(cp, action.into(), payload, None, None)
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
            commands,
            processor_threads,
            admin,
            journal_thread,
            kafka_thread,
            stream_thread,
            kafka_status,
            kafka_commands,
            state_thread,
            cluster,
            ..
        } = self;
        let mut result = Ok(());
        for thread in loop_threads {
            let name = thread.thread().name().unwrap_or("loop").to_owned();
            if thread.join().is_err() {
                result = Err(ServerError::Panicked(name));
            }
        }
        // The admin thread holds senders to the processors and the loops: stop it first.
        if let Some(admin) = admin
            && admin.stop().is_err()
        {
            result = Err(ServerError::Panicked("admin".into()));
        }
        // A broker that is away must not keep the processors from stopping.
        if let Some(status) = &kafka_status {
            status.stop();
        }
        // The Kafka consumer holds senders to the processors too.
        if let Some((stop, thread, _)) = kafka_commands {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if thread.join().is_err() {
                result = Err(ServerError::Panicked("kafka-commands".into()));
            }
        }
        // The cluster's threads hold senders to the processors: stop them, keep the writer
        // (it ends once the processors have handed it their last operations) and our sender.
        let cluster_writer = cluster.map(|c| {
            c.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if c.subscriber.join().is_err() {
                result = Err(ServerError::Panicked("cluster-sub".into()));
            }
            if let Some(remote) = c.remote {
                if remote.thread.join().is_err() {
                    result = Err(ServerError::Panicked("cluster-api".into()));
                }
                if remote.reader.join().is_err() {
                    result = Err(ServerError::Panicked("cluster-api-read".into()));
                }
            }
            // The writer answers connects with what Redis knows: it lets go of the processors.
            c.sender.release();
            (c.writer, c.sender)
        });
        // Processors may still hold a sender to a loop; the loops are gone, so drop ours, and
        // our senders to the processors, which then stop.
        drop(loops);
        // With `commands` the last senders go: ring each processor so it sees that at once.
        let bells: Vec<_> = commands
            .processors
            .handles
            .iter()
            .map(|h| h.bell())
            .collect();
        drop(commands);
        for bell in bells {
            bell.unpark();
        }
        for thread in processor_threads {
            let name = thread.thread().name().unwrap_or("processor").to_owned();
            if thread.join().is_err() {
                result = Err(ServerError::Panicked(name));
            }
        }
        // Every handle on the journal went with the threads above: it writes what is left.
        if let Some(thread) = journal_thread
            && thread.join().is_err()
        {
            result = Err(ServerError::Panicked("journal".into()));
        }
        if let Some(thread) = kafka_thread
            && thread.join().is_err()
        {
            result = Err(ServerError::Panicked("kafka-events".into()));
        }
        if let Some(thread) = stream_thread
            && thread.join().is_err()
        {
            result = Err(ServerError::Panicked("cluster-events".into()));
        }
        // Likewise the state file's senders: it commits what is left.
        if let Some(thread) = state_thread
            && thread.join().is_err()
        {
            result = Err(ServerError::Panicked("state".into()));
        }
        if let Some((thread, sender)) = cluster_writer {
            // Behind every operation of the processors (all joined above): the last one.
            sender.finish();
            if thread.join().is_err() {
                result = Err(ServerError::Panicked("cluster".into()));
            }
        }
        result
    }
}

/// Asks the loops to stop and waits for the threads started so far.
pub(super) fn stop_loops(loops: &Loops, threads: Vec<JoinHandle<()>>) {
    for handle in loops.handles.iter() {
        handle.request_shutdown();
    }
    for thread in threads {
        let _ = thread.join();
    }
}
