//! The real `network-exporter` binary against fixture trees: the serving contract of
//! docs/architecture.md (endpoints, health, failure and malformed input, `--once`, flags,
//! signals).
//!
//! Trees: `host-a` (a healthy host), `broken` (host-a without `proc/net/tcp`, so `tcpstat`
//! fails), `malformed` (`proc` only, with bad lines in every file; paired with host-a's `sys`).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use odin_testkit::{
    assert_promtool_clean, collector_item_errors, collector_success, request, sample, series,
    tree_args, value, Exe,
};

/// The binary under test.
const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_network-exporter"),
    env_prefix: "NETWORK_EXPORTER_",
};

/// A path under this crate's `tests/fixtures/`.
fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Every collector on by default; `dns` needs `--dns.probe-name`.
const DEFAULT_COLLECTORS: [&str; 7] = [
    "netdev", "netclass", "wireless", "softnet", "tcpstat", "netstat", "sockstat",
];

fn host_a() -> Vec<String> {
    tree_args(&fixture("host-a"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn success(body: &str, collector: &str) -> f64 {
    collector_success(body, "network", collector).expect("collector_success")
}

fn item_errors(body: &str, collector: &str) -> f64 {
    collector_item_errors(body, "network", collector)
}

/// The component names of a `/health` document.
fn components(health: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = health["components"]
        .as_object()
        .expect("components object")
        .keys()
        .cloned()
        .collect();
    v.sort();
    v
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn gunzip(data: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut s)
        .expect("valid gzip");
    s
}

/// An exposition without the per-run timing lines, which differ between two scrapes.
fn without_timings(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| !l.starts_with("network_collector_duration_seconds{"))
        .collect()
}

#[test]
fn serves_host_a() {
    let ex = EXPORTER.start(&host_a(), &[]);

    let landing = ex.get("/");
    assert_eq!(landing.status, 200);
    assert_eq!(
        landing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = landing.text();
    assert!(html.contains("<title>network-exporter</title>"), "{html}");
    assert!(
        html.contains(&format!("network-exporter {}", env!("CARGO_PKG_VERSION"))),
        "{html}"
    );
    for link in ["/metrics", "/health", "/healthz", "/ready"] {
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}: {html}");
    }
    for c in DEFAULT_COLLECTORS {
        assert!(html.contains(&format!("<code>{c}</code>")), "{c}: {html}");
    }

    let plain = ex.get("/metrics");
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(plain.header("content-encoding"), None);
    let body = plain.text();
    // proc/net/dev, eth0 line.
    assert_eq!(
        value(&body, "network_receive_bytes_total{device=\"eth0\"}"),
        48_291_857_223.0
    );
    assert_eq!(
        value(&body, "network_transmit_drop_total{device=\"eth0\"}"),
        5.0
    );
    // Loopback and container interfaces are dropped by default.
    assert_eq!(
        sample(&body, "network_receive_bytes_total{device=\"lo\"}"),
        None
    );
    assert_eq!(
        sample(&body, "network_receive_bytes_total{device=\"docker0\"}"),
        None
    );
    // proc/net/tcp: six sockets in state 01, four in 0A.
    assert_eq!(
        value(
            &body,
            "network_tcp_connection_states{family=\"ipv4\",state=\"established\"}"
        ),
        6.0
    );
    assert_eq!(
        value(
            &body,
            "network_tcp_connection_states{family=\"ipv4\",state=\"listen\"}"
        ),
        4.0
    );
    assert_eq!(
        value(
            &body,
            "network_tcp_connection_states{family=\"ipv6\",state=\"listen\"}"
        ),
        2.0
    );
    // proc/net/snmp and netstat.
    assert_eq!(value(&body, "network_tcp_active_opens_total"), 48_213.0);
    assert_eq!(
        value(&body, "network_tcp_retransmitted_segments_total"),
        40_127.0
    );
    assert_eq!(value(&body, "network_tcp_listen_overflows_total"), 31.0);
    assert_eq!(
        value(
            &body,
            "network_udp_received_datagrams_total{family=\"ipv6\"}"
        ),
        80_211.0
    );
    // proc/net/sockstat{,6}: TCP mem 57 pages of 4 KiB.
    assert_eq!(value(&body, "network_sockets_used"), 412.0);
    assert_eq!(
        value(&body, "network_sockstat_tcp_inuse{family=\"ipv6\"}"),
        6.0
    );
    assert_eq!(
        value(&body, "network_sockstat_tcp_memory_bytes"),
        57.0 * 4096.0
    );
    // proc/net/softnet_stat: row 3 names CPU 3 in column 13; 0x2a dropped on CPU 1.
    assert_eq!(
        value(&body, "network_softnet_dropped_total{cpu=\"1\"}"),
        42.0
    );
    assert_eq!(
        value(&body, "network_softnet_processed_total{cpu=\"3\"}"),
        4_294_967_295.0
    );
    // proc/net/wireless.
    assert_eq!(
        value(&body, "network_wireless_signal_dbm{device=\"wlan0\"}"),
        -52.0
    );
    assert_eq!(
        value(
            &body,
            "network_wireless_discarded_packets_total{device=\"wlan0\",reason=\"retry\"}"
        ),
        317.0
    );
    // sys/class/net.
    assert_eq!(
        value(&body, "network_speed_bytes{device=\"eth0\"}"),
        125_000_000.0
    );
    assert_eq!(value(&body, "network_mtu_bytes{device=\"wg0\"}"), 1420.0);
    for c in DEFAULT_COLLECTORS {
        assert_eq!(success(&body, c), 1.0, "{c}");
        assert_eq!(item_errors(&body, c), 0.0, "{c}");
    }
    assert_eq!(
        value(
            &body,
            "network_exporter_build_info{version=\"0.1.0\",demo=\"false\"}"
        ),
        1.0
    );

    let zipped = ex.request("GET", "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(
        zipped.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(zipped.body.len() < plain.body.len() / 3, "not compressed");
    let unzipped = gunzip(&zipped.body);
    assert_eq!(without_timings(&unzipped), without_timings(&body));
    assert_eq!(
        series(&unzipped, "network_collector_duration_seconds").len(),
        7
    );

    let health = ex.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    let h = health.json();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(components(&h), sorted(&DEFAULT_COLLECTORS));
    for c in DEFAULT_COLLECTORS {
        let comp = &h["components"][c];
        assert_eq!(comp["healthy"], true, "{c}");
        assert_eq!(comp["state"], "ok", "{c}");
        assert_eq!(comp["mode"], "on_scrape", "{c}");
        assert_eq!(comp["errors"].as_array().unwrap().len(), 0, "{c}");
        let last = comp["last_success"].as_f64().expect("last_success");
        assert!((now() - last).abs() < 60.0, "{c}: last_success {last}");
    }

    let healthz = ex.get("/healthz");
    assert_eq!((healthz.status, healthz.text().as_str()), (200, "OK"));
    assert_eq!(ex.get("/ready").status, 200);
    let missing = ex.get("/no-such-page");
    assert_eq!(missing.status, 404);
    let post = ex.request("POST", "/metrics", &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(ex.request("POST", "/health", &[]).status, 405);
}

#[test]
fn one_failing_collector_degrades_health() {
    let ex = EXPORTER.start(&tree_args(&fixture("broken")), &[]);
    let t0 = now();
    let m = ex.get("/metrics");
    assert_eq!(m.status, 200);
    let body = m.text();
    assert_eq!(success(&body, "tcpstat"), 0.0);
    for c in DEFAULT_COLLECTORS.iter().filter(|c| **c != "tcpstat") {
        assert_eq!(success(&body, c), 1.0, "{c}");
    }
    assert!(series(&body, "network_tcp_connection_states").is_empty());
    // Everything else is still served.
    assert_eq!(
        value(&body, "network_receive_bytes_total{device=\"eth0\"}"),
        48_291_857_223.0
    );
    assert_eq!(value(&body, "network_tcp_active_opens_total"), 48_213.0);
    assert_eq!(value(&body, "network_sockets_used"), 412.0);

    let h = ex.get("/health").json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(components(&h), sorted(&DEFAULT_COLLECTORS));
    let tcp = &h["components"]["tcpstat"];
    assert_eq!(tcp["healthy"], false);
    assert_eq!(tcp["state"], "failed");
    assert_eq!(tcp["last_success"], serde_json::Value::Null);
    assert_eq!(tcp["consecutive_failures"], 1);
    let errors = tcp["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("broken/proc/net/tcp") && msg.contains("No such file"),
        "{msg}"
    );
    let t = errors[0]["time"].as_f64().unwrap();
    assert!(t >= t0 - 1.0 && t <= now() + 1.0, "error time {t}");
    for c in DEFAULT_COLLECTORS.iter().filter(|c| **c != "tcpstat") {
        assert_eq!(h["components"][c]["healthy"], true, "{c}");
    }

    // A second failing scrape adds to the history.
    assert_eq!(success(&ex.get("/metrics").text(), "tcpstat"), 0.0);
    let tcp = &ex.get("/health").json()["components"]["tcpstat"];
    assert_eq!(tcp["consecutive_failures"], 2);
    assert_eq!(tcp["errors"].as_array().unwrap().len(), 2);

    // Degraded is not down.
    let healthz = ex.get("/healthz");
    assert_eq!((healthz.status, healthz.text().as_str()), (200, "OK"));
    assert_eq!(ex.get("/ready").status, 200);
}

#[test]
fn every_collector_failing_is_unhealthy() {
    // Empty trees, except that proc/net/wireless is a directory: a *missing* wireless file
    // means "no Wi-Fi" and succeeds, an unreadable one fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("proc/net/wireless")).unwrap();
    std::fs::create_dir_all(dir.path().join("sys")).unwrap();
    let ex = EXPORTER.start(&tree_args(dir.path()), &[]);

    let m = ex.get("/metrics");
    assert_eq!(m.status, 200, "a failing collector never fails the scrape");
    let body = m.text();
    for c in DEFAULT_COLLECTORS {
        assert_eq!(success(&body, c), 0.0, "{c}");
    }
    assert!(series(&body, "network_receive_bytes_total").is_empty());

    let h = ex.get("/health").json();
    assert_eq!(h["status"], "unhealthy");
    for c in DEFAULT_COLLECTORS {
        let comp = &h["components"][c];
        assert_eq!(comp["healthy"], false, "{c}");
        assert_eq!(comp["errors"].as_array().unwrap().len(), 1, "{c}");
    }
    let healthz = ex.get("/healthz");
    assert_eq!(healthz.status, 503);
    assert_eq!(healthz.text(), "unhealthy\n");
    // On-scrape collectors are ready from the start, whatever their health.
    assert_eq!(ex.get("/ready").status, 200);
}

#[test]
fn malformed_lines_are_counted_not_fatal() {
    let args = vec![
        format!("--path.procfs={}", fixture("malformed/proc").display()),
        format!("--path.sysfs={}", fixture("host-a/sys").display()),
    ];
    let ex = EXPORTER.start(&args, &[]);
    let m = ex.get("/metrics");
    assert_eq!(m.status, 200);
    let body = m.text();
    for c in DEFAULT_COLLECTORS {
        assert_eq!(success(&body, c), 1.0, "{c}");
    }
    // The fixture files this test owns: dev has a short row, a non-number and a line with no
    // interface; softnet_stat a non-hex field and a 2-column row; wireless a non-number and a
    // short row.
    assert_eq!(item_errors(&body, "netdev"), 3.0);
    assert_eq!(item_errors(&body, "softnet"), 2.0);
    assert_eq!(item_errors(&body, "wireless"), 2.0);
    for c in ["tcpstat", "netstat", "sockstat"] {
        assert!(item_errors(&body, c) > 0.0, "{c}");
    }
    assert_eq!(item_errors(&body, "netclass"), 0.0);

    // Good lines next to bad ones are still exported.
    assert_eq!(
        value(&body, "network_receive_bytes_total{device=\"eth0\"}"),
        5000.0
    );
    assert_eq!(
        value(&body, "network_transmit_packets_total{device=\"wg0\"}"),
        8.0
    );
    assert_eq!(
        series(&body, "network_receive_bytes_total").len(),
        2,
        "eth1 and wlan0 lines are malformed"
    );
    assert_eq!(
        value(&body, "network_softnet_processed_total{cpu=\"2\"}"),
        768.0
    );
    assert_eq!(series(&body, "network_softnet_processed_total").len(), 2);
    assert_eq!(
        value(&body, "network_wireless_link_quality{device=\"wlan0\"}"),
        61.0
    );
    assert_eq!(series(&body, "network_wireless_link_quality").len(), 1);
    assert_eq!(
        value(
            &body,
            "network_tcp_connection_states{family=\"ipv4\",state=\"listen\"}"
        ),
        1.0
    );
    assert_eq!(value(&body, "network_tcp_active_opens_total"), 700.0);
    assert_eq!(value(&body, "network_sockets_used"), 90.0);

    // A counter since start: the next scrape adds the same again; /health agrees.
    let body2 = ex.get("/metrics").text();
    let h = ex.get("/health").json();
    assert_eq!(h["status"], "healthy");
    for c in DEFAULT_COLLECTORS {
        let twice = item_errors(&body2, c);
        assert_eq!(twice, 2.0 * item_errors(&body, c), "{c}");
        assert_eq!(
            h["components"][c]["item_errors_total"].as_f64(),
            Some(twice),
            "{c}"
        );
    }
}

#[test]
fn once_prints_an_exposition_promtool_accepts() {
    let out = EXPORTER.once(&host_a(), &[]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        value(&stdout, "network_receive_bytes_total{device=\"wlan0\"}"),
        12_345_678_901.0
    );
    // Logs go to stderr with --once, so stdout is only the exposition.
    assert!(!stdout.contains("level="), "{stdout}");
    assert!(stderr.contains("dns collector off"), "{stderr}");

    assert_promtool_clean(&stdout);
}

#[test]
fn once_exits_1_when_a_collector_fails_but_prints_the_rest() {
    let out = EXPORTER.once(&tree_args(&fixture("broken")), &[]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(success(&stdout, "tcpstat"), 0.0);
    assert_eq!(success(&stdout, "netdev"), 1.0);
    assert_eq!(
        value(&stdout, "network_receive_bytes_total{device=\"eth0\"}"),
        48_291_857_223.0
    );
    assert_eq!(value(&stdout, "network_sockets_used"), 412.0);
    assert!(
        stderr.contains("msg=\"collectors failed\" collectors=tcpstat"),
        "{stderr}"
    );
}

#[test]
fn no_collector_flag_removes_its_metrics_and_component() {
    let mut args = host_a();
    args.push("--no-collector.tcpstat".into());
    let ex = EXPORTER.start(&args, &[]);
    let body = ex.get("/metrics").text();
    assert!(series(&body, "network_tcp_connection_states").is_empty());
    assert!(series(&body, "network_tcp_receive_queue_bytes").is_empty());
    assert_eq!(
        sample(&body, "network_collector_success{collector=\"tcpstat\"}"),
        None
    );
    assert_eq!(series(&body, "network_collector_success").len(), 6);
    // The TCP counters come from netstat, which is still on.
    assert_eq!(value(&body, "network_tcp_active_opens_total"), 48_213.0);
    let h = ex.get("/health").json();
    let want: Vec<&str> = DEFAULT_COLLECTORS
        .into_iter()
        .filter(|c| *c != "tcpstat")
        .collect();
    assert_eq!(components(&h), sorted(&want));
    assert_eq!(h["status"], "healthy");
    assert!(!ex.get("/").text().contains("<code>tcpstat</code>"));
}

fn devices(body: &str, family: &str) -> Vec<String> {
    series(body, family)
        .iter()
        .map(|l| {
            let (_, rest) = l.split_once("device=\"").expect("device label");
            rest.split('"').next().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn device_include_flag_and_its_environment_twin() {
    let mut args = host_a();
    args.push("--collector.netdev.device-include=^eth0$".into());
    let out = EXPORTER.once(&args, &[]);
    assert_eq!(out.status.code(), Some(0));
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(devices(&body, "network_receive_bytes_total"), ["eth0"]);
    assert_eq!(
        devices(&body, "network_up"),
        ["eth0"],
        "netclass is filtered"
    );
    assert!(
        series(&body, "network_wireless_link_quality").is_empty(),
        "wireless is filtered"
    );

    let env = [("NETWORK_EXPORTER_COLLECTOR_NETDEV_DEVICE_INCLUDE", "^eth0$")];
    let out = EXPORTER.once(&host_a(), &env);
    assert_eq!(out.status.code(), Some(0));
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(devices(&body, "network_receive_bytes_total"), ["eth0"]);

    // The command line wins over the environment.
    let mut args = host_a();
    args.push("--collector.netdev.device-include=^wlan0$".into());
    let body = String::from_utf8(EXPORTER.once(&args, &env).stdout).unwrap();
    assert_eq!(devices(&body, "network_receive_bytes_total"), ["wlan0"]);

    // Without the flag: the default exclusion (lo, docker0, veth*, br-*, 15-hex names).
    let body = String::from_utf8(EXPORTER.once(&host_a(), &[]).stdout).unwrap();
    let mut all = devices(&body, "network_receive_bytes_total");
    all.sort();
    assert_eq!(all, ["eth0", "eth1", "wg0", "wlan0"]);
}

#[test]
fn invalid_regex_is_refused_with_a_clear_error() {
    let mut args = host_a();
    args.push("--collector.netdev.device-include=(".into());
    args.push("--web.listen-address=127.0.0.1:0".into());
    // Serving mode: it must exit, not serve.
    let mut child = EXPORTER
        .command(&args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running with an invalid regex");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cannot set up collectors: invalid regex in --collector.netdev.device-include: \"(\""
        ),
        "{stderr}"
    );
    assert!(stderr.contains("unclosed group"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("msg=listening"), "{stdout}");
}

#[test]
fn dns_is_off_without_probe_names() {
    let mut ex = EXPORTER.start(&host_a(), &[]);
    let body = ex.get("/metrics").text();
    assert!(!body.contains("network_dns_"), "{body}");
    assert_eq!(
        sample(&body, "network_collector_success{collector=\"dns\"}"),
        None
    );
    let h = ex.get("/health").json();
    assert!(h["components"].get("dns").is_none(), "{h}");
    assert!(!ex.get("/").text().contains("<code>dns</code>"));
    ex.signal(libc::SIGTERM);
    ex.wait(Duration::from_secs(3));
    let log = ex.log();
    assert!(
        log.contains("msg=\"dns collector off: no --dns.probe-name given\""),
        "{log}"
    );
    assert!(
        log.contains("collectors=netdev,netclass,wireless,softnet,tcpstat,netstat,sockstat"),
        "{log}"
    );
}

fn stops_cleanly_on(sig: libc::c_int, name: &str) {
    let mut ex = EXPORTER.start(&host_a(), &[]);
    assert_eq!(ex.get("/metrics").status, 200);
    let t = Instant::now();
    ex.signal(sig);
    let st = ex.wait(Duration::from_secs(3));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(st.code(), Some(0), "{st:?}");
    let log = ex.log();
    assert!(
        log.contains(&format!("msg=\"shutting down\" signal={name}")),
        "{log}"
    );
    assert!(log.contains("msg=stopped"), "{log}");
}

#[test]
fn sigterm_while_idle_exits_0() {
    stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_while_idle_exits_0() {
    stops_cleanly_on(libc::SIGINT, "SIGINT");
}

/// A scrape held inside `netdev`: `proc/net/dev` is a FIFO, so reading it waits for the test
/// to write host-a's content. SIGTERM arrives meanwhile; the exporter stops accepting but
/// answers that scrape before exiting 0.
#[test]
fn sigterm_lets_the_scrape_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("proc/net");
    std::fs::create_dir_all(&net).unwrap();
    let host_net = fixture("host-a/proc/net");
    for entry in std::fs::read_dir(&host_net).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "dev" {
            std::os::unix::fs::symlink(host_net.join(&name), net.join(&name)).unwrap();
        }
    }
    std::os::unix::fs::symlink(fixture("host-a/sys"), dir.path().join("sys")).unwrap();
    let fifo = net.join("dev");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

    let mut ex = EXPORTER.start(&tree_args(dir.path()), &[]);
    let addr = ex.addr;
    let scrape = std::thread::spawn(move || request(addr, "GET", "/metrics", &[]));

    // Opening the write end without blocking succeeds once netdev has the read end open.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                assert!(Instant::now() < deadline, "netdev never opened net/dev");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open fifo: {e}"),
        }
    };

    ex.signal(libc::SIGTERM);
    // It stops accepting...
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...but waits for the scrape it is serving.
    std::thread::sleep(Duration::from_millis(200));
    assert!(ex.is_running(), "exited with a scrape in flight");

    let dev = std::fs::read(fixture("host-a/proc/net/dev")).unwrap();
    writer.write_all(&dev).unwrap();
    drop(writer);

    let reply = scrape.join().unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.text();
    assert_eq!(success(&body, "netdev"), 1.0);
    assert_eq!(
        value(&body, "network_receive_bytes_total{device=\"eth0\"}"),
        48_291_857_223.0
    );
    let st = ex.wait(Duration::from_secs(3));
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_secret_in_the_environment_is_never_shown() {
    const SECRET: &str = "s3cr3t-value";
    let mut args = host_a();
    args.push("--log.level=debug".into());
    let mut ex = EXPORTER.start(&args, &[("NETWORK_EXPORTER_TEST_SECRET", SECRET)]);
    let mut seen = String::new();
    for path in ["/", "/metrics", "/health", "/healthz", "/ready", "/nope"] {
        let r = ex.get(path);
        seen.push_str(&String::from_utf8_lossy(&r.body));
        for (k, v) in &r.headers {
            seen.push_str(&format!("{k}: {v}\n"));
        }
    }
    let zipped = ex.request("GET", "/metrics", &[("Accept-Encoding", "gzip")]);
    seen.push_str(&gunzip(&zipped.body));
    ex.signal(libc::SIGTERM);
    assert_eq!(ex.wait(Duration::from_secs(3)).code(), Some(0));
    let log = ex.log();
    // The debug log did see every request, so it was captured.
    assert!(log.contains("msg=request"), "{log}");
    assert!(log.contains("path=/health "), "{log}");
    assert!(seen.contains("network_receive_bytes_total"));
    assert!(!seen.contains(SECRET), "secret in a reply");
    assert!(!log.contains(SECRET), "secret in the log:\n{log}");
}

#[test]
fn help_names_the_environment_twin_of_every_own_flag() {
    let out = EXPORTER
        .command(&["--help".to_owned()], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for twin in [
        "NETWORK_EXPORTER_COLLECTOR_NETDEV_DEVICE_INCLUDE",
        "NETWORK_EXPORTER_COLLECTOR_NETDEV_DEVICE_EXCLUDE",
        "NETWORK_EXPORTER_COLLECTOR_TCPSTAT_SOURCE",
        "NETWORK_EXPORTER_DNS_PROBE_NAME",
        "NETWORK_EXPORTER_DNS_SERVER",
        "NETWORK_EXPORTER_DNS_INTERVAL",
        "NETWORK_EXPORTER_DNS_TIMEOUT",
        "NETWORK_EXPORTER_DNS_RECORD_TYPE",
    ] {
        assert!(help.contains(&format!("[env: {twin}=")), "{twin}:\n{help}");
    }
}
