//! gpu-exporter: NVIDIA GPU metrics for Prometheus. Everything is in the library
//! ([`gpu_exporter::SPEC`], its flags and set-up); this only hands them to odin-common.

fn main() -> std::process::ExitCode {
    odin_common::run(&gpu_exporter::SPEC, gpu_exporter::setup)
}
