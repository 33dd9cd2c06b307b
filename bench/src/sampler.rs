//! The gateway looked at every `--sample-every` (10 s by default) for long runs (soak): RSS, CPU,
//! open descriptors and threads from `/proc/PID`, queue depths and status from its `/health`
//! (with `--admin`). One [`ServerSample`] each into the report's `samples`; [`Drift`] sums up
//! how RSS moved once the warm-up was over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process;

/// Longest `/health` answer read (it is a few hundred bytes per loop and processor).
const MAX_HEALTH_BYTES: u64 = 1 << 20;
/// Connect, write and read timeout of one `/health` request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// One look at the gateway during a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerSample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub phase: String,
    /// Our charge points open / booted.
    pub open: u64,
    pub booted: u64,
    pub rss_bytes: Option<u64>,
    /// CPU seconds per second since the previous sample (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    /// Entries of `/proc/PID/fd`: sockets, listeners, the journal, pipes.
    pub open_files: Option<u64>,
    pub threads: Option<u64>,
    /// Round trips answered since the previous sample, their p99 (microseconds), and the
    /// run's error count so far.
    pub round_trips: u64,
    pub round_trip_p99_us: u64,
    pub errors: u64,
    /// From `/health` (None without `--admin`, or when it did not answer).
    pub health: Option<HealthSample>,
}

/// The parts of the gateway's `/health` a soak watches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthSample {
    pub status: String,
    /// Frames waiting in each event loop's queue and each processor's queue.
    pub loop_queue: Vec<u64>,
    pub processor_queue: Vec<u64>,
    pub processor_queue_bytes: Vec<u64>,
    pub journal_queue: u64,
    pub problems: Vec<String>,
}

/// How the gateway's RSS moved after the warm-up: min, max and last of the samples taken
/// from `warmup_s` on, and `(max - min) / min` in percent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drift {
    pub warmup_s: f64,
    pub samples: usize,
    pub rss_min_bytes: u64,
    pub rss_max_bytes: u64,
    pub rss_first_bytes: u64,
    pub rss_last_bytes: u64,
    pub rss_spread_percent: f64,
    pub open_files_min: Option<u64>,
    pub open_files_max: Option<u64>,
    /// Samples whose `/health` status was not "healthy" (after the warm-up).
    pub unhealthy_samples: usize,
}

/// Reads what `/proc` says of `pid`; the CPU share is computed by the caller from two samples.
pub fn proc_figures(pid: u32) -> (Option<process::Sample>, Option<u64>, Option<u64>) {
    let sample = process::sample(pid).ok();
    let count = |dir: String| std::fs::read_dir(dir).ok().map(|d| d.count() as u64);
    (
        sample,
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

/// Why a `/health` request gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no HTTP body in the answer")]
    NoBody,
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `GET /health` on the admin listener, one request per connection.
pub fn fetch_health(admin: SocketAddr) -> Result<HealthSample, HealthError> {
    let mut stream = TcpStream::connect_timeout(&admin, HEALTH_TIMEOUT)?;
    stream.set_read_timeout(Some(HEALTH_TIMEOUT))?;
    stream.set_write_timeout(Some(HEALTH_TIMEOUT))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(MAX_HEALTH_BYTES).read_to_end(&mut answer)?;
    let start = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HealthError::NoBody)?
        + 4;
    let body: serde_json::Value = serde_json::from_slice(&answer[start..])?;
    Ok(health_sample(&body))
}

/// The figures of a parsed `/health` body; missing fields read as empty or zero.
fn health_sample(body: &serde_json::Value) -> HealthSample {
    let column = |list: &str, field: &str| -> Vec<u64> {
        body[list]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i[field].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    HealthSample {
        status: body["status"].as_str().unwrap_or("?").to_owned(),
        loop_queue: column("loops", "queue_depth"),
        processor_queue: column("processors", "queue_depth"),
        processor_queue_bytes: column("processors", "queue_bytes"),
        journal_queue: body["journal"]["queue_depth"].as_u64().unwrap_or(0),
        problems: body["problems"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// RSS drift over the samples taken from `warmup_s` on (None: no sample with an RSS then).
pub fn drift(samples: &[ServerSample], warmup_s: f64) -> Option<Drift> {
    let after: Vec<&ServerSample> = samples.iter().filter(|s| s.t_s >= warmup_s).collect();
    let rss: Vec<u64> = after.iter().filter_map(|s| s.rss_bytes).collect();
    let (&first, &last) = (rss.first()?, rss.last()?);
    let (min, max) = (*rss.iter().min()?, *rss.iter().max()?);
    let files: Vec<u64> = after.iter().filter_map(|s| s.open_files).collect();
    Some(Drift {
        warmup_s,
        samples: rss.len(),
        rss_min_bytes: min,
        rss_max_bytes: max,
        rss_first_bytes: first,
        rss_last_bytes: last,
        rss_spread_percent: (max - min) as f64 * 100.0 / min.max(1) as f64,
        open_files_min: files.iter().min().copied(),
        open_files_max: files.iter().max().copied(),
        unhealthy_samples: after
            .iter()
            .filter(|s| s.health.as_ref().is_some_and(|h| h.status != "healthy"))
            .count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, rss: u64) -> ServerSample {
        ServerSample {
            t_s,
            rss_bytes: Some(rss),
            open_files: Some(rss / 1000),
            ..ServerSample::default()
        }
    }

    #[test]
    fn drift_ignores_the_warm_up() {
        let samples = [
            at(0.0, 10),
            at(10.0, 500),
            at(20.0, 1000),
            at(30.0, 1040),
            at(40.0, 1020),
        ];
        let d = drift(&samples, 20.0).unwrap();
        assert_eq!(
            (d.samples, d.rss_min_bytes, d.rss_max_bytes),
            (3, 1000, 1040)
        );
        assert_eq!((d.rss_first_bytes, d.rss_last_bytes), (1000, 1020));
        assert!((d.rss_spread_percent - 4.0).abs() < 1e-9);
        assert_eq!((d.open_files_min, d.open_files_max), (Some(1), Some(1)));
        assert!(drift(&samples, 50.0).is_none());
    }

    #[test]
    fn health_fields_are_read_and_missing_ones_are_empty() {
        let body = serde_json::json!({
            "status": "degraded",
            "loops": [{"queue_depth": 3}, {"queue_depth": 0}],
            "processors": [{"queue_depth": 7, "queue_bytes": 900}],
            "journal": {"queue_depth": 12},
            "problems": ["journal failing"]
        });
        let h = health_sample(&body);
        assert_eq!(h.status, "degraded");
        assert_eq!((h.loop_queue, h.processor_queue), (vec![3, 0], vec![7]));
        assert_eq!((h.processor_queue_bytes, h.journal_queue), (vec![900], 12));
        assert_eq!(h.problems, ["journal failing"]);
        let empty = health_sample(&serde_json::json!({}));
        assert!(empty.loop_queue.is_empty() && empty.status == "?");
    }
}
