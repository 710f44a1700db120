//! The real `power-exporter` binary with only the `battery` collector, on the `battery-*`
//! fixture trees: `--path.sysfs` is honoured, the exposition passes promtool, a broken tree
//! is counted in item errors and not failed, `--collector.battery.ignored-supplies` filters.

use std::path::{Path, PathBuf};

use odin_testkit::{assert_promtool_clean, label_values, tree_args, value, Exe};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_power-exporter"),
    env_prefix: "POWER_EXPORTER_",
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `--once` with only the battery collector on the tree `name`, plus `extra` flags: (exit
/// code, stdout).
fn once(name: &str, extra: &[&str]) -> (i32, String) {
    once_env(name, extra, &[])
}

/// [`once`] with environment variables.
fn once_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut args = tree_args(&fixture(name));
    for other in ["rapl", "thermal", "hwmon"] {
        args.push(format!("--no-collector.{other}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = EXPORTER.once(&args, env);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 exposition"),
    )
}

#[test]
fn laptop_tree_through_the_binary() {
    let (code, body) = once("battery-laptop", &[]);
    assert_eq!(code, 0, "{body}");
    assert_promtool_clean(&body);
    assert_eq!(
        value(
            &body,
            r#"power_battery_charge_ratio{supply="BAT0",scope="system"}"#
        ),
        0.6
    );
    assert_eq!(
        value(
            &body,
            r#"power_battery_state{supply="hid-aa:bb:cc:dd:ee:ff-battery",scope="device",state="discharging"}"#
        ),
        1.0
    );
    assert_eq!(value(&body, r#"power_supply_online{supply="AC"}"#), 1.0);
    assert_eq!(
        value(&body, r#"power_collector_success{collector="battery"}"#),
        1.0
    );
}

#[test]
fn every_tree_is_promtool_clean_and_broken_is_counted_not_failed() {
    for tree in [
        "battery-laptop",
        "battery-charge",
        "battery-legacy",
        "battery-desktop",
        "battery-broken",
    ] {
        let (code, body) = once(tree, &[]);
        assert_eq!(code, 0, "{tree}: {body}");
        assert_promtool_clean(&body);
        assert_eq!(
            value(&body, r#"power_collector_success{collector="battery"}"#),
            1.0,
            "{tree}"
        );
        let errors = value(
            &body,
            r#"power_collector_item_errors_total{collector="battery"}"#,
        );
        assert_eq!(
            errors,
            if tree == "battery-broken" { 5.0 } else { 0.0 },
            "{tree}"
        );
    }
}

#[test]
fn ignored_supplies_flag_and_twin() {
    let (code, body) = once(
        "battery-laptop",
        &["--collector.battery.ignored-supplies=^hid-"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        label_values(&body, "power_battery_charge_ratio", "supply"),
        ["BAT0"]
    );
    let (code, body) = once_env(
        "battery-laptop",
        &[],
        &[("POWER_EXPORTER_COLLECTOR_BATTERY_IGNORED_SUPPLIES", "^BAT")],
    );
    assert_eq!(code, 0);
    assert_eq!(
        label_values(&body, "power_battery_charge_ratio", "supply"),
        ["hid-aa:bb:cc:dd:ee:ff-battery"]
    );
}
