//! Test support for the fake `libnvidia-ml.so` (`fake_nvml.c` next to this file): build it,
//! give each test its own copy, write its data file from [`GpuReading`]s, open the NVML backend
//! on it, and inject XID events.
//!
//! Use from an integration test with
//! `#[path = "fake-nvml/support.rs"] mod fake_nvml;`.
//!
//! The library is compiled once per test process with the system C compiler (`$CC`, else
//! `cc`) into `CARGO_TARGET_TMPDIR`. Every [`FakeNvml`] copies it into its own directory:
//! the dynamic loader keeps one instance per file, and the fake keeps its GPUs in globals, so
//! a shared file would make parallel tests read each other's GPUs.
#![allow(dead_code)] // each test binary uses a different part

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use gpu_exporter::reading::{Backend, GpuReading, MigDeviceReading, ProcessReading};

/// Which build of the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Every entry point the backend calls.
    Current,
    /// Without the entry points a pre-R510 driver's library lacks
    /// (`nvmlDeviceGetMemoryInfo_v2`, `nvmlDeviceGetMarginTemperature`,
    /// `nvmlDeviceGetJpgUtilization`, `nvmlDeviceGetOfaUtilization`).
    OldDriver,
}

/// The NVML functions [`Variant::OldDriver`] leaves out.
pub const OLD_DRIVER_MISSING: [&str; 4] = [
    "nvmlDeviceGetJpgUtilization",
    "nvmlDeviceGetMarginTemperature",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetOfaUtilization",
];

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvml/fake_nvml.c")
}

fn compile(variant: Variant) -> PathBuf {
    let name = match variant {
        Variant::Current => "current",
        Variant::OldDriver => "old-driver",
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fake-nvml")
        .join(name);
    std::fs::create_dir_all(&dir).expect("create fake-nvml build dir");
    let out = dir.join("libnvidia-ml.so.1");
    // Several test binaries may build at once: compile to a private name, then rename.
    let tmp = dir.join(format!("libnvidia-ml.so.1.{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(source())
        .arg("-lpthread");
    if variant == Variant::OldDriver {
        cmd.arg("-DFAKE_OLD_DRIVER");
    }
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?} for the fake NVML: {e}"));
    assert!(
        result.status.success(),
        "building the fake NVML failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out).expect("install the fake NVML");
    out
}

/// The built fake library for `variant` (compiled on first use).
pub fn library(variant: Variant) -> &'static Path {
    static CURRENT: OnceLock<PathBuf> = OnceLock::new();
    static OLD: OnceLock<PathBuf> = OnceLock::new();
    let cell = match variant {
        Variant::Current => &CURRENT,
        Variant::OldDriver => &OLD,
    };
    cell.get_or_init(|| compile(variant))
}

/// Serialises `open` calls: the fake reads its environment variables in `nvmlInit_v2`.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// One private copy of the fake library with its data file.
pub struct FakeNvml {
    dir: tempfile::TempDir,
    pub lib: PathBuf,
    pub data: PathBuf,
}

impl FakeNvml {
    /// A private copy of `variant`, answering from `data` (see [`data_file`]).
    pub fn new(variant: Variant, data: &str) -> FakeNvml {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(library(variant), &lib).expect("copy the fake NVML");
        let data_path = dir.path().join("nvml-data.txt");
        std::fs::write(&data_path, data).expect("write fake NVML data");
        FakeNvml {
            dir,
            lib,
            data: data_path,
        }
    }

    /// Open the NVML backend on this copy. `fail`: `FAKE_NVML_FAIL` rules
    /// (`nvmlDeviceGetTemperature:3`, `*@1:15`), `init_fail`: `FAKE_NVML_INIT_FAIL`.
    pub fn open_with(
        &self,
        fail: Option<&str>,
        init_fail: Option<i32>,
    ) -> anyhow::Result<Box<dyn Backend>> {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("FAKE_NVML_DATA", &self.data);
        match fail {
            Some(f) => std::env::set_var("FAKE_NVML_FAIL", f),
            None => std::env::remove_var("FAKE_NVML_FAIL"),
        }
        match init_fail {
            Some(c) => std::env::set_var("FAKE_NVML_INIT_FAIL", c.to_string()),
            None => std::env::remove_var("FAKE_NVML_INIT_FAIL"),
        }
        let backend = gpu_exporter::nvml::open(Some(&self.lib));
        for var in ["FAKE_NVML_DATA", "FAKE_NVML_FAIL", "FAKE_NVML_INIT_FAIL"] {
            std::env::remove_var(var);
        }
        backend
    }

    pub fn open(&self) -> Box<dyn Backend> {
        self.open_with(None, None).expect("open the fake NVML")
    }

    /// Queue a critical XID event for GPU `gpu` in this copy (it must be open). Returns whether
    /// a registered event set took it.
    pub fn inject_xid(&self, gpu: u32, xid: u64) -> bool {
        let path = std::ffi::CString::new(self.lib.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: RTLD_NOLOAD only looks up the copy the backend already loaded (null if it is
        // not loaded); the symbol has the C signature declared here.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            assert!(!handle.is_null(), "the fake NVML copy is not loaded");
            let sym = libc::dlsym(handle, c"fakeNvmlInjectXid".as_ptr());
            assert!(!sym.is_null(), "fakeNvmlInjectXid missing");
            let inject: extern "C" fn(u32, u64) -> i32 = std::mem::transmute(sym);
            let queued = inject(gpu, xid) == 1;
            libc::dlclose(handle);
            queued
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Values the NVML backend reads that nvidia-smi's query has no field for: written into the
/// data file for every GPU so the test can check they come through (and in which unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NvmlOnly {
    pub slowdown_threshold_c: u32,
    pub shutdown_threshold_c: u32,
    pub energy_mj: u64,
    pub pcie_tx_kb_s: u32,
    pub pcie_rx_kb_s: u32,
    pub pcie_replays: u32,
    /// Speed of a second fan, on GPUs that report a first one.
    pub second_fan_percent: u32,
}

impl NvmlOnly {
    /// Distinct values per GPU index.
    pub fn for_gpu(i: u32) -> NvmlOnly {
        NvmlOnly {
            slowdown_threshold_c: 87 + i,
            shutdown_threshold_c: 92 + i,
            energy_mj: 123_456_789 + u64::from(i) * 1000,
            pcie_tx_kb_s: 2048 + i,
            pcie_rx_kb_s: 4096 + i,
            pcie_replays: 3 + i,
            second_fan_percent: 41 + i,
        }
    }
}

/// A MIG device to put in the data file (under GPU `gpu_index`, slot `slot`).
#[derive(Debug, Clone)]
pub struct FakeMig {
    pub slot: u32,
    pub device: MigDeviceReading,
    /// The name NVML gives a MIG device: `<GPU name> MIG <profile>`.
    pub name: String,
}

/// From the reading's base unit to the integer NVML reports.
type Convert = dyn Fn(f64) -> u64;

fn int(v: f64) -> u64 {
    assert!(v >= 0.0, "negative value {v} for an unsigned NVML field");
    v.round() as u64
}

fn compute_mode_code(s: &str) -> u32 {
    match s {
        "Default" => 0,
        "Exclusive_Thread" => 1,
        "Prohibited" => 2,
        "Exclusive_Process" => 3,
        other => panic!("unknown compute mode {other:?}"),
    }
}

/// The fake's data file for these GPUs (what nvidia-smi said, converted to NVML's units), with
/// `extra(i)` for the NVML-only values, the processes (matched to GPUs by UUID) and MIG
/// devices. `cuda_version` is NVML's integer (`13010`).
pub fn data_file(
    gpus: &[GpuReading],
    extra: impl Fn(u32) -> NvmlOnly,
    processes: &[ProcessReading],
    migs: &[FakeMig],
    cuda_version: Option<i32>,
) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        writeln!(out, "{k}={v}").unwrap();
    };
    line("count", &gpus.len());
    if let Some(d) = gpus.first().and_then(|g| g.driver_version.as_ref()) {
        line("driver_version", d);
    }
    if let Some(c) = cuda_version {
        line("cuda_version", &c);
    }
    for p in processes {
        if let Some(n) = &p.process_name {
            line(&format!("proc.{}.name", p.pid), n);
        }
    }
    for (i, g) in gpus.iter().enumerate() {
        let p = format!("gpu{i}");
        let mut put = |k: &str, v: &dyn std::fmt::Display| line(&format!("{p}.{k}"), v);
        let flag = |b: bool| u32::from(b);
        put("index", &g.index.unwrap_or(i as u32));
        let strings = [
            ("uuid", &g.uuid),
            ("name", &g.name),
            ("serial", &g.serial),
            ("vbios", &g.vbios_version),
            ("bus_id", &g.pci_bus_id),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                put(k, v);
            }
        }
        if let Some(cc) = &g.compute_capability {
            let (major, minor) = cc.split_once('.').expect("compute capability M.m");
            put("cc_major", &major);
            put("cc_minor", &minor);
        }
        if let Some(m) = &g.compute_mode {
            put("compute_mode", &compute_mode_code(m));
        }
        if let Some(ps) = g.performance_state {
            put("pstate", &ps);
        }
        let flags = [
            ("persistence", g.persistence_mode),
            ("display_active", g.display_active),
            ("retired_pending", g.retired_pages_pending),
        ];
        for (k, v) in flags {
            if let Some(v) = v {
                put(k, &flag(v));
            }
        }
        if let (Some(c), Some(pe)) = (g.mig_mode_current, g.mig_mode_pending) {
            put("mig_current", &flag(c));
            put("mig_pending", &flag(pe));
        }
        if let (Some(c), Some(pe)) = (g.ecc_mode_current, g.ecc_mode_pending) {
            put("ecc_current", &flag(c));
            put("ecc_pending", &flag(pe));
        }
        if let Some(m) = g.slowdown_margin_celsius {
            put("margin_temp", &(m.round() as i64));
        }
        let mw = |w: f64| int(w * 1000.0);
        let mib_to_bytes = |b: f64| int(b);
        let numbers: [(&str, Option<f64>, &Convert); 37] = [
            ("temp_gpu", g.temperature_celsius, &int),
            ("field82", g.memory_temperature_celsius, &int),
            ("field185", g.power_draw_average_watts, &mw),
            ("field186", g.power_draw_instant_watts, &mw),
            ("power_usage", g.power_draw_watts, &mw),
            ("power_limit", g.power_limit_watts, &mw),
            ("enforced_limit", g.enforced_power_limit_watts, &mw),
            ("default_limit", g.default_power_limit_watts, &mw),
            ("limit_min", g.min_power_limit_watts, &mw),
            ("limit_max", g.max_power_limit_watts, &mw),
            ("mem_total", g.memory_total_bytes, &mib_to_bytes),
            ("mem_reserved", g.memory_reserved_bytes, &mib_to_bytes),
            ("mem_used", g.memory_used_bytes, &mib_to_bytes),
            ("mem_free", g.memory_free_bytes, &mib_to_bytes),
            ("util_gpu", g.utilization_gpu_percent, &int),
            ("util_memory", g.utilization_memory_percent, &int),
            ("util_encoder", g.utilization_encoder_percent, &int),
            ("util_decoder", g.utilization_decoder_percent, &int),
            ("util_jpeg", g.utilization_jpeg_percent, &int),
            ("util_ofa", g.utilization_ofa_percent, &int),
            ("enc_sessions", g.encoder_sessions, &int),
            ("enc_fps", g.encoder_average_fps, &int),
            (
                "enc_latency",
                g.encoder_average_latency_seconds,
                &|s: f64| int(s * 1e6),
            ),
            ("clock0", g.clock_graphics_hz, &|hz: f64| int(hz / 1e6)),
            ("clock1", g.clock_sm_hz, &|hz: f64| int(hz / 1e6)),
            ("clock2", g.clock_memory_hz, &|hz: f64| int(hz / 1e6)),
            ("clock3", g.clock_video_hz, &|hz: f64| int(hz / 1e6)),
            ("max_clock0", g.clock_max_graphics_hz, &|hz: f64| {
                int(hz / 1e6)
            }),
            ("max_clock1", g.clock_max_sm_hz, &|hz: f64| int(hz / 1e6)),
            (
                "max_clock2",
                g.clock_max_memory_hz,
                &|hz: f64| int(hz / 1e6),
            ),
            ("pcie_gen", g.pcie_link_gen_current, &int),
            ("pcie_gen_max", g.pcie_link_gen_max, &int),
            ("pcie_width", g.pcie_link_width_current, &int),
            ("pcie_width_max", g.pcie_link_width_max, &int),
            ("retired0", g.retired_pages_single_bit, &int),
            ("retired1", g.retired_pages_double_bit, &int),
            ("fan0", g.fan_speed_percent, &int),
        ];
        for (k, v, conv) in numbers {
            if let Some(v) = v {
                put(k, &conv(v));
            }
        }
        let ecc = [
            ("ecc0.0", g.ecc_corrected_volatile_total),
            ("ecc0.1", g.ecc_corrected_aggregate_total),
            ("ecc1.0", g.ecc_uncorrected_volatile_total),
            ("ecc1.1", g.ecc_uncorrected_aggregate_total),
        ];
        for (k, v) in ecc {
            if let Some(v) = v {
                put(k, &int(v));
            }
        }
        if let (Some(c), Some(u), Some(pe), Some(f)) = (
            g.remapped_rows_correctable,
            g.remapped_rows_uncorrectable,
            g.remapped_rows_pending,
            g.remapped_rows_failure,
        ) {
            put("remap_corr", &int(c));
            put("remap_unc", &int(u));
            put("remap_pending", &flag(pe));
            put("remap_failure", &flag(f));
        }
        if let Some(m) = g.clock_events.supported_mask {
            put("clocks_supported", &format!("{m:#x}"));
        }
        if let Some(m) = g.clock_events.active_mask {
            put("clocks_active", &format!("{m:#x}"));
        }
        let x = extra(i as u32);
        put("threshold1", &x.slowdown_threshold_c);
        put("threshold0", &x.shutdown_threshold_c);
        put("energy", &x.energy_mj);
        put("pcie_tx", &x.pcie_tx_kb_s);
        put("pcie_rx", &x.pcie_rx_kb_s);
        put("pcie_replay", &x.pcie_replays);
        if g.fan_speed_percent.is_some() {
            put("num_fans", &2);
            put("fan1", &x.second_fan_percent);
        }
        let procs: Vec<String> = processes
            .iter()
            .filter(|pr| pr.gpu_uuid.is_some() && pr.gpu_uuid == g.uuid)
            .map(|pr| match pr.used_memory_bytes {
                Some(b) => format!("{}:{}", pr.pid, int(b)),
                None => format!("{}:na", pr.pid),
            })
            .collect();
        put("procs", &procs.join(";"));
        let mine: Vec<&FakeMig> = migs
            .iter()
            .filter(|m| m.device.gpu_index == g.index.unwrap_or(i as u32))
            .collect();
        if !mine.is_empty() || g.mig_mode_current == Some(true) {
            put("mig_max", &7);
        }
        for m in mine {
            let d = &m.device;
            let mp = format!("mig{}", m.slot);
            put(&format!("{mp}.uuid"), &d.uuid);
            put(&format!("{mp}.name"), &m.name);
            if let Some(v) = d.gpu_instance_id {
                put(&format!("{mp}.gi"), &v);
            }
            if let Some(v) = d.compute_instance_id {
                put(&format!("{mp}.ci"), &v);
            }
            if let (Some(t), Some(u)) = (d.memory_total_bytes, d.memory_used_bytes) {
                put(&format!("{mp}.mem_total"), &int(t));
                put(&format!("{mp}.mem_used"), &int(u));
                put(&format!("{mp}.mem_free"), &int(t - u));
                put(&format!("{mp}.mem_reserved"), &0);
            }
        }
    }
    out
}

/// `n` copies of `g` as GPUs 0..n with distinct UUIDs and PCI bus ids (for multi-GPU cases and
/// the 8-GPU benchmark).
pub fn replicate(g: &GpuReading, n: u32) -> Vec<GpuReading> {
    (0..n)
        .map(|i| {
            let mut c = g.clone();
            c.index = Some(i);
            c.uuid = Some(format!("GPU-{i:08x}-1111-2222-3333-444455556666"));
            c.pci_bus_id = Some(format!("00000000:{:02X}:00.0", 0x10 + i));
            c
        })
        .collect()
}
