//! The fake NVML's data file (the format `tests/fake-nvml/fake_nvml.c` reads), written from
//! [`GpuReading`]s: what nvidia-smi said, converted to NVML's units, plus the values only NVML
//! has ([`NvmlOnly`]) and MIG devices ([`FakeMig`]).
//!
//! Pure (no build, no file system): the integration tests and benches use it through
//! [`super`], and `examples/fake-nvml-data.rs` writes the data file of the end-to-end test
//! (tests/test_e2e_gpu.py) with it.

use std::fmt::Write as _;

use crate::reading::{GpuReading, MigDeviceReading, ProcessReading};

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
        // The clock-event time counters, in nanoseconds, under the field ids this driver
        // version uses (the ids of 251-255 moved to 269-273 from driver 580.82 on).
        let renumbered = g
            .driver_version
            .as_deref()
            .is_some_and(crate::nvml::clock_event_fields_renumbered);
        for (id, reason) in crate::nvml::CLOCK_EVENT_FIELDS {
            if let Some(s) = g.clock_events.time_seconds(reason) {
                let id = if renumbered && (251..=255).contains(&id) {
                    id + 18
                } else {
                    id
                };
                put(&format!("field{id}"), &int(s * 1e9));
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

/// NVML's integer CUDA driver version (`13010`) and its text (`13.1`), from the
/// `CUDA Version : 13.1` line of `nvidia-smi -q`. `None` if the line is missing.
pub fn cuda_version_from_q(q: &str) -> Option<(String, i32)> {
    let line = q
        .lines()
        .find(|l| l.trim_start().starts_with("CUDA Version"))?;
    let text = line.split_once(':')?.1.trim().to_owned();
    let (major, minor) = text.split_once('.')?;
    let n = major.parse::<i32>().ok()? * 1000 + minor.parse::<i32>().ok()? * 10;
    Some((text, n))
}

/// The MIG devices an `nvidia-smi -L` listing shows
/// (`  MIG 3g.40gb     Device  0: (UUID: MIG-...)` below its `GPU <i>: ...` line), under the
/// GPU of `gpus` with that index. The listing has no instance ids or memory use: the GPU
/// instance id is the slot + 1, the compute instance 0, the memory the profile's size (`40gb`:
/// 40 GiB) of which (slot + 1) × 13 MiB are used.
pub fn migs_from_listing(list: &str, gpus: &[GpuReading]) -> Vec<FakeMig> {
    let mut out = Vec::new();
    let mut gpu: Option<&GpuReading> = None;
    for line in list.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("GPU ") {
            let idx: u32 = rest.split(':').next().unwrap().parse().unwrap();
            gpu = gpus.iter().find(|g| g.index == Some(idx));
        } else if let Some(rest) = t.strip_prefix("MIG ") {
            let g = gpu.expect("MIG line before any GPU line");
            let profile = rest.split_whitespace().next().unwrap().to_owned();
            let slot: u32 = rest
                .split("Device")
                .nth(1)
                .and_then(|s| s.split(':').next())
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("no device number in {t:?}"));
            let uuid = rest
                .split("UUID: ")
                .nth(1)
                .unwrap_or_else(|| panic!("no UUID in {t:?}"))
                .trim_end_matches(')')
                .to_owned();
            let gib: f64 = profile
                .split('.')
                .nth(1)
                .and_then(|s| s.trim_end_matches("gb").parse().ok())
                .unwrap_or_else(|| panic!("no memory size in profile {profile:?}"));
            out.push(FakeMig {
                slot,
                name: format!("{} MIG {profile}", g.name.as_deref().unwrap_or("GPU")),
                device: MigDeviceReading {
                    gpu_index: g.index.expect("GPU index"),
                    gpu_uuid: g.uuid.clone().expect("GPU UUID"),
                    uuid,
                    gpu_instance_id: Some(slot + 1),
                    compute_instance_id: Some(0),
                    profile: Some(profile),
                    memory_used_bytes: Some(f64::from(slot + 1) * 13.0 * 1048576.0),
                    memory_total_bytes: Some(gib * 1024.0 * 1048576.0),
                },
            });
        }
    }
    out
}
