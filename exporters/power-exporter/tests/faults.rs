//! Files that misbehave while power-exporter reads them: an attribute whose read fails with
//! `EIO` (a symlink to `/proc/self/mem`, which answers `EIO` from offset 0), one that answers
//! `EINVAL` (a symlink to `/proc/self/clear_refs`, which has no read method), and entries that
//! vanish between the listing of their directory and the read (dangling symlinks). Each runs
//! the real binary with `--once` on a copy of a fixture tree, one collector at a time: the run
//! succeeds, an `EIO` or a vanished entry is one item error and costs only its own values,
//! `EINVAL` is absence (no series, no error). `EAGAIN` comes from no file a test can make (a
//! driver answers it); its classification, the same as `EIO`'s, is checked by odin-common's
//! sysfs unit tests. A RAPL counter that fails between two samples of the in-process
//! collector loses no energy.

use odin_testkit::faults::{answers, replace, EINVAL, EIO};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odin_common::Sink;
use odin_testkit::{
    collector_item_errors, collector_success, copy_tree, fixture_context, sample, sink_value,
    tree_args, value, Exe,
};
use power_exporter::collectors::rapl::Rapl;

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_power-exporter"),
    env_prefix: "POWER_EXPORTER_",
};

const COLLECTORS: [&str; 5] = ["rapl", "gpu", "battery", "thermal", "hwmon"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of fixture `name` the test may change.
fn scratch(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    dir
}

/// `--once` with only `collector` on the tree at `root`: the exposition (exit 0 required).
fn once(root: &Path, collector: &str) -> String {
    let mut args = tree_args(root);
    for other in COLLECTORS.iter().filter(|c| **c != collector) {
        args.push(format!("--no-collector.{other}"));
    }
    let out = EXPORTER.once(&args, &[]);
    let body = String::from_utf8(out.stdout).expect("UTF-8 exposition");
    assert!(
        out.status.success(),
        "{collector} failed: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(collector_success(&body, "power", collector), Some(1.0));
    body
}

fn item_errors(body: &str, collector: &str) -> f64 {
    collector_item_errors(body, "power", collector)
}

const CORETEMP: &str = "sys/devices/platform/coretemp.0/hwmon/hwmon1";

fn coretemp(body: &str, name: &str, sensor: &str, label: &str) -> Option<f64> {
    sample(
        body,
        &format!(
            "power_hwmon_{name}{{chip=\"platform_coretemp_0\",sensor=\"{sensor}\",label=\"{label}\"}}"
        ),
    )
}

#[test]
fn hwmon_eio_is_counted_einval_is_absent_and_the_rest_is_served() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let tree = scratch("host-laptop");
    let before = once(tree.path(), "hwmon");
    let chip = tree.path().join(CORETEMP);
    replace(&chip.join("temp1_input"), EIO);
    replace(&chip.join("temp1_max"), EINVAL);
    let after = once(tree.path(), "hwmon");
    assert_eq!(
        item_errors(&after, "hwmon"),
        item_errors(&before, "hwmon") + 1.0,
        "EIO counted once, EINVAL not at all"
    );
    let pkg = "Package id 0";
    assert_eq!(
        coretemp(&before, "temperature_celsius", "temp1", pkg),
        Some(61.0)
    );
    assert_eq!(coretemp(&after, "temperature_celsius", "temp1", pkg), None);
    assert_eq!(
        coretemp(&after, "temperature_max_celsius", "temp1", pkg),
        None
    );
    // The sensor's other values and the other sensors are still there.
    assert_eq!(
        coretemp(&after, "temperature_crit_celsius", "temp1", pkg),
        Some(100.0)
    );
    assert_eq!(
        coretemp(&after, "temperature_celsius", "temp2", "Core 0"),
        Some(58.0)
    );
}

#[test]
fn thermal_eio_is_counted_einval_is_absent() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let tree = scratch("host-laptop");
    let before = once(tree.path(), "thermal");
    let zones = tree.path().join("sys/devices/virtual/thermal");
    replace(&zones.join("thermal_zone0/temp"), EIO);
    replace(&zones.join("thermal_zone1/mode"), EINVAL);
    let after = once(tree.path(), "thermal");
    assert_eq!(
        item_errors(&after, "thermal"),
        item_errors(&before, "thermal") + 1.0
    );
    let temp = |body: &str, zone: &str, kind: &str| {
        sample(
            body,
            &format!("power_thermal_zone_temperature_celsius{{zone=\"{zone}\",type=\"{kind}\"}}"),
        )
    };
    assert_eq!(temp(&before, "0", "acpitz"), Some(52.0));
    assert_eq!(temp(&after, "0", "acpitz"), None);
    assert_eq!(temp(&after, "1", "x86_pkg_temp"), Some(61.5));
    assert!(before.contains(r#"power_thermal_zone_enabled{zone="1",type="x86_pkg_temp"}"#));
    assert!(!after.contains(r#"power_thermal_zone_enabled{zone="1",type="x86_pkg_temp"}"#));
}

const BAT0: &str = r#"supply="BAT0",scope="system""#;

#[test]
fn battery_eio_is_counted_einval_is_absent() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let tree = scratch("battery-laptop");
    let before = once(tree.path(), "battery");
    let bat = tree.path().join("sys/class/power_supply/BAT0");
    replace(&bat.join("energy_now"), EIO);
    replace(&bat.join("cycle_count"), EINVAL);
    let after = once(tree.path(), "battery");
    assert_eq!(
        item_errors(&after, "battery"),
        item_errors(&before, "battery") + 1.0
    );
    let v = |body: &str, name: &str| sample(body, &format!("power_battery_{name}{{{BAT0}}}"));
    assert!(v(&before, "energy_joules").is_some());
    assert_eq!(v(&after, "energy_joules"), None);
    assert_eq!(v(&before, "cycles"), Some(87.0));
    assert_eq!(v(&after, "cycles"), None);
    // The rest of the battery is served.
    assert_eq!(v(&after, "charge_ratio"), Some(0.6));
    assert_eq!(
        v(&after, "energy_full_joules"),
        v(&before, "energy_full_joules")
    );
}

fn rapl_energy(body: &str, package: &str, domain: &str) -> Option<f64> {
    sample(
        body,
        &format!("power_rapl_energy_joules_total{{package=\"{package}\",domain=\"{domain}\"}}"),
    )
}

#[test]
fn rapl_eio_on_one_counter_is_counted_and_the_others_are_served() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let tree = scratch("rapl-desktop");
    let before = once(tree.path(), "rapl");
    let zones = tree.path().join("sys/class/powercap");
    replace(&zones.join("intel-rapl:0:0/energy_uj"), EIO);
    replace(
        &zones.join("intel-rapl:1/constraint_0_time_window_us"),
        EINVAL,
    );
    let after = once(tree.path(), "rapl");
    assert_eq!(
        item_errors(&after, "rapl"),
        item_errors(&before, "rapl") + 1.0
    );
    assert!(rapl_energy(&before, "0", "core").is_some());
    assert_eq!(rapl_energy(&after, "0", "core"), None);
    assert_eq!(
        rapl_energy(&after, "0", "package"),
        rapl_energy(&before, "0", "package")
    );
    assert_eq!(
        rapl_energy(&after, "1", "core"),
        rapl_energy(&before, "1", "core")
    );
    let window = |body: &str| {
        sample(
            body,
            r#"power_rapl_power_limit_window_seconds{package="1",domain="package",constraint="long_term"}"#,
        )
    };
    assert!(window(&before).is_some());
    assert_eq!(window(&after), None, "EINVAL: absent");
}

/// Replace a listed entry with a link to nothing: it was listed, and is gone by the read.
fn vanish(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
    symlink("/nonexistent/odin-vanished", path).unwrap();
}

#[test]
fn entries_that_vanish_after_the_listing_are_counted() {
    let tree = scratch("host-laptop");
    let before_hwmon = once(tree.path(), "hwmon");
    let before_thermal = once(tree.path(), "thermal");
    // A whole chip, one listed file of another chip, a zone and a cooling device.
    vanish(&tree.path().join("sys/class/hwmon/hwmon2"));
    vanish(&tree.path().join(CORETEMP).join("temp2_label"));
    vanish(&tree.path().join("sys/class/thermal/thermal_zone2"));
    vanish(&tree.path().join("sys/class/thermal/cooling_device1"));
    let hwmon = once(tree.path(), "hwmon");
    let thermal = once(tree.path(), "thermal");
    assert_eq!(
        item_errors(&hwmon, "hwmon"),
        item_errors(&before_hwmon, "hwmon") + 2.0,
        "{hwmon}"
    );
    assert_eq!(
        item_errors(&thermal, "thermal"),
        item_errors(&before_thermal, "thermal") + 2.0,
        "{thermal}"
    );
    assert!(before_hwmon.contains("chip=\"platform_thinkpad_hwmon\""));
    assert!(!hwmon.contains("chip=\"platform_thinkpad_hwmon\""));
    // The sensor whose label went is served without it.
    assert_eq!(
        coretemp(&hwmon, "temperature_celsius", "temp2", ""),
        Some(58.0)
    );
    assert!(!thermal.contains("zone=\"2\""));
    assert!(!thermal.contains("device=\"1\""));
    assert!(
        thermal.contains(r#"power_thermal_zone_temperature_celsius{zone="0",type="acpitz"} 52"#)
    );

    let tree = scratch("battery-laptop");
    let before = once(tree.path(), "battery");
    vanish(
        &tree
            .path()
            .join("sys/class/power_supply/hid-aa:bb:cc:dd:ee:ff-battery"),
    );
    let after = once(tree.path(), "battery");
    assert_eq!(
        item_errors(&after, "battery"),
        item_errors(&before, "battery") + 1.0
    );
    assert!(before.contains("hid-aa:bb:cc:dd:ee:ff-battery"));
    assert!(!after.contains("hid-aa:bb:cc:dd:ee:ff-battery"));
    assert_eq!(
        value(&after, &format!("power_battery_charge_ratio{{{BAT0}}}")),
        0.6
    );

    let tree = scratch("rapl-desktop");
    let before = once(tree.path(), "rapl");
    vanish(&tree.path().join("sys/class/powercap/intel-rapl:1:1"));
    let after = once(tree.path(), "rapl");
    assert_eq!(
        item_errors(&after, "rapl"),
        item_errors(&before, "rapl") + 1.0
    );
    assert_eq!(rapl_energy(&after, "1", "uncore"), None);
    assert_eq!(
        rapl_energy(&after, "1", "core"),
        rapl_energy(&before, "1", "core")
    );
}

/// One sample of the in-process collector at `now`.
fn rapl_sample(rapl: &Rapl, root: &Path, now: Instant) -> Sink {
    let mut sink = Sink::new("power");
    rapl.collect_at(&fixture_context(root), &mut sink, now)
        .expect("a failing counter does not fail the run");
    sink
}

fn sink_energy(sink: &Sink, domain: &str) -> Option<f64> {
    sink_value(
        sink,
        "power_rapl_energy_joules_total",
        &[("package", "0"), ("domain", domain)],
    )
}

#[test]
fn a_counter_that_fails_between_two_samples_loses_no_energy() {
    let tree = scratch("rapl-desktop");
    let counter = tree
        .path()
        .join("sys/class/powercap/intel-rapl:0/energy_uj");
    let raw: u64 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let rapl = Rapl::new(Duration::from_secs(10));
    let t0 = Instant::now();
    let first = rapl_sample(&rapl, tree.path(), t0);
    assert_eq!(sink_energy(&first, "package"), Some(raw as f64 / 1e6));
    assert!(first.item_errors().is_empty(), "{:?}", first.item_errors());

    // Truncated to nothing (a read that caught the file empty), then failing with EIO: each
    // sample counts one item error and serves the other zones.
    std::fs::write(&counter, "").unwrap();
    let empty = rapl_sample(&rapl, tree.path(), t0 + Duration::from_secs(1));
    assert_eq!(empty.item_errors().len(), 1, "{:?}", empty.item_errors());
    assert_eq!(sink_energy(&empty, "package"), None);
    assert!(sink_energy(&empty, "core").is_some());
    if answers(EIO, libc::EIO) {
        replace(&counter, EIO);
        let failed = rapl_sample(&rapl, tree.path(), t0 + Duration::from_secs(2));
        assert_eq!(failed.item_errors().len(), 1, "{:?}", failed.item_errors());
        assert_eq!(sink_energy(&failed, "package"), None);
        std::fs::remove_file(&counter).unwrap();
    }

    // The counter answers again, 5 J further on: all of it is counted.
    std::fs::write(&counter, format!("{}\n", raw + 5_000_000)).unwrap();
    let back = rapl_sample(&rapl, tree.path(), t0 + Duration::from_secs(3));
    assert!(back.item_errors().is_empty(), "{:?}", back.item_errors());
    assert_eq!(
        sink_energy(&back, "package"),
        Some((raw + 5_000_000) as f64 / 1e6)
    );
}

#[test]
fn a_zone_that_vanishes_between_two_scans_is_counted() {
    let tree = scratch("rapl-desktop");
    let rapl = Rapl::new(Duration::from_secs(10));
    let t0 = Instant::now();
    let first = rapl_sample(&rapl, tree.path(), t0);
    assert!(sink_energy(&first, "dram").is_some());
    // Within the window: the zone list is not read again, the counter is.
    vanish(&tree.path().join("sys/class/powercap/intel-rapl:0:2"));
    let after = rapl_sample(&rapl, tree.path(), t0 + Duration::from_secs(1));
    assert_eq!(after.item_errors().len(), 1, "{:?}", after.item_errors());
    assert!(after.item_errors()[0].contains("intel-rapl:0:2"));
    assert_eq!(sink_energy(&after, "dram"), None);
    assert_eq!(sink_energy(&after, "core"), sink_energy(&first, "core"));
}
