//! `token-collector report daily|monthly|session|blocks`: answers from the database (SQL
//! `GROUP BY`), never from the transcripts, as a table or as JSON (`--json`).
//!
//! Days and months are by event time in `--timezone`: SQL groups requests into 15-minute
//! buckets (every time zone's offset is a multiple of 15 minutes) and each bucket is put in
//! its local day, so the cost grows with the number of buckets, not of requests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::Connection;
use serde::Serialize;

use crate::live::blocks;
use crate::store::Store;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Daily,
    Monthly,
    Session,
    Blocks,
}

/// `token-collector report` flags.
#[derive(Debug, Parser)]
#[command(
    name = "token-collector report",
    about = "Usage and cost from the token-collector database, without re-reading transcripts."
)]
pub struct ReportArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
    /// First day (YYYY-MM-DD, in --timezone), inclusive.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<Date>,
    /// Last day (YYYY-MM-DD, in --timezone), inclusive.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub until: Option<Date>,
    /// Only this project (its label as the metrics show it).
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Only models whose id contains this text (e.g. `opus`, `claude-sonnet-4-5`).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Only this user (the owner of the configuration directory, as the `user` label shows
    /// it).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// IANA time zone of days and months. Default: the local zone.
    #[arg(long, value_name = "TZ", env = "TOKEN_COLLECTOR_TIMEZONE")]
    pub timezone: Option<String>,
    /// The database (default as for the exporter).
    #[arg(
        long = "storage.path",
        value_name = "FILE",
        env = "TOKEN_COLLECTOR_STORAGE_PATH"
    )]
    pub storage_path: Option<PathBuf>,
}

/// Token counts and cost of one row of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sums {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub total_tokens: u64,
    #[serde(serialize_with = "micro_usd")]
    pub cost_usd: f64,
    pub requests: u64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.input += o.input;
        self.output += o.output;
        self.cache_read += o.cache_read;
        self.cache_write_5m += o.cache_write_5m;
        self.cache_write_1h += o.cache_write_1h;
        self.total_tokens += o.total_tokens;
        self.cost_usd += o.cost_usd;
        self.requests += o.requests;
    }
}

/// One period (day or month) with its per-model breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodRow {
    pub period: String,
    #[serde(flatten)]
    pub sums: Sums,
    pub models: BTreeMap<String, Sums>,
}

/// One session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub session_id: String,
    pub project: String,
    /// The owner of the session's files; only when the database holds more than one user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub last_activity: String,
    pub models: Vec<String>,
    #[serde(flatten)]
    pub sums: Sums,
}

/// One 5-hour block.
#[derive(Debug, Clone, Serialize)]
pub struct BlockRow {
    pub start: String,
    pub end: String,
    pub active: bool,
    pub total_tokens: u64,
    #[serde(serialize_with = "micro_usd")]
    pub cost_usd: f64,
    #[serde(serialize_with = "micro_usd_opt")]
    pub projected_cost_usd: Option<f64>,
}

/// Dollars in JSON to the millionth of a dollar: sums of per-token prices carry float noise
/// (`1.0345309999999999`) that scripts should not have to round away.
fn micro_usd<S: serde::Serializer>(usd: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((usd * 1e6).round() / 1e6)
}

fn micro_usd_opt<S: serde::Serializer>(usd: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match usd {
        Some(v) => micro_usd(v, s),
        None => s.serialize_none(),
    }
}

/// The filters, as SQL bounds.
struct Filter {
    from_ms: i64,
    to_ms: i64,
    project: Option<String>,
    model: Option<String>,
    user: Option<String>,
    /// The `user` column, or `''` in a database the exporter has not migrated yet.
    user_col: &'static str,
}

impl Filter {
    /// The `WHERE` condition; its parameters are [`Filter::params`].
    fn condition(&self) -> String {
        format!(
            "ts_ms >= ?1 AND ts_ms < ?2 AND (?3 IS NULL OR project = ?3)
             AND (?4 IS NULL OR instr(model, ?4) > 0) AND (?5 IS NULL OR {} = ?5)",
            self.user_col
        )
    }

    fn params(&self) -> impl rusqlite::Params + '_ {
        (
            self.from_ms,
            self.to_ms,
            &self.project,
            &self.model,
            &self.user,
        )
    }
}

fn day_start_ms(d: Date, tz: &TimeZone) -> anyhow::Result<i64> {
    Ok(d.to_zoned(tz.clone())?.timestamp().as_millisecond())
}

fn filter(a: &ReportArgs, conn: &Connection, tz: &TimeZone) -> anyhow::Result<Filter> {
    let from_ms = match a.since {
        Some(d) => day_start_ms(d, tz)?,
        None => i64::MIN,
    };
    let to_ms = match a.until {
        Some(d) => day_start_ms(d.tomorrow()?, tz)?,
        None => i64::MAX,
    };
    Ok(Filter {
        from_ms,
        to_ms,
        project: a.project.clone(),
        model: a.model.clone(),
        user: a.user.clone(),
        user_col: if crate::store::has_column(conn, "requests", "user")? {
            "user"
        } else {
            "''"
        },
    })
}

fn sums_from(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Sums> {
    let g = |k: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(r.get::<_, i64>(first + k)?).unwrap_or(0))
    };
    let (input, output, cache_read, cw5, cw1h) = (g(0)?, g(1)?, g(2)?, g(3)?, g(4)?);
    Ok(Sums {
        input,
        output,
        cache_read,
        cache_write_5m: cw5,
        cache_write_1h: cw1h,
        total_tokens: input + output + cache_read + cw5 + cw1h,
        cost_usd: r.get(first + 5)?,
        requests: g(6)?,
    })
}

const SUMS: &str = "SUM(input), SUM(output), SUM(cache_read), SUM(cw5), SUM(cw1h), SUM(cost),
     SUM(requests)";

/// Models in range without a price (their tokens are in the report, their cost is not).
fn unpriced(conn: &Connection, f: &Filter) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT DISTINCT model FROM requests WHERE priced = 0 AND {} ORDER BY model",
        f.condition()
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(f.params(), |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Model ids as a person reads them in a table column: without the `claude-` prefix and the
/// release date (`claude-sonnet-4-5-20250929` is `sonnet-4-5`); each once, in order.
fn short_models<'a>(models: impl Iterator<Item = &'a String>) -> String {
    let mut short: Vec<&str> = Vec::new();
    for m in models {
        let m = m.strip_prefix("claude-").unwrap_or(m);
        let m = match m.rsplit_once('-') {
            Some((head, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
                head
            }
            _ => m,
        };
        if !short.contains(&m) {
            short.push(m);
        }
    }
    short.join(", ")
}

fn unpriced_note(models: &[String]) -> String {
    if models.is_empty() {
        return String::new();
    }
    format!(
        "no price for {} (tokens included, cost not; see --pricing.file)\n",
        models.join(", ")
    )
}

/// Days or months.
fn periods(
    conn: &Connection,
    f: &Filter,
    tz: &TimeZone,
    monthly: bool,
) -> anyhow::Result<Vec<PeriodRow>> {
    let sql = format!(
        "SELECT ts_ms / 900000, model, {SUMS} FROM requests WHERE {}
         GROUP BY ts_ms / 900000, model",
        f.condition()
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(f.params(), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            sums_from(r, 2)?,
        ))
    })?;
    let mut out: BTreeMap<String, PeriodRow> = BTreeMap::new();
    for row in rows {
        let (bucket, model, sums) = row?;
        let date = Timestamp::from_millisecond(bucket * 900_000)?
            .to_zoned(tz.clone())
            .date();
        let period = if monthly {
            format!("{:04}-{:02}", date.year(), date.month())
        } else {
            date.to_string()
        };
        let p = out.entry(period.clone()).or_insert_with(|| PeriodRow {
            period,
            sums: Sums::default(),
            models: BTreeMap::new(),
        });
        p.sums.add(&sums);
        p.models.entry(model).or_default().add(&sums);
    }
    Ok(out.into_values().collect())
}

/// How many users (owners of configuration directories) the database holds; usage counted
/// before the `user` label existed (user `''`) is not one.
fn users(conn: &Connection, f: &Filter) -> anyhow::Result<usize> {
    let sql = format!(
        "SELECT COUNT(DISTINCT {0}) FROM requests WHERE {0} <> ''",
        f.user_col
    );
    let n: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sessions, most recent last; with their user when the database holds more than one.
fn sessions(conn: &Connection, f: &Filter, tz: &TimeZone) -> anyhow::Result<Vec<SessionRow>> {
    let with_user = users(conn, f)? > 1;
    let sql = format!(
        "SELECT COALESCE(session_id, '-'), project, MAX(ts_ms), GROUP_CONCAT(DISTINCT model), {SUMS},
             {0}
         FROM requests WHERE {1} GROUP BY session_id, project, {0} ORDER BY MAX(ts_ms)",
        f.user_col,
        f.condition()
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(f.params(), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            sums_from(r, 4)?,
            r.get::<_, String>(11)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (session_id, project, last, models, sums, user) = row?;
        let mut models: Vec<String> = models.split(',').map(str::to_string).collect();
        models.sort();
        out.push(SessionRow {
            session_id,
            project,
            user: with_user.then_some(user),
            last_activity: local(last, tz)?,
            models,
            sums,
        });
    }
    Ok(out)
}

fn local(ms: i64, tz: &TimeZone) -> anyhow::Result<String> {
    Ok(Timestamp::from_millisecond(ms)?
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string())
}

/// 5-hour blocks.
fn block_rows(
    conn: &Connection,
    f: &Filter,
    tz: &TimeZone,
    now_ms: i64,
) -> anyhow::Result<Vec<BlockRow>> {
    let sql = format!(
        "SELECT ts_ms, input + output + cache_read + cw5 + cw1h, cost FROM requests
         WHERE {} ORDER BY ts_ms",
        f.condition()
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(f.params(), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            r.get::<_, f64>(2)?,
        ))
    })?;
    let events = rows.collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for b in blocks(events) {
        let active =
            now_ms >= b.start_ms && now_ms < b.end_ms && now_ms - b.last_ms < crate::live::BLOCK_MS;
        out.push(BlockRow {
            start: local(b.start_ms, tz)?,
            end: local(b.end_ms, tz)?,
            active,
            total_tokens: b.tokens,
            cost_usd: b.cost,
            projected_cost_usd: active.then(|| b.projected_cost(now_ms)),
        });
    }
    Ok(out)
}

fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<width$}", width = w[i])
                } else {
                    format!("{c:>width$}", width = w[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut s = line(header.iter().map(|h| h.to_string()).collect());
    s.push('\n');
    s.push_str(&"-".repeat(w.iter().sum::<usize>() + 2 * (w.len() - 1)));
    s.push('\n');
    for r in rows {
        s.push_str(&line(r.clone()));
        s.push('\n');
    }
    s
}

fn sums_cells(s: &Sums) -> Vec<String> {
    vec![
        n(s.input),
        n(s.output),
        n(s.cache_write_5m + s.cache_write_1h),
        n(s.cache_read),
        n(s.total_tokens),
        format!("${:.2}", s.cost_usd),
    ]
}

const SUM_HEADER: [&str; 6] = [
    "input",
    "output",
    "cache write",
    "cache read",
    "total",
    "cost",
];

/// The report as text (table or JSON).
pub fn render(
    a: &ReportArgs,
    conn: &Connection,
    tz: &TimeZone,
    now_ms: i64,
) -> anyhow::Result<String> {
    let f = filter(a, conn, tz)?;
    match a.kind {
        Kind::Daily | Kind::Monthly => {
            let rows = periods(conn, &f, tz, a.kind == Kind::Monthly)?;
            let mut totals = Sums::default();
            for r in &rows {
                totals.add(&r.sums);
            }
            if a.json {
                let key = if a.kind == Kind::Daily {
                    "daily"
                } else {
                    "monthly"
                };
                let mut m = serde_json::Map::new();
                m.insert(key.into(), serde_json::to_value(&rows)?);
                m.insert("totals".into(), serde_json::to_value(&totals)?);
                m.insert(
                    "unpriced_models".into(),
                    serde_json::to_value(unpriced(conn, &f)?)?,
                );
                return Ok(serde_json::to_string_pretty(&m)? + "\n");
            }
            let first = if a.kind == Kind::Daily {
                "date"
            } else {
                "month"
            };
            let mut header = vec![first, "models"];
            header.extend(SUM_HEADER);
            let mut body = Vec::new();
            for r in &rows {
                let mut cells = vec![r.period.clone(), short_models(r.models.keys())];
                cells.extend(sums_cells(&r.sums));
                body.push(cells);
            }
            let mut cells = vec!["total".to_string(), String::new()];
            cells.extend(sums_cells(&totals));
            body.push(cells);
            Ok(table(&header, &body) + &unpriced_note(&unpriced(conn, &f)?))
        }
        Kind::Session => {
            let rows = sessions(conn, &f, tz)?;
            if a.json {
                let models = unpriced(conn, &f)?;
                return Ok(serde_json::to_string_pretty(
                    &serde_json::json!({ "sessions": rows, "unpriced_models": models }),
                )? + "\n");
            }
            let with_user = rows.iter().any(|r| r.user.is_some());
            let mut header = vec!["session", "project"];
            if with_user {
                header.push("user");
            }
            header.extend(["last activity", "models"]);
            header.extend(SUM_HEADER);
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut c = vec![r.session_id.clone(), r.project.clone()];
                    if let Some(u) = &r.user {
                        c.push(if u.is_empty() { "-".into() } else { u.clone() });
                    }
                    c.extend([r.last_activity.clone(), short_models(r.models.iter())]);
                    c.extend(sums_cells(&r.sums));
                    c
                })
                .collect();
            Ok(table(&header, &body) + &unpriced_note(&unpriced(conn, &f)?))
        }
        Kind::Blocks => {
            let rows = block_rows(conn, &f, tz, now_ms)?;
            if a.json {
                return Ok(
                    serde_json::to_string_pretty(&serde_json::json!({ "blocks": rows }))? + "\n",
                );
            }
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.start.clone(),
                        r.end.clone(),
                        if r.active {
                            "active".into()
                        } else {
                            String::new()
                        },
                        n(r.total_tokens),
                        format!("${:.2}", r.cost_usd),
                        r.projected_cost_usd
                            .map(|p| format!("${p:.2}"))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            Ok(table(
                &["start", "end", "", "tokens", "cost", "projected"],
                &body,
            ))
        }
    }
}

/// `token-collector report ...`; `args` are the arguments after `report`.
pub fn main(args: &[OsString]) -> ExitCode {
    let argv =
        std::iter::once(OsString::from("token-collector report")).chain(args.iter().cloned());
    let a = match ReportArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return odin_common::flag_error_exit(&e),
    };
    match run(&a) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("token-collector report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &ReportArgs) -> anyhow::Result<String> {
    let tz = crate::paths::timezone(a.timezone.as_deref())?;
    let db = a
        .storage_path
        .clone()
        .unwrap_or_else(crate::paths::default_storage);
    anyhow::ensure!(
        db.exists(),
        "no database at {} (is the exporter running? see --storage.path)",
        db.display()
    );
    let conn = Store::open_read_only(&db)?;
    render(a, &conn, &tz, Timestamp::now().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_shortened_for_tables() {
        let ids: Vec<String> = [
            "claude-haiku-4-5-20251001",
            "claude-opus-4-6",
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "gpt-x",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            short_models(ids.iter()),
            "haiku-4-5, opus-4-6, sonnet-4-5, gpt-x"
        );
    }
}
