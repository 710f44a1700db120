//! The real `razer-exporter` binary: on the desk fixture tree with the demo replay (the
//! exposition passes promtool, every value the fixture holds), on a host without any Razer
//! device (healthy, ready, zero devices), a broken replay file refused at start, an
//! unprivileged user refused with the fix named, and a served exporter stopping on SIGTERM.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use odin_testkit::{assert_promtool_clean, copy_tree, sample, value, Exe};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_razer-exporter"),
    env_prefix: "RAZER_EXPORTER_",
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn replay() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/blade-15.toml")
}

fn once(args: &[String]) -> (i32, String, String) {
    let out = EXPORTER.once(args, &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 exposition"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn desk_args(dev: &Path) -> Vec<String> {
    vec![
        format!("--path.sysfs={}", fixture("desk").join("sys").display()),
        format!("--path.dev={}", dev.display()),
    ]
}

#[test]
fn desk_fixture_and_replay_through_the_binary() {
    let dev = tempfile::tempdir().unwrap();
    let mut args = desk_args(dev.path());
    args.push(format!("--hid.replay={}", replay().display()));
    let (code, body, err) = once(&args);
    assert_eq!(code, 0, "{err}\n{body}");
    assert_promtool_clean(&body);
    for (series, want) in [
        (r#"razer_devices{source="openrazer"}"#, 6.0),
        (r#"razer_devices{source="hid"}"#, 1.0),
        (
            r#"razer_battery_ratio{device="1532:00B7@3-2:1.0"}"#,
            64.0 / 255.0,
        ),
        (r#"razer_battery_charging{device="1532:00B7@3-2:1.0"}"#, 1.0),
        (r#"razer_battery_charging{device="1532:0090@3-3:1.0"}"#, 0.0),
        (r#"razer_dpi{device="1532:00B7@3-2:1.0",axis="y"}"#, 1600.0),
        (r#"razer_dpi{device="1532:0016@1-3:1.0",axis="x"}"#, 450.0),
        (
            r#"razer_poll_rate_hertz{device="1532:00B7@3-2:1.0"}"#,
            1000.0,
        ),
        (
            r#"razer_brightness_ratio{device="1532:028A@1-8:1.0",zone="matrix"}"#,
            1.0,
        ),
        (
            r#"razer_brightness_ratio{device="1532:028A@1-8",zone="keyboard"}"#,
            128.0 / 255.0,
        ),
        (
            r#"razer_power_mode{device="1532:028A@1-8",mode="gaming"}"#,
            1.0,
        ),
        (
            r#"razer_power_mode{device="1532:028A@1-8",mode="silent"}"#,
            0.0,
        ),
        (
            r#"razer_boost{device="1532:028A@1-8",component="cpu",level="high"}"#,
            1.0,
        ),
        (
            r#"razer_fan_target_rpm{device="1532:028A@1-8",zone="1"}"#,
            4200.0,
        ),
        (
            r#"razer_fan_automatic{device="1532:028A@1-8",zone="2"}"#,
            1.0,
        ),
        (
            r#"razer_battery_optimizer_threshold_ratio{device="1532:028A@1-8"}"#,
            0.8,
        ),
        (
            r#"razer_hid_errors_total{device="1532:028A@1-8",kind="busy"}"#,
            1.0,
        ),
        (r#"razer_hid_requests_total{device="1532:028A@1-8"}"#, 9.0),
        (r#"razer_collector_success{collector="openrazer"}"#, 1.0),
        (r#"razer_collector_success{collector="hid"}"#, 1.0),
        (
            r#"razer_collector_item_errors_total{collector="openrazer"}"#,
            3.0,
        ),
    ] {
        assert_eq!(value(&body, series), want, "{series}");
    }
    assert!(body.contains(
        r#"razer_device_info{device="1532:028A@1-8",type="laptop",name="Razer Blade 15 Advanced (Early 2022)",firmware="v1.2",driver="replay"} 1"#
    ));
    assert_eq!(
        sample(
            &body,
            r#"razer_fan_target_rpm{device="1532:028A@1-8",zone="2"}"#
        ),
        None
    );
}

#[test]
fn no_razer_device_is_healthy_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("sys")).unwrap();
    fs::create_dir_all(dir.path().join("dev")).unwrap();
    let args = vec![
        format!("--path.sysfs={}", dir.path().join("sys").display()),
        format!("--path.dev={}", dir.path().join("dev").display()),
    ];
    let (code, body, err) = once(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(value(&body, r#"razer_devices{source="openrazer"}"#), 0.0);
    assert_eq!(value(&body, r#"razer_devices{source="hid"}"#), 0.0);

    let mut e = EXPORTER.start(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.get("/ready").status != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            e.get("/health").text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = e.get("/health").json();
    assert_eq!(health["components"]["hid"]["healthy"], true, "{health}");
    assert_eq!(
        health["components"]["openrazer"]["healthy"], true,
        "{health}"
    );
    assert_eq!(
        health["components"]["hid"]["detail"], "no Razer laptop found",
        "{health}"
    );
    let text = e.get("/metrics").text();
    assert_eq!(
        value(&text, r#"razer_collector_success{collector="hid"}"#),
        1.0
    );

    let start = Instant::now();
    e.signal(libc::SIGTERM);
    assert!(e.wait(Duration::from_secs(5)).success());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_broken_replay_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replay.toml");
    fs::write(
        &file,
        "[[laptop]]\nproduct = 0x028A\n[[laptop.answer]]\nrequest = \"set_power_mode\"\n",
    )
    .unwrap();
    let (code, _, err) = once(&[format!("--hid.replay={}", file.display())]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--hid.replay") && err.contains("replay.toml"),
        "{err}"
    );
    assert!(
        err.contains("request \"set_power_mode\" is not one of firmware"),
        "{err}"
    );
}

fn setpriv() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have = Command::new("setpriv").arg("--version").output().is_ok();
    (root && have).then_some("setpriv")
}

/// Walk `p` making directories 0755 and files `mode` (links are left alone).
fn chmod_tree(p: &Path, mode: u32) {
    let meta = fs::symlink_metadata(p).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    let m = if meta.is_dir() { 0o755 } else { mode };
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(p).unwrap() {
            chmod_tree(&entry.unwrap().path(), mode);
        }
    }
}

#[test]
fn an_unprivileged_user_is_refused_and_told_the_fix() {
    let Some(setpriv) = setpriv() else {
        eprintln!("skipped: needs root and setpriv to run the exporter as another user");
        return;
    };
    // The desk tree with every file root-only (as openrazer's are without its udev setup),
    // and the Blade's hidraw nodes as root-only files.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    copy_tree(&fixture("desk"), &dir.path().join("desk"));
    chmod_tree(&dir.path().join("desk"), 0o600);
    // uevent files stay world-readable, as sysfs has them
    for d in [
        "1-8:1.0/0003:1532:028A.0001",
        "1-8:1.1/0003:1532:028A.0002",
        "1-8:1.2/0003:1532:028A.0003",
    ] {
        let p = dir
            .path()
            .join("desk/sys/devices/pci0000:00/0000:00:14.0/usb1/1-8")
            .join(d)
            .join("uevent");
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let dev = dir.path().join("dev");
    fs::create_dir(&dev).unwrap();
    fs::set_permissions(&dev, fs::Permissions::from_mode(0o755)).unwrap();
    for n in ["hidraw0", "hidraw1", "hidraw2"] {
        fs::write(dev.join(n), b"").unwrap();
        fs::set_permissions(dev.join(n), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(EXPORTER.bin)
        .arg("--once")
        .arg(format!(
            "--path.sysfs={}",
            dir.path().join("desk/sys").display()
        ))
        .arg(format!("--path.dev={}", dev.display()))
        .env_remove("RAZER_EXPORTER_HID_REPLAY")
        .output()
        .unwrap();
    let body = String::from_utf8(out.stdout).unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a collector failed: {log}\n{body}"
    );
    assert_eq!(
        value(&body, r#"razer_collector_success{collector="openrazer"}"#),
        0.0
    );
    assert_eq!(
        value(&body, r#"razer_collector_success{collector="hid"}"#),
        0.0
    );
    assert!(
        log.contains("openrazer's files are readable by root and the plugdev group"),
        "{log}"
    );
    assert!(
        log.contains("deploy/udev/70-odin-razer-hidraw.rules"),
        "{log}"
    );
    // What could be read is still served: the devices are listed.
    assert_eq!(value(&body, r#"razer_devices{source="hid"}"#), 1.0);
}
