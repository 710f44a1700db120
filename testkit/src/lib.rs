//! Test support for ODIN exporters: run the real binary (killed and reaped on drop), read its
//! log, talk HTTP/1.1 to it over loopback with a small blocking client that checks framing,
//! and look up samples in an exposition. Used by the integration tests of every exporter; a
//! test crate names its binary once with an [`Exe`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: its path (`env!("CARGO_BIN_EXE_<name>")` in the test crate) and the
/// prefix of its flags' environment twins (`NETWORK_EXPORTER_`), none of which is inherited
/// from the test's shell.
#[derive(Debug, Clone, Copy)]
pub struct Exe {
    pub bin: &'static str,
    pub env_prefix: &'static str,
}

/// `--path.procfs=<root>/proc --path.sysfs=<root>/sys`.
pub fn tree_args(root: &Path) -> Vec<String> {
    vec![
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
    ]
}

/// A command for the binary with no flag twin inherited from the environment.
impl Exe {
    /// The command with `args` and `env`, and none of the exporter's variables from outside.
    pub fn command(&self, args: &[String], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(self.bin);
        for (k, _) in std::env::vars() {
            if k.starts_with(self.env_prefix) {
                c.env_remove(k);
            }
        }
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `--once` run to the end.
    pub fn once(&self, args: &[String], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args, env);
        c.arg("--once");
        c.output()
            .unwrap_or_else(|e| panic!("run {} --once: {e}", self.bin))
    }

    /// Start serving on 127.0.0.1:0; see [`Exporter::spawn`].
    pub fn start(&self, args: &[String], env: &[(&str, &str)]) -> Exporter {
        Exporter::spawn(self, args, env)
    }
}

/// A serving exporter; killed (and reaped) on drop.
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stdout line so far (the log, when serving).
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Start on 127.0.0.1:0 and wait for the `msg=listening` log line naming the bound port.
    pub fn spawn(exe: &Exe, args: &[String], env: &[(&str, &str)]) -> Exporter {
        let mut c = exe.command(args, env);
        c.arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.bin));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let lines = Arc::clone(&stdout);
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let bytes = Arc::clone(&stderr);
        let r2 = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut err = err;
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut exporter = Exporter {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stdout,
            stderr,
            readers: vec![r1, r2],
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => exporter.addr = addr.parse().expect("listening address"),
            Err(_) => {
                let _ = exporter.child.kill();
                let _ = exporter.child.wait();
                panic!("no `msg=listening` line; log:\n{}", exporter.log());
            }
        }
        exporter
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, method, path, headers)
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Wait for the process to exit, failing the test after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The pipes close with the process: let the readers drain them.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "exporter still running after {limit:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// stdout lines so far, then stderr, as one text.
    pub fn log(&self) -> String {
        let mut s = self.stdout.lock().unwrap().join("\n");
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&self.stderr.lock().unwrap()));
        s
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `address=` of a logfmt `msg=listening` line.
pub fn listening_address(line: &str) -> Option<String> {
    if !line.split(' ').any(|kv| kv == "msg=listening") {
        return None;
    }
    line.split(' ')
        .find_map(|kv| kv.strip_prefix("address="))
        .map(str::to_owned)
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// A whole HTTP/1.1 reply as read from the socket (head, blank line, body).
    pub fn parse(raw: &[u8]) -> Reply {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of the reply head");
        let head = std::str::from_utf8(&raw[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end. The server frames every
/// reply with `Content-Length` (no chunking); that is checked here for every reply.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the exporter");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let reply = Reply::parse(&raw);
    assert_eq!(reply.header("transfer-encoding"), None);
    let len: usize = reply
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    assert_eq!(len, reply.body.len(), "content-length vs body");
    reply
}

/// The value of one series line, `series` written exactly as the exporter prints it
/// (`name{a="x",b="y"}` or a bare name).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        Some(rest.trim().parse().expect("sample value"))
    })
}

/// Like [`sample`], failing the test when the series is absent.
pub fn value(exposition: &str, series: &str) -> f64 {
    sample(exposition, series).unwrap_or_else(|| panic!("no `{series}` in:\n{exposition}"))
}

/// Series lines (not comments) of the family `name`.
pub fn series<'a>(exposition: &'a str, name: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .collect()
}
