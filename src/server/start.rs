//! Starting: the mailboxes, the sinks and the state file, the cluster, the processors, the
//! loops and their listeners, the admin thread, in that order; whatever fails stops what started.

use super::*;

/// A `map_err` for a thread, poll instance or waker the OS refused.
pub(super) fn spawn_err(what: &'static str) -> impl Fn(std::io::Error) -> ServerError {
    move |source| ServerError::Spawn { what, source }
}

/// The channels between the loops and the processors, before any thread runs.
pub(super) struct Mailboxes {
    polls: Vec<Poll>,
    loop_inboxes: Vec<crossbeam_channel::Receiver<ToLoop>>,
    loops: Loops,
    processors: Processors,
    processor_inboxes: Vec<ProcessorInbox>,
}

/// A poll instance, a waker and an inbox per loop; an inbox per processor; the pools of
/// batch buffers they pass each other.
pub(super) fn mailboxes(
    config: &Config,
    workers: usize,
    threads: usize,
) -> Result<Mailboxes, ServerError> {
    let mut polls = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    let mut inboxes = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new().map_err(spawn_err("event loop"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(spawn_err("waker"))?;
        let (tx, rx) = crossbeam_channel::bounded(LOOP_INBOX);
        handles.push(LoopHandle {
            tx,
            shared: Arc::new(LoopShared::new(waker)),
        });
        polls.push(poll);
        inboxes.push(rx);
    }
    let pooled = (POOLED_PER_PAIR * workers * threads).max(8);
    let loops = Loops {
        handles: handles.into(),
        replies: Pool::new(pooled),
    };
    let (processor_handles, processor_inboxes): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| {
            processor_channel(
                (workers * 16).max(256),
                config.processor.queue_capacity.get(),
                config.processor.queue_bytes,
            )
        })
        .unzip();
    let processors = Processors {
        handles: processor_handles.into(),
        batches: Pool::new(pooled),
    };
    Ok(Mailboxes {
        polls,
        loop_inboxes: inboxes,
        loops,
        processors,
        processor_inboxes,
    })
}

/// The event sinks and the state file, with what the admin and `join` need of them.
pub(super) struct Sinks {
    events: Events,
    journal: Option<Arc<JournalStatus>>,
    journal_thread: Option<JoinHandle<()>>,
    kafka_status: Option<Arc<KafkaStatus>>,
    kafka_thread: Option<JoinHandle<()>>,
    /// `cluster.events`: the Redis stream's sink.
    stream: Option<(Arc<StreamStatus>, JoinHandle<()>)>,
    /// The state file's sender and what the last run left.
    state: Option<(StateSender, Restored)>,
    state_thread: Option<JoinHandle<()>>,
}

/// Starts the journal, the Kafka sink and the state file, each with its share of the held
/// billing answers.
pub(super) fn start_sinks(
    config: &Config,
    loops: &Loops,
    stats: &Arc<Stats>,
) -> Result<Sinks, ServerError> {
    // Held answers go to the loops once every holder settled them (`events::held`): each sink,
    // and the state file, which settles them once their changes are committed.
    let loops_route: Arc<dyn ReplyRoute> = Arc::new(loops.clone());
    let sinks = config.events.sinks;
    let state_holds = config.events.ack_after_write && config.ocpp.state_file.is_some();
    let mut chosen: Vec<Arc<dyn EventSink>> = Vec::new();
    // The journal and the Redis stream carry the same lines: one writer renders them for both.
    let mut lines: Vec<Arc<dyn LineSink>> = Vec::new();
    let (mut journal, mut journal_thread) = (None, None);
    if sinks.journal {
        let (sink, status, thread) = Journal::start(
            &config.events,
            &config.server.node_id,
            Arc::clone(&loops_route),
            Arc::clone(stats),
        )
        .map_err(|source| ServerError::Journal {
            path: config.events.path.clone(),
            source,
        })?;
        lines.push(sink);
        (journal, journal_thread) = (Some(status), Some(thread));
    }
    let (mut kafka_status, mut kafka_thread): (Option<Arc<KafkaStatus>>, _) = (None, None);
    if let Some(kafka_config) = config.kafka.as_ref().filter(|_| sinks.kafka) {
        let (sink, status, thread) = KafkaSink::start(
            kafka_config,
            &config.server.node_id,
            (config.events.ack_after_write, config.events.queue_capacity),
            Arc::clone(&loops_route),
            Arc::clone(stats),
        )
        .map_err(|e| ServerError::Kafka(e.to_string()))?;
        chosen.push(sink);
        (kafka_status, kafka_thread) = (Some(status), Some(thread));
    }
    let mut stream = None;
    if let Some(cluster_config) = config.cluster.as_ref().filter(|c| c.events) {
        let (sink, status, thread) = cluster::stream::start(
            cluster_config,
            &config.server.node_id,
            (config.events.ack_after_write, Arc::clone(&loops_route)),
            Arc::clone(stats),
        )
        .map_err(spawn_err("cluster-events thread"))?;
        lines.push(sink);
        stream = Some((status, thread));
    }
    match lines.len() {
        0 => {}
        1 => chosen.insert(0, lines.remove(0)),
        _ => chosen.insert(0, Arc::new(Lines(lines))),
    }
    let events = match chosen.len() {
        0 => Events::none(),
        1 => Events::new(chosen.remove(0)),
        _ => Events::new(Arc::new(Tee(chosen))),
    };
    // What the last run left: each processor gets its own charge points back.
    let (state, state_thread) = match config.ocpp.state_file.as_deref() {
        Some(path) => {
            let route = state_holds.then(|| Arc::clone(&loops_route));
            let store = state::open(path, route, Arc::clone(stats))?;
            (Some((store.sender, store.loaded)), Some(store.thread))
        }
        None => (None, None),
    };
    Ok(Sinks {
        events,
        journal,
        journal_thread,
        kafka_status,
        kafka_thread,
        stream,
        state,
        state_thread,
    })
}

/// Cluster mode: the Redis registry's threads (they never block a loop or a processor).
pub(super) fn start_cluster(
    config: &Config,
    processors: &Processors,
    policy: &Policy,
    security: &Security,
    stats: &Arc<Stats>,
) -> Result<Option<Cluster>, ServerError> {
    let Some(cluster_config) = &config.cluster else {
        return Ok(None);
    };
    let cluster = cluster::start(
        cluster_config,
        &config.server.node_id,
        processors.clone(),
        Arc::clone(&policy.transactions),
        (
            security.credentials.clone(),
            security
                .tls
                .as_ref()
                .and_then(|tls| tls.tickets())
                .filter(|tickets| tickets.shared_through_redis())
                .cloned(),
        ),
        Arc::clone(stats),
    )
    .map_err(spawn_err("cluster thread"))?;
    Ok(Some(cluster))
}

/// Spawns the processors, each with its inbox and its share of what the last run left.
pub(super) fn spawn_processors(
    shared: &Shared<'_>,
    inboxes: Vec<ProcessorInbox>,
    state: Option<(StateSender, Restored)>,
    cluster: Option<&Cluster>,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let config = shared.config;
    pool::spawn(PoolParts {
        inboxes,
        processors: shared.processors.clone(),
        loops: shared.loops.clone(),
        policy: Arc::clone(shared.policy),
        remember_limit: remember_limit(config, config.processor.threads.get()),
        stats: Arc::clone(shared.stats),
        events: shared.events.clone(),
        traces: Arc::clone(shared.traces),
        journal_rule: BudgetRule {
            per_second: config.events.charge_point_rate,
            burst: config.events.charge_point_burst,
        },
        state,
        cluster: cluster.map(|c| c.sender.clone()),
        renewal: (
            config.security.renew_before,
            config.security.renewals_per_scan,
            config.security.certificate_scan,
        ),
    })
    .map_err(spawn_err("processor thread"))
}

/// Disconnected, accepted charge points each processor remembers (ocpp.max_disconnected).
/// An explicit bound is split evenly; the default (the fleet size) keeps a slack per
/// processor, since identities do not hash evenly over them.
pub(super) fn remember_limit(config: &Config, threads: usize) -> usize {
    match config.ocpp.max_disconnected {
        0 => config.server.max_connections / threads + 1024,
        n => n.div_ceil(threads),
    }
}

/// The consumer of `kafka.commands_topic`, when asked for: commands from Kafka, run like API
/// calls.
#[allow(clippy::type_complexity)]
pub(super) fn start_kafka_commands(
    config: &Config,
    commands: &Commands,
    stats: &Arc<Stats>,
) -> Result<
    Option<(
        Arc<AtomicBool>,
        JoinHandle<()>,
        Arc<crate::commands::SourceStatus>,
    )>,
    ServerError,
> {
    let Some(kafka_config) = config.kafka.as_ref().filter(|k| k.consume_commands) else {
        return Ok(None);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (thread, status) = crate::kafka_commands::start(
        kafka_config,
        &config.server.node_id,
        commands.clone(),
        Arc::clone(stats),
        Arc::clone(&stop),
    )
    .map_err(|e| ServerError::Kafka(e.to_string()))?;
    Ok(Some((stop, thread, status)))
}

/// Cluster mode: calls for charge points other nodes hold, and the cluster listing.
pub(super) fn start_cluster_remote(
    config: &Config,
    cluster: &mut Cluster,
    commands: &Commands,
) -> Result<(), ServerError> {
    let Some(cluster_config) = &config.cluster else {
        return Ok(());
    };
    let client = redis::Client::open(cluster_config.redis_url.as_str())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        .map_err(spawn_err("cluster api thread"))?;
    let remote = cluster::remote::start(
        client,
        cluster_config.prefix.clone(),
        config.server.node_id.clone(),
        commands.clone(),
        config.ocpp.longest_call() + Duration::from_secs(5),
        Arc::clone(&cluster.stop),
    )
    .map_err(spawn_err("cluster api thread"))?;
    cluster.remote = Some(remote);
    Ok(())
}

/// What the loops and the admin thread are given a share of.
pub(super) struct Shared<'a> {
    config: &'a Arc<Config>,
    stats: &'a Arc<Stats>,
    security: &'a Arc<Security>,
    policy: &'a Arc<Policy>,
    loops: &'a Loops,
    processors: &'a Processors,
    events: &'a Events,
    traces: &'a Arc<TraceList>,
}

/// Spawns the loops, each with its poll, its sockets and its inbox, pinned to a core when
/// `server.pin_cores`. When one cannot be spawned, those already running are stopped.
#[allow(clippy::type_complexity)]
pub(super) fn spawn_loops(
    shared: &Shared<'_>,
    polls: Vec<Poll>,
    listeners: Vec<Vec<(TcpListener, ListenerConfig)>>,
    inboxes: Vec<crossbeam_channel::Receiver<ToLoop>>,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let config = shared.config;
    let cores = if config.server.pin_cores {
        core_affinity::get_core_ids()
    } else {
        None
    };
    let cores = cores.unwrap_or_default();
    let mut loop_threads = Vec::with_capacity(polls.len());
    let parts = polls.into_iter().zip(listeners).zip(inboxes).enumerate();
    for (index, ((poll, listener), inbox)) in parts {
        let parts = LoopParts {
            index: index as u16,
            poll,
            listeners: listener,
            inbox,
            shared: Arc::clone(&shared.loops.handles[index].shared),
            processors: shared.processors.clone(),
            replies: shared.loops.replies.clone(),
            config: Arc::clone(config),
            stats: Arc::clone(shared.stats),
            known_identities: shared
                .policy
                .identities
                .clone()
                .filter(|_| config.ocpp.refuse_unknown_at_handshake),
            security: Arc::clone(shared.security),
            events: shared.events.clone(),
            traces: Arc::clone(shared.traces),
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
                stop_loops(shared.loops, loop_threads);
                return Err(ServerError::Spawn {
                    what: "event loop thread",
                    source,
                });
            }
        }
    }
    Ok(loop_threads)
}

/// What the admin thread reads and calls: the shared parts, the sinks' and the commands
/// consumer's status, and the cluster's.
#[allow(clippy::type_complexity)]
pub(super) fn admin_parts(
    listener: std::net::TcpListener,
    shared: &Shared<'_>,
    commands: &Commands,
    (journal, events_stream, kafka): (
        Option<Arc<JournalStatus>>,
        Option<Arc<StreamStatus>>,
        Option<Arc<KafkaStatus>>,
    ),
    kafka_commands: Option<&(
        Arc<AtomicBool>,
        JoinHandle<()>,
        Arc<crate::commands::SourceStatus>,
    )>,
    cluster: Option<&Cluster>,
) -> AdminParts {
    AdminParts {
        listener,
        config: Arc::clone(shared.config),
        stats: Arc::clone(shared.stats),
        loops: shared.loops.clone(),
        processors: shared.processors.clone(),
        commands: commands.clone(),
        traces: Arc::clone(shared.traces),
        journal,
        events_stream,
        kafka,
        kafka_commands: kafka_commands.map(|(_, _, s)| Arc::clone(s)),
        security: Arc::clone(shared.security),
        transactions: Arc::clone(&shared.policy.transactions),
        redis_reachable: cluster.map(|c| Arc::clone(&c.reachable)),
        cluster_api: cluster
            .and_then(|c| c.remote.as_ref())
            .map(|r| r.requests.clone()),
        cluster: cluster.map(|c| c.sender.clone()),
    }
}

/// Logs each listener and the threads started.
pub(super) fn log_started(
    config: &Config,
    local_addrs: &[SocketAddr],
    workers: usize,
    threads: usize,
) {
    for (addr, listener) in local_addrs.iter().zip(config.listeners()) {
        info!(
            "listening on {addr} (security profile {}{})",
            listener.profile.number(),
            if listener.proxy_protocol {
                ", PROXY protocol"
            } else {
                ""
            }
        );
    }
    info!(
        "{workers} loops and {threads} processors{}",
        if config.server.pin_cores {
            ", pinned"
        } else {
            ""
        }
    );
}

impl Server {
    pub fn start(config: Config) -> Result<Server, ServerError> {
        let config = Arc::new(config);
        let workers = config.server.workers.get();
        let threads = config.processor.threads.get();
        let security = Arc::new(Security::load(&config)?);
        let (listeners, local_addrs) = bind_listeners(&config)?;
        let admin_listener = config.admin.listen.map(bind_admin).transpose()?;
        let stats = Arc::new(Stats::new(workers, threads));

        let Mailboxes {
            polls,
            loop_inboxes: inboxes,
            loops,
            processors,
            processor_inboxes,
        } = mailboxes(&config, workers, threads)?;

        let mut policy = load_policy(&config)?;
        policy.signing = match &config.security.signing {
            crate::config::Signing::Off => Signer::Off,
            crate::config::Signing::Backend => Signer::Backend,
            crate::config::Signing::Ca {
                cert,
                key,
                validity,
            } => {
                let ca = CertificateAuthority::load(cert, key, *validity)?
                    .paced(config.security.signings_per_second);
                info!("charge point certificates signed by {}", cert.display());
                Signer::Ca(Arc::new(ca))
            }
        };
        let policy = Arc::new(policy);
        let Sinks {
            events,
            journal,
            journal_thread,
            kafka_status,
            kafka_thread,
            stream,
            state,
            state_thread,
        } = start_sinks(&config, &loops, &stats)?;
        let (stream_status, stream_thread) = stream.unzip();
        let mut cluster = start_cluster(&config, &processors, &policy, &security, &stats)?;
        let traces = Arc::new(TraceList::default());
        let shared = Shared {
            config: &config,
            stats: &stats,
            security: &security,
            policy: &policy,
            loops: &loops,
            processors: &processors,
            events: &events,
            traces: &traces,
        };
        let processor_threads =
            spawn_processors(&shared, processor_inboxes, state, cluster.as_ref())?;
        let commands = Commands {
            processors: processors.clone(),
            stats: Arc::clone(&stats),
            events: events.clone(),
        };
        let kafka_commands = start_kafka_commands(&config, &commands, &stats)?;
        if let Some(cluster) = cluster.as_mut() {
            start_cluster_remote(&config, cluster, &commands)?;
        }

        let loop_threads = spawn_loops(&shared, polls, listeners, inboxes)?;
        let admin = match admin_listener {
            None => None,
            Some(listener) => {
                let parts = admin_parts(
                    listener,
                    &shared,
                    &commands,
                    (journal, stream_status, kafka_status.clone()),
                    kafka_commands.as_ref(),
                    cluster.as_ref(),
                );
                match Admin::start(parts) {
                    Ok(admin) => Some(admin),
                    Err(e) => {
                        stop_loops(&loops, loop_threads);
                        return Err(e.into());
                    }
                }
            }
        };
        // The loops, the admin thread and this server hold the senders to the processors: when
        // the last loop has exited and `join` drops the others, the processors stop.
        log_started(&config, &local_addrs, workers, threads);
        drop(processors);
        Ok(Server {
            local_addrs,
            security,
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
            stats,
        })
    }
}

/// The admin listener's socket, bound here so a taken address stops the start like the
/// charge point listener's.
pub(super) fn bind_admin(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    socket.listen(128).map_err(bind_err)?;
    Ok(socket.into())
}

/// The built-in policies, with their files loaded.
pub(super) fn load_policy(config: &Config) -> Result<Policy, PolicyError> {
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
    // In cluster mode each node gives out ids only from its own share of the range, counted
    // in its own file: unique across the nodes whatever Redis keeps.
    let transactions = match &config.cluster {
        Some(cluster) => TransactionIds::open_cluster(
            ocpp.transaction_id_file.as_deref(),
            cluster.id_slot,
            cluster.id_slots,
        )?,
        None => TransactionIds::open(ocpp.transaction_id_file.as_deref())?,
    };
    let policy = Policy {
        heartbeat_interval_secs: ocpp.heartbeat_interval.as_secs(),
        boot_status: ocpp.boot_status,
        identities: identities.map(Arc::new),
        id_tags,
        data_transfer_status: ocpp.data_transfer_status,
        transactions: Arc::new(transactions),
        check_serial_number: config.security.check_serial_number,
        signing: Signer::Off,
    };
    Ok(policy)
}

/// One socket per loop for each listener, on the same address (`SO_REUSEPORT`: the kernel
/// spreads connections over the loops). With port 0, the first socket picks the port and the
/// others join it, so tests can ask for any free port. Returns each loop's sockets, with their
/// listener's settings, and each listener's address.
#[allow(clippy::type_complexity)]
pub(super) fn bind_listeners(
    config: &Config,
) -> Result<(Vec<Vec<(TcpListener, ListenerConfig)>>, Vec<SocketAddr>), ServerError> {
    let workers = config.server.workers.get();
    let mut per_loop: Vec<Vec<(TcpListener, ListenerConfig)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for listener_config in config.listeners() {
        let mut addr = listener_config.listen;
        for sockets in per_loop.iter_mut() {
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
            sockets.push((TcpListener::from_std(listener), listener_config.clone()));
        }
        addrs.push(addr);
    }
    Ok((per_loop, addrs))
}
