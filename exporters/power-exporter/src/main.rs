//! The power-exporter binary; everything it does is in the library (`power_exporter`),
//! unless the exporter started this process as the watchdog of an nvidia-smi run (the GPU
//! collector's, through gpu-exporter's library).

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = gpu_exporter::nvidia_smi::watchdog::run_if_asked() {
        return code;
    }
    odin_common::run(&power_exporter::SPEC, power_exporter::setup)
}
