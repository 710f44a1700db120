//! The Blade laptop's embedded controller, over HID feature reports: the report format and
//! the GETs ([`report`]), the transports ([`transport`]: hidraw; [`replay`]: a file or a
//! script), finding the laptop's hidraw nodes, and one read of every value ([`Controller`]).

pub mod replay;
pub mod report;
pub mod transport;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use report::{decode, encode, Get, Problem, TRANSACTION_ID};
use transport::{Transport, TransportError};

use crate::usb;

/// Razer's USB vendor id.
pub const VENDOR: u16 = 0x1532;

/// Razer laptops by USB product id, with the model names openrazer gives them. Their keyboard
/// interface carries the embedded controller's reports. The four without a model name are
/// 2024-2025 Blades that openrazer lists as laptops.
pub const LAPTOPS: &[(u16, &str)] = &[
    (0x0205, "Razer Blade Stealth"),
    (0x020F, "Razer Blade Stealth (QHD)"),
    (0x0210, "Razer Blade Pro (Late 2016)"),
    (0x0220, "Razer Blade Stealth (Late 2016)"),
    (0x0224, "Razer Blade (Late 2016)"),
    (0x0225, "Razer Blade Pro (2017)"),
    (0x022D, "Razer Blade Stealth (Mid 2017)"),
    (0x022F, "Razer Blade Pro FullHD (2017)"),
    (0x0232, "Razer Blade Stealth (Late 2017)"),
    (0x0233, "Razer Blade 15 (2018)"),
    (0x0234, "Razer Blade Pro (2019)"),
    (0x0239, "Razer Blade Stealth (2019)"),
    (0x023A, "Razer Blade 15 (2019) Advanced"),
    (0x023B, "Razer Blade 15 (2018) Base Model"),
    (0x0240, "Razer Blade 15 (2018) Mercury"),
    (0x0245, "Razer Blade 15 (Mid 2019) Mercury White"),
    (0x0246, "Razer Blade 15 (2019) Base Model"),
    (0x024A, "Razer Blade Stealth (Late 2019)"),
    (0x024C, "Razer Blade Pro (Late 2019)"),
    (0x024D, "Razer Blade 15 Studio Edition (2019)"),
    (0x0252, "Razer Blade Stealth (Early 2020)"),
    (0x0253, "Razer Blade 15 Advanced (2020)"),
    (0x0255, "Razer Blade 15 Base (Early 2020)"),
    (0x0256, "Razer Blade Pro (Early 2020)"),
    (0x0259, "Razer Blade Stealth (Late 2020)"),
    (0x026A, "Razer Book 13 (2020)"),
    (0x026D, "Razer Blade 15 Advanced (Early 2021)"),
    (0x026E, "Razer Blade 17 Pro (Early 2021)"),
    (0x026F, "Razer Blade 15 Base (Early 2021)"),
    (0x0270, "Razer Blade 14 (2021)"),
    (0x0276, "Razer Blade 15 Advanced (Mid 2021)"),
    (0x0279, "Razer Blade 17 Pro (Mid 2021)"),
    (0x027A, "Razer Blade 15 Base (2022)"),
    (0x028A, "Razer Blade 15 Advanced (Early 2022)"),
    (0x028B, "Razer Blade 17 (2022)"),
    (0x028C, "Razer Blade 14 (2022)"),
    (0x029E, "Razer Blade 15 (2023)"),
    (0x029F, "Razer Blade 16 (2023)"),
    (0x02A0, "Razer Blade 18 (2023)"),
    (0x02B6, "Razer Blade"),
    (0x02B7, "Razer Blade"),
    (0x02C5, "Razer Blade"),
    (0x02C6, "Razer Blade"),
];

/// The model name of a Razer laptop's product id; `None` for anything else.
pub fn laptop_name(product: u16) -> Option<&'static str> {
    LAPTOPS.iter().find(|(p, _)| *p == product).map(|(_, n)| *n)
}

/// Names of the power mode numbers. Tools disagree on some (the raw number is exported too):
/// these are the ones Razer's own and the community's Linux tools agree on for 2019+ Blades.
pub fn power_mode_name(mode: u8) -> Option<&'static str> {
    Some(match mode {
        0 => "balanced",
        1 => "gaming",
        2 => "creator",
        4 => "custom",
        5 => "silent",
        _ => return None,
    })
}

/// Every power mode label of the state set, in order.
pub const POWER_MODES: &[&str] = &["balanced", "gaming", "creator", "custom", "silent"];

/// Boost levels of the CPU (0-3) and the GPU (0-2).
pub const CPU_BOOST: &[&str] = &["low", "medium", "high", "boost"];
pub const GPU_BOOST: &[&str] = &["low", "medium", "high"];

/// What one read of a controller got; `None` where the value was not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub firmware: Option<String>,
    pub power_mode: Option<u8>,
    pub boost_cpu: Option<u8>,
    pub boost_gpu: Option<u8>,
    /// Fan zones 1 and 2: the held speed in rpm, 0 for automatic.
    pub fan_rpm: [Option<u32>; 2],
    pub keyboard_brightness: Option<u8>,
    /// Battery health optimizer: on/off and threshold in %.
    pub optimizer: Option<(bool, u8)>,
    /// Whether any request got a good answer.
    pub answered: bool,
}

/// How often a busy or timed-out request is sent in all.
pub const ATTEMPTS: u32 = 3;

/// A laptop's controller behind a transport, with what it learned: requests it does not
/// support (asked once, not again) and its request and error counts.
pub struct Controller {
    transport: Box<dyn Transport>,
    unsupported: HashSet<&'static str>,
    pub requests: u64,
    pub errors: BTreeMap<Problem, u64>,
    /// Set when the transport itself failed (the node went away): the caller opens it again.
    pub broken: Option<String>,
}

impl Controller {
    pub fn new(transport: Box<dyn Transport>) -> Controller {
        Controller {
            transport,
            unsupported: HashSet::new(),
            requests: 0,
            errors: BTreeMap::new(),
            broken: None,
        }
    }

    /// Talk through another transport from now on (the node was opened again, or another
    /// interface is tried); counts are kept, what was learned about support is not.
    pub fn set_transport(&mut self, transport: Box<dyn Transport>) {
        self.transport = transport;
        self.unsupported.clear();
        self.broken = None;
    }

    /// Requests found unsupported so far, by name.
    pub fn unsupported(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.unsupported.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Send `get` (again while the device says busy or timed out, [`ATTEMPTS`] times in all);
    /// every request and every answer not used is counted.
    pub fn ask(&mut self, get: &Get) -> Result<[u8; 80], Problem> {
        let mut last = Problem::NoAnswer;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(self.transport.retry_delay());
            }
            self.requests += 1;
            let result = match self.transport.exchange(&encode(get, TRANSACTION_ID)) {
                Ok(bytes) => decode(get, TRANSACTION_ID, &bytes),
                Err(TransportError::NoAnswer) => Err(Problem::NoAnswer),
                Err(TransportError::Io(msg)) => {
                    self.broken = Some(msg);
                    Err(Problem::Io)
                }
            };
            match result {
                Ok(args) => return Ok(args),
                Err(p) => {
                    *self.errors.entry(p).or_default() += 1;
                    if p == Problem::NotSupported {
                        self.unsupported.insert(get.name());
                    }
                    last = p;
                    if !p.retry() {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Ask every supported request once; stops early when the transport breaks.
    pub fn read(&mut self) -> Reading {
        let mut r = Reading::default();
        for get in report::ALL {
            if self.unsupported.contains(get.name()) {
                continue;
            }
            if self.broken.is_some() {
                break;
            }
            let Ok(a) = self.ask(get) else { continue };
            r.answered = true;
            match get.name() {
                "firmware" => r.firmware = Some(format!("v{}.{}", a[0], a[1])),
                "power_mode" => r.power_mode = Some(a[2]),
                "boost_cpu" => r.boost_cpu = Some(a[2]),
                "boost_gpu" => r.boost_gpu = Some(a[2]),
                "fan_1" => r.fan_rpm[0] = Some(u32::from(a[2]) * 100),
                "fan_2" => r.fan_rpm[1] = Some(u32::from(a[2]) * 100),
                "keyboard_brightness" => r.keyboard_brightness = Some(a[1]),
                "battery_optimizer" => r.optimizer = Some((a[0] & 0x80 != 0, a[0] & 0x7f)),
                other => unreachable!("request {other} has no reader"),
            }
        }
        r
    }
}

/// A Razer laptop found through sysfs: its id, product, and its hidraw nodes, lowest
/// interface first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub device: String,
    pub product: u16,
    pub nodes: Vec<PathBuf>,
}

/// `HID_ID=0003:00001532:0000028A` of a uevent file: (bus, vendor, product).
fn uevent_ids(text: &str) -> Option<(u32, u16, u16)> {
    let id = text.lines().find_map(|l| l.strip_prefix("HID_ID="))?;
    let mut p = id.trim().split(':');
    let bus = u32::from_str_radix(p.next()?, 16).ok()?;
    let vendor = u32::from_str_radix(p.next()?, 16).ok()?;
    let product = u32::from_str_radix(p.next()?, 16).ok()?;
    Some((
        bus,
        u16::try_from(vendor).ok()?,
        u16::try_from(product).ok()?,
    ))
}

/// Razer laptops among `<sysfs>/class/hidraw/*`, their nodes under `dev`. Problems reading
/// one entry are returned as notes (an entry that vanished is skipped silently).
pub fn find(sysfs: &Path, dev: &Path) -> (Vec<Found>, Vec<String>) {
    let mut notes = Vec::new();
    let mut by_device: BTreeMap<String, (u16, Vec<(u32, PathBuf)>)> = BTreeMap::new();
    let class = sysfs.join("class/hidraw");
    let entries = match odin_common::sysfs::entries(&class) {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!("cannot list {}: {e}", class.display()));
            return (Vec::new(), notes);
        }
    };
    for (name, path) in entries {
        let uevent = match odin_common::sysfs::read(&path.join("device/uevent")) {
            Ok(t) => t,
            Err(odin_common::sysfs::Missing::Absent) => continue,
            Err(e) => {
                notes.push(format!("{name}: device/uevent: {e:?}"));
                continue;
            }
        };
        let Some((_, vendor, product)) = uevent_ids(&uevent) else {
            continue;
        };
        if vendor != VENDOR || laptop_name(product).is_none() {
            continue;
        }
        let real = std::fs::canonicalize(path.join("device")).unwrap_or(path.join("device"));
        let (id, order) = match usb::location(&real) {
            Some(loc) => (
                usb::device_id(vendor, product, &loc),
                loc.interface_number().unwrap_or(u32::MAX),
            ),
            None => (format!("{vendor:04X}:{product:04X}@{name}"), 0),
        };
        let e = by_device.entry(id).or_insert((product, Vec::new()));
        e.1.push((order, dev.join(&name)));
    }
    let found = by_device
        .into_iter()
        .map(|(device, (product, mut nodes))| {
            nodes.sort();
            Found {
                device,
                product,
                nodes: nodes.into_iter().map(|(_, p)| p).collect(),
            }
        })
        .collect();
    (found, notes)
}

#[cfg(test)]
mod tests {
    use super::replay::{Answer, Replayed, Script};
    use super::report::*;
    use super::*;

    /// A Blade 15 (2022) controller as the fake answers it: every value.
    pub(crate) fn blade() -> Script {
        Script::new()
            .on(FIRMWARE, Answer::ok(&[1, 2]))
            .on(POWER_MODE, Answer::ok(&[0, 1, 1, 0]))
            .on(BOOST_CPU, Answer::ok(&[0, 1, 2]))
            .on(BOOST_GPU, Answer::ok(&[0, 2, 1]))
            .on(FAN_1, Answer::ok(&[0, 1, 42]))
            .on(FAN_2, Answer::ok(&[0, 2, 0]))
            .on(KEYBOARD_BRIGHTNESS, Answer::ok(&[1, 128]))
            .on(BATTERY_OPTIMIZER, Answer::ok(&[0x80 | 80]))
    }

    #[test]
    fn a_blade_reads_every_value() {
        let mut c = Controller::new(Box::new(Replayed::new(blade())));
        let r = c.read();
        assert_eq!(
            r,
            Reading {
                firmware: Some("v1.2".into()),
                power_mode: Some(1),
                boost_cpu: Some(2),
                boost_gpu: Some(1),
                fan_rpm: [Some(4200), Some(0)],
                keyboard_brightness: Some(128),
                optimizer: Some((true, 80)),
                answered: true,
            }
        );
        assert_eq!(c.requests, 8);
        assert!(c.errors.is_empty());
    }

    #[test]
    fn busy_is_retried_and_counted_unsupported_is_asked_once() {
        let script = blade()
            .on(POWER_MODE, Answer::status(Status::Busy, &[])) // after the good one: busy...
            .on(POWER_MODE, Answer::status(Status::Busy, &[]))
            .on(POWER_MODE, Answer::ok(&[0, 1, 4, 0])); // ...then custom
        let mut c = Controller::new(Box::new(Replayed::new(script.clone())));
        // The script's first power_mode answer is the good one from blade().
        assert_eq!(c.read().power_mode, Some(1));
        let r = c.read();
        assert_eq!(r.power_mode, Some(4), "two busy answers, then an answer");
        assert_eq!(c.errors.get(&Problem::Busy), Some(&2));
        assert_eq!(c.requests, 8 + 10);

        // A model without the battery optimizer: asked once, then left out.
        let mut c = Controller::new(Box::new(Replayed::new(
            Script::new().on(FIRMWARE, Answer::ok(&[1, 0])),
        )));
        let r = c.read();
        assert!(r.answered);
        assert_eq!(r.firmware.as_deref(), Some("v1.0"));
        assert_eq!(c.errors.get(&Problem::NotSupported), Some(&7));
        assert_eq!(c.unsupported().len(), 7);
        let before = c.requests;
        c.read();
        assert_eq!(c.requests, before + 1, "only firmware is asked again");
    }

    #[test]
    fn every_fault_drops_the_value_and_is_counted() {
        use super::replay::Reply;
        let mut bad_crc = Answer::ok(&[0, 1, 1, 0]);
        bad_crc.bad_crc = true;
        let mut wrong_txn = Answer::ok(&[0, 1, 2]);
        wrong_txn.transaction = Some(0x1f);
        let mut wrong_cmd = Answer::ok(&[0, 2, 1]);
        wrong_cmd.command = Some(0x82);
        let mut short = Answer::ok(&[0, 1, 42]);
        short.length = Some(40);
        let script = Script::new()
            .on(FIRMWARE, Answer::status(Status::Failure, &[]))
            .on(POWER_MODE, bad_crc)
            .on(BOOST_CPU, wrong_txn)
            .on(BOOST_GPU, wrong_cmd)
            .on(FAN_1, short)
            .raw(FAN_2, Reply::Silence)
            .on(KEYBOARD_BRIGHTNESS, Answer::status(Status::Timeout, &[]))
            .on(BATTERY_OPTIMIZER, Answer::status(Status::NotSupported, &[]));
        let mut c = Controller::new(Box::new(Replayed::new(script)));
        let r = c.read();
        assert_eq!(r, Reading::default(), "nothing usable");
        let kinds: Vec<(&str, u64)> = c.errors.iter().map(|(p, n)| (p.kind(), *n)).collect();
        assert_eq!(
            kinds,
            [
                ("failure", 1),
                ("timeout", 3),
                ("not_supported", 1),
                ("bad_crc", 1),
                ("wrong_transaction", 1),
                ("wrong_command", 1),
                ("short_read", 1),
                ("no_answer", 1),
            ]
        );
        assert_eq!(c.requests, 10);
        assert!(c.broken.is_none());
    }

    #[test]
    fn power_mode_and_boost_names() {
        assert_eq!(power_mode_name(1), Some("gaming"));
        assert_eq!(power_mode_name(3), None);
        for m in 0..=255u8 {
            if let Some(n) = power_mode_name(m) {
                assert!(POWER_MODES.contains(&n));
            }
        }
        assert_eq!(
            laptop_name(0x028A),
            Some("Razer Blade 15 Advanced (Early 2022)")
        );
        assert_eq!(laptop_name(0x0084), None);
    }

    #[test]
    fn uevent_ids_parse() {
        assert_eq!(
            uevent_ids(
                "DRIVER=razerkbd\nHID_ID=0003:00001532:0000028A\nHID_NAME=Razer Razer Blade\n"
            ),
            Some((3, 0x1532, 0x028a))
        );
        assert_eq!(uevent_ids("HID_ID=0003:xyz:0000028A\n"), None);
        assert_eq!(uevent_ids("HID_NAME=x\n"), None);
    }
}
