//! openrazer files that misbehave while razer-exporter reads them, through the real binary
//! with `--once` on a copy of the desk fixture (the `hid` collector off): a read failing with
//! `EIO` (a symlink to `/proc/self/mem`) is one item error and costs only that value, `EINVAL`
//! (a symlink to `/proc/self/clear_refs`, as a model without the attribute answers) is
//! absence, and a device or a listed brightness file that vanishes between the listing and the
//! read (a dangling symlink: the device was unplugged) is counted, never served half-read.
//! `EAGAIN` and `ETIMEDOUT` come from no file a test can make; odin-common's sysfs unit tests
//! classify them as `EIO` is.

use odin_testkit::faults::{answers, replace, EINVAL, EIO};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use odin_testkit::{copy_tree, sample, value, Exe};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_razer-exporter"),
    env_prefix: "RAZER_EXPORTER_",
};

const USB: &str = "sys/devices/pci0000:00/0000:00:14.0";
/// The charging mouse and the laptop's keyboard of the desk fixture.
const MOUSE: &str = "1532:00B7@3-2:1.0";
const MOUSE_DIR: &str = "usb3/3-2/3-2:1.0/0003:1532:00B7.0007";
const KBD: &str = "1532:028A@1-8:1.0";
const KBD_DIR: &str = "usb1/1-8/1-8:1.0/0003:1532:028A.0001";

fn desk() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/desk");
    copy_tree(&from, dir.path());
    std::fs::create_dir_all(dir.path().join("dev")).unwrap();
    dir
}

fn device_file(root: &Path, device_dir: &str, file: &str) -> PathBuf {
    root.join(USB).join(device_dir).join(file)
}

/// `--once` with the openrazer collector only: the exposition; the run must succeed.
fn once(root: &Path) -> String {
    let args = vec![
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--path.dev={}", root.join("dev").display()),
        "--no-collector.hid".to_string(),
    ];
    let out = EXPORTER.once(&args, &[]);
    let body = String::from_utf8(out.stdout).expect("UTF-8 exposition");
    assert!(
        out.status.success(),
        "{}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        value(&body, r#"razer_collector_success{collector="openrazer"}"#),
        1.0
    );
    body
}

fn item_errors(body: &str) -> f64 {
    value(
        body,
        r#"razer_collector_item_errors_total{collector="openrazer"}"#,
    )
}

fn of(body: &str, name: &str, device: &str) -> Option<f64> {
    sample(body, &format!("razer_{name}{{device=\"{device}\"}}"))
}

#[test]
fn eio_is_counted_einval_is_absent_and_the_rest_is_served() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let root = desk();
    let before = once(root.path());
    replace(&device_file(root.path(), MOUSE_DIR, "charge_level"), EIO);
    replace(&device_file(root.path(), MOUSE_DIR, "poll_rate"), EINVAL);
    let after = once(root.path());
    assert_eq!(item_errors(&after), item_errors(&before) + 1.0);
    assert_eq!(of(&before, "battery_ratio", MOUSE), Some(64.0 / 255.0));
    assert_eq!(of(&after, "battery_ratio", MOUSE), None);
    assert_eq!(of(&before, "poll_rate_hertz", MOUSE), Some(1000.0));
    assert_eq!(of(&after, "poll_rate_hertz", MOUSE), None);
    // The rest of the mouse, and the other devices.
    assert_eq!(of(&after, "battery_charging", MOUSE), Some(1.0));
    assert_eq!(of(&after, "idle_time_seconds", MOUSE), Some(300.0));
    assert_eq!(value(&after, r#"razer_devices{source="openrazer"}"#), 6.0);
}

#[test]
fn a_device_or_a_listed_file_that_vanishes_is_counted() {
    let root = desk();
    let before = once(root.path());
    // The mouse unplugged between the listing of its driver and the read of its files.
    let entry = root
        .path()
        .join("sys/bus/hid/drivers/razermouse/0003:1532:00B7.0007");
    std::fs::remove_file(&entry).unwrap();
    symlink("../../../../devices/gone/0003:1532:00B7.0007", &entry).unwrap();
    // One of the keyboard's brightness files listed, then gone.
    let matrix = device_file(root.path(), KBD_DIR, "matrix_brightness");
    std::fs::remove_file(&matrix).unwrap();
    symlink("/nonexistent/odin-vanished", &matrix).unwrap();
    let after = once(root.path());
    assert_eq!(item_errors(&after), item_errors(&before) + 2.0, "{after}");
    assert_eq!(value(&after, r#"razer_devices{source="openrazer"}"#), 5.0);
    assert!(before.contains(MOUSE));
    assert!(!after.contains(MOUSE), "no half-read device: {after}");
    let zone = |body: &str, zone: &str| {
        sample(
            body,
            &format!("razer_brightness_ratio{{device=\"{KBD}\",zone=\"{zone}\"}}"),
        )
    };
    assert_eq!(zone(&before, "matrix"), Some(1.0));
    assert_eq!(zone(&after, "matrix"), None);
    assert_eq!(zone(&after, "logo"), Some(0.0));
}
