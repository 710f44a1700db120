//! claude-process-exporter: Claude Code processes on the host and what they cost the machine
//! (CPU, memory, threads, files, connections, ports, lifetime, restarts, orphans), for
//! Prometheus. Nothing it exports, logs or keeps carries a command line or an environment
//! value.
//!
//! [`detect`] holds the detection rules, [`procfs`] the `/proc` readers, [`scan`] one scan
//! of the process table; the collectors in [`collectors`] write what a scan found.

pub mod collectors;
pub mod detect;
pub mod procfs;
pub mod scan;

use std::sync::Arc;
use std::time::Duration;

use odin_common::{built, CollectorDef, ExporterSpec, Settings};
use regex::Regex;

/// The flags of claude-process-exporter besides the shared ones of odin-common.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also count as Claude Code any process whose name (comm) matches this regex.
    #[arg(long = "match.comm", value_name = "REGEX")]
    pub match_comm: Option<String>,
    /// Also count as Claude Code any process whose executable path matches this regex.
    #[arg(long = "match.exe", value_name = "REGEX")]
    pub match_exe: Option<String>,
    /// An interactive instance started in the working directory of one that exited less than
    /// this long before counts as a restart.
    #[arg(long = "restart.window", default_value = "60s", value_parser = odin_common::parse_duration)]
    pub restart_window: Duration,
    /// Instances with series of their own (oldest first); the rest are counted host-wide only.
    #[arg(long = "max-instances", default_value_t = 64)]
    pub max_instances: usize,
}

/// What the collectors share: one scanner, so one scrape scans the process table once.
pub struct Setup {
    pub scanner: Arc<scan::Scanner>,
}

fn regex_flag(flag: &str, value: &Option<String>) -> anyhow::Result<Option<Regex>> {
    value
        .as_deref()
        .map(|v| odin_common::regex_flag(flag, v))
        .transpose()
}

/// Turn the flags into the [`Setup`]; fails on an invalid regex, naming its flag.
pub fn setup(args: Args, settings: &Settings) -> anyhow::Result<Setup> {
    let cfg = scan::Config {
        extra: detect::Extra {
            comm: regex_flag("match.comm", &args.match_comm)?,
            exe: regex_flag("match.exe", &args.match_exe)?,
        },
        restart_window: args.restart_window,
        max_instances: args.max_instances,
    };
    Ok(Setup {
        scanner: Arc::new(scan::Scanner::new(cfg, settings.procfs.clone())),
    })
}

/// claude-process-exporter as odin-common runs it.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "claude-process-exporter",
    prefix: "claude",
    version: env!("CARGO_PKG_VERSION"),
    about: "Claude Code processes: CPU, memory, threads, files, connections, ports, lifetime, restarts and orphans.",
    default_port: 19103,
    collectors: &[
        CollectorDef::on(
            "processes",
            "Claude Code instances, their process trees and orphans from /proc",
            |s| built(collectors::processes::Processes::new(s.scanner.clone())),
        ),
        CollectorDef::off(
            "pss",
            "proportional set size of instances and their trees from /proc/<pid>/smaps_rollup",
            |s| built(collectors::pss::Pss::new(s.scanner.clone())),
        ),
    ],
};

#[cfg(test)]
#[test]
fn spec_is_valid() {
    SPEC.check().unwrap();
}
