//! netstat: reads the kernel's protocol counters from `/proc/net/snmp`, `/proc/net/netstat`
//! and `/proc/net/snmp6` on every scrape and produces the TCP counters
//! `network_tcp_*_total` (no labels; the kernel keeps one set for IPv4 and IPv6), and the
//! UDP and IP counters `network_udp_*_total{family}` and `network_ip_*_discards_total{family}`
//! (`family` is `ipv4` from `snmp`, `ipv6` from `snmp6`). Only the counters listed in
//! docs/metrics.md are exported: [`Counters::slot`] says where each kernel field goes, and
//! [`TCP_FIELDS`] and [`FAMILY_FIELDS`] map the values to metrics.
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
use odin_common::{Collector, Context, Field, SampleValue, Sink};

/// The `netstat` collector. Stateless; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Netstat;

impl Netstat {
    pub fn new() -> Self {
        Self
    }
}

/// Which file a kernel field lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Snmp,
    Netstat,
    /// `/proc/net/snmp6`: one key per line, the section glued to the field (`Ip6InDiscards`).
    Snmp6,
}

/// The exported counters, `None` where this kernel printed nothing.
#[derive(Debug, Default)]
struct Counters {
    /// The kernel keeps one set of TCP counters for IPv4 and IPv6.
    tcp: Tcp,
    ipv4: UdpIp,
    ipv6: UdpIp,
}

#[derive(Debug, Default)]
struct Tcp {
    active_opens: Option<u64>,
    passive_opens: Option<u64>,
    attempt_fails: Option<u64>,
    estab_resets: Option<u64>,
    in_segs: Option<u64>,
    out_segs: Option<u64>,
    retrans_segs: Option<u64>,
    in_errs: Option<u64>,
    out_rsts: Option<u64>,
    listen_overflows: Option<u64>,
    listen_drops: Option<u64>,
    timeouts: Option<u64>,
    syn_retrans: Option<u64>,
    lost_retransmit: Option<u64>,
    fast_retrans: Option<u64>,
    slow_start_retrans: Option<u64>,
    ofo_queue: Option<u64>,
    rcv_q_drop: Option<u64>,
    abort_on_timeout: Option<u64>,
}

/// The UDP and IP counters of one address family.
#[derive(Debug, Default)]
struct UdpIp {
    udp_in_datagrams: Option<u64>,
    udp_out_datagrams: Option<u64>,
    udp_no_ports: Option<u64>,
    udp_in_errors: Option<u64>,
    udp_rcvbuf_errors: Option<u64>,
    udp_sndbuf_errors: Option<u64>,
    ip_in_discards: Option<u64>,
    ip_out_discards: Option<u64>,
}

impl Counters {
    /// Where the kernel field `field` of section `section` in `source` goes, if it is
    /// exported. For `snmp6` the section is the key's prefix (`Udp6`) and the field the rest.
    fn slot(&mut self, source: Source, section: &str, field: &str) -> Option<&mut Option<u64>> {
        use Source::{Netstat, Snmp, Snmp6};
        let (tcp, v4, v6) = (&mut self.tcp, &mut self.ipv4, &mut self.ipv6);
        Some(match (source, section, field) {
            (Snmp, "Tcp", "ActiveOpens") => &mut tcp.active_opens,
            (Snmp, "Tcp", "PassiveOpens") => &mut tcp.passive_opens,
            (Snmp, "Tcp", "AttemptFails") => &mut tcp.attempt_fails,
            (Snmp, "Tcp", "EstabResets") => &mut tcp.estab_resets,
            (Snmp, "Tcp", "InSegs") => &mut tcp.in_segs,
            (Snmp, "Tcp", "OutSegs") => &mut tcp.out_segs,
            (Snmp, "Tcp", "RetransSegs") => &mut tcp.retrans_segs,
            (Snmp, "Tcp", "InErrs") => &mut tcp.in_errs,
            (Snmp, "Tcp", "OutRsts") => &mut tcp.out_rsts,
            (Netstat, "TcpExt", "ListenOverflows") => &mut tcp.listen_overflows,
            (Netstat, "TcpExt", "ListenDrops") => &mut tcp.listen_drops,
            (Netstat, "TcpExt", "TCPTimeouts") => &mut tcp.timeouts,
            (Netstat, "TcpExt", "TCPSynRetrans") => &mut tcp.syn_retrans,
            (Netstat, "TcpExt", "TCPLostRetransmit") => &mut tcp.lost_retransmit,
            (Netstat, "TcpExt", "TCPFastRetrans") => &mut tcp.fast_retrans,
            (Netstat, "TcpExt", "TCPSlowStartRetrans") => &mut tcp.slow_start_retrans,
            (Netstat, "TcpExt", "TCPOFOQueue") => &mut tcp.ofo_queue,
            (Netstat, "TcpExt", "TCPRcvQDrop") => &mut tcp.rcv_q_drop,
            (Netstat, "TcpExt", "TCPAbortOnTimeout") => &mut tcp.abort_on_timeout,
            (Snmp, "Udp", field) => v4.udp_slot(field)?,
            (Snmp6, "Udp6", field) => v6.udp_slot(field)?,
            (Snmp, "Ip", "InDiscards") => &mut v4.ip_in_discards,
            (Snmp, "Ip", "OutDiscards") => &mut v4.ip_out_discards,
            (Snmp6, "Ip6", "InDiscards") => &mut v6.ip_in_discards,
            (Snmp6, "Ip6", "OutDiscards") => &mut v6.ip_out_discards,
            _ => return None,
        })
    }

    /// Whether any field of `section` in `source` is exported (other sections are only
    /// checked for shape).
    fn is_wanted_section(source: Source, section: &str) -> bool {
        matches!(
            (source, section),
            (Source::Snmp, "Tcp" | "Udp" | "Ip") | (Source::Netstat, "TcpExt")
        )
    }
}

impl UdpIp {
    /// Where the UDP field `field` (`Udp` in `snmp`, `Udp6` in `snmp6`) goes.
    fn udp_slot(&mut self, field: &str) -> Option<&mut Option<u64>> {
        Some(match field {
            "InDatagrams" => &mut self.udp_in_datagrams,
            "OutDatagrams" => &mut self.udp_out_datagrams,
            "NoPorts" => &mut self.udp_no_ports,
            "InErrors" => &mut self.udp_in_errors,
            "RcvbufErrors" => &mut self.udp_rcvbuf_errors,
            "SndbufErrors" => &mut self.udp_sndbuf_errors,
            _ => return None,
        })
    }
}

/// The `snmp6` sections we export from; a key is one of them followed by the field name.
const SNMP6_SECTIONS: [&str; 2] = ["Udp6", "Ip6"];

/// The TCP counters, without labels. The help names the kernel field.
const TCP_FIELDS: &[Field<Tcp>] = &[
    Field::counter(
        "tcp_active_opens_total",
        "TCP connections opened by this host (Tcp ActiveOpens).",
        |t| t.active_opens.sample_value(),
    ),
    Field::counter(
        "tcp_passive_opens_total",
        "TCP connections accepted (Tcp PassiveOpens).",
        |t| t.passive_opens.sample_value(),
    ),
    Field::counter(
        "tcp_attempt_fails_total",
        "Failed TCP connection attempts (Tcp AttemptFails).",
        |t| t.attempt_fails.sample_value(),
    ),
    Field::counter(
        "tcp_established_resets_total",
        "Established TCP connections reset (Tcp EstabResets).",
        |t| t.estab_resets.sample_value(),
    ),
    Field::counter(
        "tcp_received_segments_total",
        "TCP segments received (Tcp InSegs).",
        |t| t.in_segs.sample_value(),
    ),
    Field::counter(
        "tcp_sent_segments_total",
        "TCP segments sent (Tcp OutSegs).",
        |t| t.out_segs.sample_value(),
    ),
    Field::counter(
        "tcp_retransmitted_segments_total",
        "TCP segments retransmitted (Tcp RetransSegs).",
        |t| t.retrans_segs.sample_value(),
    ),
    Field::counter(
        "tcp_receive_errors_total",
        "TCP segments received in error (Tcp InErrs).",
        |t| t.in_errs.sample_value(),
    ),
    Field::counter(
        "tcp_sent_resets_total",
        "TCP segments sent with RST (Tcp OutRsts).",
        |t| t.out_rsts.sample_value(),
    ),
    Field::counter(
        "tcp_listen_overflows_total",
        "Accept queue overflows (TcpExt ListenOverflows).",
        |t| t.listen_overflows.sample_value(),
    ),
    Field::counter(
        "tcp_listen_drops_total",
        "SYNs to listening sockets dropped (TcpExt ListenDrops).",
        |t| t.listen_drops.sample_value(),
    ),
    Field::counter(
        "tcp_timeouts_total",
        "TCP retransmission timeouts (TcpExt TCPTimeouts).",
        |t| t.timeouts.sample_value(),
    ),
    Field::counter(
        "tcp_syn_retransmits_total",
        "SYN and SYN-ACK retransmits (TcpExt TCPSynRetrans).",
        |t| t.syn_retrans.sample_value(),
    ),
    Field::counter(
        "tcp_lost_retransmits_total",
        "TCP retransmits that were lost again (TcpExt TCPLostRetransmit).",
        |t| t.lost_retransmit.sample_value(),
    ),
    Field::counter(
        "tcp_fast_retransmits_total",
        "TCP fast retransmits (TcpExt TCPFastRetrans).",
        |t| t.fast_retrans.sample_value(),
    ),
    Field::counter(
        "tcp_slow_start_retransmits_total",
        "TCP retransmits in slow start (TcpExt TCPSlowStartRetrans).",
        |t| t.slow_start_retrans.sample_value(),
    ),
    Field::counter(
        "tcp_out_of_order_queued_total",
        "TCP segments put on the out-of-order queue (TcpExt TCPOFOQueue).",
        |t| t.ofo_queue.sample_value(),
    ),
    Field::counter(
        "tcp_receive_queue_drops_total",
        "TCP segments dropped because the receive queue was full (TcpExt TCPRcvQDrop).",
        |t| t.rcv_q_drop.sample_value(),
    ),
    Field::counter(
        "tcp_aborts_on_timeout_total",
        "TCP connections aborted after too many timeouts (TcpExt TCPAbortOnTimeout).",
        |t| t.abort_on_timeout.sample_value(),
    ),
];

/// The UDP and IP counters, with label `family` (`ipv4` from `snmp`, `ipv6` from `snmp6`).
const FAMILY_FIELDS: &[Field<UdpIp>] = &[
    Field::counter("udp_received_datagrams_total", "UDP datagrams delivered (Udp/Udp6 InDatagrams).", |u| u.udp_in_datagrams.sample_value()),
    Field::counter("udp_sent_datagrams_total", "UDP datagrams sent (Udp/Udp6 OutDatagrams).", |u| u.udp_out_datagrams.sample_value()),
    Field::counter("udp_no_ports_total", "UDP datagrams to a port nobody listens on (Udp/Udp6 NoPorts).", |u| u.udp_no_ports.sample_value()),
    Field::counter("udp_receive_errors_total", "UDP datagrams that could not be delivered (Udp/Udp6 InErrors).", |u| u.udp_in_errors.sample_value()),
    Field::counter("udp_receive_buffer_errors_total", "UDP drops for a full receive buffer (Udp/Udp6 RcvbufErrors).", |u| u.udp_rcvbuf_errors.sample_value()),
    Field::counter("udp_send_buffer_errors_total", "UDP drops for a full send buffer (Udp/Udp6 SndbufErrors).", |u| u.udp_sndbuf_errors.sample_value()),
    Field::counter("ip_receive_discards_total", "IP input packets discarded without error, e.g. for lack of buffers (Ip InDiscards / Ip6InDiscards).", |u| u.ip_in_discards.sample_value()),
    Field::counter("ip_transmit_discards_total", "IP output packets discarded (Ip OutDiscards / Ip6OutDiscards).", |u| u.ip_out_discards.sample_value()),
];

/// Store `raw` as the value of the kernel field `(source, section, field)`, if it is exported.
fn store(
    counters: &mut Counters,
    (source, section, field): (Source, &str, &str),
    raw: &str,
    at: impl FnOnce() -> String,
    sink: &mut Sink,
) {
    let Some(slot) = counters.slot(source, section, field) else {
        return;
    };
    match raw.parse::<u64>() {
        Ok(v) => *slot = Some(v),
        Err(_) => {
            let separator = if source == Source::Snmp6 { "" } else { " " };
            sink.item_error(format!(
                "{}: {section}{separator}{field} value {raw:?} is not a counter",
                at()
            ));
        }
    }
}

/// Parse the header/values pairs of `snmp` or `netstat`.
fn parse_pairs(text: &str, source: Source, path: &Path, counters: &mut Counters, sink: &mut Sink) {
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
                let name_count = names.split_whitespace().count();
                let value_count = rest.split_whitespace().count();
                if name_count != value_count {
                    sink.item_error(format!(
                        "{}: {section} has {name_count} names but {value_count} values",
                        at(line_no)
                    ));
                    continue;
                }
                if !Counters::is_wanted_section(source, section) {
                    continue;
                }
                for (name, raw) in names.split_whitespace().zip(rest.split_whitespace()) {
                    let key = (source, section, name);
                    store(counters, key, raw, || at(line_no), sink);
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
fn parse_snmp6(text: &str, path: &Path, counters: &mut Counters, sink: &mut Sink) {
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut columns = line.split_whitespace();
        let (Some(key), Some(raw), None) = (columns.next(), columns.next(), columns.next()) else {
            sink.item_error(format!("{}:{line_no}: want `name value`", path.display()));
            continue;
        };
        for section in SNMP6_SECTIONS {
            if let Some(field) = key.strip_prefix(section) {
                let at = || format!("{}:{line_no}", path.display());
                store(counters, (Source::Snmp6, section, field), raw, at, sink);
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
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut counters = Counters::default();

        let snmp = ctx.proc_path("net/snmp");
        let text = std::fs::read_to_string(&snmp)
            .with_context(|| format!("reading {}", snmp.display()))?;
        parse_pairs(&text, Source::Snmp, &snmp, &mut counters, out);

        let netstat = ctx.proc_path("net/netstat");
        match read_optional(&netstat) {
            Ok(Some(text)) => parse_pairs(&text, Source::Netstat, &netstat, &mut counters, out),
            Ok(None) => {}
            Err(e) => out.item_error(format!("{}: {e}", netstat.display())),
        }

        let snmp6 = ctx.proc_path("net/snmp6");
        match read_optional(&snmp6) {
            Ok(Some(text)) => parse_snmp6(&text, &snmp6, &mut counters, out),
            Ok(None) => {}
            Err(e) => out.item_error(format!("{}: {e}", snmp6.display())),
        }

        out.fields(TCP_FIELDS, &[(&[], &counters.tcp)]);
        let rows = [("ipv4", &counters.ipv4), ("ipv6", &counters.ipv6)];
        out.fields_by_label(FAMILY_FIELDS, "family", rows);
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
    fn table_matches_docs_contract() {
        // 27 counters, each named once and with a help; the sink adds the prefix.
        let fields: Vec<(&str, &str)> = TCP_FIELDS
            .iter()
            .map(|f| (f.name, f.help))
            .chain(FAMILY_FIELDS.iter().map(|f| (f.name, f.help)))
            .collect();
        for (name, help) in &fields {
            assert!(
                name.ends_with("_total") && !name.starts_with("network_"),
                "{name}"
            );
            assert!(!help.is_empty(), "{name} has no help");
        }
        let mut names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len(), "a name is used twice");
        assert_eq!(fields.len(), 27);
    }

    #[test]
    fn fixture_counters() {
        let mut sink = sink();
        Netstat.collect(&fixture("host-a"), &mut sink).unwrap();
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
        let c = fixture("malformed");
        let mut sink = sink();
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
        let mut sink = sink();
        Netstat
            .collect(&dir_context(dir.path()), &mut sink)
            .unwrap();
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
            .collect(&dir_context(dir.path()), &mut sink())
            .unwrap_err();
        assert!(format!("{err:#}").contains("net/snmp"), "{err:#}");
    }

    #[test]
    fn live_host_parses_cleanly() {
        let c = live_context();
        if !c.proc_path("net/snmp").exists() {
            return;
        }
        let mut sink = sink();
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
