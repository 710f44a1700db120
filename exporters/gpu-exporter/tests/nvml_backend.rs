//! The NVML backend against the fake `libnvidia-ml.so` (tests/fake-nvml), which answers from
//! the real nvidia-smi captures.
//!
//! The differential test: for each capture and phase, the nvidia-smi parser reads the
//! `--query-gpu` and `--query-compute-apps` sections; the same readings, converted to NVML's
//! units, become the fake's data; the NVML backend must then produce the very same value for
//! every field the parser produced. The fields only one side has are listed (and handled) in
//! [`expected_from_smi`].

use std::time::Duration;

use gpu_exporter::nvidia_smi::parse::{parse_compute_apps, parse_query_gpu};
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::reading::{
    Backend, ClockEventReason, GpuReading, MigDeviceReading, ProcessReading, Snapshot,
};
use gpu_exporter::testing::capture::{Capture, Phase, CAPTURES};
use gpu_exporter::testing::fake_nvml::{
    cuda_version_from_q, data_file, migs_from_listing, replicate, FakeMig, FakeNvml, NvmlOnly,
    Variant, OLD_DRIVER_MISSING,
};

const T: Duration = Duration::from_secs(2);

/// The capture's CUDA version (`nvidia-smi -q`), as text and as NVML's integer.
fn cuda_version(cap: &Capture) -> (String, i32) {
    cuda_version_from_q(&cap.section("nvidia-smi -q", Phase::Idle).body)
        .expect("CUDA Version line in -q")
}

/// The MIG devices `nvidia-smi -L` lists, with made-up instance ids and memory.
fn migs_from_capture(cap: &Capture, gpus: &[GpuReading]) -> Vec<FakeMig> {
    migs_from_listing(&cap.by_command("nvidia-smi -L")[0].body, gpus)
}

/// What the NVML backend must produce for a GPU nvidia-smi read as `smi`.
///
/// - nvidia-smi only (cleared): the per-reason `Active`/`Not Active` columns (NVML gives the
///   two masks; the test compares `ClockEvents::active` per reason separately) and the
///   per-reason time counters (`clocks_event_reasons_counters.*`; the backend does not read
///   NVML's clock-event field values, whose units and ids vary between drivers).
/// - NVML only (set from [`NvmlOnly`]): temperature thresholds, energy, every fan's speed,
///   PCIe throughput and replays; XID errors stay empty (no event injected).
fn expected_from_smi(smi: &GpuReading, extra: NvmlOnly) -> GpuReading {
    let mut e = smi.clone();
    // The flag columns are nvidia-smi's alone (NVML gives the mask); the time counters come
    // from both.
    for r in ClockEventReason::ALL {
        e.clock_events.set_flag(r, None);
    }
    e.temperature_slowdown_threshold_celsius = Some(f64::from(extra.slowdown_threshold_c));
    e.temperature_shutdown_threshold_celsius = Some(f64::from(extra.shutdown_threshold_c));
    e.energy_consumed_joules = Some(extra.energy_mj as f64 / 1000.0);
    e.pcie_tx_bytes_per_second = Some(f64::from(extra.pcie_tx_kb_s) * 1024.0);
    e.pcie_rx_bytes_per_second = Some(f64::from(extra.pcie_rx_kb_s) * 1024.0);
    e.pcie_replays = Some(f64::from(extra.pcie_replays));
    e.fan_speeds_percent = match smi.fan_speed_percent {
        Some(first) => vec![first, f64::from(extra.second_fan_percent)],
        None => Vec::new(),
    };
    e
}

/// Field-by-field comparison through the `Debug` form, naming every field that differs.
fn assert_same<T: std::fmt::Debug>(what: &str, got: &T, want: &T) {
    let g = format!("{got:#?}");
    let w = format!("{want:#?}");
    if g == w {
        return;
    }
    // Pretty Debug puts a value on its own line below `field: Some(`: name the field.
    let mut field = String::new();
    let mut diffs = Vec::new();
    for (a, b) in g.lines().zip(w.lines()) {
        let t = b.trim();
        if let Some((name, _)) = t.split_once(": ") {
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                field = name.to_owned();
            }
        }
        if a != b {
            diffs.push(format!("  {field}: got {} want {}", a.trim(), t));
        }
    }
    panic!(
        "{what}: NVML and nvidia-smi differ:\n{}\n(full NVML reading: {g})",
        diffs.join("\n")
    );
}

/// How many values a reading holds (to make sure a comparison is not vacuous).
fn some_count(g: &GpuReading) -> usize {
    format!("{g:?}").matches("Some(").count()
}

struct Case {
    smi: Vec<GpuReading>,
    processes: Vec<ProcessReading>,
    migs: Vec<FakeMig>,
    cuda: (String, i32),
    data: String,
}

fn case(file: &str, phase: Phase) -> Case {
    let cap = Capture::load(file);
    let smi = parse_query_gpu(cap.query_gpu(phase), Layout::Header).expect("query-gpu parses");
    assert!(!smi.items.is_empty(), "{file}: no GPU rows");
    let apps = parse_compute_apps(cap.compute_apps(phase), Layout::Header).expect("apps parse");
    let cuda = cuda_version(&cap);
    let migs = migs_from_capture(&cap, &smi.items);
    let data = data_file(
        &smi.items,
        NvmlOnly::for_gpu,
        &apps.items,
        &migs,
        Some(cuda.1),
    );
    Case {
        smi: smi.items,
        processes: apps.items,
        migs,
        cuda,
        data,
    }
}

fn read(b: &dyn Backend) -> Snapshot {
    b.read(T).expect("read")
}

fn differential(file: &str, phase: Phase) {
    let at = format!("{file} {phase:?}");
    let c = case(file, phase);
    let fake = FakeNvml::new(Variant::Current, &c.data);
    let backend = fake.open();
    assert_eq!(backend.name(), "nvml");
    let snap = read(backend.as_ref());
    assert_eq!(snap.problems, Vec::<String>::new(), "{at}");
    assert_eq!(
        snap.cuda_version.as_deref(),
        Some(c.cuda.0.as_str()),
        "{at}"
    );
    assert_eq!(snap.gpus.len(), c.smi.len(), "{at}");
    for (i, (nvml, smi)) in snap.gpus.iter().zip(&c.smi).enumerate() {
        assert!(
            some_count(smi) >= 40,
            "{at}: the parser read only {} values",
            some_count(smi)
        );
        for r in ClockEventReason::ALL {
            assert_eq!(
                nvml.clock_events.active(r),
                smi.clock_events.active(r),
                "{at}: gpu {i} reason {r:?}"
            );
        }
        let want = expected_from_smi(smi, NvmlOnly::for_gpu(i as u32));
        assert_same(&format!("{at} gpu {i}"), nvml, &want);
    }
    assert_same(&format!("{at} processes"), &snap.processes, &c.processes);
    let want_migs: Vec<MigDeviceReading> = c.migs.iter().map(|m| m.device.clone()).collect();
    assert_same(&format!("{at} MIG devices"), &snap.mig_devices, &want_migs);

    // A second read gives the same (nothing accumulates, nothing is reported again).
    assert_eq!(read(backend.as_ref()), snap, "{at}: second read");
}

#[test]
fn differential_rtx_2080_super() {
    differential(CAPTURES[0], Phase::Idle);
    differential(CAPTURES[0], Phase::Load);
}

#[test]
fn differential_rtx_4080_super() {
    differential(CAPTURES[1], Phase::Idle);
    differential(CAPTURES[1], Phase::Load);
}

#[test]
fn differential_h100() {
    differential(CAPTURES[2], Phase::Idle);
    differential(CAPTURES[2], Phase::Load);
}

#[test]
fn differential_h100_mig() {
    differential(CAPTURES[3], Phase::Idle);
    differential(CAPTURES[3], Phase::Load);
}

#[test]
fn differential_l40s() {
    differential(CAPTURES[4], Phase::Idle);
    differential(CAPTURES[4], Phase::Load);
}

/// The captures this test relies on say what the differential covers: processes on the 4080,
/// MIG devices and no utilization on the MIG H100, HBM temperature on the H100.
#[test]
fn differential_covers_processes_mig_and_memory_temperature() {
    let c = case(CAPTURES[1], Phase::Idle);
    assert_eq!(c.processes.len(), 1);
    assert_eq!(c.processes[0].pid, 2165);
    let fake = FakeNvml::new(Variant::Current, &c.data);
    let snap = read(fake.open().as_ref());
    assert_eq!(snap.processes[0].pid, 2165);
    assert_eq!(
        snap.processes[0].process_name.as_deref(),
        Some("/usr/bin/kwin_wayland")
    );
    assert_eq!(snap.processes[0].used_memory_bytes, Some(25.0 * 1048576.0));

    let c = case(CAPTURES[3], Phase::Idle);
    let fake = FakeNvml::new(Variant::Current, &c.data);
    let snap = read(fake.open().as_ref());
    let g = &snap.gpus[0];
    assert_eq!(g.mig_mode_current, Some(true));
    assert_eq!(g.utilization_gpu_percent, None);
    let profiles: Vec<&str> = snap
        .mig_devices
        .iter()
        .map(|m| m.profile.as_deref().unwrap())
        .collect();
    assert_eq!(profiles, ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]);
    assert_eq!(
        snap.mig_devices[2].uuid,
        "MIG-00000002-0000-0000-0000-000000000002"
    );
    assert_eq!(snap.mig_devices[2].gpu_instance_id, Some(3));
    assert_eq!(
        snap.mig_devices[0].memory_total_bytes,
        Some(40.0 * 1024.0 * 1048576.0)
    );

    let c = case(CAPTURES[2], Phase::Idle);
    let fake = FakeNvml::new(Variant::Current, &c.data);
    let snap = read(fake.open().as_ref());
    assert!(snap.gpus[0].memory_temperature_celsius.is_some());
    assert_eq!(
        snap.gpus[0].memory_temperature_celsius,
        c.smi[0].memory_temperature_celsius
    );
}

fn l40s_gpus(n: u32) -> (Vec<GpuReading>, String) {
    let c = case(CAPTURES[4], Phase::Load);
    let gpus = replicate(&c.smi[0], n);
    let data = data_file(&gpus, NvmlOnly::for_gpu, &[], &[], Some(13010));
    (gpus, data)
}

#[test]
fn not_supported_blanks_only_that_value() {
    let (gpus, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake
        .open_with(
            Some("nvmlDeviceGetTemperature:3,nvmlDeviceGetPowerUsage@1:3"),
            None,
        )
        .unwrap();
    let snap = read(b.as_ref());
    assert_eq!(
        snap.problems,
        Vec::<String>::new(),
        "NotSupported is silent"
    );
    assert_eq!(snap.gpus.len(), 2);
    for (i, g) in snap.gpus.iter().enumerate() {
        let mut want = expected_from_smi(&gpus[i], NvmlOnly::for_gpu(i as u32));
        want.temperature_celsius = None;
        if i == 1 {
            want.power_draw_watts = None;
        }
        assert!(gpus[i].temperature_celsius.is_some());
        assert_same(&format!("gpu {i}"), g, &want);
    }
}

#[test]
fn other_errors_blank_the_value_and_are_reported() {
    let (_, data) = l40s_gpus(1);
    let fake = FakeNvml::new(Variant::Current, &data);
    // NVML_ERROR_NO_PERMISSION (4) and NVML_ERROR_UNKNOWN (999)
    let b = fake
        .open_with(
            Some("nvmlDeviceGetSerial:4,nvmlDeviceGetTotalEnergyConsumption:999"),
            None,
        )
        .unwrap();
    let snap = read(b.as_ref());
    let g = &snap.gpus[0];
    assert_eq!(g.serial, None);
    assert_eq!(g.energy_consumed_joules, None);
    assert!(g.temperature_celsius.is_some());
    assert_eq!(
        snap.problems,
        vec![
            "gpu 0: nvmlDeviceGetSerial: the current user does not have permission to perform \
             this operation"
                .to_owned(),
            "gpu 0: nvmlDeviceGetTotalEnergyConsumption: an internal driver error occurred"
                .to_owned(),
        ]
    );
}

#[test]
fn lost_gpu_is_dropped_and_the_others_kept() {
    let (gpus, data) = l40s_gpus(3);
    let fake = FakeNvml::new(Variant::Current, &data);
    // GPU 1 falls off the bus in the middle of a read (NVML_ERROR_GPU_IS_LOST = 15).
    let b = fake
        .open_with(Some("nvmlDeviceGetPowerUsage@1:15"), None)
        .unwrap();
    let snap = read(b.as_ref());
    let indexes: Vec<Option<u32>> = snap.gpus.iter().map(|g| g.index).collect();
    assert_eq!(indexes, [Some(0), Some(2)]);
    assert_same(
        "gpu 2",
        &snap.gpus[1],
        &expected_from_smi(&gpus[2], NvmlOnly::for_gpu(2)),
    );
    assert_eq!(
        snap.problems,
        vec![
            "gpu 1 (GPU-00000001-1111-2222-3333-444455556666): GPU is lost (fell off the bus); \
             skipped"
                .to_owned()
        ]
    );

    // Lost before any call succeeds: even the handle cannot be had.
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake.open_with(Some("*@0:15"), None).unwrap();
    let snap = read(b.as_ref());
    let indexes: Vec<Option<u32>> = snap.gpus.iter().map(|g| g.index).collect();
    assert_eq!(indexes, [Some(1), Some(2)]);
    assert_eq!(
        snap.problems,
        vec!["gpu 0: GPU is lost (fell off the bus); skipped".to_owned()]
    );
}

#[test]
fn device_count_failure_fails_the_read() {
    let (_, data) = l40s_gpus(1);
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake
        .open_with(Some("nvmlDeviceGetCount_v2:999"), None)
        .unwrap();
    let err = b.read(T).unwrap_err().to_string();
    assert_eq!(
        err,
        "NVML device count failed: an internal driver error occurred"
    );
}

#[test]
fn init_failures_are_one_clear_line() {
    let (_, data) = l40s_gpus(1);
    let fake = FakeNvml::new(Variant::Current, &data);
    let cases = [
        (18, "driver/library version mismatch"),
        (4, "insufficient permissions"),
        (9, "the NVIDIA kernel driver is not loaded"),
        (999, "NVML init failed: an internal driver error occurred"),
    ];
    for (code, want) in cases {
        let err = match fake.open_with(None, Some(code)) {
            Ok(_) => panic!("init failure {code} opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("NVML init failed"), "{code}: {err}");
        assert!(err.contains(want), "{code}: {err}");
        assert!(!err.contains('\n'), "{code}: {err}");
    }
}

#[test]
fn missing_library_says_not_found() {
    let err = gpu_exporter::nvml::open(Some(std::path::Path::new(
        "/nonexistent/dir/libnvidia-ml.so.1",
    )))
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        err,
        "NVML library not found at /nonexistent/dir/libnvidia-ml.so.1"
    );
    // A bare name the loader cannot find (what a container without the driver mount sees).
    let err = gpu_exporter::nvml::open(Some(std::path::Path::new("libnvidia-ml-odin-none.so.1")))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("NVML library not found: cannot load libnvidia-ml-odin-none.so.1: "),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    // A file that is not a shared library at all.
    let (_, data) = l40s_gpus(1);
    let fake = FakeNvml::new(Variant::Current, &data);
    let err = gpu_exporter::nvml::open(Some(&fake.data))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("NVML library not found: cannot load "),
        "{err}"
    );
}

#[test]
fn missing_symbols_blank_their_values_and_are_reported_once() {
    let (gpus, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::OldDriver, &data);
    let b = fake.open();
    let first = read(b.as_ref());
    let mut problems = first.problems.clone();
    problems.sort();
    let want: Vec<String> = OLD_DRIVER_MISSING
        .iter()
        .map(|f| format!("{f}: not in this driver's NVML library; its values are absent"))
        .collect();
    assert_eq!(problems, want, "one note per missing function, not per GPU");
    for (i, g) in first.gpus.iter().enumerate() {
        let mut e = expected_from_smi(&gpus[i], NvmlOnly::for_gpu(i as u32));
        // v1 memory info still gives total/used/free, not reserved.
        e.memory_reserved_bytes = None;
        e.slowdown_margin_celsius = None;
        e.utilization_jpeg_percent = None;
        e.utilization_ofa_percent = None;
        assert!(gpus[i].memory_reserved_bytes.is_some());
        assert!(gpus[i].utilization_jpeg_percent.is_some());
        assert_same(&format!("old driver gpu {i}"), g, &e);
    }
    let second = read(b.as_ref());
    assert_eq!(second.problems, Vec::<String>::new(), "reported once only");
    assert_eq!(second.gpus, first.gpus);
}

#[test]
fn xid_events_are_counted_per_gpu_and_code() {
    let (_, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake.open();
    assert!(read(b.as_ref())
        .gpus
        .iter()
        .all(|g| g.xid_errors.is_empty() && g.last_xid.is_none()));
    assert!(fake.inject_xid(1, 79));
    assert!(fake.inject_xid(1, 79));
    assert!(fake.inject_xid(0, 48));
    let snap = read(b.as_ref());
    assert_eq!(snap.gpus[0].xid_errors, [(48, 1)].into());
    assert_eq!(snap.gpus[1].xid_errors, [(79, 2)].into());
    assert_eq!(snap.gpus[0].last_xid, Some(48));
    assert_eq!(snap.gpus[1].last_xid, Some(79));
    assert!(fake.inject_xid(1, 79));
    assert!(fake.inject_xid(1, 13));
    let snap = read(b.as_ref());
    assert_eq!(snap.gpus[0].xid_errors, [(48, 1)].into(), "cumulative");
    assert_eq!(snap.gpus[1].xid_errors, [(13, 1), (79, 3)].into());
    assert_eq!(snap.gpus[1].last_xid, Some(13), "the last one injected");
    assert_eq!(snap.problems, Vec::<String>::new());
}

#[test]
fn xid_events_unsupported_on_a_gpu_are_noted_once() {
    let (_, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake
        .open_with(Some("nvmlDeviceGetSupportedEventTypes@1:3"), None)
        .unwrap();
    assert!(!fake.inject_xid(1, 79), "GPU 1 is not registered");
    assert!(fake.inject_xid(0, 31));
    let first = read(b.as_ref());
    assert_eq!(
        first.problems,
        vec!["gpu 1: XID events not supported; nvidia_gpu_xid_errors_total absent there"]
    );
    assert_eq!(first.gpus[0].xid_errors, [(31, 1)].into());
    assert!(first.gpus[1].xid_errors.is_empty());
    assert_eq!(read(b.as_ref()).problems, Vec::<String>::new());
}

#[test]
fn eight_gpus_read_fast_enough() {
    let (gpus, data) = l40s_gpus(8);
    let fake = FakeNvml::new(Variant::Current, &data);
    let b = fake.open();
    let snap = read(b.as_ref());
    assert_eq!(snap.gpus.len(), 8);
    for (i, g) in snap.gpus.iter().enumerate() {
        assert_same(
            &format!("gpu {i}"),
            g,
            &expected_from_smi(&gpus[i], NvmlOnly::for_gpu(i as u32)),
        );
    }
    // Not a benchmark (debug build, shared CI machine): only a guard against a read that
    // does something slow. The target (release, 8 GPUs) is 2 ms per scrape.
    let start = std::time::Instant::now();
    for _ in 0..20 {
        read(b.as_ref());
    }
    let per_read = start.elapsed() / 20;
    assert!(
        per_read < Duration::from_millis(50),
        "{per_read:?} per read"
    );
}

/// No capture shows a fan speed or retired pages (the laptop and datacenter boards report
/// `[N/A]`; the H100s use row remapping): check those paths on an L40S reading given them.
#[test]
fn fans_and_retired_pages() {
    let c = case(CAPTURES[4], Phase::Idle);
    let mut g = c.smi[0].clone();
    g.fan_speed_percent = Some(33.0);
    g.retired_pages_single_bit = Some(2.0);
    g.retired_pages_double_bit = Some(0.0);
    g.retired_pages_pending = Some(true);
    let data = data_file(std::slice::from_ref(&g), NvmlOnly::for_gpu, &[], &[], None);
    let fake = FakeNvml::new(Variant::Current, &data);
    let snap = read(fake.open().as_ref());
    let got = &snap.gpus[0];
    assert_eq!(got.fan_speeds_percent, [33.0, 41.0]);
    assert_eq!(got.fan_speed_percent, Some(33.0));
    assert_eq!(got.retired_pages_single_bit, Some(2.0));
    assert_eq!(got.retired_pages_double_bit, Some(0.0));
    assert_eq!(got.retired_pages_pending, Some(true));
    assert_eq!(snap.cuda_version, None);
    assert_same(
        "l40s with fans",
        got,
        &expected_from_smi(&g, NvmlOnly::for_gpu(0)),
    );
}

/// Calls of `function` for GPU `gpu` in the fake's call log.
fn count_calls(calls: &[String], function: &str, gpu: u32) -> usize {
    let line = format!("{function} {gpu}");
    calls.iter().filter(|c| **c == line).count()
}

/// Maximum clocks and temperature thresholds do not change while the driver is loaded, and
/// cost more than anything else on a real driver (5.4 ms of CPU per read on an H200): asked
/// once per GPU, unless asking failed, then again on the next read.
#[test]
fn fixed_values_are_asked_once_unless_they_failed() {
    let (gpus, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::Current, &data).log_calls();
    // NVML_ERROR_UNKNOWN for GPU 1's maximum clocks
    let b = fake
        .open_with(Some("nvmlDeviceGetMaxClockInfo@1:999"), None)
        .unwrap();
    fake.clear_calls();
    let first = read(b.as_ref());
    let second = read(b.as_ref());
    let calls = fake.calls();
    assert_eq!(
        count_calls(&calls, "nvmlDeviceGetMaxClockInfo", 0),
        3,
        "{calls:?}"
    );
    assert_eq!(
        count_calls(&calls, "nvmlDeviceGetTemperatureThreshold", 0),
        2
    );
    assert_eq!(count_calls(&calls, "nvmlDeviceGetMaxClockInfo", 1), 6);
    assert_eq!(
        count_calls(&calls, "nvmlDeviceGetTemperatureThreshold", 1),
        4
    );
    for snap in [&first, &second] {
        let want = expected_from_smi(&gpus[0], NvmlOnly::for_gpu(0));
        assert_same("gpu 0", &snap.gpus[0], &want);
        assert_eq!(snap.gpus[1].clock_max_sm_hz, None);
        assert!(snap.gpus[1]
            .temperature_slowdown_threshold_celsius
            .is_some());
        assert_eq!(
            snap.problems,
            vec!["gpu 1: nvmlDeviceGetMaxClockInfo: an internal driver error occurred"; 3]
        );
    }
}

/// `nvmlDeviceGetPcieThroughput` waits 20 ms per call inside the driver (the fake too): a
/// read serves what the backend's sampler took, and makes no such call itself.
#[test]
fn pcie_throughput_is_sampled_outside_the_read() {
    let (gpus, data) = l40s_gpus(2);
    let fake = FakeNvml::new(Variant::Current, &data).log_calls();
    let b = fake.open();
    let at_open = fake.calls();
    assert_eq!(count_calls(&at_open, "nvmlDeviceGetPcieThroughput", 1), 2);
    fake.clear_calls();
    let snap = read(b.as_ref());
    let calls = fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("nvmlDeviceGetPcieThroughput")),
        "{calls:?}"
    );
    for (i, g) in snap.gpus.iter().enumerate() {
        let want = expected_from_smi(&gpus[i], NvmlOnly::for_gpu(i as u32));
        assert!(want.pcie_rx_bytes_per_second.is_some());
        assert_eq!(g.pcie_rx_bytes_per_second, want.pcie_rx_bytes_per_second);
        assert_eq!(g.pcie_tx_bytes_per_second, want.pcie_tx_bytes_per_second);
    }
}
