//! Runs nvidia-smi (or the `--nvidia-smi.command` wrapper) once, with a deadline.
//!
//! Guarantees, whatever the command does:
//! - it returns by `timeout` plus a short grace; a command still running then is killed with
//!   SIGKILL, together with everything it started (it runs in its own process group, so a
//!   wrapper such as `ssh host nvidia-smi` or `sh -c ...` does not leave children behind);
//! - the killed child is reaped, so no zombie is left; if it cannot die at once (a process in
//!   uninterruptible sleep in the driver, which is how a wedged GPU looks) a detached thread
//!   waits for it so the caller is not blocked. Grandchildren killed with the group are
//!   re-parented to init, or to us when we are PID 1 of a container or a child subreaper
//!   ([`become_subreaper`]); in the latter cases the runner reaps them too;
//! - stdout is capped at `max_stdout_bytes` (the command is killed when it writes more), and
//!   only the start of stderr is kept;
//! - a non-zero exit is an error carrying a short excerpt of what the command said (nvidia-smi
//!   prints its own failures, "NVIDIA-SMI has failed ...", on stdout, so that is used when
//!   stderr is empty);
//! - once [`Runner::cancel`] is set (the exporter is stopping) the run ends within a few
//!   milliseconds, the command killed and reaped as at the timeout;
//! - with [`Runner::watchdog`] (how the exporter runs it) the command is started, killed and
//!   reaped by the watchdog process ([`super::watchdog`]), which also does so at the timeout
//!   when this process has died or is frozen.
//!
//! It is plain `std::process` plus two reader threads, blocking: the odin-common runtime calls
//! a background collector's `collect` on its own thread, so there is no async context to reuse,
//! and a blocking runner needs no runtime and is easy to test. The wait polls `try_wait` every
//! few milliseconds rather than handing the child to a waiter thread, so the child is never
//! reaped behind our back and the process group id cannot be reused before we signal it
//! (through the watchdog, the command's exit comes as a report and the watchdog keeps it
//! unreaped until its group has been signalled).

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::table::excerpt;
use super::watchdog::{Report, Watched};

/// How much of stderr is kept for error messages.
const STDERR_KEEP: usize = 4096;
/// How long to wait, after SIGKILL, for the child to be reaped before handing it to a thread.
const KILL_GRACE: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(5);
/// How long to wait for killed grandchildren to be re-parented to us so they can be reaped.
const ORPHAN_GRACE: Duration = Duration::from_millis(300);

/// Split a command line the way a POSIX shell splits words, without running a shell: blanks
/// separate words, `'...'` is literal, `"..."` keeps blanks and honours `\"`, `\\`, `\$` and
/// `` \` ``, a backslash outside quotes escapes the next character. No expansion of any kind.
pub fn split_command(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnclosedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => cur.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                cur.push('\\');
                                cur.push(other);
                            }
                            None => return Err(SplitError::UnclosedQuote('"')),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(SplitError::UnclosedQuote('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => {
                    in_word = true;
                    cur.push(e);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// Why a command line could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    Empty,
    UnclosedQuote(char),
    TrailingBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Empty => f.write_str("empty command"),
            SplitError::UnclosedQuote(q) => write!(f, "unclosed {q} quote"),
            SplitError::TrailingBackslash => f.write_str("backslash at the end"),
        }
    }
}

impl std::error::Error for SplitError {}

/// The arguments for a `--query-gpu` run.
pub fn query_gpu_args<S: AsRef<str>>(fields: &[S]) -> Vec<String> {
    let list: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
    vec![
        format!("--query-gpu={}", list.join(",")),
        "--format=csv".to_owned(),
    ]
}

/// The arguments for a `--query-compute-apps` run.
pub fn compute_apps_args<S: AsRef<str>>(fields: &[S]) -> Vec<String> {
    let list: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
    vec![
        format!("--query-compute-apps={}", list.join(",")),
        "--format=csv".to_owned(),
    ]
}

/// How to run the command.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Program and leading arguments (from [`split_command`] of `--nvidia-smi.command`).
    pub command: Vec<String>,
    /// Wall-clock budget of one run, output reading included.
    pub timeout: Duration,
    /// Larger stdout kills the command and fails the run.
    pub max_stdout_bytes: usize,
    /// Run the command under a watchdog process, this executable run again
    /// ([`super::watchdog`]), which also kills it at the timeout when this process has died.
    /// `None`: start the command directly (it is then killed only by this process).
    pub watchdog: Option<PathBuf>,
    /// Once set, a run in progress is stopped (the command killed and reaped) within a few
    /// milliseconds and later runs fail at once: the exporter is shutting down.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What a successful run printed.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// stdout, decoded as UTF-8 (invalid bytes replaced; the parser then rejects garbage).
    pub stdout: String,
    /// The first few KiB of stderr (nvidia-smi warns there on success sometimes).
    pub stderr: String,
    pub elapsed: Duration,
}

/// Why a run failed.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not found, not executable).
    Spawn { program: String, source: io::Error },
    /// Still running (or its output still open) at the deadline: killed and reaped.
    Timeout {
        pid: u32,
        after: Duration,
        reaped: bool,
    },
    /// Exited non-zero or was killed by a signal.
    Failed { status: ExitStatus, excerpt: String },
    /// Wrote more than `max_stdout_bytes`: killed.
    OutputTooLarge { pid: u32, limit: usize },
    /// Reading its output or waiting for it failed.
    Io(io::Error),
    /// Stopped by [`Runner::cancel`]: killed (if it had started) and reaped.
    Cancelled { pid: Option<u32> },
    /// The watchdog ([`Runner::watchdog`]) failed; what it said, if anything.
    Watchdog(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { program, source } => {
                write!(f, "cannot run {program:?}: {source}")?;
                if source.kind() == io::ErrorKind::NotFound {
                    f.write_str(" (is the NVIDIA driver's nvidia-smi on PATH or mounted into the container?)")?;
                }
                Ok(())
            }
            RunError::Timeout { pid, after, reaped } => {
                write!(
                    f,
                    "timed out after {:.1}s; killed pid {pid}",
                    after.as_secs_f64()
                )?;
                if !reaped {
                    f.write_str(" (not dead yet: stuck in the driver? reaping in the background)")?;
                }
                Ok(())
            }
            RunError::Failed { status, excerpt } => {
                match (status.code(), status.signal()) {
                    (Some(code), _) => write!(f, "exited with status {code}")?,
                    (None, Some(sig)) => write!(f, "killed by signal {sig}")?,
                    (None, None) => write!(f, "failed ({status})")?,
                }
                if !excerpt.is_empty() {
                    write!(f, ": {excerpt}")?;
                }
                Ok(())
            }
            RunError::OutputTooLarge { pid, limit } => {
                write!(f, "printed more than {limit} bytes; killed pid {pid}")
            }
            RunError::Io(e) => write!(f, "reading its output: {e}"),
            RunError::Cancelled { pid: Some(pid) } => {
                write!(
                    f,
                    "stopped, the exporter is shutting down; killed pid {pid}"
                )
            }
            RunError::Cancelled { pid: None } => {
                f.write_str("not run, the exporter is shutting down")
            }
            RunError::Watchdog(what) => write!(f, "its watchdog failed: {what}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spawn { source, .. } => Some(source),
            RunError::Io(e) => Some(e),
            _ => None,
        }
    }
}

enum Msg {
    Stdout(io::Result<Vec<u8>>),
    StdoutOverflow,
    Stderr(Vec<u8>),
    Watchdog(Report),
}

/// The process a run waits for: the command itself, or the watchdog running it.
enum Proc {
    /// The command, leader of its own process group.
    Direct(Child),
    /// The watchdog; `command` is the command's pid once the watchdog has reported it.
    Watched {
        watched: Watched,
        command: Option<u32>,
        exited: Option<ExitStatus>,
    },
}

impl Proc {
    /// The command's pid for messages (the watchdog's before it reported the command's).
    fn pid(&self) -> u32 {
        match self {
            Proc::Direct(c) => c.id(),
            Proc::Watched {
                watched, command, ..
            } => command.unwrap_or(watched.child.id()),
        }
    }

    /// The command's exit status, once it exited (a direct child is reaped by this).
    fn exit_status(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Proc::Direct(c) => c.try_wait(),
            Proc::Watched { exited, .. } => Ok(*exited),
        }
    }

    /// Kill the command's whole group and reap it and whatever of it comes back to us; true
    /// when all of it was reaped within [`KILL_GRACE`] (else a thread keeps waiting).
    /// `exited`: the command has exited already (a direct child is then reaped).
    fn stop(&mut self, exited: bool) -> bool {
        match self {
            Proc::Direct(child) => {
                let reaped = if exited {
                    kill_group(child.id());
                    true
                } else {
                    kill_and_reap(child)
                };
                reap_group_orphans(child.id());
                reaped
            }
            Proc::Watched {
                watched, command, ..
            } => {
                watched.finish();
                let give_up = Instant::now() + KILL_GRACE;
                let mut nap = Duration::from_millis(1);
                let status = loop {
                    match watched.child.try_wait() {
                        Ok(Some(st)) => break Some(st),
                        Ok(None) if Instant::now() < give_up => {
                            thread::sleep(nap);
                            nap = (nap * 2).min(POLL);
                        }
                        _ => break None,
                    }
                };
                match status {
                    // The watchdog killed the group, reaped all of it, and exited.
                    Some(st) if st.success() => true,
                    Some(_) => {
                        // It died (killed, crashed) without cleaning up: the command and its
                        // children came back to us, the subreaper, if they are still there.
                        if let Some(pid) = *command {
                            if is_our_child_leading_its_group(pid) {
                                kill_group(pid);
                            }
                            reap_group_orphans(pid);
                        }
                        true
                    }
                    None => {
                        // Stuck reaping a command that cannot die yet (uninterruptible sleep in
                        // the driver): let a thread wait for the watchdog.
                        let pid = watched.child.id();
                        let _ = thread::Builder::new()
                            .name(format!("reap-{pid}"))
                            .spawn(move || wait_blocking(pid));
                        false
                    }
                }
            }
        }
    }
}

impl Runner {
    /// A runner that starts the command directly, without a watchdog or a cancel flag.
    pub fn new(command: Vec<String>, timeout: Duration, max_stdout_bytes: usize) -> Runner {
        Runner {
            command,
            timeout,
            max_stdout_bytes,
            watchdog: None,
            cancel: None,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }

    /// Run `command` followed by `args`, with no shell.
    pub fn run(&self, args: &[String]) -> Result<RunOutput, RunError> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let (program, leading) = self.command.split_first().ok_or_else(|| RunError::Spawn {
            program: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
        })?;
        if self.cancelled() {
            return Err(RunError::Cancelled { pid: None });
        }
        let (tx, rx) = mpsc::channel();
        let (mut proc, stdout, stderr) = match &self.watchdog {
            None => {
                let mut child = Command::new(program)
                    .args(leading)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0)
                    .spawn()
                    .map_err(|source| RunError::Spawn {
                        program: program.clone(),
                        source,
                    })?;
                let out = child.stdout.take().expect("stdout is piped");
                let err = child.stderr.take().expect("stderr is piped");
                (Proc::Direct(child), out, err)
            }
            Some(watchdog) => {
                let reports = tx.clone();
                let mut watched = Watched::spawn(
                    watchdog,
                    self.timeout,
                    program,
                    leading.iter().chain(args),
                    move |r| {
                        let _ = reports.send(Msg::Watchdog(r));
                    },
                )
                .map_err(|source| RunError::Spawn {
                    program: watchdog.display().to_string(),
                    source,
                })?;
                let out = watched.child.stdout.take().expect("stdout is piped");
                let err = watched.child.stderr.take().expect("stderr is piped");
                let proc = Proc::Watched {
                    watched,
                    command: None,
                    exited: None,
                };
                (proc, out, err)
            }
        };

        let cap = self.max_stdout_bytes;
        let tx_out = tx.clone();
        thread::spawn(move || read_stdout(stdout, cap, &tx_out));
        thread::spawn(move || {
            let _ = tx.send(Msg::Stderr(read_stderr(stderr)));
        });

        let mut status: Option<ExitStatus> = None;
        let mut out: Option<Vec<u8>> = None;
        let mut err: Option<Vec<u8>> = None;
        // The watchdog's end is closed: no more reports (it exited or died).
        let mut watchdog_gone = false;
        loop {
            if status.is_none() {
                match proc.exit_status() {
                    Ok(s) => status = s,
                    Err(e) => {
                        proc.stop(false);
                        return Err(RunError::Io(e));
                    }
                }
            }
            if status.is_some() && out.is_some() && err.is_some() {
                break;
            }
            if self.cancelled() {
                proc.stop(status.is_some());
                return Err(RunError::Cancelled {
                    pid: Some(proc.pid()),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                let reaped = proc.stop(status.is_some());
                return Err(RunError::Timeout {
                    pid: proc.pid(),
                    after: now - start,
                    reaped,
                });
            }
            if watchdog_gone {
                // Closed before the command's end was reported: it died or failed.
                proc.stop(status.is_some());
                let said = String::from_utf8_lossy(err.as_deref().unwrap_or_default());
                return Err(RunError::Watchdog(if said.trim().is_empty() {
                    "it exited before the command did".to_owned()
                } else {
                    excerpt(&said, 200)
                }));
            }
            // Sleep until a reader reports or the next poll of the child is due.
            let wait = (deadline - now).min(if out.is_some() && err.is_some() {
                POLL
            } else {
                POLL * 4
            });
            match rx.recv_timeout(wait) {
                Ok(Msg::Stdout(Ok(bytes))) => out = Some(bytes),
                Ok(Msg::Stdout(Err(e))) => {
                    proc.stop(status.is_some());
                    return Err(RunError::Io(e));
                }
                Ok(Msg::StdoutOverflow) => {
                    proc.stop(status.is_some());
                    return Err(RunError::OutputTooLarge {
                        pid: proc.pid(),
                        limit: cap,
                    });
                }
                Ok(Msg::Stderr(bytes)) => err = Some(bytes),
                Ok(Msg::Watchdog(report)) => match (&mut proc, report) {
                    (Proc::Watched { command, .. }, Report::Started(pid)) => {
                        *command = Some(pid);
                    }
                    (Proc::Watched { exited, .. }, Report::Exited(st)) => *exited = Some(st),
                    (_, Report::SpawnFailed(errno)) => {
                        proc.stop(false);
                        let source = if errno > 0 {
                            io::Error::from_raw_os_error(errno)
                        } else {
                            io::Error::other("could not be started")
                        };
                        return Err(RunError::Spawn {
                            program: program.clone(),
                            source,
                        });
                    }
                    (_, Report::TimedOut) => {
                        // Its clock ran out first (by a hair: both count the same timeout).
                        let reaped = proc.stop(status.is_some());
                        return Err(RunError::Timeout {
                            pid: proc.pid(),
                            after: start.elapsed(),
                            reaped,
                        });
                    }
                    (_, Report::Closed) => {
                        // Normal once the command has exited and its output is read (the
                        // loop ends first then); an error otherwise, handled above so that
                        // what it printed on stderr can be read first.
                        watchdog_gone = status.is_none();
                        if watchdog_gone && err.is_none() {
                            // Give its stderr a moment to arrive.
                            if let Ok(Msg::Stderr(bytes)) = rx.recv_timeout(POLL * 20) {
                                err = Some(bytes);
                            }
                        }
                    }
                    (Proc::Direct(_), _) => {}
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Both readers are gone; every message they sent has been received.
                    thread::sleep(POLL);
                }
            }
        }
        let status = status.expect("loop exits with a status");
        if let Proc::Watched { .. } = proc {
            // Let the watchdog clear up (what is left of the group) and reap it.
            proc.stop(true);
        }
        let stdout = String::from_utf8_lossy(&out.unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err.unwrap_or_default()).into_owned();
        if !status.success() {
            let said = if stderr.trim().is_empty() {
                &stdout
            } else {
                &stderr
            };
            return Err(RunError::Failed {
                status,
                excerpt: excerpt(said, 200),
            });
        }
        Ok(RunOutput {
            stdout,
            stderr,
            elapsed: start.elapsed(),
        })
    }
}

/// Whether `pid` is a child of this process and leads its own process group (a command
/// whose watchdog died, re-parented to us as its subreaper).
fn is_our_child_leading_its_group(pid: u32) -> bool {
    proc_entries()
        .into_iter()
        .any(|(p, ppid, pgrp)| p == pid && ppid == std::process::id() && pgrp == pid)
}

fn read_stdout(mut pipe: impl Read, cap: usize, tx: &mpsc::Sender<Msg>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => {
                let _ = tx.send(Msg::Stdout(Ok(buf)));
                return;
            }
            Ok(n) => {
                if buf.len() + n > cap {
                    let _ = tx.send(Msg::StdoutOverflow);
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Msg::Stdout(Err(e)));
                return;
            }
        }
    }
}

/// Keep the first [`STDERR_KEEP`] bytes, drain the rest so the child never blocks on it.
fn read_stderr(mut pipe: impl Read) -> Vec<u8> {
    let mut keep = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return keep,
            Ok(n) => {
                let room = STDERR_KEEP.saturating_sub(keep.len());
                keep.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return keep,
        }
    }
}

/// SIGKILL the child's whole process group (the child is its leader, see `process_group(0)`).
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group id is our
    // own unreaped child's pid (or a group that still has members), so it cannot name an
    // unrelated process group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Kill the child's group and reap the child. Returns whether it was reaped within
/// [`KILL_GRACE`]; if not, a detached thread keeps waiting so it never stays a zombie.
fn kill_and_reap(child: &mut Child) -> bool {
    kill_group(child.id());
    let give_up = Instant::now() + KILL_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < give_up => thread::sleep(POLL),
            Ok(None) => break,
            Err(_) => return false,
        }
    }
    // Still alive after SIGKILL: stuck in the kernel. Hand it to a thread that waits for it.
    let pid = child.id();
    let _ = thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || wait_blocking(pid));
    false
}

/// Make this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`), so
/// the grandchildren of a killed wrapper come back to us and [`Runner::run`] reaps them
/// instead of leaving them to an init that might not (a container whose PID 1 is not an init).
/// Process-wide; meant to be called once from `main` (and by the tests).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes integers only and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reap processes of the killed group `pgid` that were re-parented to us (we are PID 1 or a
/// subreaper). Waits up to [`ORPHAN_GRACE`] for them to die and come back; any that do not are
/// left to the next call or to init. Only our own children in that group are touched.
fn reap_group_orphans(pgid: u32) {
    let me = std::process::id();
    let until = Instant::now() + ORPHAN_GRACE;
    loop {
        let mut left = 0;
        for (pid, ppid, pgrp) in proc_entries() {
            if ppid != me || pgrp != pgid {
                continue;
            }
            let Ok(p) = libc::pid_t::try_from(pid) else {
                continue;
            };
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`, a live local; WNOHANG never blocks. `p`
            // is our child in the group we killed; no `Child` handle exists for it.
            let r = unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
            if r == 0 {
                left += 1;
            }
        }
        if left == 0 || Instant::now() >= until {
            return;
        }
        thread::sleep(POLL);
    }
}

/// (pid, ppid, process group) of every process in /proc (this process's own pid namespace).
fn proc_entries() -> Vec<(u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
        let _state = rest.next()?;
        let ppid = rest.next()?.parse().ok()?;
        let pgrp = rest.next()?.parse().ok()?;
        Some((pid, ppid, pgrp))
    })
    .collect()
}

/// Block until `pid` (our child) exits and reap it.
fn wait_blocking(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) writes only to `status`, a live local. `pid` is our own child that
        // nobody else waits for (the `Child` handle was only polled with try_wait and is not
        // used again after this thread starts).
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid || (r == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn splits_like_a_shell_without_one() {
        assert_eq!(split_command("nvidia-smi").unwrap(), words(&["nvidia-smi"]));
        assert_eq!(
            split_command("  ssh -o 'ConnectTimeout 2' gpu-host   nvidia-smi ").unwrap(),
            words(&["ssh", "-o", "ConnectTimeout 2", "gpu-host", "nvidia-smi"])
        );
        assert_eq!(
            split_command(r#"sudo -n "/opt/nvidia tools/nvidia-smi" a\ b "x\"y" '$HOME' "\$HOME""#)
                .unwrap(),
            words(&[
                "sudo",
                "-n",
                "/opt/nvidia tools/nvidia-smi",
                "a b",
                "x\"y",
                "$HOME",
                "$HOME"
            ])
        );
        assert_eq!(split_command("a '' b").unwrap(), words(&["a", "", "b"]));
        assert_eq!(
            split_command("x;y|z").unwrap(),
            words(&["x;y|z"]),
            "no shell operators"
        );
        assert_eq!(split_command(""), Err(SplitError::Empty));
        assert_eq!(split_command("   "), Err(SplitError::Empty));
        assert_eq!(split_command("a 'b"), Err(SplitError::UnclosedQuote('\'')));
        assert_eq!(split_command("a \"b"), Err(SplitError::UnclosedQuote('"')));
        assert_eq!(split_command("a \\"), Err(SplitError::TrailingBackslash));
    }

    #[test]
    fn query_args() {
        assert_eq!(
            query_gpu_args(&["index", "uuid"]),
            words(&["--query-gpu=index,uuid", "--format=csv"])
        );
        assert_eq!(
            compute_apps_args(&["pid"]),
            words(&["--query-compute-apps=pid", "--format=csv"])
        );
    }
}
