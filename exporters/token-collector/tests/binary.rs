//! The real `token-collector` binary on the fixture tree (tests/fixtures/tree): `--once`,
//! restarts, `/ready`, live follow, `report`, and the planted secret
//! (`SECRET-PROMPT-XYZZY`, in a prompt and in a response of tests/fixtures/tree) that must
//! never leave the transcripts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odin_testkit::{assert_promtool_clean, copy_tree, sample, value, Exe};

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_token-collector"),
    env_prefix: "TOKEN_COLLECTOR_",
};
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tree");
const SECRET: &str = "SECRET-PROMPT-XYZZY";
const S45_ALPHA: &str = r#"source="claude_code",provider="anthropic",model="claude-sonnet-4-5-20250929",project="alpha""#;

struct Env {
    tmp: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("claude");
    copy_tree(Path::new(FIXTURES), &config);
    let db = tmp.path().join("state/state.db");
    Env { tmp, config, db }
}

fn args(e: &Env, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("--claude.config-dir={}", e.config.display()),
        format!("--storage.path={}", e.db.display()),
        "--timezone=UTC".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn once(e: &Env) -> String {
    let out = EXPORTER.once(&args(e, &[]), &[("HOME", e.tmp.path().to_str().unwrap())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(SECRET));
    String::from_utf8(out.stdout).unwrap()
}

fn check_totals(body: &str) {
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{S45_ALPHA},type=\"input\"}}")
        ),
        150_017.0
    );
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{S45_ALPHA},type=\"output\"}}")
        ),
        1045.0
    );
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{S45_ALPHA},type=\"cache_write_1h\"}}")
        ),
        200.0
    );
    assert_eq!(
        value(body, &format!("llm_requests_total{{{S45_ALPHA}}}")),
        3.0
    );
    assert!((value(body, &format!("llm_cost_usd_total{{{S45_ALPHA}}}")) - 0.963351).abs() < 1e-9);
    assert_eq!(
        value(
            body,
            r#"llm_unpriced_tokens_total{model="claude-unknown-9"}"#
        ),
        110.0
    );
    assert_eq!(
        value(
            body,
            r#"llm_web_search_requests_total{source="claude_code",provider="anthropic",model="claude-opus-4-1-20250805",project="alpha"}"#
        ),
        2.0
    );
    assert_eq!(
        value(body, r#"llm_ingest_lines_total{outcome="counted"}"#),
        8.0
    );
    assert_eq!(
        value(body, r#"llm_ingest_lines_total{outcome="duplicate"}"#),
        4.0
    );
    assert_eq!(
        value(body, r#"llm_ingest_lines_total{outcome="malformed"}"#),
        1.0
    );
    assert_eq!(
        value(body, r#"llm_ingest_lines_total{outcome="no_usage"}"#),
        4.0
    );
    assert_eq!(value(body, "llm_ingest_files_followed"), 3.0);
    assert_eq!(value(body, "llm_ingest_lag_seconds"), 0.0);
    assert_eq!(
        value(
            body,
            r#"llm_project_last_activity_timestamp_seconds{project="beta"}"#
        ),
        1_795_604_401.0
    );
}

#[test]
fn once_over_the_fixture_tree_and_a_restart_resumes() {
    let e = env();
    let body = once(&e);
    check_totals(&body);
    assert_promtool_clean(&body);
    assert!(!body.contains(SECRET));
    // The second run reads nothing new and serves the same counters from the database.
    let again = once(&e);
    check_totals(&again);
}

#[test]
fn serving_ready_after_the_first_scan_then_follows_appends() {
    let e = env();
    let home = e.tmp.path().to_str().unwrap().to_string();
    let x = EXPORTER.start(
        &args(&e, &["--ingest.rescan-interval=1h"]),
        &[("HOME", &home)],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while x.get("/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = x.get("/metrics").text();
    check_totals(&body);
    // Appended to a transcript: inotify, not the (hourly) rescan, brings it in.
    let s2 = e.config.join("projects/-home-u-src-beta/s2.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&s2).unwrap();
    writeln!(f, r#"{{"type":"assistant","cwd":"/home/u/src/beta","sessionId":"s2","message":{{"id":"msg_live","model":"claude-sonnet-4-5-20250929","usage":{{"input_tokens":1000,"output_tokens":1}}}},"requestId":"r","timestamp":"2026-11-25T12:00:00.000001Z"}}"#).unwrap();
    drop(f);
    let series = r#"llm_tokens_total{source="claude_code",provider="anthropic",model="claude-sonnet-4-5-20250929",project="beta",type="input"}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = x.get("/metrics").text();
        if sample(&body, series) == Some(1200.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "append not followed: {:?}",
            sample(&body, series)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // /health names the unpriced model; nothing anywhere holds the secret.
    let health = x.get("/health").text();
    assert!(health.contains("claude-unknown-9"), "{health}");
    assert!(!health.contains(SECRET));
    assert!(!x.get("/metrics").text().contains(SECRET));
    assert!(!x.log().contains(SECRET));
    drop(x);
    for entry in std::fs::read_dir(e.db.parent().unwrap()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn report_answers_from_the_database() {
    let e = env();
    once(&e);
    let run = |extra: &[&str]| {
        let mut args = vec!["report".to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(format!("--storage.path={}", e.db.display()));
        EXPORTER.stdout_of(&args)
    };
    let j: serde_json::Value =
        serde_json::from_str(&run(&["daily", "--json", "--timezone=UTC"])).unwrap();
    assert_eq!(j["daily"][0]["period"], "2026-11-25");
    assert_eq!(j["totals"]["input"], 151_437);
    assert_eq!(j["totals"]["requests"], 8);
    let j: serde_json::Value = serde_json::from_str(&run(&[
        "daily",
        "--json",
        "--project=beta",
        "--timezone=UTC",
    ]))
    .unwrap();
    assert_eq!(j["totals"]["input"], 200);
    // Pacific/Kiritimati (UTC+14): 10:00Z is already the 26th.
    let j: serde_json::Value =
        serde_json::from_str(&run(&["daily", "--json", "--timezone=Pacific/Kiritimati"])).unwrap();
    assert_eq!(j["daily"][0]["period"], "2026-11-26");
    let j: serde_json::Value = serde_json::from_str(&run(&[
        "monthly",
        "--json",
        "--model=opus",
        "--since=2026-11-25",
        "--until=2026-11-25",
    ]))
    .unwrap();
    assert_eq!(j["totals"]["input"], 1100);
    let j: serde_json::Value = serde_json::from_str(&run(&["session", "--json"])).unwrap();
    assert_eq!(j["sessions"].as_array().unwrap().len(), 2);
    let j: serde_json::Value =
        serde_json::from_str(&run(&["blocks", "--json", "--timezone=UTC"])).unwrap();
    assert_eq!(j["blocks"][0]["start"], "2026-11-25 10:00 UTC");
    let table = run(&["daily", "--timezone=UTC"]);
    assert!(
        table.contains("2026-11-25") && table.contains("$1.03"),
        "{table}"
    );
    assert!(!table.contains(SECRET));
}

/// A tree of `projects` x `sessions` transcripts of `responses` responses, each written as
/// three streaming lines with growing output, plus a user line; with `big` > 0, one more
/// session of `big` responses in the first project, a file larger than the full scan reads
/// ahead (it is read and committed in 4 MiB chunks).
fn generate_tree(root: &Path, projects: usize, sessions: usize, responses: usize, big: usize) {
    for p in 0..projects {
        let dir = root.join(format!("projects/-home-u-p{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        for s in 0..sessions {
            let text = session_text(p, &s.to_string(), responses);
            std::fs::write(dir.join(format!("s{s}.jsonl")), text).unwrap();
        }
    }
    if big > 0 {
        let text = session_text(0, "big", big);
        std::fs::write(root.join("projects/-home-u-p0/big.jsonl"), text).unwrap();
    }
}

/// The lines of session `s` of project `p` (see [`generate_tree`]).
fn session_text(p: usize, s: &str, responses: usize) -> String {
    let models = [
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1-20250805",
        "claude-haiku-4-5-20251001",
    ];
    let mut text = String::new();
    for r in 0..responses {
        let model = models[(p + s.len() + r) % 3];
        let ts = format!(
            "2026-11-{:02}T{:02}:{:02}:00.000Z",
            1 + r % 24,
            r % 24,
            r % 60
        );
        text.push_str(&format!(
            r#"{{"type":"user","cwd":"/home/u/p{p}","sessionId":"s{p}-{s}","message":{{"role":"user","content":"{}"}},"timestamp":"{ts}"}}"#,
            "x".repeat(200)
        ));
        text.push('\n');
        for out in [1, 10, 10 + (r * 7) % 400] {
            text.push_str(&format!(
                r#"{{"type":"assistant","cwd":"/home/u/p{p}","sessionId":"s{p}-{s}","message":{{"id":"msg_{p}_{s}_{r}","model":"{model}","content":[{{"type":"text","text":"y"}}],"usage":{{"input_tokens":{},"cache_creation_input_tokens":100,"cache_read_input_tokens":20000,"output_tokens":{out}}}}},"requestId":"req_{p}_{s}_{r}","timestamp":"{ts}"}}"#,
                1 + r % 50
            ));
            text.push('\n');
        }
    }
    text
}

/// The counters that must come out the same however often the import is killed.
fn counters(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| {
            l.starts_with("llm_tokens_total")
                || l.starts_with("llm_cost_usd_total")
                || l.starts_with("llm_requests_total")
                || l.starts_with("llm_ingest_lines_total")
        })
        .map(|l| l.to_string())
        .collect()
}

/// Lines the database at `db` says were read (every outcome), or `None` when it cannot be
/// read (not created yet).
fn lines_committed(db: &Path) -> Option<u64> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.query_row("SELECT COALESCE(SUM(n), 0) FROM lines", [], |r| {
        r.get::<_, i64>(0)
    })
    .ok()
    .map(|n| n as u64)
}

/// What the database held after each kill of a crash test: nothing committed yet (killed
/// before or inside its first transaction), part of the import, or all of it (each of those
/// followed by a check of the totals and a fresh database).
#[derive(Debug, Default)]
struct Kills {
    empty: usize,
    partial: usize,
    complete: usize,
}

/// Kill the collector with SIGKILL `kills` times at random moments of importing a generated
/// tree (`tree`: projects, sessions, responses, big session: see [`generate_tree`]),
/// restarting it on the same database each time. The delays are drawn up to the time an
/// uninterrupted import takes, so that the kills fall during the import; whenever a kill
/// finds the import complete, the totals are checked against the uninterrupted import's and
/// the next kills start over on a fresh database. At the end the import is finished
/// (`--once`) and checked the same way.
fn crash_test(kills: usize, tree: (usize, usize, usize, usize)) -> Kills {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("claude");
    let (projects, sessions, responses, big) = tree;
    generate_tree(&config, projects, sessions, responses, big);
    let home = tmp.path().to_str().unwrap().to_string();
    let base = |db: &Path| {
        vec![
            format!("--claude.config-dir={}", config.display()),
            format!("--storage.path={}", db.display()),
            "--timezone=UTC".to_string(),
        ]
    };
    let once = |db: &Path| {
        let out = EXPORTER.once(&base(db), &[("HOME", &home)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        counters(&String::from_utf8(out.stdout).unwrap())
    };
    let started = Instant::now();
    let reference = once(&tmp.path().join("ref/state.db"));
    let import_ms = started.elapsed().as_millis().max(50) as u64;
    assert!(reference.len() > 10);
    let total_lines: u64 = reference
        .iter()
        .filter(|l| l.starts_with("llm_ingest_lines_total"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap() as u64)
        .sum();
    let db = tmp.path().join("crash/state.db");
    let mut fell = Kills::default();
    let mut checked = 0;
    // A small deterministic generator of kill delays.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..kills {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let delay = Duration::from_millis((seed >> 33) % import_ms);
        let mut x = EXPORTER.start(&base(&db), &[("HOME", &home)]);
        std::thread::sleep(delay);
        x.signal(libc::SIGKILL);
        x.wait(Duration::from_secs(10));
        match lines_committed(&db) {
            None | Some(0) => fell.empty += 1,
            Some(n) if n < total_lines => fell.partial += 1,
            Some(_) => {
                fell.complete += 1;
                assert_eq!(once(&db), reference, "after kill {}", checked + 1);
                checked += 1;
                for part in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{part}", db.display()));
                }
            }
        }
    }
    assert_eq!(once(&db), reference);
    eprintln!(
        "{kills} kills during imports of {total_lines} lines (an uninterrupted one: \
         {import_ms} ms): {fell:?}; totals equal to the uninterrupted import's {} times",
        checked + 1
    );
    fell
}

#[test]
fn kill_9_during_import_loses_and_counts_nothing_twice() {
    let fell = crash_test(5, (2, 10, 100, 7500));
    assert!(
        fell.complete < 5,
        "no kill fell inside the import: {fell:?}"
    );
}

/// The issue's 100 random kill points, on a larger tree (on demand: `cargo test -p
/// token-collector --test binary kill_9_at_100_points -- --ignored`).
#[test]
#[ignore]
fn kill_9_at_100_points() {
    let fell = crash_test(100, (4, 16, 100, 25_000));
    assert!(
        fell.partial >= 30,
        "too few kills fell inside the import: {fell:?}"
    );
}

#[test]
fn the_default_spool_next_to_the_database_is_ingested() {
    let e = env();
    let spool = e.db.parent().unwrap().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let line = serde_json::json!({
        "identity": {"kind": "anonymous", "occurrence": "w1.jsonl:1"},
        "model": "claude-haiku-4-5",
        "usage": {"input": 1000, "output": 100, "cache_read": 0, "cache_write_5m": 0,
                  "cache_write_1h": 0, "web_search_requests": 0, "web_fetch_requests": 0},
        "speed": "standard",
        "stated_cost_usd": null,
        "seen_at_ms": 1_795_600_800_000_i64,
        "cwd": "/home/u/src/gamma"
    });
    std::fs::write(spool.join("w1.jsonl"), format!("{line}\nnot json\n")).unwrap();
    let body = once(&e);
    let series =
        r#"source="terminal",provider="anthropic",model="claude-haiku-4-5",project="gamma""#;
    assert_eq!(
        value(
            &body,
            &format!("llm_tokens_total{{{series},type=\"input\"}}")
        ),
        1000.0
    );
    assert!((value(&body, &format!("llm_cost_usd_total{{{series}}}")) - 0.0015).abs() < 1e-12);
    assert_eq!(
        value(&body, r#"llm_ingest_lines_total{outcome="malformed"}"#),
        2.0
    );
    assert_eq!(value(&body, "llm_ingest_files_followed"), 4.0);
}

#[test]
fn budgets_are_served_only_when_given_and_must_be_positive() {
    let e = env();
    let home = [("HOME", e.tmp.path().to_str().unwrap())];
    let body = once(&e);
    assert!(sample(&body, "llm_budget_day_usd").is_none(), "{body}");
    assert!(sample(&body, "llm_budget_block_usd").is_none(), "{body}");

    let out = EXPORTER.once(
        &args(&e, &["--budget.day-usd=25", "--budget.block-usd=7.5"]),
        &home,
    );
    assert!(out.status.success());
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(value(&body, "llm_budget_day_usd"), 25.0);
    assert_eq!(value(&body, "llm_budget_block_usd"), 7.5);

    for bad in [
        "--budget.day-usd=0",
        "--budget.day-usd=-3",
        "--budget.block-usd=lots",
    ] {
        let out = EXPORTER.once(&args(&e, &[bad]), &home);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn a_projects_directory_created_after_start_is_followed_at_once() {
    // Before its first session Claude Code's configuration directory has no `projects/`.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("claude");
    std::fs::create_dir_all(&config).unwrap();
    let db = tmp.path().join("state/state.db");
    let home = tmp.path().to_str().unwrap().to_string();
    let x = EXPORTER.start(
        &[
            format!("--claude.config-dir={}", config.display()),
            format!("--storage.path={}", db.display()),
            "--timezone=UTC".into(),
            "--ingest.rescan-interval=1h".into(),
        ],
        &[("HOME", &home)],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while x.get("/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = config.join("projects/-home-u-src-gamma");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s9.jsonl"),
        concat!(
            r#"{"type":"assistant","cwd":"/home/u/src/gamma","sessionId":"s9","message":{"id":"msg_first","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":7,"output_tokens":3}},"requestId":"r9","timestamp":"2026-11-25T12:00:00.000Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    let series = r#"llm_tokens_total{source="claude_code",provider="anthropic",model="claude-sonnet-4-5-20250929",project="gamma",type="input"}"#;
    // Well inside the hourly rescan: the watch on the configuration directory saw it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if sample(&x.get("/metrics").text(), series) == Some(7.0) {
            break;
        }
        assert!(Instant::now() < deadline, "new projects/ not followed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And from then on `projects/` itself is watched: a later session is seen too.
    let dir = config.join("projects/-home-u-src-delta");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s10.jsonl"),
        concat!(
            r#"{"type":"assistant","cwd":"/home/u/src/delta","sessionId":"s10","message":{"id":"msg_second","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":5,"output_tokens":1}},"requestId":"r10","timestamp":"2026-11-25T12:01:00.000Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    let series = series.replace("gamma", "delta");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if sample(&x.get("/metrics").text(), &series) == Some(5.0) {
            break;
        }
        assert!(Instant::now() < deadline, "later session not followed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_collector_does_not_reread_its_files() {
    // The collector's own reads of the tree must not count as changes (inotify reports every
    // open): on a tree of 4,000 files nothing may be read again while nothing changes.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("claude");
    for i in 0..4000 {
        let dir = config.join(format!("projects/-p{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("s{i}.jsonl")),
            format!(
                "{{\"type\":\"assistant\",\"cwd\":\"/p{}\",\"sessionId\":\"s{i}\",\"message\":{{\"id\":\"msg_{i}\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}},\"requestId\":\"r{i}\",\"timestamp\":\"2026-11-25T12:00:00.000Z\"}}\n",
                i % 20
            ),
        )
        .unwrap();
    }
    let x = EXPORTER.start(
        &[
            format!("--claude.config-dir={}", config.display()),
            format!("--storage.path={}", tmp.path().join("state.db").display()),
            "--timezone=UTC".into(),
            "--ingest.rescan-interval=1h".into(),
        ],
        &[("HOME", tmp.path().to_str().unwrap())],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while x.get("/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2)); // let the events of the first scan drain
    let before = cpu_ticks(x.child.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(x.child.id()) - before;
    // A re-read of 4,000 files a second costs far more than 10 ticks (0.1 s) in 3 s.
    assert!(used <= 10, "idle collector used {used} clock ticks in 3 s");
}
