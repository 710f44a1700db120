//! Processes as a test sees them from outside: a pid with its start time (so a reused pid is
//! not mistaken for it), whether it is still there (a zombie counts: it was not reaped), and
//! waiting for processes to go. For the tests that check an exporter leaves no child behind.

use std::time::{Duration, Instant};

/// A process as first seen.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub pid: u32,
    start: Option<u64>,
}

impl Seen {
    /// `pid` now; panics if it is already gone.
    pub fn of(pid: u32) -> Seen {
        let start = start_time(pid);
        assert!(start.is_some(), "process {pid} gone before it was seen");
        Seen { pid, start }
    }

    /// Still there, as a process or a zombie.
    pub fn exists(&self) -> bool {
        let now = start_time(self.pid);
        now.is_some() && now == self.start
    }
}

fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

/// Field 22 of `/proc/<pid>/stat`, the start time in clock ticks.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_field(pid, 19)
}

/// The process group of `pid`.
pub fn group_of(pid: u32) -> Option<u32> {
    stat_field(pid, 2).and_then(|g| u32::try_from(g).ok())
}

/// Wait until none of `procs` exists; how long that took, or `None` after `limit`.
pub fn gone_within(procs: &[Seen], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if procs.iter().all(|p| !p.exists()) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Send `sig` to `pid`.
pub fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) touches no memory.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Clean up after a test whose hung command wrote `<leader pid> <other pids...>` to `pidfile`:
/// SIGKILL each listed process that is still in the leader's process group, provided the
/// leader's command line contains `marker` (the test's scratch directory: a reused pid is
/// left alone). So that one failing test does not leave processes sleeping for an hour.
pub fn kill_left_behind(pidfile: &std::path::Path, marker: &str) {
    let Ok(s) = std::fs::read_to_string(pidfile) else {
        return;
    };
    let pids: Vec<u32> = s
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let Some(&leader) = pids.first() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{leader}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(marker) {
        return;
    }
    for &pid in &pids {
        if group_of(pid) == Some(leader) {
            kill(pid, libc::SIGKILL);
        }
    }
}
