//! token-collector's database under faults, through the real binary on generated transcript
//! trees: a full disk while it writes, the database deleted or damaged while it runs and
//! before it starts. Every test ends by comparing the counters with two oracles: the token
//! sums worked out from the generated responses (each counted once with its largest usage)
//! and an uninterrupted `--once` import of the same responses into a fresh database; and by
//! restarting on the database, which must serve the same counters (persisted once).
//!
//! A full disk is made two ways. Always: a file size limit (RLIMIT_FSIZE) lowered on the
//! running exporter with prlimit(2), which needs no privilege; every write of SQLite at an
//! offset past it fails with EFBIG (the exporter ignores SIGXFSZ, which would kill it).
//! Where mounting is allowed (root with CAP_SYS_ADMIN): the database on a 8 MiB tmpfs filled
//! up by a file, which gives the real ENOSPC; elsewhere that test says it is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use odin_testkit::{sample, value, Exe, Exporter};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_token-collector"),
    env_prefix: "TOKEN_COLLECTOR_",
};

const MODELS: [&str; 3] = [
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
];

/// One generated session: project, session id, and its responses `first..first + n`.
#[derive(Clone, Copy)]
struct Session {
    project: usize,
    id: usize,
    first: usize,
    n: usize,
}

impl Session {
    fn path(&self, config: &Path) -> PathBuf {
        config.join(format!(
            "projects/-home-u-p{}/s{}.jsonl",
            self.project, self.id
        ))
    }

    fn output(r: usize) -> u64 {
        10 + (r as u64 * 7) % 400
    }

    /// A user line and three streaming snapshots per response (output 1, 10, final).
    fn lines(&self) -> String {
        let (p, s) = (self.project, self.id);
        let mut text = String::new();
        for r in self.first..self.first + self.n {
            let model = MODELS[(p + s + r) % 3];
            let ts = format!(
                "2026-11-{:02}T{:02}:{:02}:00.000Z",
                1 + r % 24,
                r % 24,
                r % 60
            );
            text.push_str(&format!(
                r#"{{"type":"user","cwd":"/home/u/p{p}","sessionId":"s{p}-{s}","message":{{"role":"user","content":"hello"}},"timestamp":"{ts}"}}"#
            ));
            text.push('\n');
            for out in [1, 10, Self::output(r)] {
                text.push_str(&format!(
                    r#"{{"type":"assistant","cwd":"/home/u/p{p}","sessionId":"s{p}-{s}","message":{{"id":"msg_{p}_{s}_{r}","model":"{model}","content":[{{"type":"text","text":"y"}}],"usage":{{"input_tokens":{},"cache_creation_input_tokens":100,"cache_read_input_tokens":20000,"output_tokens":{out}}}}},"requestId":"req_{p}_{s}_{r}","timestamp":"{ts}"}}"#,
                    1 + r % 50
                ));
                text.push('\n');
            }
        }
        text
    }

    /// Append this session's lines to its file (created as needed).
    fn write(&self, config: &Path) {
        let path = self.path(config);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(self.lines().as_bytes()).unwrap();
    }
}

/// The oracle: tokens by type (input, output, cache_read, cache_write_5m, cache_write_1h)
/// and requests, each response once with its largest usage.
fn expected(sessions: &[Session]) -> ([u64; 5], u64) {
    let mut t = [0u64; 5];
    let mut requests = 0;
    for s in sessions {
        for r in s.first..s.first + s.n {
            t[0] += 1 + (r % 50) as u64;
            t[1] += Session::output(r);
            t[2] += 20_000;
            t[3] += 100;
            requests += 1;
        }
    }
    (t, requests)
}

const TYPES: [&str; 5] = [
    "input",
    "output",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
];

/// Tokens by type and requests, summed over every series of an exposition.
fn served(body: &str) -> ([u64; 5], u64) {
    let mut t = [0u64; 5];
    let mut requests = 0;
    for l in body.lines() {
        let Some((series, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = match v.parse() {
            Ok(v) => v,
            Err(_) => continue,
        };
        if series.starts_with("llm_tokens_total{") {
            let i = TYPES
                .iter()
                .position(|ty| series.contains(&format!("type=\"{ty}\"")))
                .unwrap();
            t[i] += v as u64;
        } else if series.starts_with("llm_requests_total{") {
            requests += v as u64;
        }
    }
    (t, requests)
}

/// The counter lines that must be equal to an uninterrupted import's.
fn counters(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| {
            l.starts_with("llm_tokens_total")
                || l.starts_with("llm_cost_usd_total")
                || l.starts_with("llm_requests_total")
                || l.starts_with("llm_web_search_requests_total")
        })
        .map(str::to_string)
        .collect()
}

struct Env {
    tmp: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("claude");
        std::fs::create_dir_all(config.join("projects")).unwrap();
        let db = tmp.path().join("state/state.db");
        Env { tmp, config, db }
    }

    fn home(&self) -> String {
        self.tmp.path().to_str().unwrap().to_string()
    }

    fn args(&self, db: &Path, config: &Path) -> Vec<String> {
        vec![
            format!("--claude.config-dir={}", config.display()),
            format!("--storage.path={}", db.display()),
            "--timezone=UTC".to_string(),
        ]
    }

    fn start(&self) -> Exporter {
        EXPORTER.start(
            &self.args(&self.db, &self.config),
            &[("HOME", &self.home())],
        )
    }

    /// `--once` on the database: (exit status success, exposition, log).
    fn once_on(&self, db: &Path, config: &Path) -> (bool, String, String) {
        let out = EXPORTER.once(&self.args(db, config), &[("HOME", &self.home())]);
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What an uninterrupted import of `sessions` into a fresh database serves.
    fn reference(&self, sessions: &[Session]) -> Vec<String> {
        let root = self.tmp.path().join("reference");
        let config = root.join("claude");
        let _ = std::fs::remove_dir_all(&root);
        for s in sessions {
            s.write(&config);
        }
        let (ok, body, log) = self.once_on(&root.join("state.db"), &config);
        assert!(ok, "{log}");
        counters(&body)
    }

    /// Every check at the end: the served counters equal both oracles, and a restart on the
    /// database serves them again.
    fn check(&self, body: &str, sessions: &[Session], x: Option<Exporter>) {
        assert_eq!(served(body), expected(sessions), "the generated responses");
        let reference = self.reference(sessions);
        assert!(reference.len() > 10);
        assert_eq!(counters(body), reference, "an uninterrupted import");
        if let Some(mut x) = x {
            x.signal(libc::SIGTERM);
            x.wait(Duration::from_secs(10));
        }
        let (ok, again, log) = self.once_on(&self.db, &self.config);
        assert!(ok, "{log}");
        assert_eq!(counters(&again), reference, "after a restart");
    }
}

/// Scrape until `done` holds, failing the test after `limit`; the last exposition.
fn wait_for(x: &Exporter, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let body = x.get("/metrics").text();
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{body}\nhealth: {}\nlog:\n{}",
            x.get("/health").text(),
            x.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ingest_ok(body: &str) -> bool {
    sample(body, r#"llm_collector_success{collector="ingest"}"#) == Some(1.0)
}

fn ingest_failed(body: &str) -> bool {
    sample(body, r#"llm_collector_success{collector="ingest"}"#) == Some(0.0)
}

/// Serving, with every response of `sessions` counted.
fn caught_up(x: &Exporter, sessions: &[Session]) -> String {
    let (_, want) = expected(sessions);
    wait_for(x, Duration::from_secs(30), "caught up", |b| {
        ingest_ok(b) && served(b).1 == want
    })
}

fn set_fsize(pid: u32, limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) on our own child with a valid rlimit and no old-value pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

const A: Session = Session {
    project: 0,
    id: 0,
    first: 0,
    n: 200,
};
const A_MORE: Session = Session {
    project: 0,
    id: 0,
    first: 200,
    n: 50,
};
const B: Session = Session {
    project: 1,
    id: 1,
    first: 0,
    n: 300,
};

#[test]
fn a_full_disk_by_file_size_limit_loses_nothing_and_resumes() {
    let e = Env::new();
    A.write(&e.config);
    let x = e.start();
    caught_up(&x, &[A]);
    let before = counters(&x.get("/metrics").text());

    // Every write past byte 1 of any file now fails (EFBIG).
    set_fsize(x.child.id(), 1);
    A_MORE.write(&e.config);
    B.write(&e.config);
    let failing = wait_for(
        &x,
        Duration::from_secs(20),
        "the failure shown",
        ingest_failed,
    );
    let health = x.get("/health").text();
    assert!(health.contains("cannot write database"), "{health}");
    assert!(
        x.log().contains("cannot write database"),
        "logged: {}",
        x.log()
    );
    // Nothing of what could not be written is counted, and the exporter serves on.
    assert_eq!(counters(&failing), before);
    std::thread::sleep(Duration::from_secs(2));
    assert!(ingest_failed(&x.get("/metrics").text()), "still failing");

    // Space again: it resumes by itself and counts what came meanwhile, once.
    set_fsize(x.child.id(), libc::RLIM_INFINITY);
    let body = caught_up(&x, &[A, A_MORE, B]);
    e.check(&body, &[A, A_MORE, B], Some(x));
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(dir.to_path_buf())),
            other => {
                eprintln!("skipped: cannot mount a tmpfs here ({other:?})");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write to `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
}

#[test]
fn a_full_tmpfs_loses_nothing_and_resumes() {
    let e = Env::new();
    let Some(_mount) = Mount::tmpfs(&e.tmp.path().join("state"), "8m") else {
        return;
    };
    let small = Session {
        project: 2,
        id: 2,
        first: 0,
        n: 20,
    };
    // Large enough that its rows cannot fit in the space the write-ahead log already has.
    let big = Session {
        project: 3,
        id: 3,
        first: 0,
        n: 3000,
    };
    small.write(&e.config);
    let x = e.start();
    caught_up(&x, &[small]);
    let filler = e.tmp.path().join("state/filler");
    fill(&filler);
    big.write(&e.config);
    wait_for(
        &x,
        Duration::from_secs(20),
        "the failure shown",
        ingest_failed,
    );
    let health = x.get("/health").text();
    assert!(
        health.contains("cannot write database") && health.contains("full"),
        "{health}"
    );
    std::fs::remove_file(&filler).unwrap();
    let body = caught_up(&x, &[small, big]);
    e.check(&body, &[small, big], Some(x));
}

fn rebuilds(body: &str) -> f64 {
    value(body, "llm_database_rebuilds_total")
}

#[test]
fn the_database_deleted_while_running_is_rebuilt_counting_nothing_twice() {
    let e = Env::new();
    let c = Session {
        project: 2,
        id: 5,
        first: 0,
        n: 40,
    };
    A.write(&e.config);
    c.write(&e.config);
    let x = e.start();
    caught_up(&x, &[A, c]);
    // A transcript goes (Claude Code's 30-day cleanup), then the database, its -wal left.
    std::fs::remove_file(c.path(&e.config)).unwrap();
    std::fs::remove_file(&e.db).unwrap();
    A_MORE.write(&e.config);
    B.write(&e.config);
    let body = wait_for(&x, Duration::from_secs(30), "rebuilt and caught up", |b| {
        sample(b, "llm_database_rebuilds_total") == Some(1.0)
            && ingest_ok(b)
            && served(b).1 == expected(&[A, c, A_MORE, B]).1
    });
    assert!(e.db.exists(), "a new database file");
    let log = x.log();
    assert!(log.contains("was deleted while in use"), "{log}");
    let health = x.get("/health").text();
    assert!(health.contains("database rebuilt at"), "{health}");
    // The deleted transcript's usage stays in the counters, now and after a restart.
    e.check(&body, &[A, c, A_MORE, B], Some(x));
}

/// Overwrite the start of the database file in place (same inode), as a disk or a stray
/// writer would.
fn scribble(db: &Path) {
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.write_all(&[0xa5u8; 4096]).unwrap();
}

#[test]
fn the_database_damaged_while_running_is_moved_aside_and_rebuilt() {
    let e = Env::new();
    A.write(&e.config);
    let x = e.start();
    caught_up(&x, &[A]);
    // Make sure the main file holds the data (not only the write-ahead log), then damage it.
    x.signal(libc::SIGTERM);
    let mut x = x;
    x.wait(Duration::from_secs(10));
    let x = e.start();
    caught_up(&x, &[A]);
    scribble(&e.db);
    B.write(&e.config);
    let body = wait_for(&x, Duration::from_secs(30), "rebuilt and caught up", |b| {
        sample(b, "llm_database_rebuilds_total") == Some(1.0)
            && ingest_ok(b)
            && served(b).1 == expected(&[A, B]).1
    });
    assert!(x.log().contains("is damaged"), "{}", x.log());
    let kept: Vec<String> = std::fs::read_dir(e.db.parent().unwrap())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.db.corrupt-"))
        .collect();
    assert!(!kept.is_empty(), "the damaged file kept aside");
    e.check(&body, &[A, B], Some(x));
}

#[test]
fn a_damaged_or_missing_database_at_start_is_rebuilt_from_the_transcripts() {
    let e = Env::new();
    A.write(&e.config);
    B.write(&e.config);
    let (ok, first, log) = e.once_on(&e.db, &e.config);
    assert!(ok, "{log}");
    assert_eq!(rebuilds(&first), 0.0);

    scribble(&e.db);
    let (ok, body, log) = e.once_on(&e.db, &e.config);
    assert!(ok, "{log}");
    assert!(
        log.contains("is damaged") && log.contains("moved to"),
        "{log}"
    );
    assert_eq!(rebuilds(&body), 1.0);
    assert_eq!(counters(&body), counters(&first), "no counter jumps");
    e.check(&body, &[A, B], None);

    // Deleted while stopped: a new database, the same counters.
    std::fs::remove_file(&e.db).unwrap();
    let (ok, body, log) = e.once_on(&e.db, &e.config);
    assert!(ok, "{log}");
    assert_eq!(counters(&body), counters(&first));
}

#[test]
fn a_full_disk_is_no_crash_when_sigxfsz_would_kill() {
    // With the default disposition, a write past RLIMIT_FSIZE kills the writer (SIGXFSZ).
    // The exporter ignores it: a --once run under a limit too small for its database fails
    // with a database error and exit status 1, not a signal.
    let e = Env::new();
    A.write(&e.config);
    let mut c = EXPORTER.command(&e.args(&e.db, &e.config), &[("HOME", &e.home())]);
    c.arg("--once");
    std::fs::create_dir_all(e.db.parent().unwrap()).unwrap();
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {log}", out.status);
    let db = e.db.display().to_string();
    assert!(
        log.contains(&format!("database {db}"))
            && (log.contains("I/O error") || log.contains("full")),
        "{log}"
    );
}
