//! The subscriber thread: takeovers by other nodes (told to the processor that holds the
//! charge point) and credentials other nodes set (adopted here).

use super::*;

/// What the subscriber thread listens for, and where it hands it.
pub(super) struct Subscriber {
    pub(super) client: redis::Client,
    /// `{prefix}takeover:{node}`.
    pub(super) takeovers: String,
    /// `{prefix}credentials` (a channel and a hash of the same name).
    pub(super) credentials_key: String,
    pub(super) credentials: Option<Arc<Credentials>>,
    pub(super) processors: Processors,
    pub(super) stats: Arc<Stats>,
}

impl Subscriber {
    /// Listens on `{prefix}takeover:{node}` (handing each takeover to the charge point's
    /// processor) and `{prefix}credentials` (adopting each key another node set); after each
    /// (re)connect, adopts every credential of the hash it does not hold yet. Reconnects every
    /// second while Redis is away; ends when the gateway stops.
    pub(super) fn run(&self, stop: &AtomicBool) {
        let stopping = || stop.load(Ordering::Relaxed);
        while !stopping() {
            let Ok(mut con) = self.client.get_connection_with_timeout(REDIS_TIMEOUT) else {
                std::thread::park_timeout(RETRY);
                continue;
            };
            let _ = con.set_read_timeout(Some(Duration::from_millis(500)));
            let mut pubsub = con.as_pubsub();
            let channels = [self.takeovers.as_str(), self.credentials_key.as_str()];
            // Subscribed first, then the hash read: a key set in between is in both.
            if pubsub.subscribe(&channels[..]).is_err() || self.sync_credentials().is_err() {
                std::thread::park_timeout(RETRY);
                continue;
            }
            loop {
                if stopping() {
                    return;
                }
                match pubsub.get_message() {
                    Ok(msg) => {
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if msg.get_channel_name() == self.credentials_key {
                            self.adopt(&text);
                        } else {
                            self.taken_over(&text);
                        }
                    }
                    Err(e) if e.is_timeout() => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// `{id}\t{connected_at}`: the charge point's processor closes an older connection.
    pub(super) fn taken_over(&self, text: &str) {
        let Some((cp, at)) = text.split_once('\t') else {
            return;
        };
        let Ok(at_ms) = at.parse::<u64>() else {
            return;
        };
        self.stats.cluster.cluster_takeovers.inc();
        let cp: ChargePointId = cp.into();
        self.processors.of(&cp).send(ToProcessor::TakenOver {
            cp: ChargePointId::clone(&cp),
            at_ms,
        });
    }

    /// A credentials-file line another node (or this one) set.
    pub(super) fn adopt(&self, line: &str) {
        let Some(credentials) = &self.credentials else {
            return;
        };
        match credentials.adopt(line) {
            Ok(true) => info!(
                "cp={} Basic auth key set by another node",
                line.split('\t').next().unwrap_or_default()
            ),
            Ok(false) => {}
            Err(e) => warn!("cluster: a credential from Redis not adopted: {e}"),
        }
    }

    /// Adopts every credential in the hash (HSCAN, a page at a time).
    pub(super) fn sync_credentials(&self) -> redis::RedisResult<()> {
        if self.credentials.is_none() {
            return Ok(());
        }
        let mut con = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
        con.set_read_timeout(Some(REDIS_TIMEOUT))?;
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&self.credentials_key)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)?;
            for (_, line) in page {
                self.adopt(&line);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
