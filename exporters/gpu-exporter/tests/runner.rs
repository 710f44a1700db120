//! The nvidia-smi runner against `tests/fake-nvidia-smi`, which answers from the real captures
//! and can be told to hang, fail, print garbage, be slow, or flood.
//!
//! The fake is started through `env VAR=... <path>`: a multi-word `--nvidia-smi.command`, as a
//! user's wrapper would be, and no environment changes in this (multi-threaded) test process.
//! Every test of how processes are killed and reaped runs twice: with the command started
//! directly, and through the watchdog as the exporter runs it (this crate's binary). The
//! watchdog is also tested alone: its own deadline, and cleaning up when the exporter's end
//! of the socket closes (as when the exporter is killed).

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpu_exporter::nvidia_smi::parse::{
    parse_compute_apps, parse_query_gpu, GPU_FIELDS, PROCESS_FIELDS,
};
use gpu_exporter::nvidia_smi::runner::{
    compute_apps_args, query_gpu_args, split_command, RunError, Runner,
};
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::nvidia_smi::watchdog;
use gpu_exporter::testing::capture::{capture_path, Capture, Phase, CAPTURES};

/// Become a child subreaper, as the exporter's `main` is meant to: killed grandchildren then
/// come back to this process and the runner reaps them, so the tests can demand that they are
/// gone entirely (not zombies of an init that does not reap, as in some containers).
fn subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gpu_exporter::nvidia_smi::runner::become_subreaper().expect("prctl"));
}

fn fake() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvidia-smi");
    assert!(p.is_file(), "{} missing", p.display());
    p
}

/// A runner whose command is `env K=V ... '<fake>'`, built as the user would write it.
fn runner(via: Via, capture: &str, vars: &[(&str, &str)], timeout_ms: u64) -> Runner {
    subreaper();
    let mut line = format!(
        "env 'FAKE_NVIDIA_SMI_CAPTURE={}'",
        capture_path(capture).display()
    );
    for (k, v) in vars {
        line.push_str(&format!(" '{k}={v}'"));
    }
    line.push_str(&format!(" '{}'", fake().display()));
    via.apply(Runner::new(
        split_command(&line).expect("split"),
        Duration::from_millis(timeout_ms),
        1 << 20,
    ))
}

/// How a run is started: directly, or through the watchdog (this crate's binary run again,
/// as the exporter does; `src/nvidia_smi/watchdog.rs`).
#[derive(Debug, Clone, Copy)]
enum Via {
    Direct,
    Watchdog,
}

impl Via {
    fn apply(self, mut r: Runner) -> Runner {
        if let Via::Watchdog = self {
            r.watchdog = Some(PathBuf::from(env!("CARGO_BIN_EXE_gpu-exporter")));
        }
        r
    }
}

/// `pid` is no child of ours any more: reaped, not a zombie waiting for us.
fn assert_reaped(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG writes only to `status`; it does not block.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert!(
        r == -1 && errno == Some(libc::ECHILD),
        "pid {pid} is still our child (waitpid returned {r}, errno {errno:?})"
    );
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Only possible if the pid was reused already; then it must not be our zombie.
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(ppid, std::process::id(), "pid {pid} still ours: {stat}");
    }
}

/// A grandchild `pid` of a killed run is gone: killed and, since we are its subreaper, reaped
/// by the runner before `run` returned (no zombie left anywhere).
fn assert_gone(pid: u32) {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => {}
        Ok(stat) => {
            let ppid: u32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            // Only a reused pid may be there, and then not one of ours.
            assert_ne!(
                ppid,
                std::process::id(),
                "grandchild {pid} not reaped: {stat}"
            );
            assert!(
                !stat.contains("(sleep)"),
                "grandchild {pid} still there: {stat}"
            );
        }
    }
}

fn read_pids(pidfile: &Path) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = std::fs::read_to_string(pidfile) {
            return s.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        assert!(Instant::now() < until, "fake wrote no pid file");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn answers_match_the_capture_for_every_gpu_field() {
    for file in CAPTURES {
        let cap = Capture::load(file);
        for (phase, word) in [(Phase::Idle, "idle"), (Phase::Load, "load")] {
            let direct = parse_query_gpu(cap.query_gpu(phase), Layout::Header).unwrap();
            let r = runner(
                Via::Direct,
                file,
                &[("FAKE_NVIDIA_SMI_SECTION", word)],
                10_000,
            );
            let out = r
                .run(&query_gpu_args(GPU_FIELDS))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let via = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
            assert!(via.problems.is_empty(), "{file} {word}: {:?}", via.problems);
            assert_eq!(via.items, direct.items, "{file} {word}");
            assert!(via.items[0].temperature_celsius.is_some());
        }
    }
}

#[test]
fn any_subset_in_any_order_with_nounits_or_noheader() {
    let file = CAPTURES[1];
    let direct =
        parse_query_gpu(Capture::load(file).query_gpu(Phase::Load), Layout::Header).unwrap();
    let reversed: Vec<&str> = GPU_FIELDS.iter().rev().copied().collect();
    let fields = reversed.join(",");
    let r = runner(
        Via::Direct,
        file,
        &[("FAKE_NVIDIA_SMI_SECTION", "load")],
        10_000,
    );

    let out = r
        .run(&[
            format!("--query-gpu={fields}"),
            "--format=csv,nounits".into(),
        ])
        .unwrap();
    assert!(!out.stdout.contains("MiB"), "nounits");
    let p = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.items, direct.items);

    let out = r
        .run(&[
            format!("--query-gpu={fields}"),
            "--format=csv,noheader,nounits".into(),
        ])
        .unwrap();
    let p = parse_query_gpu(&out.stdout, Layout::NoHeader(&reversed)).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.items, direct.items);

    // A small subset: only what was asked for is filled.
    let out = r
        .run(&query_gpu_args(&[
            "utilization.encoder",
            "index",
            "fan.speed",
        ]))
        .unwrap();
    assert_eq!(
        out.stdout,
        "utilization.encoder [%], index, fan.speed [%]\n72 %, 0, 0 %\n"
    );
    let g = &parse_query_gpu(&out.stdout, Layout::Header).unwrap().items[0];
    assert_eq!(
        (g.index, g.utilization_encoder_percent, g.fan_speed_percent),
        (Some(0), Some(72.0), Some(0.0))
    );
    assert_eq!(g.temperature_celsius, None);
}

#[test]
fn old_throttle_spelling_reads_the_same() {
    let file = CAPTURES[0];
    // The help text lists the old spelling for the reasons, not for the counters.
    let old: Vec<String> = GPU_FIELDS
        .iter()
        .map(|f| match f.strip_prefix("clocks_event_reasons.") {
            Some(rest) => format!("clocks_throttle_reasons.{rest}"),
            None => (*f).to_owned(),
        })
        .collect();
    assert!(old.iter().any(|f| f == "clocks_throttle_reasons.active"));
    let out = runner(Via::Direct, file, &[], 10_000)
        .run(&query_gpu_args(&old))
        .unwrap();
    let p = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
    let direct =
        parse_query_gpu(Capture::load(file).query_gpu(Phase::Idle), Layout::Header).unwrap();
    assert_eq!(p.items, direct.items);
    assert_eq!(p.items[0].clock_events.active_mask, Some(0x4));
}

fn compute_apps_through_the_runner(via: Via) {
    let file = CAPTURES[2];
    let out = runner(via, file, &[("FAKE_NVIDIA_SMI_SECTION", "load")], 10_000)
        .run(&compute_apps_args(PROCESS_FIELDS))
        .unwrap();
    let p = parse_compute_apps(&out.stdout, Layout::Header).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let pids: Vec<u32> = p.items.iter().map(|r| r.pid).collect();
    assert_eq!(pids, vec![11327, 11328, 11345]);
    assert_eq!(p.items[2].process_name.as_deref(), Some("./gpu_burn"));
    assert_eq!(p.items[2].used_memory_bytes, Some(15690.0 * 1048576.0));
}

fn hang_is_killed_at_the_deadline_and_reaped(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
        via,
        CAPTURES[0],
        &[
            ("FAKE_NVIDIA_SMI_MODE", "hang"),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
        700,
    );
    let start = Instant::now();
    let err = r.run(&query_gpu_args(GPU_FIELDS)).unwrap_err();
    let took = start.elapsed();
    let RunError::Timeout { pid, after, reaped } = err else {
        panic!("want Timeout, got {err}")
    };
    assert!(reaped);
    assert!(after >= Duration::from_millis(700), "{after:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // `env` execs the fake: the pid it reports is the child we started.
    assert_eq!(read_pids(&pidfile), vec![pid]);
    assert_reaped(pid);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists"
    );
}

fn hang_with_a_grandchild_kills_the_whole_group(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
        via,
        CAPTURES[0],
        &[
            ("FAKE_NVIDIA_SMI_MODE", "hang-child"),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
        800,
    );
    let start = Instant::now();
    let err = r.run(&query_gpu_args(&["index"])).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        start.elapsed()
    );
    let RunError::Timeout {
        pid, reaped: true, ..
    } = err
    else {
        panic!("want Timeout, got {err}")
    };
    let pids = read_pids(&pidfile);
    assert_eq!(pids[0], pid);
    assert_reaped(pid);
    assert_gone(pids[1]);
}

fn output_held_open_by_a_grandchild_times_out_and_kills_it(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
        via,
        CAPTURES[0],
        &[
            ("FAKE_NVIDIA_SMI_MODE", "exit-early"),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
        800,
    );
    let err = r.run(&query_gpu_args(&["index"])).unwrap_err();
    let RunError::Timeout { pid, .. } = err else {
        panic!("want Timeout, got {err}")
    };
    let pids = read_pids(&pidfile);
    assert_eq!(pids[0], pid);
    assert_reaped(pid);
    assert_gone(pids[1]);
}

fn failure_reports_exit_status_and_what_it_said(via: Via) {
    let r = runner(
        via,
        CAPTURES[0],
        &[("FAKE_NVIDIA_SMI_MODE", "fail")],
        10_000,
    );
    let err = r.run(&query_gpu_args(GPU_FIELDS)).unwrap_err();
    let RunError::Failed { status, excerpt } = &err else {
        panic!("want Failed, got {err}")
    };
    assert_eq!(status.code(), Some(9));
    assert!(
        excerpt.starts_with("NVIDIA-SMI has failed because it couldn't communicate"),
        "{excerpt}"
    );
    assert!(excerpt.len() <= 203, "excerpt is short: {}", excerpt.len());
    assert!(
        err.to_string()
            .starts_with("exited with status 9: NVIDIA-SMI has failed"),
        "{err}"
    );

    // An unknown field fails the whole query, as with the real nvidia-smi.
    let err = runner(via, CAPTURES[0], &[], 10_000)
        .run(&query_gpu_args(&["index", "no.such.field"]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Field \"no.such.field\" is not a valid field"),
        "{err}"
    );
}

fn garbage_and_truncated_output_are_parse_problems_not_crashes(via: Via) {
    let out = runner(
        via,
        CAPTURES[0],
        &[("FAKE_NVIDIA_SMI_MODE", "garbage")],
        10_000,
    )
    .run(&query_gpu_args(GPU_FIELDS))
    .unwrap();
    assert!(out.stdout.contains("not csv"));
    assert!(parse_query_gpu(&out.stdout, Layout::Header).is_err());

    let out = runner(
        via,
        CAPTURES[4],
        &[("FAKE_NVIDIA_SMI_MODE", "truncate")],
        10_000,
    )
    .run(&query_gpu_args(GPU_FIELDS))
    .unwrap();
    let p = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
    assert!(p.items.is_empty());
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
}

fn slow_but_within_the_deadline_succeeds_and_too_slow_times_out(via: Via) {
    let r = runner(via, CAPTURES[3], &[("FAKE_NVIDIA_SMI_DELAY", "1")], 5_000);
    let out = r
        .run(&query_gpu_args(&["index", "mig.mode.current"]))
        .unwrap();
    assert!(out.elapsed >= Duration::from_secs(1), "{:?}", out.elapsed);
    assert_eq!(out.stdout, "index, mig.mode.current\n0, Enabled\n");

    let r = runner(via, CAPTURES[3], &[("FAKE_NVIDIA_SMI_DELAY", "1")], 300);
    let start = Instant::now();
    let err = r.run(&query_gpu_args(&["index"])).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let RunError::Timeout { pid, .. } = err else {
        panic!("want Timeout, got {err}")
    };
    assert_reaped(pid);
}

fn flood_is_capped_and_killed(via: Via) {
    let mut r = runner(
        via,
        CAPTURES[0],
        &[("FAKE_NVIDIA_SMI_MODE", "flood")],
        10_000,
    );
    r.max_stdout_bytes = 64 * 1024;
    let start = Instant::now();
    let err = r.run(&query_gpu_args(&["index"])).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let RunError::OutputTooLarge { pid, limit } = err else {
        panic!("want OutputTooLarge, got {err}")
    };
    assert_eq!(limit, 64 * 1024);
    assert_reaped(pid);
}

fn missing_program_is_a_spawn_error_with_a_hint(via: Via) {
    let r = via.apply(Runner::new(
        split_command("/nonexistent/bin/nvidia-smi -i 0").unwrap(),
        Duration::from_secs(1),
        1024,
    ));
    let err = r.run(&query_gpu_args(&["index"])).unwrap_err();
    assert!(
        matches!(&err, RunError::Spawn { program, .. } if program == "/nonexistent/bin/nvidia-smi"),
        "{err}"
    );
    assert!(
        err.to_string().contains("mounted into the container"),
        "{err}"
    );
}

#[test]
fn compute_apps_through_the_runner_directly() {
    compute_apps_through_the_runner(Via::Direct);
}

#[test]
fn compute_apps_through_the_runner_through_the_watchdog() {
    compute_apps_through_the_runner(Via::Watchdog);
}

#[test]
fn hang_is_killed_at_the_deadline_and_reaped_directly() {
    hang_is_killed_at_the_deadline_and_reaped(Via::Direct);
}

#[test]
fn hang_is_killed_at_the_deadline_and_reaped_through_the_watchdog() {
    hang_is_killed_at_the_deadline_and_reaped(Via::Watchdog);
}

#[test]
fn hang_with_a_grandchild_kills_the_whole_group_directly() {
    hang_with_a_grandchild_kills_the_whole_group(Via::Direct);
}

#[test]
fn hang_with_a_grandchild_kills_the_whole_group_through_the_watchdog() {
    hang_with_a_grandchild_kills_the_whole_group(Via::Watchdog);
}

#[test]
fn output_held_open_by_a_grandchild_times_out_and_kills_it_directly() {
    output_held_open_by_a_grandchild_times_out_and_kills_it(Via::Direct);
}

#[test]
fn output_held_open_by_a_grandchild_times_out_and_kills_it_through_the_watchdog() {
    output_held_open_by_a_grandchild_times_out_and_kills_it(Via::Watchdog);
}

#[test]
fn failure_reports_exit_status_and_what_it_said_directly() {
    failure_reports_exit_status_and_what_it_said(Via::Direct);
}

#[test]
fn failure_reports_exit_status_and_what_it_said_through_the_watchdog() {
    failure_reports_exit_status_and_what_it_said(Via::Watchdog);
}

#[test]
fn garbage_and_truncated_output_are_parse_problems_not_crashes_directly() {
    garbage_and_truncated_output_are_parse_problems_not_crashes(Via::Direct);
}

#[test]
fn garbage_and_truncated_output_are_parse_problems_not_crashes_through_the_watchdog() {
    garbage_and_truncated_output_are_parse_problems_not_crashes(Via::Watchdog);
}

#[test]
fn slow_but_within_the_deadline_succeeds_and_too_slow_times_out_directly() {
    slow_but_within_the_deadline_succeeds_and_too_slow_times_out(Via::Direct);
}

#[test]
fn slow_but_within_the_deadline_succeeds_and_too_slow_times_out_through_the_watchdog() {
    slow_but_within_the_deadline_succeeds_and_too_slow_times_out(Via::Watchdog);
}

#[test]
fn flood_is_capped_and_killed_directly() {
    flood_is_capped_and_killed(Via::Direct);
}

#[test]
fn flood_is_capped_and_killed_through_the_watchdog() {
    flood_is_capped_and_killed(Via::Watchdog);
}

#[test]
fn missing_program_is_a_spawn_error_with_a_hint_directly() {
    missing_program_is_a_spawn_error_with_a_hint(Via::Direct);
}

#[test]
fn missing_program_is_a_spawn_error_with_a_hint_through_the_watchdog() {
    missing_program_is_a_spawn_error_with_a_hint(Via::Watchdog);
}

fn cancel_stops_a_hung_run_at_once(via: Via) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut r = runner(
        via,
        CAPTURES[0],
        &[
            ("FAKE_NVIDIA_SMI_MODE", "hang-child"),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
        30_000,
    );
    let cancel = Arc::new(AtomicBool::new(false));
    r.cancel = Some(Arc::clone(&cancel));
    let later = r.clone();
    let run = std::thread::spawn(move || r.run(&query_gpu_args(&["index"])));
    let pids = read_pids(&pidfile);
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    cancel.store(true, Ordering::SeqCst);
    let err = run.join().unwrap().unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(600), "{via:?}: took {took:?}");
    let RunError::Cancelled { pid: Some(pid) } = err else {
        panic!("{via:?}: want Cancelled, got {err}")
    };
    assert_eq!(pid, pids[0]);
    assert_reaped(pid);
    assert_gone(pids[1]);
    assert!(
        err.to_string()
            .starts_with("stopped, the exporter is shutting down"),
        "{err}"
    );
    // Later runs do not start.
    let err = later.run(&query_gpu_args(&["index"])).unwrap_err();
    assert!(
        matches!(err, RunError::Cancelled { pid: None }),
        "{via:?}: {err}"
    );
}

#[test]
fn cancel_stops_a_hung_run_at_once_directly() {
    cancel_stops_a_hung_run_at_once(Via::Direct);
}

#[test]
fn cancel_stops_a_hung_run_at_once_through_the_watchdog() {
    cancel_stops_a_hung_run_at_once(Via::Watchdog);
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_watchdog_killed_mid_run_is_an_error_and_the_command_is_killed_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
        Via::Watchdog,
        CAPTURES[0],
        &[
            ("FAKE_NVIDIA_SMI_MODE", "hang-child"),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
        30_000,
    );
    let run = std::thread::spawn(move || r.run(&query_gpu_args(&["index"])));
    let pids = read_pids(&pidfile);
    let watchdog = parent_of(pids[0]);
    assert_ne!(
        watchdog,
        std::process::id(),
        "the command is the watchdog's child"
    );
    let start = Instant::now();
    // SAFETY: kill(2) of the watchdog, our own unreaped child (the run waits for it).
    unsafe {
        libc::kill(watchdog as libc::pid_t, libc::SIGKILL);
    }
    let err = run.join().unwrap().unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, RunError::Watchdog(_)), "{err}");
    // The command and its child came back to us (the subreaper) and were killed and reaped.
    assert_reaped(pids[0]);
    assert_gone(pids[0]);
    assert_gone(pids[1]);
}

/// The watchdog on its own, as the exporter starts it, with a command that forks a grandchild
/// and hangs; `ours` is the exporter's end of the control socket.
fn watchdog_alone(timeout_ms: u64, pidfile: &Path) -> (std::process::Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let script = format!(
        "sleep 3600 & echo \"$$ $!\" > {p}.tmp && mv {p}.tmp {p}; wait",
        p = pidfile.display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_gpu-exporter"))
        .arg(watchdog::FLAG)
        .arg(timeout_ms.to_string())
        .args(["--", "sh", "-c", &script, "hung"])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    (child, ours)
}

/// Wait for `child` to exit, failing after `limit`.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < until, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_watchdog_kills_at_its_own_deadline_even_if_the_exporter_says_nothing() {
    // The exporter frozen (stopped, say): its end of the socket stays open and silent.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let start = Instant::now();
    let (mut child, ours) = watchdog_alone(600, &pidfile);
    let mut reports = BufReader::new(ours.try_clone().unwrap()).lines();
    let started = reports.next().unwrap().unwrap();
    let pids = read_pids(&pidfile);
    assert_eq!(started, format!("started {}", pids[0]));
    assert_eq!(reports.next().unwrap().unwrap(), "timed-out");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(exits_within(&mut child, Duration::from_secs(3)).success());
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Killed and reaped by the watchdog, which is their subreaper.
    assert_gone(pids[0]);
    assert_gone(pids[1]);
    drop(ours);
}

#[test]
fn the_watchdog_cleans_up_as_soon_as_the_exporter_is_gone() {
    // The exporter's end closes as when it is killed: the kernel closes its descriptors.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let (mut child, ours) = watchdog_alone(60_000, &pidfile);
    let mut reports = BufReader::new(ours.try_clone().unwrap()).lines();
    assert!(reports.next().unwrap().unwrap().starts_with("started "));
    let pids = read_pids(&pidfile);
    let start = Instant::now();
    drop(reports);
    drop(ours);
    assert!(exits_within(&mut child, Duration::from_secs(2)).success());
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_gone(pids[0]);
    assert_gone(pids[1]);
}

#[test]
fn the_watchdog_reports_exit_statuses_and_spawn_failures() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-exporter"))
        .args([watchdog::FLAG, "5000", "--", "sh", "-c", "kill -TERM $$"])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut reports = BufReader::new(ours.try_clone().unwrap()).lines();
    assert!(reports.next().unwrap().unwrap().starts_with("started "));
    assert_eq!(
        reports.next().unwrap().unwrap(),
        format!("exited {}", libc::SIGTERM)
    );
    ours.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(exits_within(&mut child, Duration::from_secs(2)).success());

    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-exporter"))
        .args([watchdog::FLAG, "5000", "--", "/nonexistent/nvidia-smi"])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut reports = BufReader::new(ours).lines();
    assert_eq!(
        reports.next().unwrap().unwrap(),
        format!("spawn-failed {}", libc::ENOENT)
    );
    assert!(exits_within(&mut child, Duration::from_secs(2)).success());

    // Not meant for people: a bad command line is refused with a usage line.
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-exporter"))
        .args([watchdog::FLAG, "soon"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
