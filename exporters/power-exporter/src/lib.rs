//! power-exporter: CPU (RAPL), battery and AC, thermal zones and cooling devices, and hwmon
//! sensors of the host, for Prometheus. Every source honours `--path.sysfs`; a class the host
//! does not have is absent, not failing.

pub mod collectors;
pub mod sysfs;

use std::time::Duration;

use anyhow::Context as _;
use collectors::{battery, hwmon, rapl, thermal};
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
}

/// What the collectors are built from.
pub struct Setup {
    pub rapl_window: Duration,
    pub battery_ignored: Option<Regex>,
}

/// Turn the flags into the [`Setup`]; fails on an invalid regex, naming its flag.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    let battery_ignored = args
        .battery_ignored
        .as_deref()
        .map(|r| Regex::new(r).context("--collector.battery.ignored-supplies: invalid regex"))
        .transpose()?;
    Ok(Setup {
        rapl_window: args.rapl_window,
        battery_ignored,
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
    ],
};

#[cfg(test)]
#[test]
fn spec_is_valid() {
    SPEC.check().unwrap();
}
