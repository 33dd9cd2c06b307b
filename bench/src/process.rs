//! CPU time, memory and context switches of a process: the gateway's (`--server-pid`) from
//! `/proc/PID/status` (VmRSS), `/proc/PID/stat` (utime + stime) and every thread's
//! `/proc/PID/task/*/status` (voluntary + involuntary context switches), the bench's own from
//! `getrusage(RUSAGE_SELF)` and `/proc/self/status`. Linux only; elsewhere these figures are
//! absent, not wrong.

use std::path::PathBuf;

/// Why a process could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The process is gone, or /proc is not mounted: check `--server-pid`.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {field} in it")]
    Format { path: PathBuf, field: &'static str },
    #[error("{0}")]
    Sys(#[from] nix::Error),
}

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub rss_bytes: u64,
    /// User + system CPU seconds since it started.
    pub cpu_seconds: f64,
    /// Context switches of all its live threads so far (voluntary and involuntary).
    pub context_switches: u64,
}

/// Reads the gateway's (or any process's) RSS, CPU time and context switches.
pub fn sample(pid: u32) -> Result<Sample, ProcessError> {
    Ok(Sample {
        rss_bytes: rss_bytes(&format!("/proc/{pid}/status"))?,
        cpu_seconds: cpu_seconds(pid)?,
        context_switches: context_switches(pid)?,
    })
}

/// The sum of `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` over the threads in
/// `/proc/PID/task` (threads that ended are not counted: the gateway's do not end while it runs).
fn context_switches(pid: u32) -> Result<u64, ProcessError> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|source| ProcessError::Read {
        path: dir.clone().into(),
        source,
    })?;
    let mut total = 0;
    for entry in entries.flatten() {
        // A thread may end between the listing and the read: skip it.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        total += switches(&status);
    }
    Ok(total)
}

/// Both context-switch counts of one `status` file.
fn switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// The bench itself: RSS now, CPU time so far.
pub fn sample_self() -> Result<Sample, ProcessError> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(Sample {
        rss_bytes: rss_bytes("/proc/self/status")?,
        cpu_seconds: seconds(usage.user_time()) + seconds(usage.system_time()),
        context_switches: context_switches(std::process::id()).unwrap_or(0),
    })
}

/// The bench's peak RSS so far (`VmHWM`). Not `ru_maxrss`: Linux carries that over `execve`,
/// so it would report the peak of whatever process started us.
pub fn peak_rss_self() -> Result<u64, ProcessError> {
    let path = "/proc/self/status";
    status_kib(&read(path)?, "VmHWM:").ok_or_else(|| ProcessError::Format {
        path: path.into(),
        field: "VmHWM",
    })
}

fn read(path: &str) -> Result<String, ProcessError> {
    std::fs::read_to_string(path).map_err(|source| ProcessError::Read {
        path: path.into(),
        source,
    })
}

fn rss_bytes(status_path: &str) -> Result<u64, ProcessError> {
    status_kib(&read(status_path)?, "VmRSS:").ok_or_else(|| ProcessError::Format {
        path: status_path.into(),
        field: "VmRSS",
    })
}

/// `VmRSS:     1234 kB` -> bytes, for the field named `prefix`.
fn status_kib(status: &str, prefix: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(prefix))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_seconds(pid: u32) -> Result<f64, ProcessError> {
    let path = format!("/proc/{pid}/stat");
    let ticks = parse_stat_ticks(&read(&path)?).ok_or_else(|| ProcessError::Format {
        path: path.into(),
        field: "utime/stime",
    })?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Ok(ticks as f64 / per_second as f64)
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`, in clock ticks. The command name
/// (field 2) is in parentheses and may hold spaces or parentheses, so fields are counted from
/// the last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tx\nVmPeak:\t  99 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(status_kib(status, "VmPeak:"), Some(99 * 1024));
        assert_eq!(status_kib("Name: x\n", "VmRSS:"), None);
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 6 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
        let task = "Name:\tx\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t 5\n";
        assert_eq!(switches(task), 12);
    }

    #[test]
    fn measures_itself() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0);
        assert!(me.context_switches > 0);
        let own = sample_self().unwrap();
        assert!(own.rss_bytes > 0 && own.cpu_seconds >= 0.0);
        assert!(peak_rss_self().unwrap() >= 1024);
    }
}
