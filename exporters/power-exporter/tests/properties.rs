//! Property tests of the sysfs attribute readers (odin-common's `sysfs`, which every
//! power-exporter collector reads through) and of the collectors that turn attributes into
//! values (battery, hwmon, thermal, RAPL), on copies of the fixture trees with one attribute at
//! a time replaced by a variant from `odin_testkit::mutate`: no panic, bounded time and memory,
//! finite values, and an attribute that does not parse an item error or an absent value,
//! never a failed run. The coverage-guided counterpart is `fuzz/` (target `sysfs_attr`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odin_common::sysfs::{self, Missing};
use odin_common::{Collector, Sink};
use odin_testkit::mutate::{assert_finite, bounded, variants, CountingAlloc, Limits};
use power_exporter::collectors::{battery, hwmon, rapl, thermal};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Healthy fixture hosts: read whole, without an item error, before any mutation.
const TREES: &[&str] = &[
    "host-laptop",
    "host-desktop",
    "host-amd",
    "battery-laptop",
    "battery-charge",
    "battery-legacy",
    "rapl-desktop",
    "rapl-amd",
    "rapl-psys",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every collector once on `root` (RAPL twice, two seconds apart): item errors in all, and
/// whether every run succeeded.
fn collect_all(root: &Path) -> (Vec<String>, bool) {
    let ctx = odin_testkit::fixture_context(root);
    let mut errors = Vec::new();
    let mut ok = true;
    let collectors: [(&str, Box<dyn Collector>); 3] = [
        ("battery", Box::new(battery::Battery::new(None))),
        ("hwmon", Box::new(hwmon::Hwmon::new())),
        ("thermal", Box::new(thermal::Thermal::new())),
    ];
    for (name, c) in collectors {
        let mut sink = Sink::new("power");
        ok &= c.collect(&ctx, &mut sink).is_ok();
        assert_finite(&sink, name);
        errors.extend(sink.item_errors().iter().cloned());
    }
    let r = rapl::Rapl::new(Duration::from_secs(10));
    let now = Instant::now();
    for later in [0, 2] {
        let mut sink = Sink::new("power");
        ok &= r
            .collect_at(&ctx, &mut sink, now + Duration::from_secs(later))
            .is_ok();
        assert_finite(&sink, "rapl");
        errors.extend(sink.item_errors().iter().cloned());
    }
    (errors, ok)
}

#[test]
fn the_healthy_trees_read_without_item_errors() {
    for name in TREES {
        let (errors, ok) = collect_all(&fixture(name));
        assert!(ok, "{name}");
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn every_attribute_survives_mutations() {
    let scratch = tempfile::tempdir().unwrap();
    for (t, name) in TREES.iter().enumerate() {
        let root = scratch.path().join(name);
        odin_testkit::copy_tree(&fixture(name), &root);
        let files = odin_testkit::files_under(&root.join("sys"));
        for (i, path) in files.iter().enumerate() {
            let original = fs::read(path).unwrap();
            let label = path.strip_prefix(&root).unwrap().display().to_string();
            for v in variants(&original, ((t as u64) << 16) + i as u64, 8) {
                bounded(&label, &v, Limits::default(), |b| {
                    fs::write(path, b).unwrap();
                    let text = sysfs::read(path).unwrap();
                    assert_eq!(text.trim(), text);
                    for r in [sysfs::read_i64(path).err(), sysfs::read_u64(path).err()] {
                        assert!(
                            matches!(
                                r,
                                None | Some(Missing::Absent) | Some(Missing::Malformed(_))
                            ),
                            "{r:?}"
                        );
                    }
                    // A bad attribute is skipped and counted, never a failed run.
                    let (_, ok) = collect_all(&root);
                    assert!(ok, "{label}: a run failed");
                });
            }
            fs::write(path, &original).unwrap();
        }
    }
}

/// An energy counter or its range at the edge of u64 must not overflow the RAPL arithmetic.
#[test]
fn rapl_counters_at_the_edge_of_u64_stay_finite() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("rapl");
    odin_testkit::copy_tree(&fixture("rapl-desktop"), &root);
    let files = odin_testkit::files_under(&root.join("sys"));
    let counters: Vec<_> = files
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == "energy_uj" || n == "max_energy_range_uj"
        })
        .collect();
    assert!(!counters.is_empty());
    for value in ["18446744073709551615", "0", "18446744073709551614", "1"] {
        for p in &counters {
            fs::write(p, value).unwrap();
        }
        let (_, ok) = collect_all(&root);
        assert!(ok, "counters at {value}");
    }
}
