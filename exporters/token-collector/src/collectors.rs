//! The two collectors: `ingest` (background: follows the transcript tree and the spool) and
//! `usage` (on scrape: serves the in-memory counters and gauges).

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use odin_common::{Collector, Context, Field, Labels, Mode, SampleValue, Sink};

use crate::ingest::{lock, Ingester};
use crate::live::Live;
use crate::store::{Fault, OUTCOMES, TOKEN_TYPES};

/// How often the ingest collector looks at file events.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How long one ingest run may take (a first import of a large tree included).
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(3600);

struct IngestState {
    ingester: Ingester,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    watch_error: Option<String>,
    last_full: Option<Instant>,
}

/// Follows the sources: a full scan at start and every `--ingest.rescan-interval`, and in
/// between only the paths inotify reported.
pub struct Ingest {
    state: Mutex<IngestState>,
    dirty: Arc<Mutex<BTreeSet<PathBuf>>>,
    rescan: Duration,
}

impl Ingest {
    pub fn new(ingester: Ingester, rescan: Duration) -> Ingest {
        let dirty: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
        let sink = Arc::clone(&dirty);
        let (watcher, watch_error) =
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let mut d = lock(&sink);
                match res {
                    // Opening or reading a file changes nothing to ingest; counting those
                    // events would make the collector's own reads schedule its next pass.
                    Ok(ev) if is_read_only_access(&ev.kind) => {}
                    Ok(ev) => d.extend(ev.paths),
                    // Lost events (queue overflow): the empty path asks for a full scan.
                    Err(_) => {
                        d.insert(PathBuf::new());
                    }
                }
            }) {
                Ok(w) => (Some(w), None),
                Err(e) => (
                    None,
                    Some(format!("inotify unavailable, rescans only: {e}")),
                ),
            };
        Ingest {
            state: Mutex::new(IngestState {
                ingester,
                watcher,
                watched: HashSet::new(),
                watch_error,
                last_full: None,
            }),
            dirty,
            rescan,
        }
    }
}

/// An event that says a file was opened or read, not changed (a closed writer still counts).
fn is_read_only_access(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

impl IngestState {
    /// Watch every source directory that exists and is not watched yet.
    fn ensure_watches(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for (dir, recursive) in self.ingester.sources.watch_dirs() {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match w.watch(&dir, mode) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    self.watch_error = Some(format!("cannot watch {}: {e}", dir.display()));
                }
            }
        }
    }
}

impl Collector for Ingest {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: FOLLOW_INTERVAL,
            timeout: INGEST_TIMEOUT,
        }
    }

    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let mut st = lock(&self.state);
        // The database first: deleted, replaced or damaged since the last pass, it is rebuilt
        // before anything more is counted. The run that rebuilds it fails, so that /health
        // keeps the message; the next one is a full scan from where the counters are.
        if let Some(fault) = st.ingester.fault() {
            st.last_full = None;
            match st.ingester.rebuild() {
                Ok(msg) => {
                    log::error!("{msg}");
                    anyhow::bail!(msg);
                }
                Err(e) => anyhow::bail!(
                    "{fault}; rebuilding it failed, tried again at the next run: {e:#}"
                ),
            }
        }
        let events = std::mem::take(&mut *lock(&self.dirty));
        let full = st.last_full.map_or(true, |t| t.elapsed() >= self.rescan)
            || events.contains(&PathBuf::new())
            || events
                .iter()
                .any(|p| st.ingester.sources.is_projects_dir(p));
        let pass = if full {
            st.ensure_watches();
            st.last_full = Some(Instant::now());
            st.ingester.scan_all()
        } else if events.is_empty() {
            return Ok(());
        } else {
            st.ingester.scan_paths(events)
        };
        for e in &pass.errors {
            out.item_error(e.clone());
        }
        let lag = pass.lagging_mtime.map_or(0.0, crate::ingest::lag_since);
        lock(&st.ingester.live).lag_seconds = lag;
        let db = st
            .ingester
            .store
            .path()
            .map_or_else(|| "(in memory)".to_string(), |p| p.display().to_string());
        if let Some(why) = pass.corrupt {
            st.ingester
                .set_fault(Fault::Corrupt(format!("database {db} is damaged ({why})")));
            st.last_full = None;
            anyhow::bail!("database {db} is damaged ({why}); rebuilt at the next run");
        }
        // The database cannot be written (a full disk, an I/O error): nothing read since is
        // counted or lost. Each run tries again (a full scan from the committed offsets)
        // until it can be written.
        if let Some(first) = pass.store_errors.first() {
            st.last_full = None;
            anyhow::bail!(
                "cannot write database {db}: {first}; the lines read are not counted yet and \
                 are read again at each run until it can be written"
            );
        }
        // Every file failing (tree unreadable) fails the collector.
        if !pass.errors.is_empty() && pass.errors.len() == pass.attempted {
            anyhow::bail!(
                "no file could be ingested ({} failed; first: {})",
                pass.errors.len(),
                pass.errors[0]
            );
        }
        Ok(())
    }

    fn detail(&self) -> Option<String> {
        let st = lock(&self.state);
        let dirs: Vec<String> = st
            .ingester
            .sources
            .watch_dirs()
            .iter()
            .map(|(d, _)| d.display().to_string())
            .collect();
        let mut s = format!("following {}", dirs.join(", "));
        let missing: Vec<String> = st
            .ingester
            .sources
            .watch_dirs()
            .iter()
            .filter(|(d, _)| !d.is_dir())
            .map(|(d, _)| d.display().to_string())
            .collect();
        if !missing.is_empty() {
            s.push_str(&format!(" (not there yet: {})", missing.join(", ")));
        }
        if let Some(e) = &st.watch_error {
            s.push_str("; ");
            s.push_str(e);
        }
        if let Some((at, why)) = &st.ingester.last_rebuild {
            s.push_str(&format!("; database rebuilt at {at}: {why}"));
        }
        Some(s)
    }
}

/// Serves the counters and gauges from memory.
pub struct Usage {
    pub live: Arc<Mutex<Live>>,
    /// `--budget.day-usd` and `--budget.block-usd`, served so that alert rules can compare.
    pub budgets: Budgets,
}

/// Spending limits given by flags; each is served as a gauge only when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budgets {
    pub day_usd: Option<f64>,
    pub block_usd: Option<f64>,
}

const PROVIDER: &str = "anthropic";

/// The counters of one `(source, model, project)` series besides its tokens.
const SERIES_FIELDS: &[Field<crate::store::Counts>] = &[
    Field::counter(
        "cost_usd_total",
        "Cost in USD of the tokens used, from the pricing table (models without a price add nothing: see llm_unpriced_tokens_total).",
        |c| Some(c.cost),
    ),
    Field::counter(
        "requests_total",
        "API responses counted (each once, by message id).",
        |c| c.requests.sample_value(),
    ),
    Field::counter(
        "web_search_requests_total",
        "Web search requests made by the server tool.",
        |c| c.web_search.sample_value(),
    ),
];

/// `labels`, with `user` last when the label is on (on a shared host, for the whole run).
fn with_user<'a>(
    on: bool,
    mut labels: Vec<(&'a str, &'a str)>,
    user: &'a str,
) -> Vec<(&'a str, &'a str)> {
    if on {
        labels.push(("user", user));
    }
    labels
}

impl Collector for Usage {
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let live = lock(&self.live);
        let on = live.label_user;
        let labels: Vec<Vec<(&str, &str)>> = live
            .series
            .keys()
            .map(|(source, model, project, user)| {
                with_user(
                    on,
                    vec![
                        ("source", source.label()),
                        ("provider", PROVIDER),
                        ("model", model.as_str()),
                        ("project", project.as_str()),
                    ],
                    user,
                )
            })
            .collect();
        {
            let mut f = out.counter(
                "tokens_total",
                "Tokens used, by where they were seen, model, project and token type.",
            );
            for (l, c) in labels.iter().zip(live.series.values()) {
                for (t, v) in TOKEN_TYPES.iter().zip(c.tokens) {
                    let mut l = l.clone();
                    l.push(("type", t));
                    f.sample(&l, v);
                }
            }
        }
        let rows: Vec<(&Labels<'_>, &crate::store::Counts)> = labels
            .iter()
            .zip(live.series.values())
            .map(|(labels, counts)| (&labels[..], counts))
            .collect();
        out.fields(SERIES_FIELDS, &rows);
        out.gauge(
            "budget_day_usd",
            "Daily spending limit given by --budget.day-usd (absent when unset).",
        )
        .sample(&[], self.budgets.day_usd);
        out.gauge(
            "budget_block_usd",
            "5-hour block spending limit given by --budget.block-usd (absent when unset).",
        )
        .sample(&[], self.budgets.block_usd);
        {
            let mut f = out.counter(
                "unpriced_tokens_total",
                "Tokens of responses whose model has no price in the pricing table (cost not added).",
            );
            for (model, n) in &live.unpriced {
                f.sample(&[("model", model)], *n);
            }
        }
        let (day, month) = live.day_and_month(now_ms);
        for (name, help, map, cost) in [
            (
                "day_cost_usd",
                "Cost in USD of the current day in --timezone, by event time.",
                &day,
                true,
            ),
            (
                "day_tokens",
                "Tokens of the current day in --timezone, by event time.",
                &day,
                false,
            ),
            (
                "month_cost_usd",
                "Cost in USD of the current month in --timezone, by event time.",
                &month,
                true,
            ),
            (
                "month_tokens",
                "Tokens of the current month in --timezone, by event time.",
                &month,
                false,
            ),
        ] {
            let mut f = out.gauge(name, help);
            for ((model, project, user), (c, t)) in map {
                let v = if cost { *c } else { *t as f64 };
                f.sample(
                    &with_user(on, vec![("model", model), ("project", project)], user),
                    v,
                );
            }
        }
        if let Some(b) = live.active_block(now_ms) {
            out.gauge("block_tokens", "Tokens of the active 5-hour block.")
                .sample(&[], b.tokens);
            out.gauge("block_cost_usd", "Cost in USD of the active 5-hour block.")
                .sample(&[], b.cost);
            out.gauge(
                "block_start_timestamp_seconds",
                "Start of the active 5-hour block (its first event floored to the hour).",
            )
            .sample(&[], b.start_ms as f64 / 1000.0);
            out.gauge(
                "block_end_timestamp_seconds",
                "End of the active 5-hour block (start + 5 h).",
            )
            .sample(&[], b.end_ms as f64 / 1000.0);
            out.gauge(
                "block_projected_cost_usd",
                "Cost in USD the active block reaches at its end at the current burn rate.",
            )
            .sample(&[], b.projected_cost(now_ms));
        }
        {
            let mut f = out.gauge(
                "project_last_activity_timestamp_seconds",
                "Event time of the project's last counted response.",
            );
            for ((p, user), ts) in &live.last_activity {
                f.sample(
                    &with_user(on, vec![("project", p)], user),
                    *ts as f64 / 1000.0,
                );
            }
        }
        {
            let mut f = out.counter(
                "ingest_lines_total",
                "Lines read from transcripts and the spool, by outcome.",
            );
            for (o, n) in OUTCOMES.iter().zip(live.lines) {
                f.sample(&[("outcome", o)], n);
            }
        }
        out.gauge(
            "ingest_files_followed",
            "Transcript and spool files followed.",
        )
        .sample(&[], live.files_followed);
        out.counter(
            "database_rebuilds_total",
            "Times the database was found deleted, replaced or damaged and rebuilt from the transcripts and captures on disk, since the collector started.",
        )
        .sample(&[], live.database_rebuilds);
        out.gauge(
            "ingest_lag_seconds",
            "Now minus the modification time of the newest file with appended lines not yet ingested (0 when caught up).",
        )
        .sample(&[], live.lag_seconds);
        Ok(())
    }

    fn detail(&self) -> Option<String> {
        let live = lock(&self.live);
        if live.unpriced.is_empty() {
            return None;
        }
        let models: Vec<&str> = live.unpriced.keys().map(String::as_str).collect();
        Some(format!(
            "models without a price (tokens counted, cost not added; add them to the pricing file): {}",
            models.join(", ")
        ))
    }
}
