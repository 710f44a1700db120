//! Starting the demo exporter (`examples/demo-exporter.rs`) and talking HTTP to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The demo exporter binary, built (once per test process) with the same profile and target
/// directory as this test.
pub fn demo_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // .../target/debug/deps/<this test> → .../target/debug/examples/demo-exporter
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap().to_path_buf();
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        // Cheap when `cargo test` already built the example; needed for `--test` runs.
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--example",
                "demo-exporter",
                "-p",
                "odin-common",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the demo exporter failed");
        let bin = profile_dir.join("examples").join("demo-exporter");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A command for the demo exporter with no `DEMO_EXPORTER_*` variables inherited.
pub fn demo() -> Command {
    let mut c = Command::new(demo_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("DEMO_EXPORTER_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn once(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = demo();
    c.arg("--once").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A running demo exporter; killed on drop.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// stdout lines as they come.
    pub lines: mpsc::Receiver<String>,
    /// The log line announcing the (first) bound address.
    pub listening_line: String,
}

impl Running {
    /// Start with `args` (and `env`), listening on 127.0.0.1:0 unless the args/env say
    /// otherwise; wait for the `listening` log line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut c = demo();
        if !env
            .iter()
            .any(|(k, _)| *k == "DEMO_EXPORTER_WEB_LISTEN_ADDRESS")
            && !args.iter().any(|a| a.starts_with("--web.listen-address"))
        {
            c.arg("--web.listen-address=127.0.0.1:0");
        }
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "no `listening` line from the exporter; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            if let Some(addr) = listening_address(&line) {
                return Running {
                    child,
                    addr: addr.parse().unwrap(),
                    lines: rx,
                    listening_line: line,
                };
            }
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, "")
    }

    /// Send SIGTERM.
    pub fn term(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    /// Wait for exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Remaining stdout lines after exit.
    pub fn rest(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            v.push(l);
        }
        v
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address of a `listening` log line, logfmt or JSON.
pub fn listening_address(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return (v["msg"] == "listening")
            .then(|| v["address"].as_str().map(str::to_owned))
            .flatten();
    }
    line.contains("msg=listening")
        .then(|| field(line, "address").map(str::to_owned))
        .flatten()
}

/// Value of `key=` in a logfmt line (unquoted values only).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

pub use odin_testkit::Reply;

/// One HTTP/1.1 request with `Connection: close`; reads the reply to the end.
pub fn request(addr: SocketAddr, method: &str, path: &str, extra_headers: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    Reply::parse(&raw)
}
