//! The real `power-exporter` binary with only the `rapl` collector, on the `rapl-*` fixture
//! trees: `--once` output and promtool, `/ready` after the first background sample, a counter
//! wrap seen through the HTTP side, and (as root, through setpriv) an unprivileged exporter
//! that cannot read `energy_uj` and one that reads it through a group.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odin_testkit::{
    assert_promtool_clean, copy_tree, label_values, sample, tree_args, value, Exe, Exporter,
};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_power-exporter"),
    env_prefix: "POWER_EXPORTER_",
};

const PACKAGE: &str = r#"power_rapl_energy_joules_total{package="0",domain="package"}"#;
const WRAPS: &str = r#"power_rapl_energy_wraps_total{package="0",domain="package"}"#;
const RANGE_UJ: u64 = 262_143_328_850;
/// The group the test gives `energy_uj` to.
const GID: u32 = 4242;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tree's flags, only the rapl collector, a one-second window (a sample every 100 ms).
fn args(root: &Path) -> Vec<String> {
    let mut a = tree_args(root);
    for other in ["battery", "thermal", "hwmon", "gpu"] {
        a.push(format!("--no-collector.{other}"));
    }
    a.push("--rapl.window=1s".into());
    a
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_ready(e: &Exporter) {
    wait_until("/ready", Duration::from_secs(10), || {
        e.get("/ready").status == 200
    });
}

fn metrics(e: &Exporter) -> String {
    e.get("/metrics").text()
}

#[test]
fn once_on_a_two_package_desktop() {
    let out = EXPORTER.once(&args(&fixture("rapl-desktop")), &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert_eq!(value(&text, PACKAGE), 123_456.789_012);
    assert_eq!(
        value(
            &text,
            r#"power_rapl_energy_joules_total{package="1",domain="dram"}"#
        ),
        9_877.543_21
    );
    assert_eq!(
        label_values(&text, "power_rapl_energy_joules_total", "domain"),
        ["package", "core", "uncore", "dram", "package", "core", "uncore", "dram"]
    );
    assert_eq!(
        value(
            &text,
            r#"power_rapl_power_limit_watts{package="0",domain="package",constraint="short_term"}"#
        ),
        225.0
    );
    assert_eq!(
        value(
            &text,
            r#"power_rapl_power_limit_window_seconds{package="1",domain="package",constraint="long_term"}"#
        ),
        27.983_872
    );
    // One sample: no power yet.
    assert!(!text.contains("power_rapl_power_watts"), "{text}");
    assert_eq!(
        value(&text, r#"power_collector_success{collector="rapl"}"#),
        1.0
    );
    assert_promtool_clean(&text);
}

#[test]
fn once_without_powercap_is_empty_and_successful() {
    let out = EXPORTER.once(&args(&fixture("rapl-vm")), &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("power_rapl_"), "{text}");
    assert_eq!(
        value(&text, r#"power_collector_success{collector="rapl"}"#),
        1.0
    );
}

#[test]
fn once_on_malformed_files_counts_item_errors_and_succeeds() {
    let out = EXPORTER.once(&args(&fixture("rapl-malformed")), &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert_eq!(
        value(
            &text,
            r#"power_collector_item_errors_total{collector="rapl"}"#
        ),
        7.0
    );
    assert_eq!(
        value(
            &text,
            r#"power_rapl_energy_joules_total{package="0",domain="core"}"#
        ),
        1.0
    );
    assert_promtool_clean(&text);
}

#[test]
fn served_ready_after_the_first_sample_and_monotonic_across_a_wrap() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("rapl-wrap"), dir.path());
    let energy = dir.path().join("sys/class/powercap/intel-rapl:0/energy_uj");
    let e = EXPORTER.start(&args(dir.path()), &[]);
    wait_ready(&e);
    let text = metrics(&e);
    let before = value(&text, PACKAGE);
    assert_eq!(before, (RANGE_UJ - 1_000_000) as f64 / 1e6);
    let health = e.get("/health").json();
    let rapl = &health["components"]["rapl"];
    assert_eq!(rapl["mode"], "background", "{health}");
    assert_eq!(rapl["interval_seconds"], 0.1, "{health}");
    assert_eq!(rapl["healthy"], true, "{health}");

    // The counter passes its range: 1 J to the top, 1 µJ to 0, 3 J more.
    fs::write(&energy, "3000000\n").unwrap();
    let mut text = String::new();
    wait_until("the wrap", Duration::from_secs(10), || {
        text = metrics(&e);
        sample(&text, WRAPS) == Some(1.0)
    });
    let after = value(&text, PACKAGE);
    assert_eq!(((after - before) * 1e6).round() as u64, 4_000_001);
    let watts = value(
        &text,
        r#"power_rapl_power_watts{package="0",domain="package"}"#,
    );
    assert!(watts > 0.0 && watts.is_finite(), "{text}");
    assert_promtool_clean(&text);
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// setpriv running the exporter as 65534, with no supplementary group or with [`GID`].
fn setpriv(root: &Path, with_group: bool) -> Vec<String> {
    let mut a: Vec<String> = vec!["--reuid=65534".into(), "--regid=65534".into()];
    a.push(if with_group {
        format!("--groups={GID}")
    } else {
        "--clear-groups".into()
    });
    a.push("--".into());
    a.push(EXPORTER.bin.into());
    a.extend(args(root));
    a
}

/// The unreadable fixture copied where 65534 can walk it, each `energy_uj` root:GID 0440.
fn group_readable_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("rapl-unreadable"), dir.path());
    fn open_up(p: &Path) {
        let meta = fs::metadata(p).unwrap();
        let mode = if meta.is_dir() { 0o755 } else { 0o444 };
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        if meta.is_dir() {
            for entry in fs::read_dir(p).unwrap() {
                open_up(&entry.unwrap().path());
            }
        }
    }
    open_up(dir.path());
    for zone in ["intel-rapl:0", "intel-rapl:0:0"] {
        let file = dir
            .path()
            .join("sys/class/powercap")
            .join(zone)
            .join("energy_uj");
        std::os::unix::fs::chown(&file, Some(0), Some(GID)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o440)).unwrap();
    }
    dir
}

#[test]
fn unprivileged_it_says_how_to_fix_it_once_and_the_group_fixes_it() {
    if !running_as_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and /usr/bin/setpriv to run the exporter as 65534");
        return;
    }
    let tree = group_readable_tree();
    let setpriv_exe = Exe {
        bin: "/usr/bin/setpriv",
        env_prefix: "POWER_EXPORTER_",
    };

    let plain = setpriv_exe.start(&setpriv(tree.path(), false), &[]);
    wait_ready(&plain);
    // Let it take a dozen samples, all failing.
    std::thread::sleep(Duration::from_millis(1300));
    let health = plain.get("/health").json();
    let rapl = &health["components"]["rapl"];
    assert_eq!(rapl["healthy"], false, "{health}");
    assert_eq!(rapl["state"], "failed", "{health}");
    assert!(
        rapl["consecutive_failures"].as_u64().unwrap() >= 5,
        "{health}"
    );
    let message = rapl["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("permission denied reading")
            && message.contains("intel-rapl:0/energy_uj (2 of 2")
            && message.contains("deploy/udev/70-odin-power-rapl.rules")
            && message.contains("odin-power"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert_eq!(rapl["detail"].as_str(), Some(message), "{health}");
    assert_eq!(
        plain.get("/healthz").status,
        503,
        "rapl is the only collector"
    );
    // What could be read is still served; the energy is not.
    let text = metrics(&plain);
    assert_eq!(
        value(
            &text,
            r#"power_rapl_power_limit_watts{package="0",domain="package",constraint="long_term"}"#
        ),
        65.0
    );
    assert!(sample(&text, PACKAGE).is_none(), "{text}");
    assert_eq!(
        value(&text, r#"power_collector_success{collector="rapl"}"#),
        0.0
    );
    // Said once on the log, not at every sample.
    let log = plain.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("collector=rapl"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    drop(plain);

    let grouped = setpriv_exe.start(&setpriv(tree.path(), true), &[]);
    wait_ready(&grouped);
    let health = grouped.get("/health").json();
    assert_eq!(health["components"]["rapl"]["healthy"], true, "{health}");
    assert!(health["components"]["rapl"]["detail"].is_null(), "{health}");
    let text = metrics(&grouped);
    assert_eq!(value(&text, PACKAGE), 7.0);
    assert_eq!(
        value(
            &text,
            r#"power_rapl_energy_joules_total{package="0",domain="core"}"#
        ),
        3.0
    );
}
