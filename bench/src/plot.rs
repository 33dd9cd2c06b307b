//! `ocpp-bench plot`: SVG charts and a markdown scaling table from `--json` reports.
//!
//! - `<report>-ramp.svg` for each report: connections (open, booted) and RSS (gateway, bench)
//!   over time, one point per second.
//! - `latency.svg` / `boot-latency.svg`: round-trip and handshake+boot latency percentiles, one
//!   line per report.
//! - `bytes-per-connection.svg`: the gateway's (and the bench's) RSS growth per connection
//!   against the number of connections, over all reports.
//! - `scaling.md`: one table row per report, sorted by connection count.
//! - `<report>-soak.svg` for each report with gateway samples (`--sample-every`): RSS and open
//!   files, CPU and round-trip p99, queue depths, one point per sample.
//!
//! Only plotters' SVG backend is used: no font files, no bitmaps.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::cli::PlotArgs;
use crate::report::{Report, SeriesPoint};
use crate::sampler::ServerSample;
use crate::stats::Summary;

const SIZE: (u32, u32) = (960, 540);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const MIB: f64 = 1_048_576.0;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ocpp-bench report: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// A report and the name its charts use (the file stem).
struct Named {
    name: String,
    report: Report,
}

/// Writes every chart and the table; returns the files written.
pub fn plot(args: &PlotArgs) -> Result<Vec<PathBuf>, PlotError> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
            path: path.clone(),
            source,
        })?;
        let report = serde_json::from_str(&text).map_err(|source| PlotError::Parse {
            path: path.clone(),
            source,
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
        reports.push(Named { name, report });
    }
    reports.sort_by_key(|r| r.report.config.connections);
    std::fs::create_dir_all(&args.out).map_err(|source| PlotError::Write {
        path: args.out.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for named in &reports {
        let path = args.out.join(format!("{}-ramp.svg", named.name));
        draw(&path, |root| ramp(root, named))?;
        written.push(path);
    }
    for named in reports.iter().filter(|n| !n.report.samples.is_empty()) {
        let path = args.out.join(format!("{}-soak.svg", named.name));
        draw_sized(&path, SOAK_SIZE, |root| soak(root, named))?;
        written.push(path);
    }
    let path = args.out.join("latency.svg");
    draw(&path, |root| {
        percentiles(root, &reports, "round-trip latency", |r| {
            &r.latency_us.round_trip
        })
    })?;
    written.push(path);
    let path = args.out.join("boot-latency.svg");
    draw(&path, |root| {
        percentiles(
            root,
            &reports,
            "handshake + BootNotification latency",
            |r| &r.latency_us.handshake_boot,
        )
    })?;
    written.push(path);
    let path = args.out.join("bytes-per-connection.svg");
    draw(&path, |root| bytes_per_connection(root, &reports))?;
    written.push(path);
    let path = args.out.join("scaling.md");
    std::fs::write(&path, scaling_table(&reports)).map_err(|source| PlotError::Write {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    Ok(written)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A line of the ramp chart: its label, colour and value at each second.
type Line<T> = (&'static str, RGBColor, fn(&SeriesPoint) -> T);
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

fn draw(path: &Path, f: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<(), PlotError> {
    draw_sized(path, SIZE, f)
}

fn draw_sized(
    path: &Path,
    size: (u32, u32),
    f: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    let result = root
        .fill(&WHITE)
        .map_err(|e| e.to_string())
        .and_then(|()| f(&root).map_err(|e| e.to_string()))
        .and_then(|()| root.present().map_err(|e| e.to_string()));
    result.map_err(|message| PlotError::Draw {
        path: path.to_owned(),
        message,
    })
}

fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

fn ramp(root: &Area<'_>, named: &Named) -> DrawResult {
    let r = &named.report;
    let series = &r.series;
    let t_max = series.last().map_or(1.0, |p| p.t_s).max(1.0);
    let conn_max = f64::from(r.config.connections).max(1.0) * 1.05;
    let rss_max = series
        .iter()
        .flat_map(|p| [p.server_rss_bytes, p.bench_rss_bytes])
        .flatten()
        .max()
        .map_or(1.0, |b| b as f64 / MIB * 1.1)
        .max(1.0);
    let caption = format!(
        "{}: {} charge points, {} ({})",
        named.name,
        r.config.connections,
        r.config.scenario,
        if r.outcome.passed { "passed" } else { "failed" }
    );
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, 0f64..conn_max)?
        .set_secondary_coord(0f64..t_max, 0f64..rss_max);
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("connections")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("RSS (MiB)")
        .draw()?;
    let lines: [Line<f64>; 2] = [
        ("open", COLORS[0], |p| p.open as f64),
        ("booted", COLORS[2], |p| p.booted as f64),
    ];
    for (label, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.t_s, value(p))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(legend_line(color));
    }
    let rss: [Line<Option<u64>>; 2] = [
        ("gateway RSS", COLORS[1], |p| p.server_rss_bytes),
        ("bench RSS", COLORS[3], |p| p.bench_rss_bytes),
    ];
    for (label, color, value) in rss {
        let points: Vec<(f64, f64)> = series
            .iter()
            .filter_map(|p| value(p).map(|b| (p.t_s, b as f64 / MIB)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_secondary_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(legend_line(color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

const SOAK_SIZE: (u32, u32) = (960, 960);
/// A line of a soak panel: its label, colour and value in one sample (None: not measured).
type SoakLine = (&'static str, RGBColor, fn(&ServerSample) -> Option<f64>);

/// Three panels over the run: memory and descriptors, CPU and latency, queue depths.
fn soak(root: &Area<'_>, named: &Named) -> DrawResult {
    let r = &named.report;
    let panels = root.split_evenly((3, 1));
    let caption = format!(
        "{}: {} charge points, {} ({}), gateway every {:.0} s",
        named.name,
        r.config.connections,
        r.config.scenario,
        if r.outcome.passed { "passed" } else { "failed" },
        r.samples
            .get(1)
            .zip(r.samples.first())
            .map_or(0.0, |(b, a)| b.t_s - a.t_s)
    );
    let memory: [SoakLine; 2] = [
        ("gateway RSS (MiB)", COLORS[1], |s| {
            s.rss_bytes.map(|b| b as f64 / MIB)
        }),
        ("open files / 100", COLORS[0], |s| {
            s.open_files.map(|n| n as f64 / 100.0)
        }),
    ];
    soak_panel(
        &panels[0],
        Some(caption),
        "MiB, files/100",
        &r.samples,
        &memory,
    )?;
    let cpu: [SoakLine; 2] = [
        ("gateway CPU (cores x 100)", COLORS[2], |s| {
            s.cpu_cores.map(|c| c * 100.0)
        }),
        ("round-trip p99 (ms)", COLORS[3], |s| {
            Some(s.round_trip_p99_us as f64 / 1000.0)
        }),
    ];
    soak_panel(&panels[1], None, "cores x 100, ms", &r.samples, &cpu)?;
    let queues: [SoakLine; 3] = [
        ("loop queues", COLORS[4], |s| {
            s.health
                .as_ref()
                .map(|h| h.loop_queue.iter().sum::<u64>() as f64)
        }),
        ("processor queues", COLORS[5], |s| {
            s.health
                .as_ref()
                .map(|h| h.processor_queue.iter().sum::<u64>() as f64)
        }),
        ("journal queue", COLORS[6], |s| {
            s.health.as_ref().map(|h| h.journal_queue as f64)
        }),
    ];
    soak_panel(&panels[2], None, "frames waiting", &r.samples, &queues)
}

fn soak_panel(
    area: &Area<'_>,
    caption: Option<String>,
    unit: &str,
    samples: &[ServerSample],
    lines: &[SoakLine],
) -> DrawResult {
    let t_max = samples.last().map_or(1.0, |s| s.t_s).max(1.0);
    let y_max = samples
        .iter()
        .flat_map(|s| lines.iter().filter_map(|(_, _, value)| value(s)))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, ("sans-serif", 18));
    }
    let mut chart = builder
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(unit)
        .draw()?;
    for &(label, color, value) in lines {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t_s, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(legend_line(color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn ladder(s: &Summary) -> [u64; 5] {
    [s.p50, s.p90, s.p99, s.p999, s.max]
}

fn percentiles(
    root: &Area<'_>,
    reports: &[Named],
    what: &str,
    pick: fn(&Report) -> &Summary,
) -> DrawResult {
    let measured = || {
        reports
            .iter()
            .map(|n| pick(&n.report))
            .filter(|s| s.count > 0)
    };
    let max_ms = measured()
        .map(|s| s.max as f64 / 1000.0)
        .fold(1.0f64, f64::max)
        * 2.0;
    let min_ms = measured()
        .map(|s| s.p50 as f64 / 1000.0)
        .fold(max_ms / 10.0, f64::min)
        .max(0.001)
        / 2.0;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{what} (ms, log scale)"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..4.2, (min_ms..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            PERCENTILES
                .get(x.round() as usize)
                .filter(|_| (x - x.round()).abs() < 0.01)
                .map_or_else(String::new, |p| (*p).to_owned())
        })
        .y_desc("milliseconds")
        .draw()?;
    for (i, named) in reports.iter().enumerate() {
        let summary = pick(&named.report);
        if summary.count == 0 {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = ladder(summary)
            .iter()
            .enumerate()
            .map(|(x, us)| (x as f64, (*us as f64 / 1000.0).max(min_ms)))
            .collect();
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!(
                "{} ({} x {})",
                named.name, named.report.config.connections, named.report.config.scenario
            ))
            .legend(legend_line(color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn bytes_per_connection(root: &Area<'_>, reports: &[Named]) -> DrawResult {
    let gateway: Vec<(f64, f64)> = reports
        .iter()
        .filter_map(|n| {
            let r = &n.report;
            let bytes = r.server.as_ref()?.bytes_per_connection?;
            Some((r.connect.booted_at_end as f64, bytes))
        })
        .collect();
    let bench: Vec<(f64, f64)> = reports
        .iter()
        .filter_map(|n| {
            let r = &n.report;
            Some((r.connect.open_at_end as f64, r.bench.bytes_per_connection?))
        })
        .collect();
    let x_max = gateway
        .iter()
        .chain(&bench)
        .map(|p| p.0)
        .fold(1.0f64, f64::max)
        * 1.1;
    let y_max = gateway
        .iter()
        .chain(&bench)
        .map(|p| p.1)
        .fold(1024.0f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "userspace memory per connection (RSS growth / N)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("bytes per connection")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (label, points, color) in [
        ("gateway", gateway, COLORS[1]),
        ("ocpp-bench", bench, COLORS[3]),
    ] {
        if points.is_empty() {
            continue;
        }
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(legend_line(color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn scaling_table(reports: &[Named]) -> String {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let opt =
        |v: Option<f64>, digits: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"));
    let mut s = String::from(
        "| connections | scenario | all booted (s) | connect+boot/s | boot p99 (ms) | round trips/s \
         | round trip p50 / p99 / p99.9 (ms) | gateway bytes/conn | marginal bytes/conn \
         | gateway cores (steady) | bench cores (steady) | bench peak RSS (MiB) | errors | result |\n\
         |---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    // RSS growth / N carries the fixed costs; the slope between sizes is the cost of one more.
    let mut previous: Option<(f64, f64)> = None;
    for Named { report: r, .. } in reports {
        let growth = r.server.as_ref().and_then(|s| {
            s.rss_all_booted_bytes
                .map(|booted| booted as f64 - s.rss_before_bytes as f64)
        });
        let n = r.config.connections as f64;
        let marginal = match (previous, growth) {
            (Some((n0, g0)), Some(g)) if n > n0 => Some((g - g0) / (n - n0)),
            _ => None,
        };
        previous = growth.map(|g| (n, g));
        let rt = &r.latency_us.round_trip;
        let server = r.server.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            r.config.connections,
            r.config.scenario,
            opt(r.connect.time_to_all_booted_s, 2),
            opt(r.connect.connect_boot_rate_per_s, 0),
            ms(r.latency_us.handshake_boot.p99),
            r.throughput.round_trips_per_s,
            if rt.count > 0 {
                format!("{} / {} / {}", ms(rt.p50), ms(rt.p99), ms(rt.p999))
            } else {
                "-".into()
            },
            opt(server.and_then(|s| s.bytes_per_connection), 0),
            opt(marginal, 0),
            opt(server.and_then(|s| s.cores_steady), 3),
            opt(r.bench.cores_steady, 3),
            r.bench.peak_rss_bytes as f64 / MIB,
            r.errors.total,
            if r.outcome.passed { "passed" } else { "FAILED" },
        );
    }
    s
}
