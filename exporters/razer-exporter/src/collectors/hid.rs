//! `hid`: the Blade laptop's embedded controller through its hidraw node, in the background
//! every `--hid.interval` within `--hid.timeout`: power mode, CPU and GPU boost, the fan
//! speeds it holds, keyboard brightness, the battery health optimizer. GET commands only
//! ([`crate::hid::report`]).
//!
//! Laptops are found under `<sysfs>/class/hidraw/` (Razer's vendor id and a laptop product
//! id); their nodes are `<--path.dev>/hidrawN`, tried lowest interface first until one
//! answers. A node that is not there (a container without device access) is noted in
//! `/health`, no failure; a node this user may not open fails the run, naming the udev rule
//! that grants it. With `--hid.replay=FILE` the laptops and their answers come from the file.
//!
//! Writes `razer_devices{source="hid"}` (laptops found) and per laptop `razer_device_info`
//! (`type="laptop"`, `driver` `hidraw` or `replay`), `razer_power_mode{mode}`,
//! `razer_power_mode_raw`, `razer_boost{component,level}`, `razer_fan_target_rpm{zone}`,
//! `razer_fan_automatic{zone}`, `razer_brightness_ratio{zone="keyboard"}`,
//! `razer_battery_optimizer_enabled`, `razer_battery_optimizer_threshold_ratio`,
//! `razer_hid_requests_total`, `razer_hid_errors_total{kind}`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use odin_common::{Collector, Context, Field, Mode, Sink, SplitField};

use crate::hid::replay::{ReplayLaptop, Replayed};
use crate::hid::report::Problem;
use crate::hid::transport::Hidraw;
use crate::hid::{self, Controller, Reading, CPU_BOOST, GPU_BOOST, POWER_MODES};
use crate::HELP;

/// Where laptops come from.
#[derive(Clone)]
pub enum Source {
    /// hidraw nodes under this directory (`--path.dev`).
    Devices(PathBuf),
    /// A replay file's laptops.
    Replay(Vec<ReplayLaptop>),
}

struct Laptop {
    product: u16,
    driver: &'static str,
    controller: Controller,
    /// Whether the controller talks to a node now.
    open: Option<PathBuf>,
    /// The last good firmware version (kept through a failed read).
    firmware: Option<String>,
    reading: Reading,
}

#[derive(Default)]
struct State {
    laptops: BTreeMap<String, Laptop>,
    started: bool,
    detail: Option<String>,
}

/// The `hid` collector; see the module documentation.
pub struct Hid {
    source: Source,
    interval: Duration,
    timeout: Duration,
    state: Mutex<State>,
}

impl Hid {
    pub fn new(source: Source, interval: Duration, timeout: Duration) -> Hid {
        Hid {
            source,
            interval,
            timeout,
            state: Mutex::new(State::default()),
        }
    }
}

/// Why a node could not be used.
enum Refused {
    Missing,
    Denied(String),
    Other(String),
}

fn open(node: &Path) -> Result<Hidraw, Refused> {
    Hidraw::open(node).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Refused::Missing,
        io::ErrorKind::PermissionDenied => Refused::Denied(format!("{}: {e}", node.display())),
        _ => Refused::Other(format!("{}: {e}", node.display())),
    })
}

impl Collector for Hid {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut notes = Vec::new();
        let mut denied = Vec::new();
        match &self.source {
            Source::Replay(laptops) => {
                if !st.started {
                    for l in laptops {
                        st.laptops.insert(
                            l.device.clone(),
                            Laptop {
                                product: l.product,
                                driver: "replay",
                                controller: Controller::new(Box::new(Replayed::new(
                                    l.script.clone(),
                                ))),
                                open: Some(PathBuf::from("replay")),
                                firmware: None,
                                reading: Reading::default(),
                            },
                        );
                    }
                }
                for l in st.laptops.values_mut() {
                    l.reading = l.controller.read();
                }
            }
            Source::Devices(dev) => {
                let (found, find_notes) = hid::find(&ctx.sysfs, dev);
                notes.extend(find_notes);
                st.laptops
                    .retain(|id, _| found.iter().any(|f| &f.device == id));
                for f in found {
                    let l = st
                        .laptops
                        .entry(f.device.clone())
                        .or_insert_with(|| Laptop {
                            product: f.product,
                            driver: "hidraw",
                            controller: Controller::new(Box::new(NoNode)),
                            open: None,
                            firmware: None,
                            reading: Reading::default(),
                        });
                    if l.controller.broken.is_some() {
                        l.open = None;
                    }
                    if l.open.is_some() {
                        l.reading = l.controller.read();
                        continue;
                    }
                    // Try each node, lowest interface first, until one answers.
                    l.reading = Reading::default();
                    let mut missing = 0;
                    for node in &f.nodes {
                        match open(node) {
                            Ok(h) => {
                                l.controller.set_transport(Box::new(h));
                                let r = l.controller.read();
                                if r.answered {
                                    l.open = Some(node.clone());
                                    l.reading = r;
                                    break;
                                }
                            }
                            Err(Refused::Missing) => missing += 1,
                            Err(Refused::Denied(why)) => denied.push(why),
                            Err(Refused::Other(why)) => notes.push(why),
                        }
                    }
                    if l.open.is_none() {
                        if missing == f.nodes.len() {
                            notes.push(format!(
                                "{}: no hidraw node under {} (no device access here)",
                                f.device,
                                dev.display()
                            ));
                        } else {
                            notes.push(format!("{}: no interface answered", f.device));
                        }
                    }
                }
            }
        }
        st.started = true;
        for l in st.laptops.values_mut() {
            if l.reading.firmware.is_some() {
                l.firmware = l.reading.firmware.clone();
            }
        }
        write(out, &st.laptops);
        st.detail = Some(detail(&st.laptops, &notes));
        if let Some(first) = denied.first() {
            anyhow::bail!(
                "permission denied opening {first} ({} node(s) in all): the Blade's hidraw node is \
                 readable by root and, with deploy/udev/70-odin-razer-hidraw.rules, the plugdev \
                 group; run the exporter in group plugdev",
                denied.len()
            );
        }
        Ok(())
    }

    fn detail(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .detail
            .clone()
    }
}

/// The transport of a laptop whose node is not open yet: never used for a request.
struct NoNode;

impl hid::transport::Transport for NoNode {
    fn exchange(
        &mut self,
        _: &hid::report::Request,
    ) -> Result<Vec<u8>, hid::transport::TransportError> {
        Err(hid::transport::TransportError::Io("no node open".into()))
    }
}

fn detail(laptops: &BTreeMap<String, Laptop>, notes: &[String]) -> String {
    let mut parts: Vec<String> = laptops
        .iter()
        .map(|(id, l)| {
            let via = l
                .open
                .as_ref()
                .map_or("no node".to_owned(), |p| p.display().to_string());
            let unsupported = l.controller.unsupported();
            if unsupported.is_empty() {
                format!("{id} via {via}")
            } else {
                format!("{id} via {via} (not supported: {})", unsupported.join(", "))
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push("no Razer laptop found".into());
    }
    parts.extend(notes.iter().cloned());
    parts.join("; ")
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

const FIELDS: &[Field<Laptop>] = &[
    Field::gauge("power_mode_raw", HELP.power_mode_raw, |l| {
        l.reading.power_mode.map(f64::from)
    }),
    Field::gauge("battery_optimizer_enabled", HELP.optimizer_enabled, |l| {
        l.reading.optimizer.map(|(on, _)| flag(on))
    }),
    Field::gauge(
        "battery_optimizer_threshold_ratio",
        HELP.optimizer_threshold,
        |l| l.reading.optimizer.map(|(_, t)| f64::from(t) / 100.0),
    ),
    Field::counter("hid_requests_total", HELP.hid_requests, |l| {
        Some(l.controller.requests as f64)
    }),
];

/// The speed held in a fan zone; `None` while automatic or unread.
fn target(rpm: Option<u32>) -> Option<f64> {
    rpm.filter(|&r| r > 0).map(f64::from)
}

const SPLIT: &[SplitField<Laptop>] = &[
    SplitField::gauge(
        "fan_target_rpm",
        HELP.fan_target_rpm,
        "zone",
        &[
            ("1", |l| target(l.reading.fan_rpm[0])),
            ("2", |l| target(l.reading.fan_rpm[1])),
        ],
    ),
    SplitField::gauge(
        "fan_automatic",
        HELP.fan_automatic,
        "zone",
        &[
            ("1", |l| l.reading.fan_rpm[0].map(|r| flag(r == 0))),
            ("2", |l| l.reading.fan_rpm[1].map(|r| flag(r == 0))),
        ],
    ),
    SplitField::gauge(
        "brightness_ratio",
        HELP.brightness,
        "zone",
        &[("keyboard", |l| {
            l.reading.keyboard_brightness.map(|b| f64::from(b) / 255.0)
        })],
    ),
];

fn write(out: &mut Sink, laptops: &BTreeMap<String, Laptop>) {
    out.gauge("devices", HELP.devices)
        .sample(&[("source", "hid")], laptops.len() as f64);
    let mut info = out.gauge("device_info", HELP.device_info);
    for (id, l) in laptops {
        let name = hid::laptop_name(l.product)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Razer laptop {:04X}", l.product));
        info.sample(
            &[
                ("device", id.as_str()),
                ("type", "laptop"),
                ("name", name.as_str()),
                ("firmware", l.firmware.as_deref().unwrap_or("")),
                ("driver", l.driver),
            ],
            1.0,
        );
    }
    // State sets: one sample per state, 1 for the current one.
    let mut modes = out.gauge("power_mode", HELP.power_mode);
    for (id, l) in laptops {
        let Some(m) = l.reading.power_mode else {
            continue;
        };
        let current = hid::power_mode_name(m);
        for mode in POWER_MODES {
            modes.sample(
                &[("device", id.as_str()), ("mode", mode)],
                current == Some(mode),
            );
        }
    }
    let mut boost = out.gauge("boost", HELP.boost);
    for (id, l) in laptops {
        let r = &l.reading;
        for (component, levels, level) in [
            ("cpu", CPU_BOOST, r.boost_cpu),
            ("gpu", GPU_BOOST, r.boost_gpu),
        ] {
            let Some(level) = level else { continue };
            for (i, name) in levels.iter().enumerate() {
                boost.sample(
                    &[
                        ("device", id.as_str()),
                        ("component", component),
                        ("level", name),
                    ],
                    usize::from(level) == i,
                );
            }
        }
    }
    let mut errors = out.counter("hid_errors_total", HELP.hid_errors);
    for (id, l) in laptops {
        for p in Problem::ALL {
            let n = l.controller.errors.get(&p).copied().unwrap_or(0);
            errors.sample(&[("device", id.as_str()), ("kind", p.kind())], n);
        }
    }
    out.fields_by_label(
        FIELDS,
        "device",
        laptops.iter().map(|(id, l)| (id.as_str(), l)),
    );
    let labels: Vec<[(&str, &str); 1]> =
        laptops.keys().map(|id| [("device", id.as_str())]).collect();
    let rows: Vec<(&[(&str, &str)], &Laptop)> = labels
        .iter()
        .zip(laptops.values())
        .map(|(l, x)| (&l[..], x))
        .collect();
    out.split_fields(SPLIT, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hid::replay::load;
    use crate::test_support::fixture;
    use odin_testkit::sink_value;

    fn run(hid: &Hid, root: &Path) -> Sink {
        let mut out = Sink::new("razer");
        hid.collect(&odin_testkit::fixture_context(root), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn replayed_laptop() {
        let hid = Hid::new(
            Source::Replay(
                load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/blade-15.toml")).unwrap(),
            ),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = run(&hid, dir.path());
        let d = ("device", "1532:028A@1-8");
        let v = |name: &str, extra: &[(&str, &str)]| {
            let mut l = vec![d];
            l.extend_from_slice(extra);
            sink_value(&out, name, &l)
        };
        assert_eq!(
            sink_value(&out, "razer_devices", &[("source", "hid")]),
            Some(1.0)
        );
        assert_eq!(
            v(
                "razer_device_info",
                &[
                    ("type", "laptop"),
                    ("name", "Razer Blade 15 Advanced (Early 2022)"),
                    ("firmware", "v1.2"),
                    ("driver", "replay")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(v("razer_power_mode", &[("mode", "gaming")]), Some(1.0));
        assert_eq!(v("razer_power_mode", &[("mode", "balanced")]), Some(0.0));
        assert_eq!(v("razer_power_mode_raw", &[]), Some(1.0));
        assert_eq!(
            v("razer_boost", &[("component", "cpu"), ("level", "high")]),
            Some(1.0)
        );
        assert_eq!(
            v("razer_boost", &[("component", "cpu"), ("level", "boost")]),
            Some(0.0)
        );
        assert_eq!(
            v("razer_boost", &[("component", "gpu"), ("level", "medium")]),
            Some(1.0)
        );
        assert_eq!(v("razer_fan_target_rpm", &[("zone", "1")]), Some(4200.0));
        assert_eq!(v("razer_fan_automatic", &[("zone", "1")]), Some(0.0));
        assert_eq!(
            v("razer_fan_target_rpm", &[("zone", "2")]),
            None,
            "automatic: no target"
        );
        assert_eq!(v("razer_fan_automatic", &[("zone", "2")]), Some(1.0));
        assert_eq!(
            v("razer_brightness_ratio", &[("zone", "keyboard")]),
            Some(128.0 / 255.0)
        );
        assert_eq!(v("razer_battery_optimizer_enabled", &[]), Some(1.0));
        assert_eq!(v("razer_battery_optimizer_threshold_ratio", &[]), Some(0.8));
        assert_eq!(
            v("razer_hid_errors_total", &[("kind", "not_supported")]),
            Some(0.0)
        );
        assert_eq!(v("razer_hid_errors_total", &[("kind", "busy")]), Some(1.0));
        assert_eq!(
            v("razer_hid_errors_total", &[("kind", "bad_crc")]),
            Some(0.0)
        );
        assert_eq!(v("razer_hid_requests_total", &[]), Some(9.0));

        let out = run(&hid, dir.path());
        assert_eq!(
            sink_value(&out, "razer_hid_requests_total", &[d]),
            Some(9.0 + 8.0),
            "the busy answer came once"
        );
        assert_eq!(hid.detail().as_deref(), Some("1532:028A@1-8 via replay"));
    }

    #[test]
    fn laptop_without_device_access_is_noted_not_failed() {
        // The desk fixture has the Blade's three hidraw entries in sysfs; /dev here is an
        // empty directory.
        let dev = tempfile::tempdir().unwrap();
        let hid = Hid::new(
            Source::Devices(dev.path().to_owned()),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let out = run(&hid, &fixture("desk"));
        assert_eq!(
            sink_value(&out, "razer_devices", &[("source", "hid")]),
            Some(1.0)
        );
        assert_eq!(
            sink_value(
                &out,
                "razer_hid_requests_total",
                &[("device", "1532:028A@1-8")]
            ),
            Some(0.0)
        );
        let detail = hid.detail().unwrap();
        assert!(detail.contains("1532:028A@1-8 via no node"), "{detail}");
        assert!(detail.contains("no hidraw node under"), "{detail}");
    }

    #[test]
    fn nodes_are_tried_lowest_interface_first_and_a_file_is_not_a_device() {
        let (found, notes) = hid::find(&fixture("desk").join("sys"), Path::new("/dev"));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            found,
            [hid::Found {
                device: "1532:028A@1-8".into(),
                product: 0x028A,
                nodes: ["/dev/hidraw0", "/dev/hidraw1", "/dev/hidraw2"]
                    .map(PathBuf::from)
                    .to_vec(),
            }],
            "the mouse's hidraw3 is no laptop"
        );
        // Regular files in place of the nodes: the ioctls fail, nothing answers, no panic.
        let dev = tempfile::tempdir().unwrap();
        for n in ["hidraw0", "hidraw1", "hidraw2"] {
            std::fs::write(dev.path().join(n), b"").unwrap();
        }
        let hid = Hid::new(
            Source::Devices(dev.path().to_owned()),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let out = run(&hid, &fixture("desk"));
        let d = ("device", "1532:028A@1-8");
        assert_eq!(
            sink_value(&out, "razer_hid_errors_total", &[d, ("kind", "io")]),
            Some(3.0)
        );
        assert!(hid.detail().unwrap().contains("no interface answered"));
    }

    #[test]
    fn no_laptop_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let hid = Hid::new(
            Source::Devices(dir.path().join("dev")),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let out = run(&hid, dir.path());
        assert_eq!(
            sink_value(&out, "razer_devices", &[("source", "hid")]),
            Some(0.0)
        );
        assert_eq!(hid.detail().as_deref(), Some("no Razer laptop found"));
    }
}
