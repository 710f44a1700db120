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
///
/// A collector has no name of its own: its [`CollectorDef`] names it, once.
pub trait Collector: Send + Sync + 'static {
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

    /// The exporter is stopping: make a run in progress return soon (kill the command it
    /// waits for, say) and let later runs return at once. Called once, on the thread that
    /// stops the exporter, usually while [`Collector::collect`] runs on another thread; the
    /// runtime then waits a few seconds at most for background runs to return, and a run that
    /// returns after this call is not recorded (it is nobody's result: the exporter is
    /// leaving). The default does nothing: a collector that only reads files returns soon
    /// anyway.
    fn stop(&self) {}
}

/// What [`CollectorDef::build`] returns: the collector, or `None` when its flags leave it
/// nothing to do (the builder logs why).
pub type Built = anyhow::Result<Option<Box<dyn Collector>>>;

/// The usual [`Built`]: this collector, built.
pub fn built(collector: impl Collector) -> Built {
    Ok(Some(Box::new(collector)))
}

/// A collector as its exporter declares it, once: the `collector` label, the
/// `--collector.<name>` / `--no-collector.<name>` flags, the `/health` component, and how to
/// build it from the exporter's set-up state `S` (its parsed flags and whatever its
/// collectors share). The runtime calls `build` only for enabled collectors.
pub struct CollectorDef<S: 'static> {
    /// Short snake_case name, unique within the exporter.
    pub name: &'static str,
    pub default_enabled: bool,
    /// What it reads, for `--help` (lower case, no final full stop).
    pub help: &'static str,
    pub build: fn(&S) -> Built,
}

impl<S> CollectorDef<S> {
    /// A collector that runs unless `--no-collector.<name>` is given.
    pub const fn on(name: &'static str, help: &'static str, build: fn(&S) -> Built) -> Self {
        CollectorDef {
            name,
            default_enabled: true,
            help,
            build,
        }
    }

    /// A collector that runs only when `--collector.<name>` is given.
    pub const fn off(name: &'static str, help: &'static str, build: fn(&S) -> Built) -> Self {
        CollectorDef {
            name,
            default_enabled: false,
            help,
            build,
        }
    }
}

/// The type of a metric family. The `Compat*` kinds are families that other tools' users
/// already query under a fixed name (dcgm-exporter's `DCGM_FI_*`): the sink writes their name
/// as given, without the exporter's prefix, and a compatibility counter may lack `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    CompatGauge,
    CompatCounter,
}

/// A value a sample can be written from. `None` (and `Option`s of these) means "not read":
/// no sample, never a made-up 0. `bool` is 1 or 0.
pub trait SampleValue {
    fn sample_value(self) -> Option<f64>;
}

macro_rules! sample_value_as_f64 {
    ($($t:ty),*) => {$(
        impl SampleValue for $t {
            fn sample_value(self) -> Option<f64> {
                Some(self as f64)
            }
        }
    )*};
}
sample_value_as_f64!(f64, f32, u64, u32, u16, u8, i64, i32, usize);

impl SampleValue for bool {
    fn sample_value(self) -> Option<f64> {
        Some(if self { 1.0 } else { 0.0 })
    }
}

impl<T: SampleValue> SampleValue for Option<T> {
    fn sample_value(self) -> Option<f64> {
        self.and_then(SampleValue::sample_value)
    }
}

/// One row of a value table: a metric read from each item of type `T`. A table of fields
/// written with [`Sink::fields`] is the one way to map readings to samples when several
/// metrics share their items and labels (a GPU, an interface, a `/proc` line).
pub struct Field<T: ?Sized> {
    pub kind: Kind,
    /// Without the exporter's prefix (except for the `Compat*` kinds).
    pub name: &'static str,
    pub help: &'static str,
    pub value: fn(&T) -> Option<f64>,
}

impl<T: ?Sized> Field<T> {
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        value: fn(&T) -> Option<f64>,
    ) -> Self {
        Field {
            kind: Kind::Gauge,
            name,
            help,
            value,
        }
    }
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        value: fn(&T) -> Option<f64>,
    ) -> Self {
        Field {
            kind: Kind::Counter,
            name,
            help,
            value,
        }
    }
    pub const fn compat_gauge(
        name: &'static str,
        help: &'static str,
        value: fn(&T) -> Option<f64>,
    ) -> Self {
        Field {
            kind: Kind::CompatGauge,
            name,
            help,
            value,
        }
    }
    pub const fn compat_counter(
        name: &'static str,
        help: &'static str,
        value: fn(&T) -> Option<f64>,
    ) -> Self {
        Field {
            kind: Kind::CompatCounter,
            name,
            help,
            value,
        }
    }
}

/// One part of a [`SplitField`]: the extra label's value and how to read it.
pub type Part<T> = (&'static str, fn(&T) -> Option<f64>);

/// A family of one metric read several ways from each item, told apart by one more label
/// (`clock="sm"`, `clock="memory"`): per value of `label`, how to read it. Written with
/// [`Sink::split_fields`]; a plain [`Field`] is the same with one part and no extra label.
pub struct SplitField<T: ?Sized + 'static> {
    pub kind: Kind,
    /// Without the exporter's prefix (except for the `Compat*` kinds).
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
    pub parts: &'static [Part<T>],
}

impl<T: ?Sized> SplitField<T> {
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        parts: &'static [Part<T>],
    ) -> Self {
        SplitField {
            kind: Kind::Gauge,
            name,
            help,
            label,
            parts,
        }
    }
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        parts: &'static [Part<T>],
    ) -> Self {
        SplitField {
            kind: Kind::Counter,
            name,
            help,
            label,
            parts,
        }
    }
}

/// Labels of one sample: `(name, value)` pairs.
pub type Labels<'a> = [(&'a str, &'a str)];

/// What a collector produces in one run: metric families plus per-item error notes.
///
/// The sink owns the exporter's metric prefix (from its `ExporterSpec`): collectors name
/// families without it (`up` becomes `network_up`), except compatibility families.
#[derive(Debug, Clone)]
pub struct Sink {
    prefix: &'static str,
    families: Vec<MetricFamily>,
    item_errors: Vec<String>,
}

impl Sink {
    /// A sink for the exporter whose metric prefix is `prefix` (`network`, `nvidia_gpu`).
    pub fn new(prefix: &'static str) -> Self {
        Sink {
            prefix,
            families: Vec::new(),
            item_errors: Vec::new(),
        }
    }

    /// The prefix this sink applies, without the trailing `_`.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Start a gauge family `<prefix>_<name>`. Add samples with [`Family::sample`].
    pub fn gauge(&mut self, name: &str, help: &str) -> Family<'_> {
        self.family(Kind::Gauge, name, help)
    }

    /// Start a counter family `<prefix>_<name>` (the name must end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str) -> Family<'_> {
        self.family(Kind::Counter, name, help)
    }

    /// Start a family of the given kind; see [`Kind`] for how its name is written.
    pub fn family(&mut self, kind: Kind, name: &str, help: &str) -> Family<'_> {
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} lacks _total"
        );
        let (full, mtype) = match kind {
            Kind::Gauge => (self.prefixed(name), MetricType::GAUGE),
            Kind::Counter => (self.prefixed(name), MetricType::COUNTER),
            Kind::CompatGauge => (name.to_owned(), MetricType::GAUGE),
            Kind::CompatCounter => (name.to_owned(), MetricType::COUNTER),
        };
        let mut mf = MetricFamily::default();
        mf.set_name(full);
        mf.set_help(help.to_owned());
        mf.set_field_type(mtype);
        self.families.push(mf);
        let last = self.families.len() - 1;
        Family {
            mf: &mut self.families[last],
        }
    }

    /// One family per field, one sample per row whose value the field can read. Rows are an
    /// item with its labels.
    pub fn fields<T: ?Sized>(&mut self, fields: &[Field<T>], rows: &[(&Labels<'_>, &T)]) {
        for f in fields {
            let mut fam = self.family(f.kind, f.name, f.help);
            for (labels, item) in rows {
                fam.sample(labels, (f.value)(item));
            }
        }
    }

    /// One family per split field; per row, one sample per part the field can read, labelled
    /// with the row's labels plus `label="<part>"`. Samples go row by row (item by item).
    pub fn split_fields<T: ?Sized>(
        &mut self,
        fields: &[SplitField<T>],
        rows: &[(&Labels<'_>, &T)],
    ) {
        for f in fields {
            let mut fam = self.family(f.kind, f.name, f.help);
            for (labels, item) in rows {
                let mut with_part: Vec<(&str, &str)> = labels.to_vec();
                with_part.push((f.label, ""));
                for (part, read) in f.parts {
                    if let Some(last) = with_part.last_mut() {
                        last.1 = part;
                    }
                    fam.sample(&with_part, read(item));
                }
            }
        }
    }

    /// [`Sink::fields`] for items that carry one label each (`device`, `cpu`, `family`): one
    /// family per field, one sample per `(label value, item)` the field can read.
    pub fn fields_by_label<'a, T: 'a>(
        &mut self,
        fields: &[Field<T>],
        label: &str,
        items: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) {
        let items: Vec<(&str, &T)> = items.into_iter().collect();
        let labels: Vec<[(&str, &str); 1]> =
            items.iter().map(|(value, _)| [(label, *value)]).collect();
        let rows: Vec<(&Labels<'_>, &T)> = labels
            .iter()
            .zip(&items)
            .map(|(labels, (_, item))| (&labels[..], *item))
            .collect();
        self.fields(fields, &rows);
    }

    fn prefixed(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// Add families built elsewhere, e.g. `histogram_vec.collect()` from the prometheus crate
    /// for state a collector keeps across runs. Their names get the prefix too: build them
    /// without it (`dns_lookup_duration_seconds`).
    pub fn extend(&mut self, families: impl IntoIterator<Item = MetricFamily>) {
        for mut f in families {
            let full = self.prefixed(f.name());
            f.set_name(full);
            self.families.push(f);
        }
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
    /// Add one sample with the given labels, if there is a value (`None` adds nothing; see
    /// [`SampleValue`]). Label values are free text (escaped on output); never put an
    /// unbounded or secret value in one.
    pub fn sample(&mut self, labels: &Labels<'_>, value: impl SampleValue) -> &mut Self {
        let Some(value) = value.sample_value() else {
            return self;
        };
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
        let mut s = Sink::new("x");
        s.gauge("up", "Up.")
            .sample(&[("device", "eth0")], 1.0)
            .sample(&[("device", "lo")], 0.0);
        s.counter("empty_total", "Nothing.");
        s.item_error("bad line 3");
        let (fams, errs) = s.into_parts();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].name(), "x_up");
        assert_eq!(fams[0].get_metric().len(), 2);
        assert_eq!(fams[0].get_metric()[1].get_gauge().get_value(), 0.0);
        assert_eq!(fams[0].get_metric()[0].get_label()[0].value(), "eth0");
        assert_eq!(errs, vec!["bad line 3".to_string()]);
    }

    struct Reading {
        temp: Option<f64>,
        on: Option<bool>,
        energy: u64,
    }

    const FIELDS: &[Field<Reading>] = &[
        Field::gauge("temp_celsius", "Temperature.", |r| r.temp),
        Field::gauge("on", "1 if on.", |r| r.on.sample_value()),
        Field::counter("energy_joules_total", "Energy.", |r| Some(r.energy as f64)),
        Field::compat_counter("LEGACY_ENERGY", "Energy, old name.", |r| {
            Some(r.energy as f64 * 1000.0)
        }),
    ];

    #[test]
    fn prefix_fields_optional_values_and_compat_names() {
        let a = Reading {
            temp: Some(40.0),
            on: Some(true),
            energy: 5,
        };
        let b = Reading {
            temp: None,
            on: None,
            energy: 7,
        };
        let mut s = Sink::new("dev");
        s.fields(FIELDS, &[(&[("id", "a")], &a), (&[("id", "b")], &b)]);
        let mut by_label = Sink::new("dev");
        by_label.fields_by_label(FIELDS, "id", [("a", &a), ("b", &b)]);
        assert_eq!(
            format!("{:?}", by_label.families()),
            format!("{:?}", s.families()),
            "one label per item is the same table"
        );
        s.gauge("flag", "A flag.")
            .sample(&[], false)
            .sample(&[("x", "1")], None::<u32>);
        let (fams, _) = s.into_parts();
        let names: Vec<&str> = fams.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "dev_temp_celsius",
                "dev_on",
                "dev_energy_joules_total",
                "LEGACY_ENERGY",
                "dev_flag"
            ]
        );
        // None is no sample at all; Some(bool) is 1/0.
        assert_eq!(fams[0].get_metric().len(), 1);
        assert_eq!(fams[1].get_metric()[0].get_gauge().get_value(), 1.0);
        assert_eq!(fams[3].get_field_type(), MetricType::COUNTER);
        assert_eq!(fams[3].get_metric()[1].get_counter().get_value(), 7000.0);
        assert_eq!(fams[4].get_metric().len(), 1);
        assert_eq!(fams[4].get_metric()[0].get_gauge().get_value(), 0.0);
    }

    const SPLIT: &[SplitField<Reading>] = &[SplitField::gauge(
        "reading",
        "Readings by kind.",
        "kind",
        &[("temp", |r| r.temp), ("energy", |r| Some(r.energy as f64))],
    )];

    #[test]
    fn split_fields_add_one_label_per_part() {
        let a = Reading {
            temp: None,
            on: None,
            energy: 3,
        };
        let mut s = Sink::new("dev");
        s.split_fields(SPLIT, &[(&[("id", "a")], &a)]);
        let (fams, _) = s.into_parts();
        assert_eq!(fams[0].name(), "dev_reading");
        let metrics = fams[0].get_metric();
        assert_eq!(metrics.len(), 1, "no sample for the absent temp");
        let labels: Vec<(&str, &str)> = metrics[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(labels, [("id", "a"), ("kind", "energy")]);
        assert_eq!(metrics[0].get_gauge().get_value(), 3.0);
    }

    #[test]
    fn extended_families_get_the_prefix() {
        let c = prometheus::IntCounter::new("runs_total", "Runs.").unwrap();
        c.inc();
        let mut s = Sink::new("dev");
        s.extend(prometheus::core::Collector::collect(&c));
        assert_eq!(s.families()[0].name(), "dev_runs_total");
    }
}
