//! `battery`: batteries and AC adapters from `<sysfs>/class/power_supply` (honours
//! `--path.sysfs`).
//!
//! Every supply directory is read on each scrape; `--collector.battery.ignored-supplies` drops
//! supplies by name. A supply of `type` `Battery` writes the `power_battery_*` families below,
//! each labelled `supply` (the directory name) and `scope` (`device` when the `scope`
//! attribute says `Device`, a peripheral such as a mouse; `system` otherwise, absent included).
//! Any other supply (`Mains`, `USB`, `Wireless`, ...) with an `online` attribute writes
//! `power_supply_online{supply}`.
//!
//! Metrics: `power_battery_present`, `power_battery_charge_ratio`,
//! `power_battery_energy_joules`, `power_battery_energy_full_joules`,
//! `power_battery_energy_full_design_joules`, `power_battery_health_ratio`,
//! `power_battery_power_in_watts`, `power_battery_power_out_watts`,
//! `power_battery_current_in_amperes`, `power_battery_current_out_amperes`,
//! `power_battery_voltage_volts`, `power_battery_cycles`,
//! `power_battery_time_to_empty_seconds`, `power_battery_time_to_full_seconds`,
//! `power_battery_temperature_celsius`, `power_battery_state{state}` (a state set),
//! `power_battery_info{technology,model,manufacturer,converted}`, `power_supply_online`.
//!
//! How the readings become values:
//!
//! - **Energy.** `energy_*` (µWh) become joules. A battery with no `energy_*` at all but
//!   `charge_*` (µAh) is converted with its design voltage (`voltage_min_design`, else
//!   `voltage_now`); its info series then says `converted="from_charge"`. Without either
//!   voltage it has no energy series (its ratios still come from `charge_*`).
//! - **Power in `current_now`.** Old ACPI drivers for batteries that report in mWh put the
//!   power (µW) in `current_now` and have no `power_now`. The rule: `energy_*` present,
//!   `power_now` absent and `current_now` present means `current_now` is power; it is written
//!   as watts, no current is written, and the info series says
//!   `converted="current_now_is_power"`.
//! - **Direction.** The kernel's ABI makes `current_now`/`power_now` negative while
//!   discharging, but ACPI reports a positive rate and lets `status` tell. A negative value,
//!   or a positive one while the status is `Discharging`, is flowing out; any other value is
//!   flowing in. Both the `_in_` and `_out_` families are written (the idle direction as 0),
//!   so a change of direction creates no series.
//! - **Charge ratio**: `capacity` / 100 when the driver has it, else `energy_now /
//!   energy_full` (or `charge_now / charge_full`), capped at 1. **Health**: `energy_full /
//!   energy_full_design` (or the `charge_*` pair), not capped: a new battery may exceed 1.
//! - **Time to empty / full**: the driver's `time_to_empty_now` / `time_to_full_now` when it
//!   has them; else, while discharging, energy now over power out, and while charging,
//!   energy missing to full over power in (with `charge_*` and `current_now` when the
//!   battery has no power reading). No sample in the other states.
//! - **State**: `status` as a state set, one series per state (`charging`, `discharging`,
//!   `not_charging`, `full`, `unknown`), 1 for the current one; an absent or unrecognised
//!   status is `unknown`.
//!
//! An attribute the driver does not support writes nothing. A supply that vanishes while it
//! is read (listed, then its directory gone) writes nothing and is counted as an item error.
//! An attribute that fails to read (an I/O error, permission denied) or does
//! not parse is skipped and counted as an item error; only an unreadable class directory fails
//! the collector. Every read goes to sysfs directly rather than through the `battery` crate,
//! which reads `/sys/class/power_supply` at a fixed path and skips peripheral batteries.

use std::path::Path;

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, Sink};
use regex::Regex;

use odin_common::sysfs::{self, Attr, Missing};

/// The battery and AC collector; see the module documentation.
pub struct Battery {
    ignored: Option<Regex>,
}

impl Battery {
    /// `ignored`: supplies (directory names) to leave out.
    pub fn new(ignored: Option<Regex>) -> Self {
        Battery { ignored }
    }
}

/// The battery states of the `state` label, in output order.
const STATES: [&str; 5] = ["charging", "discharging", "not_charging", "full", "unknown"];

/// The `state` label value of a `status` attribute.
fn state_of(status: &str) -> &'static str {
    match status {
        "Charging" => "charging",
        "Discharging" => "discharging",
        "Not charging" => "not_charging",
        "Full" => "full",
        _ => "unknown",
    }
}

/// µWh to joules.
const UWH_TO_J: f64 = 3600.0 / 1e6;
/// µAh × µV (10⁻¹² Wh) to joules.
const UAH_UV_TO_J: f64 = 3600.0 / 1e12;
/// Micro-units (µW, µA, µV) to units.
const MICRO: f64 = 1e-6;

/// What one battery read as, in base units.
#[derive(Debug, Default)]
struct Reading {
    present: Option<f64>,
    charge_ratio: Option<f64>,
    energy: Option<f64>,
    energy_full: Option<f64>,
    energy_full_design: Option<f64>,
    health: Option<f64>,
    power_in: Option<f64>,
    power_out: Option<f64>,
    current_in: Option<f64>,
    current_out: Option<f64>,
    voltage: Option<f64>,
    cycle_count: Option<f64>,
    time_to_empty: Option<f64>,
    time_to_full: Option<f64>,
    temperature: Option<f64>,
    /// `None` when `status` failed to read: no state series then.
    state: Option<&'static str>,
    technology: String,
    model: String,
    manufacturer: String,
    converted: &'static str,
}

const FIELDS: &[Field<Reading>] = &[
    Field::gauge(
        "battery_present",
        "1 if the battery is present in its slot (sysfs present).",
        |r| r.present,
    ),
    Field::gauge(
        "battery_charge_ratio",
        "State of charge, 0 to 1 (capacity, else energy_now over energy_full).",
        |r| r.charge_ratio,
    ),
    Field::gauge("battery_energy_joules", "Energy stored now.", |r| r.energy),
    Field::gauge(
        "battery_energy_full_joules",
        "Energy stored when last full.",
        |r| r.energy_full,
    ),
    Field::gauge(
        "battery_energy_full_design_joules",
        "Energy the battery was designed to store.",
        |r| r.energy_full_design,
    ),
    Field::gauge(
        "battery_health_ratio",
        "Energy when full over the design energy.",
        |r| r.health,
    ),
    Field::gauge(
        "battery_power_in_watts",
        "Power flowing into the battery (charging); 0 while it flows out.",
        |r| r.power_in,
    ),
    Field::gauge(
        "battery_power_out_watts",
        "Power flowing out of the battery (discharging); 0 while it flows in.",
        |r| r.power_out,
    ),
    Field::gauge(
        "battery_current_in_amperes",
        "Current flowing into the battery (charging); 0 while it flows out.",
        |r| r.current_in,
    ),
    Field::gauge(
        "battery_current_out_amperes",
        "Current flowing out of the battery (discharging); 0 while it flows in.",
        |r| r.current_out,
    ),
    Field::gauge("battery_voltage_volts", "Voltage now.", |r| r.voltage),
    Field::gauge(
        "battery_cycles",
        "Charge cycles counted by the battery.",
        |r| r.cycle_count,
    ),
    Field::gauge(
        "battery_time_to_empty_seconds",
        "Time until empty while discharging (the driver's, else energy over power).",
        |r| r.time_to_empty,
    ),
    Field::gauge(
        "battery_time_to_full_seconds",
        "Time until full while charging (the driver's, else missing energy over power).",
        |r| r.time_to_full,
    ),
    Field::gauge("battery_temperature_celsius", "Battery temperature.", |r| {
        r.temperature
    }),
];

/// Reads the attributes of one supply, noting errors other than absence.
struct Reader<'a> {
    dir: &'a Path,
    supply: &'a str,
    errors: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(dir: &'a Path, supply: &'a str) -> Self {
        Reader {
            dir,
            supply,
            errors: Vec::new(),
        }
    }

    /// The value, or `None`; a failure other than absence is noted.
    fn keep<T>(&mut self, attr: &str, got: Attr<T>) -> Option<T> {
        match got {
            Ok(v) => Some(v),
            Err(Missing::Absent) => None,
            Err(Missing::Denied) => {
                self.errors.push(format!(
                    "power_supply {}: {attr}: permission denied",
                    self.supply
                ));
                None
            }
            Err(Missing::Failed(why)) | Err(Missing::Malformed(why)) => {
                self.errors
                    .push(format!("power_supply {}: {why}", self.supply));
                None
            }
        }
    }

    fn raw_int(&self, attr: &str) -> Attr<i64> {
        sysfs::read_i64(&self.dir.join(attr))
    }

    fn int(&mut self, attr: &str) -> Option<f64> {
        let got = self.raw_int(attr);
        self.keep(attr, got).map(|v| v as f64)
    }

    /// A text attribute; an empty file is absent.
    fn text(&mut self, attr: &str) -> Option<String> {
        let got = sysfs::read(&self.dir.join(attr));
        self.keep(attr, got).filter(|t| !t.is_empty())
    }
}

/// `a / b` when `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// A signed rate split into (in, out); see the module documentation.
fn split(value: Option<f64>, state: Option<&str>) -> (Option<f64>, Option<f64>) {
    match value {
        None => (None, None),
        Some(v) if v < 0.0 => (Some(0.0), Some(-v)),
        Some(v) if state == Some("discharging") => (Some(0.0), Some(v)),
        Some(v) => (Some(v), Some(0.0)),
    }
}

/// Read one battery directory.
fn read_battery(r: &mut Reader<'_>) -> Reading {
    // `status` absent: unknown; failed: noted, and no state series.
    let state = match sysfs::read(&r.dir.join("status")) {
        Err(Missing::Absent) => Some("unknown"),
        got => r.keep("status", got).map(|s| state_of(&s)),
    };

    let energy_now_uwh = r.int("energy_now");
    let energy_full_uwh = r.int("energy_full");
    let energy_design_uwh = r.int("energy_full_design");
    let has_energy = [energy_now_uwh, energy_full_uwh, energy_design_uwh]
        .iter()
        .any(Option::is_some);

    let charge_now = r.int("charge_now");
    let charge_full = r.int("charge_full");
    let charge_design = r.int("charge_full_design");

    let voltage_now_uv = r.int("voltage_now");
    let power_now_raw = r.raw_int("power_now");
    let power_absent = power_now_raw == Err(Missing::Absent);
    let power_now_uw = r.keep("power_now", power_now_raw).map(|v| v as f64);
    let current_now_raw = r.int("current_now");

    let mut out = Reading {
        converted: "none",
        state,
        ..Reading::default()
    };

    // Energy in joules: energy_* as given, else charge_* times the design voltage.
    if has_energy {
        out.energy = energy_now_uwh.map(|v| v * UWH_TO_J);
        out.energy_full = energy_full_uwh.map(|v| v * UWH_TO_J);
        out.energy_full_design = energy_design_uwh.map(|v| v * UWH_TO_J);
    } else if charge_now.is_some() || charge_full.is_some() || charge_design.is_some() {
        let design_uv = r.int("voltage_min_design").or(voltage_now_uv);
        if let Some(uv) = design_uv.filter(|v| *v > 0.0) {
            out.energy = charge_now.map(|v| v * uv * UAH_UV_TO_J);
            out.energy_full = charge_full.map(|v| v * uv * UAH_UV_TO_J);
            out.energy_full_design = charge_design.map(|v| v * uv * UAH_UV_TO_J);
            out.converted = "from_charge";
        }
    }

    // Power and current, split by direction.
    let (power_uw, current_ua) = if has_energy && power_absent && current_now_raw.is_some() {
        out.converted = "current_now_is_power";
        (current_now_raw, None)
    } else {
        (power_now_uw, current_now_raw)
    };
    let (p_in, p_out) = split(power_uw.map(|v| v * MICRO), state);
    let (c_in, c_out) = split(current_ua.map(|v| v * MICRO), state);
    out.power_in = p_in;
    out.power_out = p_out;
    out.current_in = c_in;
    out.current_out = c_out;

    // Ratios: from energy where the battery reports it, else from charge.
    let (now, full, design) = if has_energy {
        (energy_now_uwh, energy_full_uwh, energy_design_uwh)
    } else {
        (charge_now, charge_full, charge_design)
    };
    out.charge_ratio = match r.int("capacity") {
        Some(pct) => Some(pct / 100.0),
        None => ratio(now, full).map(|x| x.clamp(0.0, 1.0)),
    };
    out.health = ratio(full, design);

    // Times: the driver's, else computed while (dis)charging.
    let discharging = state == Some("discharging");
    let charging = state == Some("charging");
    out.time_to_empty = r.int("time_to_empty_now").or_else(|| {
        if !discharging {
            return None;
        }
        ratio(out.energy, out.power_out)
            .or_else(|| ratio(charge_now.map(|c| c * 3600.0 * MICRO), out.current_out))
    });
    out.time_to_full = r.int("time_to_full_now").or_else(|| {
        if !charging {
            return None;
        }
        let missing_j = match (out.energy_full, out.energy) {
            (Some(f), Some(n)) => Some((f - n).max(0.0)),
            _ => None,
        };
        let missing_ah_s = match (charge_full, charge_now) {
            (Some(f), Some(n)) => Some((f - n).max(0.0) * 3600.0 * MICRO),
            _ => None,
        };
        ratio(missing_j, out.power_in).or_else(|| ratio(missing_ah_s, out.current_in))
    });

    out.present = r.int("present").map(|p| if p > 0.0 { 1.0 } else { 0.0 });
    out.voltage = voltage_now_uv.map(|v| v * MICRO);
    out.cycle_count = r.int("cycle_count");
    out.temperature = r.int("temp").map(|t| t / 10.0);
    out.technology = r.text("technology").unwrap_or_default();
    out.model = r.text("model_name").unwrap_or_default();
    out.manufacturer = r.text("manufacturer").unwrap_or_default();
    out
}

/// One battery with its labels.
struct Found {
    supply: String,
    scope: &'static str,
    reading: Reading,
}

impl Collector for Battery {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let class = ctx.sys_path("class/power_supply");
        let supplies =
            sysfs::entries(&class).with_context(|| format!("cannot list {}", class.display()))?;

        let mut batteries: Vec<Found> = Vec::new();
        let mut adapters: Vec<(String, f64)> = Vec::new();
        for (name, dir) in &supplies {
            if self.ignored.as_ref().is_some_and(|re| re.is_match(name)) {
                continue;
            }
            let mut r = Reader::new(dir, name);
            let found_before = (batteries.len(), adapters.len());
            // No `type`: not a supply (or it vanished: see below); nothing to write.
            if let Some(kind) = r.text("type") {
                if kind == "Battery" {
                    let scope = match r.text("scope").as_deref() {
                        Some("Device") => "device",
                        _ => "system",
                    };
                    let reading = read_battery(&mut r);
                    batteries.push(Found {
                        supply: name.clone(),
                        scope,
                        reading,
                    });
                } else if let Some(online) = r.int("online") {
                    adapters.push((name.clone(), if online > 0.0 { 1.0 } else { 0.0 }));
                }
            }
            // Listed, then gone (a peripheral unplugged mid-scrape): what was read of it is a
            // half reading; drop it and count it, whatever its attributes answered meanwhile.
            if !dir.exists() {
                batteries.truncate(found_before.0);
                adapters.truncate(found_before.1);
                out.item_error(format!("power_supply {name}: vanished while it was read"));
                continue;
            }
            for e in r.errors {
                out.item_error(e);
            }
        }

        let labels: Vec<[(&str, &str); 2]> = batteries
            .iter()
            .map(|b| [("supply", b.supply.as_str()), ("scope", b.scope)])
            .collect();
        let rows: Vec<(&[(&str, &str)], &Reading)> = labels
            .iter()
            .zip(&batteries)
            .map(|(l, b)| (&l[..], &b.reading))
            .collect();
        out.fields(FIELDS, &rows);

        let mut fam = out.gauge(
            "battery_state",
            "Battery state from sysfs status: 1 for the current state, 0 for the others.",
        );
        for b in &batteries {
            if let Some(current) = b.reading.state {
                for s in STATES {
                    fam.sample(
                        &[("supply", &b.supply), ("scope", b.scope), ("state", s)],
                        s == current,
                    );
                }
            }
        }

        let mut fam = out.gauge(
            "battery_info",
            "Battery description, always 1; converted says how energy and power were derived \
             (none, from_charge, current_now_is_power).",
        );
        for b in &batteries {
            let r = &b.reading;
            fam.sample(
                &[
                    ("supply", &b.supply),
                    ("scope", b.scope),
                    ("technology", &r.technology),
                    ("model", &r.model),
                    ("manufacturer", &r.manufacturer),
                    ("converted", r.converted),
                ],
                1,
            );
        }

        let mut fam = out.gauge(
            "supply_online",
            "1 if the adapter (Mains, USB, ...) is supplying power.",
        );
        for (name, online) in &adapters {
            fam.sample(&[("supply", name)], *online);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;
    use odin_testkit::{fixture_context, sink_label_values, sink_value};

    fn scrape(name: &str, ignored: Option<&str>) -> Sink {
        let c = Battery::new(ignored.map(|r| Regex::new(r).unwrap()));
        let mut sink = Sink::new("power");
        c.collect(&fixture_context(&fixture(name)), &mut sink)
            .expect("collect");
        sink
    }

    #[track_caller]
    fn approx(sink: &Sink, name: &str, labels: &[(&str, &str)], want: f64) {
        let got = sink_value(sink, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?}: {:?}", sink.families()));
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}{labels:?}: got {got}, want {want}"
        );
    }

    fn absent(sink: &Sink, name: &str, labels: &[(&str, &str)]) {
        assert_eq!(sink_value(sink, name, labels), None, "{name}{labels:?}");
    }

    const BAT0: &[(&str, &str)] = &[("supply", "BAT0"), ("scope", "system")];
    const MOUSE: &[(&str, &str)] = &[
        ("supply", "hid-aa:bb:cc:dd:ee:ff-battery"),
        ("scope", "device"),
    ];

    #[test]
    fn laptop_energy_battery_ac_and_peripheral() {
        let s = scrape("battery-laptop", None);
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        approx(&s, "power_battery_charge_ratio", BAT0, 0.6);
        approx(&s, "power_battery_energy_joules", BAT0, 30.0 * 3600.0);
        approx(&s, "power_battery_energy_full_joules", BAT0, 50.0 * 3600.0);
        approx(
            &s,
            "power_battery_energy_full_design_joules",
            BAT0,
            57.0 * 3600.0,
        );
        approx(&s, "power_battery_health_ratio", BAT0, 50.0 / 57.0);
        approx(&s, "power_battery_power_in_watts", BAT0, 15.0);
        approx(&s, "power_battery_power_out_watts", BAT0, 0.0);
        absent(&s, "power_battery_current_in_amperes", BAT0);
        approx(&s, "power_battery_voltage_volts", BAT0, 12.6);
        approx(&s, "power_battery_cycles", BAT0, 87.0);
        approx(&s, "power_battery_present", BAT0, 1.0);
        // 20 Wh missing at 15 W.
        approx(&s, "power_battery_time_to_full_seconds", BAT0, 4800.0);
        absent(&s, "power_battery_time_to_empty_seconds", BAT0);
        absent(&s, "power_battery_temperature_celsius", BAT0);
        for (state, v) in [("charging", 1.0), ("discharging", 0.0), ("full", 0.0)] {
            let l = [BAT0[0], BAT0[1], ("state", state)];
            approx(&s, "power_battery_state", &l, v);
        }
        let states = sink_label_values(&s, "power_battery_state", "state");
        assert_eq!(states.len(), 10, "5 states for each of 2 batteries");
        let info = [
            BAT0[0],
            BAT0[1],
            ("technology", "Li-poly"),
            ("model", "5B10W13930"),
            ("manufacturer", "SMP"),
            ("converted", "none"),
        ];
        approx(&s, "power_battery_info", &info, 1.0);

        // The mouse: capacity and status only, scope device.
        approx(&s, "power_battery_charge_ratio", MOUSE, 0.85);
        absent(&s, "power_battery_energy_joules", MOUSE);
        let l = [MOUSE[0], MOUSE[1], ("state", "discharging")];
        approx(&s, "power_battery_state", &l, 1.0);
        let info = [
            MOUSE[0],
            MOUSE[1],
            ("technology", ""),
            ("model", "Wireless Mouse MX Master 3"),
            ("manufacturer", "Logitech"),
            ("converted", "none"),
        ];
        approx(&s, "power_battery_info", &info, 1.0);

        // Adapters: AC online, the USB-C port not; batteries are not adapters.
        approx(&s, "power_supply_online", &[("supply", "AC")], 1.0);
        approx(
            &s,
            "power_supply_online",
            &[("supply", "ucsi-source-psy-USBC000:001")],
            0.0,
        );
        assert_eq!(
            sink_label_values(&s, "power_supply_online", "supply").len(),
            2
        );
        // Every battery series carries the scope.
        for f in s.families() {
            if f.name().starts_with("power_battery_") {
                for m in f.get_metric() {
                    assert!(
                        m.get_label().iter().any(|l| l.name() == "scope"),
                        "{} lacks scope",
                        f.name()
                    );
                }
            }
        }
    }

    #[test]
    fn charge_only_batteries_are_converted_with_design_voltage() {
        let s = scrape("battery-charge", None);
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        let bat1 = [("supply", "BAT1"), ("scope", "system")];
        // 2 Ah at 11.4 V design = 22.8 Wh.
        approx(&s, "power_battery_energy_joules", &bat1, 22.8 * 3600.0);
        approx(&s, "power_battery_energy_full_joules", &bat1, 45.6 * 3600.0);
        approx(
            &s,
            "power_battery_energy_full_design_joules",
            &bat1,
            57.0 * 3600.0,
        );
        approx(&s, "power_battery_charge_ratio", &bat1, 0.5);
        approx(&s, "power_battery_health_ratio", &bat1, 0.8);
        // Positive current while discharging (ACPI) flows out.
        approx(&s, "power_battery_current_out_amperes", &bat1, 1.5);
        approx(&s, "power_battery_current_in_amperes", &bat1, 0.0);
        absent(&s, "power_battery_power_out_watts", &bat1);
        // 2 Ah at 1.5 A.
        approx(&s, "power_battery_time_to_empty_seconds", &bat1, 4800.0);
        approx(&s, "power_battery_cycles", &bat1, 0.0);
        let info = [
            bat1[0],
            bat1[1],
            ("technology", "Li-ion"),
            ("model", "PABAS0241231"),
            ("manufacturer", "Hewlett-Packard"),
            ("converted", "from_charge"),
        ];
        approx(&s, "power_battery_info", &info, 1.0);

        // The fuel gauge: no voltage_min_design (voltage_now converts), a negative current,
        // the driver's own time to empty, a temperature in tenths.
        let bq = [("supply", "bq27500-0"), ("scope", "system")];
        approx(&s, "power_battery_energy_joules", &bq, 3.8 * 3600.0);
        approx(&s, "power_battery_current_out_amperes", &bq, 0.5);
        approx(&s, "power_battery_current_in_amperes", &bq, 0.0);
        approx(&s, "power_battery_time_to_empty_seconds", &bq, 3600.0);
        approx(&s, "power_battery_temperature_celsius", &bq, 29.5);
        approx(&s, "power_battery_charge_ratio", &bq, 0.5);
        approx(&s, "power_battery_health_ratio", &bq, 1.0);
    }

    #[test]
    fn legacy_power_in_current_now() {
        let s = scrape("battery-legacy", None);
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        approx(&s, "power_battery_power_out_watts", BAT0, 10.0);
        approx(&s, "power_battery_power_in_watts", BAT0, 0.0);
        absent(&s, "power_battery_current_out_amperes", BAT0);
        absent(&s, "power_battery_current_in_amperes", BAT0);
        // 20 Wh at 10 W.
        approx(&s, "power_battery_time_to_empty_seconds", BAT0, 7200.0);
        approx(&s, "power_battery_charge_ratio", BAT0, 0.5);
        let info = [
            BAT0[0],
            BAT0[1],
            ("technology", "Li-ion"),
            ("model", "DELL 4M0J6"),
            ("manufacturer", ""),
            ("converted", "current_now_is_power"),
        ];
        approx(&s, "power_battery_info", &info, 1.0);
        approx(&s, "power_supply_online", &[("supply", "AC")], 0.0);
    }

    #[test]
    fn desktop_without_power_supply_class_writes_nothing() {
        let s = scrape("battery-desktop", None);
        let (families, errors) = s.into_parts();
        assert!(families.is_empty(), "{families:?}");
        assert!(errors.is_empty());
    }

    #[test]
    fn broken_attributes_are_skipped_and_counted() {
        let s = scrape("battery-broken", None);
        let errors = s.item_errors().to_vec();
        // weird/type (a directory), BAT0 energy_now (garbage), energy_full (a directory),
        // cycle_count (3.5), AC online (yes).
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for what in ["weird", "energy_now", "energy_full", "cycle_count", "AC"] {
            assert!(
                errors.iter().any(|e| e.contains(what)),
                "{what}: {errors:#?}"
            );
        }
        // What did read is still there.
        approx(&s, "power_battery_charge_ratio", BAT0, 0.55);
        approx(
            &s,
            "power_battery_energy_full_design_joules",
            BAT0,
            50.0 * 3600.0,
        );
        absent(&s, "power_battery_energy_joules", BAT0);
        absent(&s, "power_battery_energy_full_joules", BAT0);
        absent(&s, "power_battery_health_ratio", BAT0);
        absent(&s, "power_battery_cycles", BAT0);
        // Empty files are absent, not errors.
        absent(&s, "power_battery_voltage_volts", BAT0);
        // An unknown status is the unknown state.
        let l = [BAT0[0], BAT0[1], ("state", "unknown")];
        approx(&s, "power_battery_state", &l, 1.0);
        // energy_* and no power_now: current_now is power.
        approx(&s, "power_battery_power_in_watts", BAT0, 2.0);
        // No adapter could be read; `notype` has no type and is no supply.
        absent(&s, "power_supply_online", &[("supply", "AC")]);
        absent(&s, "power_supply_online", &[("supply", "notype")]);
    }

    #[test]
    fn ignored_supplies_are_left_out() {
        let s = scrape("battery-laptop", Some("^(AC|hid-.*)$"));
        let supplies = sink_label_values(&s, "power_battery_charge_ratio", "supply");
        assert_eq!(supplies, ["BAT0"]);
        assert_eq!(
            sink_label_values(&s, "power_supply_online", "supply"),
            ["ucsi-source-psy-USBC000:001"]
        );
    }

    #[test]
    fn unreadable_class_fails_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the class directory should be.
        std::fs::create_dir_all(dir.path().join("sys/class")).unwrap();
        std::fs::write(dir.path().join("sys/class/power_supply"), "").unwrap();
        let mut sink = Sink::new("power");
        let err = Battery::new(None)
            .collect(&fixture_context(dir.path()), &mut sink)
            .unwrap_err();
        assert!(format!("{err:#}").contains("power_supply"), "{err:#}");
    }

    #[test]
    fn direction_rules() {
        assert_eq!(split(Some(-2.0), Some("charging")), (Some(0.0), Some(2.0)));
        assert_eq!(
            split(Some(2.0), Some("discharging")),
            (Some(0.0), Some(2.0))
        );
        assert_eq!(split(Some(2.0), Some("charging")), (Some(2.0), Some(0.0)));
        assert_eq!(split(Some(0.0), Some("full")), (Some(0.0), Some(0.0)));
        assert_eq!(split(None, Some("charging")), (None, None));
        assert_eq!(state_of("Not charging"), "not_charging");
        assert_eq!(state_of("Exploding"), "unknown");
    }
}
