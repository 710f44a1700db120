//! Collector `softnet`: per-CPU packet-processing counters from `/proc/net/softnet_stat`.
//!
//! Reads `<procfs>/net/softnet_stat`: one row per online CPU, columns of 8-digit hex numbers.
//! Column 1 is packets processed, column 2 packets dropped because the backlog queue was full,
//! column 3 the times `net_rx_action` ran out of budget with work left. Produces, with label
//! `cpu`: `network_softnet_processed_total`, `network_softnet_dropped_total`,
//! `network_softnet_times_squeezed_total`.
//!
//! The `cpu` label is the CPU number the kernel prints in column 13 (Linux 5.10 and newer);
//! older kernels do not print it and the row index is used instead, which differs from the CPU
//! number when some CPUs are offline. A row with fewer columns than the widest row (a
//! truncated line), fewer than three, or a field that is not hex is skipped and counted as an
//! item error; only a missing or unreadable file fails the collector.

use anyhow::Context as _;
use odin_common::{Collector, Context, Field, SampleValue, Sink};

/// 1-based column holding the CPU number on Linux >= 5.10.
const CPU_COLUMN: usize = 13;

/// The `softnet` collector.
#[derive(Debug, Clone, Default)]
pub struct Softnet;

impl Softnet {
    pub fn new() -> Self {
        Self
    }
}

/// One CPU's row.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CpuRow {
    pub cpu: u32,
    pub processed: u32,
    pub dropped: u32,
    pub squeezed: u32,
}

/// Parse the file; `what` names it in the item-error notes pushed onto `errors`.
pub(crate) fn parse(text: &str, what: &str, errors: &mut Vec<String>) -> Vec<CpuRow> {
    struct Raw {
        line: usize,
        columns: usize,
        first: [u32; 3],
        cpu: Option<u32>,
    }
    let mut raws = Vec::with_capacity(64);
    let mut widest = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut first = [0u32; 3];
        let mut cpu = None;
        let mut columns = 0;
        let mut bad = None;
        for (c, field) in line.split_ascii_whitespace().enumerate() {
            columns = c + 1;
            match u32::from_str_radix(field, 16) {
                Ok(v) if c < 3 => first[c] = v,
                Ok(v) if columns == CPU_COLUMN => cpu = Some(v),
                Ok(_) => {}
                Err(_) => {
                    bad = Some(columns);
                    break;
                }
            }
        }
        if let Some(c) = bad {
            errors.push(format!(
                "{what} line {}: column {c} is not a hex number",
                i + 1
            ));
            continue;
        }
        if columns < 3 {
            errors.push(format!(
                "{what} line {}: {columns} columns, need at least 3",
                i + 1
            ));
            continue;
        }
        widest = widest.max(columns);
        raws.push(Raw {
            line: i + 1,
            columns,
            first,
            cpu,
        });
    }
    let mut rows = Vec::with_capacity(raws.len());
    for (index, raw) in raws.into_iter().enumerate() {
        if raw.columns < widest {
            errors.push(format!(
                "{what} line {}: {} columns where other rows have {widest} (truncated?)",
                raw.line, raw.columns
            ));
            continue;
        }
        rows.push(CpuRow {
            cpu: raw.cpu.unwrap_or(index as u32),
            processed: raw.first[0],
            dropped: raw.first[1],
            squeezed: raw.first[2],
        });
    }
    rows
}

/// One counter family per column read, with label `cpu`.
const FIELDS: &[Field<CpuRow>] = &[
    Field::counter(
        "softnet_processed_total",
        "Packets processed by the CPU's softirq.",
        |r| r.processed.sample_value(),
    ),
    Field::counter(
        "softnet_dropped_total",
        "Packets dropped because the backlog was full.",
        |r| r.dropped.sample_value(),
    ),
    Field::counter(
        "softnet_times_squeezed_total",
        "Times net_rx_action ran out of budget with work left.",
        |r| r.squeezed.sample_value(),
    ),
];

impl Collector for Softnet {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let path = ctx.proc_path("net/softnet_stat");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut errors = Vec::new();
        let rows = parse(&text, &path.display().to_string(), &mut errors);
        for e in errors {
            out.item_error(e);
        }
        let cpus: Vec<String> = rows.iter().map(|r| r.cpu.to_string()).collect();
        out.fields_by_label(FIELDS, "cpu", cpus.iter().map(String::as_str).zip(&rows));
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

    fn collect(ctx: &Context) -> Sink {
        let mut sink = sink();
        Softnet::new().collect(ctx, &mut sink).expect("collect");
        sink
    }

    #[test]
    fn fixture_uses_the_cpu_column() {
        let sink = collect(&host_a());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        // CPU 2 is offline on host-a: the third row is CPU 3.
        assert_eq!(
            label_values(&sink, "network_softnet_processed_total", "cpu"),
            ["0", "1", "3"]
        );
        let cpu = |c| [("cpu", c)];
        assert_eq!(
            value(&sink, "network_softnet_processed_total", &cpu("0")),
            Some(2_976_359.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_dropped_total", &cpu("0")),
            Some(0.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_times_squeezed_total", &cpu("0")),
            Some(24.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_processed_total", &cpu("1")),
            Some(1_581_231.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_dropped_total", &cpu("1")),
            Some(42.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_times_squeezed_total", &cpu("1")),
            Some(3.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_processed_total", &cpu("3")),
            Some(f64::from(u32::MAX))
        );
        assert_eq!(
            value(&sink, "network_softnet_dropped_total", &cpu("3")),
            Some(256.0)
        );
        assert_eq!(
            value(&sink, "network_softnet_times_squeezed_total", &cpu("3")),
            Some(4096.0)
        );
    }

    #[test]
    fn old_kernels_without_cpu_column_use_the_row_index() {
        let text = "\
0000a000 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
0000b000 00000003 00000004 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
";
        let mut errors = Vec::new();
        let rows = parse(text, "f", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rows,
            [
                CpuRow {
                    cpu: 0,
                    processed: 0xa000,
                    dropped: 1,
                    squeezed: 2
                },
                CpuRow {
                    cpu: 1,
                    processed: 0xb000,
                    dropped: 3,
                    squeezed: 4
                },
            ]
        );
    }

    #[test]
    fn malformed_rows_are_skipped_and_counted() {
        let text = "\
00000010 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00000020 0000zz01 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001
00000030 00000001
00000040 00000005 00000006 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003

00000050 00000007 00000008 00000000 00000000 00000000 00000000";
        let mut errors = Vec::new();
        let rows = parse(text, "/p/net/softnet_stat", &mut errors);
        assert_eq!(
            rows,
            [
                CpuRow {
                    cpu: 0,
                    processed: 0x10,
                    dropped: 1,
                    squeezed: 2
                },
                CpuRow {
                    cpu: 3,
                    processed: 0x40,
                    dropped: 5,
                    squeezed: 6
                },
            ]
        );
        assert_eq!(
            errors,
            [
                "/p/net/softnet_stat line 2: column 2 is not a hex number",
                "/p/net/softnet_stat line 3: 2 columns, need at least 3",
                "/p/net/softnet_stat line 6: 7 columns where other rows have 13 (truncated?)",
            ]
        );
    }

    #[test]
    fn missing_file_fails_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Softnet::new()
            .collect(&dir_context(dir.path()), &mut sink())
            .is_err());
    }

    #[test]
    fn live_host_parses_without_item_errors() {
        let sink = collect(&live_context());
        assert!(sink.item_errors().is_empty(), "{:?}", sink.item_errors());
        let cpus = label_values(&sink, "network_softnet_processed_total", "cpu");
        assert!(!cpus.is_empty());
        let mut distinct = cpus.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), cpus.len(), "duplicate cpu labels: {cpus:?}");
    }
}
