//! The nvidia-smi watchdog: a small supervisor process between the exporter and each run of
//! nvidia-smi, so that a hung nvidia-smi (and whatever it started) is killed and reaped at
//! the timeout even when the exporter is not there to do it any more.
//!
//! # Why a separate process
//!
//! The exporter kills a run's process group at the timeout itself ([`super::runner`]), but
//! that needs the exporter alive: after a `kill -9` (the OOM killer, a failed liveness probe)
//! a hung nvidia-smi would stay forever, holding the driver. The alternatives do not cover
//! that case:
//! - `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the process (tokio and
//!   the runner's callers come and go), and it reaches only the direct child, not the
//!   grandchildren of a wrapper (`ssh host nvidia-smi`, `sh -c ...`).
//! - `alarm(2)` set before `exec` survives the exec but is not inherited by the command's own
//!   children, and a command may catch or ignore `SIGALRM`.
//! - `timeout(1)` or a shell need not exist: the container image is `FROM scratch`.
//!
//! So the exporter runs its own executable again (`/proc/self/exe
//! --internal-nvidia-smi-watchdog <timeout ms> -- <command...>`, nothing else to ship; about
//! 3 ms per run) and that process, the watchdog:
//! 1. becomes a child subreaper, so whatever the command starts and leaves comes back to it;
//! 2. starts the command in a process group of its own, with the exporter's stdout and stderr
//!    pipes (the exporter reads the output directly; the watchdog closes its own copies);
//! 3. tells the exporter over a Unix socket pair, its stdin, the command's pid and, when it
//!    exits, its wait status (observed with `WNOWAIT`: the command stays unreaped, so its pid,
//!    which is also the group's id, cannot be reused while the group may still be signalled);
//! 4. waits for whichever comes first: the exporter shutting its end of the socket (the run is
//!    over, or cancelled), the socket closing because the exporter died (the kernel closes a
//!    killed process's descriptors, so this needs nothing from the exporter), or its own
//!    deadline (the same timeout: it also holds when the exporter is frozen);
//! 5. then kills the command's whole group with SIGKILL, reaps the command and every orphan
//!    that comes back to it (a killed wrapper's grandchildren), and exits 0.
//!
//! The watchdog runs in a process group of its own too, so a Ctrl-C on the exporter's
//! terminal does not kill it before it has cleaned up. A process that leaves the command's
//! group (`setsid`) on purpose is not killed; it is reaped if it ends within a short grace.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The first argument that makes the executable a watchdog instead of an exporter.
pub const FLAG: &str = "--internal-nvidia-smi-watchdog";

/// How long the watchdog waits, after killing the group, for orphans to come back and be
/// reaped.
const ORPHAN_GRACE: Duration = Duration::from_millis(500);

/// If this process was started as a watchdog ([`FLAG`] first), be one and return its exit
/// code; `None` otherwise. Call it first thing in `main`, before any flag parsing.
pub fn run_if_asked() -> Option<ExitCode> {
    ASKED.store(true, Ordering::SeqCst);
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(FLAG)) {
        return None;
    }
    Some(watchdog_main(args.collect()))
}

/// Set by [`run_if_asked`]: this executable's `main` knows [`FLAG`].
static ASKED: AtomicBool = AtomicBool::new(false);

/// The executable to run as the watchdog: this one, through `/proc/self/exe` (which works
/// even when the file has been replaced or deleted since the exporter started). `None` where
/// `/proc` is not mounted, or when this process's `main` did not call [`run_if_asked`] (a test
/// harness, another exporter: they would not know the flag).
pub fn this_executable() -> Option<PathBuf> {
    let exe = PathBuf::from("/proc/self/exe");
    (ASKED.load(Ordering::SeqCst) && std::fs::metadata(&exe).is_ok()).then_some(exe)
}

// ---- the exporter's side ----

/// What the watchdog says about the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    /// The command runs with this pid (and process group id).
    Started(u32),
    /// The command could not be started (errno).
    SpawnFailed(i32),
    /// The command exited (it stays unreaped until the watchdog is told to finish).
    Exited(ExitStatus),
    /// The watchdog's own deadline passed; it is killing the group.
    TimedOut,
    /// The watchdog's end of the socket closed: it exited (or died).
    Closed,
}

impl Report {
    fn parse(line: &str) -> Option<Report> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match word {
            "started" => Report::Started(rest.parse().ok()?),
            "spawn-failed" => Report::SpawnFailed(rest.parse().ok()?),
            "exited" => Report::Exited(ExitStatus::from_raw(rest.parse().ok()?)),
            "timed-out" => Report::TimedOut,
            _ => return None,
        })
    }
}

/// A run under a watchdog, as the exporter holds it.
pub(super) struct Watched {
    /// The watchdog process.
    pub child: Child,
    /// Our end of the socket pair; shutting it down tells the watchdog to finish.
    control: UnixStream,
}

impl Watched {
    /// Start `watchdog` for `program args...` with `timeout`, the command's stdout and stderr
    /// piped to us (take them from [`Watched::child`]); every report is handed to `report`,
    /// from a thread of its own, ending with [`Report::Closed`].
    pub fn spawn(
        watchdog: &Path,
        timeout: Duration,
        program: &str,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        report: impl Fn(Report) + Send + 'static,
    ) -> io::Result<Watched> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(watchdog);
        cmd.arg0("gpu-exporter")
            .arg(FLAG)
            .arg(timeout.as_millis().max(1).to_string())
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        // Only the watchdog holds its end now (ours is close-on-exec, like every descriptor
        // std opens, so no other child keeps it either).
        drop(cmd);
        let reports = ours.try_clone().and_then(|reader| {
            thread::Builder::new()
                .name("smi-watchdog-reports".into())
                .spawn(move || {
                    for line in BufReader::new(reader).lines() {
                        let Ok(line) = line else { break };
                        if let Some(r) = Report::parse(line.trim()) {
                            report(r);
                        }
                    }
                    report(Report::Closed);
                })
        });
        if let Err(e) = reports {
            // Cannot listen to it: let it clean up (our end closes) and reap it.
            let _ = ours.shutdown(std::net::Shutdown::Both);
            let _ = child.wait();
            return Err(e);
        }
        Ok(Watched {
            child,
            control: ours,
        })
    }

    /// Tell the watchdog to finish: kill what is left of the command's group, reap it, exit.
    pub fn finish(&self) {
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }
}

// ---- the watchdog's side ----

enum Event {
    Exited(i32),
    Finish,
}

fn watchdog_main(args: Vec<OsString>) -> ExitCode {
    let usage = || {
        eprintln!(
            "usage: {FLAG} <timeout ms> -- <command> [argument...] (internal to gpu-exporter)"
        );
        ExitCode::from(2)
    };
    let mut args = args.into_iter();
    let Some(timeout) = args
        .next()
        .and_then(|t| t.to_str()?.parse::<u64>().ok())
        .map(Duration::from_millis)
    else {
        return usage();
    };
    if args.next().as_deref() != Some(OsStr::new("--")) {
        return usage();
    }
    let Some(program) = args.next() else {
        return usage();
    };
    let deadline = Instant::now() + timeout;
    let control = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("{FLAG}: no control socket on stdin: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: prctl with integer arguments, and PR_SET_NAME with a NUL-terminated string that
    // outlives the call; they touch nothing else of ours.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"smi-watchdog".as_ptr(), 0, 0, 0);
    }
    let mut command = match Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            say(
                &control,
                &format!("spawn-failed {}", e.raw_os_error().unwrap_or(0)),
            );
            return ExitCode::SUCCESS;
        }
    };
    let pid = command.id();
    say(&control, &format!("started {pid}"));
    // Only the command's processes may hold the output pipes: the exporter reads them to the
    // end, which comes when the last of those exits.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let null = OwnedFd::from(null);
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: dup2 onto our own standard descriptors; `null` is a live descriptor.
            unsafe {
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
            }
        }
    }

    let (tx, rx) = mpsc::channel();
    let exit_tx = tx.clone();
    let waiter = thread::Builder::new().spawn(move || {
        if let Some(raw) = wait_exit_without_reaping(pid) {
            let _ = exit_tx.send(Event::Exited(raw));
        }
    });
    let reader = control.try_clone().and_then(|mut c| {
        thread::Builder::new().spawn(move || {
            // The exporter never writes: a read returns at EOF (it shut its end down or died)
            // or on an error, and either means finish.
            let mut buf = [0u8; 64];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::Finish);
        })
    });
    if waiter.is_err() || reader.is_err() {
        // Cannot watch: do not leave the command unwatched either.
        kill_group(pid);
    } else {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::Exited(raw)) => say(&control, &format!("exited {raw}")),
                Ok(Event::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    say(&control, "timed-out");
                    break;
                }
            }
        }
    }
    // The command is unreaped until here (a zombie at worst), so its pid is still its group's
    // id: signalling the group cannot hit anybody else.
    kill_group(pid);
    let _ = command.wait();
    reap_orphans(Instant::now() + ORPHAN_GRACE);
    ExitCode::SUCCESS
}

/// One line to the exporter; lost if it is gone.
fn say(mut control: &UnixStream, line: &str) {
    let _ = control.write_all(format!("{line}\n").as_bytes());
}

fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) takes integers only. `pgid` is our unreaped child's pid, which
        // leads its own group (`process_group(0)`).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Block until child `pid` exits; its wait status (as `waitpid` would give it), leaving it
/// unreaped. `None` if it cannot be waited for.
fn wait_exit_without_reaping(pid: u32) -> Option<i32> {
    let id: libc::id_t = pid;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`, a live local.
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == -1 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        // SAFETY: waitid succeeded for a child, so the SIGCHLD fields are the ones filled in.
        let status = unsafe { info.si_status() };
        return Some(match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => status | 0x80,
            _ => status,
        });
    }
}

/// Reap every child that ends before `until` (the killed group's processes come back to us as
/// their subreaper); stop early once there are none left.
fn reap_orphans(until: Instant) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`, a live local; WNOHANG never blocks. Every
        // child we have is the command's or one of its descendants, ours to reap.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return; // ECHILD: none left
        }
        if Instant::now() >= until {
            return;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(Report::parse("started 42"), Some(Report::Started(42)));
        assert_eq!(
            Report::parse("spawn-failed 2"),
            Some(Report::SpawnFailed(2))
        );
        assert_eq!(
            Report::parse("exited 256"),
            Some(Report::Exited(ExitStatus::from_raw(256)))
        );
        assert_eq!(
            Report::parse("exited 256").and_then(|r| match r {
                Report::Exited(s) => s.code(),
                _ => None,
            }),
            Some(1)
        );
        assert_eq!(Report::parse("timed-out"), Some(Report::TimedOut));
        assert_eq!(Report::parse("started x"), None);
        assert_eq!(Report::parse("hello"), None);
    }
}
