//! Assembling the [`Report`] once the run stopped: counts checked, CPU per phase, the
//! gateway's figures and ours, drift.

use super::*;

impl Coordinator {
    pub(super) fn report(&mut self, started_unix_s: u64, latencies: &Latencies) -> Report {
        let config = Arc::clone(&self.config);
        let (end_at, end, end_marks) = self
            .steady_end
            .unwrap_or_else(|| (Instant::now(), self.fleet.counts(), Marks::default()));
        let total = self.fleet.counts(); // after stop: every counter final
        let n = u64::from(config.connections);
        self.check_counts(&end, &total, n);

        let (steady_s, steady_counts) = match self.steady_start {
            Some((at, counts)) => (end_at.duration_since(at).as_secs_f64(), Some(counts)),
            None => (0.0, None),
        };
        let steady_round_trips = steady_counts.map_or(0, |s| end.round_trips() - s.round_trips());
        let steady_messages = steady_counts.map_or(0, |s| {
            end.messages_in + end.messages_out - s.messages_in - s.messages_out
        });
        let per_s = |v: u64| {
            if steady_s > 0.0 {
                v as f64 / steady_s
            } else {
                0.0
            }
        };
        let server = self.server_figures(&end, &end_marks, (steady_s, steady_round_trips));
        let bench = self.bench_figures(&end, &end_marks, steady_s);

        let by_kind = ErrorKind::ALL
            .into_iter()
            .map(|k| (k.name().to_owned(), total.errors[k as usize]))
            .collect();
        let drift = self.checked_drift();
        let time_to_all_booted = self.time_to_all_booted;
        Report {
            tool: "ocpp-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_unix_s,
            config: config_echo(&config),
            outcome: Outcome {
                passed: self.failures.is_empty(),
                failures: self.failures.clone(),
            },
            connect: ConnectFigures {
                target: config.connections,
                open_at_end: end.open,
                booted_at_end: end.booted,
                time_to_all_booted_s: time_to_all_booted,
                connect_boot_rate_per_s: time_to_all_booted
                    .filter(|t| *t > 0.0)
                    .map(|t| (n as f64 / t).round()),
                connect_attempts: total.connect_attempts,
                reconnect_attempts: total.connect_attempts.saturating_sub(n),
                handshakes: total.handshakes,
                boots: total.boots,
                reboots: total.reboots,
                resumes: total.resumes,
                resumes_refused: total.resumes_refused,
                tls_resumed: total.tls_resumed,
            },
            latency_us: LatencyFigures {
                connect: Summary::of(&latencies.connect),
                handshake: Summary::of(&latencies.handshake),
                handshake_boot: Summary::of(&latencies.boot),
                round_trip: Summary::of(&latencies.round_trip),
                stop_transaction: Summary::of(&latencies.stop_transaction),
                start_transaction: Summary::of(&latencies.start_transaction),
            },
            throughput: Throughput {
                measured_s: (steady_s * 1000.0).round() / 1000.0,
                round_trips: steady_round_trips,
                round_trips_per_s: per_s(steady_round_trips).round(),
                messages_per_s: per_s(steady_messages).round(),
                calls_sent: total.calls_sent,
                messages_in: total.messages_in,
                messages_out: total.messages_out,
                central_system_calls_answered: total.calls_answered,
                pings_received: total.pings,
            },
            errors: ErrorFigures {
                total: total.errors_total(),
                mismatches: total.errors_where(ErrorKind::is_mismatch),
                by_kind,
            },
            storm: (config.scenario == Scenario::Storm).then_some(StormFigures {
                dropped: self.storm_dropped,
                time_to_all_booted_s: self.storm_recovery,
            }),
            server,
            bench,
            series: std::mem::take(&mut self.series),
            drift,
            samples: std::mem::take(&mut self.samples),
        }
    }

    /// Fails the run when not everyone was booted at the end (unless booting already failed
    /// it) or when an error that fails runs happened.
    fn check_counts(&mut self, end: &Counts, total: &Counts, n: u64) {
        if end.booted < n && !self.boot_failed {
            self.failures.push(format!(
                "{} of {n} charge points were booted at the end",
                end.booted
            ));
        }
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.fails_run()) {
            let count = total.errors[kind as usize];
            if count > 0 {
                self.failures.push(format!("{count} {}", kind.name()));
            }
        }
    }

    /// CPU seconds of one process (`pick`) per phase, from the marks taken between phases.
    fn phase_cpu(&self, pick: fn(&Marks) -> Option<Sample>, end_marks: &Marks) -> PhaseCpu {
        let before = pick(&self.before).map(|s| s.cpu_seconds);
        let ramp = self.ramp_end.as_ref().and_then(pick).map(|s| s.cpu_seconds);
        let storm = self
            .storm_end
            .as_ref()
            .and_then(pick)
            .map(|s| s.cpu_seconds);
        let end = pick(end_marks).map(|s| s.cpu_seconds);
        let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(((b - a) * 1000.0).round() / 1000.0),
            _ => None,
        };
        let steady_from = storm.or(ramp);
        PhaseCpu {
            ramp: diff(before, ramp),
            storm: diff(ramp, storm),
            steady: if self.steady_start.is_some() {
                diff(steady_from, end)
            } else {
                None
            },
            total: diff(before, end),
        }
    }

    /// The gateway's memory, CPU and context switches (with `--server-pid` only), per
    /// connection and per round trip of the measured phase (`steady`: its seconds and round
    /// trips).
    fn server_figures(
        &self,
        end: &Counts,
        end_marks: &Marks,
        (steady_s, steady_round_trips): (f64, u64),
    ) -> Option<ServerFigures> {
        let config = &self.config;
        let server_cpu = self.phase_cpu(|m| m.server, end_marks);
        // Context switches of the gateway during the measured phase (its threads' sum).
        let switches_steady = self.steady_start.and(
            match (
                self.storm_end.or(self.ramp_end).and_then(|m| m.server),
                end_marks.server,
            ) {
                (Some(from), Some(to)) => {
                    Some(to.context_switches.saturating_sub(from.context_switches))
                }
                _ => None,
            },
        );
        let per_round_trip = |v: f64| {
            (steady_round_trips > 0)
                .then(|| ((v / steady_round_trips as f64) * 1000.0).round() / 1000.0)
        };
        match (config.server_pid, self.before.server) {
            (Some(pid), Some(before)) => {
                let end_rss = end_marks.server.map_or(0, |s| s.rss_bytes);
                // Memory per connection is read when all are booted, before the measured phase
                // grows buffers, and divided by the connections open then (the target).
                let booted_rss = self.rss_all_booted;
                Some(ServerFigures {
                    pid,
                    rss_before_bytes: before.rss_bytes,
                    rss_all_booted_bytes: self.rss_all_booted,
                    rss_end_bytes: end_rss,
                    bytes_per_connection: booted_rss.and_then(|rss| {
                        per_connection(before.rss_bytes, rss, config.connections as u64)
                    }),
                    bytes_per_connection_end: per_connection(before.rss_bytes, end_rss, end.booted),
                    cores_steady: cores_steady(&server_cpu, steady_s),
                    cpu_us_per_round_trip: server_cpu.steady.and_then(|c| per_round_trip(c * 1e6)),
                    context_switches_steady: switches_steady,
                    context_switches_per_round_trip: switches_steady
                        .and_then(|n| per_round_trip(n as f64)),
                    cpu_s: server_cpu,
                })
            }
            _ => None,
        }
    }

    /// This process's threads, CPU and memory.
    fn bench_figures(&self, end: &Counts, end_marks: &Marks, steady_s: f64) -> BenchFigures {
        let bench_cpu = self.phase_cpu(|m| m.bench, end_marks);
        let bench_before = self.before.bench.map_or(0, |s| s.rss_bytes);
        let bench_end = end_marks.bench.map_or(0, |s| s.rss_bytes);
        BenchFigures {
            threads: self.config.threads,
            cores_steady: cores_steady(&bench_cpu, steady_s),
            cpu_s: bench_cpu,
            rss_before_bytes: bench_before,
            rss_end_bytes: bench_end,
            peak_rss_bytes: process::peak_rss_self().unwrap_or(0),
            bytes_per_connection: per_connection(bench_before, bench_end, end.open),
        }
    }

    /// The gateway's RSS drift after the warm-up; fails the run past `--max-rss-spread`.
    fn checked_drift(&mut self) -> Option<Drift> {
        let config = &self.config;
        let drift = self.steady_start.and_then(|(at, _)| {
            let from = at.duration_since(self.origin) + config.warmup;
            sampler::drift(&self.samples, from.as_secs_f64())
        });
        if let Some(limit) = config.max_rss_spread {
            match &drift {
                Some(d) if d.rss_spread_percent > limit => self.failures.push(format!(
                    "gateway RSS moved {:.1}% after the warm-up (--max-rss-spread {limit})",
                    d.rss_spread_percent
                )),
                Some(_) => {}
                None => self.failures.push(
                    "no gateway sample after the warm-up to check --max-rss-spread against".into(),
                ),
            }
        }
        drift
    }
}

/// The flags that shaped the run, as the report echoes them.
fn config_echo(config: &RunConfig) -> ConfigEcho {
    ConfigEcho {
        url: config.target.url_prefix.clone(),
        connections: config.connections,
        threads: config.threads,
        scenario: config.scenario.name().into(),
        protocols: config
            .protocols
            .iter()
            .map(|v| v.subprotocol().to_owned())
            .collect(),
        interval_s: match &config.scenario {
            Scenario::Heartbeat { interval } => Some(interval.as_secs_f64()),
            Scenario::Realistic(p) => Some(p.heartbeat.as_secs_f64()),
            _ => None,
        },
        rate: config.rate,
        connect_rate: config.connect_rate,
        max_inflight_handshakes: config.max_inflight_handshakes,
        source_ips: config.source_ips.len(),
        duration_s: config.duration.as_secs_f64(),
        ramp_timeout_s: config.ramp_timeout.as_secs_f64(),
        timeout_s: config.timeout.as_secs_f64(),
        read_buffer: crate::fleet::READ_BUFFER,
    }
}

/// Cores used on average in the measured phase (`steady_s` seconds).
fn cores_steady(cpu: &PhaseCpu, steady_s: f64) -> Option<f64> {
    cpu.steady
        .filter(|_| steady_s > 0.0)
        .map(|c| (c / steady_s * 1000.0).round() / 1000.0)
}

/// Bytes a process grew from `before` to `after`, per connection (None without connections).
fn per_connection(before: u64, after: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| ((after as f64 - before as f64) / count as f64).round())
}
