//! `rapl`: CPU package, core, uncore, DRAM and platform (psys) energy from RAPL (Running
//! Average Power Limit), read from the kernel's powercap class
//! `<sysfs>/class/powercap/intel-rapl:*` (Intel, and AMD Zen through the same driver). Zones
//! `intel-rapl:N` are packages (or psys), `intel-rapl:N:M` their subzones; each has a `name`,
//! the counter `energy_uj`, its range `max_energy_range_uj`, and per constraint N
//! `constraint_N_name`, `constraint_N_power_limit_uw` and `constraint_N_time_window_us`. The
//! `intel-rapl-mmio:*` zones repeat package counters through another interface and are not
//! read, so that no series is written twice.
//!
//! Runs in the background, sampling every tenth of `--rapl.window` (at least 100 ms, at most
//! 30 s), and writes:
//!
//! - `power_rapl_energy_joules_total{package,domain}`: energy since boot, kept monotonic across
//!   the hardware counter's wraps (the raw `energy_uj` wraps at `max_energy_range_uj`, every
//!   few minutes to hours); starts at the raw counter when the exporter starts;
//! - `power_rapl_power_watts{package,domain}`: average power over the last `--rapl.window`,
//!   from the second sample on;
//! - `power_rapl_energy_wraps_total{package,domain}`: wraps of the raw counter handled since
//!   the exporter started;
//! - `power_rapl_power_limit_watts{package,domain,constraint}` and
//!   `power_rapl_power_limit_window_seconds{package,domain,constraint}`: the configured limits.
//!
//! `domain` is `package`, `core`, `uncore`, `dram` or `psys` (whatever the zone's `name`
//! says); `package` is the N of `package-N` (`0-die-1` on multi-die parts), `platform` for
//! psys. No powercap class (a VM, a CPU without RAPL) is no error: nothing is written. An
//! `energy_uj` this user may not read (root-only since the 2020 PLATYPUS fix) fails the run
//! with [`PERMISSION_FIX`], after everything else is written. The zone layout and the limits
//! are read again once per window; the counters at every sample.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use odin_common::{Collector, Context, Field, Mode, Sink};

use odin_common::sysfs::{self, Missing};

/// Directory prefix of the zones read (under `class/powercap`).
const ZONE_PREFIX: &str = "intel-rapl:";
/// Bounds of the sampling interval (a tenth of the window).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Wraps come every few minutes at the earliest; a sample at least every 30 s sees each one.
const MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Budget of one sample (a few dozen small sysfs reads).
const RUN_TIMEOUT: Duration = Duration::from_secs(5);
/// Constraints probed per zone (RAPL has up to three: long_term, short_term, peak_power).
const MAX_CONSTRAINTS: u32 = 8;

/// What to do when `energy_uj` is not readable; shown in `/health` and logged.
pub const PERMISSION_FIX: &str = "energy_uj is readable by root only since the 2020 PLATYPUS \
     fix; fix: install deploy/udev/70-odin-power-rapl.rules (or deploy/tmpfiles/odin-power-rapl.conf) \
     and run the exporter with the supplementary group odin-power";

/// The `rapl` collector; see the module documentation.
pub struct Rapl {
    window: Duration,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Zones found by the last scan.
    zones: Vec<Zone>,
    scanned_at: Option<Instant>,
    /// Counter state per zone directory.
    meters: BTreeMap<String, Meter>,
    /// The permission problem of the last sample, for `/health`.
    denied: Option<String>,
}

/// A zone as the last scan found it.
#[derive(Debug, Clone)]
struct Zone {
    /// `intel-rapl:0:1`.
    dir: String,
    path: PathBuf,
    package: String,
    domain: String,
    /// `max_energy_range_uj`, when readable and non-zero.
    range_uj: Option<u64>,
    limits: Vec<Limit>,
}

#[derive(Debug, Clone)]
struct Limit {
    constraint: String,
    watts: Option<f64>,
    window_seconds: Option<f64>,
}

/// One zone's counter across samples.
#[derive(Debug)]
struct Meter {
    last_raw: u64,
    /// Energy in µJ, monotonic: the first raw reading plus every increment since.
    total_uj: u64,
    wraps: u64,
    /// `(time, total_uj)`, oldest first, spanning a little more than the window.
    history: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn new(raw: u64, now: Instant) -> Self {
        Meter {
            last_raw: raw,
            total_uj: raw,
            wraps: 0,
            history: VecDeque::from([(now, raw)]),
        }
    }

    /// Take a new raw reading. A reading below the last one is a wrap at `range_uj` (the
    /// counter runs from 0 to the range); without a usable range it is counted as a restart
    /// from 0 and reported in the `Err`, which is an item error, not a lost increment.
    fn advance(
        &mut self,
        raw: u64,
        range_uj: Option<u64>,
        now: Instant,
        window: Duration,
    ) -> Result<(), String> {
        let mut note = Ok(());
        let delta = if raw >= self.last_raw {
            raw - self.last_raw
        } else {
            match range_uj {
                Some(max) if self.last_raw <= max => {
                    self.wraps += 1;
                    (max - self.last_raw).saturating_add(raw).saturating_add(1)
                }
                _ => {
                    note = Err(format!(
                        "energy_uj went back from {} to {raw} and max_energy_range_uj is \
                         unusable; counted as a restart from 0",
                        self.last_raw
                    ));
                    raw
                }
            }
        };
        self.last_raw = raw;
        self.total_uj = self.total_uj.saturating_add(delta);
        self.history.push_back((now, self.total_uj));
        // Keep the newest sample at least a window old as the front.
        while self.history.len() > 2 && now.saturating_duration_since(self.history[1].0) >= window {
            self.history.pop_front();
        }
        note
    }

    /// Average power over the history, once there are two samples.
    fn watts(&self) -> Option<f64> {
        let (&(t0, e0), &(t1, e1)) = (self.history.front()?, self.history.back()?);
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| (e1 - e0) as f64 / 1e6 / secs)
    }
}

/// What one sample writes per zone.
struct Reading {
    joules: f64,
    watts: Option<f64>,
    wraps: u64,
}

const ZONE_FIELDS: &[Field<Reading>] = &[
    Field::counter(
        "rapl_energy_joules_total",
        "Energy used by the RAPL domain, monotonic across wraps of the hardware counter.",
        |r| Some(r.joules),
    ),
    Field::gauge(
        "rapl_power_watts",
        "Average power of the RAPL domain over the last --rapl.window.",
        |r| r.watts,
    ),
    Field::counter(
        "rapl_energy_wraps_total",
        "Wraps of the domain's raw energy counter handled since the exporter started.",
        |r| Some(r.wraps as f64),
    ),
];

const LIMIT_FIELDS: &[Field<Limit>] = &[
    Field::gauge(
        "rapl_power_limit_watts",
        "Power limit configured for the RAPL domain's constraint.",
        |l| l.watts,
    ),
    Field::gauge(
        "rapl_power_limit_window_seconds",
        "Time window of the RAPL domain's power limit.",
        |l| l.window_seconds,
    ),
];

impl Rapl {
    /// A collector averaging power over `window`, sampling every tenth of it.
    pub fn new(window: Duration) -> Self {
        Rapl {
            window,
            interval: (window / 10).clamp(MIN_INTERVAL, MAX_INTERVAL),
            state: Mutex::new(State::default()),
        }
    }

    /// How often the background thread samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One sample taken at `now` (tests pass their own clock).
    pub fn collect_at(&self, ctx: &Context, out: &mut Sink, now: Instant) -> anyhow::Result<()> {
        let mut st = self.state();
        let due = st
            .scanned_at
            .map_or(true, |t| now.saturating_duration_since(t) >= self.window);
        if due {
            let zones = scan(ctx, out)?;
            st.meters
                .retain(|dir, _| zones.iter().any(|z| &z.dir == dir));
            st.zones = zones;
            st.scanned_at = Some(now);
        }
        let State { zones, meters, .. } = &mut *st;
        let mut rows: Vec<(&Zone, Reading)> = Vec::with_capacity(zones.len());
        let mut denied: Vec<&Path> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        for zone in zones.iter() {
            let file = zone.path.join("energy_uj");
            let raw = match sysfs::read(&file) {
                Ok(text) => match text.parse::<u64>() {
                    Ok(v) => v,
                    Err(_) if text.is_empty() => {
                        out.item_error(format!("{}: empty", file.display()));
                        continue;
                    }
                    Err(_) => {
                        out.item_error(format!("{}: not an unsigned integer", file.display()));
                        continue;
                    }
                },
                // A zone that vanished since the last scan (the next scan drops it): counted.
                Err(Missing::Absent) if !zone.path.exists() => {
                    out.item_error(format!("{}: vanished", zone.path.display()));
                    continue;
                }
                // A zone without a counter.
                Err(Missing::Absent) => continue,
                Err(Missing::Denied) => {
                    denied.push(&zone.path);
                    continue;
                }
                Err(Missing::Failed(m)) | Err(Missing::Malformed(m)) => {
                    out.item_error(m.clone());
                    failed.push(m);
                    continue;
                }
            };
            let meter = match meters.get_mut(&zone.dir) {
                Some(m) => {
                    if let Err(note) = m.advance(raw, zone.range_uj, now, self.window) {
                        out.item_error(format!("{}: {note}", file.display()));
                    }
                    m
                }
                None => meters
                    .entry(zone.dir.clone())
                    .or_insert_with(|| Meter::new(raw, now)),
            };
            let reading = Reading {
                joules: meter.total_uj as f64 / 1e6,
                watts: meter.watts(),
                wraps: meter.wraps,
            };
            rows.push((zone, reading));
        }

        let labels: Vec<[(&str, &str); 2]> = rows
            .iter()
            .map(|(z, _)| {
                [
                    ("package", z.package.as_str()),
                    ("domain", z.domain.as_str()),
                ]
            })
            .collect();
        let zone_rows: Vec<(&[(&str, &str)], &Reading)> = labels
            .iter()
            .zip(&rows)
            .map(|(l, (_, r))| (&l[..], r))
            .collect();
        out.fields(ZONE_FIELDS, &zone_rows);

        let limit_labels: Vec<([(&str, &str); 3], &Limit)> = zones
            .iter()
            .flat_map(|z| {
                z.limits.iter().map(move |l| {
                    (
                        [
                            ("package", z.package.as_str()),
                            ("domain", z.domain.as_str()),
                            ("constraint", l.constraint.as_str()),
                        ],
                        l,
                    )
                })
            })
            .collect();
        let limit_rows: Vec<(&[(&str, &str)], &Limit)> =
            limit_labels.iter().map(|(l, lim)| (&l[..], *lim)).collect();
        out.fields(LIMIT_FIELDS, &limit_rows);

        let read_any = !rows.is_empty();
        if let Some(first) = denied.first() {
            let message = format!(
                "permission denied reading {} ({} of {} RAPL energy counters): {PERMISSION_FIX}",
                first.join("energy_uj").display(),
                denied.len(),
                zones.len()
            );
            st.denied = Some(message.clone());
            anyhow::bail!(message);
        }
        st.denied = None;
        if !read_any && !failed.is_empty() {
            anyhow::bail!("no RAPL energy counter could be read: {}", failed[0]);
        }
        Ok(())
    }
}

impl Collector for Rapl {
    fn mode(&self) -> Mode {
        Mode::Background {
            interval: self.interval,
            timeout: RUN_TIMEOUT,
        }
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        self.collect_at(ctx, out, Instant::now())
    }

    fn detail(&self) -> Option<String> {
        self.state().denied.clone()
    }
}

/// A name usable as a label value: short, lower-case letters, digits, `_` and `-`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A file's content quoted for an error message, cut short.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(32).collect();
    format!("{:?}", cut)
}

/// An attribute that may be absent; anything else that stops it is an item error.
fn optional_u64(path: &Path, out: &mut Sink) -> Option<u64> {
    match sysfs::read_u64(path) {
        Ok(v) => Some(v),
        Err(Missing::Absent) => None,
        Err(Missing::Denied) => {
            out.item_error(format!("{}: permission denied", path.display()));
            None
        }
        Err(Missing::Failed(m)) | Err(Missing::Malformed(m)) => {
            out.item_error(m);
            None
        }
    }
}

/// The RAPL zones under `class/powercap`, packages before their subzones, with their limits.
/// An absent class is an empty list; an unreadable one an error.
fn scan(ctx: &Context, out: &mut Sink) -> anyhow::Result<Vec<Zone>> {
    let class = ctx.sys_path("class/powercap");
    let entries = sysfs::entries(&class)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", class.display()))?;
    let mut found: Vec<(Vec<u32>, String, PathBuf)> = Vec::new();
    for (dir, path) in entries {
        let Some(rest) = dir.strip_prefix(ZONE_PREFIX) else {
            continue;
        };
        let index: Option<Vec<u32>> = rest.split(':').map(|p| p.parse().ok()).collect();
        match index {
            Some(index) => found.push((index, dir, path)),
            None => out.item_error(format!("{}: not a RAPL zone name", path.display())),
        }
    }
    // Numeric order: intel-rapl:2 before intel-rapl:10, each package before its subzones.
    found.sort();
    let mut packages: BTreeMap<u32, String> = BTreeMap::new();
    let mut zones: Vec<Zone> = Vec::new();
    for (index, dir, path) in found {
        let name_file = path.join("name");
        let name = match sysfs::read(&name_file) {
            Ok(n) if is_token(&n) => n,
            Ok(n) if n.is_empty() => {
                out.item_error(format!("{}: empty; zone skipped", name_file.display()));
                continue;
            }
            Ok(n) => {
                out.item_error(format!(
                    "{}: unexpected name {}; zone skipped",
                    name_file.display(),
                    quoted(&n)
                ));
                continue;
            }
            Err(Missing::Absent) => {
                out.item_error(format!("{}: missing; zone skipped", name_file.display()));
                continue;
            }
            Err(Missing::Denied) => {
                out.item_error(format!("{}: permission denied", name_file.display()));
                continue;
            }
            Err(Missing::Failed(m)) | Err(Missing::Malformed(m)) => {
                out.item_error(m);
                continue;
            }
        };
        let top = index[0];
        let (package, domain) = if index.len() == 1 {
            let (package, domain) = if let Some(n) = name.strip_prefix("package-") {
                (n.to_owned(), "package".to_owned())
            } else if name == "psys" {
                ("platform".to_owned(), name)
            } else {
                (top.to_string(), name)
            };
            packages.insert(top, package.clone());
            (package, domain)
        } else {
            match packages.get(&top) {
                Some(p) => (p.clone(), name),
                None => {
                    out.item_error(format!(
                        "{}: the zone of its package could not be read; zone skipped",
                        path.display()
                    ));
                    continue;
                }
            }
        };
        if zones
            .iter()
            .any(|z| z.package == package && z.domain == domain)
        {
            out.item_error(format!(
                "{}: a second {domain} zone of package {package}; zone skipped",
                path.display()
            ));
            continue;
        }
        let range_uj = optional_u64(&path.join("max_energy_range_uj"), out).filter(|&r| r > 0);
        let limits = limits(&path, out);
        zones.push(Zone {
            dir,
            path,
            package,
            domain,
            range_uj,
            limits,
        });
    }
    Ok(zones)
}

/// The zone's constraints, `constraint_0_*` upwards until one has neither a name nor a limit.
fn limits(zone: &Path, out: &mut Sink) -> Vec<Limit> {
    let mut limits = Vec::new();
    for n in 0..MAX_CONSTRAINTS {
        let file = |what: &str| zone.join(format!("constraint_{n}_{what}"));
        let name = sysfs::read(&file("name"));
        let watts = optional_u64(&file("power_limit_uw"), out);
        if matches!(name, Err(Missing::Absent)) && watts.is_none() {
            break;
        }
        let constraint = match name {
            Ok(text) if is_token(&text) => text,
            Ok(text) => {
                out.item_error(format!(
                    "{}: unexpected name {}; labelled constraint=\"{n}\"",
                    file("name").display(),
                    quoted(&text)
                ));
                n.to_string()
            }
            Err(_) => n.to_string(),
        };
        let window = optional_u64(&file("time_window_us"), out);
        limits.push(Limit {
            constraint,
            watts: watts.map(|uw| uw as f64 / 1e6),
            window_seconds: window.map(|us| us as f64 / 1e6),
        });
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;
    use odin_testkit::{copy_tree, fixture_context, sink_label_values, sink_value};

    const R: u64 = 262_143_328_850;

    fn sample(rapl: &Rapl, root: &Path, now: Instant) -> (Sink, anyhow::Result<()>) {
        let mut sink = Sink::new("power");
        let res = rapl.collect_at(&fixture_context(root), &mut sink, now);
        (sink, res)
    }

    fn energy(s: &Sink, package: &str, domain: &str) -> Option<f64> {
        sink_value(
            s,
            "power_rapl_energy_joules_total",
            &[("package", package), ("domain", domain)],
        )
    }

    fn watts(s: &Sink, package: &str, domain: &str) -> Option<f64> {
        sink_value(
            s,
            "power_rapl_power_watts",
            &[("package", package), ("domain", domain)],
        )
    }

    fn set_energy(root: &Path, zone: &str, uj: u64) {
        let file = root.join("sys/class/powercap").join(zone).join("energy_uj");
        std::fs::write(&file, format!("{uj}\n")).unwrap();
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn interval_is_a_tenth_of_the_window_within_bounds() {
        let mode = |w: u64| Rapl::new(Duration::from_millis(w)).mode();
        let bg = |i: u64| Mode::Background {
            interval: Duration::from_millis(i),
            timeout: RUN_TIMEOUT,
        };
        assert_eq!(mode(10_000), bg(1_000));
        assert_eq!(mode(500), bg(100));
        assert_eq!(mode(3_600_000), bg(30_000));
    }

    #[test]
    fn desktop_with_two_packages() {
        let rapl = Rapl::new(Duration::from_secs(10));
        let (s, res) = sample(&rapl, &fixture("rapl-desktop"), Instant::now());
        res.unwrap();
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        assert_eq!(energy(&s, "0", "package"), Some(123_456.789_012));
        assert_eq!(energy(&s, "1", "package"), Some(123_457.789_012));
        assert_eq!(energy(&s, "0", "core"), Some(45_678.901_234));
        assert_eq!(energy(&s, "1", "uncore"), Some(1_235.567_890));
        assert_eq!(energy(&s, "1", "dram"), Some(9_877.543_21));
        assert_eq!(
            sink_label_values(&s, "power_rapl_energy_joules_total", "domain"),
            ["package", "core", "uncore", "dram", "package", "core", "uncore", "dram"]
        );
        // One sample: no power yet, no wraps.
        assert!(watts(&s, "0", "package").is_none());
        assert_eq!(
            sink_value(
                &s,
                "power_rapl_energy_wraps_total",
                &[("package", "0"), ("domain", "package")]
            ),
            Some(0.0)
        );
        let limit = |name: &str, domain: &str, constraint: &str| {
            sink_value(
                &s,
                name,
                &[
                    ("package", "1"),
                    ("domain", domain),
                    ("constraint", constraint),
                ],
            )
        };
        assert_eq!(
            limit("power_rapl_power_limit_watts", "package", "long_term"),
            Some(125.0)
        );
        assert_eq!(
            limit("power_rapl_power_limit_watts", "package", "short_term"),
            Some(225.0)
        );
        assert_eq!(
            limit("power_rapl_power_limit_watts", "package", "peak_power"),
            Some(280.0)
        );
        assert_eq!(
            limit(
                "power_rapl_power_limit_window_seconds",
                "package",
                "long_term"
            ),
            Some(27.983_872)
        );
        assert_eq!(
            limit(
                "power_rapl_power_limit_window_seconds",
                "package",
                "short_term"
            ),
            Some(0.002_44)
        );
        assert_eq!(
            limit(
                "power_rapl_power_limit_window_seconds",
                "package",
                "peak_power"
            ),
            None,
            "peak_power has no time window"
        );
        assert_eq!(
            limit("power_rapl_power_limit_watts", "dram", "long_term"),
            Some(0.0)
        );
        // The MMIO duplicate of package 0 is not read.
        assert_eq!(
            sink_label_values(&s, "power_rapl_energy_joules_total", "package").len(),
            8
        );
    }

    #[test]
    fn amd_host_has_package_and_core_and_no_limits() {
        let rapl = Rapl::new(Duration::from_secs(10));
        let (s, res) = sample(&rapl, &fixture("rapl-amd"), Instant::now());
        res.unwrap();
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        assert_eq!(energy(&s, "0", "package"), Some(8_123.456_789));
        assert_eq!(energy(&s, "0", "core"), Some(2_123.456_789));
        assert_eq!(
            sink_label_values(&s, "power_rapl_energy_joules_total", "domain"),
            ["package", "core"]
        );
        assert!(sink_label_values(&s, "power_rapl_power_limit_watts", "domain").is_empty());
    }

    #[test]
    fn psys_is_the_platform() {
        let rapl = Rapl::new(Duration::from_secs(10));
        let (s, res) = sample(&rapl, &fixture("rapl-psys"), Instant::now());
        res.unwrap();
        assert_eq!(energy(&s, "platform", "psys"), Some(900.0));
        assert_eq!(energy(&s, "0", "package"), Some(500.0));
        assert_eq!(energy(&s, "0", "core"), Some(200.0));
        assert_eq!(
            sink_value(
                &s,
                "power_rapl_power_limit_window_seconds",
                &[
                    ("package", "platform"),
                    ("domain", "psys"),
                    ("constraint", "long_term")
                ]
            ),
            Some(27.983_872)
        );
    }

    #[test]
    fn no_powercap_class_is_nothing_and_no_error() {
        let rapl = Rapl::new(Duration::from_secs(10));
        let (s, res) = sample(&rapl, &fixture("rapl-vm"), Instant::now());
        res.unwrap();
        assert!(s.item_errors().is_empty());
        let (families, _) = s.into_parts();
        assert!(families.is_empty(), "{families:?}");
        assert!(rapl.detail().is_none());
    }

    #[test]
    fn malformed_and_empty_files_are_item_errors_and_the_rest_is_kept() {
        let rapl = Rapl::new(Duration::from_secs(10));
        let (s, res) = sample(&rapl, &fixture("rapl-malformed"), Instant::now());
        res.unwrap();
        let errors = s.item_errors().join("\n");
        for expected in [
            "intel-rapl:0/energy_uj: not an unsigned integer",
            "intel-rapl:0/constraint_0_power_limit_uw: not an unsigned integer",
            "intel-rapl:0:0/constraint_0_name: unexpected name \"\"",
            "intel-rapl:0:1/max_energy_range_uj: not an unsigned integer",
            "intel-rapl:0:2/energy_uj: empty",
            "intel-rapl:1/name: empty; zone skipped",
            "intel-rapl:2/name: unexpected name \"Bad Name!\"; zone skipped",
        ] {
            assert!(errors.contains(expected), "{expected} in\n{errors}");
        }
        assert_eq!(s.item_errors().len(), 7, "{errors}");
        // What could be read is there.
        assert_eq!(energy(&s, "0", "core"), Some(1.0));
        assert_eq!(energy(&s, "0", "uncore"), Some(2.0));
        assert_eq!(energy(&s, "0", "package"), None);
        assert_eq!(energy(&s, "0", "dram"), None);
        let limit = |domain: &str, constraint: &str| {
            sink_value(
                &s,
                "power_rapl_power_limit_watts",
                &[
                    ("package", "0"),
                    ("domain", domain),
                    ("constraint", constraint),
                ],
            )
        };
        assert_eq!(limit("package", "long_term"), None);
        assert_eq!(limit("package", "short_term"), Some(45.0));
        assert_eq!(
            limit("core", "0"),
            Some(0.0),
            "unnamed constraint by number"
        );
        assert_eq!(
            sink_value(
                &s,
                "power_rapl_power_limit_window_seconds",
                &[
                    ("package", "0"),
                    ("domain", "package"),
                    ("constraint", "long_term")
                ]
            ),
            Some(27.983_872),
            "the window of a malformed limit is kept"
        );
    }

    #[test]
    fn counter_wrap_keeps_the_total_growing_and_power_right() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_tree(&fixture("rapl-wrap"), root);
        let rapl = Rapl::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let (s, res) = sample(&rapl, root, t0);
        res.unwrap();
        let before = energy(&s, "0", "package").unwrap();
        assert!(close(before, (R - 1_000_000) as f64 / 1e6));
        assert!(watts(&s, "0", "package").is_none(), "one sample: no power");

        // Two seconds later the counter has wrapped: 1 J up to the range, 1 µJ to reach 0,
        // then 3 J. The core counter moves 0.5 J without wrapping.
        set_energy(root, "intel-rapl:0", 3_000_000);
        set_energy(root, "intel-rapl:0:0", 1_000_000);
        let (s, res) = sample(&rapl, root, t0 + Duration::from_secs(2));
        res.unwrap();
        assert!(s.item_errors().is_empty(), "{:?}", s.item_errors());
        let after = energy(&s, "0", "package").unwrap();
        assert_eq!(
            ((after - before) * 1e6).round() as u64,
            4_000_001,
            "{before} -> {after}"
        );
        assert!(close(watts(&s, "0", "package").unwrap(), 2.000_000_5));
        assert!(close(watts(&s, "0", "core").unwrap(), 0.25));
        assert_eq!(
            sink_value(
                &s,
                "power_rapl_energy_wraps_total",
                &[("package", "0"), ("domain", "package")]
            ),
            Some(1.0)
        );

        // And on from there, without another wrap: the total keeps its offset.
        set_energy(root, "intel-rapl:0", 5_000_000);
        let (s, res) = sample(&rapl, root, t0 + Duration::from_secs(4));
        res.unwrap();
        let later = energy(&s, "0", "package").unwrap();
        assert_eq!(((later - after) * 1e6).round() as u64, 2_000_000);
        // Averaged over everything so far (less than the window): 6.000001 J in 4 s.
        assert!(close(watts(&s, "0", "package").unwrap(), 1.500_000_25));
    }

    #[test]
    fn power_is_averaged_over_the_window_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_tree(&fixture("rapl-amd"), root);
        let rapl = Rapl::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut uj = 1_000_000_000u64;
        // 100 W for 20 s, then 10 W for 10 s, one sample a second.
        for s in 0..=30u64 {
            set_energy(root, "intel-rapl:0", uj);
            let (sink, res) = sample(&rapl, root, t0 + Duration::from_secs(s));
            res.unwrap();
            if s == 20 {
                assert!(close(watts(&sink, "0", "package").unwrap(), 100.0));
            }
            if s == 30 {
                assert!(close(watts(&sink, "0", "package").unwrap(), 10.0));
            }
            uj += if s < 20 { 100_000_000 } else { 10_000_000 };
        }
    }

    #[test]
    fn a_drop_without_a_range_is_counted_from_zero_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_tree(&fixture("rapl-wrap"), root);
        std::fs::remove_file(root.join("sys/class/powercap/intel-rapl:0:0/max_energy_range_uj"))
            .unwrap();
        let rapl = Rapl::new(Duration::from_secs(10));
        let t0 = Instant::now();
        sample(&rapl, root, t0).1.unwrap();
        set_energy(root, "intel-rapl:0:0", 200_000);
        let (s, res) = sample(&rapl, root, t0 + Duration::from_secs(1));
        res.unwrap();
        assert_eq!(energy(&s, "0", "core"), Some(0.7));
        assert_eq!(s.item_errors().len(), 1, "{:?}", s.item_errors());
        assert!(s.item_errors()[0].contains("counted as a restart from 0"));
    }

    #[test]
    fn zones_are_rescanned_once_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_tree(&fixture("rapl-amd"), root);
        let rapl = Rapl::new(Duration::from_secs(10));
        let t0 = Instant::now();
        sample(&rapl, root, t0).1.unwrap();
        copy_tree(
            &fixture("rapl-psys").join("sys/class/powercap/intel-rapl:1"),
            &root.join("sys/class/powercap/intel-rapl:1"),
        );
        let (s, _) = sample(&rapl, root, t0 + Duration::from_secs(1));
        assert_eq!(energy(&s, "platform", "psys"), None, "not rescanned yet");
        let (s, _) = sample(&rapl, root, t0 + Duration::from_secs(10));
        assert_eq!(energy(&s, "platform", "psys"), Some(900.0));
        // A zone that goes away is dropped at the next scan, its counter state with it.
        std::fs::remove_dir_all(root.join("sys/class/powercap/intel-rapl:0:0")).unwrap();
        let (s, res) = sample(&rapl, root, t0 + Duration::from_secs(20));
        res.unwrap();
        assert_eq!(energy(&s, "0", "core"), None);
        assert_eq!(rapl.state().meters.len(), 2);
    }
}
