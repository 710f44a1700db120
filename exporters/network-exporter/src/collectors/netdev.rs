//! Collector `netdev`: per-interface traffic counters from `/proc/net/dev`.
//!
//! Reads `<procfs>/net/dev` once per scrape and produces, with label `device`:
//! `network_receive_{bytes,packets,errors,drop,fifo,frame,compressed,multicast}_total` and
//! `network_transmit_{bytes,packets,errors,drop,fifo,colls,carrier,compressed}_total`
//! (the sixteen columns of the file, in its order). Interfaces are filtered with
//! [`DeviceFilter`] (virtual interfaces dropped by default).
//!
//! The file starts with two header lines (they contain `|`); every other line is
//! `<name>: <16 unsigned counters>`, the name right-aligned, possibly with no space after the
//! colon when a counter is wide (`eth0:123456789 ...`). The name/counter separator is the last
//! colon on the line, so a name that itself contains a colon still parses. A line with the
//! wrong number of counters or a non-numeric one is skipped and counted as an item error; only
//! a missing or unreadable file fails the collector.

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, SampleValue, Sink};

use super::device_filter::DeviceFilter;

/// Counters per line in `/proc/net/dev`.
const COLUMNS: usize = 16;

/// One counter family per column, in file order; each reads its column of a line.
const FIELDS: [Field<Counters>; COLUMNS] = [
    Field::counter("receive_bytes_total", "Bytes received.", |c| {
        c[0].sample_value()
    }),
    Field::counter("receive_packets_total", "Packets received.", |c| {
        c[1].sample_value()
    }),
    Field::counter("receive_errors_total", "Receive errors.", |c| {
        c[2].sample_value()
    }),
    Field::counter("receive_drop_total", "Received packets dropped.", |c| {
        c[3].sample_value()
    }),
    Field::counter("receive_fifo_total", "Receive FIFO overruns.", |c| {
        c[4].sample_value()
    }),
    Field::counter("receive_frame_total", "Receive framing errors.", |c| {
        c[5].sample_value()
    }),
    Field::counter(
        "receive_compressed_total",
        "Compressed packets received.",
        |c| c[6].sample_value(),
    ),
    Field::counter(
        "receive_multicast_total",
        "Multicast packets received.",
        |c| c[7].sample_value(),
    ),
    Field::counter("transmit_bytes_total", "Bytes sent.", |c| {
        c[8].sample_value()
    }),
    Field::counter("transmit_packets_total", "Packets sent.", |c| {
        c[9].sample_value()
    }),
    Field::counter("transmit_errors_total", "Transmit errors.", |c| {
        c[10].sample_value()
    }),
    Field::counter("transmit_drop_total", "Packets dropped on transmit.", |c| {
        c[11].sample_value()
    }),
    Field::counter("transmit_fifo_total", "Transmit FIFO errors.", |c| {
        c[12].sample_value()
    }),
    Field::counter("transmit_colls_total", "Collisions.", |c| {
        c[13].sample_value()
    }),
    Field::counter("transmit_carrier_total", "Carrier errors.", |c| {
        c[14].sample_value()
    }),
    Field::counter(
        "transmit_compressed_total",
        "Compressed packets sent.",
        |c| c[15].sample_value(),
    ),
];

/// The sixteen counters of one line, in file order.
pub(crate) type Counters = [u64; COLUMNS];

/// The `netdev` collector.
#[derive(Debug, Clone)]
pub struct Netdev {
    filter: DeviceFilter,
}

impl Netdev {
    pub fn new(filter: DeviceFilter) -> Self {
        Self { filter }
    }
}

/// One interface's line: its name (borrowed from the file text) and its sixteen counters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DevLine<'a> {
    pub device: &'a str,
    pub counters: Counters,
}

/// Why a line was skipped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineError {
    NoColon,
    EmptyName,
    Columns(usize),
    NotANumber(usize),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NoColon => write!(f, "no ':' after the interface name"),
            LineError::EmptyName => write!(f, "empty interface name"),
            LineError::Columns(n) => write!(f, "expected {COLUMNS} counters, found {n}"),
            LineError::NotANumber(i) => write!(f, "counter {} is not a number", i + 1),
        }
    }
}

/// Parse one data line of `/proc/net/dev`.
pub(crate) fn parse_line(line: &str) -> Result<DevLine<'_>, LineError> {
    let colon = line.rfind(':').ok_or(LineError::NoColon)?;
    let device = line[..colon].trim();
    if device.is_empty() {
        return Err(LineError::EmptyName);
    }
    let mut counters: Counters = [0; COLUMNS];
    let mut found = 0;
    for column in line[colon + 1..].split_ascii_whitespace() {
        if found < COLUMNS {
            counters[found] = column.parse().map_err(|_| LineError::NotANumber(found))?;
        }
        found += 1;
    }
    if found != COLUMNS {
        return Err(LineError::Columns(found));
    }
    Ok(DevLine { device, counters })
}

/// Parse the whole file: the lines of reported interfaces, plus one note per skipped line
/// (`what` names the file in the notes). Header lines (with `|`) and blank lines are ignored.
pub(crate) fn parse<'a>(
    text: &'a str,
    what: &str,
    filter: &DeviceFilter,
    errors: &mut Vec<String>,
) -> Vec<DevLine<'a>> {
    let mut out = Vec::with_capacity(16);
    for (i, line) in text.lines().enumerate() {
        if line.contains('|') || line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(dev) if filter.allows(dev.device) => out.push(dev),
            Ok(_) => {}
            Err(e) => errors.push(format!("{what} line {}: {e}", i + 1)),
        }
    }
    out
}

impl Collector for Netdev {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let path = ctx.proc_path("net/dev");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut errors = Vec::new();
        let devs = parse(
            &text,
            &path.display().to_string(),
            &self.filter,
            &mut errors,
        );
        for e in errors {
            out.item_error(e);
        }
        let rows = devs.iter().map(|dev| (dev.device, &dev.counters));
        out.fields_by_label(&FIELDS, "device", rows);
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
        Netdev::new(filter)
            .collect(ctx, &mut sink)
            .expect("collect");
        sink
    }

    #[test]
    fn fixture_default_filter_keeps_host_interfaces() {
        let sink = collect(DeviceFilter::default(), &host_a());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        assert_eq!(
            label_values(&sink, "network_receive_bytes_total", "device"),
            ["eth0", "eth1", "wlan0", "wg0"]
        );
        assert_eq!(sink.families().len(), 16);
        for field in &FIELDS {
            let name = format!("network_{}", field.name);
            assert_eq!(label_values(&sink, &name, "device").len(), 4, "{name}");
        }
    }

    #[test]
    fn fixture_values_land_in_the_right_families() {
        let sink = collect(DeviceFilter::allow_all(), &host_a());
        let eth0 = [("device", "eth0")];
        assert_eq!(
            value(&sink, "network_receive_bytes_total", &eth0),
            Some(48_291_857_223.0)
        );
        assert_eq!(
            value(&sink, "network_receive_packets_total", &eth0),
            Some(39_512_004.0)
        );
        assert_eq!(
            value(&sink, "network_receive_errors_total", &eth0),
            Some(3.0)
        );
        assert_eq!(
            value(&sink, "network_receive_drop_total", &eth0),
            Some(1_207.0)
        );
        assert_eq!(value(&sink, "network_receive_fifo_total", &eth0), Some(0.0));
        assert_eq!(
            value(&sink, "network_receive_frame_total", &eth0),
            Some(2.0)
        );
        assert_eq!(
            value(&sink, "network_receive_compressed_total", &eth0),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_receive_multicast_total", &eth0),
            Some(88_431.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_bytes_total", &eth0),
            Some(7_302_118_540.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_packets_total", &eth0),
            Some(21_088_713.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_errors_total", &eth0),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_drop_total", &eth0),
            Some(5.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_fifo_total", &eth0),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_colls_total", &eth0),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_carrier_total", &eth0),
            Some(1.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_compressed_total", &eth0),
            Some(0.0)
        );
        // wlan0's counter is wider than its column: no space after the colon in the file.
        assert_eq!(
            value(&sink, "network_receive_bytes_total", &[("device", "wlan0")]),
            Some(12_345_678_901.0)
        );
        assert_eq!(
            value(&sink, "network_transmit_bytes_total", &[("device", "lo")]),
            Some(902_113_404.0)
        );
        assert_eq!(
            label_values(&sink, "network_transmit_bytes_total", "device"),
            [
                "lo",
                "eth0",
                "eth1",
                "wlan0",
                "docker0",
                "veth1a2b3c",
                "br-0f1e2d3c4b5a",
                "a1b2c3d4e5f6a7b",
                "wg0"
            ]
        );
    }

    #[test]
    fn names_with_colons_and_no_space_after_the_colon() {
        let line = "eth0:1:4000 12 0 0 0 0 0 0 5000 13 0 0 0 0 0 0";
        let d = parse_line(line).unwrap();
        assert_eq!(d.device, "eth0:1");
        assert_eq!(d.counters[0], 4000);
        assert_eq!(d.counters[9], 13);
        let d =
            parse_line("  eth0:18446744073709551615 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15").unwrap();
        assert_eq!(d.device, "eth0");
        assert_eq!(d.counters[0], u64::MAX);
        assert_eq!(d.counters[15], 15);
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  eth0:     100       2    0    0    0     0          0         0      300       4    0    0    0     0       0          0
  eth1:     100       2    0    0
  eth2:     100       2    0    0    0     0          0         0      300       4    0    0    0     0       0          0  7
  eth3:     100       x    0    0    0     0          0         0      300       4    0    0    0     0       0          0
  eth4      100       2    0    0    0     0          0         0      300       4    0    0    0     0       0          0
      :     100       2    0    0    0     0          0         0      300       4    0    0    0     0       0          0
  eth5:     -100      2    0    0    0     0          0         0      300       4    0    0    0     0       0          0

  eth6:     600       7    0    0    0     0          0         0      800       9    0    0    0     0       0          0
  eth7:     100       2    0    0    0     0          0    ";
        let mut errors = Vec::new();
        let devs = parse(text, "/p/net/dev", &DeviceFilter::allow_all(), &mut errors);
        let names: Vec<_> = devs.iter().map(|d| d.device).collect();
        assert_eq!(names, ["eth0", "eth6"]);
        assert_eq!(devs[1].counters[0], 600);
        assert_eq!(devs[1].counters[9], 9);
        assert_eq!(
            errors,
            [
                "/p/net/dev line 4: expected 16 counters, found 4",
                "/p/net/dev line 5: expected 16 counters, found 17",
                "/p/net/dev line 6: counter 2 is not a number",
                "/p/net/dev line 7: no ':' after the interface name",
                "/p/net/dev line 8: empty interface name",
                "/p/net/dev line 9: counter 1 is not a number",
                "/p/net/dev line 12: expected 16 counters, found 7",
            ]
        );
    }

    #[test]
    fn malformed_fixture_line_is_an_item_error_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("net/dev"),
            "Inter-|\n face |\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth1: 1 2 3\n",
        )
        .unwrap();
        let sink = collect(DeviceFilter::default(), &dir_context(dir.path()));
        assert_eq!(sink.item_errors().len(), 1);
        assert!(sink.item_errors()[0].ends_with("net/dev line 4: expected 16 counters, found 3"));
        assert_eq!(
            value(
                &sink,
                "network_transmit_compressed_total",
                &[("device", "eth0")]
            ),
            Some(16.0)
        );
        assert_eq!(
            value(&sink, "network_receive_bytes_total", &[("device", "eth1")]),
            None
        );
    }

    #[test]
    fn missing_file_fails_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let err = Netdev::new(DeviceFilter::default())
            .collect(&dir_context(dir.path()), &mut sink())
            .unwrap_err();
        assert!(format!("{err:#}").contains("net/dev"), "{err:#}");
    }

    #[test]
    fn live_host_parses_without_item_errors() {
        let sink = collect(DeviceFilter::allow_all(), &live_context());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        // Every Linux network namespace has a loopback interface.
        assert!(value(&sink, "network_receive_bytes_total", &[("device", "lo")]).is_some());
    }
}
