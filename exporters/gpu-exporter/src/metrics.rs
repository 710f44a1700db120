//! A [`Snapshot`] to metric families, exactly as `docs/metrics.md` ("gpu-exporter") names
//! them. Shared by both backends: whatever NVML or nvidia-smi could read ends up here, and a
//! value the backend did not have (`None`) is an absent series, never a 0.
//!
//! Every per-GPU series carries `gpu` (the index) and `uuid`. Utilization stays in percent only
//! in Hydra's `nvidia_gpu_utilization_percent`; engine utilization and fan speed are ratios.
//! `nvidia_gpu_backend_info` is not written here (the `backend` collector owns it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use odin_common::{Field, Labels, SampleValue, Sink, SplitField};

use crate::dcgm;
use crate::reading::{ClockEventReason, GpuReading, MigDeviceReading, ProcessReading, Snapshot};

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
    pub reading: &'a GpuReading,
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
                reading: r,
            })
        })
        .collect()
}

/// A percentage as a fraction of 1.
fn ratio(percent: Option<f64>) -> Option<f64> {
    percent.map(|p| p / 100.0)
}

/// `nvidia_gpu_devices`: how many GPUs the backend sees (also written by the `gpu` collector
/// when it has no reading to write).
pub fn write_device_count(out: &mut Sink, count: usize) {
    out.gauge("devices", "GPUs the backend sees.")
        .sample(&[], count);
}

/// Write every gpu-exporter family the snapshot has data for.
pub fn emit(s: &Snapshot, opts: &EmitOptions, out: &mut Sink) {
    let gpus = gpus(s);
    write_identity(s, &gpus, opts, out);
    write_per_gpu(&gpus, out);
    write_clock_events(&gpus, out);
    write_memory_errors(&gpus, opts, out);
    write_processes(s, &gpus, opts, out);
    write_mig_devices(s, out);
    if let Some(d) = &opts.dcgm {
        dcgm::emit(&gpus, d, opts.xid_supported, out);
    }
}

fn write_identity(s: &Snapshot, gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
    let cuda = s.cuda_version.as_deref().unwrap_or("");
    let mut info = out.gauge("info", "Identity of the GPU; always 1.");
    for g in gpus {
        let r = g.reading;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        info.sample(
            &[
                ("gpu", &g.gpu),
                ("uuid", g.uuid),
                ("name", &text(&r.name)),
                ("pci_bus_id", &text(&r.pci_bus_id)),
                ("driver_version", &text(&r.driver_version)),
                ("vbios_version", &text(&r.vbios_version)),
                ("compute_capability", &text(&r.compute_capability)),
                ("serial", &text(&r.serial)),
                ("cuda_version", cuda),
            ],
            1.0,
        );
    }
    write_device_count(out, gpus.len());
    // Not a reading of the GPU: what sysfs said before the read.
    let mut suspended = out.gauge(
        "suspended",
        "1 if the GPU is runtime-suspended (not woken up to be measured).",
    );
    for g in gpus {
        suspended.sample(
            &[("gpu", &g.gpu), ("uuid", g.uuid)],
            opts.suspended.get(&g.index).copied(),
        );
    }
}

/// The families with one series per GPU (labels `gpu`, `uuid`), in exposition order.
const PER_GPU: &[Field<GpuReading>] = &[
    Field::gauge(
        "performance_state",
        "Performance state, 0 (P0, fastest) to 15.",
        |r| r.performance_state.sample_value(),
    ),
    Field::gauge(
        "persistence_mode_enabled",
        "1 if persistence mode is on.",
        |r| r.persistence_mode.sample_value(),
    ),
    // Hydra's names.
    Field::gauge("temperature_celsius", "GPU core temperature.", |r| {
        r.temperature_celsius
    }),
    Field::gauge("power_draw_watts", "Power draw.", |r| r.power_draw_watts),
    Field::gauge("memory_used_bytes", "Framebuffer memory used.", |r| {
        r.memory_used_bytes
    }),
    Field::gauge("memory_total_bytes", "Framebuffer memory installed.", |r| {
        r.memory_total_bytes
    }),
    Field::gauge(
        "utilization_percent",
        "Percent of time a kernel ran (0-100; absent on MIG-enabled GPUs).",
        |r| r.utilization_gpu_percent,
    ),
    // Thermal and power.
    Field::gauge("memory_temperature_celsius", "HBM temperature.", |r| {
        r.memory_temperature_celsius
    }),
    Field::gauge(
        "temperature_slowdown_margin_celsius",
        "Degrees left before thermal slowdown.",
        |r| r.slowdown_margin_celsius,
    ),
    Field::gauge(
        "power_draw_instant_watts",
        "Instantaneous power draw.",
        |r| r.power_draw_instant_watts,
    ),
    Field::gauge("power_limit_watts", "Power limit set by software.", |r| {
        r.power_limit_watts
    }),
    Field::gauge(
        "power_enforced_limit_watts",
        "Power limit the driver enforces.",
        |r| r.enforced_power_limit_watts,
    ),
    Field::gauge("power_default_limit_watts", "Default power limit.", |r| {
        r.default_power_limit_watts
    }),
    Field::counter(
        "energy_consumed_joules_total",
        "Energy consumed since the driver loaded.",
        |r| r.energy_consumed_joules,
    ),
    // Memory, encoder, PCIe.
    Field::gauge("memory_free_bytes", "Framebuffer memory free.", |r| {
        r.memory_free_bytes
    }),
    Field::gauge(
        "memory_reserved_bytes",
        "Framebuffer memory reserved by the driver.",
        |r| r.memory_reserved_bytes,
    ),
    Field::gauge("encoder_sessions", "Active encoder sessions.", |r| {
        r.encoder_sessions
    }),
    Field::counter("pcie_replays_total", "PCIe replays.", |r| r.pcie_replays),
    // Memory health.
    Field::gauge(
        "retired_pages_pending",
        "1 if a page retirement waits for a reboot.",
        |r| r.retired_pages_pending.sample_value(),
    ),
    Field::gauge(
        "remapped_rows_pending",
        "1 if a row remap waits for a reset.",
        |r| r.remapped_rows_pending.sample_value(),
    ),
    Field::gauge("remapped_rows_failure", "1 if a row remap failed.", |r| {
        r.remapped_rows_failure.sample_value()
    }),
];

/// The families with one series per GPU and value of one more label.
const SPLIT: &[SplitField<GpuReading>] = &[
    SplitField::gauge(
        "mig_mode_enabled",
        "1 if MIG mode is on (state: current, pending).",
        "state",
        &[
            ("current", |r| r.mig_mode_current.sample_value()),
            ("pending", |r| r.mig_mode_pending.sample_value()),
        ],
    ),
    SplitField::gauge(
        "ecc_mode_enabled",
        "1 if ECC is on (state: current, pending).",
        "state",
        &[
            ("current", |r| r.ecc_mode_current.sample_value()),
            ("pending", |r| r.ecc_mode_pending.sample_value()),
        ],
    ),
    SplitField::gauge(
        "temperature_threshold_celsius",
        "Temperature thresholds (threshold: slowdown, shutdown).",
        "threshold",
        &[
            ("slowdown", |r| r.temperature_slowdown_threshold_celsius),
            ("shutdown", |r| r.temperature_shutdown_threshold_celsius),
        ],
    ),
    SplitField::gauge(
        "engine_utilization_ratio",
        "Busy fraction per engine (engine: memory, encoder, decoder, jpeg, ofa).",
        "engine",
        &[
            ("memory", |r| ratio(r.utilization_memory_percent)),
            ("encoder", |r| ratio(r.utilization_encoder_percent)),
            ("decoder", |r| ratio(r.utilization_decoder_percent)),
            ("jpeg", |r| ratio(r.utilization_jpeg_percent)),
            ("ofa", |r| ratio(r.utilization_ofa_percent)),
        ],
    ),
    SplitField::gauge(
        "clock_hertz",
        "Current clock (clock: graphics, sm, memory, video).",
        "clock",
        &[
            ("graphics", |r| r.clock_graphics_hz),
            ("sm", |r| r.clock_sm_hz),
            ("memory", |r| r.clock_memory_hz),
            ("video", |r| r.clock_video_hz),
        ],
    ),
    SplitField::gauge(
        "clock_max_hertz",
        "Maximum clock (clock: graphics, sm, memory).",
        "clock",
        &[
            ("graphics", |r| r.clock_max_graphics_hz),
            ("sm", |r| r.clock_max_sm_hz),
            ("memory", |r| r.clock_max_memory_hz),
        ],
    ),
    SplitField::gauge(
        "pcie_link_generation",
        "PCIe generation (link: current, max).",
        "link",
        &[
            ("current", |r| r.pcie_link_gen_current),
            ("max", |r| r.pcie_link_gen_max),
        ],
    ),
    SplitField::gauge(
        "pcie_link_width_lanes",
        "PCIe lanes (link: current, max).",
        "link",
        &[
            ("current", |r| r.pcie_link_width_current),
            ("max", |r| r.pcie_link_width_max),
        ],
    ),
    SplitField::gauge(
        "pcie_throughput_bytes_per_second",
        "PCIe throughput (direction: rx, tx) over a 20 ms window, sampled every --collect.interval.",
        "direction",
        &[
            ("rx", |r| r.pcie_rx_bytes_per_second),
            ("tx", |r| r.pcie_tx_bytes_per_second),
        ],
    ),
    SplitField::gauge(
        "retired_pages",
        "Retired framebuffer pages (cause: single_bit_ecc, double_bit_ecc).",
        "cause",
        &[
            ("single_bit_ecc", |r| r.retired_pages_single_bit),
            ("double_bit_ecc", |r| r.retired_pages_double_bit),
        ],
    ),
    SplitField::gauge(
        "remapped_rows",
        "Remapped memory rows (kind: correctable, uncorrectable).",
        "kind",
        &[
            ("correctable", |r| r.remapped_rows_correctable),
            ("uncorrectable", |r| r.remapped_rows_uncorrectable),
        ],
    ),
];

/// [`PER_GPU`], [`SPLIT`] and the fans.
fn write_per_gpu(gpus: &[Gpu<'_>], out: &mut Sink) {
    let labels: Vec<[(&str, &str); 2]> = gpus
        .iter()
        .map(|g| [("gpu", g.gpu.as_str()), ("uuid", g.uuid)])
        .collect();
    let rows: Vec<(&Labels<'_>, &GpuReading)> = labels
        .iter()
        .zip(gpus)
        .map(|(l, g)| (&l[..], g.reading))
        .collect();
    out.fields(PER_GPU, &rows);
    out.split_fields(SPLIT, &rows);
    let mut fans = out.gauge("fan_speed_ratio", "Fan speed as a fraction of its maximum.");
    for g in gpus {
        let r = g.reading;
        if r.fan_speeds_percent.is_empty() {
            fans.sample(
                &[("gpu", &g.gpu), ("uuid", g.uuid), ("fan", "0")],
                ratio(r.fan_speed_percent),
            );
        }
        for (fan, percent) in r.fan_speeds_percent.iter().enumerate() {
            fans.sample(
                &[("gpu", &g.gpu), ("uuid", g.uuid), ("fan", &fan.to_string())],
                percent / 100.0,
            );
        }
    }
}

fn write_clock_events(gpus: &[Gpu<'_>], out: &mut Sink) {
    let mut active = out.gauge(
        "clock_event_reason_active",
        "1 if the reason holds clocks down now; one series per reason the GPU supports.",
    );
    for g in gpus {
        for reason in ClockEventReason::ALL {
            active.sample(
                &[("gpu", &g.gpu), ("uuid", g.uuid), ("reason", reason.key())],
                g.reading.clock_events.active(reason),
            );
        }
    }
    let mut seconds = out.counter(
        "clock_event_reason_seconds_total",
        "Time spent with the reason active, where the driver counts it.",
    );
    for g in gpus {
        for reason in ClockEventReason::ALL {
            seconds.sample(
                &[("gpu", &g.gpu), ("uuid", g.uuid), ("reason", reason.key())],
                g.reading.clock_events.time_seconds(reason),
            );
        }
    }
}

/// ECC error counters (two labels) and XID errors (one series per code seen).
fn write_memory_errors(gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
    let mut ecc = out.counter(
        "ecc_errors_total",
        "ECC errors (type: corrected, uncorrected; scope: volatile since boot, aggregate lifetime).",
    );
    for g in gpus {
        let r = g.reading;
        for (error_type, scope, count) in [
            ("corrected", "volatile", r.ecc_corrected_volatile_total),
            ("corrected", "aggregate", r.ecc_corrected_aggregate_total),
            ("uncorrected", "volatile", r.ecc_uncorrected_volatile_total),
            (
                "uncorrected",
                "aggregate",
                r.ecc_uncorrected_aggregate_total,
            ),
        ] {
            ecc.sample(
                &[
                    ("gpu", &g.gpu),
                    ("uuid", g.uuid),
                    ("type", error_type),
                    ("scope", scope),
                ],
                count,
            );
        }
    }
    // Without XID counting in the backend the series are absent rather than claiming "no XID
    // errors".
    if opts.xid_supported {
        let mut xid = out.counter(
            "xid_errors_total",
            "XID errors seen since the exporter started, by XID code.",
        );
        for g in gpus {
            for (code, count) in &g.reading.xid_errors {
                xid.sample(
                    &[
                        ("gpu", &g.gpu),
                        ("uuid", g.uuid),
                        ("xid", &code.to_string()),
                    ],
                    *count,
                );
            }
        }
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

fn write_processes(s: &Snapshot, gpus: &[Gpu<'_>], opts: &EmitOptions, out: &mut Sink) {
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
                g.reading
                    .pci_bus_id
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
        "process_memory_used_bytes",
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

/// MIG device families: labels of the parent GPU plus `mig_uuid`.
const MIG_DEVICE: &[Field<MigDeviceReading>] = &[
    Field::gauge(
        "mig_device_memory_used_bytes",
        "Memory used in a MIG device.",
        |m| m.memory_used_bytes,
    ),
    Field::gauge(
        "mig_device_memory_total_bytes",
        "Memory of a MIG device.",
        |m| m.memory_total_bytes,
    ),
];

fn write_mig_devices(s: &Snapshot, out: &mut Sink) {
    let id_text = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut info = out.gauge("mig_device_info", "One per MIG device; always 1.");
    for m in &s.mig_devices {
        info.sample(
            &[
                ("gpu", &m.gpu_index.to_string()),
                ("uuid", &m.gpu_uuid),
                ("mig_uuid", &m.uuid),
                ("gpu_instance", &id_text(m.gpu_instance_id)),
                ("compute_instance", &id_text(m.compute_instance_id)),
                ("profile", m.profile.as_deref().unwrap_or("")),
            ],
            1.0,
        );
    }
    let indexes: Vec<String> = s
        .mig_devices
        .iter()
        .map(|m| m.gpu_index.to_string())
        .collect();
    let labels: Vec<[(&str, &str); 3]> = s
        .mig_devices
        .iter()
        .zip(&indexes)
        .map(|(m, gpu)| {
            [
                ("gpu", gpu.as_str()),
                ("uuid", m.gpu_uuid.as_str()),
                ("mig_uuid", m.uuid.as_str()),
            ]
        })
        .collect();
    let rows: Vec<(&Labels<'_>, &MigDeviceReading)> = labels
        .iter()
        .zip(&s.mig_devices)
        .map(|(l, m)| (&l[..], m))
        .collect();
    out.fields(MIG_DEVICE, &rows);
}
