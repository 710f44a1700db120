//! `thermal`: thermal zones and cooling devices from `<sysfs>/class/thermal`.
//!
//! Reads, per `thermal_zoneN`: `type`, `temp` (millidegrees Celsius), `mode`, and every trip
//! point `trip_point_K_temp` with its `trip_point_K_type`; per `cooling_deviceN`: `type`,
//! `cur_state` and `max_state`. Writes:
//!
//! - `power_thermal_zone_temperature_celsius{zone,type}`
//! - `power_thermal_zone_enabled{zone,type}` (from `mode`, where the zone has one)
//! - `power_thermal_zone_trip_point_celsius{zone,type,trip,trip_type}`
//! - `power_cooling_device_state{device,type}`
//! - `power_cooling_device_max_state{device,type}`
//!
//! `zone` and `device` are the number in the directory name (`thermal_zone3` is zone `3`), as
//! node_exporter labels them. A host without the class (a VM) exports nothing and is healthy.
//! A file the driver fails to answer (`EIO`, `EAGAIN`, ...) or that holds no number is skipped
//! and counted as an item error; the rest of the zone is still reported. A zone or cooling
//! device that vanishes while it is read (listed, then its directory gone) is left out and
//! counted as an item error.

use std::path::Path;

use odin_common::{Collector, Context, Field, Sink};

use odin_common::sysfs::{self, Missing};

/// The thermal zone and cooling device collector.
pub struct Thermal;

impl Thermal {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Thermal
    }
}

/// What one zone reads.
#[derive(Debug, Default)]
struct Zone {
    celsius: Option<f64>,
    enabled: Option<bool>,
}

/// One trip point of a zone.
#[derive(Debug)]
struct Trip {
    celsius: Option<f64>,
}

/// One cooling device.
#[derive(Debug, Default)]
struct Cooling {
    state: Option<f64>,
    max_state: Option<f64>,
}

const ZONE_FIELDS: &[Field<Zone>] = &[
    Field::gauge(
        "thermal_zone_temperature_celsius",
        "Temperature of the thermal zone.",
        |z| z.celsius,
    ),
    Field::gauge(
        "thermal_zone_enabled",
        "1 if the kernel monitors the thermal zone (mode enabled), 0 if disabled.",
        |z| z.enabled.map(f64::from),
    ),
];

const TRIP_FIELDS: &[Field<Trip>] = &[Field::gauge(
    "thermal_zone_trip_point_celsius",
    "Temperature at which the trip point of the zone acts (trip_type: active, passive, hot, critical).",
    |t| t.celsius,
)];

const COOLING_FIELDS: &[Field<Cooling>] = &[
    Field::gauge(
        "cooling_device_state",
        "Current state of the cooling device (0 is no cooling; the meaning of higher states depends on the device).",
        |c| c.state,
    ),
    Field::gauge(
        "cooling_device_max_state",
        "Highest state the cooling device supports.",
        |c| c.max_state,
    ),
];

/// Note why a value is missing, where that is worth counting: a failed read, an unreadable or
/// malformed file. Absence is silent.
fn note(out: &mut Sink, missing: Missing) {
    match missing {
        Missing::Absent => {}
        Missing::Denied => out.item_error("thermal: permission denied"),
        Missing::Failed(what) | Missing::Malformed(what) => out.item_error(what),
    }
}

/// A value in millidegrees Celsius as degrees.
fn millidegrees(path: &Path, out: &mut Sink) -> Option<f64> {
    match sysfs::read_i64(path) {
        Ok(v) => Some(v as f64 / 1000.0),
        Err(m) => {
            note(out, m);
            None
        }
    }
}

/// A text attribute; empty when absent, failed (counted) or unreadable.
fn text(path: &Path, out: &mut Sink) -> String {
    match sysfs::read(path) {
        Ok(t) => t,
        Err(m) => {
            note(out, m);
            String::new()
        }
    }
}

/// A cooling state. Some drivers answer `-1` or a negative errno-like value for "unknown":
/// parsed as a signed number and left out when negative.
fn state(path: &Path, out: &mut Sink) -> Option<f64> {
    match sysfs::read_i64(path) {
        Ok(v) if v >= 0 => Some(v as f64),
        Ok(_) => None,
        Err(m) => {
            note(out, m);
            None
        }
    }
}

/// The trip point numbers of a zone directory (`trip_point_K_temp`), sorted.
fn trip_numbers(zone: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(zone)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let name = name.to_str()?;
                    name.strip_prefix("trip_point_")?
                        .strip_suffix("_temp")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

impl Collector for Thermal {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let class = ctx.sys_path("class/thermal");
        let entries = sysfs::entries(&class)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", class.display()))?;

        // (zone number, type, zone)
        let mut zones: Vec<(String, String, Zone)> = Vec::new();
        // (zone number, zone type, trip number, trip type, trip)
        let mut trips: Vec<(String, String, String, String, Trip)> = Vec::new();
        // (device number, type, device)
        let mut coolers: Vec<(String, String, Cooling)> = Vec::new();

        for (name, path) in &entries {
            let found_before = (zones.len(), trips.len(), coolers.len());
            if let Some(n) = name.strip_prefix("thermal_zone") {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let kind = text(&path.join("type"), out);
                let enabled = match sysfs::read(&path.join("mode")) {
                    Ok(m) if m == "enabled" => Some(true),
                    Ok(m) if m == "disabled" => Some(false),
                    Ok(m) => {
                        out.item_error(format!("{}: unknown mode {m:?}", path.display()));
                        None
                    }
                    Err(m) => {
                        note(out, m);
                        None
                    }
                };
                let celsius = millidegrees(&path.join("temp"), out);
                for k in trip_numbers(path) {
                    let celsius = millidegrees(&path.join(format!("trip_point_{k}_temp")), out);
                    let trip_type = text(&path.join(format!("trip_point_{k}_type")), out);
                    trips.push((
                        n.to_owned(),
                        kind.clone(),
                        k.to_string(),
                        trip_type,
                        Trip { celsius },
                    ));
                }
                zones.push((n.to_owned(), kind, Zone { celsius, enabled }));
            } else if let Some(n) = name.strip_prefix("cooling_device") {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let kind = text(&path.join("type"), out);
                let cooling = Cooling {
                    state: state(&path.join("cur_state"), out),
                    max_state: state(&path.join("max_state"), out),
                };
                coolers.push((n.to_owned(), kind, cooling));
            } else {
                continue;
            }
            // Listed, then gone (its driver unbound mid-scrape): a half reading, dropped and
            // counted.
            if !path.exists() {
                zones.truncate(found_before.0);
                trips.truncate(found_before.1);
                coolers.truncate(found_before.2);
                out.item_error(format!("{}: vanished while it was read", path.display()));
            }
        }

        // Numeric order (zone 10 after zone 9).
        let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        zones.sort_by_key(|z| num(&z.0));
        trips.sort_by_key(|t| (num(&t.0), num(&t.2)));
        coolers.sort_by_key(|c| num(&c.0));

        let zone_labels: Vec<[(&str, &str); 2]> = zones
            .iter()
            .map(|(n, kind, _)| [("zone", n.as_str()), ("type", kind.as_str())])
            .collect();
        let rows: Vec<_> = zone_labels
            .iter()
            .zip(&zones)
            .map(|(l, z)| (&l[..], &z.2))
            .collect();
        out.fields(ZONE_FIELDS, &rows);

        let trip_labels: Vec<[(&str, &str); 4]> = trips
            .iter()
            .map(|(n, kind, k, tt, _)| {
                [
                    ("zone", n.as_str()),
                    ("type", kind.as_str()),
                    ("trip", k.as_str()),
                    ("trip_type", tt.as_str()),
                ]
            })
            .collect();
        let rows: Vec<_> = trip_labels
            .iter()
            .zip(&trips)
            .map(|(l, t)| (&l[..], &t.4))
            .collect();
        out.fields(TRIP_FIELDS, &rows);

        let cooling_labels: Vec<[(&str, &str); 2]> = coolers
            .iter()
            .map(|(n, kind, _)| [("device", n.as_str()), ("type", kind.as_str())])
            .collect();
        let rows: Vec<_> = cooling_labels
            .iter()
            .zip(&coolers)
            .map(|(l, c)| (&l[..], &c.2))
            .collect();
        out.fields(COOLING_FIELDS, &rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odin_testkit::{fixture_context, sink_label_values, sink_value};

    fn run(name: &str) -> Sink {
        crate::test_support::collect(&Thermal::new(), name)
    }

    #[test]
    fn laptop_zones_trips_and_cooling_devices() {
        let out = run("host-laptop");
        let v = |name: &str, labels: &[(&str, &str)]| sink_value(&out, name, labels);
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "0"), ("type", "acpitz")]
            ),
            Some(52.0)
        );
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "1"), ("type", "x86_pkg_temp")]
            ),
            Some(61.5)
        );
        assert_eq!(
            v(
                "power_thermal_zone_enabled",
                &[("zone", "0"), ("type", "acpitz")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "power_thermal_zone_trip_point_celsius",
                &[
                    ("zone", "0"),
                    ("type", "acpitz"),
                    ("trip", "0"),
                    ("trip_type", "critical")
                ]
            ),
            Some(103.0)
        );
        assert_eq!(
            v(
                "power_thermal_zone_trip_point_celsius",
                &[
                    ("zone", "0"),
                    ("type", "acpitz"),
                    ("trip", "1"),
                    ("trip_type", "passive")
                ]
            ),
            Some(95.0)
        );
        assert_eq!(
            v(
                "power_cooling_device_state",
                &[("device", "0"), ("type", "Processor")]
            ),
            Some(0.0)
        );
        assert_eq!(
            v(
                "power_cooling_device_max_state",
                &[("device", "0"), ("type", "Processor")]
            ),
            Some(3.0)
        );
        assert_eq!(
            v(
                "power_cooling_device_state",
                &[("device", "1"), ("type", "Fan")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "power_cooling_device_max_state",
                &[("device", "1"), ("type", "Fan")]
            ),
            Some(1.0)
        );
        // Zone 10 sorts after zone 2.
        assert_eq!(
            sink_label_values(&out, "power_thermal_zone_enabled", "zone"),
            ["0", "1", "2", "10"]
        );
        // Zone 2 is disabled: still reported, with enabled 0.
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "2"), ("type", "INT3400 Thermal")]
            ),
            Some(20.0)
        );
        assert_eq!(
            v(
                "power_thermal_zone_enabled",
                &[("zone", "2"), ("type", "INT3400 Thermal")]
            ),
            Some(0.0)
        );
        // A cooling state of -1 (unknown) is left out; the maximum stays.
        assert_eq!(
            v(
                "power_cooling_device_state",
                &[("device", "3"), ("type", "intel_powerclamp")]
            ),
            None
        );
        assert_eq!(
            v(
                "power_cooling_device_max_state",
                &[("device", "3"), ("type", "intel_powerclamp")]
            ),
            Some(50.0)
        );
        assert!(out.item_errors().is_empty(), "{:?}", out.item_errors());
    }

    #[test]
    fn malformed_files_are_skipped_and_counted() {
        let out = run("thermal-malformed");
        let v = |name: &str, labels: &[(&str, &str)]| sink_value(&out, name, labels);
        // Zone 0: temperature not a number; its good trip point stays.
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "0"), ("type", "acpitz")]
            ),
            None
        );
        assert_eq!(
            v(
                "power_thermal_zone_trip_point_celsius",
                &[
                    ("zone", "0"),
                    ("type", "acpitz"),
                    ("trip", "0"),
                    ("trip_type", "critical")
                ]
            ),
            Some(100.0)
        );
        // Trip 1: temperature malformed (no sample); trip 2: type fails (empty trip_type).
        assert_eq!(
            v(
                "power_thermal_zone_trip_point_celsius",
                &[
                    ("zone", "0"),
                    ("type", "acpitz"),
                    ("trip", "2"),
                    ("trip_type", "")
                ]
            ),
            Some(90.0)
        );
        // Zone 1: empty temperature file is absent (not an error); type fails (empty label).
        assert_eq!(
            v("power_thermal_zone_enabled", &[("zone", "1"), ("type", "")]),
            Some(1.0)
        );
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "1"), ("type", "")]
            ),
            None
        );
        // Cooling device 0: empty cur_state (absent), max_state 4; device 1: -1 (unknown).
        assert_eq!(
            v(
                "power_cooling_device_state",
                &[("device", "0"), ("type", "Processor")]
            ),
            None
        );
        assert_eq!(
            v(
                "power_cooling_device_max_state",
                &[("device", "0"), ("type", "Processor")]
            ),
            Some(4.0)
        );
        assert_eq!(
            v(
                "power_cooling_device_state",
                &[("device", "1"), ("type", "intel_powerclamp")]
            ),
            None
        );
        // Zone 3 (iwlwifi) fails its temperature read with an I/O error: no sample, one item
        // error; the zone and its trip point are still reported.
        assert_eq!(
            v(
                "power_thermal_zone_temperature_celsius",
                &[("zone", "3"), ("type", "iwlwifi_1")]
            ),
            None
        );
        assert_eq!(
            v(
                "power_thermal_zone_trip_point_celsius",
                &[
                    ("zone", "3"),
                    ("type", "iwlwifi_1"),
                    ("trip", "0"),
                    ("trip_type", "critical")
                ]
            ),
            Some(118.0)
        );
        assert!(out
            .item_errors()
            .iter()
            .any(|e| e.contains("thermal_zone3/temp")));
        // Malformed zone temp, malformed trip 1 temp, failed trip 2 type, failed zone 1
        // type, unknown mode of zone 2, failed zone 3 temp, malformed max_state of device 1.
        assert_eq!(out.item_errors().len(), 7, "{:?}", out.item_errors());
    }

    #[test]
    fn host_without_thermal_class_exports_nothing() {
        for name in ["host-vm", "host-amd"] {
            let out = run(name);
            let (families, errors) = out.into_parts();
            assert!(families.is_empty(), "{name}: {families:?}");
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
    }

    #[test]
    fn unreadable_class_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class")).unwrap();
        // A file where the class directory should be.
        std::fs::write(dir.path().join("sys/class/thermal"), "").unwrap();
        let mut out = Sink::new("power");
        let err = Thermal::new()
            .collect(&fixture_context(dir.path()), &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("class/thermal"), "{err}");
    }
}
