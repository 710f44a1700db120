//! token-collector: token usage and cost of Claude Code and the Anthropic API, per model and
//! project, live, with history. See docs/token-collector.md.
//!
//! [`SPEC`] declares the two collectors (`ingest`, `usage`); [`setup`] opens the database,
//! loads the counters into memory once and hands both collectors what they share. `main.rs`
//! dispatches the subcommands (`wrap`, `shell-init`, `report`) and otherwise hands `SPEC` and
//! `setup` to `odin_common::run`.

pub mod capture;
pub mod collectors;
pub mod ingest;
pub mod live;
pub mod paths;
pub mod pricing;
pub mod report;
pub mod shell_init;
pub mod store;
pub mod transcript;
pub mod usage;
pub mod wrap;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use odin_common::{built, parse_duration, Built, CollectorDef, ExporterSpec, Settings};

use crate::ingest::{lock, Ingester, Sources};
use crate::live::Live;
use crate::pricing::Pricing;
use crate::store::{ProjectLabel, Store};

/// The flags of token-collector besides the shared ones of odin-common.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Claude Code configuration directory whose `projects/**/*.jsonl` transcripts are read
    /// (repeatable). Default: each directory of $CLAUDE_CONFIG_DIR (comma-separated), else
    /// ~/.claude and ~/.config/claude.
    #[arg(long = "claude.config-dir", value_name = "DIR", value_delimiter = ',')]
    pub config_dirs: Vec<PathBuf>,

    /// SQLite database of the counted usage. Default: $XDG_STATE_HOME/token-collector/state.db
    /// (~/.local/state/token-collector/state.db), /var/lib/token-collector/state.db as root.
    #[arg(long = "storage.path", value_name = "FILE")]
    pub storage_path: Option<PathBuf>,

    /// Directory of terminal captures written by `token-collector wrap`. Default: `spool`
    /// next to the database.
    #[arg(long = "spool.dir", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Pricing table replacing the shipped one (same TOML shape as pricing/anthropic.toml).
    #[arg(long = "pricing.file", value_name = "FILE")]
    pub pricing_file: Option<PathBuf>,

    /// IANA time zone of the day and month gauges, e.g. `Europe/Berlin`. Default: the local
    /// zone ($TZ, /etc/localtime), else UTC.
    #[arg(long = "timezone", value_name = "TZ")]
    pub timezone: Option<String>,

    /// What the `project` label holds: the last component of the session's working
    /// directory (`name`), the whole path (`path`) or always `all` (`none`).
    #[arg(
        long = "project.label",
        value_name = "MODE",
        value_enum,
        default_value = "name"
    )]
    pub project_label: ProjectLabel,

    /// How many projects keep their own label; later ones are reported as `other` (the
    /// mapping is kept in the database).
    #[arg(long = "project.max", value_name = "N", default_value_t = 50)]
    pub project_max: usize,

    /// Full rescan of the sources, the fallback of inotify, e.g. `60s`, `5m`.
    #[arg(
        long = "ingest.rescan-interval",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub rescan_interval: Duration,

    /// Daily spending limit in USD, served as `llm_budget_day_usd` for the
    /// `LLMDailySpendOverBudget` alert. Unset: no limit, no gauge.
    #[arg(long = "budget.day-usd", value_name = "USD", value_parser = parse_budget)]
    pub budget_day_usd: Option<f64>,

    /// Spending limit in USD of one 5-hour block, served as `llm_budget_block_usd` for the
    /// `LLMBlockProjectedOverBudget` alert. Unset: no limit, no gauge.
    #[arg(long = "budget.block-usd", value_name = "USD", value_parser = parse_budget)]
    pub budget_block_usd: Option<f64>,

    /// When the usage metrics get a `user` label (the owner of the configuration directory,
    /// or of the spool): `auto` on a shared host (the sources that exist at start have more
    /// than one owner), `always` or `never`.
    #[arg(
        long = "label.user",
        value_name = "MODE",
        value_enum,
        default_value = "auto"
    )]
    pub label_user: paths::UserLabel,
}

/// A budget in USD: a finite number above zero.
fn parse_budget(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not an amount in USD above zero")),
    }
}

/// What the collectors are built from: the live counters, and the ingester, taken by the
/// `ingest` collector when it is built.
pub struct Setup {
    pub live: Arc<Mutex<Live>>,
    pub ingester: Mutex<Option<Ingester>>,
    pub rescan_interval: Duration,
    pub budgets: collectors::Budgets,
}

/// Open the database, load the counters, resolve the paths.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    let pricing = Pricing::load(args.pricing_file.as_deref())?;
    let tz = paths::timezone(args.timezone.as_deref())?;
    let db = args
        .storage_path
        .clone()
        .unwrap_or_else(paths::default_storage);
    let spool_dir = args
        .spool_dir
        .clone()
        .unwrap_or_else(|| paths::default_spool(&db));
    let config_dirs = if args.config_dirs.is_empty() {
        paths::default_config_dirs()
    } else {
        args.config_dirs.clone()
    };
    let sources = Sources {
        config_dirs,
        spool_dir: spool_dir.clone(),
    };
    let owners = sources.owners();
    let label_user = paths::label_user(args.label_user, &owners);
    let open = |pricing: Pricing| -> anyhow::Result<(Store, Live)> {
        let store = Store::open(&db, pricing, args.project_label, args.project_max)?;
        let live = Live::load(
            &store,
            tz.clone(),
            label_user,
            jiff::Timestamp::now().as_millisecond(),
        )?;
        Ok((store, live))
    };
    // A damaged database is moved aside and rebuilt from the transcripts still on disk: the
    // counters start again from what they hold (docs/token-collector.md, Storage).
    let opened = match open(pricing.clone()) {
        // SQLite may not have read the damaged part yet: its header says it too.
        Ok((store, live)) => match store.check_file() {
            Err(store::Fault::Corrupt(why)) => Err(why),
            _ => Ok((store, live)),
        },
        Err(e) if store::is_corruption(&e) => Err(format!("{e:#}")),
        Err(e) => return Err(e),
    };
    let (store, mut live, rebuilt) = match opened {
        Ok((store, live)) => (store, live, None),
        Err(damage) => {
            let moved = store::move_aside(&db)?;
            let why = format!(
                "database {} is damaged ({damage}): moved to {}; rebuilt from the \
                 transcripts and captures on disk",
                db.display(),
                moved.display()
            );
            log::error!("{why}");
            let (store, live) = open(pricing)?;
            (store, live, Some(why))
        }
    };
    if rebuilt.is_some() {
        live.database_rebuilds += 1;
    }
    // The spool must exist for `wrap` to write to and for the watch; only its owner may read
    // what was captured.
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&spool_dir);
    if let Err(e) = made {
        log::warn!("cannot create spool directory {}: {e}", spool_dir.display());
    }
    log::info!(
        "database {} loaded: {} series; user label {} (owners: {})",
        db.display(),
        live.series.len(),
        if label_user { "on" } else { "off" },
        owners.join(", ")
    );
    let live = Arc::new(Mutex::new(live));
    let mut ingester = Ingester::new(store, Arc::clone(&live), sources)?;
    ingester.last_rebuild = rebuilt.map(|why| (jiff::Timestamp::now(), why));
    Ok(Setup {
        live,
        ingester: Mutex::new(Some(ingester)),
        rescan_interval: args.rescan_interval,
        budgets: collectors::Budgets {
            day_usd: args.budget_day_usd,
            block_usd: args.budget_block_usd,
        },
    })
}

/// token-collector as odin-common runs it.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "token-collector",
    prefix: "llm",
    version: env!("CARGO_PKG_VERSION"),
    about: "Token usage and cost of Claude Code and the Anthropic API, live, with history.",
    default_port: 19104,
    collectors: &[
        CollectorDef::on(
            "ingest",
            "follows Claude Code transcripts and terminal captures into the database (inotify and rescans)",
            build_ingest,
        ),
        CollectorDef::on(
            "usage",
            "token, cost and request counters, day, month and 5-hour block gauges from memory",
            |setup| {
                built(collectors::Usage {
                    live: Arc::clone(&setup.live),
                    budgets: setup.budgets,
                })
            },
        ),
    ],
};

fn build_ingest(setup: &Setup) -> Built {
    match lock(&setup.ingester).take() {
        Some(ing) => built(collectors::Ingest::new(ing, setup.rescan_interval)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_valid() {
        assert_eq!(SPEC.check(), Ok(()));
        let names: Vec<&str> = SPEC.collectors.iter().map(|c| c.name).collect();
        assert_eq!(names, ["ingest", "usage"]);
    }
}
