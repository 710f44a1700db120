//! network-exporter: host network health (interfaces, TCP, UDP, sockets, DNS) for Prometheus.

mod collectors;

use std::process::ExitCode;

use odin_common::{CollectorSpec, ExporterSpec};

#[derive(Debug, clap::Args)]
struct Args {}

const SPEC: ExporterSpec = ExporterSpec {
    name: "network-exporter",
    prefix: "network",
    version: env!("CARGO_PKG_VERSION"),
    about: "Host network health: interfaces, TCP, UDP, sockets and DNS.",
    default_port: 19102,
    collectors: &[] as &[CollectorSpec],
};

fn main() -> ExitCode {
    odin_common::run::<Args>(&SPEC, |_args, _settings| Ok(Vec::new()))
}
