//! A [`Snapshot`] to metric families, exactly as `docs/metrics.md` ("gpu-exporter") names
//! them. Shared by both backends: whatever NVML or nvidia-smi could read ends up here, and a
//! value the backend did not have (`None`) is an absent series, never a 0.
//!
//! Every per-GPU series carries `gpu` (the index) and `uuid`. Utilization stays in percent only
//! in Hydra's `nvidia_gpu_utilization_percent`; engine utilization and fan speed are ratios.
//! `nvidia_gpu_backend_info` is not written here (the `backend` collector owns it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use odin_common::Sink;

use crate::dcgm;
use crate::reading::{ClockEventReason, GpuReading, ProcessReading, Snapshot};

/// What the snapshot alone does not say.
#[derive(Debug, Clone, Default)]
pub struct EmitOptions {
    /// procfs root for `/proc/<pid>/comm` (process names). `None`: the driver's name only.
    pub procfs: Option<PathBuf>,
    /// Per GPU index: whether it was runtime-suspended (sysfs `power/runtime_status`) when
    /// checked before this read. A GPU missing here gets no `nvidia_gpu_suspended` series.
    pub suspended: BTreeMap<u32, bool>,
    /// The backend counts XID errors (NVML events). Without it the XID series are absent
    /// rather than claiming "no XID errors".
    pub xid_supported: bool,
    /// `--metrics.dcgm-compat`: also write the `DCGM_FI_DEV_*` family.
    pub dcgm: Option<dcgm::DcgmOptions>,
}

/// One GPU with its `gpu` / `uuid` label values.
pub(crate) struct Gpu<'a> {
    pub index: u32,
    pub gpu: String,
    pub uuid: &'a str,
    pub r: &'a GpuReading,
}

/// The GPUs of a snapshot that have an index (the parsers drop rows without one).
pub(crate) fn gpus(s: &Snapshot) -> Vec<Gpu<'_>> {
    s.gpus
        .iter()
        .filter_map(|r| {
            let index = r.index?;
            Some(Gpu {
                index,
                gpu: index.to_string(),
                uuid: r.uuid.as_deref().unwrap_or(""),
                r,
            })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

fn b(v: Option<bool>) -> Option<f64> {
    v.map(|x| if x { 1.0 } else { 0.0 })
}

fn ratio(percent: Option<f64>) -> Option<f64> {
    percent.map(|p| p / 100.0)
}

/// One series per GPU, labels `gpu`, `uuid`.
fn single(
    out: &mut Sink,
    kind: Kind,
    gpus: &[Gpu<'_>],
    name: &str,
    help: &str,
    f: impl Fn(&GpuReading) -> Option<f64>,
) {
    let mut fam = match kind {
        Kind::Gauge => out.gauge(name, help),
        Kind::Counter => out.counter(name, help),
    };
    for g in gpus {
        if let Some(v) = f(g.r) {
            fam.sample(&[("gpu", &g.gpu), ("uuid", g.uuid)], v);
        }
    }
}

/// Several series per GPU, told apart by one more label.
fn split(
    out: &mut Sink,
    kind: Kind,
    gpus: &[Gpu<'_>],
    name: &str,
    help: &str,
    label: &str,
    f: impl Fn(&GpuReading) -> Vec<(String, Option<f64>)>,
) {
    let mut fam = match kind {
        Kind::Gauge => out.gauge(name, help),
        Kind::Counter => out.counter(name, help),
    };
    for g in gpus {
        for (value_label, v) in f(g.r) {
            if let Some(v) = v {
                fam.sample(
                    &[("gpu", &g.gpu), ("uuid", g.uuid), (label, &value_label)],
                    v,
                );
            }
        }
    }
}

fn pairs<const N: usize>(items: [(&str, Option<f64>); N]) -> Vec<(String, Option<f64>)> {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Write every gpu-exporter family the snapshot has data for.
pub fn emit(s: &Snapshot, opts: &EmitOptions, out: &mut Sink) {
    let gpus = gpus(s);
    emit_identity(s, &gpus, opts, out);
    emit_hydra(&gpus, out);
    emit_thermal_power(&gpus, out);
    emit_memory_clocks_pcie(&gpus, out);
    emit_clock_events(&gpus, out);
    emit_memory_health(&gpus, opts, out);
    emit_processes(s, &gpus, opts, out);
    emit_mig(s, out);
    if let Some(d) = &opts.dcgm {
        dcgm::emit(&gpus, d, opts.xid_supported, out);
    }
}

fn emit_identity(s: &Snapshot, gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
    let cuda = s.cuda_version.as_deref().unwrap_or("");
    let mut info = out.gauge("nvidia_gpu_info", "Identity of the GPU; always 1.");
    for g in gpus {
        let r = g.r;
        let t = |v: &Option<String>| v.clone().unwrap_or_default();
        info.sample(
            &[
                ("gpu", &g.gpu),
                ("uuid", g.uuid),
                ("name", &t(&r.name)),
                ("pci_bus_id", &t(&r.pci_bus_id)),
                ("driver_version", &t(&r.driver_version)),
                ("vbios_version", &t(&r.vbios_version)),
                ("compute_capability", &t(&r.compute_capability)),
                ("serial", &t(&r.serial)),
                ("cuda_version", cuda),
            ],
            1.0,
        );
    }
    out.gauge("nvidia_gpu_devices", "GPUs the backend sees.")
        .sample(&[], gpus.len() as f64);
    single(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_suspended",
        "1 if the GPU is runtime-suspended (not woken up to be measured).",
        |r| {
            r.index
                .and_then(|i| opts.suspended.get(&i))
                .map(|&x| if x { 1.0 } else { 0.0 })
        },
    );
    single(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_performance_state",
        "Performance state, 0 (P0, fastest) to 15.",
        |r| r.performance_state.map(f64::from),
    );
    single(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_persistence_mode_enabled",
        "1 if persistence mode is on.",
        |r| b(r.persistence_mode),
    );
    split(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_mig_mode_enabled",
        "1 if MIG mode is on (state: current, pending).",
        "state",
        |r| {
            pairs([
                ("current", b(r.mig_mode_current)),
                ("pending", b(r.mig_mode_pending)),
            ])
        },
    );
    split(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_ecc_mode_enabled",
        "1 if ECC is on (state: current, pending).",
        "state",
        |r| {
            pairs([
                ("current", b(r.ecc_mode_current)),
                ("pending", b(r.ecc_mode_pending)),
            ])
        },
    );
}

fn emit_hydra(gpus: &[Gpu<'_>], out: &mut Sink) {
    let g = Kind::Gauge;
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_temperature_celsius",
        "GPU core temperature.",
        |r| r.temperature_celsius,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_power_draw_watts",
        "Power draw.",
        |r| r.power_draw_watts,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_memory_used_bytes",
        "Framebuffer memory used.",
        |r| r.memory_used_bytes,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_memory_total_bytes",
        "Framebuffer memory installed.",
        |r| r.memory_total_bytes,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_utilization_percent",
        "Percent of time a kernel ran (0-100; absent on MIG-enabled GPUs).",
        |r| r.utilization_gpu_percent,
    );
}

fn emit_thermal_power(gpus: &[Gpu<'_>], out: &mut Sink) {
    let g = Kind::Gauge;
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_memory_temperature_celsius",
        "HBM temperature.",
        |r| r.memory_temperature_celsius,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_temperature_slowdown_margin_celsius",
        "Degrees left before thermal slowdown.",
        |r| r.slowdown_margin_celsius,
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_temperature_threshold_celsius",
        "Temperature thresholds (threshold: slowdown, shutdown).",
        "threshold",
        |r| {
            pairs([
                ("slowdown", r.temperature_slowdown_threshold_celsius),
                ("shutdown", r.temperature_shutdown_threshold_celsius),
            ])
        },
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_power_draw_instant_watts",
        "Instantaneous power draw.",
        |r| r.power_draw_instant_watts,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_power_limit_watts",
        "Power limit set by software.",
        |r| r.power_limit_watts,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_power_enforced_limit_watts",
        "Power limit the driver enforces.",
        |r| r.enforced_power_limit_watts,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_power_default_limit_watts",
        "Default power limit.",
        |r| r.default_power_limit_watts,
    );
    single(
        out,
        Kind::Counter,
        gpus,
        "nvidia_gpu_energy_consumed_joules_total",
        "Energy consumed since the driver loaded.",
        |r| r.energy_consumed_joules,
    );
}

fn emit_memory_clocks_pcie(gpus: &[Gpu<'_>], out: &mut Sink) {
    let g = Kind::Gauge;
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_memory_free_bytes",
        "Framebuffer memory free.",
        |r| r.memory_free_bytes,
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_memory_reserved_bytes",
        "Framebuffer memory reserved by the driver.",
        |r| r.memory_reserved_bytes,
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_engine_utilization_ratio",
        "Busy fraction per engine (engine: memory, encoder, decoder, jpeg, ofa).",
        "engine",
        |r| {
            pairs([
                ("memory", ratio(r.utilization_memory_percent)),
                ("encoder", ratio(r.utilization_encoder_percent)),
                ("decoder", ratio(r.utilization_decoder_percent)),
                ("jpeg", ratio(r.utilization_jpeg_percent)),
                ("ofa", ratio(r.utilization_ofa_percent)),
            ])
        },
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_encoder_sessions",
        "Active encoder sessions.",
        |r| r.encoder_sessions,
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_clock_hertz",
        "Current clock (clock: graphics, sm, memory, video).",
        "clock",
        |r| {
            pairs([
                ("graphics", r.clock_graphics_hz),
                ("sm", r.clock_sm_hz),
                ("memory", r.clock_memory_hz),
                ("video", r.clock_video_hz),
            ])
        },
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_clock_max_hertz",
        "Maximum clock (clock: graphics, sm, memory).",
        "clock",
        |r| {
            pairs([
                ("graphics", r.clock_max_graphics_hz),
                ("sm", r.clock_max_sm_hz),
                ("memory", r.clock_max_memory_hz),
            ])
        },
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_fan_speed_ratio",
        "Fan speed as a fraction of its maximum.",
        "fan",
        |r| {
            if r.fan_speeds_percent.is_empty() {
                vec![("0".to_owned(), ratio(r.fan_speed_percent))]
            } else {
                r.fan_speeds_percent
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i.to_string(), Some(p / 100.0)))
                    .collect()
            }
        },
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_pcie_link_generation",
        "PCIe generation (link: current, max).",
        "link",
        |r| {
            pairs([
                ("current", r.pcie_link_gen_current),
                ("max", r.pcie_link_gen_max),
            ])
        },
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_pcie_link_width_lanes",
        "PCIe lanes (link: current, max).",
        "link",
        |r| {
            pairs([
                ("current", r.pcie_link_width_current),
                ("max", r.pcie_link_width_max),
            ])
        },
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_pcie_throughput_bytes_per_second",
        "PCIe throughput (direction: rx, tx).",
        "direction",
        |r| {
            pairs([
                ("rx", r.pcie_rx_bytes_per_second),
                ("tx", r.pcie_tx_bytes_per_second),
            ])
        },
    );
    single(
        out,
        Kind::Counter,
        gpus,
        "nvidia_gpu_pcie_replays_total",
        "PCIe replays.",
        |r| r.pcie_replays,
    );
}

fn emit_clock_events(gpus: &[Gpu<'_>], out: &mut Sink) {
    split(
        out,
        Kind::Gauge,
        gpus,
        "nvidia_gpu_clock_event_reason_active",
        "1 if the reason holds clocks down now; one series per reason the GPU supports.",
        "reason",
        |r| {
            ClockEventReason::ALL
                .iter()
                .map(|&e| (e.key().to_owned(), b(r.clock_events.active(e))))
                .collect()
        },
    );
    split(
        out,
        Kind::Counter,
        gpus,
        "nvidia_gpu_clock_event_reason_seconds_total",
        "Time spent with the reason active, where the driver counts it.",
        "reason",
        |r| {
            ClockEventReason::ALL
                .iter()
                .map(|&e| (e.key().to_owned(), r.clock_events.time_seconds(e)))
                .collect()
        },
    );
}

fn emit_memory_health(gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
    let mut ecc = out.counter(
        "nvidia_gpu_ecc_errors_total",
        "ECC errors (type: corrected, uncorrected; scope: volatile since boot, aggregate lifetime).",
    );
    for g in gpus {
        let r = g.r;
        for (ty, scope, v) in [
            ("corrected", "volatile", r.ecc_corrected_volatile_total),
            ("corrected", "aggregate", r.ecc_corrected_aggregate_total),
            ("uncorrected", "volatile", r.ecc_uncorrected_volatile_total),
            (
                "uncorrected",
                "aggregate",
                r.ecc_uncorrected_aggregate_total,
            ),
        ] {
            if let Some(v) = v {
                ecc.sample(
                    &[
                        ("gpu", &g.gpu),
                        ("uuid", g.uuid),
                        ("type", ty),
                        ("scope", scope),
                    ],
                    v,
                );
            }
        }
    }
    let g = Kind::Gauge;
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_retired_pages",
        "Retired framebuffer pages (cause: single_bit_ecc, double_bit_ecc).",
        "cause",
        |r| {
            pairs([
                ("single_bit_ecc", r.retired_pages_single_bit),
                ("double_bit_ecc", r.retired_pages_double_bit),
            ])
        },
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_retired_pages_pending",
        "1 if a page retirement waits for a reboot.",
        |r| b(r.retired_pages_pending),
    );
    split(
        out,
        g,
        gpus,
        "nvidia_gpu_remapped_rows",
        "Remapped memory rows (kind: correctable, uncorrectable).",
        "kind",
        |r| {
            pairs([
                ("correctable", r.remapped_rows_correctable),
                ("uncorrectable", r.remapped_rows_uncorrectable),
            ])
        },
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_remapped_rows_pending",
        "1 if a row remap waits for a reset.",
        |r| b(r.remapped_rows_pending),
    );
    single(
        out,
        g,
        gpus,
        "nvidia_gpu_remapped_rows_failure",
        "1 if a row remap failed.",
        |r| b(r.remapped_rows_failure),
    );
    if opts.xid_supported {
        split(
            out,
            Kind::Counter,
            gpus,
            "nvidia_gpu_xid_errors_total",
            "XID errors seen since the exporter started, by XID code.",
            "xid",
            |r| {
                r.xid_errors
                    .iter()
                    .map(|(code, n)| (code.to_string(), Some(*n as f64)))
                    .collect()
            },
        );
    }
}

/// `process` label: `/proc/<pid>/comm`, else the basename of the first word of the driver's
/// name (never more: the command line can hold secrets), else empty.
pub fn process_name(procfs: Option<&std::path::Path>, p: &ProcessReading) -> String {
    if let Some(root) = procfs {
        if let Ok(comm) = std::fs::read_to_string(root.join(p.pid.to_string()).join("comm")) {
            let comm = comm.trim_end_matches('\n');
            if !comm.is_empty() {
                return comm.to_owned();
            }
        }
    }
    let Some(name) = p.process_name.as_deref() else {
        return String::new();
    };
    let first = name.split_whitespace().next().unwrap_or("");
    let base = first.rsplit('/').next().unwrap_or(first);
    base.chars().take(64).collect()
}

/// Bus ids compare equal whatever the domain width and case (`00000000:0C:00.0` vs
/// `0000:0c:00.0`).
pub fn same_bus_id(a: &str, b: &str) -> bool {
    match (
        crate::suspend::sysfs_device_name(a),
        crate::suspend::sysfs_device_name(b),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn emit_processes(s: &Snapshot, gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
    // (gpu index, pid) -> (uuid, process, bytes): one series per process and GPU, summed if
    // the driver lists a process twice on one GPU (once per MIG instance).
    let mut rows: BTreeMap<(u32, u32), (&str, String, f64)> = BTreeMap::new();
    for p in &s.processes {
        let Some(bytes) = p.used_memory_bytes else {
            continue;
        };
        let by_uuid = p
            .gpu_uuid
            .as_deref()
            .and_then(|u| gpus.iter().find(|g| g.uuid == u));
        let by_bus = || {
            let bus = p.gpu_pci_bus_id.as_deref()?;
            gpus.iter().find(|g| {
                g.r.pci_bus_id
                    .as_deref()
                    .is_some_and(|own| same_bus_id(own, bus))
            })
        };
        let Some(g) = by_uuid.or_else(by_bus) else {
            out.item_error(format!(
                "process {}: on a GPU the GPU list does not show (uuid {:?})",
                p.pid,
                p.gpu_uuid.as_deref().unwrap_or("")
            ));
            continue;
        };
        let name = process_name(opts.procfs.as_deref(), p);
        rows.entry((g.index, p.pid))
            .and_modify(|e| e.2 += bytes)
            .or_insert((g.uuid, name, bytes));
    }
    let mut fam = out.gauge(
        "nvidia_gpu_process_memory_used_bytes",
        "GPU memory a process uses; process from /proc/<pid>/comm, else the driver's name.",
    );
    for ((gpu, pid), (uuid, name, bytes)) in rows {
        fam.sample(
            &[
                ("gpu", &gpu.to_string()),
                ("uuid", uuid),
                ("pid", &pid.to_string()),
                ("process", &name),
            ],
            bytes,
        );
    }
}

fn emit_mig(s: &Snapshot, out: &mut Sink) {
    let opt = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut info = out.gauge(
        "nvidia_gpu_mig_device_info",
        "One per MIG device; always 1.",
    );
    for m in &s.mig_devices {
        info.sample(
            &[
                ("gpu", &m.gpu_index.to_string()),
                ("uuid", &m.gpu_uuid),
                ("mig_uuid", &m.uuid),
                ("gpu_instance", &opt(m.gpu_instance_id)),
                ("compute_instance", &opt(m.compute_instance_id)),
                ("profile", m.profile.as_deref().unwrap_or("")),
            ],
            1.0,
        );
    }
    for (name, help, f) in [
        (
            "nvidia_gpu_mig_device_memory_used_bytes",
            "Memory used in a MIG device.",
            (|m: &crate::reading::MigDeviceReading| m.memory_used_bytes)
                as fn(&crate::reading::MigDeviceReading) -> Option<f64>,
        ),
        (
            "nvidia_gpu_mig_device_memory_total_bytes",
            "Memory of a MIG device.",
            |m| m.memory_total_bytes,
        ),
    ] {
        let mut fam = out.gauge(name, help);
        for m in &s.mig_devices {
            if let Some(v) = f(m) {
                fam.sample(
                    &[
                        ("gpu", &m.gpu_index.to_string()),
                        ("uuid", &m.gpu_uuid),
                        ("mig_uuid", &m.uuid),
                    ],
                    v,
                );
            }
        }
    }
}
