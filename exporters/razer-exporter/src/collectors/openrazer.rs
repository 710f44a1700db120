//! `openrazer`: Razer peripherals through openrazer's kernel drivers, from
//! `<sysfs>/bus/hid/drivers/razer{mouse,kbd,accessory,kraken}/<BBBB:VVVV:PPPP.NNNN>/`, in the
//! background (each read of these files is a USB transfer inside the driver).
//!
//! A driver binds every HID interface of a device but creates its attribute files on one;
//! an entry without `device_type` is such a bare interface and is skipped. The driver creates
//! a file only for models that support it, and a read of an unsupported one fails with
//! EINVAL: absent, no error. A read that fails otherwise (EIO, ETIMEDOUT) drops that value and
//! counts an item error; a permission refusal fails the run, naming the group that opens
//! these files (`plugdev`). A device unplugged while it is read (listed, then its directory
//! gone) is left out and counted as an item error.
//!
//! Writes `razer_devices{source="openrazer"}`, and per device `razer_device_info`,
//! `razer_battery_ratio`, `razer_battery_charging`, `razer_battery_low_threshold_ratio`,
//! `razer_dpi{axis}`, `razer_poll_rate_hertz`, `razer_brightness_ratio{zone}`,
//! `razer_idle_time_seconds` (docs/metrics.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use odin_common::sysfs::{self, Missing};
use odin_common::{Collector, Context, Field, Mode, Sink, SplitField};

use crate::{usb, HELP};

/// The drivers openrazer installs, and the `type` label each gives its devices.
pub const DRIVERS: &[(&str, &str)] = &[
    ("razermouse", "mouse"),
    ("razerkbd", "keyboard"),
    ("razeraccessory", "accessory"),
    ("razerkraken", "headset"),
];

/// One device's values; `None` where the file is absent or its read failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peripheral {
    pub device: String,
    pub kind: &'static str,
    pub driver: &'static str,
    pub name: String,
    pub firmware: String,
    pub battery: Option<f64>,
    pub charging: Option<bool>,
    pub low_threshold: Option<f64>,
    pub dpi: Option<(u32, u32)>,
    pub poll_rate: Option<u32>,
    /// (zone, ratio), sorted by zone.
    pub brightness: Vec<(String, f64)>,
    pub idle_time: Option<u32>,
}

/// What reading a device's files met besides values.
#[derive(Debug, Default)]
struct Trouble {
    item_errors: Vec<String>,
    denied: Vec<PathBuf>,
}

impl Trouble {
    /// The value of an attribute, `None` when absent; failures noted.
    fn take<T>(&mut self, path: &Path, got: Result<T, Missing>) -> Option<T> {
        match got {
            Ok(v) => Some(v),
            Err(Missing::Absent) => None,
            Err(Missing::Denied) => {
                self.denied.push(path.to_owned());
                None
            }
            Err(Missing::Failed(why)) | Err(Missing::Malformed(why)) => {
                self.item_errors.push(why);
                None
            }
        }
    }
}

/// `dpi`: `X:Y`, or one number for both axes (old mice).
pub fn parse_dpi(text: &str) -> Option<(u32, u32)> {
    match text.split_once(':') {
        Some((x, y)) => Some((x.trim().parse().ok()?, y.trim().parse().ok()?)),
        None => {
            let v = text.trim().parse().ok()?;
            Some((v, v))
        }
    }
}

/// A 0-255 level as a ratio; anything outside is malformed.
fn level(path: &Path, v: u64) -> Result<f64, Missing> {
    if v > 255 {
        return Err(Missing::Malformed(format!(
            "{}: {v} is outside 0-255",
            path.display()
        )));
    }
    Ok(v as f64 / 255.0)
}

fn parsed<T: std::str::FromStr>(path: &Path, what: &str) -> Result<T, Missing> {
    let text = sysfs::read(path)?;
    if text.is_empty() {
        return Err(Missing::Absent);
    }
    text.parse()
        .map_err(|_| Missing::Malformed(format!("{}: not {what}: {text:?}", path.display())))
}

/// The zone of a brightness file: `matrix_brightness` → `matrix`, `logo_led_brightness` →
/// `logo`; `None` for any other file.
pub fn brightness_zone(file: &str) -> Option<&str> {
    let stem = file.strip_suffix("_brightness")?;
    let zone = stem.strip_suffix("_led").unwrap_or(stem);
    (!zone.is_empty()).then_some(zone)
}

fn read_device(
    dir: &Path,
    device: String,
    driver: &'static str,
    kind: &'static str,
    t: &mut Trouble,
) -> Peripheral {
    let f = |n: &str| dir.join(n);
    let name = t
        .take(&f("device_type"), sysfs::read(&f("device_type")))
        .unwrap_or_default();
    let firmware = t
        .take(&f("firmware_version"), sysfs::read(&f("firmware_version")))
        .unwrap_or_default();
    let battery = {
        let p = f("charge_level");
        let v = parsed::<u64>(&p, "an integer").and_then(|v| level(&p, v));
        t.take(&p, v)
    };
    let charging = {
        let p = f("charge_status");
        let v = parsed::<u8>(&p, "0 or 1").and_then(|v| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Missing::Malformed(format!(
                "{}: {v} is not 0 or 1",
                p.display()
            ))),
        });
        t.take(&p, v)
    };
    let low_threshold = {
        let p = f("charge_low_threshold");
        let v = parsed::<u64>(&p, "an integer").and_then(|v| level(&p, v));
        t.take(&p, v)
    };
    let dpi = {
        let p = f("dpi");
        let v = sysfs::read(&p).and_then(|s| {
            if s.is_empty() {
                return Err(Missing::Absent);
            }
            parse_dpi(&s).ok_or_else(|| {
                Missing::Malformed(format!("{}: not X:Y or a number: {s:?}", p.display()))
            })
        });
        t.take(&p, v)
    };
    let poll_rate = t.take(&f("poll_rate"), parsed(&f("poll_rate"), "a rate in Hz"));
    let idle_time = t.take(
        &f("device_idle_time"),
        parsed(&f("device_idle_time"), "seconds"),
    );
    let mut brightness = Vec::new();
    if let Ok(entries) = sysfs::entries(dir) {
        for (file, path) in entries {
            let Some(zone) = brightness_zone(&file) else {
                continue;
            };
            let v = parsed::<u64>(&path, "an integer").and_then(|v| level(&path, v));
            // Listed, then gone while the device is still there: counted, not absent.
            let v = match v {
                Err(Missing::Absent) if !path.exists() && dir.exists() => Err(Missing::Failed(
                    format!("{}: vanished while it was read", path.display()),
                )),
                v => v,
            };
            if let Some(r) = t.take(&path, v) {
                brightness.push((zone.to_owned(), r));
            }
        }
    }
    Peripheral {
        device,
        kind,
        driver,
        name,
        firmware,
        battery,
        charging,
        low_threshold,
        dpi,
        poll_rate,
        brightness,
        idle_time,
    }
}

/// Every openrazer device under `sysfs`, and what went wrong reading them.
fn scan(sysfs: &Path) -> (Vec<Peripheral>, Trouble) {
    let mut t = Trouble::default();
    let mut out: Vec<Peripheral> = Vec::new();
    for (driver, kind) in DRIVERS {
        let dir = sysfs.join("bus/hid/drivers").join(driver);
        let entries = match sysfs::entries(&dir) {
            Ok(e) => e,
            Err(e) => {
                t.item_errors
                    .push(format!("cannot list {}: {e}", dir.display()));
                continue;
            }
        };
        for (name, path) in entries {
            let Some((vendor, product)) = usb::ids_of_hid_name(&name) else {
                continue; // bind, unbind, module, new_id, uevent
            };
            if !path.exists() {
                // Listed, then unplugged before it could be read.
                t.item_errors
                    .push(format!("{}: vanished while it was read", path.display()));
                continue;
            }
            if !path.join("device_type").exists() {
                continue; // an interface the driver made no files on
            }
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let mut device = match usb::location(&real) {
                Some(loc) => usb::interface_id(vendor, product, &loc),
                // Not on USB (a test tree, a virtual device): the HID name's instance.
                None => format!(
                    "{vendor:04X}:{product:04X}@{}",
                    name.rsplit('.').next().unwrap_or("")
                ),
            };
            if out.iter().any(|p| p.device == device) {
                device = format!("{device}#{name}");
            }
            let read = read_device(&path, device, driver, kind, &mut t);
            // Unplugged while it was read: its files answered ENOENT, which reads as absent,
            // so what was read is a half reading. Left out and counted.
            if !path.exists() {
                t.item_errors
                    .push(format!("{}: vanished while it was read", path.display()));
                continue;
            }
            out.push(read);
        }
    }
    (out, t)
}

/// The `openrazer` collector; see the module documentation.
pub struct OpenRazer {
    interval: Duration,
    timeout: Duration,
}

impl OpenRazer {
    pub fn new(interval: Duration, timeout: Duration) -> OpenRazer {
        OpenRazer { interval, timeout }
    }
}

impl Collector for OpenRazer {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let (devices, trouble) = scan(&ctx.sysfs);
        write(out, &devices);
        for e in &trouble.item_errors {
            out.item_error(e.clone());
        }
        finish(trouble)
    }
}

/// A refused read fails the run (what could be read is still served).
fn finish(trouble: Trouble) -> anyhow::Result<()> {
    if let Some(first) = trouble.denied.first() {
        anyhow::bail!(
            "permission denied reading {} ({} file(s) in all): openrazer's files are readable \
             by root and the plugdev group; run the exporter in group plugdev",
            first.display(),
            trouble.denied.len()
        );
    }
    Ok(())
}

fn flag(b: Option<bool>) -> Option<f64> {
    b.map(|b| if b { 1.0 } else { 0.0 })
}

const FIELDS: &[Field<Peripheral>] = &[
    Field::gauge("battery_ratio", HELP.battery_ratio, |p| p.battery),
    Field::gauge("battery_charging", HELP.battery_charging, |p| {
        flag(p.charging)
    }),
    Field::gauge(
        "battery_low_threshold_ratio",
        HELP.battery_low_threshold,
        |p| p.low_threshold,
    ),
    Field::gauge("poll_rate_hertz", HELP.poll_rate, |p| {
        p.poll_rate.map(f64::from)
    }),
    Field::gauge("idle_time_seconds", HELP.idle_time, |p| {
        p.idle_time.map(f64::from)
    }),
];

const DPI: &[SplitField<Peripheral>] = &[SplitField::gauge(
    "dpi",
    HELP.dpi,
    "axis",
    &[
        ("x", |p| p.dpi.map(|(x, _)| f64::from(x))),
        ("y", |p| p.dpi.map(|(_, y)| f64::from(y))),
    ],
)];

fn write(out: &mut Sink, devices: &[Peripheral]) {
    out.gauge("devices", HELP.devices)
        .sample(&[("source", "openrazer")], devices.len() as f64);
    let mut info = out.gauge("device_info", HELP.device_info);
    for p in devices {
        info.sample(
            &[
                ("device", p.device.as_str()),
                ("type", p.kind),
                ("name", p.name.as_str()),
                ("firmware", p.firmware.as_str()),
                ("driver", p.driver),
            ],
            1.0,
        );
    }
    let mut brightness = out.gauge("brightness_ratio", HELP.brightness);
    for p in devices {
        for (zone, r) in &p.brightness {
            brightness.sample(
                &[("device", p.device.as_str()), ("zone", zone.as_str())],
                *r,
            );
        }
    }
    let by_device = || devices.iter().map(|p| (p.device.as_str(), p));
    out.fields_by_label(FIELDS, "device", by_device());
    let labels: Vec<[(&str, &str); 1]> = devices
        .iter()
        .map(|p| [("device", p.device.as_str())])
        .collect();
    let rows: Vec<(&[(&str, &str)], &Peripheral)> = labels
        .iter()
        .zip(devices)
        .map(|(l, p)| (&l[..], p))
        .collect();
    out.split_fields(DPI, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{collect, fixture};
    use odin_testkit::sink_value;

    fn device<'a>(ps: &'a [Peripheral], id: &str) -> &'a Peripheral {
        ps.iter().find(|p| p.device == id).unwrap_or_else(|| {
            panic!(
                "no {id} in {:?}",
                ps.iter().map(|p| &p.device).collect::<Vec<_>>()
            )
        })
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_dpi("1800:1600"), Some((1800, 1600)));
        assert_eq!(parse_dpi("450"), Some((450, 450)));
        assert_eq!(parse_dpi("x:1"), None);
        assert_eq!(parse_dpi(""), None);
        assert_eq!(brightness_zone("matrix_brightness"), Some("matrix"));
        assert_eq!(brightness_zone("logo_led_brightness"), Some("logo"));
        assert_eq!(brightness_zone("scroll_led_brightness"), Some("scroll"));
        assert_eq!(brightness_zone("_brightness"), None);
        assert_eq!(brightness_zone("logo_led_effect"), None);
    }

    #[test]
    fn the_desk_fixture() {
        let (ps, t) = scan(&fixture("desk").join("sys"));
        assert!(t.denied.is_empty());
        assert_eq!(ps.len(), 6, "{ps:#?}");

        let kbd = device(&ps, "1532:028A@1-8:1.0");
        assert_eq!((kbd.kind, kbd.driver), ("keyboard", "razerkbd"));
        assert_eq!(kbd.name, "Razer Blade 15 Advanced (Early 2022)");
        assert_eq!(kbd.firmware, "v1.2");
        assert_eq!(kbd.battery, None);
        assert_eq!(
            kbd.brightness,
            vec![("logo".into(), 0.0), ("matrix".into(), 1.0)]
        );

        let charging = device(&ps, "1532:00B7@3-2:1.0");
        assert_eq!(charging.kind, "mouse");
        assert_eq!(charging.battery, Some(64.0 / 255.0));
        assert_eq!(charging.charging, Some(true));
        assert_eq!(charging.low_threshold, Some(38.0 / 255.0));
        assert_eq!(charging.dpi, Some((1800, 1600)));
        assert_eq!(charging.poll_rate, Some(1000));
        assert_eq!(charging.idle_time, Some(300));
        assert_eq!(
            charging.brightness,
            vec![
                ("logo".into(), 100.0 / 255.0),
                ("scroll".into(), 100.0 / 255.0)
            ]
        );

        let discharging = device(&ps, "1532:0090@3-3:1.0");
        assert_eq!(
            (discharging.battery, discharging.charging),
            (Some(20.0 / 255.0), Some(false))
        );

        let old = device(&ps, "1532:0016@1-3:1.0");
        assert_eq!(old.dpi, Some((450, 450)), "one number is both axes");
        assert_eq!(old.firmware, "", "firmware_version answers EINVAL: absent");

        let dock = device(&ps, "1532:007E@1-4:1.0");
        assert_eq!(
            (dock.kind, dock.battery, dock.charging),
            ("accessory", None, None)
        );

        let headset = device(&ps, "1532:0527@1-5:1.3");
        assert_eq!(headset.kind, "headset");

        // garbage: charge_level "lots", poll_rate 9999999999999999999999, brightness 300
        assert_eq!(t.item_errors.len(), 3, "{:#?}", t.item_errors);
        assert!(t
            .item_errors
            .iter()
            .any(|e| e.contains("charge_level") && e.contains("lots")));
        assert!(t.item_errors.iter().any(|e| e.contains("outside 0-255")));
    }

    #[test]
    fn metrics_from_the_fixture() {
        let out = collect(
            &OpenRazer::new(Duration::from_secs(30), Duration::from_secs(10)),
            "desk",
        );
        assert_eq!(
            sink_value(&out, "razer_devices", &[("source", "openrazer")]),
            Some(6.0)
        );
        assert_eq!(
            sink_value(
                &out,
                "razer_dpi",
                &[("device", "1532:0016@1-3:1.0"), ("axis", "y")]
            ),
            Some(450.0)
        );
        assert_eq!(
            sink_value(
                &out,
                "razer_battery_charging",
                &[("device", "1532:0090@3-3:1.0")]
            ),
            Some(0.0)
        );
        assert_eq!(
            sink_value(
                &out,
                "razer_device_info",
                &[
                    ("device", "1532:007E@1-4:1.0"),
                    ("type", "accessory"),
                    ("name", "Razer Mouse Dock Chroma"),
                    ("firmware", "v1.0"),
                    ("driver", "razeraccessory"),
                ]
            ),
            Some(1.0)
        );
        assert_eq!(out.item_errors().len(), 3);
    }

    #[test]
    fn no_razer_device_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = odin_testkit::fixture_context(dir.path());
        let mut out = Sink::new("razer");
        OpenRazer::new(Duration::from_secs(30), Duration::from_secs(10))
            .collect(&ctx, &mut out)
            .unwrap();
        assert_eq!(
            sink_value(&out, "razer_devices", &[("source", "openrazer")]),
            Some(0.0)
        );
        assert!(out.item_errors().is_empty());
    }

    #[test]
    fn a_refused_read_fails_the_run_naming_plugdev() {
        // Tests run as root here, which mode bits do not stop: the refusal is handed in as
        // the sysfs reader reports it.
        let mut t = Trouble::default();
        assert_eq!(
            t.take::<u8>(Path::new("/sys/x/charge_level"), Err(Missing::Denied)),
            None
        );
        let err = finish(t).unwrap_err().to_string();
        assert!(
            err.contains("/sys/x/charge_level") && err.contains("plugdev"),
            "{err}"
        );
        assert!(finish(Trouble::default()).is_ok());
    }

    #[test]
    fn an_einval_read_is_absent() {
        // A file whose read fails with EINVAL, as an unsupported openrazer attribute does:
        // /proc/self/clear_refs has no read method. Linked in place of the old mouse's
        // firmware_version.
        let probe = std::fs::read("/proc/self/clear_refs");
        if probe.as_ref().err().and_then(|e| e.raw_os_error()) != Some(libc::EINVAL) {
            eprintln!("skipped: /proc/self/clear_refs does not answer EINVAL here ({probe:?})");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        odin_testkit::copy_tree(&fixture("desk"), dir.path());
        let f = dir.path().join(
            "sys/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/0003:1532:0016.0003/firmware_version",
        );
        std::os::unix::fs::symlink("/proc/self/clear_refs", &f).unwrap();
        let (ps, t) = scan(&dir.path().join("sys"));
        assert_eq!(device(&ps, "1532:0016@1-3:1.0").firmware, "");
        assert_eq!(
            t.item_errors.len(),
            3,
            "EINVAL is no item error: {:#?}",
            t.item_errors
        );
    }
}
