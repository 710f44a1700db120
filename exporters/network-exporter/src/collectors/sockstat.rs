//! sockstat: reads `/proc/net/sockstat` and `/proc/net/sockstat6` on every scrape and produces
//! `network_sockets_used`, `network_sockstat_tcp_inuse{family}`,
//! `network_sockstat_tcp_orphan`, `network_sockstat_tcp_time_wait`,
//! `network_sockstat_tcp_alloc`, `network_sockstat_tcp_memory_bytes`,
//! `network_sockstat_udp_inuse{family}` and `network_sockstat_udp_memory_bytes`.
//!
//! Lines look like `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3`: a section, then name/value
//! pairs matched by name. `mem` counts pages; it is multiplied by the system page size
//! (`sysconf(_SC_PAGESIZE)`, read once when the collector is built). `TCP6`/`UDP6` in
//! `sockstat6` give the `ipv6` series of the `inuse` gauges; `ipv4` comes from `TCP`/`UDP`
//! (the kernel counts IPv4 and IPv6 sockets separately there; the memory, orphan, tw and alloc
//! figures cover both families).
//!
//! Errors: a missing `sockstat` fails the run; a missing `sockstat6` (IPv6 disabled) only
//! removes the `ipv6` series. A line without a section or with an odd number of name/value
//! columns, or an unparsable value of an exported field, is skipped and reported as an item
//! error with its file and line number. A field this kernel does not print is simply absent.

use std::io;
use std::path::Path;

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, SampleValue, Sink};

/// The `sockstat` collector.
#[derive(Debug, Clone, Copy)]
pub struct Sockstat {
    page_size: u64,
}

impl Default for Sockstat {
    fn default() -> Self {
        Self::new()
    }
}

impl Sockstat {
    /// Reads the page size once.
    pub fn new() -> Self {
        Self::with_page_size(system_page_size())
    }

    /// With a given page size (tests; hosts where `sysconf` is not the truth).
    pub fn with_page_size(page_size: u64) -> Self {
        Self { page_size }
    }
}

fn system_page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant; it has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// The values read, `None` where the kernel printed nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    /// Bytes per page, for the `mem` figures.
    page_size: u64,
    sockets_used: Option<u64>,
    tcp_orphan: Option<u64>,
    tcp_tw: Option<u64>,
    tcp_alloc: Option<u64>,
    tcp_mem_pages: Option<u64>,
    udp_mem_pages: Option<u64>,
    ipv4: InUse,
    ipv6: InUse,
}

/// Sockets in use of one address family.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct InUse {
    tcp: Option<u64>,
    udp: Option<u64>,
}

impl Stats {
    /// Where `(section, field)` goes, if we export it.
    fn slot(&mut self, section: &str, field: &str) -> Option<&mut Option<u64>> {
        Some(match (section, field) {
            ("sockets", "used") => &mut self.sockets_used,
            ("TCP", "inuse") => &mut self.ipv4.tcp,
            ("TCP", "orphan") => &mut self.tcp_orphan,
            ("TCP", "tw") => &mut self.tcp_tw,
            ("TCP", "alloc") => &mut self.tcp_alloc,
            ("TCP", "mem") => &mut self.tcp_mem_pages,
            ("UDP", "inuse") => &mut self.ipv4.udp,
            ("UDP", "mem") => &mut self.udp_mem_pages,
            ("TCP6", "inuse") => &mut self.ipv6.tcp,
            ("UDP6", "inuse") => &mut self.ipv6.udp,
            _ => return None,
        })
    }

    /// `pages` in bytes.
    fn bytes(&self, pages: Option<u64>) -> Option<f64> {
        pages.map(|p| p as f64 * self.page_size as f64)
    }
}

/// Families without labels: the figures cover both address families.
const TOTALS: &[Field<Stats>] = &[
    Field::gauge("sockets_used", "Sockets in use, all kinds.", |s| {
        s.sockets_used.sample_value()
    }),
    Field::gauge("sockstat_tcp_orphan", "Orphaned TCP sockets.", |s| {
        s.tcp_orphan.sample_value()
    }),
    Field::gauge("sockstat_tcp_time_wait", "TCP sockets in TIME_WAIT.", |s| {
        s.tcp_tw.sample_value()
    }),
    Field::gauge("sockstat_tcp_alloc", "TCP sockets allocated.", |s| {
        s.tcp_alloc.sample_value()
    }),
    Field::gauge(
        "sockstat_tcp_memory_bytes",
        "Memory used by TCP buffers.",
        |s| s.bytes(s.tcp_mem_pages),
    ),
    Field::gauge(
        "sockstat_udp_memory_bytes",
        "Memory used by UDP buffers.",
        |s| s.bytes(s.udp_mem_pages),
    ),
];

/// Families with label `family` (`ipv4` from `sockstat`, `ipv6` from `sockstat6`).
const BY_FAMILY: &[Field<InUse>] = &[
    Field::gauge("sockstat_tcp_inuse", "TCP sockets in use.", |u| {
        u.tcp.sample_value()
    }),
    Field::gauge("sockstat_udp_inuse", "UDP sockets in use.", |u| {
        u.udp.sample_value()
    }),
];

/// Parse one sockstat file into `stats`.
fn parse(text: &str, path: &Path, stats: &mut Stats, sink: &mut Sink) {
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{line_no}", path.display());
        let Some((section, rest)) = line
            .split_once(':')
            .filter(|(s, _)| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        else {
            sink.item_error(format!("{}: no section name", at()));
            continue;
        };
        let cols: Vec<&str> = rest.split_whitespace().collect();
        if cols.is_empty() || cols.len() % 2 != 0 {
            sink.item_error(format!("{}: {section} is not name/value pairs", at()));
            continue;
        }
        for pair in cols.chunks_exact(2) {
            let (field, raw) = (pair[0], pair[1]);
            let Some(slot) = stats.slot(section, field) else {
                continue;
            };
            match raw.parse::<u64>() {
                Ok(v) => *slot = Some(v),
                Err(_) => sink.item_error(format!(
                    "{}: {section} {field} value {raw:?} is not a count",
                    at()
                )),
            }
        }
    }
}

impl Collector for Sockstat {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut stats = Stats {
            page_size: self.page_size,
            ..Stats::default()
        };

        let v4 = ctx.proc_path("net/sockstat");
        let text =
            std::fs::read_to_string(&v4).with_context(|| format!("reading {}", v4.display()))?;
        parse(&text, &v4, &mut stats, out);

        let v6 = ctx.proc_path("net/sockstat6");
        match std::fs::read_to_string(&v6) {
            Ok(text) => parse(&text, &v6, &mut stats, out),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => out.item_error(format!("{}: {e}", v6.display())),
        }

        out.fields(TOTALS, &[(&[], &stats)]);
        let rows = [("ipv4", &stats.ipv4), ("ipv6", &stats.ipv6)];
        out.fields_by_label(BY_FAMILY, "family", rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::testing::{fixture, sink};
    use odin_testkit::{dir_context, live_context, sink_value as value};

    /// (metric, labels, value).
    type Expected = (&'static str, &'static [(&'static str, &'static str)], f64);

    #[test]
    fn fixture_values() {
        let mut sink = sink();
        Sockstat::with_page_size(4096)
            .collect(&fixture("host-a"), &mut sink)
            .unwrap();
        assert_eq!(sink.item_errors(), &[] as &[String]);
        let want: &[Expected] = &[
            ("network_sockets_used", &[], 412.0),
            ("network_sockstat_tcp_inuse", &[("family", "ipv4")], 19.0),
            ("network_sockstat_tcp_inuse", &[("family", "ipv6")], 6.0),
            ("network_sockstat_tcp_orphan", &[], 2.0),
            ("network_sockstat_tcp_time_wait", &[], 4.0),
            ("network_sockstat_tcp_alloc", &[], 31.0),
            ("network_sockstat_tcp_memory_bytes", &[], 57.0 * 4096.0),
            ("network_sockstat_udp_inuse", &[("family", "ipv4")], 7.0),
            ("network_sockstat_udp_inuse", &[("family", "ipv6")], 3.0),
            ("network_sockstat_udp_memory_bytes", &[], 12.0 * 4096.0),
        ];
        for (name, labels, v) in want {
            assert_eq!(value(&sink, name, labels), Some(*v), "{name} {labels:?}");
        }
        let samples: usize = sink.families().iter().map(|f| f.get_metric().len()).sum();
        assert_eq!(samples, want.len());
    }

    #[test]
    fn page_size_scales_memory() {
        let mut sink = sink();
        Sockstat::with_page_size(65536)
            .collect(&fixture("host-a"), &mut sink)
            .unwrap();
        assert_eq!(
            value(&sink, "network_sockstat_tcp_memory_bytes", &[]),
            Some(57.0 * 65536.0)
        );
        assert_eq!(
            value(&sink, "network_sockstat_udp_memory_bytes", &[]),
            Some(12.0 * 65536.0)
        );
        // The system page size is a power of two of at least 4 KiB.
        let sys = Sockstat::new().page_size;
        assert!(sys >= 4096 && sys.is_power_of_two(), "{sys}");
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let c = fixture("malformed");
        let mut sink = sink();
        Sockstat::with_page_size(4096)
            .collect(&c, &mut sink)
            .unwrap();
        let v4 = c.proc_path("net/sockstat").display().to_string();
        let v6 = c.proc_path("net/sockstat6").display().to_string();
        assert_eq!(
            sink.item_errors(),
            &[
                format!("{v4}:2: TCP is not name/value pairs"),
                format!("{v4}:3: UDP mem value \"many\" is not a count"),
                format!("{v4}:4: no section name"),
                format!("{v6}:1: TCP6 is not name/value pairs"),
            ]
        );
        // The whole TCP line is skipped; UDP keeps inuse; UDP6 after the bad TCP6 survives.
        assert_eq!(value(&sink, "network_sockets_used", &[]), Some(90.0));
        assert_eq!(
            value(&sink, "network_sockstat_tcp_inuse", &[("family", "ipv4")]),
            None
        );
        assert_eq!(value(&sink, "network_sockstat_tcp_alloc", &[]), None);
        assert_eq!(
            value(&sink, "network_sockstat_udp_inuse", &[("family", "ipv4")]),
            Some(4.0)
        );
        assert_eq!(value(&sink, "network_sockstat_udp_memory_bytes", &[]), None);
        assert_eq!(
            value(&sink, "network_sockstat_tcp_inuse", &[("family", "ipv6")]),
            None
        );
        assert_eq!(
            value(&sink, "network_sockstat_udp_inuse", &[("family", "ipv6")]),
            Some(2.0)
        );
    }

    #[test]
    fn missing_sockstat6_and_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        // An older kernel's TCP line without `mem`; no sockstat6 (IPv6 disabled).
        std::fs::write(
            dir.path().join("net/sockstat"),
            "sockets: used 5\nTCP: inuse 1 orphan 0 tw 3 alloc 2\n",
        )
        .unwrap();
        let c = dir_context(dir.path());
        let mut sink = sink();
        Sockstat::with_page_size(4096)
            .collect(&c, &mut sink)
            .unwrap();
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let (families, _) = sink.into_parts();
        let mut got: Vec<(&str, f64)> = families
            .iter()
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(move |m| (f.name(), m.get_gauge().get_value()))
            })
            .collect();
        // Every sample there is, by family name (the exposition's order).
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            got,
            [
                ("network_sockets_used", 5.0),
                ("network_sockstat_tcp_alloc", 2.0),
                ("network_sockstat_tcp_inuse", 1.0),
                ("network_sockstat_tcp_orphan", 0.0),
                ("network_sockstat_tcp_time_wait", 3.0),
            ]
        );
    }

    #[test]
    fn missing_sockstat_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir_context(dir.path());
        let err = Sockstat::new().collect(&c, &mut sink()).unwrap_err();
        assert!(format!("{err:#}").contains("net/sockstat"), "{err:#}");
    }

    #[test]
    fn live_host_parses_cleanly() {
        let c = live_context();
        if !c.proc_path("net/sockstat").exists() {
            return;
        }
        let mut sink = sink();
        Sockstat::new().collect(&c, &mut sink).unwrap();
        assert_eq!(sink.item_errors(), &[] as &[String]);
        assert!(value(&sink, "network_sockets_used", &[]).is_some());
        assert!(value(&sink, "network_sockstat_tcp_memory_bytes", &[]).is_some());
    }
}
