//! odin-common: everything ODIN exporters share. An exporter's `main.rs` describes itself with
//! an [`ExporterSpec`], builds its collectors, and calls [`run`]; HTTP serving, health, flags,
//! logging, `--once` and shutdown live here.

mod cli;
pub mod collector;
mod health;
mod http;
pub mod logging;
mod runtime;

pub use cli::parse_duration;
pub use collector::{Collector, Context, Family, Mode, Sink};

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use log::Level;

/// What an exporter is: shown on the landing page, in `--help`, `/health` and metric names.
#[derive(Debug, Clone, Copy)]
pub struct ExporterSpec {
    /// Binary name, e.g. `network-exporter`. Also the prefix of environment-variable twins of
    /// flags: `--web.listen-address` is `NETWORK_EXPORTER_WEB_LISTEN_ADDRESS`.
    pub name: &'static str,
    /// Single-word metric prefix, e.g. `network` (`network_collector_success`).
    pub prefix: &'static str,
    /// Usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// One line for `--help` and the landing page.
    pub about: &'static str,
    /// Default port of `--web.listen-address` (DESIGN.md, "Ports").
    pub default_port: u16,
    /// Every collector this exporter can run; each gets `--collector.<name>` /
    /// `--no-collector.<name>`.
    pub collectors: &'static [CollectorSpec],
}

/// A collector as the command line knows it.
#[derive(Debug, Clone, Copy)]
pub struct CollectorSpec {
    pub name: &'static str,
    pub default_enabled: bool,
    pub help: &'static str,
}

/// The shared flags, parsed; handed to the exporter's collector builder.
#[derive(Debug, Clone)]
pub struct Settings {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    /// Names of the collectors enabled after `--collector.*` / `--no-collector.*`.
    pub enabled_collectors: Vec<&'static str>,
}

impl Settings {
    /// Whether the collector named `name` is switched on.
    pub fn enabled(&self, name: &str) -> bool {
        self.enabled_collectors.contains(&name)
    }
}

/// Parse the shared flags plus the exporter's own (`A`), set up logging, build the collectors
/// with `build`, then either serve until SIGTERM/SIGINT or, with `--once`, print one exposition
/// to stdout and exit non-zero if a collector failed.
///
/// Exit codes: 0 after a clean shutdown (or `--once` with every collector succeeding, or
/// `--help`/`--version`); 1 when a collector failed in `--once`, the collectors could not be
/// built, or a listen address could not be bound; 2 for bad flags.
pub fn run<A>(
    spec: &ExporterSpec,
    build: impl FnOnce(&A, &Settings) -> anyhow::Result<Vec<Box<dyn Collector>>>,
) -> ExitCode
where
    A: clap::Args + clap::FromArgMatches,
{
    let (args, shared) = match cli::parse::<A, _, _>(spec, std::env::args_os()) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let target = if shared.once {
        logging::Target::Stderr
    } else {
        logging::Target::Stdout
    };
    logging::init(shared.log_format, shared.log_level, target);

    let settings = Settings {
        procfs: shared.procfs.clone(),
        sysfs: shared.sysfs.clone(),
        enabled_collectors: shared.enabled_collectors.clone(),
    };
    let collectors = match build(&args, &settings) {
        Ok(c) => c,
        Err(e) => {
            fail(spec, &format!("cannot set up collectors: {e:#}"));
            return ExitCode::FAILURE;
        }
    };
    // A collector the spec knows but the flags switched off is dropped even if `build` returned
    // it; collectors the spec does not list are always kept.
    let collectors: Vec<Box<dyn Collector>> = collectors
        .into_iter()
        .filter(|c| {
            let known = spec.collectors.iter().any(|s| s.name == c.name());
            !known || settings.enabled(c.name())
        })
        .collect();

    let tokio_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_name(spec.name)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            fail(spec, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let rt = Arc::new(runtime::Runtime::new(
        spec,
        collectors,
        shared.procfs.clone(),
        shared.sysfs.clone(),
        shared.collect_timeout,
    ));
    let code = if shared.once {
        tokio_rt.block_on(once(&rt))
    } else {
        tokio_rt.block_on(serve_until_signal(Arc::clone(&rt), &shared))
    };
    // Don't wait for blocking threads stuck in a collector.
    tokio_rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Report a fatal error on the log and, plainly, on stderr.
fn fail(spec: &ExporterSpec, msg: &str) {
    logging::event(Level::Error, msg, &[]);
    eprintln!("{}: {msg}", spec.name);
}

async fn once(rt: &runtime::Runtime) -> ExitCode {
    rt.run_background_once().await;
    let scrape = rt.scrape().await;
    {
        let mut out = std::io::stdout().lock();
        if out
            .write_all(&scrape.body)
            .and_then(|_| out.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    if scrape.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let list = scrape.failed.join(",");
        logging::event(Level::Error, "collectors failed", &[("collectors", &list)]);
        ExitCode::FAILURE
    }
}

async fn serve_until_signal(rt: Arc<runtime::Runtime>, shared: &cli::SharedArgs) -> ExitCode {
    let listeners = match http::bind(&shared.listen).await {
        Ok(l) => l,
        Err(e) => {
            fail(&spec_of(&rt), &format!("{e:#}"));
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<&str> = rt.slots.iter().map(|s| s.name).collect();
    logging::event(
        Level::Info,
        "starting",
        &[("version", rt.version), ("collectors", &names.join(","))],
    );
    for l in &listeners {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        logging::event(
            Level::Info,
            "listening",
            &[
                ("address", &addr),
                ("telemetry_path", &shared.telemetry_path),
            ],
        );
    }
    if let Err(e) = rt.start_background() {
        fail(
            &spec_of(&rt),
            &format!("cannot start background collector threads: {e}"),
        );
        return ExitCode::FAILURE;
    }
    let cfg = http::ServerConfig {
        telemetry_path: shared.telemetry_path.clone(),
        max_connections: shared.max_connections,
        read_header_timeout: shared.read_header_timeout,
        max_connection_age: shared.max_connection_age,
    };
    http::serve(Arc::clone(&rt), listeners, cfg, async {
        let signal = shutdown_signal().await;
        logging::event(Level::Info, "shutting down", &[("signal", signal)]);
    })
    .await;
    rt.stop_background(Duration::from_secs(5));
    logging::event(Level::Info, "stopped", &[]);
    ExitCode::SUCCESS
}

fn spec_of(rt: &runtime::Runtime) -> ExporterSpec {
    ExporterSpec {
        name: rt.name,
        prefix: rt.prefix,
        version: rt.version,
        about: rt.about,
        default_port: 0,
        collectors: &[],
    }
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
