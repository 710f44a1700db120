//! razer-exporter: Razer laptops and peripherals for Prometheus, read only. Peripherals come
//! from openrazer's kernel drivers through sysfs (`--path.sysfs`); the Blade laptop's power
//! mode, boost, fans, keyboard brightness and battery optimizer from its embedded controller
//! through the laptop's hidraw node, with GET commands only. No Razer device is no failure.

pub mod collectors;
pub mod hid;
#[cfg(test)]
mod test_support;
pub mod usb;

use std::path::PathBuf;
use std::time::Duration;

use collectors::{hid as hid_collector, openrazer};
use odin_common::{built, CollectorDef, ExporterSpec, Settings};

/// The flags of razer-exporter besides the shared ones of odin-common.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of the device nodes (`hidrawN`); in a container, where the host's /dev is
    /// mounted.
    #[arg(long = "path.dev", value_name = "PATH", default_value = "/dev")]
    pub dev: PathBuf,
    /// Time between reads of openrazer's files (each is a USB transfer).
    #[arg(long = "openrazer.interval", value_name = "DURATION", default_value = "30s",
          value_parser = odin_common::parse_duration)]
    pub openrazer_interval: Duration,
    /// Time one read of every openrazer device may take before the collector counts as failing.
    #[arg(long = "openrazer.timeout", value_name = "DURATION", default_value = "10s",
          value_parser = odin_common::parse_duration)]
    pub openrazer_timeout: Duration,
    /// Time between reads of the laptop's embedded controller.
    #[arg(long = "hid.interval", value_name = "DURATION", default_value = "30s",
          value_parser = odin_common::parse_duration)]
    pub hid_interval: Duration,
    /// Time one read of the controller may take before the collector counts as failing.
    #[arg(long = "hid.timeout", value_name = "DURATION", default_value = "10s",
          value_parser = odin_common::parse_duration)]
    pub hid_timeout: Duration,
    /// Read the laptops' answers from this replay file instead of hidraw devices (format:
    /// docs/razer-exporter.md).
    #[arg(long = "hid.replay", value_name = "FILE")]
    pub hid_replay: Option<PathBuf>,
}

/// What the collectors are built from.
pub struct Setup {
    pub openrazer_interval: Duration,
    pub openrazer_timeout: Duration,
    pub hid_interval: Duration,
    pub hid_timeout: Duration,
    pub hid_source: hid_collector::Source,
}

/// Turn the flags into the [`Setup`]; a replay file that cannot be read or parsed is an error.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    let source = match &args.hid_replay {
        Some(file) => hid_collector::Source::Replay(hid::replay::load(file)?),
        None => hid_collector::Source::Devices(args.dev.clone()),
    };
    Ok(Setup {
        openrazer_interval: args.openrazer_interval,
        openrazer_timeout: args.openrazer_timeout,
        hid_interval: args.hid_interval,
        hid_timeout: args.hid_timeout,
        hid_source: source,
    })
}

/// Help texts of the families both collectors write (one text per family).
pub(crate) struct Help {
    pub devices: &'static str,
    pub device_info: &'static str,
    pub brightness: &'static str,
    pub battery_ratio: &'static str,
    pub battery_charging: &'static str,
    pub battery_low_threshold: &'static str,
    pub dpi: &'static str,
    pub poll_rate: &'static str,
    pub idle_time: &'static str,
    pub power_mode: &'static str,
    pub power_mode_raw: &'static str,
    pub boost: &'static str,
    pub fan_target_rpm: &'static str,
    pub fan_automatic: &'static str,
    pub optimizer_enabled: &'static str,
    pub optimizer_threshold: &'static str,
    pub hid_requests: &'static str,
    pub hid_errors: &'static str,
}

pub(crate) const HELP: Help = Help {
    devices: "Razer devices found, by source (openrazer: devices the drivers list; hid: Razer laptops with an embedded controller).",
    device_info: "Always 1: what the device is (type, marketing name, firmware, driver).",
    brightness: "Lighting brightness per zone, 0 to 1.",
    battery_ratio: "Charge of the device's battery, 0 to 1.",
    battery_charging: "1 while the device charges.",
    battery_low_threshold: "Charge below which the device warns of a low battery, 0 to 1.",
    dpi: "Sensor resolution per axis, dots per inch.",
    poll_rate: "USB polling rate of the device.",
    idle_time: "Idle time after which the device sleeps (a setting).",
    power_mode: "1 for the laptop's current power mode, 0 for the others.",
    power_mode_raw: "The power mode number the laptop's controller answered.",
    boost: "1 for the component's current boost level, 0 for the others.",
    fan_target_rpm: "Fan speed the laptop's controller was set to hold (not a measured speed); absent while automatic.",
    fan_automatic: "1 while the laptop's controller chooses the fan speed itself.",
    optimizer_enabled: "1 when the battery health optimizer limits the laptop's charge.",
    optimizer_threshold: "Charge level the battery health optimizer stops charging at, 0 to 1.",
    hid_requests: "GET requests sent to the laptop's controller, retries included.",
    hid_errors: "Requests to the laptop's controller whose answer was not used, by kind.",
};

/// razer-exporter as odin-common runs it.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "razer-exporter",
    prefix: "razer",
    version: env!("CARGO_PKG_VERSION"),
    about: "Razer laptops and peripherals, read through openrazer and the laptop's HID interface.",
    default_port: 19105,
    collectors: &[
        CollectorDef::on(
            "openrazer",
            "Razer peripherals through openrazer's drivers in sysfs (in the background)",
            |s| built(openrazer::OpenRazer::new(s.openrazer_interval, s.openrazer_timeout)),
        ),
        CollectorDef::on(
            "hid",
            "the Blade laptop's embedded controller through hidraw, GET commands only (in the background)",
            |s| built(hid_collector::Hid::new(s.hid_source.clone(), s.hid_interval, s.hid_timeout)),
        ),
    ],
};

#[cfg(test)]
#[test]
fn spec_is_valid() {
    SPEC.check().unwrap();
}
