//! The demo exporter (`examples/demo-exporter.rs`) as a real process: `--once`, environment
//! twins, the HTTP endpoints, readiness, a failing collector, SIGTERM and bind errors.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odin_testkit::{example_bin, json_line, listening_address, request, Exe, Exporter};

/// The demo exporter example, built once for this test process.
fn demo_exe() -> Exe {
    static BIN: OnceLock<String> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        example_bin(env!("CARGO_MANIFEST_DIR"), "odin-common", "demo-exporter")
            .to_string_lossy()
            .into_owned()
    });
    Exe {
        bin,
        env_prefix: "DEMO_EXPORTER_",
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A command for the demo exporter with no `DEMO_EXPORTER_*` variable inherited.
fn demo() -> std::process::Command {
    demo_exe().command(&[], &[])
}

/// `--once` with `args` and `env`.
fn once(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    demo_exe().once(&strings(args), env)
}

/// Serving on 127.0.0.1:0.
fn start(args: &[&str], env: &[(&str, &str)]) -> Exporter {
    demo_exe().start(&strings(args), env)
}

#[test]
fn once_prints_the_exposition_and_exits_zero() {
    let out = once(&[], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "demo_ticks_total 1\n",
        "demo_flaky_ok 1\n",
        "demo_source_info{source=\"clock\"} 1\ndemo_source_info{source=\"ticker\"} 1\n",
        "demo_collector_success{collector=\"clock\"} 1\n",
        "demo_collector_success{collector=\"flaky\"} 1\n",
        "demo_collector_success{collector=\"ticker\"} 1\n",
        "demo_collector_item_errors_total{collector=\"flaky\"} 1\n",
        "demo_exporter_build_info{version=\"0.1.0\",demo=\"false\"} 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(text.matches("# TYPE demo_source_info gauge").count(), 1);
    assert!(!text.contains("demo_idle"), "idle is off by default");
    // Logs never mix into the exposition.
    assert!(!text.contains("level="), "{text}");
}

#[test]
fn once_passes_promtool() {
    let out = once(&["--collector.idle"], &[]);
    assert_eq!(out.status.code(), Some(0));
    odin_testkit::assert_promtool_clean(&String::from_utf8(out.stdout).unwrap());
}

#[test]
fn once_exits_one_when_a_collector_fails() {
    let out = once(&["--demo.fail"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("demo_collector_success{collector=\"flaky\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("demo_collector_success{collector=\"clock\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("demo_flaky_ok"), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("level=warn msg=\"collector failed\" collector=flaky"),
        "{err}"
    );
    assert!(
        err.contains("level=error msg=\"collectors failed\" collectors=flaky"),
        "{err}"
    );
}

#[test]
fn once_honours_the_background_timeout() {
    let start = Instant::now();
    let out = once(
        &[
            "--demo.background-delay=5s",
            "--demo.background-timeout=300ms",
        ],
        &[],
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("demo_collector_success{collector=\"ticker\"} 0\n"),
        "{text}"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("timed out after 0.3s"), "{err}");
}

#[test]
fn environment_twins() {
    let out = once(&[], &[("DEMO_EXPORTER_DEMO_FAIL", "true")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "DEMO_EXPORTER_DEMO_FAIL switches the failure on"
    );

    let out = once(
        &[],
        &[
            ("DEMO_EXPORTER_DEMO_FAIL", "true"),
            ("DEMO_EXPORTER_NO_COLLECTOR_FLAKY", "true"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "flaky switched off through the environment"
    );
    assert!(!String::from_utf8(out.stdout)
        .unwrap()
        .contains("collector=\"flaky\""));

    let out = once(
        &["--demo.label=cli"],
        &[
            ("DEMO_EXPORTER_DEMO_LABEL", "x,y"),
            ("DEMO_EXPORTER_COLLECTOR_IDLE", "true"),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("demo_label_info{label=\"cli\"} 1\n"),
        "command line wins: {text}"
    );
    assert!(!text.contains("label=\"x\""), "{text}");
    assert!(text.contains("demo_idle 1\n"), "{text}");

    let out = once(&[], &[("DEMO_EXPORTER_DEMO_LABEL", "x,y")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("demo_label_info{label=\"x\"} 1\ndemo_label_info{label=\"y\"} 1\n"),
        "{text}"
    );

    let out = once(&[], &[("DEMO_EXPORTER_LOG_LEVEL", "loud")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("loud"), "{err}");
}

#[test]
fn version_help_and_bad_flags() {
    let out = demo().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "demo-exporter 0.1.0\n"
    );
    let out = demo().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("[env: DEMO_EXPORTER_WEB_LISTEN_ADDRESS=]"),
        "{help}"
    );
    assert!(help.contains("--no-collector.flaky"), "{help}");
    let out = demo().arg("--web.config.file=web.yml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serves_every_endpoint() {
    let srv = start(&["--collector.idle"], &[]);
    let r = srv.get("/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<h1>demo-exporter 0.1.0</h1>"));
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert!(text.contains("demo_idle 1\n"), "{text}");
    assert!(
        text.contains("demo_collector_result_age_seconds{collector=\"ticker\"} "),
        "{text}"
    );
    let r = srv.request("GET", "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&r.body[..]),
        &mut unzipped,
    )
    .unwrap();
    assert!(unzipped.contains("demo_idle 1\n"), "{unzipped}");
    assert_eq!(srv.get("/healthz").text(), "OK");
    assert_eq!(srv.get("/ready").status, 200);
    assert_eq!(srv.get("/health").json()["status"], "healthy");
    assert_eq!(srv.get("/favicon.ico").status, 404);
    assert_eq!(srv.request("DELETE", "/health", &[]).status, 405);
}

#[test]
fn telemetry_path_and_json_logs() {
    let srv = start(
        &["--web.telemetry-path=/x/metrics"],
        &[("DEMO_EXPORTER_LOG_FORMAT", "json")],
    );
    assert_eq!(srv.get("/x/metrics").status, 200);
    assert_eq!(srv.get("/metrics").status, 404);
    let line = srv.wait_for_line(Duration::from_secs(5), |l| listening_address(l).is_some());
    let v = json_line(&line).expect("a JSON log line");
    assert_eq!(v["level"], "info");
    assert_eq!(v["telemetry_path"], "/x/metrics");
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn failing_collector_degrades_health() {
    let srv = start(&[], &[("DEMO_EXPORTER_DEMO_FAIL", "1")]);
    for _ in 0..11 {
        assert_eq!(
            srv.get("/metrics").status,
            200,
            "a failing collector never fails the scrape"
        );
    }
    let h = srv.get("/health").json();
    assert_eq!(h["status"], "degraded", "{h}");
    let flaky = &h["components"]["flaky"];
    assert_eq!(flaky["healthy"], false);
    assert_eq!(flaky["consecutive_failures"], 11);
    assert_eq!(flaky["item_errors_total"], 11);
    let errors = flaky["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 10);
    assert_eq!(errors[0]["message"], "demo failure 2 (procfs /proc)");
    assert_eq!(errors[9]["message"], "demo failure 11 (procfs /proc)");
    assert!(errors[9]["time"].as_f64().unwrap() > 1.6e9);
    assert_eq!(h["components"]["clock"]["healthy"], true);
    assert_eq!(srv.get("/healthz").status, 200);
    // Logged once on the change to failing, not on every scrape.
    let warns: Vec<String> = srv
        .stdout_lines()
        .into_iter()
        .filter(|l| l.contains("msg=\"collector failed\""))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
}

#[test]
fn ready_after_the_first_background_run() {
    let srv = start(&["--demo.background-delay=1500ms"], &[]);
    let r = srv.get("/ready");
    assert_eq!(r.status, 503);
    let h = srv.get("/health").json();
    assert_eq!(h["components"]["ticker"]["state"], "pending");
    assert_eq!(
        h["components"]["ticker"]["last_success"],
        serde_json::Value::Null
    );
    let text = srv.get("/metrics").text();
    assert!(
        text.contains("demo_collector_success{collector=\"ticker\"} 0\n"),
        "{text}"
    );
    assert!(!text.contains("demo_ticks_total"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.get("/ready").status != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = srv.get("/metrics").text();
    assert!(text.contains("demo_ticks_total 1\n"), "{text}");
}

#[test]
fn overdue_background_run_is_unhealthy_until_it_returns() {
    let srv = start(
        &[
            "--demo.background-delay=2s",
            "--demo.background-timeout=300ms",
            "--no-collector.clock",
            "--no-collector.flaky",
        ],
        &[],
    );
    std::thread::sleep(Duration::from_millis(700));
    let h = srv.get("/health").json();
    assert_eq!(h["components"]["ticker"]["state"], "overdue", "{h}");
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert_eq!(srv.get("/healthz").status, 503);
    let text = srv.get("/metrics").text();
    assert!(
        text.contains("demo_collector_success{collector=\"ticker\"} 0\n"),
        "{text}"
    );
}

#[test]
fn sigterm_finishes_the_scrape_in_flight_and_exits_zero() {
    let mut srv = start(&["--demo.scrape-delay=1500ms"], &[]);
    let addr = srv.addr;
    let scrape = std::thread::spawn(move || request(addr, "GET", "/metrics", &[]));
    std::thread::sleep(Duration::from_millis(400));
    srv.signal(libc::SIGTERM);
    let status = srv.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let r = scrape.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("demo_time_seconds "), "{}", r.text());
    let rest = srv.stdout_lines().join("\n");
    assert!(
        rest.contains("msg=\"shutting down\" signal=SIGTERM"),
        "{rest}"
    );
    assert!(rest.contains("msg=stopped"), "{rest}");
}

#[test]
fn bind_failure_is_reported_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = demo()
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "demo-exporter: cannot listen on 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("address already in use"),
        "{err}"
    );
}

#[test]
fn listen_address_from_the_environment() {
    let srv = demo_exe().start_as_given(
        &[],
        &[(
            "DEMO_EXPORTER_WEB_LISTEN_ADDRESS",
            "127.0.0.1:0,127.0.0.1:0",
        )],
    );
    assert_eq!(srv.get("/healthz").status, 200);
    assert!(srv.addr.ip().is_loopback());
    // A second listener was opened too.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listening: Vec<String> = srv
            .stdout_lines()
            .into_iter()
            .filter(|l| l.contains("msg=listening address=127.0.0.1:"))
            .collect();
        if listening.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{listening:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn misspelt_collector_is_refused_at_start() {
    // On the command line clap refuses the unknown flag; in the environment the runtime does.
    let out = once(&["--collector.idel"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = once(&[], &[("DEMO_EXPORTER_COLLECTOR_IDEL", "true")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("DEMO_EXPORTER_COLLECTOR_IDEL"), "{err}");
    assert!(err.contains("clock, ticker, flaky, idle"), "{err}");
    assert!(out.stdout.is_empty(), "nothing collected");
}

#[test]
fn only_enabled_collectors_are_built() {
    let out = once(&["--no-collector.ticker", "--no-collector.flaky"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("demo_collector_success{collector=\"clock\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("collector=\"ticker\""), "{text}");
    assert!(!text.contains("collector=\"flaky\""), "{text}");
    assert!(!text.contains("collector=\"idle\""), "{text}");
}
