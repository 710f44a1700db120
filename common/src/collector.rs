//! The collector contract: what every data source of every ODIN exporter implements.
//!
//! A collector reads one source (a `/proc` file, a sysfs tree, a DNS prober, nvidia-smi) and
//! writes metric families into a [`Sink`]. The runtime in this crate times every run, exports
//! `<prefix>_collector_duration_seconds{collector}` and `<prefix>_collector_success{collector}`,
//! and keeps the health bookkeeping that `/health` shows. Collectors never touch HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// How and when the runtime runs a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fast sources (`/proc`, `/sys`): collected inside every scrape.
    OnScrape,
    /// Slow or fragile sources: collected on a dedicated thread every `interval`; a scrape serves
    /// the last result and its age. `timeout` is handed to the collector in [`Context::timeout`]
    /// and a run that overstays it is reported as failing in `/health`.
    Background {
        interval: Duration,
        timeout: Duration,
    },
}

/// Where a collector finds the host: the `--path.*` flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// Root of procfs (`--path.procfs`, default `/proc`).
    pub procfs: PathBuf,
    /// Root of sysfs (`--path.sysfs`, default `/sys`).
    pub sysfs: PathBuf,
    /// For background collectors, the time budget of one run; for on-scrape collectors, the
    /// scrape's budget.
    pub timeout: Duration,
}

impl Context {
    /// A path below the procfs root, e.g. `ctx.proc_path("net/dev")`.
    pub fn proc_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.procfs.join(rel)
    }
    /// A path below the sysfs root, e.g. `ctx.sys_path("class/net")`.
    pub fn sys_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sysfs.join(rel)
    }
}

/// One data source of an exporter.
///
/// `collect` returns `Err` when the source as a whole could not be read (file missing, command
/// failed): the runtime records it, sets `<prefix>_collector_success` to 0, keeps serving
/// everything else, and serves only what this failed run wrote before returning (never a result
/// of an earlier run, so nothing stale is served).
/// Per-item problems (a malformed line, a vanished process) are not errors: count them with
/// [`Sink::item_error`] and carry on.
pub trait Collector: Send + Sync + 'static {
    /// Short snake_case name: the `collector` label, the `--collector.<name>` flag, the
    /// `/health` component.
    fn name(&self) -> &'static str;

    /// On scrape (the default) or in the background.
    fn mode(&self) -> Mode {
        Mode::OnScrape
    }

    /// Read the source once and write metric families into `out`.
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()>;

    /// A line for `/health` that is not an error: what the collector is doing and why (for
    /// example "nvidia-smi: NVML could not load: ..."). Never a secret.
    fn detail(&self) -> Option<String> {
        None
    }
}

/// What a collector produces in one run: metric families plus per-item error notes.
#[derive(Debug, Default, Clone)]
pub struct Sink {
    families: Vec<MetricFamily>,
    item_errors: Vec<String>,
}

impl Sink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a gauge family. Add samples with [`Family::sample`].
    pub fn gauge(&mut self, name: &str, help: &str) -> Family<'_> {
        self.family(name, help, MetricType::GAUGE)
    }

    /// Start a counter family (the name must end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str) -> Family<'_> {
        debug_assert!(name.ends_with("_total"), "counter {name} lacks _total");
        self.family(name, help, MetricType::COUNTER)
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> Family<'_> {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_owned());
        mf.set_help(help.to_owned());
        mf.set_field_type(kind);
        self.families.push(mf);
        let last = self.families.len() - 1;
        Family {
            mf: &mut self.families[last],
        }
    }

    /// Add families built elsewhere, e.g. `histogram_vec.collect()` from the prometheus crate
    /// for state a collector keeps across runs.
    pub fn extend(&mut self, families: impl IntoIterator<Item = MetricFamily>) {
        self.families.extend(families);
    }

    /// Note one skipped item (malformed line, vanished process). Counted in
    /// `<prefix>_collector_item_errors_total{collector}` and shown in `/health`; the run still
    /// succeeds.
    pub fn item_error(&mut self, what: impl Into<String>) {
        self.item_errors.push(what.into());
    }

    pub fn families(&self) -> &[MetricFamily] {
        &self.families
    }

    pub fn item_errors(&self) -> &[String] {
        &self.item_errors
    }

    /// Take everything out, dropping families that ended up with no samples (a family with no
    /// samples is noise in the exposition).
    pub fn into_parts(self) -> (Vec<MetricFamily>, Vec<String>) {
        let families = self
            .families
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect();
        (families, self.item_errors)
    }
}

/// A family being filled; see [`Sink::gauge`] and [`Sink::counter`].
pub struct Family<'a> {
    mf: &'a mut MetricFamily,
}

impl Family<'_> {
    /// Add one sample with the given labels. Label values are free text (escaped on output);
    /// never put an unbounded or secret value in one.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut m = Metric::default();
        if !labels.is_empty() {
            let pairs: Vec<LabelPair> = labels
                .iter()
                .map(|(k, v)| {
                    let mut lp = LabelPair::default();
                    lp.set_name((*k).to_owned());
                    lp.set_value((*v).to_owned());
                    lp
                })
                .collect();
            m.set_label(pairs);
        }
        match self.mf.get_field_type() {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.mf.mut_metric().push(m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_builds_families_and_drops_empty_ones() {
        let mut s = Sink::new();
        s.gauge("x_up", "Up.")
            .sample(&[("device", "eth0")], 1.0)
            .sample(&[("device", "lo")], 0.0);
        s.counter("x_empty_total", "Nothing.");
        s.item_error("bad line 3");
        let (fams, errs) = s.into_parts();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].name(), "x_up");
        assert_eq!(fams[0].get_metric().len(), 2);
        assert_eq!(fams[0].get_metric()[1].get_gauge().get_value(), 0.0);
        assert_eq!(fams[0].get_metric()[0].get_label()[0].value(), "eth0");
        assert_eq!(errs, vec!["bad line 3".to_string()]);
    }
}
