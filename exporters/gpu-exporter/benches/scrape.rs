//! Benchmark of gpu-exporter's scrape path (`cargo bench -p gpu-exporter --bench scrape`).
//!
//! Not a test: it prints numbers and asserts nothing about them. Three measurements, one run:
//!
//! 1. NVML path: the real binary on the fake `libnvidia-ml.so` (tests/fake-nvml) with 8 GPUs
//!    (the L40S capture's load values, replicated), read on every scrape: scrape latency
//!    p50/p99 and the exporter's CPU per scrape.
//! 2. nvidia-smi path: the real binary on the fake nvidia-smi made to take 0 s and then 1 s
//!    per call; nvidia-smi runs in the background, so scrape latency should not depend on it.
//! 3. The naive design for comparison (what the seed's Python exporter did): an HTTP server
//!    that runs the same 1-second nvidia-smi inside every scrape.
//!
//! Scrapes go over one kept-alive connection with `Accept-Encoding: gzip`, as Prometheus sends
//! them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpu_exporter::nvidia_smi::parse::parse_query_gpu;
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::testing::capture::{capture_path, Capture, Phase, CAPTURES};
use gpu_exporter::testing::fake_nvml::{data_file, replicate, FakeNvml, NvmlOnly, Variant};

const BIN: &str = env!("CARGO_BIN_EXE_gpu-exporter");

fn fake_smi() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvidia-smi")
}

/// The exporter under test; killed on drop.
struct Exporter {
    child: Child,
    addr: String,
}

impl Exporter {
    fn start(args: &[String], env: &[(&str, String)]) -> Exporter {
        let mut cmd = Command::new(BIN);
        cmd.args(["--web.listen-address=127.0.0.1:0", "--log.level=info"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start gpu-exporter");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).expect("read log") == 0 {
                panic!("gpu-exporter exited before listening");
            }
            if let Some(rest) = line.split("msg=listening address=").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining the log so the exporter never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Exporter { child, addr }
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// One kept-alive HTTP/1.1 connection.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            stream: BufReader::new(s),
        }
    }

    /// GET `path`; returns (status, body length).
    fn get(&mut self, path: &str) -> (u16, usize) {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\nUser-Agent: bench\r\n\r\n"
        );
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .expect("status")
            .parse()
            .unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("body");
        (status, len)
    }
}

struct Stats {
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_scrape: Option<f64>,
    body_bytes: usize,
}

fn measure(addr: &str, n: usize, cpu: Option<&dyn Fn() -> f64>) -> Stats {
    let mut c = Client::connect(addr);
    for _ in 0..n.min(20) {
        assert_eq!(c.get("/metrics").0, 200);
    }
    let c0 = cpu.map(|f| f());
    let mut lat = Vec::with_capacity(n);
    let mut body_bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        let (status, len) = c.get("/metrics");
        lat.push(t.elapsed().as_secs_f64());
        assert_eq!(status, 200);
        body_bytes = len;
    }
    let cpu_ms_per_scrape = cpu.zip(c0).map(|(f, c0)| (f() - c0) / n as f64 * 1000.0);
    lat.sort_by(|a, b| a.total_cmp(b));
    Stats {
        p50_ms: lat[lat.len() / 2] * 1000.0,
        p99_ms: lat[(lat.len() - 1) * 99 / 100] * 1000.0,
        cpu_ms_per_scrape,
        body_bytes,
    }
}

fn wait_for_gpus(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if text.contains("\nnvidia_gpu_temperature_celsius{") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no GPU metrics from {addr} after 30 s");
}

/// The naive exporter: runs nvidia-smi inside every scrape.
fn naive_exporter(capture: PathBuf, delay: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let capture = capture.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    // Read one request's head.
                    let mut got = false;
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line.trim_end().is_empty() => break,
                            Ok(_) => got = true,
                        }
                    }
                    if !got {
                        return;
                    }
                    let out = Command::new(fake_smi())
                        .args([
                            "--query-gpu=index,uuid,temperature.gpu,power.draw,memory.used,memory.total,utilization.gpu",
                            "--format=csv,noheader,nounits",
                        ])
                        .env("FAKE_NVIDIA_SMI_CAPTURE", &capture)
                        .env("FAKE_NVIDIA_SMI_DELAY", delay)
                        .output()
                        .expect("run fake nvidia-smi");
                    let body = String::from_utf8_lossy(&out.stdout).into_owned();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                        body.len(),
                        body
                    );
                    if r.get_mut().write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn row(name: &str, s: &Stats) {
    let cpu = s
        .cpu_ms_per_scrape
        .map_or("n/a".to_owned(), |c| format!("{c:.3}"));
    println!(
        "| {name} | {:.3} | {:.3} | {cpu} | {} |",
        s.p50_ms, s.p99_ms, s.body_bytes
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let l40s = capture_path(CAPTURES[4]);
    let cap = Capture::load(CAPTURES[4]);
    let parsed = parse_query_gpu(cap.query_gpu(Phase::Load), Layout::Header).expect("parses");
    let gpus = replicate(&parsed.items[0], 8);
    let fake = FakeNvml::new(
        Variant::Current,
        &data_file(&gpus, NvmlOnly::for_gpu, &[], &[], Some(13010)),
    );

    println!("gpu-exporter scrape benchmark (release build, one kept-alive connection, gzip)\n");
    println!("| what | p50 latency (ms) | p99 latency (ms) | exporter CPU per scrape (ms) | body (bytes) |");
    println!("|---|---|---|---|---|");

    let nvml = Exporter::start(
        &[
            "--backend=nvml".into(),
            format!("--nvml.library={}", fake.lib.display()),
            "--metrics.dcgm-compat".into(),
        ],
        &[("FAKE_NVML_DATA", fake.data.display().to_string())],
    );
    wait_for_gpus(&nvml.addr);
    let s = measure(&nvml.addr, 2000, Some(&|| nvml.cpu_seconds()));
    row(
        "NVML backend, 8 GPUs, read per scrape (fake libnvidia-ml)",
        &s,
    );
    drop(nvml);

    for (delay, label) in [("0", "0 s"), ("1", "1 s")] {
        let smi = Exporter::start(
            &[
                "--backend=nvidia-smi".into(),
                format!("--nvidia-smi.command={}", fake_smi().display()),
                "--collect.interval=2s".into(),
                "--nvidia-smi.timeout=5s".into(),
            ],
            &[
                ("FAKE_NVIDIA_SMI_CAPTURE", l40s.display().to_string()),
                ("FAKE_NVIDIA_SMI_SECTION", "load".to_owned()),
                ("FAKE_NVIDIA_SMI_DELAY", delay.to_owned()),
            ],
        );
        wait_for_gpus(&smi.addr);
        let s = measure(&smi.addr, 500, Some(&|| smi.cpu_seconds()));
        row(
            &format!("nvidia-smi backend (background), nvidia-smi takes {label}"),
            &s,
        );
    }

    let naive = naive_exporter(l40s, "1");
    let s = measure(&naive, 5, None);
    row(
        "naive: nvidia-smi inside every scrape, nvidia-smi takes 1 s",
        &s,
    );
}
