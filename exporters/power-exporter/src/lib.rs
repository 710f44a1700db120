//! power-exporter: CPU (RAPL), battery and AC, thermal zones and cooling devices, and hwmon
//! sensors of the host, for Prometheus. Every source honours `--path.sysfs`; a class the host
//! does not have is absent, not failing.

pub mod collectors;
#[cfg(test)]
mod test_support;

use std::time::Duration;

use collectors::{battery, gpu, hwmon, rapl, thermal};
use gpu_exporter::backend_select::Choice;
use gpu_exporter::nvidia_smi::runner::split_command;
use gpu_exporter::power::PowerConfig;
use odin_common::{built, CollectorDef, ExporterSpec, Settings};
use regex::Regex;

/// The flags of power-exporter besides the shared ones of odin-common.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Length of the window RAPL power is averaged over (the background sampler reads the
    /// energy counters at a tenth of it).
    #[arg(long = "rapl.window", default_value = "10s", value_parser = odin_common::parse_duration)]
    pub rapl_window: Duration,
    /// Power supplies (names under /sys/class/power_supply) to leave out.
    #[arg(long = "collector.battery.ignored-supplies", value_name = "REGEX")]
    pub battery_ignored: Option<String>,
    /// Where GPU power comes from: `auto` (NVML, else nvidia-smi), `nvml`, `nvidia-smi`
    /// (gpu-exporter's `--backend`).
    #[arg(long = "gpu.backend", value_name = "BACKEND", value_enum, default_value_t = Choice::Auto)]
    pub gpu_backend: Choice,
    /// Path of libnvidia-ml.so to load instead of the system's `libnvidia-ml.so.1`
    /// (gpu-exporter's `--nvml.library`).
    #[arg(long = "gpu.nvml-library", value_name = "PATH")]
    pub gpu_nvml_library: Option<std::path::PathBuf>,
    /// How to run nvidia-smi: a program and leading words, split like a shell would split them
    /// (no shell runs) (gpu-exporter's `--nvidia-smi.command`).
    #[arg(
        long = "gpu.nvidia-smi-command",
        value_name = "COMMAND",
        default_value = "nvidia-smi"
    )]
    pub gpu_smi_command: String,
    /// Time between GPU power reads.
    #[arg(long = "gpu.interval", value_name = "DURATION", default_value = "10s",
          value_parser = odin_common::parse_duration)]
    pub gpu_interval: Duration,
    /// Time one GPU power read (NVML loading, or an nvidia-smi run) may take; nvidia-smi is
    /// killed past it.
    #[arg(long = "gpu.timeout", value_name = "DURATION", default_value = "5s",
          value_parser = odin_common::parse_duration)]
    pub gpu_timeout: Duration,
}

/// What the collectors are built from.
pub struct Setup {
    pub rapl_window: Duration,
    pub battery_ignored: Option<Regex>,
    pub gpu: PowerConfig,
    pub gpu_interval: Duration,
    pub gpu_timeout: Duration,
}

/// Turn the flags into the [`Setup`]; fails on an invalid regex, naming its flag.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    let battery_ignored = args
        .battery_ignored
        .as_deref()
        .map(|r| odin_common::regex_flag("collector.battery.ignored-supplies", r))
        .transpose()?;
    let smi_command = split_command(&args.gpu_smi_command)
        .map_err(|e| anyhow::anyhow!("--gpu.nvidia-smi-command: {e}"))?;
    Ok(Setup {
        rapl_window: args.rapl_window,
        battery_ignored,
        gpu: PowerConfig {
            backend: args.gpu_backend,
            nvml_library: args.gpu_nvml_library,
            smi_command,
        },
        gpu_interval: args.gpu_interval,
        gpu_timeout: args.gpu_timeout,
    })
}

/// power-exporter as odin-common runs it.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "power-exporter",
    prefix: "power",
    version: env!("CARGO_PKG_VERSION"),
    about: "CPU, GPU and battery power and every temperature of the host.",
    default_port: 19101,
    collectors: &[
        CollectorDef::on("rapl", "RAPL energy counters and power limits from /sys/class/powercap", |s| {
            built(rapl::Rapl::new(s.rapl_window))
        }),
        CollectorDef::on("battery", "batteries and AC adapters from /sys/class/power_supply", |s| {
            built(battery::Battery::new(s.battery_ignored.clone()))
        }),
        CollectorDef::on("thermal", "thermal zones and cooling devices from /sys/class/thermal", |_| {
            built(thermal::Thermal::new())
        }),
        CollectorDef::on("hwmon", "hwmon sensors from /sys/class/hwmon", |_| built(hwmon::Hwmon::new())),
        CollectorDef::on(
            "gpu",
            "NVIDIA GPU power and energy through gpu-exporter's reader (NVML or nvidia-smi, in the \
             background); on a host that also runs gpu-exporter, --no-collector.gpu avoids polling \
             the GPUs twice",
            |s| built(gpu::Gpu::new(s.gpu.clone(), s.gpu_interval, s.gpu_timeout)),
        ),
    ],
};

#[cfg(test)]
#[test]
fn spec_is_valid() {
    SPEC.check().unwrap();
}
