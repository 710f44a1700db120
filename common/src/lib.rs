//! odin-common: everything ODIN exporters share. An exporter's `main.rs` describes itself with
//! an [`ExporterSpec`], builds its collectors, and calls [`run`]; HTTP serving, health, flags,
//! logging, `--once` and shutdown live here.

pub mod collector;

pub use collector::{Collector, Context, Family, Mode, Sink};

use std::path::PathBuf;
use std::process::ExitCode;

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
pub fn run<A>(
    spec: &ExporterSpec,
    build: impl FnOnce(&A, &Settings) -> anyhow::Result<Vec<Box<dyn Collector>>>,
) -> ExitCode
where
    A: clap::Args + clap::FromArgMatches,
{
    let _ = (spec, build);
    todo!("serving runtime: being written")
}
