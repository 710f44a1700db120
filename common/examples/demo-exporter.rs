//! demo-exporter: a tiny exporter on `odin_common::run`, used by the integration tests and as
//! a template. It has an on-scrape collector (`clock`), a background one (`ticker`), one whose
//! failure can be switched on (`flaky`, `--demo.fail` or `DEMO_EXPORTER_DEMO_FAIL=true`), and
//! one that is off unless asked for (`idle`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use odin_common::{built, Collector, CollectorDef, Context, ExporterSpec, Mode, Sink};

#[derive(Debug, clap::Args)]
struct Args {
    /// Make the flaky collector fail.
    #[arg(long = "demo.fail")]
    fail: bool,
    /// How often the background collector runs.
    #[arg(long = "demo.interval", value_parser = odin_common::parse_duration, default_value = "1s")]
    interval: Duration,
    /// How long each background run takes.
    #[arg(long = "demo.background-delay", value_parser = odin_common::parse_duration)]
    background_delay: Option<Duration>,
    /// Timeout of the background collector.
    #[arg(long = "demo.background-timeout", value_parser = odin_common::parse_duration, default_value = "5s")]
    background_timeout: Duration,
    /// How long each run of the on-scrape clock collector takes.
    #[arg(long = "demo.scrape-delay", value_parser = odin_common::parse_duration)]
    scrape_delay: Option<Duration>,
    /// Labels of `demo_label_info`; repeatable (comma-separated in the environment).
    #[arg(long = "demo.label")]
    labels: Vec<String>,
}

/// What the collectors are built from: the parsed flags.
type Setup = Args;

const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "demo-exporter",
    prefix: "demo",
    version: env!("CARGO_PKG_VERSION"),
    about: "Demonstrates the odin-common serving runtime.",
    default_port: 19999,
    collectors: &[
        CollectorDef::on("clock", "wall clock, on scrape", |args| {
            built(Clock {
                delay: args.scrape_delay,
                labels: args.labels.clone(),
            })
        }),
        CollectorDef::on("ticker", "run counter, background", |args| {
            built(Ticker {
                runs: AtomicU64::new(0),
                interval: args.interval,
                timeout: args.background_timeout,
                delay: args.background_delay,
            })
        }),
        CollectorDef::on("flaky", "fails on --demo.fail", |args| {
            built(Flaky {
                fail: args.fail,
                runs: AtomicU64::new(0),
            })
        }),
        CollectorDef::off("idle", "a constant", |_| built(Idle)),
    ],
};

struct Clock {
    delay: Option<Duration>,
    labels: Vec<String>,
}

impl Collector for Clock {
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        out.gauge("time_seconds", "Wall clock.").sample(&[], now);
        out.gauge("source_info", "Which collectors wrote here.")
            .sample(&[("source", "clock")], 1.0);
        let mut f = out.gauge("label_info", "One series per --demo.label.");
        for l in &self.labels {
            f.sample(&[("label", l)], 1.0);
        }
        Ok(())
    }
}

struct Ticker {
    runs: AtomicU64,
    interval: Duration,
    timeout: Duration,
    delay: Option<Duration>,
}

impl Collector for Ticker {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: self.timeout,
        }
    }
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        out.counter("ticks_total", "Background runs so far.")
            .sample(&[], n as f64);
        out.gauge("source_info", "Which collectors wrote here.")
            .sample(&[("source", "ticker")], 1.0);
        Ok(())
    }
}

struct Flaky {
    fail: bool,
    runs: AtomicU64,
}

impl Collector for Flaky {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        out.item_error(format!("item {n} malformed"));
        if self.fail {
            anyhow::bail!("demo failure {n} (procfs {})", ctx.procfs.display());
        }
        out.gauge("flaky_ok", "1 while the flaky collector works.")
            .sample(&[], 1.0);
        Ok(())
    }
}

struct Idle;

impl Collector for Idle {
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        out.gauge("idle", "Constant 1.").sample(&[], 1.0);
        Ok(())
    }
}

fn main() -> ExitCode {
    odin_common::run(&SPEC, |args: Args, _settings| Ok(args))
}
