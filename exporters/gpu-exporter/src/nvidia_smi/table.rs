//! The CSV that `nvidia-smi --query-*=<fields> --format=csv[,noheader][,nounits]` prints, read
//! by column name, and the value tokens it uses.
//!
//! What nvidia-smi prints (see the real captures in `../shared/captures/nvidia-smi/`):
//! - a header line `timestamp, name, memory.used [MiB], power.draw [W], ...`: field names as
//!   nvidia-smi spells them canonically (whatever alias was asked for), units in brackets;
//! - one line per GPU (or process), values separated by `", "`, numbers followed by their unit
//!   (`214 MiB`, `39.32 W`, `765 MHz`, `38 %`, `212553937 us`), unquoted;
//! - bracketed messages where there is no value: `[N/A]`, `[Not Supported]`,
//!   `[Insufficient Permissions]`, `[Unknown Error]`, `[GPU is lost]`,
//!   `[Requested functionality has been deprecated]`; some fields say `N/A` without brackets.
//!
//! Nothing is quoted, so a comma inside a free-text value (a process path) would split it; the
//! parser can re-join the surplus into one designated free-text column.

use std::fmt;

/// Why a cell holds no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absent {
    /// `[N/A]` or `N/A`.
    NotAvailable,
    /// `[Not Supported]`.
    NotSupported,
    /// `[Insufficient Permissions]`.
    InsufficientPermissions,
    /// `[Unknown Error]`.
    UnknownError,
    /// `[Requested functionality has been deprecated]`.
    Deprecated,
    /// `[GPU is lost]`.
    GpuLost,
    /// Nothing at all between the commas.
    Empty,
    /// Any other bracketed message, kept verbatim without the brackets.
    Other(String),
}

/// Classify a trimmed cell: `Some(reason)` when it is one of nvidia-smi's "no value" tokens.
pub fn absent(cell: &str) -> Option<Absent> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Some(Absent::Empty);
    }
    if cell.eq_ignore_ascii_case("N/A") {
        return Some(Absent::NotAvailable);
    }
    let inner = cell.strip_prefix('[')?.strip_suffix(']')?.trim();
    let lower = inner.to_ascii_lowercase();
    Some(match lower.as_str() {
        "n/a" => Absent::NotAvailable,
        "not supported" => Absent::NotSupported,
        "insufficient permissions" => Absent::InsufficientPermissions,
        "unknown error" => Absent::UnknownError,
        "gpu is lost" => Absent::GpuLost,
        _ if lower.contains("deprecated") => Absent::Deprecated,
        _ => Absent::Other(inner.to_owned()),
    })
}

/// How a unit nvidia-smi prints becomes the base unit we export (bytes, hertz, watts,
/// seconds; percent and celsius stay as they are): multiplied by `.0`, or, for the units
/// below the base, divided by `.1` (dividing by a power of ten rounds correctly, multiplying
/// by its inverse does not: `200740215 us` must be the 200.740215 s that NVML's nanoseconds
/// give). `None` for a unit we do not know.
pub fn unit_scale(unit: &str) -> Option<(f64, f64)> {
    Some(match unit {
        "" | "%" | "C" | "W" | "s" | "B" | "Hz" => (1.0, 1.0),
        "KiB" => (1024.0, 1.0),
        "MiB" => (1024.0 * 1024.0, 1.0),
        "GiB" => (1024.0 * 1024.0 * 1024.0, 1.0),
        "kHz" | "KHz" => (1e3, 1.0),
        "MHz" => (1e6, 1.0),
        "GHz" => (1e9, 1.0),
        "mW" | "ms" => (1.0, 1e3),
        "us" => (1.0, 1e6),
        "ns" => (1.0, 1e9),
        _ => return None,
    })
}

/// A cell that should hold a number could not be read as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue(pub String);

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read a quantity and convert it to base units.
///
/// The unit is the one printed after the number if any (`214 MiB`), else the header's
/// (`memory.used [MiB]`), else `default_unit` (what the field is in under `nounits` and
/// `noheader`). `Ok(None)` for an [`absent`] token; `Err` for anything else that is not a
/// finite number in a known unit, or whose value in base units is not finite.
pub fn quantity(
    cell: &str,
    header_unit: Option<&str>,
    default_unit: &str,
) -> Result<Option<f64>, BadValue> {
    let cell = cell.trim();
    if absent(cell).is_some() {
        return Ok(None);
    }
    let (number, value_unit) = match cell.split_once(char::is_whitespace) {
        Some((n, u)) => (n, Some(u.trim())),
        None => match cell.strip_suffix('%') {
            Some(n) => (n, Some("%")),
            None => (cell, None),
        },
    };
    let unit = value_unit.or(header_unit).unwrap_or(default_unit);
    let scale = unit_scale(unit).ok_or_else(|| BadValue(format!("unknown unit in {cell:?}")))?;
    let v: f64 = number
        .parse()
        .map_err(|_| BadValue(format!("not a number: {cell:?}")))?;
    // Finite as printed is not enough: `1e308 GiB` overflows once converted to bytes.
    let v = v * scale.0 / scale.1;
    if !v.is_finite() {
        return Err(BadValue(format!("not a finite number: {cell:?}")));
    }
    Ok(Some(v))
}

/// `Enabled`/`Disabled`, `Active`/`Not Active`, `Yes`/`No`, `On`/`Off`.
pub fn boolean(cell: &str) -> Result<Option<bool>, BadValue> {
    let cell = cell.trim();
    if absent(cell).is_some() {
        return Ok(None);
    }
    match cell.to_ascii_lowercase().as_str() {
        "enabled" | "active" | "yes" | "on" | "true" => Ok(Some(true)),
        "disabled" | "not active" | "no" | "off" | "false" => Ok(Some(false)),
        _ => Err(BadValue(format!("not a yes/no value: {cell:?}"))),
    }
}

/// `0x00000000000001FF`.
pub fn hex_mask(cell: &str) -> Result<Option<u64>, BadValue> {
    let cell = cell.trim();
    if absent(cell).is_some() {
        return Ok(None);
    }
    let digits = cell
        .strip_prefix("0x")
        .or_else(|| cell.strip_prefix("0X"))
        .ok_or_else(|| BadValue(format!("not a hex mask: {cell:?}")))?;
    u64::from_str_radix(digits, 16)
        .map(Some)
        .map_err(|_| BadValue(format!("not a hex mask: {cell:?}")))
}

/// `P0` .. `P15` to 0 .. 15.
pub fn pstate(cell: &str) -> Result<Option<u8>, BadValue> {
    let cell = cell.trim();
    if absent(cell).is_some() {
        return Ok(None);
    }
    cell.strip_prefix('P')
        .or_else(|| cell.strip_prefix('p'))
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| *n <= 15)
        .map(Some)
        .ok_or_else(|| BadValue(format!("not a performance state: {cell:?}")))
}

/// Free text; `None` for an absent token.
pub fn text(cell: &str) -> Option<String> {
    let cell = cell.trim();
    if absent(cell).is_some() {
        None
    } else {
        Some(cell.to_owned())
    }
}

/// Map old field spellings to the current ones, so the rest of the code knows one name.
pub fn canonical_field(name: &str) -> String {
    let name = name.trim();
    if let Some(rest) = name.strip_prefix("clocks_throttle_reasons_counters.") {
        format!("clocks_event_reasons_counters.{rest}")
    } else if let Some(rest) = name.strip_prefix("clocks_throttle_reasons.") {
        format!("clocks_event_reasons.{rest}")
    } else {
        name.to_owned()
    }
}

/// One column of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Canonical field name (see [`canonical_field`]), without the unit.
    pub name: String,
    /// The unit from the header (`MiB` from `memory.used [MiB]`), if it had one.
    pub unit: Option<String>,
}

impl Column {
    /// Parse one header cell: `memory.used [MiB]` or `index`.
    pub fn parse(cell: &str) -> Option<Column> {
        let cell = cell.trim();
        let (name, unit) = match cell.split_once(" [") {
            Some((n, rest)) => (n.trim(), Some(rest.strip_suffix(']')?.trim().to_owned())),
            None => (cell, None),
        };
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        ok.then(|| Column {
            name: canonical_field(name),
            unit,
        })
    }
}

/// Where the column names come from.
#[derive(Debug, Clone, Copy)]
pub enum Layout<'a> {
    /// `--format=csv` or `csv,nounits`: the first non-empty line is the header.
    Header,
    /// `--format=csv,noheader[,nounits]`: the fields that were asked for, in order.
    NoHeader(&'a [&'a str]),
}

/// The whole output could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// No output at all (with a header layout, even zero GPUs print a header).
    Empty,
    /// The first line is not a header of field names.
    BadHeader(String),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Empty => f.write_str("nvidia-smi printed nothing"),
            TableError::BadHeader(h) => write!(
                f,
                "nvidia-smi output does not start with a CSV header: {h:?}"
            ),
        }
    }
}

impl std::error::Error for TableError {}

/// One data line, split into as many cells as there are columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number in the output, for messages.
    pub line: usize,
    pub cells: Vec<String>,
}

/// A parsed CSV output: columns, the rows that had the right shape, and a note for each line
/// that did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub problems: Vec<String>,
}

impl Table {
    /// Split `text` into columns and rows. A line with the wrong number of cells is skipped
    /// and noted in `problems`, unless it has too many and `free_text` names a column: then
    /// the surplus is joined back into that column (an unquoted comma in a process path).
    pub fn parse(
        text: &str,
        layout: Layout<'_>,
        free_text: Option<&str>,
    ) -> Result<Table, TableError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let columns: Vec<Column> = match layout {
            Layout::Header => {
                let (_, header) = lines.next().ok_or(TableError::Empty)?;
                header
                    .split(',')
                    .map(Column::parse)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| TableError::BadHeader(excerpt(header, 120)))?
            }
            Layout::NoHeader(fields) => fields
                .iter()
                .map(|f| Column {
                    name: canonical_field(f),
                    unit: None,
                })
                .collect(),
        };
        let free_idx = free_text.and_then(|name| columns.iter().position(|c| c.name == name));
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        for (i, line) in lines {
            let line_no = i + 1;
            let pieces: Vec<&str> = line.split(',').collect();
            let cells: Vec<String> = if pieces.len() == columns.len() {
                pieces.iter().map(|p| p.trim().to_owned()).collect()
            } else if let (Some(f), true) = (free_idx, pieces.len() > columns.len()) {
                let surplus = pieces.len() - columns.len();
                let mut cells: Vec<String> =
                    pieces[..f].iter().map(|p| p.trim().to_owned()).collect();
                cells.push(pieces[f..=f + surplus].join(",").trim().to_owned());
                cells.extend(
                    pieces[f + surplus + 1..]
                        .iter()
                        .map(|p| p.trim().to_owned()),
                );
                cells
            } else {
                problems.push(format!(
                    "line {line_no}: {} values for {} columns, skipped: {:?}",
                    pieces.len(),
                    columns.len(),
                    excerpt(line, 80)
                ));
                continue;
            };
            rows.push(Row {
                line: line_no,
                cells,
            });
        }
        Ok(Table {
            columns,
            rows,
            problems,
        })
    }

    /// Index of the column with this (canonical) name.
    pub fn position(&self, name: &str) -> Option<usize> {
        let name = canonical_field(name);
        self.columns.iter().position(|c| c.name == name)
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut; control characters replaced.
pub fn excerpt(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        clean.to_owned()
    } else {
        let cut: String = clean.chars().take(max).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_tokens() {
        assert_eq!(absent("[N/A]"), Some(Absent::NotAvailable));
        assert_eq!(absent(" N/A "), Some(Absent::NotAvailable));
        assert_eq!(absent("[Not Supported]"), Some(Absent::NotSupported));
        assert_eq!(
            absent("[Insufficient Permissions]"),
            Some(Absent::InsufficientPermissions)
        );
        assert_eq!(absent("[Unknown Error]"), Some(Absent::UnknownError));
        assert_eq!(absent("[GPU is lost]"), Some(Absent::GpuLost));
        assert_eq!(
            absent("[Requested functionality has been deprecated]"),
            Some(Absent::Deprecated)
        );
        assert_eq!(absent(""), Some(Absent::Empty));
        assert_eq!(
            absent("[Something new]"),
            Some(Absent::Other("Something new".into()))
        );
        assert_eq!(absent("0"), None);
        assert_eq!(absent("Not Active"), None);
        assert_eq!(absent("[N/A"), None);
    }

    #[test]
    fn quantities_in_base_units() {
        assert_eq!(
            quantity("214 MiB", Some("MiB"), "MiB"),
            Ok(Some(214.0 * 1048576.0))
        );
        // nounits: the number alone, unit from the field's default.
        assert_eq!(quantity("214", None, "MiB"), Ok(Some(214.0 * 1048576.0)));
        assert_eq!(quantity("765 MHz", Some("MHz"), "MHz"), Ok(Some(765e6)));
        assert_eq!(quantity("39.32 W", Some("W"), "W"), Ok(Some(39.32)));
        assert_eq!(quantity("38 %", Some("%"), "%"), Ok(Some(38.0)));
        assert_eq!(quantity("38%", None, "%"), Ok(Some(38.0)));
        assert_eq!(
            quantity("212553937 us", Some("us"), "us"),
            Ok(Some(212.553937))
        );
        assert_eq!(quantity("40", None, "C"), Ok(Some(40.0)));
        assert_eq!(quantity("-8", None, "C"), Ok(Some(-8.0)));
        // An absent value is None, never 0.
        assert_eq!(quantity("[N/A]", Some("%"), "%"), Ok(None));
        assert_eq!(quantity("[Not Supported]", Some("W"), "W"), Ok(None));
        assert_eq!(
            quantity("[Insufficient Permissions]", None, "MiB"),
            Ok(None)
        );
        assert_eq!(quantity("[Unknown Error]", None, "MiB"), Ok(None));
        assert!(quantity("abc", None, "W").is_err());
        assert!(quantity("12 parsecs", None, "W").is_err());
        assert!(quantity("NaN", None, "W").is_err());
        assert!(quantity("inf", None, "W").is_err());
    }

    #[test]
    fn booleans_masks_pstates() {
        assert_eq!(boolean("Active"), Ok(Some(true)));
        assert_eq!(boolean("Not Active"), Ok(Some(false)));
        assert_eq!(boolean("Enabled"), Ok(Some(true)));
        assert_eq!(boolean("Disabled"), Ok(Some(false)));
        assert_eq!(boolean("Yes"), Ok(Some(true)));
        assert_eq!(boolean("No"), Ok(Some(false)));
        assert_eq!(boolean("[N/A]"), Ok(None));
        assert!(boolean("Maybe").is_err());
        assert_eq!(hex_mask("0x00000000000001FF"), Ok(Some(0x1FF)));
        assert_eq!(hex_mask("0x0000000000000004"), Ok(Some(4)));
        assert_eq!(hex_mask("[Not Supported]"), Ok(None));
        assert!(hex_mask("1FF").is_err());
        assert!(hex_mask("0xZZ").is_err());
        assert_eq!(pstate("P0"), Ok(Some(0)));
        assert_eq!(pstate("P8"), Ok(Some(8)));
        assert_eq!(pstate("P12"), Ok(Some(12)));
        assert_eq!(pstate("[N/A]"), Ok(None));
        assert!(pstate("P16").is_err());
        assert!(pstate("fast").is_err());
    }

    #[test]
    fn header_columns_and_old_names() {
        assert_eq!(
            Column::parse(" memory.used [MiB]"),
            Some(Column {
                name: "memory.used".into(),
                unit: Some("MiB".into())
            })
        );
        assert_eq!(
            Column::parse("index"),
            Some(Column {
                name: "index".into(),
                unit: None
            })
        );
        assert_eq!(
            Column::parse("clocks_throttle_reasons.active").map(|c| c.name),
            Some("clocks_event_reasons.active".to_string())
        );
        assert_eq!(
            Column::parse("clocks_throttle_reasons_counters.sw_power_cap [us]").map(|c| c.name),
            Some("clocks_event_reasons_counters.sw_power_cap".to_string())
        );
        assert_eq!(Column::parse("NVIDIA-SMI has failed"), None);
        assert_eq!(Column::parse(""), None);
        assert_eq!(Column::parse("memory.used [MiB"), None);
    }

    #[test]
    fn rows_of_wrong_length_are_skipped_and_noted() {
        let text = "index, name, memory.used [MiB]\n0, A, 1 MiB\n1, B\n2, C, 3 MiB, extra\n\n3, D, 4 MiB\n";
        let t = Table::parse(text, Layout::Header, None).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].cells, vec!["0", "A", "1 MiB"]);
        assert_eq!(t.rows[1].line, 6);
        assert_eq!(t.problems.len(), 2);
        assert!(
            t.problems[0].starts_with("line 3: 2 values for 3 columns"),
            "{}",
            t.problems[0]
        );
        assert!(
            t.problems[1].starts_with("line 4: 4 values for 3 columns"),
            "{}",
            t.problems[1]
        );
    }

    #[test]
    fn surplus_commas_rejoin_into_the_free_text_column() {
        let text = "pid, process_name, used_gpu_memory [MiB]\n42, /opt/a,b/run, 5 MiB\n";
        let t = Table::parse(text, Layout::Header, Some("process_name")).unwrap();
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.rows[0].cells, vec!["42", "/opt/a,b/run", "5 MiB"]);
    }

    #[test]
    fn whole_output_errors() {
        assert_eq!(
            Table::parse("", Layout::Header, None),
            Err(TableError::Empty)
        );
        assert_eq!(
            Table::parse("\n \n", Layout::Header, None),
            Err(TableError::Empty)
        );
        let e = Table::parse(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
            Layout::Header,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, TableError::BadHeader(_)), "{e:?}");
        // noheader: the fields given are the columns.
        let t = Table::parse(
            "0, 40\n",
            Layout::NoHeader(&["index", "temperature.gpu"]),
            None,
        )
        .unwrap();
        assert_eq!(t.position("temperature.gpu"), Some(1));
        assert_eq!(t.rows[0].cells, vec!["0", "40"]);
    }

    #[test]
    fn excerpt_cuts_and_cleans() {
        assert_eq!(excerpt("a\tb\u{1b}c", 10), "a b c");
        assert_eq!(excerpt("abcdef", 3), "abc...");
    }
}
