//! Collector `netclass`: link state and properties of each interface from sysfs.
//!
//! Lists `<sysfs>/class/net/` (entries are symlinks into `/sys/devices/...` on a real host;
//! plain directories work too; regular files such as `bonding_masters` are ignored) and reads,
//! per interface, `operstate`, `duplex`, `address`, `carrier`, `speed`, `mtu`,
//! `carrier_changes`, `carrier_up_count` and `carrier_down_count`. Produces, with label
//! `device`:
//!
//! - `network_info{device,operstate,duplex,address}` (always 1; an unreadable `duplex` or
//!   `address` gives an empty label value),
//! - `network_up` (1 when operstate is `up`),
//! - `network_carrier`, `network_speed_bytes` (Mb/s × 125000), `network_mtu_bytes`,
//! - `network_carrier_changes_total`, `network_carrier_up_changes_total`,
//!   `network_carrier_down_changes_total`.
//!
//! The kernel answers `EINVAL` when `carrier`, `speed` or `duplex` is read on an interface
//! that is down, and some drivers report speed `-1` when it is unknown: an attribute that is
//! absent or answers so (`EINVAL`, `ENODATA`, `EOPNOTSUPP`), or a negative speed, leaves that
//! one series out; it is not an error. A read that fails otherwise (`EIO`, `EAGAIN`: the driver
//! did not answer), and a value that is there but not a number, are skipped and counted as item
//! errors. An interface whose
//! `operstate` cannot be read (it vanished while we listed the directory) is skipped and
//! counted. Only an unreadable `class/net` directory fails the collector. Interfaces are
//! filtered with [`DeviceFilter`].

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, SampleValue, Sink};

use super::device_filter::DeviceFilter;

/// sysfs reports speed in Mb/s; 1 Mb/s is 125000 bytes/s.
const BYTES_PER_MBIT: u64 = 125_000;

/// The `netclass` collector.
#[derive(Debug, Clone)]
pub struct Netclass {
    filter: DeviceFilter,
}

impl Netclass {
    pub fn new(filter: DeviceFilter) -> Self {
        Self { filter }
    }
}

/// What was read for one interface.
#[derive(Debug, Default, PartialEq)]
struct Iface {
    device: String,
    operstate: String,
    duplex: String,
    address: String,
    carrier: Option<i64>,
    speed_bytes: Option<u64>,
    mtu: Option<u64>,
    carrier_changes: Option<u64>,
    carrier_up: Option<u64>,
    carrier_down: Option<u64>,
}

/// Reads attribute files of one interface directory, reusing one path and one buffer.
struct AttrReader<'a> {
    dir: PathBuf,
    buf: &'a mut String,
    errors: &'a mut Vec<String>,
}

impl AttrReader<'_> {
    /// Load attribute `name` into the buffer; `false` when it cannot be read. Absent (no
    /// file, `EINVAL` on a down link, `EOPNOTSUPP`, ...) is silent; any other failure (`EIO`,
    /// `EAGAIN`: the driver did not answer) is an item error.
    fn load(&mut self, name: &str) -> bool {
        self.buf.clear();
        self.dir.push(name);
        let read = File::open(&self.dir).and_then(|mut f| f.read_to_string(self.buf));
        if let Err(e) = &read {
            if !is_absence(e) {
                let msg = format!("{}: {e}", self.dir.display());
                self.errors.push(msg);
            }
        }
        self.dir.pop();
        read.is_ok()
    }

    /// The trimmed contents of attribute `name`, or `None` when it cannot be read.
    fn text(&mut self, name: &str) -> Option<&str> {
        self.load(name).then(|| self.buf.trim())
    }

    /// Attribute `name` as an owned string; empty when unreadable.
    fn label(&mut self, name: &str) -> String {
        self.text(name).unwrap_or("").to_owned()
    }

    /// Attribute `name` as an integer; `None` when unreadable, and an item error when present
    /// but not an integer.
    fn int(&mut self, name: &str) -> Option<i64> {
        if !self.load(name) {
            return None;
        }
        let text = self.buf.trim();
        match text.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                let msg = format!("{}/{name}: not an integer: {text:?}", self.dir.display());
                self.errors.push(msg);
                None
            }
        }
    }
}

/// Whether a failed attribute read means "no such value": no file (or no interface), or a
/// driver that does not answer this attribute in this state (`EINVAL` on a down link,
/// `ENODATA`, `EOPNOTSUPP`, `ENODEV`, `ENXIO`), or a permission refusal (net attributes are
/// world-readable; an unreadable one is left out as before).
fn is_absence(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
        || e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ENODATA | libc::EOPNOTSUPP | libc::ENODEV | libc::ENXIO)
        )
}

/// Read one interface directory; `None` (with an item error) when its operstate is unreadable.
fn read_iface(
    dir: PathBuf,
    device: &str,
    buf: &mut String,
    errors: &mut Vec<String>,
) -> Option<Iface> {
    let noted = errors.len();
    let mut attrs = AttrReader { dir, buf, errors };
    let Some(operstate) = attrs.text("operstate").map(str::to_owned) else {
        // A failed read was noted already; an absent operstate is noted here, once.
        if attrs.errors.len() == noted {
            let msg = format!(
                "{}: operstate unreadable (interface vanished?)",
                attrs.dir.display()
            );
            attrs.errors.push(msg);
        }
        return None;
    };
    // A negative value (speed -1: unknown) is no reading.
    let non_negative = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    Some(Iface {
        device: device.to_owned(),
        operstate,
        duplex: attrs.label("duplex"),
        address: attrs.label("address"),
        carrier: attrs.int("carrier"),
        speed_bytes: non_negative(attrs.int("speed"))
            .map(|mbit| mbit.saturating_mul(BYTES_PER_MBIT)),
        mtu: non_negative(attrs.int("mtu")),
        carrier_changes: non_negative(attrs.int("carrier_changes")),
        carrier_up: non_negative(attrs.int("carrier_up_count")),
        carrier_down: non_negative(attrs.int("carrier_down_count")),
    })
}

/// Read every reported interface under `<sysfs>/class/net`, sorted by name.
fn read_all(
    ctx: &Context,
    filter: &DeviceFilter,
    errors: &mut Vec<String>,
) -> anyhow::Result<Vec<Iface>> {
    let class = ctx.sys_path("class/net");
    let entries =
        std::fs::read_dir(&class).with_context(|| format!("listing {}", class.display()))?;
    let mut names = Vec::with_capacity(16);
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", class.display()))?;
        // Interfaces are symlinks (real sysfs) or directories (fixtures); files such as
        // bonding_masters are not interfaces.
        match entry.file_type() {
            Ok(t) if t.is_file() => continue,
            Ok(_) => {}
            Err(e) => {
                errors.push(format!("{}: {e}", entry.path().display()));
                continue;
            }
        }
        match entry.file_name().into_string() {
            Ok(name) if filter.allows(&name) => names.push(name),
            Ok(_) => {}
            Err(raw) => errors.push(format!(
                "{}: interface name is not UTF-8: {raw:?}",
                class.display()
            )),
        }
    }
    names.sort_unstable();
    let mut buf = String::with_capacity(64);
    Ok(names
        .iter()
        .filter_map(|name| read_iface(class.join(name), name, &mut buf, errors))
        .collect())
}

/// What every interface gets besides `info`, one family per row.
const FIELDS: &[Field<Iface>] = &[
    Field::gauge("up", "1 if operstate is up.", |iface| {
        (iface.operstate == "up").sample_value()
    }),
    Field::gauge(
        "carrier",
        "1 if the link has carrier (absent when the interface is down).",
        |iface| iface.carrier.sample_value(),
    ),
    Field::gauge(
        "speed_bytes",
        "Link speed in bytes per second (absent when unknown).",
        |iface| iface.speed_bytes.sample_value(),
    ),
    Field::gauge("mtu_bytes", "MTU.", |iface| iface.mtu.sample_value()),
    Field::counter("carrier_changes_total", "Link state changes.", |iface| {
        iface.carrier_changes.sample_value()
    }),
    Field::counter("carrier_up_changes_total", "Link-up events.", |iface| {
        iface.carrier_up.sample_value()
    }),
    Field::counter("carrier_down_changes_total", "Link-down events.", |iface| {
        iface.carrier_down.sample_value()
    }),
];

impl Collector for Netclass {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        let ifaces = read_all(ctx, &self.filter, &mut errors)?;
        for e in errors {
            out.item_error(e);
        }

        let mut info = out.gauge("info", "Always 1; interface metadata.");
        for i in &ifaces {
            let labels = [
                ("device", i.device.as_str()),
                ("operstate", i.operstate.as_str()),
                ("duplex", i.duplex.as_str()),
                ("address", i.address.as_str()),
            ];
            info.sample(&labels, 1);
        }
        let rows = ifaces.iter().map(|iface| (iface.device.as_str(), iface));
        out.fields_by_label(FIELDS, "device", rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{host_a, sink};
    use super::*;
    use odin_testkit::{
        dir_context, live_context, sink_label_values as label_values, sink_value as value,
    };

    fn collect(filter: DeviceFilter, ctx: &Context) -> Sink {
        let mut sink = sink();
        Netclass::new(filter)
            .collect(ctx, &mut sink)
            .expect("collect");
        sink
    }

    #[test]
    fn fixture_up_interface() {
        let sink = collect(DeviceFilter::default(), &host_a());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let eth0 = [("device", "eth0")];
        let info = [
            ("device", "eth0"),
            ("operstate", "up"),
            ("duplex", "full"),
            ("address", "3c:ec:ef:12:34:56"),
        ];
        assert_eq!(value(&sink, "network_info", &info), Some(1.0));
        assert_eq!(value(&sink, "network_up", &eth0), Some(1.0));
        assert_eq!(value(&sink, "network_carrier", &eth0), Some(1.0));
        assert_eq!(
            value(&sink, "network_speed_bytes", &eth0),
            Some(125_000_000.0)
        );
        assert_eq!(value(&sink, "network_mtu_bytes", &eth0), Some(1500.0));
        assert_eq!(
            value(&sink, "network_carrier_changes_total", &eth0),
            Some(5.0)
        );
        assert_eq!(
            value(&sink, "network_carrier_up_changes_total", &eth0),
            Some(3.0)
        );
        assert_eq!(
            value(&sink, "network_carrier_down_changes_total", &eth0),
            Some(2.0)
        );
    }

    #[test]
    fn fixture_default_filter_and_order() {
        let sink = collect(DeviceFilter::default(), &host_a());
        // bonding_masters is a file, not an interface; lo, docker0, veth*, br-<hex> and the
        // OVN-style name are excluded by default.
        assert_eq!(
            label_values(&sink, "network_up", "device"),
            ["eth0", "eth1", "wg0", "wlan0"]
        );
    }

    #[test]
    fn fixture_down_interface_has_no_carrier_or_speed() {
        let sink = collect(DeviceFilter::default(), &host_a());
        let eth1 = [("device", "eth1")];
        let info = [
            ("device", "eth1"),
            ("operstate", "down"),
            ("duplex", ""),
            ("address", "3c:ec:ef:12:34:57"),
        ];
        assert_eq!(value(&sink, "network_info", &info), Some(1.0));
        assert_eq!(value(&sink, "network_up", &eth1), Some(0.0));
        assert_eq!(value(&sink, "network_carrier", &eth1), None);
        assert_eq!(value(&sink, "network_speed_bytes", &eth1), None);
        assert_eq!(value(&sink, "network_mtu_bytes", &eth1), Some(1500.0));
        assert_eq!(
            value(&sink, "network_carrier_changes_total", &eth1),
            Some(1.0)
        );
    }

    #[test]
    fn fixture_unknown_speed_and_virtual_interfaces() {
        let sink = collect(DeviceFilter::allow_all(), &host_a());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        // The bridge reports speed -1: absent, not -125000.
        let br = [("device", "br-0f1e2d3c4b5a")];
        assert_eq!(value(&sink, "network_speed_bytes", &br), None);
        assert_eq!(value(&sink, "network_carrier", &br), Some(1.0));
        // Wireless: no speed file readable, carrier up.
        let wlan = [("device", "wlan0")];
        assert_eq!(value(&sink, "network_speed_bytes", &wlan), None);
        assert_eq!(value(&sink, "network_up", &wlan), Some(1.0));
        // WireGuard: operstate unknown (so not "up"), no link-layer address.
        let wg = [
            ("device", "wg0"),
            ("operstate", "unknown"),
            ("duplex", ""),
            ("address", ""),
        ];
        assert_eq!(value(&sink, "network_info", &wg), Some(1.0));
        assert_eq!(value(&sink, "network_up", &[("device", "wg0")]), Some(0.0));
        assert_eq!(
            value(&sink, "network_mtu_bytes", &[("device", "wg0")]),
            Some(1420.0)
        );
        // The veth reports 10 Gb/s.
        assert_eq!(
            value(&sink, "network_speed_bytes", &[("device", "veth1a2b3c")]),
            Some(1_250_000_000.0)
        );
        // lo and docker0 are symlinks into devices/virtual in the fixture, like real sysfs.
        assert_eq!(
            value(&sink, "network_mtu_bytes", &[("device", "lo")]),
            Some(65536.0)
        );
        assert_eq!(
            value(&sink, "network_up", &[("device", "docker0")]),
            Some(0.0)
        );
        // docker0 has no containers: admin up, no carrier, speed -1.
        assert_eq!(
            value(&sink, "network_carrier", &[("device", "docker0")]),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_speed_bytes", &[("device", "docker0")]),
            None
        );
        assert_eq!(
            label_values(&sink, "network_up", "device"),
            [
                "a1b2c3d4e5f6a7b",
                "br-0f1e2d3c4b5a",
                "docker0",
                "eth0",
                "eth1",
                "lo",
                "veth1a2b3c",
                "wg0",
                "wlan0"
            ]
        );
    }

    #[test]
    fn garbage_values_and_vanished_interfaces_are_item_errors() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("class/net");
        let eth0 = net.join("eth0");
        std::fs::create_dir_all(&eth0).unwrap();
        std::fs::write(eth0.join("operstate"), "up\n").unwrap();
        std::fs::write(eth0.join("mtu"), "fifteen hundred\n").unwrap();
        std::fs::write(eth0.join("speed"), "2500\n").unwrap();
        std::fs::write(eth0.join("carrier"), "1\n").unwrap();
        // A directory without operstate stands in for an interface that vanished.
        std::fs::create_dir_all(net.join("eth9")).unwrap();
        std::fs::write(net.join("bonding_masters"), "\n").unwrap();

        let sink = collect(DeviceFilter::default(), &dir_context(dir.path()));
        let errs = sink.item_errors();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].ends_with("class/net/eth0/mtu: not an integer: \"fifteen hundred\""),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("class/net/eth9: operstate unreadable"),
            "{errs:?}"
        );
        let e = [("device", "eth0")];
        assert_eq!(value(&sink, "network_mtu_bytes", &e), None);
        assert_eq!(value(&sink, "network_speed_bytes", &e), Some(312_500_000.0));
        assert_eq!(value(&sink, "network_carrier", &e), Some(1.0));
        assert_eq!(label_values(&sink, "network_up", "device"), ["eth0"]);
        let info = [
            ("device", "eth0"),
            ("operstate", "up"),
            ("duplex", ""),
            ("address", ""),
        ];
        assert_eq!(value(&sink, "network_info", &info), Some(1.0));
    }

    #[test]
    fn missing_class_dir_fails_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let err = Netclass::new(DeviceFilter::default())
            .collect(&dir_context(dir.path()), &mut sink())
            .unwrap_err();
        assert!(format!("{err:#}").contains("class/net"), "{err:#}");
    }

    #[test]
    fn live_host_parses_without_item_errors() {
        let sink = collect(DeviceFilter::allow_all(), &live_context());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        assert!(value(&sink, "network_mtu_bytes", &[("device", "lo")]).is_some());
    }
}
