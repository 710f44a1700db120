//! `token-collector wrap [--spool.dir DIR] -- CMD ARGS...`: runs CMD as if it ran alone (same
//! stdin, its stdout and stderr passed on byte for byte as they come, its exit status; death
//! by signal N is status 128+N as a shell reports it) and records the usage recognised in a
//! copy of its output (crate::capture) in a new spool file that the collector ingests.
//!
//! The spool file: `<spool dir>/<unix ms>-<pid>-<random>.jsonl`, one `Captured` JSON object per
//! line, written under a dot-name ending in `.tmp`, fsynced, then renamed, so a reader listing
//! `*.jsonl` never sees half a file; mode 0600 in a directory created 0700. Nothing else is
//! written: not the command line, not the environment, not the output. Without anything
//! recognised no file is made.
//!
//! Signals: SIGINT and SIGQUIT (the terminal sends them to the whole foreground group, CMD
//! included) are ignored by `wrap` while CMD runs, as a shell does while it waits, so that
//! `wrap` outlives CMD and records what it saw; SIGTERM and SIGHUP sent to `wrap` alone are
//! passed on to CMD. When the reader of `wrap`'s stdout goes away, `wrap` closes CMD's pipe
//! too, so CMD gets SIGPIPE as it would have without `wrap`.
//!
//! CMD's stdout and stderr are pipes (one pipe for both when `wrap`'s stdout and stderr are
//! the same file, as with `2>&1` or a terminal, so that their order is kept). Once CMD has
//! exited, `wrap` waits at most 0.5 s for the end of its output: a background process CMD left
//! holding the pipe loses its later output (a shell pipeline would wait for it).

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::{Recognised, Scanner};
use crate::usage::Captured;

const USAGE: &str =
    "usage: token-collector wrap [--spool.dir DIR] [--storage.path FILE] -- COMMAND [ARG...]";

/// How long `wrap` waits, once CMD has exited, for the last of its output (a background
/// process CMD left behind may hold the pipe open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Parsed `wrap` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapArgs {
    pub spool_dir: PathBuf,
    pub command: Vec<OsString>,
}

/// Reads `[--spool.dir DIR|--spool.dir=DIR] [--storage.path FILE] [--] CMD ARGS...` (the
/// arguments after `wrap`). Without `--spool.dir` the spool is
/// [`crate::paths::spool_dir_from_env`] (or next to `--storage.path`).
pub fn parse_args(args: &[OsString]) -> Result<WrapArgs, String> {
    let mut spool: Option<PathBuf> = None;
    let mut storage: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        let mut value = |name: &str| -> Result<Option<PathBuf>, String> {
            if a == name {
                i += 1;
                let v = args.get(i).ok_or(format!("{name} needs a value"))?;
                Ok(Some(PathBuf::from(v)))
            } else if let Some(v) = a.strip_prefix(&format!("{name}=")) {
                Ok(Some(PathBuf::from(v)))
            } else {
                Ok(None)
            }
        };
        if a == "--" {
            i += 1;
            break;
        } else if let Some(v) = value("--spool.dir")? {
            spool = Some(v);
        } else if let Some(v) = value("--storage.path")? {
            storage = Some(v);
        } else if a == "-h" || a == "--help" {
            return Err(String::new());
        } else if a.starts_with('-') {
            return Err(format!("unknown flag {a}"));
        } else {
            break;
        }
        i += 1;
    }
    let command = args[i.min(args.len())..].to_vec();
    if command.is_empty() {
        return Err("no command given".into());
    }
    let spool_dir = spool
        .or_else(|| storage.map(|s| crate::paths::spool_dir_for(&s)))
        .unwrap_or_else(crate::paths::spool_dir_from_env);
    Ok(WrapArgs { spool_dir, command })
}

/// `token-collector wrap ...`; `args` are the arguments after `wrap`.
pub fn main(args: &[OsString]) -> ExitCode {
    let parsed = match parse_args(args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("token-collector wrap: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (status, records) = match run(&parsed.command) {
        Ok(r) => r,
        Err((code, msg)) => {
            eprintln!("token-collector wrap: {msg}");
            return ExitCode::from(code);
        }
    };
    if !records.is_empty() {
        let cwd = std::env::current_dir()
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        if let Err(e) = write_spool(&parsed.spool_dir, records, cwd) {
            eprintln!(
                "token-collector wrap: usage not recorded in {}: {e}",
                parsed.spool_dir.display()
            );
        }
    }
    ExitCode::from(exit_code(status))
}

/// The status a shell reports: the exit code, or 128+N for death by signal N.
pub fn exit_code(status: ExitStatus) -> u8 {
    if let Some(c) = status.code() {
        return (c & 0xff) as u8;
    }
    match status.signal() {
        Some(sig) => (128 + sig).clamp(0, 255) as u8,
        None => 1,
    }
}

/// What was recognised, with the time (Unix ms) it was seen, in the order seen.
pub type Found = Vec<(i64, Recognised)>;

/// Why the command could not be started: the exit status to report (127: not found, 126:
/// cannot be run) and a message.
pub type StartError = (u8, String);

/// What one output stream's reader shares with `run`.
struct Stream {
    scanner: Mutex<Option<Scanner>>,
    found: Mutex<Found>,
}

impl Stream {
    fn new() -> Arc<Self> {
        Arc::new(Stream {
            scanner: Mutex::new(Some(Scanner::new())),
            found: Mutex::new(Vec::new()),
        })
    }

    fn feed(&self, chunk: &[u8]) {
        let mut guard = self.scanner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard.as_mut() {
            s.feed(chunk);
            let new = s.take_found();
            if !new.is_empty() {
                let now = now_ms();
                let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
                found.extend(new.into_iter().map(|r| (now, r)));
            }
        }
    }

    /// Ends the scan (whatever the reader thread is doing) and returns all that was found.
    fn finish(&self) -> Found {
        let scanner = self
            .scanner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut found = std::mem::take(&mut *self.found.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(s) = scanner {
            let now = now_ms();
            found.extend(s.finish().into_iter().map(|r| (now, r)));
        }
        found
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Sets `sig`'s handler, returning the previous disposition.
fn set_handler(sig: libc::c_int, handler: libc::sighandler_t) -> libc::sigaction {
    // SAFETY: a zeroed sigaction with an empty mask is valid; both pointers are valid.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &new, &mut old);
        old
    }
}

/// Runs the command, passing its output on; returns its status and what was recognised.
pub fn run(command: &[OsString]) -> Result<(ExitStatus, Found), StartError> {
    let out = dup_stdio(std::io::stdout().as_fd());
    let err = dup_stdio(std::io::stderr().as_fd());

    // Ignore the terminal's SIGINT/SIGQUIT while the command runs; the command gets the
    // dispositions wrap had (restored in the child between fork and exec).
    let old_int = set_handler(libc::SIGINT, libc::SIG_IGN);
    let old_quit = set_handler(libc::SIGQUIT, libc::SIG_IGN);
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).stdin(Stdio::inherit());
    // When stdout and stderr are one file (`2>&1`, a terminal), the command gets one pipe for
    // both, so that their interleaving is kept exactly.
    let mut shared = None;
    if same_file(out.as_ref(), err.as_ref()) {
        if let Ok((r, w)) = pipe() {
            if let Ok(w2) = w.try_clone() {
                cmd.stdout(w).stderr(w2);
                shared = Some(File::from(r));
            }
        }
    }
    if shared.is_none() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // SAFETY: only sigaction, async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::sigaction(libc::SIGINT, &old_int, std::ptr::null_mut());
            libc::sigaction(libc::SIGQUIT, &old_quit, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            restore(&old_int, &old_quit);
            let name = Path::new(&command[0]).display().to_string();
            return Err(match e.kind() {
                ErrorKind::NotFound => (127, format!("{name}: command not found")),
                _ => (126, format!("{name}: {e}")),
            });
        }
    };
    // The command holds the write ends of a shared pipe: drop ours, so its end is seen.
    drop(cmd);
    CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    let old_term = set_handler(
        libc::SIGTERM,
        forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );
    let old_hup = set_handler(
        libc::SIGHUP,
        forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );

    let out_stream = Stream::new();
    let err_stream = Stream::new();
    let readers = [
        match shared {
            Some(r) => Some(pump(r, out, Arc::clone(&out_stream))),
            None => child
                .stdout
                .take()
                .map(|r| pump(r, out, Arc::clone(&out_stream))),
        },
        child
            .stderr
            .take()
            .map(|r| pump(r, err, Arc::clone(&err_stream))),
    ];
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("token-collector wrap: waiting for the command: {e}");
                break ExitStatus::from_raw(1 << 8);
            }
        }
    };
    CHILD_PID.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + DRAIN_AFTER_EXIT;
    for r in readers.into_iter().flatten() {
        while !r.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    restore(&old_int, &old_quit);
    // SAFETY: restoring dispositions saved above.
    unsafe {
        libc::sigaction(libc::SIGTERM, &old_term, std::ptr::null_mut());
        libc::sigaction(libc::SIGHUP, &old_hup, std::ptr::null_mut());
    }
    let mut found = out_stream.finish();
    found.extend(err_stream.finish());
    found.sort_by_key(|(t, _)| *t);
    Ok((status, found))
}

fn restore(int: &libc::sigaction, quit: &libc::sigaction) {
    // SAFETY: restoring dispositions saved by set_handler.
    unsafe {
        libc::sigaction(libc::SIGINT, int, std::ptr::null_mut());
        libc::sigaction(libc::SIGQUIT, quit, std::ptr::null_mut());
    }
}

/// A pipe (read end, write end), both close-on-exec (the command gets its end as stdout).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Are both open and the same file (device and inode)?
fn same_file(a: Option<&File>, b: Option<&File>) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        a.and_then(|f| f.metadata().ok()),
        b.and_then(|f| f.metadata().ok()),
    ) {
        (Some(x), Some(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// An unbuffered handle on our stdout/stderr (a duplicate of the descriptor); `None` when it
/// is closed.
fn dup_stdio(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
    fd.try_clone_to_owned().ok().map(File::from)
}

/// Copies `from` to `to` as it comes, feeding the scanner. When `to` is gone (a closed pipe),
/// stops and drops `from`, so the command meets the closed pipe as it would have.
fn pump(
    mut from: impl Read + Send + 'static,
    mut to: Option<File>,
    stream: Arc<Stream>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buf[..n];
            if let Some(w) = to.as_mut() {
                if w.write_all(chunk).is_err() {
                    // EPIPE (or another failure): behave like the command would.
                    break;
                }
            }
            stream.feed(chunk);
        }
    })
}

/// A new spool file name: `<unix ms>-<pid>-<random hex>.jsonl`.
fn spool_file_name() -> String {
    let mut rnd = [0u8; 8];
    let random = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut rnd))
        .map(|()| u64::from_le_bytes(rnd))
        .unwrap_or_else(|_| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0)
        });
    format!("{}-{}-{:016x}.jsonl", now_ms(), std::process::id(), random)
}

/// Writes the records as a new spool file (atomically) and returns its path.
pub fn write_spool(dir: &Path, records: Found, cwd: Option<String>) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = spool_file_name();
    let lines: Vec<Captured> = records
        .into_iter()
        .enumerate()
        .map(|(i, (seen, r))| r.into_captured(format!("{name}:{}", i + 1), seen, cwd.clone()))
        .collect();
    let mut text = String::new();
    for c in &lines {
        text.push_str(&serde_json::to_string(c).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(path.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
