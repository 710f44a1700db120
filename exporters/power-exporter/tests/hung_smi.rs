//! power-exporter's GPU collector with an nvidia-smi that never answers (a shell command
//! forking a grandchild that sleeps forever, as a wrapper around a wedged driver would): the
//! exporter stops within a second on SIGTERM taking the hung command along, and a SIGKILLed
//! exporter leaves neither it nor its grandchild behind (gpu-exporter's watchdog, which
//! power-exporter runs its nvidia-smi through).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use odin_testkit::process::{gone_within, kill_left_behind, Seen};
use odin_testkit::{Exe, Exporter};

const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_power-exporter"),
    env_prefix: "POWER_EXPORTER_",
};

struct Hung {
    dir: tempfile::TempDir,
}

impl Hung {
    fn new() -> Hung {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys")).unwrap();
        Hung { dir }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("pids")
    }

    /// Only the gpu collector, forced to nvidia-smi, whose every run hangs (the probe too).
    fn start(&self, timeout: &str) -> Exporter {
        let p = self.pidfile();
        let script = format!(
            "sleep 3600 & echo \"$$ $!\" > {p}.tmp && mv {p}.tmp {p}; wait",
            p = p.display()
        );
        EXE.start(
            &[
                format!("--path.sysfs={}", self.dir.path().join("sys").display()),
                "--no-collector.rapl".into(),
                "--no-collector.battery".into(),
                "--no-collector.thermal".into(),
                "--no-collector.hwmon".into(),
                "--gpu.backend=nvidia-smi".into(),
                format!("--gpu.nvidia-smi-command=sh -c '{script}' hung-nvidia-smi"),
                format!("--gpu.timeout={timeout}"),
            ],
            &[],
        )
    }

    /// The hung command and its grandchild, once started.
    fn pids(&self) -> [Seen; 2] {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = std::fs::read_to_string(self.pidfile()) {
                let p: Vec<u32> = s.split_whitespace().map(|p| p.parse().unwrap()).collect();
                return [Seen::of(p[0]), Seen::of(p[1])];
            }
            assert!(Instant::now() < until, "nvidia-smi never started");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Hung {
    /// A failing test may leave the hung command behind (the very defect these tests look
    /// for): kill what the pid file names.
    fn drop(&mut self) {
        kill_left_behind(&self.pidfile(), &self.dir.path().display().to_string());
    }
}

#[test]
fn sigterm_with_a_hung_nvidia_smi_stops_within_a_second_and_takes_it_along() {
    let h = Hung::new();
    let mut e = h.start("60s");
    let procs = h.pids();
    let start = Instant::now();
    e.signal(libc::SIGTERM);
    let status = e.wait(Duration::from_secs(10));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}; log:\n{}",
        e.log()
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", e.log());
    let left: Vec<&Seen> = procs.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_killed_exporter_leaves_no_hung_nvidia_smi_behind() {
    let h = Hung::new();
    let mut e = h.start("3s");
    let procs = h.pids();
    let start = Instant::now();
    e.signal(libc::SIGKILL);
    e.wait(Duration::from_secs(5));
    let gone = gone_within(
        &procs,
        Duration::from_secs(3).saturating_sub(start.elapsed()),
    );
    assert!(
        gone.is_some(),
        "hung nvidia-smi or its grandchild still there {:?} after the exporter was killed: {procs:?}",
        start.elapsed()
    );
}
