//! Sampling once a second: the progress line, the time series, the gateway's and our own RSS
//! and CPU.

use super::*;

impl Coordinator {
    pub(super) fn sample(&mut self, now: Instant) {
        let counts = self.fleet.counts();
        let (last_at, last) = self.last_sample;
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let round_trips = (counts.round_trips() - last.round_trips()) as f64 / dt;
        let messages = (counts.messages_in + counts.messages_out
            - last.messages_in
            - last.messages_out) as f64
            / dt;
        let p99 = if self.window.is_empty() {
            0
        } else {
            self.window.value_at_quantile(0.99)
        };
        self.window.reset();
        let marks = self.marks();
        let t_s = now.duration_since(self.origin).as_secs_f64();
        let point = SeriesPoint {
            t_s: (t_s * 1000.0).round() / 1000.0,
            phase: self.phase.name().into(),
            open: counts.open,
            booted: counts.booted,
            inflight: counts.inflight,
            round_trips_per_s: round_trips.round(),
            messages_per_s: messages.round(),
            round_trip_p99_us: p99,
            errors: counts.errors_total(),
            server_rss_bytes: marks.server.map(|s| s.rss_bytes),
            server_cpu_s: marks.server.map(|s| s.cpu_seconds),
            bench_rss_bytes: marks.bench.map(|s| s.rss_bytes),
            bench_cpu_s: marks.bench.map(|s| s.cpu_seconds),
        };
        if !self.config.quiet {
            eprintln!(
                "[{:>5.0}s] {:<6} open {}/{}  booted {}  connecting {} | {:.0} rt/s  {:.0} msg/s  \
                 p99 {:.2} ms | errors {}",
                t_s,
                point.phase,
                point.open,
                self.config.connections,
                point.booted,
                point.inflight,
                point.round_trips_per_s,
                point.messages_per_s,
                p99 as f64 / 1000.0,
                point.errors
            );
        }
        self.series.push(point);
        self.last_sample = (now, counts);
        let due = self
            .last_server_sample
            .is_none_or(|(at, ..)| now.duration_since(at) >= self.config.sample_every);
        if due {
            self.sample_server(now, counts);
        }
    }

    /// One [`ServerSample`] of the gateway (with `--server-pid`).
    pub(super) fn sample_server(&mut self, now: Instant, counts: Counts) {
        let Some(pid) = self.config.server_pid else {
            return;
        };
        let (proc, open_files, threads) = sampler::proc_figures(pid);
        let cpu = proc.map(|p| p.cpu_seconds);
        let (round_trips, cpu_cores) = match self.last_server_sample {
            Some((at, last, last_cpu)) => (
                counts.round_trips() - last.round_trips(),
                cpu.zip(last_cpu)
                    .map(|(c, l)| (c - l) / now.duration_since(at).as_secs_f64().max(1e-3)),
            ),
            None => (0, None),
        };
        let health = self.config.admin.and_then(|admin| {
            sampler::fetch_health(admin)
                .inspect_err(|e| warn!("--admin {admin}: /health: {e}"))
                .ok()
        });
        let p99 = if self.sample_window.is_empty() {
            0
        } else {
            self.sample_window.value_at_quantile(0.99)
        };
        self.sample_window.reset();
        let t_s = now.duration_since(self.origin).as_secs_f64();
        self.samples.push(ServerSample {
            t_s: (t_s * 1000.0).round() / 1000.0,
            phase: self.phase.name().into(),
            open: counts.open,
            booted: counts.booted,
            rss_bytes: proc.map(|p| p.rss_bytes),
            cpu_cores: cpu_cores.map(|c| (c * 1000.0).round() / 1000.0),
            open_files,
            threads,
            round_trips,
            round_trip_p99_us: p99,
            errors: counts.errors_total(),
            health,
        });
        self.last_server_sample = Some((now, counts, cpu));
    }
}
