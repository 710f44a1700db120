//! `token-collector wrap` as a real process: output passed through byte for byte (binary,
//! large, unbuffered), stdin passed through, exit status and death by signal, SIGTERM passed
//! on, and the spool file: where, how (atomic, 0600 in 0700), what (only the records, never
//! the command line, environment or output text).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use token_collector::usage::{Captured, CapturedIdentity};

const BIN: &str = env!("CARGO_BIN_EXE_token-collector");
const SECRET: &str = "sk-ant-api03-PLANTEDSECRET-wrap-0123456789";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/capture")
        .join(name)
}

/// `token-collector wrap --spool.dir <spool> -- args...`, without the collector's variables.
fn wrap(spool: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TOKEN_COLLECTOR_") {
            c.env_remove(k);
        }
    }
    c.arg("wrap")
        .arg(format!("--spool.dir={}", spool.display()))
        .arg("--")
        .args(args);
    c
}

fn run(spool: &Path, args: &[&str]) -> Output {
    wrap(spool, args)
        .stdin(Stdio::null())
        .output()
        .expect("run wrap")
}

/// The spool's files: (name, records); checks the file and directory modes and that no
/// temporary file is left.
fn spool_files(spool: &Path) -> Vec<(String, Vec<Captured>)> {
    if !spool.exists() {
        return Vec::new();
    }
    let dir_mode = std::fs::metadata(spool).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "spool directory mode");
    let mut out = Vec::new();
    for e in std::fs::read_dir(spool).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".jsonl") && !name.starts_with('.'),
            "unexpected file {name} in the spool"
        );
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} mode");
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(!text.contains(SECRET), "secret in the spool: {text}");
        let records = text
            .lines()
            .map(|l| serde_json::from_str::<Captured>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        out.push((name, records));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Deterministic bytes covering every value.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 1024 < 256 {
                (i % 256) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

#[test]
fn binary_and_large_output_passes_through_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut data = noise(24 << 20);
    // A response in the middle of the noise, on its own line.
    let msg = br#"
{"id":"msg_01InTheNoise","type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":11,"output_tokens":22}}
"#;
    let mid = data.len() / 2;
    data.splice(mid..mid, msg.iter().copied());
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    let out = run(&spool, &["sh", "-c", "cat \"$1\"; cat \"$1\" >&2", "sh", f]);
    assert!(out.status.success());
    assert!(
        out.stdout == data,
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
    assert!(
        out.stderr == data,
        "stderr differs ({} bytes)",
        out.stderr.len()
    );
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1);
    let ids: Vec<_> = files[0].1.iter().map(|c| c.identity.clone()).collect();
    // Seen on stdout and on stderr: the collector counts a message id once.
    assert_eq!(
        ids,
        vec![
            CapturedIdentity::ApiMessage {
                message_id: "msg_01InTheNoise".into()
            };
            2
        ]
    );
}

#[test]
fn exit_status_and_death_by_signal() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    for (script, code) in [
        ("exit 0", 0),
        ("exit 42", 42),
        ("exit 255", 255),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
        ("kill -SEGV $$", 128 + 11),
    ] {
        let out = run(&spool, &["sh", "-c", script]);
        assert_eq!(out.status.code(), Some(code), "{script}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{script}");
    }
    let out = run(&spool, &["/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(!spool.exists(), "nothing recognised, no spool written");
}

#[test]
fn stdin_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let input = noise(3 << 20);
    let mut child = wrap(&dir.path().join("spool"), &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(got == input, "stdin did not come back unchanged");
}

#[test]
fn output_is_passed_on_as_it_comes() {
    // The command prints a line, then waits for input: the line must arrive before.
    let dir = tempfile::tempdir().unwrap();
    let mut child = wrap(
        &dir.path().join("spool"),
        &[
            "sh",
            "-c",
            "printf 'first (no newline yet)'; read x; echo \"got $x\"",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 22];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"first (no newline yet)");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got go\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn closed_reader_gives_the_command_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = wrap(&dir.path().join("spool"), &["yes"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 4];
    out.read_exact(&mut buf).unwrap();
    drop(out);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "yes never ended");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(128 + 13),
        "SIGPIPE, as `yes | head` reports"
    );
}

#[test]
fn sigterm_is_passed_on_and_the_spool_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let f = fixture_path("sdk_usage_repr.txt");
    let script =
        "trap 'echo got-term; exit 7' TERM; cat \"$1\"; echo ready; while :; do sleep 0.05; done";
    let mut child = wrap(&spool, &["sh", "-c", script, "sh", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "no ready line");
    }
    // SAFETY: kill on the pid of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(7));
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1.len(), 2);
}

#[test]
fn spool_records_every_shape_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let work = dir.path().join("my-project");
    std::fs::create_dir(&work).unwrap();
    let names = [
        "claude_json_result.txt",
        "api_message_curl.txt",
        "sdk_usage_repr.txt",
        "cost_block.txt",
    ];
    let mut expected_out = Vec::new();
    let mut args = vec![
        "sh".to_string(),
        "-c".into(),
        // The secret is in the command line, the environment and the output.
        format!("echo \"$TOKEN\" {SECRET}; for f in \"$@\"; do cat \"$f\"; done"),
        "sh".into(),
    ];
    expected_out.extend(format!("{SECRET} {SECRET}\n").into_bytes());
    for n in names {
        let p = fixture_path(n);
        expected_out.extend(std::fs::read(&p).unwrap());
        args.push(p.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let out = wrap(&spool, &args)
        .env("TOKEN", SECRET)
        .current_dir(&work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == expected_out, "output changed");
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1, "one file per run");
    let (name, records) = &files[0];
    // <unix ms>-<pid>-<random>.jsonl
    let parts: Vec<&str> = name.trim_end_matches(".jsonl").split('-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert!(parts[0].parse::<i64>().unwrap() >= before);
    let kinds: Vec<String> = records
        .iter()
        .map(|c| match &c.identity {
            CapturedIdentity::ClaudeCodeSession { session_id } => format!("session {session_id}"),
            CapturedIdentity::ApiMessage { message_id } => format!("message {message_id}"),
            CapturedIdentity::Anonymous { occurrence } => format!("anonymous {occurrence}"),
            CapturedIdentity::ClaudeCodeUnnamed { occurrence } => {
                format!("claude code, no session {occurrence}")
            }
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "session 6f1e2d3c-4b5a-4987-9a1b-2c3d4e5f6a7b".to_string(),
            "session 6f1e2d3c-4b5a-4987-9a1b-2c3d4e5f6a7b".to_string(),
            "message msg_01XFDUDYJgAACzvnptvVoYEL".to_string(),
            format!("anonymous {name}:4"),
            format!("anonymous {name}:5"),
            // The /cost block's model lines: Claude Code output naming no session.
            format!("claude code, no session {name}:6"),
            format!("claude code, no session {name}:7"),
        ]
    );
    for c in records {
        assert_eq!(c.cwd.as_deref(), work.to_str());
        assert!(c.seen_at_ms >= before);
    }
    let text = std::fs::read_to_string(spool.join(name)).unwrap();
    assert!(
        !text.contains("cat \\\"$f\\\""),
        "command line in the spool"
    );
}

#[test]
fn default_spool_follows_the_collectors_storage_variables() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_path("api_message_curl.txt");
    let base = || {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("TOKEN_COLLECTOR_") || k == "XDG_STATE_HOME" {
                c.env_remove(k);
            }
        }
        c.args(["wrap", "--", "cat", f.to_str().unwrap()])
            .stdout(Stdio::null());
        c
    };
    let db = dir.path().join("state/db.sqlite");
    assert!(base()
        .env("TOKEN_COLLECTOR_STORAGE_PATH", &db)
        .status()
        .unwrap()
        .success());
    assert_eq!(spool_files(&dir.path().join("state/spool")).len(), 1);
    let explicit = dir.path().join("explicit");
    assert!(base()
        .env("TOKEN_COLLECTOR_STORAGE_PATH", &db)
        .env("TOKEN_COLLECTOR_SPOOL_DIR", &explicit)
        .status()
        .unwrap()
        .success());
    assert_eq!(spool_files(&explicit).len(), 1);
    assert_eq!(
        token_collector::paths::spool_dir_for(&db),
        dir.path().join("state/spool")
    );
}

#[test]
fn usage_errors() {
    let out = Command::new(BIN).args(["wrap"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["wrap", "--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdout_and_stderr_to_one_file_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let script = "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just opened and are owned here.
    let (mut r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let mut cmd = wrap(&dir.path().join("spool"), &["sh", "-c", script]);
    cmd.stdin(Stdio::null())
        .stdout(w.try_clone().unwrap())
        .stderr(w);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert!(child.wait().unwrap().success());
    let want: String = (0..300).map(|i| format!("out{i}\nerr{i}\n")).collect();
    assert_eq!(got, want);
}

/// The value of `series` (exact text before the value) in an exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// wrap's spool as the collector counts it (`--once`): a Claude Code result counts only for
/// a session without a transcript, an API message once by its id however often it is
/// printed, an SDK `Usage(...)` once per occurrence.
#[test]
fn the_collector_counts_the_spool_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let work = dir.path().join("proj");
    let cfg = dir.path().join("cfg");
    std::fs::create_dir_all(&work).unwrap();
    // A transcript of the session of claude_json_result.txt.
    let sid = "6f1e2d3c-4b5a-4987-9a1b-2c3d4e5f6a7b";
    let project = cfg.join("projects/-proj");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        format!(
            "{{\"type\":\"assistant\",\"sessionId\":\"{sid}\",\"uuid\":\"u1\",\"requestId\":\"req_1\",\"timestamp\":\"2026-11-25T10:00:00.000Z\",\"cwd\":\"/proj\",\"message\":{{\"id\":\"msg_t1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":2}}}}}}\n"
        ),
    )
    .unwrap();
    let cat = |names: &[&str]| {
        let mut args = vec!["cat".to_string()];
        args.extend(
            names
                .iter()
                .map(|n| fixture_path(n).to_str().unwrap().to_string()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = wrap(&spool, &args)
            .current_dir(&work)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    cat(&[
        "claude_json_result.txt", // 2 records, session has a transcript: not counted
        "claude_stream_json.jsonl", // 1 record, no transcript: counted
        "api_message_curl.txt",   // counted
        "sdk_usage_repr.txt",     // 2 anonymous: counted
    ]);
    cat(&["api_message_curl.txt", "sdk_usage_repr.txt"]); // message again: duplicate
    let out = Command::new(BIN)
        .arg("--once")
        .arg(format!(
            "--storage.path={}",
            dir.path().join("state.db").display()
        ))
        .arg(format!("--spool.dir={}", spool.display()))
        .arg(format!("--claude.config-dir={}", cfg.display()))
        .env_remove("TOKEN_COLLECTOR_SPOOL_DIR")
        .env_remove("TOKEN_COLLECTOR_STORAGE_PATH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let terminal = |model: &str| {
        sample(
            &text,
            &format!("llm_requests_total{{source=\"terminal\",provider=\"anthropic\",model=\"{model}\",project=\"proj\"}}"),
        )
    };
    assert_eq!(terminal("claude-sonnet-4-5-20250929"), None, "{text}");
    assert_eq!(terminal("claude-haiku-4-5-20251001"), None, "{text}");
    assert_eq!(terminal("claude-opus-4-1-20250805"), Some(1.0), "{text}");
    // The stream-json result (no modelUsage) and four SDK usages.
    assert_eq!(terminal("unknown"), Some(5.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "llm_tokens_total{source=\"terminal\",provider=\"anthropic\",model=\"claude-opus-4-1-20250805\",project=\"proj\",type=\"cache_write_1h\"}"
        ),
        Some(2000.0)
    );
}
