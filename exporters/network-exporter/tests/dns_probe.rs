//! The DNS prober against real servers on loopback: a dnsmasq child authoritative for
//! `odin.test`, and a UDP socket that never answers.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RecordType;
use network_exporter::collectors::dns::{DnsCollector, DnsServer};
use odin_common::{Collector, Sink};
use odin_testkit::{find_sample, live_context};
use prometheus::proto::MetricFamily;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A dnsmasq on 127.0.0.1:<free port>, killed and reaped on drop. Its query log is kept.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Dnsmasq {
    /// `None` (test skipped) when dnsmasq is not installed, unless `CI` is set: then panic.
    fn start() -> Option<Self> {
        if !Path::new(DNSMASQ).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("{DNSMASQ} is missing (CI is set): install dnsmasq-base");
            }
            eprintln!("SKIPPED: {DNSMASQ} not installed (Debian package dnsmasq-base)");
            return None;
        }
        // The port is free for UDP and TCP a moment ago; another process may take it in
        // between, so try a few.
        let mut last_log = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::spawn(port) {
                Ok(d) => return Some(d),
                Err(log) => last_log = log,
            }
        }
        panic!(
            "dnsmasq did not start; its last output:\n{}",
            last_log.join("\n")
        );
    }

    fn spawn(port: u16) -> Result<Self, Vec<String>> {
        let mut child = Command::new(DNSMASQ)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--user=root",
                "--group=root",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--log-queries",
                "--log-facility=-",
                "--local=/odin.test/",
                // Answers worth caching, so a resolver cache would show in the query log.
                "--local-ttl=300",
                "--neg-ttl=300",
                "--address=/ok.odin.test/127.0.0.9",
                "--host-record=v6.odin.test,fd00::9",
                "--txt-record=txt.odin.test,hello",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnsmasq");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50)); // let the reader drain
                return Err(log.lock().unwrap().clone());
            }
            // dnsmasq logs "started" once its sockets are bound.
            if log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("started, version"))
            {
                return Ok(Self { child, addr, log });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(log.lock().unwrap().clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn server(&self) -> DnsServer {
        DnsServer::Addr(self.addr)
    }

    fn label(&self) -> String {
        self.addr.to_string()
    }

    /// How many queries of `qtype` for `name` dnsmasq has logged (waits briefly for the log
    /// to catch up with `want`).
    fn queries(&self, qtype: &str, name: &str, want: usize) -> usize {
        let needle = format!("query[{qtype}] {name} from");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let n = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(&needle))
                .count();
            if n >= want || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn collector(
    names: &[&str],
    servers: &[DnsServer],
    rt: RecordType,
    timeout: Duration,
) -> DnsCollector {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    DnsCollector::new(&names, servers, rt, Duration::from_secs(30), timeout).unwrap()
}

fn run(c: &DnsCollector) -> (anyhow::Result<()>, Vec<MetricFamily>) {
    let mut sink = Sink::new(network_exporter::SPEC.prefix);
    let res = c.collect(&live_context(), &mut sink);
    let (families, item_errors) = sink.into_parts();
    assert!(item_errors.is_empty(), "{item_errors:?}");
    (res, families)
}

fn gauge(fams: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> f64 {
    find_sample(fams, name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?}"))
        .get_gauge()
        .get_value()
}

fn lookups(fams: &[MetricFamily], name: &str, server: &str, result: &str, rcode: &str) -> f64 {
    let labels = [
        ("name", name),
        ("server", server),
        ("result", result),
        ("rcode", rcode),
    ];
    find_sample(fams, "network_dns_lookups_total", &labels)
        .unwrap_or_else(|| panic!("no network_dns_lookups_total{labels:?}"))
        .get_counter()
        .get_value()
}

/// Sum of all `network_dns_lookups_total` series of one name and server.
fn lookups_sum(fams: &[MetricFamily], name: &str, server: &str) -> f64 {
    let fam = fams
        .iter()
        .find(|f| f.name() == "network_dns_lookups_total")
        .unwrap();
    fam.get_metric()
        .iter()
        .filter(|m| {
            let l: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            l.contains(&("name", name)) && l.contains(&("server", server))
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn histogram_count(fams: &[MetricFamily], name: &str, server: &str) -> u64 {
    find_sample(
        fams,
        "network_dns_lookup_duration_seconds",
        &[("name", name), ("server", server)],
    )
    .unwrap_or_else(|| panic!("no histogram for {name} {server}"))
    .get_histogram()
    .get_sample_count()
}

#[test]
fn resolving_and_nxdomain_names() {
    let Some(dm) = Dnsmasq::start() else { return };
    let s = dm.label();
    let c = collector(
        &["ok.odin.test", "missing.odin.test"],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    let (res, fams) = run(&c);
    // One name failing is a metric, not a failed run.
    res.expect("run with one good name succeeds");

    let ok = [("name", "ok.odin.test"), ("server", s.as_str())];
    assert_eq!(
        lookups(&fams, "ok.odin.test", &s, "success", "noerror"),
        1.0
    );
    assert_eq!(lookups_sum(&fams, "ok.odin.test", &s), 1.0);
    assert_eq!(histogram_count(&fams, "ok.odin.test", &s), 1);
    assert_eq!(gauge(&fams, "network_dns_probe_success", &ok), 1.0);
    let last = gauge(&fams, "network_dns_last_lookup_duration_seconds", &ok);
    assert!(last > 0.0 && last < 2.0, "last duration {last}");

    let missing = [("name", "missing.odin.test"), ("server", s.as_str())];
    assert_eq!(
        lookups(&fams, "missing.odin.test", &s, "failure", "nxdomain"),
        1.0
    );
    assert_eq!(lookups_sum(&fams, "missing.odin.test", &s), 1.0);
    // An NXDOMAIN is an answer: its latency is observed.
    assert_eq!(histogram_count(&fams, "missing.odin.test", &s), 1);
    assert_eq!(gauge(&fams, "network_dns_probe_success", &missing), 0.0);

    // Failure series exist before any such failure, at 0, so rate() sees the first one.
    for rcode in [
        "noerror", "nxdomain", "servfail", "refused", "timeout", "error",
    ] {
        assert_eq!(
            lookups(&fams, "ok.odin.test", &s, "failure", rcode),
            0.0,
            "{rcode}"
        );
    }
    assert_eq!(
        lookups(&fams, "missing.odin.test", &s, "success", "noerror"),
        0.0
    );
}

#[test]
fn every_run_queries_the_server_no_cache() {
    let Some(dm) = Dnsmasq::start() else { return };
    let s = dm.label();
    let c = collector(
        &["ok.odin.test", "missing.odin.test"],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    for _ in 0..3 {
        run(&c).0.unwrap();
    }
    let (res, fams) = run(&c);
    res.unwrap();
    // Four runs, four real queries each, positive and negative answers alike.
    assert_eq!(dm.queries("A", "ok.odin.test", 4), 4);
    assert_eq!(dm.queries("A", "missing.odin.test", 4), 4);
    // Counters and histograms accumulate across runs.
    assert_eq!(
        lookups(&fams, "ok.odin.test", &s, "success", "noerror"),
        4.0
    );
    assert_eq!(histogram_count(&fams, "ok.odin.test", &s), 4);
    assert_eq!(
        lookups(&fams, "missing.odin.test", &s, "failure", "nxdomain"),
        4.0
    );
    // The resolver answers `localhost` itself (RFC 6761), without asking the server: probing
    // it tests nothing, as the collector's doc comment warns.
    let c = collector(
        &["localhost."],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    let (res, fams) = run(&c);
    res.unwrap();
    assert_eq!(lookups(&fams, "localhost.", &s, "success", "noerror"), 1.0);
    assert_eq!(dm.queries("A", "localhost", 0), 0);
}

#[test]
fn all_failing_fails_the_run_but_keeps_the_metrics() {
    let Some(dm) = Dnsmasq::start() else { return };
    let s = dm.label();
    let c = collector(
        &["missing.odin.test", "other.example"],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    let (res, fams) = run(&c);
    let err = res.expect_err("every lookup failed").to_string();
    assert!(err.contains("all 2 DNS lookups failed"), "{err}");
    assert!(err.contains("missing.odin.test via"), "{err}");
    // dnsmasq without upstream refuses names outside its local domain.
    assert_eq!(
        lookups(&fams, "other.example", &s, "failure", "refused"),
        1.0
    );
    assert_eq!(
        lookups(&fams, "missing.odin.test", &s, "failure", "nxdomain"),
        1.0
    );
    assert_eq!(
        gauge(
            &fams,
            "network_dns_probe_success",
            &[("name", "other.example"), ("server", &s)]
        ),
        0.0
    );
}

#[test]
fn nodata_is_a_failure_with_noerror_and_aaaa_works() {
    let Some(dm) = Dnsmasq::start() else { return };
    let s = dm.label();
    // txt.odin.test exists (TXT) but has no A record: NOERROR with an empty answer.
    let c = collector(
        &["txt.odin.test"],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    let (res, fams) = run(&c);
    assert!(res.is_err());
    assert_eq!(
        lookups(&fams, "txt.odin.test", &s, "failure", "noerror"),
        1.0
    );
    assert_eq!(
        lookups(&fams, "txt.odin.test", &s, "success", "noerror"),
        0.0
    );
    assert_eq!(histogram_count(&fams, "txt.odin.test", &s), 1);
    assert_eq!(
        gauge(
            &fams,
            "network_dns_probe_success",
            &[("name", "txt.odin.test"), ("server", &s)]
        ),
        0.0
    );

    let c = collector(
        &["v6.odin.test", "ok.odin.test"],
        &[dm.server()],
        RecordType::AAAA,
        Duration::from_secs(2),
    );
    let (res, fams) = run(&c);
    res.unwrap();
    assert_eq!(dm.queries("AAAA", "v6.odin.test", 1), 1);
    assert_eq!(
        lookups(&fams, "v6.odin.test", &s, "success", "noerror"),
        1.0
    );
    assert_eq!(
        gauge(
            &fams,
            "network_dns_probe_success",
            &[("name", "v6.odin.test"), ("server", &s)]
        ),
        1.0
    );
    // ok.odin.test has only an A address; dnsmasq answers its AAAA with NXDOMAIN.
    assert_eq!(
        lookups(&fams, "ok.odin.test", &s, "failure", "nxdomain"),
        1.0
    );
}

#[test]
fn silent_server_times_out_within_the_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let s = addr.to_string();
    let timeout = Duration::from_millis(300);
    let c = collector(
        &["ok.odin.test"],
        &[DnsServer::Addr(addr)],
        RecordType::A,
        timeout,
    );

    let start = Instant::now();
    let (res, fams) = run(&c);
    let took = start.elapsed();
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(
        took < Duration::from_millis(1200),
        "took {took:?} with a 300ms timeout"
    );
    let err = res.expect_err("the only lookup timed out").to_string();
    assert!(err.contains("ok.odin.test via 127.0.0.1:"), "{err}");
    assert!(err.ends_with(": timeout)"), "{err}");

    assert_eq!(
        lookups(&fams, "ok.odin.test", &s, "failure", "timeout"),
        1.0
    );
    assert_eq!(lookups_sum(&fams, "ok.odin.test", &s), 1.0);
    // No answer, no latency observation; the last-duration gauge shows the wait.
    assert_eq!(histogram_count(&fams, "ok.odin.test", &s), 0);
    let ok = [("name", "ok.odin.test"), ("server", s.as_str())];
    let last = gauge(&fams, "network_dns_last_lookup_duration_seconds", &ok);
    assert!((0.29..0.9).contains(&last), "last duration {last}");
    assert_eq!(gauge(&fams, "network_dns_probe_success", &ok), 0.0);

    // One attempt: exactly one query datagram reached the server.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let mut got = 0;
    while silent.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 1, "query datagrams received");
}

#[test]
fn names_on_two_servers_are_probed_concurrently() {
    let Some(dm) = Dnsmasq::start() else { return };
    let good = dm.label();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad = silent.local_addr().unwrap().to_string();
    let timeout = Duration::from_millis(500);
    let c = collector(
        &["ok.odin.test", "v6.odin.test", "missing.odin.test"],
        &[dm.server(), DnsServer::Addr(silent.local_addr().unwrap())],
        RecordType::A,
        timeout,
    );
    let start = Instant::now();
    let (res, fams) = run(&c);
    let took = start.elapsed();
    // Three timeouts on the silent server, in parallel: about one timeout (0.5s), not three.
    assert!(took < Duration::from_millis(1400), "took {took:?}");
    res.expect("some lookups succeeded");
    for name in ["ok.odin.test", "v6.odin.test", "missing.odin.test"] {
        assert_eq!(
            lookups(&fams, name, &bad, "failure", "timeout"),
            1.0,
            "{name}"
        );
        assert_eq!(
            gauge(
                &fams,
                "network_dns_probe_success",
                &[("name", name), ("server", &bad)]
            ),
            0.0
        );
    }
    assert_eq!(
        gauge(
            &fams,
            "network_dns_probe_success",
            &[("name", "ok.odin.test"), ("server", &good)]
        ),
        1.0
    );
    // v6.odin.test has only an AAAA record: NODATA for A.
    assert_eq!(
        lookups(&fams, "v6.odin.test", &good, "failure", "noerror"),
        1.0
    );
    assert_eq!(
        lookups(&fams, "missing.odin.test", &good, "failure", "nxdomain"),
        1.0
    );
    let probes = fams
        .iter()
        .find(|f| f.name() == "network_dns_probe_success")
        .unwrap();
    assert_eq!(probes.get_metric().len(), 6);
}

#[test]
fn collect_works_from_inside_a_tokio_runtime() {
    let Some(dm) = Dnsmasq::start() else { return };
    let s = dm.label();
    let c = collector(
        &["ok.odin.test"],
        &[dm.server()],
        RecordType::A,
        Duration::from_secs(2),
    );
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (res, fams) = outer.block_on(async { run(&c) });
    res.unwrap();
    assert_eq!(
        lookups(&fams, "ok.odin.test", &s, "success", "noerror"),
        1.0
    );
}

#[test]
fn system_resolver_reads_resolv_conf() {
    // `.test` never resolves on a real resolver (RFC 2606); the trailing dot keeps the search
    // list out. Whatever /etc/resolv.conf points at, this is one failed lookup on `system`.
    let c = collector(
        &["missing.odin.test."],
        &[],
        RecordType::A,
        Duration::from_secs(1),
    );
    let start = Instant::now();
    let (res, fams) = run(&c);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let err = res.expect_err("a .test name cannot resolve").to_string();
    assert!(err.contains("missing.odin.test. via system: "), "{err}");
    assert_eq!(lookups_sum(&fams, "missing.odin.test.", "system"), 1.0);
    assert_eq!(
        lookups(&fams, "missing.odin.test.", "system", "success", "noerror"),
        0.0
    );
    let labels = [("name", "missing.odin.test."), ("server", "system")];
    assert_eq!(gauge(&fams, "network_dns_probe_success", &labels), 0.0);
}
