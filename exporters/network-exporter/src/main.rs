//! The network-exporter binary; everything it does is in the library (`network_exporter`).

use std::process::ExitCode;

fn main() -> ExitCode {
    odin_common::run(&network_exporter::SPEC, network_exporter::setup)
}
