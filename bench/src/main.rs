//! ocpp-bench: simulated OCPP 1.6J charge points for load-testing ocpp-gateway, cheap enough
//! that one client host drives a very large fleet (a few mio threads, no task per connection).
//!
//! ```text
//!   coordinator (main thread)            fleet thread x --threads
//!   phases, 1 s samples, report  <---->  mio::Poll, charge points in a Vec (slot = token),
//!   (mpsc channels + mio::Waker)         one timer entry each, paced connect queue
//! ```
//!
//! - [`cli`]: flags -> validated [`cli::RunConfig`]. [`run`]: the coordinator.
//! - [`fleet`]: one thread's event loop; [`charge_point`]: one charge point's state;
//!   [`scenario`]: what a booted charge point sends and when; [`messages`]: its CALLs;
//!   [`answers`]: its answers to the gateway's CALLs.
//! - [`dial`], [`upgrade`], [`pacer`], [`deadlines`]: connecting, the WebSocket upgrade, pacing,
//!   timers (jitter comes from the gateway crate's `rng`, framing from the `wire` crate).
//! - [`stats`], [`process`], [`sampler`], [`report`], [`plot`]: figures and their output.
//! - [`abuse`]: the hostile clients of `scripts/abuse.sh`.
//!
//! Exit codes: 0 the run passed; 1 it ran and failed (not all booted, mismatched replies,
//! timeouts); 2 it could not run (bad flags, open-files limit, unreadable --server-pid, I/O).
//! This is the only file that decides them, and the only one using `anyhow`.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

mod abuse;
mod answers;
mod charge_point;
mod cli;
mod deadlines;
mod dial;
mod fleet;
mod messages;
mod pacer;
mod plot;
mod process;
mod report;
mod run;
mod sampler;
mod scenario;
mod security;
mod stats;
mod upgrade;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Plot(args)) => plot(&args),
        Some(Command::Credentials(args)) => {
            security::write_credentials(&args.out, &args.seed, args.fleet.identities())
                .map(|n| {
                    println!("{n} charge points written to {}", args.out.display());
                    true
                })
                .map_err(Into::into)
        }
        Some(Command::Certs(args)) => {
            security::write_certificates(&args.out, args.fleet.identities())
                .map(|n| {
                    println!(
                        "CA, server certificate and {n} client certificates written to {}",
                        args.out.display()
                    );
                    true
                })
                .map_err(Into::into)
        }
        Some(Command::Abuse(args)) => abuse::run(&args)
            .map(|line| {
                println!("{line}");
                true
            })
            .map_err(Into::into),
        Some(Command::Run(args)) => run(*args),
        None => run(cli.run),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ocpp-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a load test: Ok(passed).
fn run(args: RunArgs) -> anyhow::Result<bool> {
    let config = args.validate()?;
    run::check_open_files(config.connections, config.threads)?;
    let json = config.json.clone();
    let report = run::run(config)?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", report.human());
    Ok(report.outcome.passed)
}

fn plot(args: &cli::PlotArgs) -> anyhow::Result<bool> {
    for path in plot::plot(args)? {
        println!("{}", path.display());
    }
    Ok(true)
}
