//! Test support for ODIN exporters: run the real binary (killed and reaped on drop), read its
//! log, talk HTTP/1.1 to it over loopback with a small blocking client that checks framing,
//! and look up samples in an exposition. Used by the integration tests of every exporter; a
//! test crate names its binary once with an [`Exe`].

pub mod faults;
pub mod mutate;
pub mod process;

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

    /// Run with `args` (a subcommand, say) to the end; its stdout, failing the test (with
    /// stderr) unless it exits 0.
    pub fn stdout_of(&self, args: &[String]) -> String {
        let out = self
            .command(args, &[])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin));
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.bin,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Start serving on 127.0.0.1:0; see [`Exporter::spawn`].
    pub fn start(&self, args: &[String], env: &[(&str, &str)]) -> Exporter {
        Exporter::spawn(self, args, env)
    }

    /// Start serving where `args`/`env` say (no `--web.listen-address` added); see
    /// [`Exporter::spawn_as_given`].
    pub fn start_as_given(&self, args: &[String], env: &[(&str, &str)]) -> Exporter {
        Exporter::spawn_as_given(self, args, env)
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
    /// Start on 127.0.0.1:0 and wait for the `listening` log line naming the bound port.
    pub fn spawn(exe: &Exe, args: &[String], env: &[(&str, &str)]) -> Exporter {
        let mut args = args.to_vec();
        args.push("--web.listen-address=127.0.0.1:0".into());
        Exporter::spawn_as_given(exe, &args, env)
    }

    /// Start with exactly `args` and `env` and wait for the first `listening` log line (logfmt
    /// or JSON); [`Exporter::addr`] is the address it names.
    pub fn spawn_as_given(exe: &Exe, args: &[String], env: &[(&str, &str)]) -> Exporter {
        let mut c = exe.command(args, env);
        c.stdin(Stdio::null())
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
                panic!("no `listening` log line; log:\n{}", exporter.log());
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

    /// The stdout lines (the log, when serving) so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Wait until some stdout line satisfies `pred` and return it, failing the test after
    /// `limit`.
    pub fn wait_for_line(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.stdout_lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no such log line within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The `address` of a `listening` log line, logfmt (`msg=listening address=...`) or JSON.
pub fn listening_address(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v = json_line(line)?;
        return (v["msg"] == "listening")
            .then(|| v["address"].as_str().map(str::to_owned))
            .flatten();
    }
    if !line.split(' ').any(|kv| kv == "msg=listening") {
        return None;
    }
    field(line, "address").map(str::to_owned)
}

/// The value of `key=` in a logfmt line (unquoted values only).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// One JSON log line (`--log.format=json`), or `None` when it is not a JSON object.
pub fn json_line(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(serde_json::Value::is_object)
}

/// The JSON log lines of a log text, skipping anything else.
pub fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines().filter_map(json_line).collect()
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

/// The values of label `label` over the series of family `name`, in order of appearance.
pub fn label_values(exposition: &str, name: &str, label: &str) -> Vec<String> {
    let key = format!("{label}=\"");
    series(exposition, name)
        .into_iter()
        .filter_map(|line| {
            let start = line.find(&key)? + key.len();
            let rest = &line[start..];
            let mut value = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(value),
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            None
        })
        .collect()
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

/// A collector context on a fixture tree: `<root>/proc` and `<root>/sys`, 5 s budget.
pub fn fixture_context(root: &Path) -> odin_common::Context {
    odin_common::Context {
        procfs: root.join("proc"),
        sysfs: root.join("sys"),
        timeout: Duration::from_secs(5),
    }
}

/// What `promtool check metrics` says about an exposition: `Some("")` when it is clean,
/// `Some(complaints)` otherwise, `None` when promtool is not installed (allowed outside CI;
/// in CI, where `CI` is set, its absence fails the test).
pub fn promtool_check_metrics(exposition: &str) -> Option<String> {
    let path = "/usr/bin/promtool";
    if !Path::new(path).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{path} is missing; CI must install the prometheus package"
        );
        eprintln!("skipping the promtool check: {path} not installed");
        return None;
    }
    let mut child = Command::new(path)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    let text = exposition.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("promtool output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !said.is_empty(),
        "promtool failed silently: {:?}",
        out.status
    );
    Some(said)
}

/// Like [`promtool_check_metrics`], failing the test unless promtool prints nothing.
pub fn assert_promtool_clean(exposition: &str) {
    if let Some(said) = promtool_check_metrics(exposition) {
        assert_eq!(said, "", "promtool check metrics must print nothing");
    }
}

/// The binary of example `name` of package `package` (whose directory is `manifest_dir`),
/// built once per test process with the profile and target directory of the calling test.
/// `cargo test` builds examples already; this makes `cargo test --test x` work too.
pub fn example_bin(manifest_dir: &str, package: &str, name: &str) -> std::path::PathBuf {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = format!("{package}/{name}");
    if let Some(bin) = built.get(&key) {
        return bin.clone();
    }
    // .../target/debug/deps/<this test> -> .../target/debug/examples/<name>
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", name, "-p", package])
        .current_dir(manifest_dir)
        .env("CARGO_TARGET_DIR", &target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building example {name} failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} missing", bin.display());
    built.insert(key, bin.clone());
    bin
}

// ---- Collector unit tests: contexts and samples in a Sink (added for network-exporter) ----

/// A collector context whose procfs and sysfs roots are both `dir` (a temporary tree holding
/// `net/dev`, `class/net/...` directly), 5 s budget.
pub fn dir_context(dir: &Path) -> odin_common::Context {
    odin_common::Context {
        procfs: dir.to_path_buf(),
        sysfs: dir.to_path_buf(),
        timeout: Duration::from_secs(5),
    }
}

/// A collector context on the machine the tests run on: `/proc` and `/sys`, 5 s budget.
pub fn live_context() -> odin_common::Context {
    odin_common::Context {
        procfs: "/proc".into(),
        sysfs: "/sys".into(),
        timeout: Duration::from_secs(5),
    }
}

/// The sample of family `name` (its full name, prefix included) whose labels are exactly
/// `labels`, in any order, among a collector's families (`sink.families()`).
pub fn find_sample<'a>(
    families: &'a [prometheus::proto::MetricFamily],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus::proto::Metric> {
    let family = families.iter().find(|f| f.name() == name)?;
    family.get_metric().iter().find(|m| {
        m.get_label().len() == labels.len()
            && labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|pair| pair.name() == *k && pair.value() == *v)
            })
    })
}

/// The value of a gauge or counter sample written into `sink`; see [`find_sample`].
pub fn sink_value(sink: &odin_common::Sink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = sink.families().iter().find(|f| f.name() == name)?;
    let sample = find_sample(sink.families(), name, labels)?;
    Some(match family.get_field_type() {
        prometheus::proto::MetricType::COUNTER => sample.get_counter().get_value(),
        _ => sample.get_gauge().get_value(),
    })
}

/// The values of label `label` over the samples of family `name` in `sink`, in output order.
pub fn sink_label_values(sink: &odin_common::Sink, name: &str, label: &str) -> Vec<String> {
    sink.families()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|pair| pair.name() == label)
                .map(|pair| pair.value().to_owned())
        })
        .collect()
}

/// Every regular file under `dir`, depth first in name order; symbolic links are not followed
/// (a sysfs tree links back into itself). The files of a fixture tree a test mutates one by
/// one.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let kind = e.file_type().expect("file type");
            if kind.is_dir() {
                walk(&e.path(), out);
            } else if kind.is_file() {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// `<prefix>_collector_success{collector}` in an exposition, if there.
pub fn collector_success(exposition: &str, prefix: &str, collector: &str) -> Option<f64> {
    sample(
        exposition,
        &format!("{prefix}_collector_success{{collector=\"{collector}\"}}"),
    )
}

/// `<prefix>_collector_item_errors_total{collector}` in an exposition (panics if absent).
pub fn collector_item_errors(exposition: &str, prefix: &str, collector: &str) -> f64 {
    value(
        exposition,
        &format!("{prefix}_collector_item_errors_total{{collector=\"{collector}\"}}"),
    )
}

/// Copy the directory tree `from` to `to` (created as needed): a fixture tree a test may change.
/// Symbolic links are copied as links (sysfs trees are made of them), with the same target.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("read link");
            std::os::unix::fs::symlink(&link, &target)
                .unwrap_or_else(|e| panic!("link {}: {e}", target.display()));
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy to {}: {e}", target.display()));
        }
    }
}
