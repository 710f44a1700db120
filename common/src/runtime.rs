//! The collector runtime: runs collectors (in each scrape or on background threads), keeps the
//! per-collector bookkeeping that `/health` and the `<prefix>_collector_*` families show, and
//! turns one scrape into a text exposition.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::Level;
use prometheus::proto::MetricFamily;
use prometheus::Encoder;

use crate::collector::{Collector, Context, Mode, Sink};
use crate::logging::event;

/// How many run errors `/health` keeps per collector.
pub const MAX_ERRORS: usize = 10;
/// A collector that keeps failing is logged again at most this often.
const REPEAT_WARNING_EVERY: Duration = Duration::from_secs(300);

/// One failed run, as `/health` lists it.
#[derive(Debug, Clone)]
pub struct RunError {
    pub time: SystemTime,
    pub message: String,
}

/// Bookkeeping of one collector.
#[derive(Debug, Default)]
pub struct SlotState {
    pub runs: u64,
    pub last_run: Option<SystemTime>,
    pub last_ok: Option<bool>,
    pub last_success: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub consecutive_failures: u64,
    pub item_errors_total: u64,
    pub errors: VecDeque<RunError>,
    /// Background: when the run now in progress started.
    pub running_since: Option<(Instant, SystemTime)>,
    /// Background: families of the last run (only what a failed run wrote before failing).
    pub families: Vec<MetricFamily>,
    /// Background: when the stored families were produced.
    pub result_at: Option<Instant>,
    last_warned: Option<Instant>,
}

/// A collector and its bookkeeping.
pub struct Slot {
    pub collector: Arc<dyn Collector>,
    pub name: &'static str,
    pub mode: Mode,
    state: Mutex<SlotState>,
    /// On-scrape runs a scrape gave up waiting for and that have not returned yet.
    abandoned: AtomicUsize,
}

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    pub families: Vec<MetricFamily>,
    pub item_errors: Vec<String>,
    pub duration: Duration,
    pub error: Option<String>,
}

impl Outcome {
    fn failed(duration: Duration, message: String) -> Self {
        Outcome {
            families: Vec::new(),
            item_errors: Vec::new(),
            duration,
            error: Some(message),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking collector never holds these locks; recover anyway rather than cascade.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    pub fn new(name: &'static str, collector: Box<dyn Collector>) -> Self {
        let collector: Arc<dyn Collector> = Arc::from(collector);
        Slot {
            name,
            mode: collector.mode(),
            collector,
            state: Mutex::new(SlotState::default()),
            abandoned: AtomicUsize::new(0),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }

    pub fn is_background(&self) -> bool {
        matches!(self.mode, Mode::Background { .. })
    }

    /// Run the collector once on the calling thread, catching panics.
    pub fn run_once(&self, prefix: &'static str, ctx: &Context) -> Outcome {
        let start = Instant::now();
        let mut sink = Sink::new(prefix);
        let res =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.collector.collect(ctx, &mut sink)));
        let duration = start.elapsed();
        match res {
            Ok(Ok(())) => {
                let (families, item_errors) = sink.into_parts();
                Outcome {
                    families,
                    item_errors,
                    duration,
                    error: None,
                }
            }
            Ok(Err(e)) => {
                // What the run wrote before failing describes this run (a prober's failure
                // counters, say) and is served; nothing from an earlier run is.
                let (families, item_errors) = sink.into_parts();
                Outcome {
                    families,
                    item_errors,
                    duration,
                    error: Some(format!("{e:#}")),
                }
            }
            Err(_) => Outcome::failed(duration, "collector panicked".into()),
        }
    }

    /// Record an outcome: health bookkeeping, logging on state changes, and (background) the
    /// stored result. Returns the families for an on-scrape run.
    pub fn record(&self, outcome: Outcome) -> Vec<MetricFamily> {
        let now = SystemTime::now();
        let mut st = self.state();
        st.runs += 1;
        st.last_run = Some(now);
        st.last_duration = Some(outcome.duration);
        st.item_errors_total += outcome.item_errors.len() as u64;
        for e in &outcome.item_errors {
            event(
                Level::Debug,
                "item skipped",
                &[("collector", self.name), ("item_error", e)],
            );
        }
        let was_ok = st.last_ok;
        let families = match outcome.error {
            None => {
                st.last_ok = Some(true);
                st.last_success = Some(now);
                if was_ok == Some(false) {
                    let n = st.consecutive_failures.to_string();
                    event(
                        Level::Info,
                        "collector recovered",
                        &[("collector", self.name), ("failed_runs", &n)],
                    );
                }
                st.consecutive_failures = 0;
                outcome.families
            }
            Some(message) => {
                st.last_ok = Some(false);
                st.consecutive_failures += 1;
                let repeat_due = st
                    .last_warned
                    .map_or(true, |t| t.elapsed() >= REPEAT_WARNING_EVERY);
                if was_ok != Some(false) || repeat_due {
                    st.last_warned = Some(Instant::now());
                    let n = st.consecutive_failures.to_string();
                    event(
                        Level::Warn,
                        "collector failed",
                        &[
                            ("collector", self.name),
                            ("err", &message),
                            ("consecutive_failures", &n),
                        ],
                    );
                } else {
                    event(
                        Level::Debug,
                        "collector failed",
                        &[("collector", self.name), ("err", &message)],
                    );
                }
                if st.errors.len() == MAX_ERRORS {
                    st.errors.pop_front();
                }
                st.errors.push_back(RunError { time: now, message });
                outcome.families
            }
        };
        if self.is_background() {
            st.running_since = None;
            st.families = families;
            st.result_at = Some(Instant::now());
            Vec::new()
        } else {
            families
        }
    }

    /// Background: whether the run in progress has outlived its timeout.
    pub fn overdue(st: &SlotState, mode: Mode) -> Option<Duration> {
        let Mode::Background { timeout, .. } = mode else {
            return None;
        };
        let (since, _) = st.running_since?;
        let running = since.elapsed();
        (running > timeout).then_some(running)
    }

    /// Whether the collector counts as healthy now: never run (pending), or last run succeeded
    /// and no background run is overdue.
    pub fn healthy(&self, st: &SlotState) -> bool {
        st.last_ok != Some(false) && Self::overdue(st, self.mode).is_none()
    }
}

/// A stop flag threads can sleep on.
#[derive(Default)]
pub struct Shutdown {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Shutdown {
    pub fn trigger(&self) {
        *lock(&self.stopped) = true;
        self.cv.notify_all();
    }
    pub fn is_triggered(&self) -> bool {
        *lock(&self.stopped)
    }
    /// Sleep up to `d`; true when shutdown was triggered.
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// Who the exporter is, as the landing page, `/health` and the meta families say.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub name: &'static str,
    pub prefix: &'static str,
    pub version: &'static str,
    pub about: &'static str,
    /// `--demo`: it serves demo data (fixture trees, replays, fakes), not this machine's.
    pub demo: bool,
}

/// Everything the HTTP side needs: collectors, their state, and who the exporter is.
pub struct Runtime {
    pub id: Identity,
    pub started: Instant,
    pub slots: Vec<Arc<Slot>>,
    pub procfs: std::path::PathBuf,
    pub sysfs: std::path::PathBuf,
    /// Budget of on-scrape collectors in one scrape.
    pub collect_timeout: Duration,
    pub shutdown: Arc<Shutdown>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// One scrape's result.
pub struct Scrape {
    pub body: Vec<u8>,
    /// Collectors whose run (on-scrape) or stored result (background) is a failure.
    pub failed: Vec<&'static str>,
}

const RUN_RUNNING: u8 = 0;
const RUN_DONE: u8 = 1;
const RUN_ABANDONED: u8 = 2;

impl Runtime {
    pub fn new(
        id: Identity,
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        procfs: std::path::PathBuf,
        sysfs: std::path::PathBuf,
        collect_timeout: Duration,
    ) -> Self {
        Runtime {
            id,
            started: Instant::now(),
            slots: collectors
                .into_iter()
                .map(|(name, c)| Arc::new(Slot::new(name, c)))
                .collect(),
            procfs,
            sysfs,
            collect_timeout,
            shutdown: Arc::new(Shutdown::default()),
            threads: Mutex::new(Vec::new()),
        }
    }

    fn context(&self, timeout: Duration) -> Context {
        Context {
            procfs: self.procfs.clone(),
            sysfs: self.sysfs.clone(),
            timeout,
        }
    }

    fn timeout_of(&self, slot: &Slot) -> Duration {
        match slot.mode {
            Mode::Background { timeout, .. } => timeout,
            Mode::OnScrape => self.collect_timeout,
        }
    }

    /// Start one thread per background collector: collect, store, sleep `interval`, until
    /// shutdown.
    pub fn start_background(&self) -> std::io::Result<()> {
        for slot in self.slots.iter().filter(|s| s.is_background()) {
            let Mode::Background { interval, timeout } = slot.mode else {
                continue;
            };
            let slot = Arc::clone(slot);
            let shutdown = Arc::clone(&self.shutdown);
            let ctx = self.context(timeout);
            let prefix = self.id.prefix;
            let handle = std::thread::Builder::new()
                .name(format!("collector-{}", slot.name))
                .spawn(move || {
                    while !shutdown.is_triggered() {
                        slot.state().running_since = Some((Instant::now(), SystemTime::now()));
                        let outcome = slot.run_once(prefix, &ctx);
                        if shutdown.is_triggered() {
                            // Interrupted by `Collector::stop` (or done just then): not a
                            // failure of the source, and nobody will be served it.
                            break;
                        }
                        slot.record(outcome);
                        if shutdown.sleep(interval) {
                            break;
                        }
                    }
                })?;
            lock(&self.threads).push(handle);
        }
        Ok(())
    }

    /// Stop background threads: tell every collector to stop ([`Collector::stop`], which
    /// interrupts a run that waits on a child process, say), then wait up to `grace` for the
    /// threads (a collector stuck in a read that cannot be interrupted must not hold up the
    /// exit).
    pub fn stop_background(&self, grace: Duration) {
        self.shutdown.trigger();
        for slot in &self.slots {
            let collector = &slot.collector;
            if std::panic::catch_unwind(AssertUnwindSafe(|| collector.stop())).is_err() {
                event(
                    Level::Warn,
                    "collector panicked while stopping",
                    &[("collector", slot.name)],
                );
            }
        }
        let deadline = Instant::now() + grace;
        let handles: Vec<_> = lock(&self.threads).drain(..).collect();
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    /// Ready once every background collector has finished a first run (the HTTP layer asks
    /// [`Runtime::not_ready_reason`], which also says why not).
    #[cfg(test)]
    pub fn ready(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| s.is_background())
            .all(|s| s.state().runs > 0)
    }

    /// Why the exporter is not ready, in one line for the `/ready` answer: each background
    /// collector that has not finished a first run, with what it says about itself
    /// ([`Collector::detail`]) or else that it has not finished a first run, e.g.
    /// `gpu: choosing a backend: nvidia-smi has not answered for 3 s`. `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        let pending: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.is_background() && s.state().runs == 0)
            .map(|s| match s.collector.detail() {
                Some(d) => format!("{}: {d}", s.name),
                None => format!("{}: has not finished a first run", s.name),
            })
            .collect();
        (!pending.is_empty()).then(|| pending.join("; "))
    }

    /// Start `slot` on a blocking thread now; [`Runtime::finish_run`] waits for it at most the
    /// collector's timeout. A run the caller gave up on keeps its thread until it returns;
    /// while it does, no new run of that collector starts.
    pub fn start_run(&self, slot: &Arc<Slot>) -> Started {
        let timeout = self.timeout_of(slot);
        if slot.abandoned.load(Ordering::SeqCst) > 0 {
            return Started::Skipped(Outcome::failed(
                Duration::ZERO,
                format!(
                    "an earlier run is still going after the {}s timeout",
                    secs(timeout)
                ),
            ));
        }
        let ctx = self.context(timeout);
        let prefix = self.id.prefix;
        let state = Arc::new(AtomicU8::new(RUN_RUNNING));
        let (run_slot, run_state) = (Arc::clone(slot), Arc::clone(&state));
        let handle = tokio::task::spawn_blocking(move || {
            let out = run_slot.run_once(prefix, &ctx);
            if run_state
                .compare_exchange(RUN_RUNNING, RUN_DONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                run_slot.abandoned.fetch_sub(1, Ordering::SeqCst);
            }
            out
        });
        Started::Running {
            slot: Arc::clone(slot),
            handle,
            state,
            start: Instant::now(),
            timeout,
        }
    }

    /// Wait for a run started by [`Runtime::start_run`], at most until its deadline.
    pub async fn finish_run(started: Started) -> Outcome {
        let (slot, mut handle, state, start, timeout) = match started {
            Started::Skipped(out) => return out,
            Started::Running {
                slot,
                handle,
                state,
                start,
                timeout,
            } => (slot, handle, state, start, timeout),
        };
        let deadline = tokio::time::Instant::from_std(start + timeout);
        match tokio::time::timeout_at(deadline, &mut handle).await {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => Outcome::failed(start.elapsed(), "collector panicked".into()),
            Err(_) => {
                slot.abandoned.fetch_add(1, Ordering::SeqCst);
                if state
                    .compare_exchange(
                        RUN_RUNNING,
                        RUN_ABANDONED,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_err()
                {
                    // Finished right at the deadline: take the result after all.
                    slot.abandoned.fetch_sub(1, Ordering::SeqCst);
                    if let Ok(out) = handle.await {
                        return out;
                    }
                }
                Outcome::failed(
                    start.elapsed(),
                    format!("timed out after {}s", secs(timeout)),
                )
            }
        }
    }

    /// `--once`: run every background collector once, in parallel, honouring its timeout.
    pub async fn run_background_once(&self) {
        let started: Vec<_> = self
            .slots
            .iter()
            .filter(|s| s.is_background())
            .map(|slot| {
                slot.state().running_since = Some((Instant::now(), SystemTime::now()));
                (slot, self.start_run(slot))
            })
            .collect();
        for (slot, run) in started {
            let out = Self::finish_run(run).await;
            slot.record(out);
        }
    }

    /// One scrape: run on-scrape collectors concurrently, add the stored background results,
    /// the runtime's own families, and encode.
    pub async fn scrape(&self) -> Scrape {
        let started: Vec<_> = self
            .slots
            .iter()
            .filter(|s| !s.is_background())
            .map(|slot| (slot, self.start_run(slot)))
            .collect();
        let mut families: Vec<MetricFamily> = Vec::new();
        let mut meta = Meta::new(self.id.prefix);
        let mut failed = Vec::new();
        for (slot, run) in started {
            let out = Self::finish_run(run).await;
            let ok = out.error.is_none();
            let duration = out.duration;
            families.extend(slot.record(out));
            meta.duration(slot.name, duration.as_secs_f64());
            meta.success(slot.name, ok);
            meta.item_errors(slot.name, slot.state().item_errors_total);
            if !ok {
                failed.push(slot.name);
            }
        }
        for slot in self.slots.iter().filter(|s| s.is_background()) {
            let st = slot.state();
            let ok = st.last_ok == Some(true) && Slot::overdue(&st, slot.mode).is_none();
            families.extend(st.families.iter().cloned());
            if let Some(d) = st.last_duration {
                meta.duration(slot.name, d.as_secs_f64());
            }
            meta.success(slot.name, ok);
            meta.item_errors(slot.name, st.item_errors_total);
            if let Some(t) = st.last_success {
                meta.last_success(slot.name, unix_secs(t));
            }
            if let Some(at) = st.result_at {
                meta.age(slot.name, at.elapsed().as_secs_f64());
            }
            if !ok {
                failed.push(slot.name);
            }
        }
        meta.build_info(self.id.version, self.id.demo);
        families.extend(meta.finish());
        Scrape {
            body: encode(families),
            failed,
        }
    }
}

/// A run handed to a blocking thread, or refused.
pub enum Started {
    Skipped(Outcome),
    Running {
        slot: Arc<Slot>,
        handle: tokio::task::JoinHandle<Outcome>,
        state: Arc<AtomicU8>,
        start: Instant,
        timeout: Duration,
    },
}

/// Seconds as text without a trailing `.0` for whole numbers.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Help, whether it is a counter, and `(collector, value)` samples.
type MetaFamily = (&'static str, bool, Vec<(&'static str, f64)>);

/// The runtime's own families for one scrape.
struct Meta {
    prefix: &'static str,
    sink: BTreeMap<&'static str, MetaFamily>,
    build: Option<(String, bool)>,
}

impl Meta {
    fn new(prefix: &'static str) -> Self {
        Meta {
            prefix,
            sink: BTreeMap::new(),
            build: None,
        }
    }
    fn put(
        &mut self,
        suffix: &'static str,
        help: &'static str,
        counter: bool,
        c: &'static str,
        v: f64,
    ) {
        self.sink
            .entry(suffix)
            .or_insert((help, counter, Vec::new()))
            .2
            .push((c, v));
    }
    fn duration(&mut self, c: &'static str, v: f64) {
        self.put(
            "collector_duration_seconds",
            "Duration of the collector's last run.",
            false,
            c,
            v,
        );
    }
    fn success(&mut self, c: &'static str, ok: bool) {
        let help = "1 if the collector's last run succeeded (background: and is not overdue).";
        self.put(
            "collector_success",
            help,
            false,
            c,
            if ok { 1.0 } else { 0.0 },
        );
    }
    fn item_errors(&mut self, c: &'static str, n: u64) {
        let help = "Items the collector skipped as malformed or vanished, since start.";
        self.put("collector_item_errors_total", help, true, c, n as f64);
    }
    fn last_success(&mut self, c: &'static str, t: f64) {
        let help = "Unix time of the background collector's last successful run.";
        self.put(
            "collector_last_success_timestamp_seconds",
            help,
            false,
            c,
            t,
        );
    }
    fn age(&mut self, c: &'static str, secs: f64) {
        let help = "Age of the background collector's served result.";
        self.put("collector_result_age_seconds", help, false, c, secs);
    }
    fn build_info(&mut self, version: &str, demo: bool) {
        self.build = Some((version.to_owned(), demo));
    }
    fn finish(self) -> Vec<MetricFamily> {
        let mut sink = Sink::new(self.prefix);
        for (suffix, (help, counter, samples)) in &self.sink {
            let mut fam = if *counter {
                sink.counter(suffix, help)
            } else {
                sink.gauge(suffix, help)
            };
            for (c, v) in samples {
                fam.sample(&[("collector", c)], *v);
            }
        }
        if let Some((v, demo)) = &self.build {
            let demo = if *demo { "true" } else { "false" };
            sink.gauge(
                "exporter_build_info",
                "Exporter version, and whether it serves demo data (--demo); always 1.",
            )
            .sample(&[("version", v), ("demo", demo)], 1.0);
        }
        sink.into_parts().0
    }
}

/// Merge families of the same name (different collectors may write to one family), sort by
/// name, and encode as text format 0.0.4. A family whose type disagrees with the first one of
/// its name is dropped, as promtool would reject the exposition.
pub fn encode(families: Vec<MetricFamily>) -> Vec<u8> {
    let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for fam in families {
        if fam.get_metric().is_empty() {
            continue;
        }
        match merged.get_mut(fam.name()) {
            None => {
                merged.insert(fam.name().to_owned(), fam);
            }
            Some(existing) if existing.get_field_type() == fam.get_field_type() => {
                let mut fam = fam;
                existing.mut_metric().extend(fam.take_metric());
            }
            Some(_) => {
                event(
                    Level::Debug,
                    "dropping family with conflicting type",
                    &[("family", fam.name())],
                );
            }
        }
    }
    let families: Vec<MetricFamily> = merged.into_values().collect();
    let mut buf = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut buf) {
        event(
            Level::Error,
            "encoding the exposition failed",
            &[("err", &e.to_string())],
        );
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    const ID: Identity = Identity {
        name: "t-exporter",
        prefix: "t",
        version: "9.9.9",
        about: "T.",
        demo: false,
    };

    /// A collector driven by the test: fails while `fail` is set, sleeps `delay` per run, and
    /// writes `t_shared{source=<name>}` plus `t_<name>_runs_total`.
    struct Probe {
        name: &'static str,
        mode: Mode,
        fail: Arc<AtomicBool>,
        delay: Duration,
        runs: AtomicUsize,
    }

    fn probe(
        name: &'static str,
        mode: Mode,
        delay: Duration,
    ) -> ((&'static str, Box<dyn Collector>), Arc<AtomicBool>) {
        let fail = Arc::new(AtomicBool::new(false));
        let p = Probe {
            name,
            mode,
            fail: Arc::clone(&fail),
            delay,
            runs: AtomicUsize::new(0),
        };
        ((name, Box::new(p)), fail)
    }

    impl Collector for Probe {
        fn mode(&self) -> Mode {
            self.mode
        }
        fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
            std::thread::sleep(self.delay);
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            out.item_error(format!("{} item {n}", self.name));
            out.gauge("shared", "Shared.")
                .sample(&[("source", self.name)], 1.0);
            if self.fail.load(Ordering::SeqCst) {
                anyhow::bail!("{} broke on run {n}", self.name);
            }
            let fam = format!("{}_runs_total", self.name);
            out.counter(&fam, "Runs.").sample(&[], n as f64);
            Ok(())
        }
    }

    fn runtime(collectors: Vec<(&'static str, Box<dyn Collector>)>, timeout: Duration) -> Runtime {
        Runtime::new(ID, collectors, "/p".into(), "/s".into(), timeout)
    }

    fn text(s: &Scrape) -> String {
        String::from_utf8(s.body.clone()).unwrap()
    }

    const BG: Mode = Mode::Background {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_scrape_families_merge_and_meta_metrics() {
        let (a, _) = probe("a", Mode::OnScrape, Duration::ZERO);
        let (b, _) = probe("b", Mode::OnScrape, Duration::ZERO);
        let rt = runtime(vec![a, b], Duration::from_secs(5));
        let s = rt.scrape().await;
        let t = text(&s);
        assert!(s.failed.is_empty());
        // One family, two series, one HELP/TYPE block.
        assert_eq!(t.matches("# TYPE t_shared gauge").count(), 1, "{t}");
        assert!(
            t.contains("t_shared{source=\"a\"} 1\nt_shared{source=\"b\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("t_a_runs_total 1\n"), "{t}");
        assert!(
            t.contains("t_collector_success{collector=\"a\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("t_collector_item_errors_total{collector=\"b\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("t_exporter_build_info{version=\"9.9.9\",demo=\"false\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE t_collector_duration_seconds gauge"),
            "{t}"
        );
        assert!(
            !t.contains("last_success_timestamp"),
            "no background collector: {t}"
        );
        let t2 = text(&rt.scrape().await);
        assert!(t2.contains("t_a_runs_total 2\n"), "{t2}");
        assert!(
            t2.contains("t_collector_item_errors_total{collector=\"a\"} 2\n"),
            "{t2}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_collector_is_recorded_and_capped() {
        let (a, fail) = probe("a", Mode::OnScrape, Duration::ZERO);
        let (b, _) = probe("b", Mode::OnScrape, Duration::ZERO);
        let rt = runtime(vec![a, b], Duration::from_secs(5));
        fail.store(true, Ordering::SeqCst);
        for _ in 0..12 {
            rt.scrape().await;
        }
        let s = rt.scrape().await;
        let t = text(&s);
        assert_eq!(s.failed, vec!["a"]);
        assert!(
            t.contains("t_collector_success{collector=\"a\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("t_collector_success{collector=\"b\"} 1\n"),
            "{t}"
        );
        // A failed run serves what it wrote before the error (t_shared), and nothing of
        // earlier runs (t_a_runs_total is written only after the point where it fails).
        assert!(t.contains("t_shared{source=\"a\"} 1\n"), "{t}");
        assert!(!t.contains("t_a_runs_total"), "{t}");
        {
            let st = rt.slots[0].state();
            assert_eq!(st.consecutive_failures, 13);
            assert_eq!(st.errors.len(), MAX_ERRORS);
            assert_eq!(st.errors.front().unwrap().message, "a broke on run 4");
            assert_eq!(st.errors.back().unwrap().message, "a broke on run 13");
            assert_eq!(st.item_errors_total, 13);
            assert!(!rt.slots[0].healthy(&st));
        }
        fail.store(false, Ordering::SeqCst);
        rt.scrape().await;
        let st = rt.slots[0].state();
        assert_eq!(st.consecutive_failures, 0);
        assert!(rt.slots[0].healthy(&st));
        assert_eq!(st.errors.len(), MAX_ERRORS, "history stays after recovery");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_on_scrape_collector_times_out_without_pileup() {
        let (slow, _) = probe("slow", Mode::OnScrape, Duration::from_millis(600));
        let (fast, _) = probe("fast", Mode::OnScrape, Duration::ZERO);
        let rt = runtime(vec![slow, fast], Duration::from_millis(100));
        let start = Instant::now();
        let s = rt.scrape().await;
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(s.failed, vec!["slow"]);
        assert!(text(&s).contains("t_fast_runs_total 1\n"));
        assert_eq!(
            rt.slots[0].state().errors.back().unwrap().message,
            "timed out after 0.1s"
        );
        // While the abandoned run is still going, no second one starts.
        let s = rt.scrape().await;
        assert_eq!(s.failed, vec!["slow"]);
        assert!(rt.slots[0]
            .state()
            .errors
            .back()
            .unwrap()
            .message
            .contains("still going"));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(rt.slots[0].abandoned.load(Ordering::SeqCst), 0);
        // Both runs so far: the abandoned one, nothing else. The next run starts again (and
        // times out again, being slow).
        let s = rt.scrape().await;
        assert_eq!(s.failed, vec!["slow"]);
        assert_eq!(
            rt.slots[0].state().errors.back().unwrap().message,
            "timed out after 0.1s"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_results_are_served_and_dropped_on_failure() {
        let (bg, fail) = probe("bg", BG, Duration::ZERO);
        let rt = runtime(vec![bg], Duration::from_secs(5));
        assert!(!rt.ready());
        let t = text(&rt.scrape().await);
        assert!(
            t.contains("t_collector_success{collector=\"bg\"} 0\n"),
            "before the first run: {t}"
        );
        assert!(!t.contains("t_collector_result_age_seconds"), "{t}");
        rt.run_background_once().await;
        assert!(rt.ready());
        let t = text(&rt.scrape().await);
        assert!(t.contains("t_bg_runs_total 1\n"), "{t}");
        assert!(
            t.contains("t_collector_success{collector=\"bg\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("t_collector_result_age_seconds{collector=\"bg\"} "),
            "{t}"
        );
        assert!(
            t.contains("t_collector_last_success_timestamp_seconds{collector=\"bg\"} 1"),
            "{t}"
        );
        // Scrapes don't run background collectors.
        let t = text(&rt.scrape().await);
        assert!(t.contains("t_bg_runs_total 1\n"), "{t}");
        fail.store(true, Ordering::SeqCst);
        rt.run_background_once().await;
        let s = rt.scrape().await;
        let t = text(&s);
        assert_eq!(s.failed, vec!["bg"]);
        assert!(
            !t.contains("t_bg_runs_total"),
            "stale result served after failure: {t}"
        );
        assert!(
            t.contains("t_collector_success{collector=\"bg\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("t_collector_last_success_timestamp_seconds{collector=\"bg\"} 1"),
            "last success kept: {t}"
        );
    }

    #[test]
    fn background_thread_runs_reports_overdue_and_stops_promptly() {
        let mode = Mode::Background {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_millis(100),
        };
        let (bg, _) = probe("bg", mode, Duration::from_millis(400));
        let rt = runtime(vec![bg], Duration::from_secs(5));
        rt.start_background().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        {
            let st = rt.slots[0].state();
            assert!(st.running_since.is_some());
            assert!(rt.slots[0].healthy(&st), "within its timeout");
        }
        std::thread::sleep(Duration::from_millis(150));
        {
            let st = rt.slots[0].state();
            assert!(Slot::overdue(&st, mode).is_some());
            assert!(!rt.slots[0].healthy(&st), "past its timeout");
        }
        assert!(!rt.ready());
        let deadline = Instant::now() + Duration::from_secs(3);
        while rt.slots[0].state().runs == 0 {
            assert!(Instant::now() < deadline, "first run never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
        {
            let st = rt.slots[0].state();
            assert_eq!(st.runs, 1);
            assert_eq!(st.last_ok, Some(true));
            assert!(
                rt.slots[0].healthy(&st),
                "healthy again once the run returned"
            );
        }
        assert!(rt.ready());
        // The thread sleeps for an hour; shutdown must wake it.
        let start = Instant::now();
        rt.stop_background(Duration::from_secs(5));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert!(lock(&rt.threads).is_empty());
    }

    /// A background collector whose run blocks until [`Collector::stop`] (or 10 s), as one
    /// waiting for a hung command does; `detail` says what it waits for.
    struct Blocker {
        stopped: Arc<(Mutex<bool>, Condvar)>,
        returned: Arc<AtomicBool>,
    }

    impl Collector for Blocker {
        fn mode(&self) -> Mode {
            Mode::Background {
                interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(30),
            }
        }
        fn collect(&self, _: &Context, _: &mut Sink) -> anyhow::Result<()> {
            let (m, cv) = &*self.stopped;
            let guard = lock(m);
            let (guard, _) = cv
                .wait_timeout_while(guard, Duration::from_secs(10), |s| !*s)
                .unwrap();
            let stopped = *guard;
            drop(guard);
            self.returned.store(true, Ordering::SeqCst);
            anyhow::ensure!(!stopped, "interrupted by the stop");
            Ok(())
        }
        fn detail(&self) -> Option<String> {
            Some("waiting for a command that never answers".into())
        }
        fn stop(&self) {
            let (m, cv) = &*self.stopped;
            *lock(m) = true;
            cv.notify_all();
        }
    }

    fn blocker() -> (Box<dyn Collector>, Arc<AtomicBool>) {
        let returned = Arc::new(AtomicBool::new(false));
        let b = Blocker {
            stopped: Arc::new((Mutex::new(false), Condvar::new())),
            returned: Arc::clone(&returned),
        };
        (Box::new(b), returned)
    }

    #[test]
    fn stopping_interrupts_a_background_run_which_is_not_recorded() {
        let (b, returned) = blocker();
        let rt = runtime(vec![("blocked", b)], Duration::from_secs(5));
        rt.start_background().unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while rt.slots[0].state().running_since.is_none() {
            assert!(Instant::now() < deadline, "the run never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let start = Instant::now();
        rt.stop_background(Duration::from_secs(5));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert!(
            returned.load(Ordering::SeqCst),
            "the run was not interrupted"
        );
        assert!(lock(&rt.threads).is_empty(), "its thread was joined");
        let st = rt.slots[0].state();
        assert_eq!(st.runs, 0, "an interrupted run is nobody's result");
        assert!(st.errors.is_empty());
    }

    #[test]
    fn not_ready_reason_names_what_each_pending_collector_waits_for() {
        let (b, _) = blocker();
        let (plain, _) = probe("plain", BG, Duration::from_millis(300));
        let (scraped, _) = probe("scraped", Mode::OnScrape, Duration::ZERO);
        let rt = runtime(vec![("blocked", b), plain, scraped], Duration::from_secs(5));
        assert!(!rt.ready());
        assert_eq!(
            rt.not_ready_reason().as_deref(),
            Some(
                "blocked: waiting for a command that never answers; \
                 plain: has not finished a first run"
            )
        );
        rt.start_background().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while rt.slots[1].state().runs == 0 {
            assert!(Instant::now() < deadline, "plain never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!rt.ready());
        assert_eq!(
            rt.not_ready_reason().as_deref(),
            Some("blocked: waiting for a command that never answers")
        );
        rt.stop_background(Duration::from_secs(5));
        // Only a run that returned counts: the interrupted one did not make it ready.
        assert!(!rt.ready());

        let (plain, _) = probe("plain", BG, Duration::ZERO);
        let rt = runtime(vec![plain], Duration::from_secs(5));
        let rt2 = &rt;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { rt2.run_background_once().await });
        assert!(rt.ready());
        assert_eq!(rt.not_ready_reason(), None);
    }

    #[test]
    fn encode_merges_and_drops_conflicting_types() {
        let mut a = Sink::new("t");
        a.gauge("x", "X.").sample(&[("k", "1")], 1.0);
        a.counter("y_total", "Y.").sample(&[], 2.0);
        let mut b = Sink::new("t");
        b.gauge("x", "X again.").sample(&[("k", "2")], 3.0);
        b.gauge("y_total", "Wrong type.").sample(&[("k", "3")], 4.0);
        let mut fams = a.into_parts().0;
        fams.extend(b.into_parts().0);
        let t = String::from_utf8(encode(fams)).unwrap();
        assert_eq!(
            t,
            "# HELP t_x X.\n# TYPE t_x gauge\nt_x{k=\"1\"} 1\nt_x{k=\"2\"} 3\n\
             # HELP t_y_total Y.\n# TYPE t_y_total counter\nt_y_total 2\n"
        );
    }

    #[test]
    fn panicking_collector_is_a_failure() {
        struct Boom;
        impl Collector for Boom {
            fn collect(&self, _: &Context, _: &mut Sink) -> anyhow::Result<()> {
                panic!("boom")
            }
        }
        let slot = Slot::new("boom", Box::new(Boom));
        let ctx = Context {
            procfs: "/p".into(),
            sysfs: "/s".into(),
            timeout: Duration::from_secs(1),
        };
        let out = slot.run_once("t", &ctx);
        assert_eq!(out.error.as_deref(), Some("collector panicked"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_mode_is_said_on_build_info_and_in_health() {
        let rt = Runtime::new(
            Identity { demo: true, ..ID },
            Vec::new(),
            "/p".into(),
            "/s".into(),
            Duration::from_secs(1),
        );
        let t = String::from_utf8(rt.scrape().await.body).unwrap();
        assert!(
            t.contains("t_exporter_build_info{version=\"9.9.9\",demo=\"true\"} 1\n"),
            "{t}"
        );
        assert!(crate::health::report(&rt).demo);
    }
}
