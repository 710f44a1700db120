//! The real `gpu-exporter` binary with `tests/fake-nvidia-smi` answering from the real
//! captures: served values, `--once` and promtool, a hanging / failing / garbage-printing
//! nvidia-smi, the auto fallback, no backend at all, and a runtime-suspended GPU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpu_exporter::testing::capture::{capture_path, CAPTURES};
use odin_testkit::{collector_success, promtool_check_metrics, sample, value, Exe, Exporter};

const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_gpu-exporter"),
    env_prefix: "GPU_EXPORTER_",
};

/// `--once` run to the end.
fn once(args: &[String], env: &[(&str, &str)]) -> std::process::Output {
    EXE.once(args, env)
}

const U: &str = "gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\"";

fn fake() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvidia-smi")
}

fn capture(i: usize) -> String {
    capture_path(CAPTURES[i]).display().to_string()
}

/// A scratch directory: an empty procfs (the captures' pids must not pick up names of
/// unrelated processes of this host), a sysfs tree, a mode file and a call log for the
/// wrapper command.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys")).unwrap();
        std::fs::write(dir.path().join("mode"), "normal").unwrap();
        Scratch { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn paths(&self) -> Vec<String> {
        vec![
            format!("--path.procfs={}", self.path("proc").display()),
            format!("--path.sysfs={}", self.path("sys").display()),
        ]
    }
    fn set_mode(&self, mode: &str) {
        std::fs::write(self.path("mode.tmp"), mode).unwrap();
        std::fs::rename(self.path("mode.tmp"), self.path("mode")).unwrap();
    }
    /// `--nvidia-smi.command` as several words: `sh -c '...' fake-nvidia-smi`, which logs each
    /// call and takes FAKE_NVIDIA_SMI_MODE from the mode file, so a test can change how
    /// nvidia-smi behaves while the exporter runs.
    fn wrapper(&self) -> String {
        format!(
            "--nvidia-smi.command=sh -c 'echo \"$1\" >> {calls}; FAKE_NVIDIA_SMI_MODE=$(cat {mode}) exec {fake} \"$@\"' fake-nvidia-smi",
            calls = self.path("calls").display(),
            mode = self.path("mode").display(),
            fake = fake().display(),
        )
    }
    /// How many `--query-gpu` runs the wrapper saw.
    fn query_runs(&self) -> usize {
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("--query-gpu="))
            .count()
    }
    fn runtime_status(&self, dev: &str, status: &str) {
        let p = self.path("sys/bus/pci/devices").join(dev).join("power");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("runtime_status"), format!("{status}\n")).unwrap();
    }
}

fn args(extra: &[&str], scratch: &Scratch) -> Vec<String> {
    let mut v = scratch.paths();
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// Poll `cond` on /metrics every 50 ms until it holds, failing after `limit`.
fn wait_metrics(e: &Exporter, limit: Duration, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let body = e.get("/metrics").text();
        if cond(&body) {
            return body;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {limit:?}; last /metrics:\n{body}\nlog:\n{}",
                e.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn success(body: &str, c: &str) -> Option<f64> {
    collector_success(body, "nvidia_gpu", c)
}

fn component<'a>(h: &'a serde_json::Value, c: &str) -> &'a serde_json::Value {
    &h["components"][c]
}

fn last_error(h: &serde_json::Value, c: &str) -> String {
    component(h, c)["errors"]
        .as_array()
        .and_then(|a| a.last())
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Children of `pid` and their states, from every `/proc/<p>/stat` (`pid (comm) S ppid ...`).
/// Reading `stat` works on every kernel (`/proc/<pid>/task/*/children` needs
/// CONFIG_PROC_CHILDREN).
/// Children of `pid` that are zombies and still are half a second later. The exporter keeps
/// starting collections in the background, so a child may be caught between its exit and
/// the runner's wait; one left unreaped stays a zombie.
fn lasting_zombies(pid: u32) -> Vec<u32> {
    let zombies = |pid| {
        children(pid)
            .into_iter()
            .filter(|&(_, state)| state == 'Z')
            .map(|(c, _)| c)
            .collect::<Vec<_>>()
    };
    let first = zombies(pid);
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_millis(500));
    let again = zombies(pid);
    first.into_iter().filter(|c| again.contains(c)).collect()
}

fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|pp| pp.parse::<u32>().ok()) == Some(pid) {
            out.push((p, state));
        }
    }
    out
}

#[test]
fn serves_the_capture_values_from_nvidia_smi() {
    let s = Scratch::new();
    let cmd = format!("--nvidia-smi.command={}", fake().display());
    let e = EXE.start(
        &args(
            &["--backend=nvidia-smi", &cmd, "--collect.interval=200ms"],
            &s,
        ),
        &[("FAKE_NVIDIA_SMI_CAPTURE", &capture(1))],
    );
    let body = wait_metrics(&e, Duration::from_secs(10), "gpu success", |b| {
        success(b, "gpu") == Some(1.0)
    });
    // RTX 4080 SUPER, idle.
    assert_eq!(
        value(&body, &format!("nvidia_gpu_temperature_celsius{{{U}}}")),
        43.0
    );
    assert_eq!(
        value(&body, &format!("nvidia_gpu_power_draw_watts{{{U}}}")),
        26.2
    );
    assert_eq!(
        value(&body, &format!("nvidia_gpu_memory_used_bytes{{{U}}}")),
        596.0 * 1048576.0
    );
    assert_eq!(
        value(&body, &format!("nvidia_gpu_memory_total_bytes{{{U}}}")),
        16376.0 * 1048576.0
    );
    assert_eq!(
        value(&body, &format!("nvidia_gpu_utilization_percent{{{U}}}")),
        0.0
    );
    assert_eq!(
        value(
            &body,
            &format!("nvidia_gpu_fan_speed_ratio{{{U},fan=\"0\"}}")
        ),
        0.0
    );
    assert_eq!(
        value(
            &body,
            &format!(
                "nvidia_gpu_process_memory_used_bytes{{{U},pid=\"2165\",process=\"kwin_wayland\"}}"
            )
        ),
        25.0 * 1048576.0
    );
    assert_eq!(value(&body, "nvidia_gpu_devices"), 1.0);
    assert_eq!(
        value(
            &body,
            "nvidia_gpu_backend_info{backend=\"nvidia-smi\",reason=\"forced\"}"
        ),
        1.0
    );
    assert!(body.contains("cuda_version=\"13.2\""), "{body}");
    assert_eq!(success(&body, "backend"), Some(1.0));
    assert!(body.contains("nvidia_gpu_collector_result_age_seconds{collector=\"gpu\"} "));
    let h = e.get("/health").json();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(component(&h, "gpu")["mode"], "background", "{h}");
    assert_eq!(e.get("/ready").status, 200);
    // Logged by the first run, which chose the backend (the log is read on another thread).
    e.wait_for_line(Duration::from_secs(2), |l| {
        l.contains("msg=\"gpu backend selected\" backend=nvidia-smi reason=forced")
    });
}

#[test]
fn once_is_promtool_clean_and_dcgm_compat_only_adds_dcgm_complaints() {
    let s = Scratch::new();
    let cmd = format!("--nvidia-smi.command={}", fake().display());
    for (i, cap) in CAPTURES.iter().enumerate() {
        let out = once(
            &args(&["--backend=nvidia-smi", &cmd], &s),
            &[
                ("FAKE_NVIDIA_SMI_CAPTURE", &capture(i)),
                ("FAKE_NVIDIA_SMI_SECTION", "load"),
            ],
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cap}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(value(&stdout, "nvidia_gpu_devices"), 1.0, "{cap}");
        assert!(!stdout.contains("DCGM_"), "{cap}");
        if let Some(said) = promtool_check_metrics(&stdout) {
            assert_eq!(said, "", "{cap}: promtool check metrics must print nothing");
        }
    }

    let out = once(
        &args(
            &[
                "--backend=nvidia-smi",
                &cmd,
                "--metrics.dcgm-compat",
                "--metrics.dcgm-hostname=node-1",
            ],
            &s,
        ),
        &[
            ("FAKE_NVIDIA_SMI_CAPTURE", &capture(4)),
            ("FAKE_NVIDIA_SMI_SECTION", "load"),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    let d = "gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\",device=\"nvidia0\",modelName=\"NVIDIA L40S\",Hostname=\"node-1\",pci_bus_id=\"00000000:01:00.0\"";
    assert_eq!(value(&stdout, &format!("DCGM_FI_DEV_GPU_UTIL{{{d}}}")), 9.0);
    assert_eq!(
        value(&stdout, &format!("DCGM_FI_DEV_FB_USED{{{d}}}")),
        1235.0
    );
    assert_eq!(
        value(&stdout, &format!("DCGM_FI_DEV_SM_CLOCK{{{d}}}")),
        2520.0
    );
    if let Some(said) = promtool_check_metrics(&stdout) {
        let lines: Vec<&str> = said.lines().collect();
        assert!(
            !lines.is_empty(),
            "promtool should flag the DCGM label names"
        );
        for l in &lines {
            assert!(
                l.starts_with("DCGM_FI_DEV_"),
                "promtool about a non-DCGM name: {l}"
            );
        }
    }
}

#[test]
fn hanging_nvidia_smi_never_blocks_a_scrape_and_leaves_no_zombie() {
    let s = Scratch::new();
    let wrapper = s.wrapper();
    let pidfile = s.path("pid");
    let e = EXE.start(
        &args(
            &[
                "--backend=nvidia-smi",
                &wrapper,
                "--collect.interval=200ms",
                "--nvidia-smi.timeout=1500ms",
            ],
            &s,
        ),
        &[
            ("FAKE_NVIDIA_SMI_CAPTURE", &capture(2)),
            ("FAKE_NVIDIA_SMI_PIDFILE", pidfile.to_str().unwrap()),
        ],
    );
    wait_metrics(&e, Duration::from_secs(10), "first good run", |b| {
        success(b, "gpu") == Some(1.0)
    });
    s.set_mode("hang");
    let switched = Instant::now();
    let mut max_age: f64 = 0.0;
    let mut stale_but_served = false;
    let mut slowest = Duration::ZERO;
    let mut saw_hung_child = false;
    // Scrape while the hung run is in flight and after it is killed.
    while switched.elapsed() < Duration::from_millis(2600) {
        let t = Instant::now();
        let body = e.get("/metrics").text();
        slowest = slowest.max(t.elapsed());
        let age = sample(
            &body,
            "nvidia_gpu_collector_result_age_seconds{collector=\"gpu\"}",
        );
        if let Some(a) = age {
            max_age = max_age.max(a);
            if a > 0.6 && body.contains("nvidia_gpu_temperature_celsius{") {
                stale_but_served = true;
            }
        }
        saw_hung_child |= children(e.child.id()).iter().any(|&(_, st)| st == 'S');
        let zombies = lasting_zombies(e.child.id());
        assert!(
            zombies.is_empty(),
            "children {zombies:?} of the exporter stay zombies"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_hung_child,
        "the hung nvidia-smi was never seen as a child of the exporter"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?}"
    );
    assert!(
        max_age > 1.0,
        "result age should grow while nvidia-smi hangs: {max_age}"
    );
    assert!(
        stale_but_served,
        "the last good data is served while the run is in flight"
    );
    let h = e.get("/health").json();
    let gpu = component(&h, "gpu");
    assert_eq!(gpu["healthy"], false, "{h}");
    assert!(last_error(&h, "gpu").contains("timed out after"), "{h}");
    let body = e.get("/metrics").text();
    assert_eq!(success(&body, "gpu"), Some(0.0));

    // The hung fake was killed and reaped: gone from /proc, and no child of the exporter is a
    // zombie.
    let hung: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{hung}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{hung}")).exists(),
        "hung nvidia-smi {hung} still there after its timeout"
    );
    let zombies = lasting_zombies(e.child.id());
    assert!(
        zombies.is_empty(),
        "children {zombies:?} of the exporter are zombies"
    );

    // Back to normal: the next run succeeds again.
    s.set_mode("normal");
    wait_metrics(&e, Duration::from_secs(6), "recovery", |b| {
        success(b, "gpu") == Some(1.0) && b.contains("nvidia_gpu_temperature_celsius{")
    });
    let zombies = lasting_zombies(e.child.id());
    assert!(
        zombies.is_empty(),
        "children {zombies:?} of the exporter are zombies"
    );
}

#[test]
fn failing_and_garbage_nvidia_smi_are_clear_errors_and_serving_goes_on() {
    let s = Scratch::new();
    s.set_mode("fail");
    let wrapper = s.wrapper();
    let e = EXE.start(
        &args(
            &["--backend=nvidia-smi", &wrapper, "--collect.interval=200ms"],
            &s,
        ),
        &[("FAKE_NVIDIA_SMI_CAPTURE", &capture(0))],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = e.get("/health").json();
        if last_error(&h, "gpu").contains("exited with status 9") {
            let err = last_error(&h, "gpu");
            assert!(err.contains("NVIDIA-SMI has failed"), "{err}");
            assert_eq!(component(&h, "gpu")["healthy"], false);
            break;
        }
        assert!(Instant::now() < deadline, "no failure in /health: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = e.get("/metrics");
    assert_eq!(r.status, 200);
    let body = r.text();
    assert_eq!(success(&body, "gpu"), Some(0.0));
    assert_eq!(
        sample(&body, "nvidia_gpu_devices"),
        None,
        "nothing stale or invented"
    );

    s.set_mode("normal");
    wait_metrics(&e, Duration::from_secs(6), "recovery from fail", |b| {
        success(b, "gpu") == Some(1.0)
    });
    s.set_mode("garbage");
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let h = e.get("/health").json();
        let err = last_error(&h, "gpu");
        if err.contains("unreadable") {
            assert!(
                err.starts_with("nvidia-smi --query-gpu printed something unreadable"),
                "{err}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no garbage error in /health: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.get("/metrics").status, 200);
    assert_eq!(
        e.get("/healthz").status,
        200,
        "the backend component is still healthy"
    );
}

#[test]
fn auto_falls_back_to_nvidia_smi_and_says_so() {
    let s = Scratch::new();
    let cmd = format!("--nvidia-smi.command={}", fake().display());
    let e = EXE.start(
        &args(
            &[
                "--backend=auto",
                "--nvml.library=/nonexistent/libnvidia-ml.so",
                &cmd,
                "--collect.interval=200ms",
            ],
            &s,
        ),
        &[("FAKE_NVIDIA_SMI_CAPTURE", &capture(4))],
    );
    let body = wait_metrics(&e, Duration::from_secs(10), "gpu success", |b| {
        success(b, "gpu") == Some(1.0)
    });
    assert_eq!(
        value(
            &body,
            "nvidia_gpu_backend_info{backend=\"nvidia-smi\",reason=\"nvml_unavailable_fell_back\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&body, &format!("nvidia_gpu_temperature_celsius{{{U}}}")),
        63.0
    );
    // A fallback is not a failure: GPUs are measured; /health says why in `detail`.
    assert_eq!(success(&body, "backend"), Some(1.0));
    e.wait_for_line(Duration::from_secs(2), |l| {
        l.contains(
            "msg=\"gpu backend selected\" backend=nvidia-smi reason=nvml_unavailable_fell_back detail=\"NVML: ",
        )
    });
    let h = e.get("/health").json();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(component(&h, "gpu")["healthy"], true, "{h}");
    let detail = component(&h, "backend")["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{h}"))
        .to_owned();
    assert!(
        detail.starts_with("backend=nvidia-smi reason=nvml_unavailable_fell_back: NVML: "),
        "{detail}"
    );
    assert!(detail.ends_with("; fell back to nvidia-smi"), "{detail}");
}

#[test]
fn with_no_backend_it_still_serves_and_explains() {
    let s = Scratch::new();
    let e = EXE.start(
        &args(
            &[
                "--nvml.library=/nonexistent/libnvidia-ml.so",
                "--nvidia-smi.command=/nonexistent/nvidia-smi",
                "--collect.interval=200ms",
                "--metrics.dcgm-compat",
            ],
            &s,
        ),
        &[],
    );
    let body = wait_metrics(&e, Duration::from_secs(10), "a failed gpu run", |b| {
        success(b, "gpu") == Some(0.0) && b.contains("nvidia_gpu_devices 0")
    });
    assert_eq!(
        value(
            &body,
            "nvidia_gpu_backend_info{backend=\"none\",reason=\"nothing_available\"}"
        ),
        1.0
    );
    assert!(!body.contains("DCGM_"), "{body}");
    let h = e.get("/health").json();
    assert_eq!(h["status"], "unhealthy", "{h}");
    let hint = last_error(&h, "gpu");
    for fix in [
        "runtimeClassName: nvidia",
        "NVIDIA_VISIBLE_DEVICES=all",
        "libnvidia-ml.so.1",
        "--nvml.library",
        "nvidia-smi on PATH",
        "/nonexistent/nvidia-smi",
    ] {
        assert!(hint.contains(fix), "{fix} not in {hint}");
    }
    assert_eq!(e.get("/healthz").status, 503);
    e.wait_for_line(Duration::from_secs(2), |l| {
        l.contains("backend=none reason=nothing_available")
    });
}

#[test]
fn a_suspended_gpu_is_not_woken() {
    let s = Scratch::new();
    // RTX 4080 SUPER at 00000000:01:00.0.
    s.runtime_status("0000:01:00.0", "active");
    let wrapper = s.wrapper();
    let e = EXE.start(
        &args(
            &["--backend=nvidia-smi", &wrapper, "--collect.interval=200ms"],
            &s,
        ),
        &[("FAKE_NVIDIA_SMI_CAPTURE", &capture(1))],
    );
    let body = wait_metrics(&e, Duration::from_secs(10), "gpu success", |b| {
        success(b, "gpu") == Some(1.0)
    });
    assert_eq!(value(&body, &format!("nvidia_gpu_suspended{{{U}}}")), 0.0);

    s.runtime_status("0000:01:00.0", "suspended");
    let body = wait_metrics(&e, Duration::from_secs(5), "suspended", |b| {
        sample(b, &format!("nvidia_gpu_suspended{{{U}}}")) == Some(1.0)
    });
    let runs = s.query_runs();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        s.query_runs(),
        runs,
        "nvidia-smi ran while the GPU was suspended"
    );
    assert!(!body.contains("nvidia_gpu_temperature_celsius{"), "{body}");
    assert_eq!(value(&body, "nvidia_gpu_devices"), 1.0);
    assert!(body.contains("nvidia_gpu_info{gpu=\"0\""), "{body}");
    assert_eq!(success(&body, "gpu"), Some(1.0));

    s.runtime_status("0000:01:00.0", "active");
    wait_metrics(&e, Duration::from_secs(5), "awake again", |b| {
        b.contains("nvidia_gpu_temperature_celsius{")
    });
    assert!(s.query_runs() > runs);
}

#[test]
fn bad_flags_are_refused() {
    let out = once(&["--backend=cuda".to_owned()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = once(
        &["--nvidia-smi.command=nvidia-smi 'unterminated".to_owned()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--nvidia-smi.command"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
