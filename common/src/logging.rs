//! A small `log` backend: one line per event, logfmt or JSON, to stdout (stderr in `--once`
//! mode, where stdout carries the exposition).
//!
//! Collectors use the ordinary `log::warn!` etc.; the runtime adds structured fields through
//! [`event`], which writes `key=value` pairs after the message.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

/// `--log.level`: only events at this level or more severe are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verbosity {
    Error,
    /// `warning` is accepted too, as Go exporters spell it.
    #[value(alias = "warning")]
    Warn,
    Info,
    Debug,
}

impl From<Verbosity> for LevelFilter {
    fn from(v: Verbosity) -> Self {
        match v {
            Verbosity::Error => LevelFilter::Error,
            Verbosity::Warn => LevelFilter::Warn,
            Verbosity::Info => LevelFilter::Info,
            Verbosity::Debug => LevelFilter::Debug,
        }
    }
}

/// Where lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
}

struct Logger {
    format: Format,
    target: Target,
    level: LevelFilter,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Install the backend. A second call (tests) keeps the first configuration.
pub fn init(format: Format, level: LevelFilter, target: Target) {
    let logger = LOGGER.get_or_init(|| Logger {
        format,
        target,
        level,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level);
    }
}

/// Log `msg` with structured fields, e.g. `event(Level::Warn, "collector failed",
/// &[("collector", "netdev"), ("err", &e)])`. Falls back to `log` when the backend of this
/// module is not installed (then the fields are appended to the message).
pub fn event(level: Level, msg: &str, fields: &[(&str, &str)]) {
    match LOGGER.get() {
        Some(l) => {
            if level <= l.level {
                l.write_line(&format_line(
                    l.format,
                    SystemTime::now(),
                    level,
                    msg,
                    fields,
                ));
            }
        }
        None => {
            let mut s = msg.to_owned();
            for (k, v) in fields {
                s.push_str(&format!(" {k}={v}"));
            }
            log::log!(level, "{s}");
        }
    }
}

impl Logger {
    fn write_line(&self, line: &str) {
        // A closed stdout must not take the exporter down; drop the line instead.
        let _ = match self.target {
            Target::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Target::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
        };
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        let target = record.target();
        let fields: Vec<(&str, &str)> = if target.is_empty() {
            Vec::new()
        } else {
            vec![("source", target)]
        };
        self.write_line(&format_line(
            self.format,
            SystemTime::now(),
            record.level(),
            &msg,
            &fields,
        ));
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One complete line, newline included.
pub(crate) fn format_line(
    format: Format,
    ts: SystemTime,
    level: Level,
    msg: &str,
    fields: &[(&str, &str)],
) -> String {
    let ts = rfc3339(ts);
    match format {
        Format::Logfmt => {
            let mut s = format!(
                "ts={ts} level={} msg={}",
                level_name(level),
                logfmt_value(msg)
            );
            for (k, v) in fields {
                s.push(' ');
                s.push_str(&logfmt_key(k));
                s.push('=');
                s.push_str(&logfmt_value(v));
            }
            s.push('\n');
            s
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), ts.into());
            obj.insert("level".into(), level_name(level).into());
            obj.insert("msg".into(), msg.into());
            for (k, v) in fields {
                obj.entry(k.to_string()).or_insert_with(|| (*v).into());
            }
            let mut s = serde_json::Value::Object(obj).to_string();
            s.push('\n');
            s
        }
    }
}

fn logfmt_key(k: &str) -> String {
    let cleaned: String = k
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '=' || c == '"' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// Bare when safe, quoted with `\"`, `\\`, `\n`... escapes otherwise.
fn logfmt_value(v: &str) -> String {
    let needs_quotes = v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '"' || c.is_control());
    if !needs_quotes {
        return v.to_owned();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// `2024-05-01T12:34:56.789Z` (UTC, milliseconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(rfc3339(at(951_827_696, 789)), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(at(1_735_689_599, 999)), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = format_line(
            Format::Logfmt,
            at(0, 5),
            Level::Warn,
            "collector failed",
            &[
                ("collector", "netdev"),
                ("err", "open \"/proc/x\": gone\nnext"),
            ],
        );
        assert_eq!(
            line,
            "ts=1970-01-01T00:00:00.005Z level=warn msg=\"collector failed\" collector=netdev \
             err=\"open \\\"/proc/x\\\": gone\\nnext\"\n"
        );
        let bare = format_line(Format::Logfmt, at(0, 0), Level::Info, "ready", &[("k", "")]);
        assert_eq!(
            bare,
            "ts=1970-01-01T00:00:00.000Z level=info msg=ready k=\"\"\n"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_reserved_keys() {
        let line = format_line(
            Format::Json,
            at(60, 0),
            Level::Debug,
            "scrape \"done\"",
            &[("collector", "dns"), ("msg", "must not override")],
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["ts"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v["level"], "debug");
        assert_eq!(v["msg"], "scrape \"done\"");
        assert_eq!(v["collector"], "dns");
    }
}
