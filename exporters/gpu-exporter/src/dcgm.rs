//! `--metrics.dcgm-compat`: dcgm-exporter's `DCGM_FI_DEV_*` names, units and labels, so
//! Grafana dashboard 12239 and other dcgm-exporter queries work unchanged.
//!
//! Labels: `gpu` (index), `UUID`, `device` (`nvidia<index>`), `modelName`, `Hostname` (the
//! node name), `pci_bus_id`. Units are dcgm-exporter's, not base units: MiB for framebuffer
//! memory, MHz for clocks, mJ for energy, percent for utilization. These names are the one
//! documented exception to the naming rules (`promtool check metrics` flags them).

use std::collections::BTreeMap;

use odin_common::{Field, Kind, Labels, Sink};

use crate::metrics::Gpu;
use crate::reading::GpuReading;

const MIB: f64 = 1024.0 * 1024.0;

/// What the compatibility family needs beyond the readings.
#[derive(Debug, Clone, Default)]
pub struct DcgmOptions {
    /// The `Hostname` label: `--metrics.dcgm-hostname`, else `$NODE_NAME`, else the kernel
    /// host name (dcgm-exporter in Kubernetes reports the node name).
    pub hostname: String,
    /// Per GPU index: the code of the most recent XID error (0: none seen), which the
    /// collector works out from the XID counters between reads.
    pub last_xid: BTreeMap<u32, u64>,
}

/// The host name to use when no flag or `NODE_NAME` says otherwise.
pub fn kernel_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `--metrics.dcgm-hostname` if given, else `NODE_NAME`, else the kernel host name.
pub fn resolve_hostname(flag: Option<&str>) -> String {
    if let Some(h) = flag.filter(|h| !h.is_empty()) {
        return h.to_owned();
    }
    match std::env::var("NODE_NAME") {
        Ok(n) if !n.is_empty() => n,
        _ => kernel_hostname(),
    }
}

/// The per-GPU families, in dcgm-exporter's units.
const FIELDS: &[Field<GpuReading>] = &[
    Field::compat_gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", |r| {
        r.temperature_celsius
    }),
    Field::compat_gauge(
        "DCGM_FI_DEV_MEMORY_TEMP",
        "Memory temperature (in C).",
        |r| r.memory_temperature_celsius,
    ),
    Field::compat_gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", |r| {
        r.power_draw_watts
    }),
    Field::compat_counter(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since the driver loaded (in mJ).",
        |r| r.energy_consumed_joules.map(|j| j * 1000.0),
    ),
    Field::compat_gauge(
        "DCGM_FI_DEV_SM_CLOCK",
        "SM clock frequency (in MHz).",
        |r| r.clock_sm_hz.map(|h| h / 1e6),
    ),
    Field::compat_gauge(
        "DCGM_FI_DEV_MEM_CLOCK",
        "Memory clock frequency (in MHz).",
        |r| r.clock_memory_hz.map(|h| h / 1e6),
    ),
    Field::compat_gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", |r| {
        r.utilization_gpu_percent
    }),
    Field::compat_gauge(
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "Memory utilization (in %).",
        |r| r.utilization_memory_percent,
    ),
    Field::compat_gauge("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", |r| {
        r.utilization_encoder_percent
    }),
    Field::compat_gauge("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", |r| {
        r.utilization_decoder_percent
    }),
    Field::compat_gauge(
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (in MiB).",
        |r| r.memory_used_bytes.map(|b| b / MIB),
    ),
    Field::compat_gauge(
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        |r| r.memory_free_bytes.map(|b| b / MIB),
    ),
    Field::compat_gauge(
        "DCGM_FI_DEV_FB_RESERVED",
        "Framebuffer memory reserved (in MiB).",
        |r| r.memory_reserved_bytes.map(|b| b / MIB),
    ),
    Field::compat_counter(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "Total number of PCIe retries.",
        |r| r.pcie_replays,
    ),
];

/// dcgm-exporter's label values of one GPU.
struct DcgmLabels {
    gpu: String,
    uuid: String,
    device: String,
    model: String,
    bus: String,
}

impl DcgmLabels {
    fn of(g: &Gpu<'_>) -> DcgmLabels {
        DcgmLabels {
            gpu: g.gpu.clone(),
            uuid: g.uuid.to_owned(),
            device: format!("nvidia{}", g.index),
            model: g.reading.name.clone().unwrap_or_default(),
            bus: g.reading.pci_bus_id.clone().unwrap_or_default(),
        }
    }

    fn with_host<'a>(&'a self, hostname: &'a str) -> [(&'static str, &'a str); 6] {
        [
            ("gpu", &self.gpu),
            ("UUID", &self.uuid),
            ("device", &self.device),
            ("modelName", &self.model),
            ("Hostname", hostname),
            ("pci_bus_id", &self.bus),
        ]
    }
}

/// Write the `DCGM_FI_DEV_*` families. `xid_supported`: the backend counts XID errors
/// (NVML); without it `DCGM_FI_DEV_XID_ERRORS` is absent.
pub(crate) fn emit(gpus: &[Gpu<'_>], opts: &DcgmOptions, xid_supported: bool, out: &mut Sink) {
    let names: Vec<DcgmLabels> = gpus.iter().map(DcgmLabels::of).collect();
    let labels: Vec<[(&str, &str); 6]> =
        names.iter().map(|l| l.with_host(&opts.hostname)).collect();
    let rows: Vec<(&Labels<'_>, &GpuReading)> = labels
        .iter()
        .zip(gpus)
        .map(|(l, g)| (&l[..], g.reading))
        .collect();
    out.fields(FIELDS, &rows);
    if xid_supported {
        let mut xid = out.family(
            Kind::CompatGauge,
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered (0: none).",
        );
        for (g, l) in gpus.iter().zip(&labels) {
            xid.sample(l, opts.last_xid.get(&g.index).copied().unwrap_or(0));
        }
    }
}
