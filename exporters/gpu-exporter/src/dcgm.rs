//! `--metrics.dcgm-compat`: dcgm-exporter's `DCGM_FI_DEV_*` names, units and labels, so
//! Grafana dashboard 12239 and other dcgm-exporter queries work unchanged.
//!
//! Labels: `gpu` (index), `UUID`, `device` (`nvidia<index>`), `modelName`, `Hostname` (the
//! node name), `pci_bus_id`. Units are dcgm-exporter's, not base units: MiB for framebuffer
//! memory, MHz for clocks, mJ for energy, percent for utilization. These names are the one
//! documented exception to the naming rules (`promtool check metrics` flags them).

use std::collections::BTreeMap;

use odin_common::Sink;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

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

type Field = (
    &'static str,
    MetricType,
    &'static str,
    fn(&GpuReading) -> Option<f64>,
);

/// Name, type, help, value in dcgm-exporter's unit.
const FIELDS: &[Field] = &[
    (
        "DCGM_FI_DEV_GPU_TEMP",
        MetricType::GAUGE,
        "GPU temperature (in C).",
        |r| r.temperature_celsius,
    ),
    (
        "DCGM_FI_DEV_MEMORY_TEMP",
        MetricType::GAUGE,
        "Memory temperature (in C).",
        |r| r.memory_temperature_celsius,
    ),
    (
        "DCGM_FI_DEV_POWER_USAGE",
        MetricType::GAUGE,
        "Power draw (in W).",
        |r| r.power_draw_watts,
    ),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        MetricType::COUNTER,
        "Total energy consumption since the driver loaded (in mJ).",
        |r| r.energy_consumed_joules.map(|j| j * 1000.0),
    ),
    (
        "DCGM_FI_DEV_SM_CLOCK",
        MetricType::GAUGE,
        "SM clock frequency (in MHz).",
        |r| r.clock_sm_hz.map(|h| h / 1e6),
    ),
    (
        "DCGM_FI_DEV_MEM_CLOCK",
        MetricType::GAUGE,
        "Memory clock frequency (in MHz).",
        |r| r.clock_memory_hz.map(|h| h / 1e6),
    ),
    (
        "DCGM_FI_DEV_GPU_UTIL",
        MetricType::GAUGE,
        "GPU utilization (in %).",
        |r| r.utilization_gpu_percent,
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        MetricType::GAUGE,
        "Memory utilization (in %).",
        |r| r.utilization_memory_percent,
    ),
    (
        "DCGM_FI_DEV_ENC_UTIL",
        MetricType::GAUGE,
        "Encoder utilization (in %).",
        |r| r.utilization_encoder_percent,
    ),
    (
        "DCGM_FI_DEV_DEC_UTIL",
        MetricType::GAUGE,
        "Decoder utilization (in %).",
        |r| r.utilization_decoder_percent,
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        MetricType::GAUGE,
        "Framebuffer memory used (in MiB).",
        |r| r.memory_used_bytes.map(|b| b / MIB),
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        MetricType::GAUGE,
        "Framebuffer memory free (in MiB).",
        |r| r.memory_free_bytes.map(|b| b / MIB),
    ),
    (
        "DCGM_FI_DEV_FB_RESERVED",
        MetricType::GAUGE,
        "Framebuffer memory reserved (in MiB).",
        |r| r.memory_reserved_bytes.map(|b| b / MIB),
    ),
    (
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        MetricType::COUNTER,
        "Total number of PCIe retries.",
        |r| r.pcie_replays,
    ),
];

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_owned());
    mf.set_help(help.to_owned());
    mf.set_field_type(kind);
    mf
}

fn push(mf: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let mut m = Metric::default();
    let pairs: Vec<LabelPair> = labels
        .iter()
        .map(|(k, v)| {
            let mut lp = LabelPair::default();
            lp.set_name((*k).to_owned());
            lp.set_value((*v).to_owned());
            lp
        })
        .collect();
    m.set_label(pairs);
    // dcgm-exporter's counters do not end in `_total`, which odin-common's `Sink::counter`
    // insists on; the families are built here and handed over with `Sink::extend`.
    if mf.get_field_type() == MetricType::COUNTER {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    mf.mut_metric().push(m);
}

/// Write the `DCGM_FI_DEV_*` families. `xid_supported`: the backend counts XID errors
/// (NVML); without it `DCGM_FI_DEV_XID_ERRORS` is absent.
pub(crate) fn emit(gpus: &[Gpu<'_>], opts: &DcgmOptions, xid_supported: bool, out: &mut Sink) {
    struct L {
        gpu: String,
        uuid: String,
        device: String,
        model: String,
        bus: String,
    }
    let labels: Vec<L> = gpus
        .iter()
        .map(|g| L {
            gpu: g.gpu.clone(),
            uuid: g.uuid.to_owned(),
            device: format!("nvidia{}", g.index),
            model: g.r.name.clone().unwrap_or_default(),
            bus: g.r.pci_bus_id.clone().unwrap_or_default(),
        })
        .collect();
    fn set<'a>(l: &'a L, hostname: &'a str) -> [(&'static str, &'a str); 6] {
        [
            ("gpu", l.gpu.as_str()),
            ("UUID", l.uuid.as_str()),
            ("device", l.device.as_str()),
            ("modelName", l.model.as_str()),
            ("Hostname", hostname),
            ("pci_bus_id", l.bus.as_str()),
        ]
    }
    let mut families = Vec::new();
    for (name, kind, help, f) in FIELDS {
        let mut mf = family(name, help, *kind);
        for (g, l) in gpus.iter().zip(&labels) {
            if let Some(v) = f(g.r) {
                push(&mut mf, &set(l, &opts.hostname), v);
            }
        }
        families.push(mf);
    }
    if xid_supported {
        let mut mf = family(
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered (0: none).",
            MetricType::GAUGE,
        );
        for (g, l) in gpus.iter().zip(&labels) {
            let code = opts.last_xid.get(&g.index).copied().unwrap_or(0);
            push(&mut mf, &set(l, &opts.hostname), code as f64);
        }
        families.push(mf);
    }
    out.extend(families.into_iter().filter(|f| !f.get_metric().is_empty()));
}
