//! gpu-exporter: NVIDIA GPU metrics for Prometheus. Everything is in the library
//! ([`gpu_exporter::SPEC`], its flags and set-up); this only hands them to odin-common, unless
//! the exporter started this process as the watchdog of an nvidia-smi run.

fn main() -> std::process::ExitCode {
    if let Some(code) = gpu_exporter::nvidia_smi::watchdog::run_if_asked() {
        return code;
    }
    odin_common::run(&gpu_exporter::SPEC, gpu_exporter::setup)
}
