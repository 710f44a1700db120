//! `token-collector shell-init bash|zsh|fish` for real: each shell (skipped, with a message,
//! only when it is not installed) loads the printed function and runs a fake `claude` from
//! PATH that prints a canned `claude -p --output-format json` result and exits 5.
//! Non-interactive runs (`-p`, or stdout not a terminal) must go through `wrap`: output and
//! exit status unchanged, arguments intact, a spool file with the result's records.
//! Interactive runs (stdout a terminal, no `-p`) must reach `claude` directly, terminal and
//! all, and write no spool.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use token_collector::usage::{Captured, CapturedIdentity};

const BIN: &str = env!("CARGO_BIN_EXE_token-collector");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/capture")
            .join(name),
    )
    .unwrap()
}

fn installed(shell: &str) -> bool {
    Command::new(shell)
        .args(["-c", "exit 0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    init: PathBuf,
    spool: PathBuf,
}

/// A directory with `bin/claude` (the fake), the shell's init script, a spool path.
fn setup(shell: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let bin = root.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(root.join("result.json"), fixture("claude_json_result.txt")).unwrap();
    // The fake writes its arguments (one per line) and whether its stdout is a terminal.
    let fake = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{r}/args'\nif [ -t 1 ]; then echo tty > '{r}/stdout'; else echo pipe > '{r}/stdout'; fi\ncat '{r}/result.json'\nexit 5\n",
        r = root.display()
    );
    let claude = bin.join("claude");
    std::fs::write(&claude, fake).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(BIN)
        .args(["shell-init", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "shell-init {shell}");
    let init = root.join(format!("init.{shell}"));
    std::fs::write(&init, &out.stdout).unwrap();
    let spool = root.join("spool");
    Setup {
        _dir: dir,
        root,
        init,
        spool,
    }
}

/// Runs `claude ARGS` in `shell` after loading the init script; stdout to a pipe, or to a
/// pseudo-terminal when `tty`. Returns (exit code, stdout bytes when piped).
fn run_claude(shell: &str, s: &Setup, args: &[&str], tty: bool) -> (i32, Vec<u8>) {
    let mut c = Command::new(shell);
    match shell {
        "bash" => c.args([
            "--norc",
            "--noprofile",
            "-c",
            "source \"$0\"; claude \"$@\"",
        ]),
        "zsh" => c.args(["-f", "-c", "source \"$0\"; claude \"$@\""]),
        _ => c.args(["--no-config", "-c", "source $argv[1]; claude $argv[2..-1]"]),
    };
    c.arg(&s.init).args(args);
    let path = format!(
        "{}:{}",
        s.root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path)
        .env("TOKEN_COLLECTOR_SPOOL_DIR", &s.spool)
        .stdin(Stdio::null());
    if tty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        c.stdout(Stdio::from(slave));
        let status = c.status().unwrap();
        drop(master);
        (status.code().unwrap_or(-1), Vec::new())
    } else {
        let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        (child.wait().unwrap().code().unwrap_or(-1), out)
    }
}

fn spool_records(spool: &Path) -> Vec<Captured> {
    let Ok(dir) = std::fs::read_dir(spool) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Captured>(l).unwrap()),
        );
    }
    out
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn check(shell: &str) {
    if !installed(shell) {
        eprintln!("SKIPPED: {shell} is not installed; shell-init {shell} not tested");
        return;
    }
    let session = CapturedIdentity::ClaudeCodeSession {
        session_id: "6f1e2d3c-4b5a-4987-9a1b-2c3d4e5f6a7b".into(),
    };

    // Non-interactive: -p, output to a pipe. Wrapped, everything passed through.
    let s = setup(shell);
    let (code, out) = run_claude(
        shell,
        &s,
        &["-p", "say \"hi\"  twice", "--output-format", "json"],
        false,
    );
    assert_eq!(code, 5, "{shell}: exit status kept");
    assert!(
        out == fixture("claude_json_result.txt"),
        "{shell}: output changed"
    );
    assert_eq!(
        read(s.root.join("args")),
        "-p\nsay \"hi\"  twice\n--output-format\njson\n",
        "{shell}: arguments"
    );
    assert_eq!(read(s.root.join("stdout")), "pipe\n");
    let recs = spool_records(&s.spool);
    assert_eq!(recs.len(), 2, "{shell}: {recs:#?}");
    assert!(recs.iter().all(|r| r.identity == session));

    // Output to a pipe without -p: still wrapped.
    let s = setup(shell);
    let (code, _) = run_claude(shell, &s, &["hello"], false);
    assert_eq!(code, 5);
    assert_eq!(spool_records(&s.spool).len(), 2, "{shell}: piped run");

    // Interactive: a terminal and no -p. Not wrapped: claude has the terminal, no spool.
    let s = setup(shell);
    let (code, _) = run_claude(shell, &s, &["hello"], true);
    assert_eq!(code, 5);
    assert_eq!(
        read(s.root.join("stdout")),
        "tty\n",
        "{shell}: interactive run kept its terminal"
    );
    assert!(
        spool_records(&s.spool).is_empty(),
        "{shell}: interactive run wrapped"
    );

    // `-p` after `--` is an argument, not the flag.
    let s = setup(shell);
    run_claude(shell, &s, &["--", "-p"], true);
    assert_eq!(read(s.root.join("stdout")), "tty\n", "{shell}: -p after --");

    // --print on a terminal: wrapped.
    let s = setup(shell);
    let (code, _) = run_claude(shell, &s, &["--print", "x"], true);
    assert_eq!(code, 5);
    assert_eq!(
        read(s.root.join("stdout")),
        "pipe\n",
        "{shell}: --print wrapped"
    );
    assert_eq!(spool_records(&s.spool).len(), 2);
}

#[test]
fn bash() {
    check("bash");
}

#[test]
fn zsh() {
    check("zsh");
}

#[test]
fn fish() {
    check("fish");
}

#[test]
fn unknown_shell_is_refused() {
    let out = Command::new(BIN)
        .args(["shell-init", "csh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["shell-init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
