//! The `ocpp-gateway` binary: arguments, configuration, logging, the open-files limit, signals.
//! The only place with exit codes: 0 after a clean shutdown, 1 when the gateway cannot start or
//! did not stop cleanly, 2 for bad arguments or configuration.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use log::{error, info, warn};
use ocpp_gateway::config::ADMIN_TOKEN_ENV;
use ocpp_gateway::trace::TRACE_TARGET;
use ocpp_gateway::{Config, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "\
ocpp-gateway: OCPP 1.6J gateway for extreme connection counts

Usage: ocpp-gateway [--config PATH]
       ocpp-gateway credential IDENTITY [--hex] < key

The second form reads a charge point's AuthorizationKey from standard input (one line; with
--hex, hex digits for the key's bytes) and prints its line for the security.credentials file.

Options:
  -c, --config PATH  configuration file (default: config.toml; when that default file
                     does not exist the embedded defaults are used)
  -h, --help         print this help
  -V, --version      print the version

Logging: RUST_LOG (default \"info\"), e.g. RUST_LOG=ocpp_gateway=debug.
";

const DEFAULT_CONFIG: &str = "config.toml";

/// jemalloc instead of the system allocator: with its background thread it hands pages freed
/// after a burst (large messages, a reconnect storm) back to the OS within seconds, where
/// glibc keeps them in its per-thread arenas. Measured in the README.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

enum Command {
    Run { config: Option<PathBuf> },
    Credential { identity: String, hex: bool },
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut args = args.by_ref().peekable();
    if args.peek().map(String::as_str) == Some("credential") {
        args.next();
        let identity = args.next().ok_or("credential needs an identity")?;
        let hex = match args.next().as_deref() {
            None => false,
            Some("--hex") => true,
            Some(other) => return Err(format!("unknown argument {other:?}")),
        };
        return Ok(Command::Credential { identity, hex });
    }
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                let path = args.next().ok_or_else(|| format!("{arg} needs a path"))?;
                config = Some(PathBuf::from(path));
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(Command::Run { config })
}

fn main() -> ExitCode {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // Frame traces are turned on per charge point through the operator API: they must show
    // whatever RUST_LOG says, unless RUST_LOG names their target itself.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains(TRACE_TARGET)) {
        logger.filter_module(TRACE_TARGET, log::LevelFilter::Info);
    }
    logger.init();
    let config_path = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ocpp-gateway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run { config }) => config,
        Ok(Command::Credential { identity, hex }) => return credential(&identity, hex),
        Err(message) => {
            eprintln!("ocpp-gateway: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let token = std::env::var(ADMIN_TOKEN_ENV).ok();
    let config = match load_config(config_path).and_then(|c| c.with_admin_token(token)) {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One background thread of the allocator returns freed pages to the OS (jemalloc's decay,
/// ten seconds); without it they are returned only when a thread allocates again.
fn start_allocator_thread() {
    let started = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true));
    if let Err(e) = started {
        warn!("no allocator background thread, memory freed after a burst returns later: {e}");
    }
}

/// Prints the credentials-file line for `identity` and the key read from standard input.
fn credential(identity: &str, hex: bool) -> ExitCode {
    use ocpp_gateway::security::credentials::{Credential, MAX_KEY_LEN, MIN_KEY_LEN, decode_hex};
    if !ocpp_gateway::types::is_valid_identity(identity) {
        eprintln!("ocpp-gateway: {identity:?} is not a charge point identity");
        return ExitCode::from(2);
    }
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("ocpp-gateway: cannot read the key from standard input");
        return ExitCode::from(2);
    }
    let text = line.trim_end_matches(['\r', '\n']);
    let key = if hex {
        match decode_hex(text.as_bytes()) {
            Some(key) => key,
            None => {
                eprintln!("ocpp-gateway: the key is not hex digits");
                return ExitCode::from(2);
            }
        }
    } else {
        text.as_bytes().to_vec()
    };
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        eprintln!("ocpp-gateway: the key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes");
        return ExitCode::from(2);
    }
    match Credential::new(&key) {
        Ok(credential) => {
            println!("{}", credential.line(identity));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ocpp-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ocpp_gateway::config::ConfigError> {
    match path {
        Some(path) => Config::load(&path),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(std::path::Path::new(DEFAULT_CONFIG))
        }
        None => {
            info!("no {DEFAULT_CONFIG} here: running on the embedded defaults");
            Ok(Config::default())
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    start_allocator_thread();
    raise_open_files_limit(config.server.max_connections);
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    let server = Server::start(config).context("cannot start")?;
    let shutdown = server.shutdown_handle();
    let reload = server.reload_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    info!("SIGHUP: reloading certificates, CRLs, ticket keys and credentials");
                    reload.reload();
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    info!("signal {signal}: draining connections (again to exit at once)");
                    shutdown.shutdown();
                } else {
                    warn!("signal {signal} again: exiting without draining");
                    std::process::exit(1);
                }
            }
        })
        .context("cannot start the signal thread")?;
    server.join().context("unclean shutdown")?;
    info!("stopped");
    Ok(())
}

/// Raises the soft open-files limit to the hard one, and warns when `max_connections` cannot fit.
fn raise_open_files_limit(max_connections: usize) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot raise the open-files limit: {e}");
            return;
        }
    };
    // Listeners, pollers, wakers, log and config files: a small fixed overhead.
    let needed = max_connections as u64 + 64;
    if needed > limit {
        warn!(
            "server.max_connections = {max_connections} but the open-files limit is {limit}: \
             at most about {} charge points fit (raise the hard limit: LimitNOFILE= in systemd, nofile in limits.conf)",
            limit.saturating_sub(64)
        );
    } else {
        info!("open-files limit {limit}");
    }
}
