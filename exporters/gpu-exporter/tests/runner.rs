//! The nvidia-smi runner against `tests/fake-nvidia-smi`, which answers from the real captures
//! and can be told to hang, fail, print garbage, be slow, or flood.
//!
//! The fake is started through `env VAR=... <path>`: a multi-word `--nvidia-smi.command`, as a
//! user's wrapper would be, and no environment changes in this (multi-threaded) test process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpu_exporter::nvidia_smi::parse::{
    parse_compute_apps, parse_query_gpu, GPU_FIELDS, PROCESS_FIELDS,
};
use gpu_exporter::nvidia_smi::runner::{
    compute_apps_args, query_gpu_args, split_command, RunError, Runner,
};
use gpu_exporter::nvidia_smi::table::Layout;
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
fn runner(capture: &str, vars: &[(&str, &str)], timeout_ms: u64) -> Runner {
    subreaper();
    let mut line = format!(
        "env 'FAKE_NVIDIA_SMI_CAPTURE={}'",
        capture_path(capture).display()
    );
    for (k, v) in vars {
        line.push_str(&format!(" '{k}={v}'"));
    }
    line.push_str(&format!(" '{}'", fake().display()));
    Runner {
        command: split_command(&line).expect("split"),
        timeout: Duration::from_millis(timeout_ms),
        max_stdout_bytes: 1 << 20,
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
            let r = runner(file, &[("FAKE_NVIDIA_SMI_SECTION", word)], 10_000);
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
    let r = runner(file, &[("FAKE_NVIDIA_SMI_SECTION", "load")], 10_000);

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
    let out = runner(file, &[], 10_000)
        .run(&query_gpu_args(&old))
        .unwrap();
    let p = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
    let direct =
        parse_query_gpu(Capture::load(file).query_gpu(Phase::Idle), Layout::Header).unwrap();
    assert_eq!(p.items, direct.items);
    assert_eq!(p.items[0].clock_events.active_mask, Some(0x4));
}

#[test]
fn compute_apps_through_the_runner() {
    let file = CAPTURES[2];
    let out = runner(file, &[("FAKE_NVIDIA_SMI_SECTION", "load")], 10_000)
        .run(&compute_apps_args(PROCESS_FIELDS))
        .unwrap();
    let p = parse_compute_apps(&out.stdout, Layout::Header).unwrap();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let pids: Vec<u32> = p.items.iter().map(|r| r.pid).collect();
    assert_eq!(pids, vec![11327, 11328, 11345]);
    assert_eq!(p.items[2].process_name.as_deref(), Some("./gpu_burn"));
    assert_eq!(p.items[2].used_memory_bytes, Some(15690.0 * 1048576.0));
}

#[test]
fn hang_is_killed_at_the_deadline_and_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
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

#[test]
fn hang_with_a_grandchild_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
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

#[test]
fn output_held_open_by_a_grandchild_times_out_and_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let r = runner(
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

#[test]
fn failure_reports_exit_status_and_what_it_said() {
    let r = runner(CAPTURES[0], &[("FAKE_NVIDIA_SMI_MODE", "fail")], 10_000);
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
    let err = runner(CAPTURES[0], &[], 10_000)
        .run(&query_gpu_args(&["index", "no.such.field"]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Field \"no.such.field\" is not a valid field"),
        "{err}"
    );
}

#[test]
fn garbage_and_truncated_output_are_parse_problems_not_crashes() {
    let out = runner(CAPTURES[0], &[("FAKE_NVIDIA_SMI_MODE", "garbage")], 10_000)
        .run(&query_gpu_args(GPU_FIELDS))
        .unwrap();
    assert!(out.stdout.contains("not csv"));
    assert!(parse_query_gpu(&out.stdout, Layout::Header).is_err());

    let out = runner(CAPTURES[4], &[("FAKE_NVIDIA_SMI_MODE", "truncate")], 10_000)
        .run(&query_gpu_args(GPU_FIELDS))
        .unwrap();
    let p = parse_query_gpu(&out.stdout, Layout::Header).unwrap();
    assert!(p.items.is_empty());
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
}

#[test]
fn slow_but_within_the_deadline_succeeds_and_too_slow_times_out() {
    let r = runner(CAPTURES[3], &[("FAKE_NVIDIA_SMI_DELAY", "1")], 5_000);
    let out = r
        .run(&query_gpu_args(&["index", "mig.mode.current"]))
        .unwrap();
    assert!(out.elapsed >= Duration::from_secs(1), "{:?}", out.elapsed);
    assert_eq!(out.stdout, "index, mig.mode.current\n0, Enabled\n");

    let r = runner(CAPTURES[3], &[("FAKE_NVIDIA_SMI_DELAY", "1")], 300);
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

#[test]
fn flood_is_capped_and_killed() {
    let mut r = runner(CAPTURES[0], &[("FAKE_NVIDIA_SMI_MODE", "flood")], 10_000);
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

#[test]
fn missing_program_is_a_spawn_error_with_a_hint() {
    let r = Runner {
        command: split_command("/nonexistent/bin/nvidia-smi -i 0").unwrap(),
        timeout: Duration::from_secs(1),
        max_stdout_bytes: 1024,
    };
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
