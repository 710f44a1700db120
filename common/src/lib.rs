//! odin-common: everything ODIN exporters share. An exporter describes itself with an
//! [`ExporterSpec`] that declares each collector once ([`CollectorDef`]), and its `main.rs`
//! calls [`run`] with it; HTTP serving, health, flags, logging, `--once` and shutdown live
//! here. docs/architecture.md and docs/adding-an-exporter.md explain the whole kit.

mod cli;
pub mod collector;
mod health;
mod http;
pub mod logging;
mod runtime;
pub mod sysfs;
pub mod webconfig;

pub use cli::{parse_duration, regex_flag};
pub use collector::{
    built, Built, Collector, CollectorDef, Context, Family, Field, Kind, Labels, Mode, Part,
    SampleValue, Sink, SplitField,
};

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use log::Level;

/// What an exporter is: shown on the landing page, in `--help`, `/health` and metric names.
/// `S` is the exporter's set-up state: its parsed flags and what its collectors share, made by
/// the `setup` function handed to [`run`] and given to each enabled collector's builder.
pub struct ExporterSpec<S: 'static> {
    /// Binary name, e.g. `network-exporter`. Also the prefix of environment-variable twins of
    /// flags: `--web.listen-address` is `NETWORK_EXPORTER_WEB_LISTEN_ADDRESS`.
    pub name: &'static str,
    /// Metric prefix without the trailing `_`, e.g. `network` (`network_collector_success`).
    /// The one source of it: every [`Sink`] of this exporter applies it.
    pub prefix: &'static str,
    /// Usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// One line for `--help` and the landing page.
    pub about: &'static str,
    /// Default port of `--web.listen-address` (docs/architecture.md, "Ports").
    pub default_port: u16,
    /// Every collector this exporter can run, declared once each; each gets
    /// `--collector.<name>` / `--no-collector.<name>`.
    pub collectors: &'static [CollectorDef<S>],
}

impl<S> ExporterSpec<S> {
    /// Check what the compiler cannot: names are snake_case and collector names unique.
    /// [`run`] refuses to start an exporter whose spec fails; call it from a unit test too.
    pub fn check(&self) -> Result<(), String> {
        let snake = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !snake(self.prefix) {
            return Err(format!("metric prefix {:?} is not snake_case", self.prefix));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in self.collectors {
            if !snake(c.name) {
                return Err(format!("collector name {:?} is not snake_case", c.name));
            }
            if !seen.insert(c.name) {
                return Err(format!("collector {:?} is declared twice", c.name));
            }
        }
        Ok(())
    }
}

/// The shared flags, parsed; handed to the exporter's `setup`.
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

/// Parse the shared flags plus the exporter's own (`A`), set up logging, make the exporter's
/// state with `setup`, build every enabled collector of the spec from it, then either serve
/// until SIGTERM/SIGINT or, with `--once`, print one exposition to stdout and exit non-zero if
/// a collector failed.
///
/// Exit codes: 0 after a clean shutdown (or `--once` with every collector succeeding, or
/// `--help`/`--version`); 1 when a collector failed in `--once`, the spec is invalid, the
/// collectors could not be built, or a listen address could not be bound; 2 for bad flags
/// (including an environment twin naming a collector that does not exist) and a
/// `--web.config.file` that does not load.
pub fn run<A, S>(
    spec: &ExporterSpec<S>,
    setup: impl FnOnce(A, &Settings) -> anyhow::Result<S>,
) -> ExitCode
where
    A: clap::Args + clap::FromArgMatches,
{
    if let Err(e) = spec.check() {
        eprintln!("{}: invalid exporter spec: {e}", spec.name);
        return ExitCode::FAILURE;
    }
    let (args, shared) = match cli::parse::<A, _, _, _>(spec, std::env::args_os()) {
        Ok(v) => v,
        Err(e) => return flag_error_exit(&e),
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
    let collectors = match build_collectors(spec, setup(args, &settings), &settings) {
        Ok(c) => c,
        Err(e) => {
            fail(spec.name, &format!("cannot set up collectors: {e:#}"));
            return ExitCode::FAILURE;
        }
    };

    let tokio_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_name(spec.name)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            fail(spec.name, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if shared.demo {
        logging::event(
            Level::Warn,
            "DEMO MODE: serving demo data (fixture trees, replays or fakes), not this machine's",
            &[],
        );
    }
    let rt = Arc::new(runtime::Runtime::new(
        runtime::Identity {
            name: spec.name,
            prefix: spec.prefix,
            version: spec.version,
            about: spec.about,
            demo: shared.demo,
        },
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

/// The enabled collectors of `spec`, built from the exporter's state, in declaration order.
fn build_collectors<S>(
    spec: &ExporterSpec<S>,
    state: anyhow::Result<S>,
    settings: &Settings,
) -> anyhow::Result<Vec<(&'static str, Box<dyn Collector>)>> {
    let state = state?;
    let mut out = Vec::new();
    for def in spec.collectors.iter().filter(|d| settings.enabled(d.name)) {
        let built =
            (def.build)(&state).map_err(|e| e.context(format!("{} collector", def.name)))?;
        if let Some(c) = built {
            out.push((def.name, c));
        }
    }
    Ok(out)
}

/// Print what clap says about the command line and give the exit code for it: 0 after
/// `--help`/`--version`, 2 for bad flags. For an exporter's subcommands with their own parser.
pub fn flag_error_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Report a fatal error on the log and, plainly, on stderr.
fn fail(exporter: &str, msg: &str) {
    logging::event(Level::Error, msg, &[]);
    eprintln!("{exporter}: {msg}");
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
    let fd_limit = http::raise_fd_limit();
    // A web configuration that does not load is fatal at start; later it is re-read in the
    // background and a broken one keeps the last good.
    let web = match &shared.web_config {
        None => None,
        Some(path) => match webconfig::WebConfigWatcher::start(
            path.clone(),
            webconfig::WebConfigWatcher::DEFAULT_INTERVAL,
        ) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                fail(rt.id.name, &format!("--web.config.file: {e:#}"));
                return ExitCode::from(2);
            }
        },
    };
    let tls = web.as_ref().is_some_and(|w| w.tls_enabled());
    let listeners = match http::bind(&shared.listen).await {
        Ok(l) => l,
        Err(e) => {
            fail(rt.id.name, &format!("{e:#}"));
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<&str> = rt.slots.iter().map(|s| s.name).collect();
    logging::event(
        Level::Info,
        "starting",
        &[("version", rt.id.version), ("collectors", &names.join(","))],
    );
    for l in &listeners {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        logging::event(
            Level::Info,
            "listening",
            &[
                ("address", &addr),
                ("telemetry_path", &shared.telemetry_path),
                ("tls", if tls { "true" } else { "false" }),
            ],
        );
    }
    if let Err(e) = rt.start_background() {
        fail(
            rt.id.name,
            &format!("cannot start background collector threads: {e}"),
        );
        return ExitCode::FAILURE;
    }
    let max_connections = http::fit_connections(shared.max_connections, fd_limit);
    if max_connections < shared.max_connections {
        logging::event(
            Level::Warn,
            "--web.max-connections lowered to fit the open-file limit",
            &[
                ("wanted", &shared.max_connections.to_string()),
                ("used", &max_connections.to_string()),
            ],
        );
    }
    let cfg = http::ServerConfig {
        telemetry_path: shared.telemetry_path.clone(),
        web,
        unauthenticated_probes: shared.unauthenticated_probes,
        max_connections,
        max_requests: shared.max_requests,
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
