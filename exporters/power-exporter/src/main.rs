//! The power-exporter binary; everything it does is in the library (`power_exporter`).

use std::process::ExitCode;

fn main() -> ExitCode {
    odin_common::run(&power_exporter::SPEC, power_exporter::setup)
}
