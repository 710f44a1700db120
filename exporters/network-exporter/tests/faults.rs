//! Files that misbehave while network-exporter reads them, through the real binary with
//! `--once` on a copy of the host-a fixture (`--collector.tcpstat.source=procfs`, so the
//! tree's `net/tcp{,6}` are read): a read failing with `EIO` (a symlink to `/proc/self/mem`,
//! which answers `EIO` from offset 0), an `EINVAL` answer (a symlink to
//! `/proc/self/clear_refs`, as a down link answers for `carrier`), and files or interfaces
//! gone between the listing and the read (dangling symlinks).
//!
//! The rule each test holds the collectors to: the answer is a whole exposition and every
//! other collector succeeds with its values; a collector whose one source file is unreadable
//! fails (success 0, the path and the reason in the log), since that is the source as a whole;
//! a secondary file (`snmp6`, `sockstat6`, `tcp6`) or one interface attribute that fails with
//! `EIO` is one item error and the rest is served; a missing secondary file is absence (IPv6
//! off), `EINVAL` on an attribute is absence. `EAGAIN` comes from no file a test can make.

use odin_testkit::faults::{answers, replace, EINVAL, EIO};
use std::os::unix::fs::symlink;
use std::path::Path;

use odin_testkit::{collector_item_errors, collector_success, copy_tree, sample, tree_args, Exe};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_network-exporter"),
    env_prefix: "NETWORK_EXPORTER_",
};

const GONE: &str = "/nonexistent/odin-vanished";
const COLLECTORS: [&str; 7] = [
    "netdev", "netclass", "wireless", "softnet", "tcpstat", "netstat", "sockstat",
];

fn host_a() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host-a");
    copy_tree(&from, dir.path());
    dir
}

/// `--once` on the tree: (exposition, log).
fn once(root: &Path) -> (String, String) {
    let mut args = tree_args(root);
    args.push("--collector.tcpstat.source=procfs".into());
    let out = EXPORTER.once(&args, &[]);
    (
        String::from_utf8(out.stdout).expect("UTF-8 exposition"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn success(body: &str, collector: &str) -> f64 {
    collector_success(body, "network", collector).expect("collector_success")
}

fn item_errors(body: &str, collector: &str) -> f64 {
    collector_item_errors(body, "network", collector)
}

/// Every collector but `except` succeeded, with no item error more than in `before`.
fn others_unharmed(before: &str, after: &str, except: &[&str]) {
    for c in COLLECTORS.iter().filter(|c| !except.contains(c)) {
        assert_eq!(success(after, c), 1.0, "{c}");
        assert_eq!(item_errors(after, c), item_errors(before, c), "{c}");
    }
}

#[test]
fn the_one_file_of_a_collector_unreadable_fails_that_collector_only() {
    if !answers(EIO, libc::EIO) {
        return;
    }
    let tree = host_a();
    let (before, _) = once(tree.path());
    for c in COLLECTORS {
        assert_eq!(success(&before, c), 1.0, "{c}");
    }
    let net = tree.path().join("proc/net");
    replace(&net.join("dev"), EIO);
    replace(&net.join("softnet_stat"), GONE);
    let (after, log) = once(tree.path());
    assert_eq!(success(&after, "netdev"), 0.0);
    assert_eq!(success(&after, "softnet"), 0.0);
    others_unharmed(&before, &after, &["netdev", "softnet"]);
    assert!(
        log.contains("net/dev") && log.contains("Input/output error"),
        "{log}"
    );
    assert!(log.contains("net/softnet_stat"), "{log}");
    // Nothing half-read is served for them; the rest is.
    assert!(!after.contains("network_receive_bytes_total"));
    assert!(!after.contains("network_softnet_dropped_total"));
    assert_eq!(
        sample(&after, r#"network_mtu_bytes{device="eth0"}"#),
        Some(1500.0)
    );
}

#[test]
fn a_secondary_file_failing_is_one_item_error_and_missing_is_absence() {
    if !answers(EIO, libc::EIO) {
        return;
    }
    let tree = host_a();
    let (before, _) = once(tree.path());
    let net = tree.path().join("proc/net");
    replace(&net.join("snmp6"), EIO);
    replace(&net.join("sockstat6"), EIO);
    replace(&net.join("tcp6"), EIO);
    let (after, log) = once(tree.path());
    for c in ["netstat", "sockstat", "tcpstat"] {
        assert_eq!(success(&after, c), 1.0, "{c}: {log}");
        assert_eq!(item_errors(&after, c), item_errors(&before, c) + 1.0, "{c}");
    }
    others_unharmed(&before, &after, &["netstat", "sockstat", "tcpstat"]);
    let ip = |body: &str, family: &str| {
        sample(
            body,
            &format!("network_ip_receive_discards_total{{family=\"{family}\"}}"),
        )
    };
    assert_eq!(ip(&after, "ipv6"), None);
    assert_eq!(ip(&after, "ipv4"), ip(&before, "ipv4"));
    assert!(ip(&before, "ipv4").is_some());
    assert!(!after.contains(r#"network_tcp_connection_states{family="ipv6""#));
    assert_eq!(
        sample(
            &after,
            r#"network_tcp_connection_states{family="ipv4",state="established"}"#
        ),
        Some(6.0)
    );

    // The same files gone (IPv6 switched off): no IPv6 series, and no error.
    let tree = host_a();
    let net = tree.path().join("proc/net");
    for f in ["snmp6", "sockstat6", "tcp6"] {
        replace(&net.join(f), GONE);
    }
    let (after, _) = once(tree.path());
    others_unharmed(&before, &after, &[]);
    assert_eq!(ip(&after, "ipv6"), None);
}

#[test]
fn an_interface_attribute_failing_is_counted_einval_is_absent() {
    if !answers(EIO, libc::EIO) || !answers(EINVAL, libc::EINVAL) {
        return;
    }
    let tree = host_a();
    let (before, _) = once(tree.path());
    let eth0 = tree.path().join("sys/class/net/eth0");
    replace(&eth0.join("mtu"), EIO);
    replace(&eth0.join("carrier"), EINVAL);
    let (after, _) = once(tree.path());
    assert_eq!(success(&after, "netclass"), 1.0);
    assert_eq!(
        item_errors(&after, "netclass"),
        item_errors(&before, "netclass") + 1.0,
        "EIO counted once, EINVAL not at all"
    );
    others_unharmed(&before, &after, &["netclass"]);
    let eth0 = |body: &str, name: &str| sample(body, &format!("network_{name}{{device=\"eth0\"}}"));
    assert_eq!(eth0(&before, "mtu_bytes"), Some(1500.0));
    assert_eq!(eth0(&after, "mtu_bytes"), None);
    assert_eq!(eth0(&before, "carrier"), Some(1.0));
    assert_eq!(eth0(&after, "carrier"), None);
    assert_eq!(eth0(&after, "up"), Some(1.0));
    assert_eq!(eth0(&after, "speed_bytes"), eth0(&before, "speed_bytes"));
}

#[test]
fn an_interface_gone_after_the_listing_is_counted() {
    let tree = host_a();
    let (before, _) = once(tree.path());
    let wlan0 = tree.path().join("sys/class/net/wlan0");
    std::fs::remove_dir_all(&wlan0).unwrap();
    symlink(GONE, &wlan0).unwrap();
    let (after, _) = once(tree.path());
    assert_eq!(success(&after, "netclass"), 1.0);
    assert_eq!(
        item_errors(&after, "netclass"),
        item_errors(&before, "netclass") + 1.0
    );
    assert!(before.contains(r#"network_up{device="wlan0"}"#));
    assert!(!after.contains(r#"network_up{device="wlan0"}"#));
    assert_eq!(sample(&after, r#"network_up{device="eth0"}"#), Some(1.0));
}
