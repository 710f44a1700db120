//! The real `gpu-exporter` binary with an nvidia-smi that never answers: a shell script that
//! forks a grandchild sleeping forever and waits for it, as a wrapper around a wedged driver
//! would. Whatever nvidia-smi does, the exporter must listen at once (choosing its backend in
//! the background, not ready until then), stop within a second on SIGTERM, and not leave the
//! hung command behind, not even when it is killed with SIGKILL itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gpu_exporter::testing::capture::{capture_path, CAPTURES};
use odin_testkit::process::{gone_within, kill_left_behind, Seen as Proc};
use odin_testkit::{sample, Exe, Exporter};

const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_gpu-exporter"),
    env_prefix: "GPU_EXPORTER_",
};

/// Which runs of nvidia-smi hang.
#[derive(Debug, Clone, Copy)]
enum Hang {
    Always,
    Queries,
}

fn fake() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvidia-smi")
}

/// A scratch directory with an empty procfs and sysfs (no GPU to find there) and the pid file
/// the hung nvidia-smi writes: `<its pid> <its grandchild's pid>`.
struct Hung {
    dir: tempfile::TempDir,
}

impl Hung {
    fn new() -> Hung {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys")).unwrap();
        Hung { dir }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("pids")
    }

    /// The exporter's flags: nvidia-smi forced, `sh -c` as the command (no script file to
    /// exec, so no "text file busy" race with the other tests' forks). With [`Hang::Always`]
    /// every run hangs, the start-up probe included; with [`Hang::Queries`] the probe
    /// (`--help-query-gpu`, `--version`) is answered by `tests/fake-nvidia-smi` and the
    /// queries hang.
    fn args(&self, timeout: &str, hang: Hang) -> Vec<String> {
        let p = self.pidfile();
        let hung = format!(
            "sleep 3600 & echo \"$$ $!\" > {p}.tmp && mv {p}.tmp {p}; wait",
            p = p.display()
        );
        let script = match hang {
            Hang::Always => hung,
            Hang::Queries => format!(
                "case \"$1\" in --query-*) {hung};; *) exec {fake} \"$@\";; esac",
                fake = fake().display()
            ),
        };
        vec![
            format!("--path.procfs={}", self.dir.path().join("proc").display()),
            format!("--path.sysfs={}", self.dir.path().join("sys").display()),
            "--backend=nvidia-smi".to_owned(),
            format!("--nvidia-smi.command=sh -c '{script}' hung-nvidia-smi"),
            format!("--nvidia-smi.timeout={timeout}"),
            "--collect.interval=1h".to_owned(),
        ]
    }

    fn start(&self, timeout: &str, hang: Hang) -> Exporter {
        let capture = capture_path(CAPTURES[1]).display().to_string();
        EXE.start(
            &self.args(timeout, hang),
            &[("FAKE_NVIDIA_SMI_CAPTURE", &capture)],
        )
    }

    /// The hung command and its grandchild, once the command has started.
    fn pids(&self, limit: Duration) -> [Proc; 2] {
        let until = Instant::now() + limit;
        loop {
            if let Ok(s) = std::fs::read_to_string(self.pidfile()) {
                let p: Vec<u32> = s.split_whitespace().map(|p| p.parse().unwrap()).collect();
                return [Proc::of(p[0]), Proc::of(p[1])];
            }
            assert!(Instant::now() < until, "nvidia-smi never started");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn gpu(h: &serde_json::Value) -> &serde_json::Value {
    &h["components"]["gpu"]
}

impl Drop for Hung {
    /// A failing test may leave the hung command behind (the very defect these tests look
    /// for): kill what the pid file names.
    fn drop(&mut self) {
        kill_left_behind(&self.pidfile(), &self.dir.path().display().to_string());
    }
}

#[test]
fn listens_at_once_and_is_ready_once_the_backend_is_chosen() {
    let h = Hung::new();
    let start = Instant::now();
    let e = h.start("3s", Hang::Always);
    let listening = start.elapsed();
    eprintln!("listening {listening:?} after start, with nvidia-smi hung");
    assert!(
        listening < Duration::from_millis(1500),
        "took {listening:?} to listen; log:\n{}",
        e.log()
    );
    let procs = h.pids(Duration::from_secs(5));

    // Not ready, and /health says why.
    let r = e.get("/ready");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text()
            .starts_with("not ready: gpu: choosing a backend: nvidia-smi has not answered for "),
        "{}",
        r.text()
    );
    let health = e.get("/health").json();
    let detail = gpu(&health)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.starts_with("choosing a backend: nvidia-smi has not answered for "),
        "{health}"
    );
    assert!(detail.ends_with(" s"), "{detail}");
    assert_eq!(gpu(&health)["state"], "pending", "{health}");
    assert_eq!(
        health["status"], "healthy",
        "nothing has failed yet: {health}"
    );
    assert_eq!(e.get("/healthz").status, 200);

    // Nothing claims GPUs that were never read, nor a backend that is not chosen yet.
    let body = e.get("/metrics").text();
    assert_eq!(
        sample(&body, "nvidia_gpu_collector_success{collector=\"gpu\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(sample(&body, "nvidia_gpu_devices"), None, "{body}");
    assert!(!body.contains("nvidia_gpu_backend_info{"), "{body}");
    assert!(!body.contains("nvidia_gpu_temperature_celsius"), "{body}");

    // At nvidia-smi's timeout the probe gives up (killing the hung command), the backend is
    // chosen (forced), and the exporter is ready: the first run has failed, which it says.
    let deadline = Instant::now() + Duration::from_secs(8);
    while e.get("/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready; log:\n{}", e.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = start.elapsed();
    eprintln!("ready {ready:?} after start");
    assert!(
        ready >= Duration::from_millis(2900),
        "ready too early: {ready:?}"
    );
    let health = e.get("/health").json();
    assert_eq!(gpu(&health)["state"], "failed", "{health}");
    let err = gpu(&health)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains("timed out after"), "{err}");
    assert_eq!(gpu(&health)["detail"], serde_json::Value::Null, "{health}");
    let backend = health["components"]["backend"]["detail"].as_str().unwrap();
    assert!(
        backend.starts_with("backend=nvidia-smi reason=forced: nvidia-smi does not answer yet: "),
        "{backend}"
    );
    let body = e.get("/metrics").text();
    assert_eq!(
        sample(
            &body,
            "nvidia_gpu_backend_info{backend=\"nvidia-smi\",reason=\"forced\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, "nvidia_gpu_devices"), None, "{body}");
    e.wait_for_line(Duration::from_secs(1), |l| {
        l.contains("msg=\"gpu backend selected\" backend=nvidia-smi reason=forced")
    });
    assert!(
        gone_within(&procs, Duration::from_secs(1)).is_some(),
        "the timed-out nvidia-smi was left behind: {procs:?}"
    );
}

/// SIGTERM while nvidia-smi hangs: exit 0 within a second, the hung command and its
/// grandchild killed and reaped before the exporter exits.
fn sigterm_while_hung(hang: Hang) {
    let h = Hung::new();
    // A timeout far beyond the test: only the shutdown may end the hung command.
    let mut e = h.start("60s", hang);
    let procs = h.pids(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert!(procs.iter().all(Proc::exists), "{procs:?}");

    let start = Instant::now();
    e.signal(libc::SIGTERM);
    let status = e.wait(Duration::from_secs(10));
    let took = start.elapsed();
    eprintln!("{hang:?}: exited {took:?} after SIGTERM, with nvidia-smi hung");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}; log:\n{}",
        e.log()
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", e.log());
    // Killed and reaped before the exporter exited: gone, not even a zombie.
    let left: Vec<&Proc> = procs.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}; log:\n{}", e.log());
}

#[test]
fn sigterm_during_a_hung_query_stops_within_a_second_and_takes_it_along() {
    sigterm_while_hung(Hang::Queries);
}

#[test]
fn sigterm_while_choosing_the_backend_stops_within_a_second_and_takes_it_along() {
    sigterm_while_hung(Hang::Always);
}

/// SIGKILL of the exporter while nvidia-smi hangs: within nvidia-smi's timeout neither the
/// hung command nor its grandchild is left (nor a zombie of them).
fn sigkill_while_hung(hang: Hang) {
    let h = Hung::new();
    let timeout = Duration::from_secs(3);
    let mut e = h.start("3s", hang);
    let procs = h.pids(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert!(procs.iter().all(Proc::exists), "{procs:?}");

    let start = Instant::now();
    e.signal(libc::SIGKILL);
    e.wait(Duration::from_secs(5));
    let took =
        gone_within(&procs, timeout.saturating_sub(start.elapsed())).map(|_| start.elapsed());
    eprintln!("{hang:?}: hung command and grandchild gone {took:?} after SIGKILL of the exporter");
    assert!(
        took.is_some(),
        "hung nvidia-smi or its grandchild still there {:?} after the exporter was killed: \
         {procs:?}",
        start.elapsed()
    );
}

#[test]
fn a_killed_exporter_leaves_no_hung_query_behind() {
    sigkill_while_hung(Hang::Queries);
}

#[test]
fn a_killed_exporter_leaves_no_hung_probe_behind() {
    sigkill_while_hung(Hang::Always);
}
