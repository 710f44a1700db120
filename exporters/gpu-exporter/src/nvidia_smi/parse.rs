//! From nvidia-smi's CSV to [`GpuReading`] and [`ProcessReading`], by column name.
//!
//! Reads `nvidia-smi --query-gpu=<fields> --format=csv` (with or without `noheader`/`nounits`),
//! `--query-compute-apps=<fields> --format=csv`, and `--help-query-gpu` (to learn which fields
//! the installed driver accepts, since one unknown field makes nvidia-smi reject the whole
//! query).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::table::{self, BadValue, Layout, Table, TableError};
use crate::reading::{ClockEventReason, GpuReading, ProcessReading};

/// The fields the exporter asks `--query-gpu` for, in the current spelling. Ask only for those
/// the driver knows ([`FieldCatalog::select`]).
pub const GPU_FIELDS: &[&str] = &[
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "serial",
    "driver_version",
    "vbios_version",
    "compute_cap",
    "compute_mode",
    "pstate",
    "persistence_mode",
    "display_active",
    "mig.mode.current",
    "mig.mode.pending",
    "ecc.mode.current",
    "ecc.mode.pending",
    "temperature.gpu",
    "temperature.memory",
    "temperature.gpu.tlimit",
    "power.draw",
    "power.draw.average",
    "power.draw.instant",
    "power.limit",
    "enforced.power.limit",
    "power.default_limit",
    "power.min_limit",
    "power.max_limit",
    "memory.total",
    "memory.reserved",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "utilization.memory",
    "utilization.encoder",
    "utilization.decoder",
    "utilization.jpeg",
    "utilization.ofa",
    "encoder.stats.sessionCount",
    "encoder.stats.averageFps",
    "encoder.stats.averageLatency",
    "clocks.current.graphics",
    "clocks.current.sm",
    "clocks.current.memory",
    "clocks.current.video",
    "clocks.max.graphics",
    "clocks.max.sm",
    "clocks.max.memory",
    "fan.speed",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
    "clocks_event_reasons.supported",
    "clocks_event_reasons.active",
    "clocks_event_reasons.gpu_idle",
    "clocks_event_reasons.applications_clocks_setting",
    "clocks_event_reasons.sw_power_cap",
    "clocks_event_reasons.hw_slowdown",
    "clocks_event_reasons.hw_thermal_slowdown",
    "clocks_event_reasons.hw_power_brake_slowdown",
    "clocks_event_reasons.sw_thermal_slowdown",
    "clocks_event_reasons.sync_boost",
    "clocks_event_reasons_counters.sw_power_cap",
    "clocks_event_reasons_counters.sync_boost",
    "clocks_event_reasons_counters.sw_thermal_slowdown",
    "clocks_event_reasons_counters.hw_thermal_slowdown",
    "clocks_event_reasons_counters.hw_power_brake_slowdown",
    "ecc.errors.corrected.volatile.total",
    "ecc.errors.corrected.aggregate.total",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.single_bit_ecc.count",
    "retired_pages.double_bit.count",
    "retired_pages.pending",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
];

/// The fields the exporter asks `--query-compute-apps` for.
pub const PROCESS_FIELDS: &[&str] = &[
    "pid",
    "process_name",
    "used_gpu_memory",
    "gpu_uuid",
    "gpu_bus_id",
];

/// A parse that produced items plus notes about what it had to skip.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    /// One line per skipped row or unreadable value; the collector reports each with
    /// `Sink::item_error`.
    pub problems: Vec<String>,
}

/// The output as a whole could not be read (nothing at all, or no header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub TableError);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ParseError {}

/// Values of one row, looked up by field name; unreadable values become `None` plus a note.
struct RowReader<'a> {
    table: &'a Table,
    cells: &'a [String],
    what: String,
    problems: &'a mut Vec<String>,
}

impl RowReader<'_> {
    fn cell(&self, field: &str) -> Option<(&str, Option<&str>)> {
        let i = self.table.position(field)?;
        Some((
            self.cells[i].as_str(),
            self.table.columns[i].unit.as_deref(),
        ))
    }

    fn note<T>(&mut self, field: &str, r: Result<Option<T>, BadValue>) -> Option<T> {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(format!("{}: {field}: {e}", self.what));
                None
            }
        }
    }

    fn quantity(&mut self, field: &str, default_unit: &str) -> Option<f64> {
        let (cell, unit) = self.cell(field)?;
        let r = table::quantity(cell, unit, default_unit);
        self.note(field, r)
    }

    fn boolean(&mut self, field: &str) -> Option<bool> {
        let (cell, _) = self.cell(field)?;
        let r = table::boolean(cell);
        self.note(field, r)
    }

    fn hex(&mut self, field: &str) -> Option<u64> {
        let (cell, _) = self.cell(field)?;
        let r = table::hex_mask(cell);
        self.note(field, r)
    }

    fn pstate(&mut self, field: &str) -> Option<u8> {
        let (cell, _) = self.cell(field)?;
        let r = table::pstate(cell);
        self.note(field, r)
    }

    fn text(&self, field: &str) -> Option<String> {
        self.cell(field).and_then(|(c, _)| table::text(c))
    }
}

/// Parse `--query-gpu` output into one [`GpuReading`] per GPU.
///
/// Columns are found by name, so any subset of fields in any order works; fields not asked for
/// stay `None`. A row is skipped (and noted) when its value count does not match the header or
/// its `index` is not a number; a single unreadable value only blanks that value (and is noted).
pub fn parse_query_gpu(text: &str, layout: Layout<'_>) -> Result<Parsed<GpuReading>, ParseError> {
    // No free-text re-joining here: GPU names have no commas, and re-joining would turn a row
    // that is too long (a cut header, a misaligned row) into a wrong name instead of a skip.
    let table = Table::parse(text, layout, None).map_err(ParseError)?;
    let mut problems = table.problems.clone();
    let mut items = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let index = match table.position("index").map(|i| row.cells[i].trim()) {
            None => None,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(format!(
                        "line {}: index {:?} is not a GPU number, row skipped",
                        row.line,
                        table::excerpt(raw, 40)
                    ));
                    continue;
                }
            },
        };
        let what = match index {
            Some(i) => format!("line {} (gpu {i})", row.line),
            None => format!("line {}", row.line),
        };
        let mut r = RowReader {
            table: &table,
            cells: &row.cells,
            what,
            problems: &mut problems,
        };
        items.push(read_gpu(&mut r, index));
    }
    Ok(Parsed { items, problems })
}

fn read_gpu(r: &mut RowReader<'_>, index: Option<u32>) -> GpuReading {
    let mut g = GpuReading {
        index,
        uuid: r.text("uuid"),
        name: r.text("name"),
        pci_bus_id: r.text("pci.bus_id"),
        serial: r.text("serial"),
        driver_version: r.text("driver_version"),
        vbios_version: r.text("vbios_version"),
        compute_capability: r.text("compute_cap"),
        compute_mode: r.text("compute_mode"),
        performance_state: r.pstate("pstate"),
        persistence_mode: r.boolean("persistence_mode"),
        display_active: r.boolean("display_active"),
        mig_mode_current: r.boolean("mig.mode.current"),
        mig_mode_pending: r.boolean("mig.mode.pending"),
        ecc_mode_current: r.boolean("ecc.mode.current"),
        ecc_mode_pending: r.boolean("ecc.mode.pending"),
        temperature_celsius: r.quantity("temperature.gpu", "C"),
        memory_temperature_celsius: r.quantity("temperature.memory", "C"),
        slowdown_margin_celsius: r.quantity("temperature.gpu.tlimit", "C"),
        power_draw_watts: r.quantity("power.draw", "W"),
        power_draw_average_watts: r.quantity("power.draw.average", "W"),
        power_draw_instant_watts: r.quantity("power.draw.instant", "W"),
        power_limit_watts: r.quantity("power.limit", "W"),
        enforced_power_limit_watts: r.quantity("enforced.power.limit", "W"),
        default_power_limit_watts: r.quantity("power.default_limit", "W"),
        min_power_limit_watts: r.quantity("power.min_limit", "W"),
        max_power_limit_watts: r.quantity("power.max_limit", "W"),
        memory_total_bytes: r.quantity("memory.total", "MiB"),
        memory_reserved_bytes: r.quantity("memory.reserved", "MiB"),
        memory_used_bytes: r.quantity("memory.used", "MiB"),
        memory_free_bytes: r.quantity("memory.free", "MiB"),
        utilization_gpu_percent: r.quantity("utilization.gpu", "%"),
        utilization_memory_percent: r.quantity("utilization.memory", "%"),
        utilization_encoder_percent: r.quantity("utilization.encoder", "%"),
        utilization_decoder_percent: r.quantity("utilization.decoder", "%"),
        utilization_jpeg_percent: r.quantity("utilization.jpeg", "%"),
        utilization_ofa_percent: r.quantity("utilization.ofa", "%"),
        encoder_sessions: r.quantity("encoder.stats.sessionCount", ""),
        encoder_average_fps: r.quantity("encoder.stats.averageFps", ""),
        encoder_average_latency_seconds: r.quantity("encoder.stats.averageLatency", "us"),
        clock_graphics_hz: r.quantity("clocks.current.graphics", "MHz"),
        clock_sm_hz: r.quantity("clocks.current.sm", "MHz"),
        clock_memory_hz: r.quantity("clocks.current.memory", "MHz"),
        clock_video_hz: r.quantity("clocks.current.video", "MHz"),
        clock_max_graphics_hz: r.quantity("clocks.max.graphics", "MHz"),
        clock_max_sm_hz: r.quantity("clocks.max.sm", "MHz"),
        clock_max_memory_hz: r.quantity("clocks.max.memory", "MHz"),
        fan_speed_percent: r.quantity("fan.speed", "%"),
        pcie_link_gen_current: r.quantity("pcie.link.gen.current", ""),
        pcie_link_gen_max: r.quantity("pcie.link.gen.max", ""),
        pcie_link_width_current: r.quantity("pcie.link.width.current", ""),
        pcie_link_width_max: r.quantity("pcie.link.width.max", ""),
        ecc_corrected_volatile_total: r.quantity("ecc.errors.corrected.volatile.total", ""),
        ecc_corrected_aggregate_total: r.quantity("ecc.errors.corrected.aggregate.total", ""),
        ecc_uncorrected_volatile_total: r.quantity("ecc.errors.uncorrected.volatile.total", ""),
        ecc_uncorrected_aggregate_total: r.quantity("ecc.errors.uncorrected.aggregate.total", ""),
        retired_pages_single_bit: r.quantity("retired_pages.single_bit_ecc.count", ""),
        retired_pages_double_bit: r.quantity("retired_pages.double_bit.count", ""),
        retired_pages_pending: r.boolean("retired_pages.pending"),
        remapped_rows_correctable: r.quantity("remapped_rows.correctable", ""),
        remapped_rows_uncorrectable: r.quantity("remapped_rows.uncorrectable", ""),
        remapped_rows_pending: r.boolean("remapped_rows.pending"),
        remapped_rows_failure: r.boolean("remapped_rows.failure"),
        ..GpuReading::default()
    };
    g.clock_events.supported_mask = r.hex("clocks_event_reasons.supported");
    g.clock_events.active_mask = r.hex("clocks_event_reasons.active");
    for reason in ClockEventReason::ALL {
        let flag = r.boolean(&format!("clocks_event_reasons.{}", reason.key()));
        g.clock_events.set_flag(reason, flag);
        let secs = r.quantity(
            &format!("clocks_event_reasons_counters.{}", reason.key()),
            "us",
        );
        g.clock_events.set_time_seconds(reason, secs);
    }
    g
}

/// Parse `--query-compute-apps` output. A row without a numeric pid is skipped and noted. A
/// header with no rows (no process on any GPU) is an empty list.
pub fn parse_compute_apps(
    text: &str,
    layout: Layout<'_>,
) -> Result<Parsed<ProcessReading>, ParseError> {
    let table = Table::parse(text, layout, Some("process_name")).map_err(ParseError)?;
    let mut problems = table.problems.clone();
    let mut items = Vec::with_capacity(table.rows.len());
    let Some(pid_col) = table.position("pid") else {
        if !table.rows.is_empty() {
            problems.push("no pid column: process rows ignored".to_owned());
        }
        return Ok(Parsed { items, problems });
    };
    for row in &table.rows {
        let raw = row.cells[pid_col].trim();
        let Ok(pid) = raw.parse::<u32>() else {
            problems.push(format!(
                "line {}: pid {:?} is not a number, row skipped",
                row.line,
                table::excerpt(raw, 40)
            ));
            continue;
        };
        let mut r = RowReader {
            table: &table,
            cells: &row.cells,
            what: format!("line {} (pid {pid})", row.line),
            problems: &mut problems,
        };
        items.push(ProcessReading {
            pid,
            process_name: r.text("process_name"),
            used_memory_bytes: r.quantity("used_gpu_memory", "MiB"),
            gpu_uuid: r.text("gpu_uuid"),
            gpu_pci_bus_id: r.text("gpu_bus_id"),
        });
    }
    Ok(Parsed { items, problems })
}

/// The fields a driver's `nvidia-smi --help-query-gpu` lists, with their aliases
/// (`"clocks_event_reasons.active" or "clocks_throttle_reasons.active"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldCatalog {
    /// Every spelling the driver accepts.
    names: BTreeSet<String>,
    /// Spelling to the first (primary) spelling of its entry.
    primary: BTreeMap<String, String>,
}

impl FieldCatalog {
    /// Read `--help-query-gpu` output: every line that starts with a quoted field name lists
    /// that field and its aliases.
    pub fn from_help(text: &str) -> FieldCatalog {
        let mut cat = FieldCatalog::default();
        for line in text.lines() {
            let line = line.trim();
            if !line.starts_with('"') {
                continue;
            }
            let spellings: Vec<&str> = line
                .split('"')
                .skip(1)
                .step_by(2)
                .filter(|s| !s.is_empty())
                .collect();
            let Some(first) = spellings.first() else {
                continue;
            };
            for s in &spellings {
                cat.names.insert((*s).to_owned());
                cat.primary.insert((*s).to_owned(), (*first).to_owned());
            }
        }
        cat
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn knows(&self, field: &str) -> bool {
        self.names.contains(field)
    }

    /// The primary spelling of `field` (itself when it is primary), if the driver knows it.
    pub fn primary(&self, field: &str) -> Option<&str> {
        self.primary.get(field).map(String::as_str)
    }

    /// Of `wanted` (current spellings), the fields this driver accepts, in order, each in a
    /// spelling it accepts: a driver that only knows `clocks_throttle_reasons.*` gets those.
    pub fn select(&self, wanted: &[&str]) -> Vec<String> {
        wanted
            .iter()
            .filter_map(|w| {
                if self.knows(w) {
                    return Some((*w).to_owned());
                }
                let old = w
                    .strip_prefix("clocks_event_reasons_counters.")
                    .map(|r| format!("clocks_throttle_reasons_counters.{r}"))
                    .or_else(|| {
                        w.strip_prefix("clocks_event_reasons.")
                            .map(|r| format!("clocks_throttle_reasons.{r}"))
                    })?;
                self.knows(&old).then_some(old)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_DRIVER: &str = "\
index, uuid, name, pstate, clocks_throttle_reasons.supported, clocks_throttle_reasons.active, clocks_throttle_reasons.hw_slowdown, clocks_throttle_reasons.sw_power_cap, temperature.gpu, utilization.gpu [%], memory.used [MiB], power.draw [W], fan.speed [%]
0, GPU-aaaa, Tesla V100-SXM2-16GB, P0, 0x00000000000001FF, 0x0000000000000008, Active, Not Active, 71, 97 %, 15000 MiB, 250.10 W, [Not Supported]
1, GPU-bbbb, Tesla V100-SXM2-16GB, P12, 0x00000000000001FF, 0x0000000000000001, Not Active, Not Active, 33, 0 %, 0 MiB, [Unknown Error], [Insufficient Permissions]
";

    #[test]
    fn old_driver_throttle_names_are_the_same_concept() {
        let p = parse_query_gpu(OLD_DRIVER, Layout::Header).unwrap();
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.items.len(), 2);
        let g0 = &p.items[0];
        assert_eq!(g0.index, Some(0));
        assert_eq!(g0.clock_events.supported_mask, Some(0x1FF));
        assert_eq!(g0.clock_events.active_mask, Some(0x8));
        assert_eq!(
            g0.clock_events.flag(ClockEventReason::HwSlowdown),
            Some(true)
        );
        assert_eq!(
            g0.clock_events.active(ClockEventReason::HwSlowdown),
            Some(true)
        );
        assert_eq!(
            g0.clock_events.flag(ClockEventReason::SwPowerCap),
            Some(false)
        );
        // No flag column for gpu_idle: derived from the active mask.
        assert_eq!(g0.clock_events.flag(ClockEventReason::GpuIdle), None);
        assert_eq!(
            g0.clock_events.active(ClockEventReason::GpuIdle),
            Some(false)
        );
        assert_eq!(g0.temperature_celsius, Some(71.0));
        assert_eq!(g0.utilization_gpu_percent, Some(97.0));
        assert_eq!(g0.memory_used_bytes, Some(15000.0 * 1048576.0));
        assert_eq!(g0.power_draw_watts, Some(250.10));
        assert_eq!(g0.fan_speed_percent, None);
        let g1 = &p.items[1];
        assert_eq!(g1.performance_state, Some(12));
        assert_eq!(
            g1.clock_events.active(ClockEventReason::GpuIdle),
            Some(true)
        );
        assert_eq!(g1.memory_used_bytes, Some(0.0));
        assert_eq!(g1.power_draw_watts, None);
        assert_eq!(g1.fan_speed_percent, None);
    }

    #[test]
    fn nounits_and_noheader_read_the_same_values() {
        let fields = [
            "memory.used",
            "index",
            "clocks.current.sm",
            "power.draw",
            "utilization.gpu",
        ];
        let p = parse_query_gpu("214, 0, 765, 39.32, 0\n", Layout::NoHeader(&fields)).unwrap();
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let g = &p.items[0];
        assert_eq!(g.index, Some(0));
        assert_eq!(g.memory_used_bytes, Some(214.0 * 1048576.0));
        assert_eq!(g.clock_sm_hz, Some(765e6));
        assert_eq!(g.power_draw_watts, Some(39.32));
        assert_eq!(g.utilization_gpu_percent, Some(0.0));
        assert_eq!(g.temperature_celsius, None, "not asked for");
    }

    #[test]
    fn unreadable_value_blanks_only_that_value() {
        let text = "index, temperature.gpu, power.draw [W], pstate, clocks_event_reasons.active\n0, hot, 12 W, PX, 0xZZ\n";
        let p = parse_query_gpu(text, Layout::Header).unwrap();
        assert_eq!(p.items.len(), 1);
        let g = &p.items[0];
        assert_eq!(g.temperature_celsius, None);
        assert_eq!(g.power_draw_watts, Some(12.0));
        assert_eq!(g.performance_state, None);
        assert_eq!(g.clock_events.active_mask, None);
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        for expected in [
            "line 2 (gpu 0): temperature.gpu: not a number: \"hot\"",
            "line 2 (gpu 0): pstate: not a performance state: \"PX\"",
            "line 2 (gpu 0): clocks_event_reasons.active: not a hex mask: \"0xZZ\"",
        ] {
            assert!(
                p.problems.iter().any(|m| m == expected),
                "{expected} not in {:?}",
                p.problems
            );
        }
    }

    #[test]
    fn bad_index_skips_the_row() {
        let text = "index, temperature.gpu\n0, 40\nzero, 41\n2, 42\n";
        let p = parse_query_gpu(text, Layout::Header).unwrap();
        assert_eq!(
            p.items.iter().map(|g| g.index).collect::<Vec<_>>(),
            vec![Some(0), Some(2)]
        );
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].contains("line 3"), "{}", p.problems[0]);
    }

    #[test]
    fn compute_apps_rows() {
        let text = "pid, process_name, used_gpu_memory [MiB], gpu_uuid\n\
                    11, /bin/a, 10 MiB, GPU-1\n\
                    x, /bin/b, 10 MiB, GPU-1\n\
                    12, /srv/my,app, [N/A], GPU-2\n";
        let p = parse_compute_apps(text, Layout::Header).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].pid, 11);
        assert_eq!(p.items[0].used_memory_bytes, Some(10.0 * 1048576.0));
        assert_eq!(p.items[1].process_name.as_deref(), Some("/srv/my,app"));
        assert_eq!(p.items[1].used_memory_bytes, None);
        assert_eq!(p.items[1].gpu_uuid.as_deref(), Some("GPU-2"));
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].contains("pid \"x\""), "{}", p.problems[0]);
        let empty =
            parse_compute_apps("pid, process_name, used_gpu_memory [MiB]\n", Layout::Header)
                .unwrap();
        assert!(empty.items.is_empty() && empty.problems.is_empty());
    }

    #[test]
    fn catalog_selects_spellings_the_driver_knows() {
        let new = FieldCatalog::from_help(
            "List of valid properties\n\n\"index\"\nZero based index.\n\n\"clocks_event_reasons.active\" or \"clocks_throttle_reasons.active\"\nBitmask.\n\"name\" or \"gpu_name\"\n",
        );
        assert!(new.knows("gpu_name"));
        assert_eq!(new.primary("gpu_name"), Some("name"));
        assert_eq!(
            new.primary("clocks_throttle_reasons.active"),
            Some("clocks_event_reasons.active")
        );
        assert_eq!(
            new.select(&["index", "clocks_event_reasons.active", "utilization.jpeg"]),
            vec!["index", "clocks_event_reasons.active"]
        );
        let old = FieldCatalog::from_help("\"index\"\n\"clocks_throttle_reasons.active\"\n");
        assert_eq!(
            old.select(&["index", "clocks_event_reasons.active"]),
            vec!["index", "clocks_throttle_reasons.active"]
        );
        assert!(FieldCatalog::from_help("garbage\n").is_empty());
    }
}
