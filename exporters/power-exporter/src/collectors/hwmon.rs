//! `hwmon`: hardware monitoring chips from `<sysfs>/class/hwmon` (what `sensors` shows).
//!
//! Reads, per `hwmonN` (and its `device/` directory, where older drivers keep their
//! attributes), the files `tempK_{input,max,crit,label}`, `fanK_{input,min,label}`,
//! `inK_{input,label}`, `currK_{input,label}`, `powerK_{input,average,cap,label}`,
//! `energyK_{input,label}`, and the chip's `name`. Writes:
//!
//! - `power_hwmon_temperature_celsius`, `power_hwmon_temperature_max_celsius`,
//!   `power_hwmon_temperature_crit_celsius`
//! - `power_hwmon_fan_rpm`, `power_hwmon_fan_min_rpm`
//! - `power_hwmon_voltage_volts`
//! - `power_hwmon_current_amperes`
//! - `power_hwmon_power_watts`, `power_hwmon_power_average_watts`, `power_hwmon_power_cap_watts`
//! - `power_hwmon_energy_joules_total`
//!
//! each with labels `chip`, `sensor` and `label`, and `power_hwmon_chip_info{chip,chip_name}`.
//!
//! `chip` and `sensor` are formed as node_exporter's hwmon collector forms them, so queries
//! written for `node_hwmon_*` keep their label values:
//!
//! - `chip`: where `hwmonN/device` resolves, the last two components of the device's real
//!   path joined by `_` (`/sys/devices/platform/coretemp.0` gives `platform_coretemp_0`,
//!   `/sys/devices/pci0000:00/0000:00:18.3` gives `pci0000:00_0000:00:18_3`, an NVMe drive
//!   `nvme_nvme0`); without a device, the `name` file; without either, `hwmonN`. Each part is
//!   cleaned: lower case, every character other than `a-z`, `0-9`, `:` and `_` made `_`,
//!   leading and trailing `_` removed.
//! - `sensor`: the file's prefix, the type and its number (`temp1`, `fan2`, `in0`).
//!
//! `label` is the sensor's own `*_label` text as the driver writes it (`Package id 0`,
//! `Tctl`, `Composite`), empty when the sensor has none; `chip_name` is the text of the chip's
//! `name` file. A value the driver fails to answer (`EAGAIN`, `EIO`, ...), cannot be read or
//! does not parse is skipped and counted as an item error; the rest of the chip is still
//! reported. A chip, or one of its listed files, that vanishes while it is read is left out
//! and counted as an item error. A host without the class exports nothing and is healthy.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use odin_common::{Collector, Context, Field, Sink};

use odin_common::sysfs::{self, Missing};

/// The hwmon collector.
pub struct Hwmon;

impl Hwmon {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Hwmon
    }
}

/// The sensor types read, in output order, with the properties read for each.
const TYPES: &[(&str, &[&str])] = &[
    ("temp", &["input", "max", "crit", "label"]),
    ("fan", &["input", "min", "label"]),
    ("in", &["input", "label"]),
    ("curr", &["input", "label"]),
    ("power", &["input", "average", "cap", "label"]),
    ("energy", &["input", "label"]),
];

/// The readings of one sensor, already in base units.
#[derive(Debug, Default)]
struct Sensor {
    input: Option<f64>,
    max: Option<f64>,
    crit: Option<f64>,
    min: Option<f64>,
    average: Option<f64>,
    cap: Option<f64>,
}

const TEMP_FIELDS: &[Field<Sensor>] = &[
    Field::gauge(
        "hwmon_temperature_celsius",
        "Temperature the hwmon sensor reads.",
        |s| s.input,
    ),
    Field::gauge(
        "hwmon_temperature_max_celsius",
        "High limit of the hwmon temperature sensor.",
        |s| s.max,
    ),
    Field::gauge(
        "hwmon_temperature_crit_celsius",
        "Critical limit of the hwmon temperature sensor.",
        |s| s.crit,
    ),
];

const FAN_FIELDS: &[Field<Sensor>] = &[
    Field::gauge(
        "hwmon_fan_rpm",
        "Fan speed in revolutions per minute.",
        |s| s.input,
    ),
    Field::gauge(
        "hwmon_fan_min_rpm",
        "Lowest fan speed before the chip raises an alarm, revolutions per minute.",
        |s| s.min,
    ),
];

const VOLTAGE_FIELDS: &[Field<Sensor>] = &[Field::gauge(
    "hwmon_voltage_volts",
    "Voltage the hwmon sensor reads.",
    |s| s.input,
)];

const CURRENT_FIELDS: &[Field<Sensor>] = &[Field::gauge(
    "hwmon_current_amperes",
    "Current the hwmon sensor reads.",
    |s| s.input,
)];

const POWER_FIELDS: &[Field<Sensor>] = &[
    Field::gauge(
        "hwmon_power_watts",
        "Instantaneous power the hwmon sensor reads.",
        |s| s.input,
    ),
    Field::gauge(
        "hwmon_power_average_watts",
        "Power the hwmon sensor reads, averaged by the chip over its own interval.",
        |s| s.average,
    ),
    Field::gauge(
        "hwmon_power_cap_watts",
        "Power cap the chip enforces.",
        |s| s.cap,
    ),
];

const ENERGY_FIELDS: &[Field<Sensor>] = &[Field::counter(
    "hwmon_energy_joules_total",
    "Energy the hwmon sensor has counted.",
    |s| s.input,
)];

/// The field table of each type, in the order of [`TYPES`].
const TABLES: &[&[Field<Sensor>]] = &[
    TEMP_FIELDS,
    FAN_FIELDS,
    VOLTAGE_FIELDS,
    CURRENT_FIELDS,
    POWER_FIELDS,
    ENERGY_FIELDS,
];

/// node_exporter's cleaning of a chip name part: lower case, anything outside `[a-z0-9:_]`
/// becomes `_`, then `_` trimmed from both ends.
pub fn clean(name: &str) -> String {
    let mapped: String = name
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | ':' | '_' => c,
            _ => '_',
        })
        .collect();
    mapped.trim_matches('_').to_owned()
}

/// The `chip` label of the hwmon directory `dir` (see the module documentation).
pub fn chip_name(dir: &Path) -> Option<String> {
    if let Ok(device) = fs::canonicalize(dir.join("device")) {
        let name = device.file_name().and_then(|n| n.to_str()).map(clean);
        let parent = device
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(clean);
        match (parent, name) {
            (Some(p), Some(n)) if !p.is_empty() && !n.is_empty() => {
                return Some(format!("{p}_{n}"))
            }
            (_, Some(n)) if !n.is_empty() => return Some(n),
            _ => {}
        }
    }
    if let Ok(text) = fs::read_to_string(dir.join("name")) {
        let name = clean(&text);
        if !name.is_empty() {
            return Some(name);
        }
    }
    let real = fs::canonicalize(dir).ok()?;
    let name = clean(real.file_name()?.to_str()?);
    (!name.is_empty()).then_some(name)
}

/// Split an attribute file name into (type index in [`TYPES`], number, property):
/// `temp1_input` is `(0, 1, "input")`. `None` for files of other types or properties.
fn split(file: &str) -> Option<(usize, u32, &str)> {
    let digits_at = file.find(|c: char| c.is_ascii_digit())?;
    let (kind, rest) = file.split_at(digits_at);
    let ty = TYPES.iter().position(|(t, _)| *t == kind)?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number = rest[..digits_end].parse().ok()?;
    let property = rest[digits_end..].strip_prefix('_')?;
    TYPES[ty]
        .1
        .contains(&property)
        .then_some((ty, number, property))
}

/// One sensor as found on disk: where each of its properties is.
type Found = BTreeMap<(usize, u32), BTreeMap<String, std::path::PathBuf>>;

/// Record the attribute files of `dir` in `found`; a later directory overrides an earlier one
/// (node_exporter reads `hwmonN/` first, then `hwmonN/device/`).
fn scan(dir: &Path, found: &mut Found) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((ty, n, prop)) = split(name) {
            found
                .entry((ty, n))
                .or_default()
                .insert(prop.to_owned(), entry.path());
        }
    }
    Ok(())
}

fn note(out: &mut Sink, path: &Path, missing: Missing) {
    match missing {
        Missing::Absent => {}
        Missing::Denied => out.item_error(format!("{}: permission denied", path.display())),
        Missing::Failed(what) | Missing::Malformed(what) => out.item_error(what),
    }
}

/// [`note`] for a file found by listing its directory: a listed file that is no longer there
/// vanished while it was read, which is counted (an unsupported attribute answering `EINVAL`
/// is still there, and stays absent).
fn note_listed(out: &mut Sink, path: &Path, missing: Missing) {
    match missing {
        // (When the whole chip went, the chip is counted once instead.)
        Missing::Absent if !path.exists() && path.parent().is_some_and(Path::exists) => {
            out.item_error(format!("{}: vanished while it was read", path.display()))
        }
        Missing::Absent => {}
        Missing::Denied => out.item_error(format!("{}: permission denied", path.display())),
        Missing::Failed(what) | Missing::Malformed(what) => out.item_error(what),
    }
}

/// The value of a listed attribute file in base units (divided, not multiplied by a fraction,
/// so that 84850 millidegrees is exactly 84.85).
fn value(path: &Path, divisor: f64, out: &mut Sink) -> Option<f64> {
    match sysfs::read_i64(path) {
        Ok(v) => Some(v as f64 / divisor),
        Err(m) => {
            note_listed(out, path, m);
            None
        }
    }
}

/// One sensor ready to be written: its labels and readings.
struct Row {
    ty: usize,
    chip: String,
    sensor: String,
    label: String,
    readings: Sensor,
}

/// Read one hwmon directory into `rows` and `chips`.
fn read_chip(
    entry: &str,
    dir: &Path,
    rows: &mut Vec<Row>,
    chips: &mut Vec<(String, String)>,
    out: &mut Sink,
) {
    let Some(chip) = chip_name(dir) else {
        out.item_error(format!("{}: no chip name can be formed", dir.display()));
        return;
    };
    let mut found = Found::new();
    if let Err(e) = scan(dir, &mut found) {
        out.item_error(format!("{}: {e}", dir.display()));
        return;
    }
    let device = dir.join("device");
    if device.is_dir() {
        if let Err(e) = scan(&device, &mut found) {
            out.item_error(format!("{}: {e}", device.display()));
        }
    }
    // The name file: in hwmonN/, or in device/ for older drivers.
    let chip_text =
        [dir.join("name"), device.join("name")]
            .iter()
            .find_map(|p| match sysfs::read(p) {
                Ok(t) if !t.is_empty() => Some(t),
                Ok(_) => None,
                Err(m) => {
                    note(out, p, m);
                    None
                }
            });
    if let Some(text) = chip_text {
        chips.push((chip.clone(), text));
    } else {
        log::debug!("hwmon {entry}: no name file");
    }
    for ((ty, n), props) in found {
        let kind = TYPES[ty].0;
        // millidegrees, RPM, millivolts, milliamperes, microwatts, microjoules
        let divisor = match kind {
            "temp" | "in" | "curr" => 1e3,
            "fan" => 1.0,
            _ => 1e6,
        };
        let get = |prop: &str, out: &mut Sink| props.get(prop).and_then(|p| value(p, divisor, out));
        let readings = Sensor {
            input: get("input", out),
            max: get("max", out),
            crit: get("crit", out),
            min: get("min", out),
            average: get("average", out),
            cap: get("cap", out),
        };
        let label = match props.get("label").map(|p| (p, sysfs::read(p))) {
            Some((_, Ok(text))) => text,
            Some((p, Err(m))) => {
                note_listed(out, p, m);
                String::new()
            }
            None => String::new(),
        };
        rows.push(Row {
            ty,
            chip: chip.clone(),
            sensor: format!("{kind}{n}"),
            label,
            readings,
        });
    }
}

impl Collector for Hwmon {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let class = ctx.sys_path("class/hwmon");
        let entries = sysfs::entries(&class)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", class.display()))?;
        let mut rows = Vec::new();
        let mut chips = Vec::new();
        for (name, path) in &entries {
            // Entries are symlinks to the device tree; follow them, skip anything not a dir.
            if !path.is_dir() {
                // A link to nothing: the chip went away between the listing and now.
                if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) && !path.exists() {
                    out.item_error(format!("{}: vanished while it was read", path.display()));
                }
                continue;
            }
            let found_before = (rows.len(), chips.len());
            read_chip(name, path, &mut rows, &mut chips, out);
            // Gone while it was read: a half reading, dropped (and counted).
            if !path.exists() {
                rows.truncate(found_before.0);
                chips.truncate(found_before.1);
                out.item_error(format!("{}: vanished while it was read", path.display()));
            }
        }

        // Two hwmon directories of one device would give the same chip label: keep the
        // first of each series and count the rest.
        let mut seen = BTreeSet::new();
        rows.retain(|r| {
            let fresh = seen.insert((r.chip.clone(), r.sensor.clone()));
            if !fresh {
                out.item_error(format!(
                    "hwmon: chip {} sensor {} appears twice",
                    r.chip, r.sensor
                ));
            }
            fresh
        });
        let mut seen_chips = BTreeSet::new();
        chips.retain(|(chip, _)| seen_chips.insert(chip.clone()));

        for (ty, table) in TABLES.iter().enumerate() {
            let of_type: Vec<&Row> = rows.iter().filter(|r| r.ty == ty).collect();
            let labels: Vec<[(&str, &str); 3]> = of_type
                .iter()
                .map(|r| {
                    [
                        ("chip", r.chip.as_str()),
                        ("sensor", r.sensor.as_str()),
                        ("label", r.label.as_str()),
                    ]
                })
                .collect();
            let items: Vec<_> = labels
                .iter()
                .zip(&of_type)
                .map(|(l, r)| (&l[..], &r.readings))
                .collect();
            out.fields(table, &items);
        }

        let mut info = out.gauge(
            "hwmon_chip_info",
            "A hwmon chip: its chip label and the text of its name file (chip_name); always 1.",
        );
        for (chip, text) in &chips {
            info.sample(&[("chip", chip.as_str()), ("chip_name", text.as_str())], 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odin_testkit::{fixture_context, sink_label_values, sink_value};

    fn run(name: &str) -> Sink {
        crate::test_support::collect(&Hwmon::new(), name)
    }

    fn v(out: &Sink, name: &str, chip: &str, sensor: &str, label: &str) -> Option<f64> {
        sink_value(
            out,
            name,
            &[("chip", chip), ("sensor", sensor), ("label", label)],
        )
    }

    #[test]
    fn clean_matches_node_exporter() {
        assert_eq!(clean("coretemp.0"), "coretemp_0");
        assert_eq!(clean("0000:00:18.3"), "0000:00:18_3");
        assert_eq!(clean("  Foo-Bar\n"), "foo_bar");
        assert_eq!(clean("__x__"), "x");
        assert_eq!(clean("..."), "");
    }

    #[test]
    fn split_file_names() {
        assert_eq!(split("temp1_input"), Some((0, 1, "input")));
        assert_eq!(split("temp10_label"), Some((0, 10, "label")));
        assert_eq!(split("in0_input"), Some((2, 0, "input")));
        assert_eq!(split("power1_average"), Some((4, 1, "average")));
        assert_eq!(split("temp1_type"), None);
        assert_eq!(split("temp1"), None);
        assert_eq!(split("pwm1"), None);
        assert_eq!(split("name"), None);
        assert_eq!(split("power"), None);
        assert_eq!(split("in_intrusion0_alarm"), None);
    }

    #[test]
    fn desktop_chips_and_labels() {
        let out = run("host-desktop");
        let t = "power_hwmon_temperature_celsius";
        assert_eq!(
            v(&out, t, "platform_coretemp_0", "temp1", "Package id 0"),
            Some(45.0)
        );
        assert_eq!(
            v(&out, t, "platform_coretemp_0", "temp2", "Core 0"),
            Some(43.0)
        );
        assert_eq!(
            v(
                &out,
                "power_hwmon_temperature_max_celsius",
                "platform_coretemp_0",
                "temp1",
                "Package id 0"
            ),
            Some(80.0)
        );
        assert_eq!(
            v(
                &out,
                "power_hwmon_temperature_crit_celsius",
                "platform_coretemp_0",
                "temp1",
                "Package id 0"
            ),
            Some(100.0)
        );
        // nct6775-like Super I/O chip: fans, voltages (no labels), a labelled temperature.
        let nct = "platform_nct6775_656";
        assert_eq!(
            v(&out, "power_hwmon_fan_rpm", nct, "fan1", ""),
            Some(1250.0)
        );
        assert_eq!(v(&out, "power_hwmon_fan_rpm", nct, "fan2", ""), Some(0.0));
        assert_eq!(
            v(&out, "power_hwmon_fan_min_rpm", nct, "fan1", ""),
            Some(300.0)
        );
        assert_eq!(
            v(&out, "power_hwmon_voltage_volts", nct, "in0", ""),
            Some(1.032)
        );
        assert_eq!(
            v(&out, "power_hwmon_voltage_volts", nct, "in1", ""),
            Some(1.848)
        );
        assert_eq!(v(&out, t, nct, "temp1", "SYSTIN"), Some(38.0));
        // NVMe drive under a PCI path: chip from the class device nvme0.
        assert_eq!(v(&out, t, "nvme_nvme0", "temp1", "Composite"), Some(41.85));
        assert_eq!(
            v(
                &out,
                "power_hwmon_temperature_crit_celsius",
                "nvme_nvme0",
                "temp1",
                "Composite"
            ),
            Some(84.85)
        );
        // amdgpu: the PCI address of the GPU and of the bridge above it.
        let gpu = "0000:00:03_1_0000:0b:00_0";
        assert_eq!(v(&out, t, gpu, "temp1", "edge"), Some(52.0));
        assert_eq!(v(&out, t, gpu, "temp2", "junction"), Some(55.0));
        assert_eq!(
            v(
                &out,
                "power_hwmon_power_average_watts",
                gpu,
                "power1",
                "PPT"
            ),
            Some(35.0)
        );
        assert_eq!(
            v(&out, "power_hwmon_power_cap_watts", gpu, "power1", "PPT"),
            Some(200.0)
        );
        assert_eq!(
            v(&out, "power_hwmon_voltage_volts", gpu, "in0", "vddgfx"),
            Some(0.806)
        );
        assert_eq!(v(&out, "power_hwmon_fan_rpm", gpu, "fan1", ""), Some(812.0));
        // INA226 on I2C: bus voltage, current, instantaneous power.
        let ina = "i2c_1_1_0040";
        assert_eq!(
            v(&out, "power_hwmon_current_amperes", ina, "curr1", ""),
            Some(1.25)
        );
        assert_eq!(
            v(&out, "power_hwmon_power_watts", ina, "power1", ""),
            Some(15.0)
        );
        // An older driver keeps its attributes (and name) in hwmonN/device/.
        let old = "platform_w83627ehf_656";
        assert_eq!(v(&out, t, old, "temp1", ""), Some(36.0));
        assert_eq!(
            v(&out, "power_hwmon_fan_rpm", old, "fan1", "CPU fan"),
            Some(980.0)
        );
        // Chip info from the name files.
        let info = |chip: &str, name: &str| {
            sink_value(
                &out,
                "power_hwmon_chip_info",
                &[("chip", chip), ("chip_name", name)],
            )
        };
        assert_eq!(info("platform_coretemp_0", "coretemp"), Some(1.0));
        assert_eq!(info(nct, "nct6798"), Some(1.0));
        assert_eq!(info("nvme_nvme0", "nvme"), Some(1.0));
        assert_eq!(info(gpu, "amdgpu"), Some(1.0));
        assert_eq!(info(ina, "ina226"), Some(1.0));
        assert_eq!(info(old, "w83627ehf"), Some(1.0));
        assert!(out.item_errors().is_empty(), "{:?}", out.item_errors());
    }

    #[test]
    fn amd_host_tctl_tdie_and_energy() {
        let out = run("host-amd");
        let t = "power_hwmon_temperature_celsius";
        let k10 = "pci0000:00_0000:00:18_3";
        assert_eq!(v(&out, t, k10, "temp1", "Tctl"), Some(67.25));
        assert_eq!(v(&out, t, k10, "temp2", "Tdie"), Some(57.25));
        assert_eq!(v(&out, t, k10, "temp3", "Tccd1"), Some(55.5));
        let e = "power_hwmon_energy_joules_total";
        assert_eq!(
            v(&out, e, "platform_amd_energy_0", "energy1", "Ecore000"),
            Some(123.456789)
        );
        assert_eq!(
            v(&out, e, "platform_amd_energy_0", "energy17", "Esocket0"),
            Some(98765.4321)
        );
        assert_eq!(
            sink_label_values(&out, "power_hwmon_chip_info", "chip_name"),
            ["k10temp", "amd_energy"]
        );
        assert!(out.item_errors().is_empty(), "{:?}", out.item_errors());
    }

    #[test]
    fn laptop_virtual_chip_takes_its_name() {
        let out = run("host-laptop");
        // acpitz has no device link: the chip label is its name.
        assert_eq!(
            v(
                &out,
                "power_hwmon_temperature_celsius",
                "acpitz",
                "temp1",
                ""
            ),
            Some(52.0)
        );
        assert_eq!(
            v(
                &out,
                "power_hwmon_fan_rpm",
                "platform_thinkpad_hwmon",
                "fan1",
                ""
            ),
            Some(2650.0)
        );
        assert!(out.item_errors().is_empty(), "{:?}", out.item_errors());
    }

    #[test]
    fn failing_and_malformed_files_skip_one_value() {
        let out = run("hwmon-malformed");
        let t = "power_hwmon_temperature_celsius";
        // hwmon0 has neither a device nor a name: the chip is hwmon0.
        let chip = "hwmon0";
        // temp1 malformed, temp2 empty (absent), temp3 fails with an I/O error: no samples.
        assert_eq!(v(&out, t, chip, "temp1", ""), None);
        assert_eq!(v(&out, t, chip, "temp2", ""), None);
        assert_eq!(v(&out, t, chip, "temp3", ""), None);
        // temp3's max still reads.
        assert_eq!(
            v(
                &out,
                "power_hwmon_temperature_max_celsius",
                chip,
                "temp3",
                ""
            ),
            Some(90.0)
        );
        // temp4's label fails: its value is reported with an empty label.
        assert_eq!(v(&out, t, chip, "temp4", ""), Some(30.0));
        // The rest of the chip is reported.
        assert_eq!(
            v(&out, "power_hwmon_fan_rpm", chip, "fan1", ""),
            Some(1200.0)
        );
        // hwmon1: the name file is empty, so there is no chip info and the chip label is
        // hwmon1; a negative temperature is a value.
        assert_eq!(v(&out, t, "hwmon1", "temp1", ""), Some(-5.5));
        assert!(sink_label_values(&out, "power_hwmon_chip_info", "chip").is_empty());
        // temp1 malformed, temp3 I/O error, temp4 label I/O error.
        assert_eq!(out.item_errors().len(), 3, "{:?}", out.item_errors());
    }

    #[test]
    fn host_without_hwmon_class_exports_nothing() {
        let out = run("host-vm");
        let (families, errors) = out.into_parts();
        assert!(families.is_empty(), "{families:?}");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn unreadable_class_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class")).unwrap();
        std::fs::write(dir.path().join("sys/class/hwmon"), "").unwrap();
        let mut out = Sink::new("power");
        let err = Hwmon::new()
            .collect(&fixture_context(dir.path()), &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("class/hwmon"), "{err}");
    }
}
