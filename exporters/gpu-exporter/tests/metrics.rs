//! `metrics::emit` on snapshots parsed from the five real captures: the exposition lines the
//! exporter serves, with the values read off the captures (docs/metrics.md names and units),
//! and absence where a capture says N/A. Plus the NVML-only series and the DCGM family on a
//! snapshot built by hand.

use std::collections::BTreeMap;
use std::path::Path;

use gpu_exporter::dcgm::DcgmOptions;
use gpu_exporter::metrics::{emit, EmitOptions};
use gpu_exporter::nvidia_smi::backend::parse_cuda_version;
use gpu_exporter::nvidia_smi::parse::{parse_compute_apps, parse_query_gpu};
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::reading::{GpuReading, MigDeviceReading, Snapshot};
use gpu_exporter::testing::capture::{Capture, Phase, CAPTURES};
use odin_common::Sink;

const U: &str = "gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\"";

fn snapshot(file: &str, phase: Phase) -> Snapshot {
    let cap = Capture::load(file);
    let gpus = parse_query_gpu(cap.query_gpu(phase), Layout::Header).unwrap();
    let procs = parse_compute_apps(cap.compute_apps(phase), Layout::Header).unwrap();
    let version = &cap.by_command("nvidia-smi --version")[0].body;
    Snapshot {
        gpus: gpus.items,
        processes: procs.items,
        mig_devices: Vec::new(),
        cuda_version: parse_cuda_version(version),
        problems: Vec::new(),
    }
}

fn render(s: &Snapshot, opts: &EmitOptions) -> (String, Vec<String>) {
    let mut sink = Sink::new(gpu_exporter::SPEC.prefix);
    emit(s, opts, &mut sink);
    let (fams, errs) = sink.into_parts();
    let mut buf = Vec::new();
    prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &fams, &mut buf).unwrap();
    (String::from_utf8(buf).unwrap(), errs)
}

/// An empty procfs: process names come from the driver.
fn no_proc() -> EmitOptions {
    EmitOptions {
        procfs: Some("/nonexistent/proc".into()),
        ..EmitOptions::default()
    }
}

fn dcgm(host: &str) -> EmitOptions {
    EmitOptions {
        dcgm: Some(DcgmOptions {
            hostname: host.into(),
            last_xid: BTreeMap::new(),
        }),
        ..no_proc()
    }
}

#[track_caller]
fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line\n  {line}\nin\n{text}"
    );
}

#[track_caller]
fn lacks_family(text: &str, name: &str) {
    let hit = text.lines().find(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    });
    assert!(hit.is_none(), "{name} should be absent, found {hit:?}");
}

/// The value of the one series line starting with `series` (name plus labels).
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn rtx_2080_super_idle() {
    let (t, errs) = render(&snapshot(CAPTURES[0], Phase::Idle), &no_proc());
    assert!(errs.is_empty(), "{errs:?}");
    // Hydra's names, exact values and units.
    has(&t, &format!("nvidia_gpu_temperature_celsius{{{U}}} 40"));
    has(&t, &format!("nvidia_gpu_power_draw_watts{{{U}}} 39.32"));
    has(
        &t,
        &format!("nvidia_gpu_memory_used_bytes{{{U}}} 224395264"),
    );
    has(
        &t,
        &format!("nvidia_gpu_memory_total_bytes{{{U}}} 8589934592"),
    );
    has(&t, &format!("nvidia_gpu_utilization_percent{{{U}}} 0"));
    has(&t, "nvidia_gpu_devices 1");
    has(
        &t,
        &format!(
            "nvidia_gpu_info{{{U},name=\"NVIDIA GeForce RTX 2080 SUPER\",pci_bus_id=\"00000000:0C:00.0\",driver_version=\"595.71.05\",vbios_version=\"90.04.7A.40.73\",compute_capability=\"7.5\",serial=\"\",cuda_version=\"13.2\"}} 1"
        ),
    );
    has(&t, &format!("nvidia_gpu_performance_state{{{U}}} 8"));
    has(&t, &format!("nvidia_gpu_persistence_mode_enabled{{{U}}} 0"));
    has(
        &t,
        &format!("nvidia_gpu_memory_free_bytes{{{U}}} 7938768896"),
    );
    has(
        &t,
        &format!("nvidia_gpu_memory_reserved_bytes{{{U}}} 427819008"),
    );
    has(&t, &format!("nvidia_gpu_power_limit_watts{{{U}}} 250"));
    has(
        &t,
        &format!("nvidia_gpu_power_enforced_limit_watts{{{U}}} 250"),
    );
    has(
        &t,
        &format!("nvidia_gpu_power_default_limit_watts{{{U}}} 250"),
    );
    has(
        &t,
        &format!("nvidia_gpu_power_draw_instant_watts{{{U}}} 39.32"),
    );
    // Percent becomes a ratio outside Hydra's name.
    has(
        &t,
        &format!("nvidia_gpu_fan_speed_ratio{{{U},fan=\"0\"}} 0.38"),
    );
    has(
        &t,
        &format!("nvidia_gpu_engine_utilization_ratio{{{U},engine=\"memory\"}} 0.09"),
    );
    has(
        &t,
        &format!("nvidia_gpu_engine_utilization_ratio{{{U},engine=\"encoder\"}} 0"),
    );
    has(
        &t,
        &format!("nvidia_gpu_clock_hertz{{{U},clock=\"graphics\"}} 765000000"),
    );
    has(
        &t,
        &format!("nvidia_gpu_clock_hertz{{{U},clock=\"memory\"}} 810000000"),
    );
    has(
        &t,
        &format!("nvidia_gpu_clock_max_hertz{{{U},clock=\"memory\"}} 7751000000"),
    );
    has(
        &t,
        &format!("nvidia_gpu_pcie_link_generation{{{U},link=\"current\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_pcie_link_generation{{{U},link=\"max\"}} 3"),
    );
    has(
        &t,
        &format!("nvidia_gpu_pcie_link_width_lanes{{{U},link=\"max\"}} 16"),
    );
    has(&t, &format!("nvidia_gpu_encoder_sessions{{{U}}} 0"));
    // Active mask 0x4: software power cap, and nothing else.
    has(
        &t,
        &format!("nvidia_gpu_clock_event_reason_active{{{U},reason=\"sw_power_cap\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_clock_event_reason_active{{{U},reason=\"gpu_idle\"}} 0"),
    );
    has(
        &t,
        &format!("nvidia_gpu_clock_event_reason_active{{{U},reason=\"display_clock_setting\"}} 0"),
    );
    let secs = value(
        &t,
        &format!("nvidia_gpu_clock_event_reason_seconds_total{{{U},reason=\"sw_power_cap\"}}"),
    );
    assert!((secs - 212.553937).abs() < 1e-9, "{secs}");
    assert!(t.contains("# TYPE nvidia_gpu_clock_event_reason_seconds_total counter\n"));
    // GeForce: no HBM temperature, no T.Limit margin, no ECC, no MIG, no row remapping.
    for absent in [
        "nvidia_gpu_memory_temperature_celsius",
        "nvidia_gpu_temperature_slowdown_margin_celsius",
        "nvidia_gpu_ecc_mode_enabled",
        "nvidia_gpu_ecc_errors_total",
        "nvidia_gpu_mig_mode_enabled",
        "nvidia_gpu_remapped_rows",
        "nvidia_gpu_remapped_rows_pending",
        "nvidia_gpu_retired_pages",
        // NVML only.
        "nvidia_gpu_energy_consumed_joules_total",
        "nvidia_gpu_temperature_threshold_celsius",
        "nvidia_gpu_pcie_throughput_bytes_per_second",
        "nvidia_gpu_pcie_replays_total",
        "nvidia_gpu_xid_errors_total",
        "nvidia_gpu_mig_device_info",
        // No sysfs status given.
        "nvidia_gpu_suspended",
        // No process at idle.
        "nvidia_gpu_process_memory_used_bytes",
        // Not without --metrics.dcgm-compat.
        "DCGM_FI_DEV_GPU_TEMP",
    ] {
        lacks_family(&t, absent);
    }
    // A counter of clock-event time only where the driver counts it.
    assert!(!t.contains("nvidia_gpu_clock_event_reason_seconds_total{gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\",reason=\"gpu_idle\"}"));
}

#[test]
fn rtx_4080_super_fans_at_rest_are_zero_and_processes_are_named() {
    let (t, _) = render(&snapshot(CAPTURES[1], Phase::Load), &no_proc());
    has(
        &t,
        &format!("nvidia_gpu_fan_speed_ratio{{{U},fan=\"0\"}} 0"),
    );
    has(&t, &format!("nvidia_gpu_utilization_percent{{{U}}} 7"));
    has(
        &t,
        &format!("nvidia_gpu_engine_utilization_ratio{{{U},engine=\"encoder\"}} 0.72"),
    );
    // `/usr/bin/kwin_wayland` from the driver: the basename only.
    has(
        &t,
        &format!(
            "nvidia_gpu_process_memory_used_bytes{{{U},pid=\"2165\",process=\"kwin_wayland\"}} 26214400"
        ),
    );
    has(
        &t,
        &format!(
            "nvidia_gpu_process_memory_used_bytes{{{U},pid=\"5022\",process=\"ffmpeg\"}} 527433728"
        ),
    );
    has(
        &t,
        &format!(
            "nvidia_gpu_process_memory_used_bytes{{{U},pid=\"5021\",process=\"ffmpeg\"}} 377487360"
        ),
    );
}

#[test]
fn h100_has_no_fan_but_hbm_ecc_and_remapping() {
    let (t, _) = render(&snapshot(CAPTURES[2], Phase::Idle), &no_proc());
    lacks_family(&t, "nvidia_gpu_fan_speed_ratio");
    has(
        &t,
        &format!("nvidia_gpu_memory_temperature_celsius{{{U}}} 48"),
    );
    has(
        &t,
        &format!("nvidia_gpu_temperature_slowdown_margin_celsius{{{U}}} 46"),
    );
    has(&t, &format!("nvidia_gpu_memory_used_bytes{{{U}}} 0"));
    has(&t, &format!("nvidia_gpu_power_draw_watts{{{U}}} 69.85"));
    has(
        &t,
        &format!("nvidia_gpu_power_draw_instant_watts{{{U}}} 69.62"),
    );
    has(&t, &format!("nvidia_gpu_persistence_mode_enabled{{{U}}} 1"));
    has(&t, &format!("nvidia_gpu_performance_state{{{U}}} 0"));
    for ty in ["corrected", "uncorrected"] {
        for scope in ["volatile", "aggregate"] {
            has(
                &t,
                &format!("nvidia_gpu_ecc_errors_total{{{U},type=\"{ty}\",scope=\"{scope}\"}} 0"),
            );
        }
    }
    has(
        &t,
        &format!("nvidia_gpu_ecc_mode_enabled{{{U},state=\"current\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_mig_mode_enabled{{{U},state=\"current\"}} 0"),
    );
    has(
        &t,
        &format!("nvidia_gpu_remapped_rows{{{U},kind=\"correctable\"}} 0"),
    );
    has(
        &t,
        &format!("nvidia_gpu_remapped_rows{{{U},kind=\"uncorrectable\"}} 0"),
    );
    has(&t, &format!("nvidia_gpu_remapped_rows_pending{{{U}}} 0"));
    has(&t, &format!("nvidia_gpu_remapped_rows_failure{{{U}}} 0"));
    has(
        &t,
        &format!("nvidia_gpu_clock_event_reason_active{{{U},reason=\"gpu_idle\"}} 1"),
    );
    assert!(
        t.contains("serial=\"0000000000000\",cuda_version=\"13.1\"} 1\n"),
        "{t}"
    );
}

#[test]
fn h100_mig_has_no_utilization_and_dcgm_units() {
    let (t, _) = render(&snapshot(CAPTURES[3], Phase::Load), &dcgm("node-7"));
    lacks_family(&t, "nvidia_gpu_utilization_percent");
    lacks_family(&t, "nvidia_gpu_engine_utilization_ratio");
    lacks_family(&t, "nvidia_gpu_remapped_rows");
    has(
        &t,
        &format!("nvidia_gpu_mig_mode_enabled{{{U},state=\"current\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_mig_mode_enabled{{{U},state=\"pending\"}} 1"),
    );
    has(&t, &format!("nvidia_gpu_temperature_celsius{{{U}}} 53"));
    has(
        &t,
        &format!("nvidia_gpu_memory_used_bytes{{{U}}} 11665408000"),
    );
    has(
        &t,
        &format!("nvidia_gpu_process_memory_used_bytes{{{U},pid=\"21198\",process=\"gpu_burn\"}} 7847542784"),
    );
    has(
        &t,
        &format!("nvidia_gpu_process_memory_used_bytes{{{U},pid=\"21180\",process=\"memhog\"}} 2407530496"),
    );

    let d = "gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-7\",pci_bus_id=\"00000000:00:09.0\"";
    has(&t, &format!("DCGM_FI_DEV_GPU_TEMP{{{d}}} 53"));
    has(&t, &format!("DCGM_FI_DEV_MEMORY_TEMP{{{d}}} 59"));
    has(&t, &format!("DCGM_FI_DEV_POWER_USAGE{{{d}}} 433.78"));
    // MiB and MHz, as dcgm-exporter reports them.
    has(&t, &format!("DCGM_FI_DEV_FB_USED{{{d}}} 11125"));
    has(&t, &format!("DCGM_FI_DEV_FB_FREE{{{d}}} 69956"));
    has(&t, &format!("DCGM_FI_DEV_FB_RESERVED{{{d}}} 479"));
    has(&t, &format!("DCGM_FI_DEV_SM_CLOCK{{{d}}} 1980"));
    has(&t, &format!("DCGM_FI_DEV_MEM_CLOCK{{{d}}} 2619"));
    // Utilization is N/A on a MIG-enabled GPU: absent in the DCGM family too.
    for absent in [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_ENC_UTIL",
        "DCGM_FI_DEV_DEC_UTIL",
        // NVML only.
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_XID_ERRORS",
    ] {
        lacks_family(&t, absent);
    }
}

#[test]
fn l40s_load_dcgm_utilization_and_comm_names() {
    let proc = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(proc.path().join("20037")).unwrap();
    std::fs::write(proc.path().join("20037/comm"), "ffmpeg-enc\n").unwrap();
    let opts = EmitOptions {
        procfs: Some(proc.path().to_path_buf()),
        ..dcgm("gpu-box")
    };
    let (t, _) = render(&snapshot(CAPTURES[4], Phase::Load), &opts);
    has(&t, &format!("nvidia_gpu_utilization_percent{{{U}}} 9"));
    has(
        &t,
        &format!("nvidia_gpu_engine_utilization_ratio{{{U},engine=\"encoder\"}} 0.6"),
    );
    has(
        &t,
        &format!("nvidia_gpu_engine_utilization_ratio{{{U},engine=\"memory\"}} 0.02"),
    );
    has(&t, &format!("nvidia_gpu_encoder_sessions{{{U}}} 2"));
    // /proc/<pid>/comm wins over the driver's name; without it the driver's name is used.
    has(
        &t,
        &format!("nvidia_gpu_process_memory_used_bytes{{{U},pid=\"20037\",process=\"ffmpeg-enc\"}} 564133888"),
    );
    has(
        &t,
        &format!("nvidia_gpu_process_memory_used_bytes{{{U},pid=\"20038\",process=\"ffmpeg\"}} 714080256"),
    );
    let d = "gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\",device=\"nvidia0\",modelName=\"NVIDIA L40S\",Hostname=\"gpu-box\",pci_bus_id=\"00000000:01:00.0\"";
    has(&t, &format!("DCGM_FI_DEV_GPU_UTIL{{{d}}} 9"));
    has(&t, &format!("DCGM_FI_DEV_MEM_COPY_UTIL{{{d}}} 2"));
    has(&t, &format!("DCGM_FI_DEV_ENC_UTIL{{{d}}} 60"));
    has(&t, &format!("DCGM_FI_DEV_DEC_UTIL{{{d}}} 0"));
    has(&t, &format!("DCGM_FI_DEV_FB_USED{{{d}}} 1235"));
    has(&t, &format!("DCGM_FI_DEV_POWER_USAGE{{{d}}} 110.23"));
    lacks_family(&t, "DCGM_FI_DEV_MEMORY_TEMP");
}

/// Every capture, both phases: well-formed, one series per label set, HELP and TYPE on every
/// family, never NaN.
#[test]
fn every_capture_renders_cleanly() {
    for file in CAPTURES {
        for phase in [Phase::Idle, Phase::Load] {
            let (t, errs) = render(&snapshot(file, phase), &dcgm("h"));
            assert!(errs.is_empty(), "{file}: {errs:?}");
            let mut seen = std::collections::BTreeSet::new();
            for l in t.lines().filter(|l| !l.starts_with('#')) {
                let (series, v) = l.rsplit_once(' ').unwrap();
                assert!(seen.insert(series.to_owned()), "{file}: duplicate {series}");
                let v: f64 = v.parse().unwrap();
                assert!(v.is_finite(), "{file}: {l}");
                let name = series.split('{').next().unwrap();
                assert!(t.contains(&format!("# TYPE {name} ")), "{file}: {name}");
            }
            has(&t, "nvidia_gpu_devices 1");
            // Hydra's five names exist for every capture except utilization under MIG.
            for name in [
                "nvidia_gpu_temperature_celsius",
                "nvidia_gpu_power_draw_watts",
                "nvidia_gpu_memory_used_bytes",
                "nvidia_gpu_memory_total_bytes",
            ] {
                assert!(t.contains(&format!("\n{name}{{")), "{file}: {name}");
            }
            assert_eq!(
                t.contains("\nnvidia_gpu_utilization_percent{"),
                file != CAPTURES[3],
                "{file}"
            );
        }
    }
}

/// The series only NVML fills, on a hand-built snapshot as the NVML backend would report it.
#[test]
fn nvml_only_series_and_their_dcgm_twins() {
    let mut xid = BTreeMap::new();
    xid.insert(79, 2);
    xid.insert(13, 1);
    let g = GpuReading {
        index: Some(1),
        uuid: Some("GPU-abc".into()),
        name: Some("NVIDIA A100-SXM4-40GB".into()),
        pci_bus_id: Some("00000000:07:00.0".into()),
        energy_consumed_joules: Some(1234.567),
        temperature_slowdown_threshold_celsius: Some(87.0),
        temperature_shutdown_threshold_celsius: Some(92.0),
        fan_speeds_percent: vec![30.0, 45.0],
        fan_speed_percent: Some(30.0),
        pcie_rx_bytes_per_second: Some(1.5e6),
        pcie_tx_bytes_per_second: Some(2.0e6),
        pcie_replays: Some(3.0),
        xid_errors: xid,
        ..GpuReading::default()
    };
    let mig = MigDeviceReading {
        gpu_index: 1,
        gpu_uuid: "GPU-abc".into(),
        uuid: "MIG-1".into(),
        gpu_instance_id: Some(7),
        compute_instance_id: Some(0),
        profile: Some("1g.5gb".into()),
        memory_used_bytes: Some(13_631_488.0),
        memory_total_bytes: Some(5_0000_0000.0),
    };
    let s = Snapshot {
        gpus: vec![g],
        mig_devices: vec![mig],
        ..Snapshot::default()
    };
    let mut last_xid = BTreeMap::new();
    last_xid.insert(1, 79);
    let mut suspended = BTreeMap::new();
    suspended.insert(1, false);
    let opts = EmitOptions {
        procfs: None,
        suspended,
        xid_supported: true,
        dcgm: Some(DcgmOptions {
            hostname: "n".into(),
            last_xid,
        }),
    };
    let (t, _) = render(&s, &opts);
    let u = "gpu=\"1\",uuid=\"GPU-abc\"";
    has(
        &t,
        &format!("nvidia_gpu_energy_consumed_joules_total{{{u}}} 1234.567"),
    );
    has(
        &t,
        &format!("nvidia_gpu_temperature_threshold_celsius{{{u},threshold=\"slowdown\"}} 87"),
    );
    has(
        &t,
        &format!("nvidia_gpu_temperature_threshold_celsius{{{u},threshold=\"shutdown\"}} 92"),
    );
    // NVML's per-fan list wins over the first-fan value.
    has(
        &t,
        &format!("nvidia_gpu_fan_speed_ratio{{{u},fan=\"0\"}} 0.3"),
    );
    has(
        &t,
        &format!("nvidia_gpu_fan_speed_ratio{{{u},fan=\"1\"}} 0.45"),
    );
    has(
        &t,
        &format!("nvidia_gpu_pcie_throughput_bytes_per_second{{{u},direction=\"rx\"}} 1500000"),
    );
    has(&t, &format!("nvidia_gpu_pcie_replays_total{{{u}}} 3"));
    has(
        &t,
        &format!("nvidia_gpu_xid_errors_total{{{u},xid=\"13\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_xid_errors_total{{{u},xid=\"79\"}} 2"),
    );
    has(&t, &format!("nvidia_gpu_suspended{{{u}}} 0"));
    has(
        &t,
        &format!("nvidia_gpu_mig_device_info{{{u},mig_uuid=\"MIG-1\",gpu_instance=\"7\",compute_instance=\"0\",profile=\"1g.5gb\"}} 1"),
    );
    has(
        &t,
        &format!("nvidia_gpu_mig_device_memory_used_bytes{{{u},mig_uuid=\"MIG-1\"}} 13631488"),
    );
    has(
        &t,
        &format!("nvidia_gpu_mig_device_memory_total_bytes{{{u},mig_uuid=\"MIG-1\"}} 500000000"),
    );
    let d = "gpu=\"1\",UUID=\"GPU-abc\",device=\"nvidia1\",modelName=\"NVIDIA A100-SXM4-40GB\",Hostname=\"n\",pci_bus_id=\"00000000:07:00.0\"";
    has(
        &t,
        &format!("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{d}}} 1234567"),
    );
    assert!(t.contains("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"));
    has(&t, &format!("DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{{d}}} 3"));
    assert!(t.contains("# TYPE DCGM_FI_DEV_PCIE_REPLAY_COUNTER counter\n"));
    has(&t, &format!("DCGM_FI_DEV_XID_ERRORS{{{d}}} 79"));
    assert!(t.contains("# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"));
}

#[test]
fn process_on_an_unknown_gpu_is_an_item_error_and_bus_ids_match_loosely() {
    let cap = snapshot(CAPTURES[2], Phase::Load);
    let mut s = cap.clone();
    // The driver names the GPU by bus id only, in sysfs spelling.
    s.processes[0].gpu_uuid = None;
    s.processes[0].gpu_pci_bus_id = Some("0000:00:09.0".into());
    s.processes[1].gpu_uuid = Some("GPU-gone".into());
    s.processes[1].gpu_pci_bus_id = None;
    let (t, errs) = render(&s, &no_proc());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("process 11328"), "{errs:?}");
    has(
        &t,
        &format!("nvidia_gpu_process_memory_used_bytes{{{U},pid=\"11327\",process=\"memhog\"}} 2690646016"),
    );
    assert!(!t.contains("pid=\"11328\""));
    assert!(Path::new("/nonexistent/proc").read_dir().is_err());
}
