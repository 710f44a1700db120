//! Collector `wireless`: Wi-Fi link quality from `/proc/net/wireless`.
//!
//! Reads `<procfs>/net/wireless` (Linux wireless extensions; cfg80211 drivers fill it in too):
//! two header lines, then per wireless interface
//! `<name>: <status hex> <link> <level> <noise> <nwid> <crypt> <frag> <retry> <misc> <beacon>`,
//! where link, level and noise may carry a trailing `.` (the kernel marks updated values so).
//! Produces, with label `device`:
//!
//! - `network_wireless_link_quality` (link column, driver scale, most often out of 70),
//! - `network_wireless_signal_dbm` (level column),
//! - `network_wireless_noise_dbm` (noise column; absent when it is -256, the kernel's
//!   rendering of "no value" for dBm readings; the same rule applies to the level),
//! - `network_wireless_discarded_packets_total{device,reason}` with reason `nwid`, `crypt`,
//!   `frag`, `retry`, `misc`,
//! - `network_wireless_missed_beacons_total`.
//!
//! A missing file means the host has no wireless interfaces (or the kernel lacks wireless
//! extensions): no series, and the collector succeeds. A malformed line is skipped and
//! counted as an item error. Interfaces are filtered with [`DeviceFilter`].

use std::io::ErrorKind;

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, SampleValue, Sink};

use super::device_filter::DeviceFilter;

/// Columns after the colon: status, link, level, noise, 5 discard counters, beacon.
const COLUMNS: usize = 10;

/// The kernel prints an empty dBm reading as -256 (0 minus the 0x100 dBm offset).
const NO_DBM: i64 = -256;

/// `reason` label values, in column order.
const REASONS: [&str; 5] = ["nwid", "crypt", "frag", "retry", "misc"];

/// The `wireless` collector.
#[derive(Debug, Clone)]
pub struct Wireless {
    filter: DeviceFilter,
}

impl Wireless {
    pub fn new(filter: DeviceFilter) -> Self {
        Self { filter }
    }
}

/// One interface's line: its name (borrowed from the file text) and its readings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WifiLine<'a> {
    pub device: &'a str,
    pub stats: WifiStats,
}

/// The readings of one wireless interface.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WifiStats {
    pub link: i64,
    pub level: Option<i64>,
    pub noise: Option<i64>,
    /// Discarded packets, one per [`REASONS`] entry.
    pub discarded: [i64; 5],
    pub missed_beacons: i64,
}

/// The families with one sample per interface (label `device`).
const FIELDS: &[Field<WifiStats>] = &[
    Field::gauge(
        "wireless_link_quality",
        "Link quality as the driver reports it (most drivers: out of 70).",
        |w| w.link.sample_value(),
    ),
    Field::gauge("wireless_signal_dbm", "Signal level in dBm.", |w| {
        w.level.sample_value()
    }),
    Field::gauge(
        "wireless_noise_dbm",
        "Noise level in dBm (absent when the driver reports none).",
        |w| w.noise.sample_value(),
    ),
    Field::counter("wireless_missed_beacons_total", "Missed beacons.", |w| {
        w.missed_beacons.sample_value()
    }),
];

/// Parse one data line; the error text says what was wrong.
pub(crate) fn parse_line(line: &str) -> Result<WifiLine<'_>, String> {
    let colon = line.rfind(':').ok_or("no ':' after the interface name")?;
    let device = line[..colon].trim();
    if device.is_empty() {
        return Err("empty interface name".into());
    }
    let mut values = [0i64; COLUMNS];
    let mut found = 0;
    for column in line[colon + 1..].split_ascii_whitespace() {
        if found < COLUMNS {
            let parsed = if found == 0 {
                i64::from_str_radix(column, 16)
            } else {
                column.strip_suffix('.').unwrap_or(column).parse()
            };
            values[found] =
                parsed.map_err(|_| format!("field {} is not a number: {column:?}", found + 1))?;
        }
        found += 1;
    }
    if found != COLUMNS {
        return Err(format!("expected {COLUMNS} fields, found {found}"));
    }
    let dbm = |reading: i64| (reading != NO_DBM).then_some(reading);
    Ok(WifiLine {
        device,
        stats: WifiStats {
            link: values[1],
            level: dbm(values[2]),
            noise: dbm(values[3]),
            discarded: [values[4], values[5], values[6], values[7], values[8]],
            missed_beacons: values[9],
        },
    })
}

/// Parse the whole file, keeping the interfaces `filter` allows; header lines (with `|`) and
/// blank lines are ignored, malformed lines noted in `errors`.
pub(crate) fn parse<'a>(
    text: &'a str,
    what: &str,
    filter: &DeviceFilter,
    errors: &mut Vec<String>,
) -> Vec<WifiLine<'a>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.contains('|') || line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(w) if filter.allows(w.device) => out.push(w),
            Ok(_) => {}
            Err(e) => errors.push(format!("{what} line {}: {e}", i + 1)),
        }
    }
    out
}

impl Collector for Wireless {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let path = ctx.proc_path("net/wireless");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut errors = Vec::new();
        let lines = parse(
            &text,
            &path.display().to_string(),
            &self.filter,
            &mut errors,
        );
        for e in errors {
            out.item_error(e);
        }

        let rows = lines.iter().map(|line| (line.device, &line.stats));
        out.fields_by_label(FIELDS, "device", rows);
        let mut discarded = out.counter(
            "wireless_discarded_packets_total",
            "Discarded packets by reason.",
        );
        for line in &lines {
            for (reason, count) in REASONS.iter().zip(line.stats.discarded) {
                discarded.sample(&[("device", line.device), ("reason", reason)], count);
            }
        }
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
        Wireless::new(filter)
            .collect(ctx, &mut sink)
            .expect("collect");
        sink
    }

    #[test]
    fn fixture_values() {
        let sink = collect(DeviceFilter::default(), &host_a());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let wlan0 = [("device", "wlan0")];
        assert_eq!(
            value(&sink, "network_wireless_link_quality", &wlan0),
            Some(58.0)
        );
        assert_eq!(
            value(&sink, "network_wireless_signal_dbm", &wlan0),
            Some(-52.0)
        );
        assert_eq!(
            value(&sink, "network_wireless_noise_dbm", &wlan0),
            Some(-92.0)
        );
        let discarded = |r| {
            value(
                &sink,
                "network_wireless_discarded_packets_total",
                &[("device", "wlan0"), ("reason", r)],
            )
        };
        assert_eq!(discarded("nwid"), Some(0.0));
        assert_eq!(discarded("crypt"), Some(4.0));
        assert_eq!(discarded("frag"), Some(0.0));
        assert_eq!(discarded("retry"), Some(317.0));
        assert_eq!(discarded("misc"), Some(12.0));
        assert_eq!(
            value(&sink, "network_wireless_missed_beacons_total", &wlan0),
            Some(9.0)
        );
        assert_eq!(
            label_values(&sink, "network_wireless_link_quality", "device"),
            ["wlan0"]
        );
    }

    #[test]
    fn filter_applies() {
        let f = DeviceFilter::new(Some("^eth"), None).unwrap();
        let sink = collect(f, &host_a());
        assert!(label_values(&sink, "network_wireless_link_quality", "device").is_empty());
    }

    #[test]
    fn lines_without_update_dots_and_with_noise() {
        let w = parse_line(
            "wlp2s0: 0000   70   -38   -95        0      0      1      2      3        4",
        )
        .unwrap();
        assert_eq!(
            w,
            WifiLine {
                device: "wlp2s0",
                stats: WifiStats {
                    link: 70,
                    level: Some(-38),
                    noise: Some(-95),
                    discarded: [0, 0, 1, 2, 3],
                    missed_beacons: 4,
                },
            }
        );
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let text = "\
Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   58.  -52.  -256        0      4      0    317     12        9
 wlan1: 0000   abc  -52.  -256        0      4      0    317     12        9
 wlan2: zz00   40.  -60.  -256        0      0      0      0      0        0
 wlan3: 0000   40.  -60.
 wlan4: 0000   41.  -61.  -90.        1      2      3      4      5        6
 wlan5: 0000   40.  -60.  -256        0      0";
        let mut errors = Vec::new();
        let lines = parse(
            text,
            "/p/net/wireless",
            &DeviceFilter::allow_all(),
            &mut errors,
        );
        let names: Vec<_> = lines.iter().map(|w| w.device).collect();
        assert_eq!(names, ["wlan0", "wlan4"]);
        // -256 is the kernel's "no reading": no noise series for wlan0.
        assert_eq!(lines[0].stats.noise, None);
        assert_eq!(lines[1].stats.noise, Some(-90));
        assert_eq!(lines[1].stats.missed_beacons, 6);
        assert_eq!(
            errors,
            [
                "/p/net/wireless line 4: field 2 is not a number: \"abc\"",
                "/p/net/wireless line 5: field 1 is not a number: \"zz00\"",
                "/p/net/wireless line 6: expected 10 fields, found 3",
                "/p/net/wireless line 8: expected 10 fields, found 6",
            ]
        );
    }

    #[test]
    fn missing_file_means_no_wireless_and_success() {
        let dir = tempfile::tempdir().unwrap();
        let sink = collect(DeviceFilter::default(), &dir_context(dir.path()));
        assert!(sink.item_errors().is_empty());
        assert!(sink.families().iter().all(|f| f.get_metric().is_empty()));
    }

    #[test]
    fn unreadable_file_fails_the_collector() {
        // A directory where the file should be: reading it fails with something other than
        // "not found".
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/wireless")).unwrap();
        assert!(Wireless::new(DeviceFilter::default())
            .collect(&dir_context(dir.path()), &mut sink())
            .is_err());
    }

    #[test]
    fn live_host_parses_without_item_errors() {
        let sink = collect(DeviceFilter::allow_all(), &live_context());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let has_file = std::path::Path::new("/proc/net/wireless").exists();
        let devices = label_values(&sink, "network_wireless_link_quality", "device");
        if !has_file {
            assert!(devices.is_empty());
        }
    }
}
