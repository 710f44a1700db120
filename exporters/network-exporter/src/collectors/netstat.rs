//! netstat: reads the kernel's protocol counters from `/proc/net/snmp`, `/proc/net/netstat`
//! and `/proc/net/snmp6` on every scrape and produces the TCP counters
//! `network_tcp_*_total` (no labels; the kernel keeps one set for IPv4 and IPv6), and the
//! UDP and IP counters `network_udp_*_total{family}` and `network_ip_*_discards_total{family}`
//! (`family` is `ipv4` from `snmp`, `ipv6` from `snmp6`). Only the counters listed in
//! docs/metrics.md are exported; [`FIELDS`] maps each kernel field to its metric.
//!
//! `snmp` and `netstat` hold pairs of lines, a header naming the fields and a line of values,
//! both starting with the section (`Tcp: RtoAlgorithm RtoMin ...` / `Tcp: 1 200 ...`); fields
//! are matched by name, never by position. `snmp6` holds one `Name value` pair per line.
//!
//! Errors: a missing `snmp` fails the run. A missing `netstat` or `snmp6` (IPv6 disabled) only
//! removes its series. Every line's shape is checked (a line without a section, a header
//! without a values line, header and values of different lengths, an `snmp6` line that is not
//! two columns) and a bad line or pair is skipped and reported as an item error with the file
//! and line number; values are parsed only for the exported fields (an unparsable one is an
//! item error too). A listed field this kernel lacks leaves its series absent, silently.

use std::io;
use std::path::Path;

use anyhow::Context as _;
use odin_common::{Collector, Context, Sink};

/// The `netstat` collector. Stateless; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Netstat;

impl Netstat {
    pub fn new() -> Self {
        Self
    }
}

/// Which file a field lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Snmp,
    Netstat,
    /// `/proc/net/snmp6`: the key is `section` followed by `field` (`Ip6` + `InDiscards`).
    Snmp6,
}

/// One exported kernel field.
#[derive(Debug)]
struct Field {
    source: Source,
    section: &'static str,
    field: &'static str,
    metric: &'static str,
    help: &'static str,
    /// Value of the `family` label, or `None` for metrics without labels.
    family: Option<&'static str>,
}

const fn f(
    source: Source,
    section: &'static str,
    field: &'static str,
    metric: &'static str,
    help: &'static str,
    family: Option<&'static str>,
) -> Field {
    Field {
        source,
        section,
        field,
        metric,
        help,
        family,
    }
}

const V4: Option<&str> = Some("ipv4");
const V6: Option<&str> = Some("ipv6");
use Source::{Netstat as NS, Snmp as S, Snmp6 as S6};

/// Every exported field, in output order; rows of one metric are adjacent.
const FIELDS: &[Field] = &[
    f(S, "Tcp", "ActiveOpens", "network_tcp_active_opens_total", "TCP connections opened by this host (Tcp ActiveOpens).", None),
    f(S, "Tcp", "PassiveOpens", "network_tcp_passive_opens_total", "TCP connections accepted (Tcp PassiveOpens).", None),
    f(S, "Tcp", "AttemptFails", "network_tcp_attempt_fails_total", "Failed TCP connection attempts (Tcp AttemptFails).", None),
    f(S, "Tcp", "EstabResets", "network_tcp_established_resets_total", "Established TCP connections reset (Tcp EstabResets).", None),
    f(S, "Tcp", "InSegs", "network_tcp_received_segments_total", "TCP segments received (Tcp InSegs).", None),
    f(S, "Tcp", "OutSegs", "network_tcp_sent_segments_total", "TCP segments sent (Tcp OutSegs).", None),
    f(S, "Tcp", "RetransSegs", "network_tcp_retransmitted_segments_total", "TCP segments retransmitted (Tcp RetransSegs).", None),
    f(S, "Tcp", "InErrs", "network_tcp_receive_errors_total", "TCP segments received in error (Tcp InErrs).", None),
    f(S, "Tcp", "OutRsts", "network_tcp_sent_resets_total", "TCP segments sent with RST (Tcp OutRsts).", None),
    f(NS, "TcpExt", "ListenOverflows", "network_tcp_listen_overflows_total", "Accept queue overflows (TcpExt ListenOverflows).", None),
    f(NS, "TcpExt", "ListenDrops", "network_tcp_listen_drops_total", "SYNs to listening sockets dropped (TcpExt ListenDrops).", None),
    f(NS, "TcpExt", "TCPTimeouts", "network_tcp_timeouts_total", "TCP retransmission timeouts (TcpExt TCPTimeouts).", None),
    f(NS, "TcpExt", "TCPSynRetrans", "network_tcp_syn_retransmits_total", "SYN and SYN-ACK retransmits (TcpExt TCPSynRetrans).", None),
    f(NS, "TcpExt", "TCPLostRetransmit", "network_tcp_lost_retransmits_total", "TCP retransmits that were lost again (TcpExt TCPLostRetransmit).", None),
    f(NS, "TcpExt", "TCPFastRetrans", "network_tcp_fast_retransmits_total", "TCP fast retransmits (TcpExt TCPFastRetrans).", None),
    f(NS, "TcpExt", "TCPSlowStartRetrans", "network_tcp_slow_start_retransmits_total", "TCP retransmits in slow start (TcpExt TCPSlowStartRetrans).", None),
    f(NS, "TcpExt", "TCPOFOQueue", "network_tcp_out_of_order_queued_total", "TCP segments put on the out-of-order queue (TcpExt TCPOFOQueue).", None),
    f(NS, "TcpExt", "TCPRcvQDrop", "network_tcp_receive_queue_drops_total", "TCP segments dropped because the receive queue was full (TcpExt TCPRcvQDrop).", None),
    f(NS, "TcpExt", "TCPAbortOnTimeout", "network_tcp_aborts_on_timeout_total", "TCP connections aborted after too many timeouts (TcpExt TCPAbortOnTimeout).", None),
    f(S, "Udp", "InDatagrams", "network_udp_received_datagrams_total", "UDP datagrams delivered (Udp/Udp6 InDatagrams).", V4),
    f(S6, "Udp6", "InDatagrams", "network_udp_received_datagrams_total", "", V6),
    f(S, "Udp", "OutDatagrams", "network_udp_sent_datagrams_total", "UDP datagrams sent (Udp/Udp6 OutDatagrams).", V4),
    f(S6, "Udp6", "OutDatagrams", "network_udp_sent_datagrams_total", "", V6),
    f(S, "Udp", "NoPorts", "network_udp_no_ports_total", "UDP datagrams to a port nobody listens on (Udp/Udp6 NoPorts).", V4),
    f(S6, "Udp6", "NoPorts", "network_udp_no_ports_total", "", V6),
    f(S, "Udp", "InErrors", "network_udp_receive_errors_total", "UDP datagrams that could not be delivered (Udp/Udp6 InErrors).", V4),
    f(S6, "Udp6", "InErrors", "network_udp_receive_errors_total", "", V6),
    f(S, "Udp", "RcvbufErrors", "network_udp_receive_buffer_errors_total", "UDP drops for a full receive buffer (Udp/Udp6 RcvbufErrors).", V4),
    f(S6, "Udp6", "RcvbufErrors", "network_udp_receive_buffer_errors_total", "", V6),
    f(S, "Udp", "SndbufErrors", "network_udp_send_buffer_errors_total", "UDP drops for a full send buffer (Udp/Udp6 SndbufErrors).", V4),
    f(S6, "Udp6", "SndbufErrors", "network_udp_send_buffer_errors_total", "", V6),
    f(S, "Ip", "InDiscards", "network_ip_receive_discards_total", "IP input packets discarded without error, e.g. for lack of buffers (Ip InDiscards / Ip6InDiscards).", V4),
    f(S6, "Ip6", "InDiscards", "network_ip_receive_discards_total", "", V6),
    f(S, "Ip", "OutDiscards", "network_ip_transmit_discards_total", "IP output packets discarded (Ip OutDiscards / Ip6OutDiscards).", V4),
    f(S6, "Ip6", "OutDiscards", "network_ip_transmit_discards_total", "", V6),
];

/// Values found, indexed like [`FIELDS`].
type Values = Vec<Option<u64>>;

fn is_wanted_section(source: Source, section: &str) -> bool {
    FIELDS
        .iter()
        .any(|r| r.source == source && r.section == section)
}

/// Store `raw` as the value of the exported field `(source, section, field)`, if it is one.
fn store(
    values: &mut Values,
    source: Source,
    section: &str,
    field: &str,
    raw: &str,
    at: impl FnOnce() -> String,
    sink: &mut Sink,
) {
    let Some(i) = FIELDS
        .iter()
        .position(|r| r.source == source && r.section == section && r.field == field)
    else {
        return;
    };
    match raw.parse::<u64>() {
        Ok(v) => values[i] = Some(v),
        Err(_) => {
            let sep = if source == Source::Snmp6 { "" } else { " " };
            sink.item_error(format!(
                "{}: {section}{sep}{field} value {raw:?} is not a counter",
                at()
            ));
        }
    }
}

/// Parse the header/values pairs of `snmp` or `netstat`.
fn parse_pairs(text: &str, source: Source, path: &Path, values: &mut Values, sink: &mut Sink) {
    let at = |line: usize| format!("{}:{line}", path.display());
    // The header waiting for its values line: (line number, section, field names).
    let mut header: Option<(usize, &str, &str)> = None;
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((section, rest)) = line.split_once(':').filter(|(s, _)| is_section_name(s)) else {
            sink.item_error(format!("{}: no section name", at(line_no)));
            continue;
        };
        match header.take() {
            Some((_, head_section, names)) if head_section == section => {
                // The shape is checked for every pair: a broken pair anywhere means a broken
                // file. Values are read only for the sections we export from.
                let n = names.split_whitespace().count();
                let v = rest.split_whitespace().count();
                if n != v {
                    sink.item_error(format!(
                        "{}: {section} has {n} names but {v} values",
                        at(line_no)
                    ));
                    continue;
                }
                if !is_wanted_section(source, section) {
                    continue;
                }
                for (name, raw) in names.split_whitespace().zip(rest.split_whitespace()) {
                    store(values, source, section, name, raw, || at(line_no), sink);
                }
            }
            Some((head_line, head_section, _)) => {
                sink.item_error(format!(
                    "{}: {head_section} line has no partner",
                    at(head_line)
                ));
                header = Some((line_no, section, rest));
            }
            None => header = Some((line_no, section, rest)),
        }
    }
    if let Some((head_line, head_section, _)) = header {
        sink.item_error(format!(
            "{}: {head_section} line has no partner",
            at(head_line)
        ));
    }
}

/// A section name is one word of ASCII letters and digits (`Tcp`, `TcpExt`, `MPTcpExt`).
fn is_section_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parse `snmp6`: `Ip6InDiscards   4` lines.
fn parse_snmp6(text: &str, path: &Path, values: &mut Values, sink: &mut Sink) {
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split_whitespace();
        let (Some(key), Some(raw), None) = (cols.next(), cols.next(), cols.next()) else {
            sink.item_error(format!("{}:{line_no}: want `name value`", path.display()));
            continue;
        };
        for row in FIELDS.iter().filter(|r| r.source == Source::Snmp6) {
            if key.strip_prefix(row.section) == Some(row.field) {
                let at = || format!("{}:{line_no}", path.display());
                store(values, Source::Snmp6, row.section, row.field, raw, at, sink);
                break;
            }
        }
    }
}

/// Read an optional file: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Collector for Netstat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut values: Values = vec![None; FIELDS.len()];

        let snmp = ctx.proc_path("net/snmp");
        let text = std::fs::read_to_string(&snmp)
            .with_context(|| format!("reading {}", snmp.display()))?;
        parse_pairs(&text, Source::Snmp, &snmp, &mut values, out);

        let netstat = ctx.proc_path("net/netstat");
        match read_optional(&netstat) {
            Ok(Some(text)) => parse_pairs(&text, Source::Netstat, &netstat, &mut values, out),
            Ok(None) => {}
            Err(e) => out.item_error(format!("{}: {e}", netstat.display())),
        }

        let snmp6 = ctx.proc_path("net/snmp6");
        match read_optional(&snmp6) {
            Ok(Some(text)) => parse_snmp6(&text, &snmp6, &mut values, out),
            Ok(None) => {}
            Err(e) => out.item_error(format!("{}: {e}", snmp6.display())),
        }

        let mut i = 0;
        while i < FIELDS.len() {
            let metric = FIELDS[i].metric;
            let mut family = out.counter(metric, FIELDS[i].help);
            while i < FIELDS.len() && FIELDS[i].metric == metric {
                if let Some(v) = values[i] {
                    match FIELDS[i].family {
                        Some(fam) => family.sample(&[("family", fam)], v as f64),
                        None => family.sample(&[], v as f64),
                    };
                }
                i += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::testing::{at as tmp_ctx, fixture as ctx, value};
    use std::path::PathBuf;
    use std::time::Duration;

    /// (metric, labels, value).
    type Expected = (&'static str, &'static [(&'static str, &'static str)], f64);

    #[test]
    fn table_matches_docs_contract() {
        // Rows of one metric are adjacent (collect relies on it) and every metric has a help.
        let mut seen: Vec<&str> = Vec::new();
        for (i, row) in FIELDS.iter().enumerate() {
            assert!(row.metric.starts_with("network_") && row.metric.ends_with("_total"));
            if i == 0 || FIELDS[i - 1].metric != row.metric {
                assert!(!seen.contains(&row.metric), "{} split", row.metric);
                assert!(!row.help.is_empty(), "{} has no help", row.metric);
                seen.push(row.metric);
            }
        }
        assert_eq!(seen.len(), 27);
    }

    #[test]
    fn fixture_counters() {
        let mut sink = Sink::new();
        Netstat.collect(&ctx("host-a"), &mut sink).unwrap();
        assert_eq!(sink.item_errors(), &[] as &[String]);
        let want: &[Expected] = &[
            ("network_tcp_active_opens_total", &[], 48213.0),
            ("network_tcp_passive_opens_total", &[], 10342.0),
            ("network_tcp_attempt_fails_total", &[], 1207.0),
            ("network_tcp_established_resets_total", &[], 389.0),
            ("network_tcp_received_segments_total", &[], 98127731.0),
            ("network_tcp_sent_segments_total", &[], 87311902.0),
            ("network_tcp_retransmitted_segments_total", &[], 40127.0),
            ("network_tcp_receive_errors_total", &[], 58.0),
            ("network_tcp_sent_resets_total", &[], 6021.0),
            ("network_tcp_listen_overflows_total", &[], 31.0),
            ("network_tcp_listen_drops_total", &[], 33.0),
            ("network_tcp_timeouts_total", &[], 2811.0),
            ("network_tcp_syn_retransmits_total", &[], 377.0),
            ("network_tcp_lost_retransmits_total", &[], 91.0),
            ("network_tcp_fast_retransmits_total", &[], 15021.0),
            ("network_tcp_slow_start_retransmits_total", &[], 64.0),
            ("network_tcp_out_of_order_queued_total", &[], 22010.0),
            ("network_tcp_receive_queue_drops_total", &[], 5.0),
            ("network_tcp_aborts_on_timeout_total", &[], 12.0),
            (
                "network_udp_received_datagrams_total",
                &[("family", "ipv4")],
                1203344.0,
            ),
            (
                "network_udp_received_datagrams_total",
                &[("family", "ipv6")],
                80211.0,
            ),
            (
                "network_udp_sent_datagrams_total",
                &[("family", "ipv4")],
                1199871.0,
            ),
            (
                "network_udp_sent_datagrams_total",
                &[("family", "ipv6")],
                79034.0,
            ),
            ("network_udp_no_ports_total", &[("family", "ipv4")], 412.0),
            ("network_udp_no_ports_total", &[("family", "ipv6")], 27.0),
            (
                "network_udp_receive_errors_total",
                &[("family", "ipv4")],
                9.0,
            ),
            (
                "network_udp_receive_errors_total",
                &[("family", "ipv6")],
                1.0,
            ),
            (
                "network_udp_receive_buffer_errors_total",
                &[("family", "ipv4")],
                7.0,
            ),
            (
                "network_udp_receive_buffer_errors_total",
                &[("family", "ipv6")],
                6.0,
            ),
            (
                "network_udp_send_buffer_errors_total",
                &[("family", "ipv4")],
                2.0,
            ),
            (
                "network_udp_send_buffer_errors_total",
                &[("family", "ipv6")],
                0.0,
            ),
            (
                "network_ip_receive_discards_total",
                &[("family", "ipv4")],
                17.0,
            ),
            (
                "network_ip_receive_discards_total",
                &[("family", "ipv6")],
                4.0,
            ),
            (
                "network_ip_transmit_discards_total",
                &[("family", "ipv4")],
                23.0,
            ),
            (
                "network_ip_transmit_discards_total",
                &[("family", "ipv6")],
                3.0,
            ),
        ];
        for (name, labels, v) in want {
            assert_eq!(value(&sink, name, labels), Some(*v), "{name} {labels:?}");
        }
        let samples: usize = sink.families().iter().map(|f| f.get_metric().len()).sum();
        assert_eq!(samples, want.len());
    }

    #[test]
    fn malformed_pairs_are_skipped_and_counted() {
        let c = ctx("malformed");
        let mut sink = Sink::new();
        Netstat.collect(&c, &mut sink).unwrap();
        let snmp = c.proc_path("net/snmp").display().to_string();
        let netstat = c.proc_path("net/netstat").display().to_string();
        let snmp6 = c.proc_path("net/snmp6").display().to_string();
        assert_eq!(
            sink.item_errors(),
            &[
                format!("{snmp}:2: Ip has 20 names but 19 values"),
                format!("{snmp}:4: Tcp InSegs value \"12x\" is not a counter"),
                format!("{snmp}:5: no section name"),
                format!("{netstat}:1: TcpExt line has no partner"),
                format!("{netstat}:4: IpExt line has no partner"),
                format!("{snmp6}:3: want `name value`"),
                format!("{snmp6}:4: want `name value`"),
                format!("{snmp6}:6: Udp6NoPorts value \"-3\" is not a counter"),
            ]
        );
        // Ip was skipped as a whole: no ipv4 discards. The rest of Tcp and Udp survive.
        assert_eq!(
            value(
                &sink,
                "network_ip_receive_discards_total",
                &[("family", "ipv4")]
            ),
            None
        );
        assert_eq!(
            value(&sink, "network_tcp_received_segments_total", &[]),
            None
        );
        assert_eq!(
            value(&sink, "network_tcp_active_opens_total", &[]),
            Some(700.0)
        );
        assert_eq!(
            value(&sink, "network_tcp_retransmitted_segments_total", &[]),
            Some(3.0)
        );
        assert_eq!(
            value(
                &sink,
                "network_udp_received_datagrams_total",
                &[("family", "ipv4")]
            ),
            Some(55.0)
        );
        // TcpExt lost its values line; the MPTcpExt pair after it still parsed (nothing exported).
        assert_eq!(value(&sink, "network_tcp_listen_drops_total", &[]), None);
        // snmp6: the good lines around the bad ones count.
        assert_eq!(
            value(
                &sink,
                "network_ip_receive_discards_total",
                &[("family", "ipv6")]
            ),
            Some(8.0)
        );
        assert_eq!(
            value(
                &sink,
                "network_udp_received_datagrams_total",
                &[("family", "ipv6")]
            ),
            Some(21.0)
        );
        assert_eq!(
            value(&sink, "network_udp_no_ports_total", &[("family", "ipv6")]),
            None
        );
    }

    #[test]
    fn fields_missing_on_this_kernel_are_absent() {
        // An older kernel: no TCPRcvQDrop, no TCPAbortOnTimeout, no snmp6 (IPv6 disabled).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("net/snmp"),
            "Tcp: RtoAlgorithm MaxConn ActiveOpens RetransSegs\nTcp: 1 -1 10 2\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("net/netstat"),
            "TcpExt: ListenDrops TCPTimeouts\nTcpExt: 4 6\n",
        )
        .unwrap();
        let mut sink = Sink::new();
        Netstat.collect(&tmp_ctx(dir.path()), &mut sink).unwrap();
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let (families, _) = sink.clone().into_parts();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "network_tcp_active_opens_total",
                "network_tcp_retransmitted_segments_total",
                "network_tcp_listen_drops_total",
                "network_tcp_timeouts_total",
            ]
        );
        assert_eq!(value(&sink, "network_tcp_timeouts_total", &[]), Some(6.0));
    }

    #[test]
    fn missing_snmp_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Netstat
            .collect(&tmp_ctx(dir.path()), &mut Sink::new())
            .unwrap_err();
        assert!(format!("{err:#}").contains("net/snmp"), "{err:#}");
    }

    #[test]
    fn live_host_parses_cleanly() {
        let c = Context {
            procfs: PathBuf::from("/proc"),
            sysfs: PathBuf::from("/sys"),
            timeout: Duration::from_secs(5),
        };
        if !c.proc_path("net/snmp").exists() {
            return;
        }
        let mut sink = Sink::new();
        Netstat.collect(&c, &mut sink).unwrap();
        assert_eq!(sink.item_errors(), &[] as &[String]);
        // Tcp and Udp counters exist on every kernel this runs on.
        assert!(value(&sink, "network_tcp_received_segments_total", &[]).is_some());
        assert!(value(
            &sink,
            "network_udp_sent_datagrams_total",
            &[("family", "ipv4")]
        )
        .is_some());
    }
}
