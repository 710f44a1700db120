//! NVML backend: reads GPUs through `nvml-wrapper` (`libnvidia-ml.so.1`).
//!
//! [`open`] loads and initialises the library and registers for critical XID events;
//! [`NvmlBackend::read`] asks every device for everything the metric contract lists, once per
//! call (NVML answers from the driver in microseconds; nothing here waits or spawns).
//!
//! Per-value failures never fail the read:
//! - `NotSupported` leaves the value `None`, silently (the board has no such sensor);
//! - a function the installed driver's library lacks (`FailedToLoadSymbol`, `FunctionNotFound`)
//!   leaves it `None` and is reported once per function for the life of the backend;
//! - `GpuLost` drops that GPU from the snapshot (with a problem), the others are kept;
//! - any other error leaves the value `None` and is reported.
//!
//! A few entry points `nvml-wrapper` does not wrap (remapped rows, MIG instance ids, margin
//! temperature, JPEG/OFA utilization, retired page counts, events) are called through the
//! library table it loaded (`Nvml::lib`), with the same error mapping.

mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nvml_wrapper::enum_wrappers::device::{
    Clock, ComputeMode, EccCounter, MemoryError, PcieUtilCounter, PerformanceState,
    TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};

use crate::reading::{Backend, GpuReading, MigDeviceReading, ProcessReading, Snapshot};

/// The library `open(None)` loads: the runtime soname every driver installs (the unversioned
/// `libnvidia-ml.so` only comes with development packages).
pub const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// `NVML_FI_DEV_MEMORY_TEMP`: HBM temperature, °C.
const FI_MEMORY_TEMP: u32 = 82;
/// `NVML_FI_DEV_POWER_AVERAGE`: power averaged over 1 s, mW.
const FI_POWER_AVERAGE: u32 = 185;
/// `NVML_FI_DEV_POWER_INSTANT`: instantaneous power, mW.
const FI_POWER_INSTANT: u32 = 186;

/// Load NVML (from `library`, or the system's `libnvidia-ml.so.1`), initialise it, and return
/// a backend. `Err` carries a one-line reason (library not found, init failed, no permission).
pub fn open(library: Option<&Path>) -> anyhow::Result<Box<dyn Backend>> {
    Ok(Box::new(NvmlBackend::open(library)?))
}

/// The NVML backend. Holds the initialised library for its whole life (`nvmlShutdown` and
/// unloading happen on drop).
pub struct NvmlBackend {
    // The event set in `state` is freed in `Drop::drop`, which runs before `nvml` (and with it
    // nvmlShutdown and the library) is dropped.
    state: Mutex<State>,
    driver_version: Option<String>,
    cuda_version: Option<String>,
    nvml: Nvml,
}

/// What one backend remembers between reads.
struct State {
    events: Option<raw::EventSet>,
    /// Device handle (as an address) to GPU index, for the devices registered for XID events.
    registered: BTreeMap<usize, u32>,
    /// XID errors seen since `open`, by GPU index and XID code.
    xid: BTreeMap<u32, BTreeMap<u64, u64>>,
    /// The code of the last XID error seen, by GPU index.
    last_xid: BTreeMap<u32, u64>,
    /// NVML functions found missing from the library: each is reported once.
    missing: BTreeSet<String>,
    /// Notes from `open` (for example: XID events not supported) for the first read.
    notes: Vec<String>,
}

impl NvmlBackend {
    pub fn open(library: Option<&Path>) -> anyhow::Result<NvmlBackend> {
        let path: &OsStr = library.map_or(OsStr::new(DEFAULT_LIBRARY), Path::as_os_str);
        let shown = Path::new(path).display().to_string();
        if let Some(p) = library {
            if p.components().count() > 1 && !p.exists() {
                anyhow::bail!("NVML library not found at {shown}");
            }
        }
        let nvml = Nvml::builder()
            .lib_path(path)
            .init()
            .map_err(|e| anyhow::anyhow!(init_error(&shown, &e)))?;
        let driver_version = nvml.sys_driver_version().ok();
        let cuda_version = nvml.sys_cuda_driver_version().ok().map(cuda_version_text);
        let mut state = State {
            events: None,
            registered: BTreeMap::new(),
            xid: BTreeMap::new(),
            last_xid: BTreeMap::new(),
            missing: BTreeSet::new(),
            notes: Vec::new(),
        };
        register_xid_events(&nvml, &mut state);
        Ok(NvmlBackend {
            state: Mutex::new(state),
            driver_version,
            cuda_version,
            nvml,
        })
    }
}

impl Drop for NvmlBackend {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = state.events.take() {
            // Nothing to do about a failure while shutting down.
            let _ = raw::event_set_free(&self.nvml, set);
        }
    }
}

/// One line for an `Nvml::init` failure.
fn init_error(path: &str, e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(le) => {
            // libloading's message is dlerror(): "<path>: cannot open shared object file: ..."
            let detail = le.to_string().replace('\n', " ");
            format!("NVML library not found: cannot load {path}: {detail}")
        }
        NvmlError::FailedToLoadSymbol(s) => {
            format!("NVML init failed: {path} is not an NVML library ({s})")
        }
        NvmlError::LibRmVersionMismatch => format!(
            "NVML init failed: driver/library version mismatch ({path} does not match the loaded \
             kernel driver; reboot or reload the nvidia module)"
        ),
        NvmlError::NoPermission => format!(
            "NVML init failed: insufficient permissions to talk to the driver (/dev/nvidia*) \
             through {path}"
        ),
        NvmlError::DriverNotLoaded => {
            "NVML init failed: the NVIDIA kernel driver is not loaded".to_owned()
        }
        other => format!("NVML init failed: {other}"),
    }
}

/// `13010` -> `13.1` (CUDA encodes major*1000 + minor*10).
fn cuda_version_text(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Create one event set and register every device that can report critical XID errors.
fn register_xid_events(nvml: &Nvml, state: &mut State) {
    let set = match raw::event_set_create(nvml) {
        Ok(set) => set,
        Err(e) => {
            state
                .notes
                .push(format!("XID events unavailable (nvmlEventSetCreate: {e})"));
            return;
        }
    };
    let count = nvml.device_count().unwrap_or(0);
    let mut unsupported = Vec::new();
    for i in 0..count {
        let Ok(dev) = nvml.device_by_index(i) else {
            continue;
        };
        match raw::register_xid(nvml, &dev, &set) {
            Ok(handle) => {
                state.registered.insert(handle, i);
            }
            Err(NvmlError::NotSupported) => unsupported.push(i.to_string()),
            Err(e) => state
                .notes
                .push(format!("gpu {i}: XID events not registered: {e}")),
        }
    }
    if !unsupported.is_empty() {
        state.notes.push(format!(
            "gpu {}: XID events not supported; nvidia_gpu_xid_errors_total absent there",
            unsupported.join(",")
        ));
    }
    if state.registered.is_empty() {
        let _ = raw::event_set_free(nvml, set);
    } else {
        state.events = Some(set);
    }
}

impl Backend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    /// NVML calls do not block on anything slow, so `timeout` is not needed here.
    fn read(&self, _timeout: Duration) -> anyhow::Result<Snapshot> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let count = self
            .nvml
            .device_count()
            .map_err(|e| anyhow::anyhow!("NVML device count failed: {e}"))?;
        let mut snap = Snapshot {
            cuda_version: self.cuda_version.clone(),
            ..Snapshot::default()
        };
        snap.problems.append(&mut state.notes);
        self.drain_events(state, &mut snap.problems);

        for i in 0..count {
            let dev = match self.nvml.device_by_index(i) {
                Ok(d) => d,
                Err(NvmlError::GpuLost) => {
                    snap.problems
                        .push(format!("gpu {i}: GPU is lost (fell off the bus); skipped"));
                    continue;
                }
                Err(e) => {
                    snap.problems
                        .push(format!("gpu {i}: no device handle: {e}; skipped"));
                    continue;
                }
            };
            let mut problems = Vec::new();
            let mut cx = Cx {
                gpu: i.to_string(),
                problems: &mut problems,
                missing: &mut state.missing,
                lost: false,
            };
            let mut g = self.read_gpu(&dev, &mut cx);
            let index = g.index.unwrap_or(i);
            g.index = Some(index);
            let procs = self.read_processes(&dev, &g, &mut cx);
            let migs = if g.mig_mode_current == Some(true) {
                self.read_mig_devices(&dev, &g, &mut cx)
            } else {
                Vec::new()
            };
            if cx.lost {
                let uuid = g.uuid.as_deref().unwrap_or("unknown uuid");
                snap.problems.push(format!(
                    "gpu {index} ({uuid}): GPU is lost (fell off the bus); skipped"
                ));
                continue;
            }
            if let Some(seen) = state.xid.get(&i) {
                g.xid_errors = seen.clone();
            }
            g.last_xid = state.last_xid.get(&i).copied();
            snap.problems.append(&mut problems);
            snap.gpus.push(g);
            snap.processes.extend(procs);
            snap.mig_devices.extend(migs);
        }
        Ok(snap)
    }
}

/// Maps one NVML result to a value, recording what went wrong.
struct Cx<'a> {
    /// `0`, or `0 mig 1` for a MIG device: how problems name the device.
    gpu: String,
    problems: &'a mut Vec<String>,
    missing: &'a mut BTreeSet<String>,
    lost: bool,
}

impl Cx<'_> {
    /// `function`: the NVML entry point behind `r`, as problems name it.
    fn take<T>(&mut self, function: &str, r: Result<T, NvmlError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(NvmlError::NotSupported) => None,
            Err(NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound) => {
                if self.missing.insert(function.to_owned()) {
                    self.problems.push(format!(
                        "{function}: not in this driver's NVML library; its values are absent"
                    ));
                }
                None
            }
            Err(NvmlError::GpuLost) => {
                self.lost = true;
                None
            }
            Err(e) => {
                self.problems
                    .push(format!("gpu {}: {function}: {e}", self.gpu));
                None
            }
        }
    }

    /// One value of `nvmlDeviceGetFieldValues`. A field id the driver does not know (older
    /// drivers answer `InvalidArg` or an unknown value type for it) is noted once, like a
    /// missing function, instead of on every read.
    fn take_field(&mut self, id: u32, r: Result<f64, NvmlError>) -> Option<f64> {
        let function = format!("nvmlDeviceGetFieldValues(field {id})");
        match r {
            Err(NvmlError::InvalidArg | NvmlError::UnexpectedVariant(_)) => {
                if self.missing.insert(function.clone()) {
                    self.problems.push(format!(
                        "{function}: not known to this driver; its value is absent"
                    ));
                }
                None
            }
            r => self.take(&function, r),
        }
    }
}

fn f(v: impl Into<f64>) -> f64 {
    v.into()
}

fn compute_mode_text(m: ComputeMode) -> &'static str {
    match m {
        ComputeMode::Default => "Default",
        ComputeMode::ExclusiveThread => "Exclusive_Thread",
        ComputeMode::Prohibited => "Prohibited",
        ComputeMode::ExclusiveProcess => "Exclusive_Process",
    }
}

fn pstate_number(p: PerformanceState) -> Option<u8> {
    use PerformanceState as P;
    Some(match p {
        P::Zero => 0,
        P::One => 1,
        P::Two => 2,
        P::Three => 3,
        P::Four => 4,
        P::Five => 5,
        P::Six => 6,
        P::Seven => 7,
        P::Eight => 8,
        P::Nine => 9,
        P::Ten => 10,
        P::Eleven => 11,
        P::Twelve => 12,
        P::Thirteen => 13,
        P::Fourteen => 14,
        P::Fifteen => 15,
        P::Unknown => return None,
    })
}

fn sample_value(v: &SampleValue) -> f64 {
    match *v {
        SampleValue::F64(x) => x,
        SampleValue::U32(x) => f64::from(x),
        SampleValue::U64(x) => x as f64,
        SampleValue::I64(x) => x as f64,
    }
}

/// The MIG profile in a MIG device's name: `NVIDIA H100 80GB HBM3 MIG 1g.10gb` -> `1g.10gb`.
fn mig_profile(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_owned())
}

impl NvmlBackend {
    fn read_gpu(&self, dev: &Device<'_>, cx: &mut Cx<'_>) -> GpuReading {
        const MHZ: f64 = 1e6;
        let mut g = GpuReading {
            index: cx.take("nvmlDeviceGetIndex", dev.index()),
            uuid: cx.take("nvmlDeviceGetUUID", dev.uuid()),
            ..GpuReading::default()
        };
        if cx.lost {
            return g;
        }
        g.name = cx.take("nvmlDeviceGetName", dev.name());
        g.pci_bus_id = cx
            .take("nvmlDeviceGetPciInfo_v3", dev.pci_info())
            .map(|p| p.bus_id);
        g.serial = cx.take("nvmlDeviceGetSerial", dev.serial());
        g.driver_version = self.driver_version.clone();
        g.vbios_version = cx.take("nvmlDeviceGetVbiosVersion", dev.vbios_version());
        g.compute_capability = cx
            .take(
                "nvmlDeviceGetCudaComputeCapability",
                dev.cuda_compute_capability(),
            )
            .map(|c| format!("{}.{}", c.major, c.minor));
        g.compute_mode = cx
            .take("nvmlDeviceGetComputeMode", dev.compute_mode())
            .map(|m| compute_mode_text(m).to_owned());

        g.performance_state = cx
            .take("nvmlDeviceGetPerformanceState", dev.performance_state())
            .and_then(pstate_number);
        g.persistence_mode = cx.take("nvmlDeviceGetPersistenceMode", dev.is_in_persistent_mode());
        g.display_active = cx.take("nvmlDeviceGetDisplayActive", dev.is_display_active());
        if let Some(m) = cx.take("nvmlDeviceGetMigMode", dev.mig_mode()) {
            g.mig_mode_current = Some(m.current == 1);
            g.mig_mode_pending = Some(m.pending == 1);
        }
        if let Some(e) = cx.take("nvmlDeviceGetEccMode", dev.is_ecc_enabled()) {
            g.ecc_mode_current = Some(e.currently_enabled);
            g.ecc_mode_pending = Some(e.pending_enabled);
        }

        g.temperature_celsius = cx
            .take(
                "nvmlDeviceGetTemperature",
                dev.temperature(TemperatureSensor::Gpu),
            )
            .map(f);
        g.temperature_slowdown_threshold_celsius = cx
            .take(
                "nvmlDeviceGetTemperatureThreshold",
                dev.temperature_threshold(TemperatureThreshold::Slowdown),
            )
            .map(f);
        g.temperature_shutdown_threshold_celsius = cx
            .take(
                "nvmlDeviceGetTemperatureThreshold",
                dev.temperature_threshold(TemperatureThreshold::Shutdown),
            )
            .map(f);
        g.slowdown_margin_celsius = cx
            .take(
                "nvmlDeviceGetMarginTemperature",
                raw::margin_temperature(&self.nvml, dev),
            )
            .map(f);

        let fields = [FI_MEMORY_TEMP, FI_POWER_AVERAGE, FI_POWER_INSTANT].map(FieldId);
        if let Some(values) = cx.take("nvmlDeviceGetFieldValues", dev.field_values_for(&fields)) {
            let mut at = |k: usize| -> Option<f64> {
                let value = match values.get(k)? {
                    Ok(sample) => sample.value.as_ref().map_err(clone_error),
                    Err(e) => Err(clone_error(e)),
                };
                cx.take_field(fields[k].0, value.map(sample_value))
            };
            g.memory_temperature_celsius = at(0);
            g.power_draw_average_watts = at(1).map(|mw| mw / 1000.0);
            g.power_draw_instant_watts = at(2).map(|mw| mw / 1000.0);
        }

        let watts = |mw: u32| f64::from(mw) / 1000.0;
        g.power_draw_watts = cx
            .take("nvmlDeviceGetPowerUsage", dev.power_usage())
            .map(watts);
        g.power_limit_watts = cx
            .take(
                "nvmlDeviceGetPowerManagementLimit",
                dev.power_management_limit(),
            )
            .map(watts);
        g.enforced_power_limit_watts = cx
            .take(
                "nvmlDeviceGetEnforcedPowerLimit",
                dev.enforced_power_limit(),
            )
            .map(watts);
        g.default_power_limit_watts = cx
            .take(
                "nvmlDeviceGetPowerManagementDefaultLimit",
                dev.power_management_limit_default(),
            )
            .map(watts);
        if let Some(c) = cx.take(
            "nvmlDeviceGetPowerManagementLimitConstraints",
            dev.power_management_limit_constraints(),
        ) {
            g.min_power_limit_watts = Some(watts(c.min_limit));
            g.max_power_limit_watts = Some(watts(c.max_limit));
        }
        g.energy_consumed_joules = cx
            .take(
                "nvmlDeviceGetTotalEnergyConsumption",
                dev.total_energy_consumption(),
            )
            .map(|mj| mj as f64 / 1000.0);

        if let Some(m) = self.memory(dev, cx) {
            g.memory_total_bytes = Some(m.total as f64);
            g.memory_reserved_bytes = m.reserved.map(|r| r as f64);
            g.memory_used_bytes = Some(m.used as f64);
            g.memory_free_bytes = Some(m.free as f64);
        }

        if let Some(u) = cx.take("nvmlDeviceGetUtilizationRates", dev.utilization_rates()) {
            g.utilization_gpu_percent = Some(f(u.gpu));
            g.utilization_memory_percent = Some(f(u.memory));
        }
        g.utilization_encoder_percent = cx
            .take("nvmlDeviceGetEncoderUtilization", dev.encoder_utilization())
            .map(|u| f(u.utilization));
        g.utilization_decoder_percent = cx
            .take("nvmlDeviceGetDecoderUtilization", dev.decoder_utilization())
            .map(|u| f(u.utilization));
        g.utilization_jpeg_percent = cx
            .take(
                "nvmlDeviceGetJpgUtilization",
                raw::jpg_utilization(&self.nvml, dev),
            )
            .map(f);
        g.utilization_ofa_percent = cx
            .take(
                "nvmlDeviceGetOfaUtilization",
                raw::ofa_utilization(&self.nvml, dev),
            )
            .map(f);
        if let Some(s) = cx.take("nvmlDeviceGetEncoderStats", dev.encoder_stats()) {
            g.encoder_sessions = Some(f(s.session_count));
            g.encoder_average_fps = Some(f(s.average_fps));
            g.encoder_average_latency_seconds = Some(f(s.average_latency) * 1e-6);
        }

        let clock = |cx: &mut Cx<'_>, c: Clock| {
            cx.take("nvmlDeviceGetClockInfo", dev.clock_info(c))
                .map(|m| f(m) * MHZ)
        };
        g.clock_graphics_hz = clock(cx, Clock::Graphics);
        g.clock_sm_hz = clock(cx, Clock::SM);
        g.clock_memory_hz = clock(cx, Clock::Memory);
        g.clock_video_hz = clock(cx, Clock::Video);
        let max_clock = |cx: &mut Cx<'_>, c: Clock| {
            cx.take("nvmlDeviceGetMaxClockInfo", dev.max_clock_info(c))
                .map(|m| f(m) * MHZ)
        };
        g.clock_max_graphics_hz = max_clock(cx, Clock::Graphics);
        g.clock_max_sm_hz = max_clock(cx, Clock::SM);
        g.clock_max_memory_hz = max_clock(cx, Clock::Memory);

        let fans = cx.take("nvmlDeviceGetNumFans", dev.num_fans()).unwrap_or(0);
        for fan in 0..fans {
            match cx.take("nvmlDeviceGetFanSpeed_v2", dev.fan_speed(fan)) {
                Some(s) => g.fan_speeds_percent.push(f(s)),
                None => break,
            }
        }
        g.fan_speed_percent = g.fan_speeds_percent.first().copied();

        g.pcie_link_gen_current = cx
            .take(
                "nvmlDeviceGetCurrPcieLinkGeneration",
                dev.current_pcie_link_gen(),
            )
            .map(f);
        g.pcie_link_gen_max = cx
            .take(
                "nvmlDeviceGetMaxPcieLinkGeneration",
                dev.max_pcie_link_gen(),
            )
            .map(f);
        g.pcie_link_width_current = cx
            .take(
                "nvmlDeviceGetCurrPcieLinkWidth",
                dev.current_pcie_link_width(),
            )
            .map(f);
        g.pcie_link_width_max = cx
            .take("nvmlDeviceGetMaxPcieLinkWidth", dev.max_pcie_link_width())
            .map(f);
        let kbps = |v: u32| f64::from(v) * 1024.0;
        g.pcie_rx_bytes_per_second = cx
            .take(
                "nvmlDeviceGetPcieThroughput",
                dev.pcie_throughput(PcieUtilCounter::Receive),
            )
            .map(kbps);
        g.pcie_tx_bytes_per_second = cx
            .take(
                "nvmlDeviceGetPcieThroughput",
                dev.pcie_throughput(PcieUtilCounter::Send),
            )
            .map(kbps);
        g.pcie_replays = cx
            .take("nvmlDeviceGetPcieReplayCounter", dev.pcie_replay_counter())
            .map(f);

        g.clock_events.supported_mask = cx
            .take(
                "nvmlDeviceGetSupportedClocksThrottleReasons",
                dev.supported_throttle_reasons(),
            )
            .map(|r| r.bits());
        g.clock_events.active_mask = cx
            .take(
                "nvmlDeviceGetCurrentClocksThrottleReasons",
                dev.current_throttle_reasons(),
            )
            .map(|r| r.bits());

        let ecc = |cx: &mut Cx<'_>, e: MemoryError, c: EccCounter| {
            cx.take("nvmlDeviceGetTotalEccErrors", dev.total_ecc_errors(e, c))
                .map(|n| n as f64)
        };
        g.ecc_corrected_volatile_total = ecc(cx, MemoryError::Corrected, EccCounter::Volatile);
        g.ecc_corrected_aggregate_total = ecc(cx, MemoryError::Corrected, EccCounter::Aggregate);
        g.ecc_uncorrected_volatile_total = ecc(cx, MemoryError::Uncorrected, EccCounter::Volatile);
        g.ecc_uncorrected_aggregate_total =
            ecc(cx, MemoryError::Uncorrected, EccCounter::Aggregate);
        g.retired_pages_single_bit = cx
            .take(
                "nvmlDeviceGetRetiredPages",
                raw::retired_page_count(&self.nvml, dev, raw::CAUSE_MULTIPLE_SINGLE_BIT),
            )
            .map(f);
        g.retired_pages_double_bit = cx
            .take(
                "nvmlDeviceGetRetiredPages",
                raw::retired_page_count(&self.nvml, dev, raw::CAUSE_DOUBLE_BIT),
            )
            .map(f);
        g.retired_pages_pending = cx.take(
            "nvmlDeviceGetRetiredPagesPendingStatus",
            dev.are_pages_pending_retired(),
        );
        if let Some(r) = cx.take(
            "nvmlDeviceGetRemappedRows",
            raw::remapped_rows(&self.nvml, dev),
        ) {
            g.remapped_rows_correctable = Some(f(r.correctable));
            g.remapped_rows_uncorrectable = Some(f(r.uncorrectable));
            g.remapped_rows_pending = Some(r.pending);
            g.remapped_rows_failure = Some(r.failure);
        }
        g
    }

    /// Framebuffer memory: `nvmlDeviceGetMemoryInfo_v2` (with the reserved amount), or on a
    /// library without it the original call (no reserved amount).
    fn memory(&self, dev: &Device<'_>, cx: &mut Cx<'_>) -> Option<raw::Memory> {
        match dev.memory_info() {
            Ok(m) => Some(raw::Memory {
                total: m.total,
                reserved: Some(m.reserved),
                used: m.used,
                free: m.free,
            }),
            Err(e @ (NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound)) => {
                cx.take::<()>("nvmlDeviceGetMemoryInfo_v2", Err(e));
                cx.take("nvmlDeviceGetMemoryInfo", raw::memory_v1(&self.nvml, dev))
            }
            Err(e) => cx.take("nvmlDeviceGetMemoryInfo_v2", Err(e)),
        }
    }

    fn read_processes(
        &self,
        dev: &Device<'_>,
        g: &GpuReading,
        cx: &mut Cx<'_>,
    ) -> Vec<ProcessReading> {
        if cx.lost {
            return Vec::new();
        }
        let Some(list) = cx.take(
            "nvmlDeviceGetComputeRunningProcesses_v3",
            dev.running_compute_processes(),
        ) else {
            return Vec::new();
        };
        list.into_iter()
            .map(|p| ProcessReading {
                pid: p.pid,
                // Not found (the process ended) or not allowed: the collector falls back to
                // /proc/<pid>/comm, so this is not worth a problem.
                process_name: self.nvml.sys_process_name(p.pid, 1024).ok(),
                used_memory_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b as f64),
                    UsedGpuMemory::Unavailable => None,
                },
                gpu_uuid: g.uuid.clone(),
                gpu_pci_bus_id: g.pci_bus_id.clone(),
            })
            .collect()
    }

    fn read_mig_devices(
        &self,
        dev: &Device<'_>,
        g: &GpuReading,
        cx: &mut Cx<'_>,
    ) -> Vec<MigDeviceReading> {
        let mut out = Vec::new();
        if cx.lost {
            return out;
        }
        let (Some(gpu_index), Some(gpu_uuid)) = (g.index, g.uuid.clone()) else {
            return out;
        };
        let max = cx
            .take("nvmlDeviceGetMaxMigDeviceCount", dev.mig_device_count())
            .unwrap_or(0);
        let gpu_label = std::mem::take(&mut cx.gpu);
        for k in 0..max {
            let mig = match dev.mig_device_by_index(k) {
                Ok(m) => m,
                // An empty slot.
                Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
                Err(e) => {
                    cx.gpu = gpu_label.clone();
                    cx.take::<()>("nvmlDeviceGetMigDeviceHandleByIndex", Err(e));
                    continue;
                }
            };
            cx.gpu = format!("{gpu_label} mig {k}");
            let Some(uuid) = cx.take("nvmlDeviceGetUUID", mig.uuid()) else {
                continue;
            };
            let memory = self.memory(&mig, cx);
            out.push(MigDeviceReading {
                gpu_index,
                gpu_uuid: gpu_uuid.clone(),
                uuid,
                gpu_instance_id: cx.take(
                    "nvmlDeviceGetGpuInstanceId",
                    raw::gpu_instance_id(&self.nvml, &mig),
                ),
                compute_instance_id: cx.take(
                    "nvmlDeviceGetComputeInstanceId",
                    raw::compute_instance_id(&self.nvml, &mig),
                ),
                profile: cx
                    .take("nvmlDeviceGetName", mig.name())
                    .and_then(|n| mig_profile(&n)),
                memory_used_bytes: memory.as_ref().map(|m| m.used as f64),
                memory_total_bytes: memory.as_ref().map(|m| m.total as f64),
            });
        }
        cx.gpu = gpu_label;
        out
    }

    /// Count the critical XID events that arrived since the last read (never waits).
    fn drain_events(&self, state: &mut State, problems: &mut Vec<String>) {
        let Some(set) = state.events.as_ref() else {
            return;
        };
        // Bounded, in case a flood of events arrives faster than it drains.
        for _ in 0..10_000 {
            match raw::event_wait(&self.nvml, set) {
                Ok(Some(ev)) => {
                    if ev.event_type & raw::EVENT_XID_CRITICAL == 0 {
                        continue;
                    }
                    let Some(&gpu) = state.registered.get(&ev.device) else {
                        continue;
                    };
                    *state
                        .xid
                        .entry(gpu)
                        .or_default()
                        .entry(ev.data)
                        .or_insert(0) += 1;
                    state.last_xid.insert(gpu, ev.data);
                }
                Ok(None) => break,
                Err(e) => {
                    problems.push(format!("nvmlEventSetWait_v2: {e}"));
                    break;
                }
            }
        }
    }
}

/// `NvmlError` is not `Clone`; rebuild the variants a field value can carry.
fn clone_error(e: &NvmlError) -> NvmlError {
    match e {
        NvmlError::NotSupported => NvmlError::NotSupported,
        NvmlError::GpuLost => NvmlError::GpuLost,
        NvmlError::NoPermission => NvmlError::NoPermission,
        NvmlError::NotFound => NvmlError::NotFound,
        NvmlError::InvalidArg => NvmlError::InvalidArg,
        NvmlError::NoData => NvmlError::NoData,
        NvmlError::UnexpectedVariant(v) => NvmlError::UnexpectedVariant(*v),
        NvmlError::FailedToLoadSymbol(s) => NvmlError::FailedToLoadSymbol(s.clone()),
        _ => NvmlError::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions() {
        assert_eq!(cuda_version_text(13010), "13.1");
        assert_eq!(cuda_version_text(12020), "12.2");
        assert_eq!(cuda_version_text(11080), "11.8");
    }

    #[test]
    fn mig_profiles_from_names() {
        assert_eq!(
            mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb").as_deref(),
            Some("1g.10gb")
        );
        assert_eq!(mig_profile("MIG 3g.40gb").as_deref(), Some("3g.40gb"));
        assert_eq!(mig_profile("NVIDIA L40S"), None);
        assert_eq!(mig_profile("NVIDIA MIG "), None);
    }

    #[test]
    fn pstates_and_compute_modes() {
        assert_eq!(pstate_number(PerformanceState::Zero), Some(0));
        assert_eq!(pstate_number(PerformanceState::Eight), Some(8));
        assert_eq!(pstate_number(PerformanceState::Unknown), None);
        assert_eq!(
            compute_mode_text(ComputeMode::ExclusiveProcess),
            "Exclusive_Process"
        );
    }

    #[test]
    fn missing_symbol_is_reported_once_and_lost_gpu_is_flagged() {
        let mut problems = Vec::new();
        let mut missing = BTreeSet::new();
        let mut cx = Cx {
            gpu: "0".into(),
            problems: &mut problems,
            missing: &mut missing,
            lost: false,
        };
        let gone = || Err::<u32, _>(NvmlError::FailedToLoadSymbol("undefined symbol".into()));
        assert_eq!(cx.take("nvmlDeviceGetX", gone()), None);
        assert_eq!(cx.take("nvmlDeviceGetX", gone()), None);
        assert_eq!(
            cx.take("nvmlDeviceGetY", Err(NvmlError::NotSupported)),
            None::<u32>
        );
        assert_eq!(
            cx.take("nvmlDeviceGetZ", Err(NvmlError::NoPermission)),
            None::<u32>
        );
        assert!(!cx.lost);
        assert_eq!(
            cx.take("nvmlDeviceGetW", Err(NvmlError::GpuLost)),
            None::<u32>
        );
        assert!(cx.lost);
        assert_eq!(cx.take("nvmlDeviceGetV", Ok(7u32)), Some(7));
        assert_eq!(cx.take_field(185, Err(NvmlError::InvalidArg)), None);
        assert_eq!(
            cx.take_field(185, Err(NvmlError::UnexpectedVariant(5))),
            None
        );
        assert_eq!(cx.take_field(82, Err(NvmlError::NotSupported)), None);
        assert_eq!(cx.take_field(82, Ok(41.0)), Some(41.0));
        assert_eq!(
            problems,
            vec![
                "nvmlDeviceGetX: not in this driver's NVML library; its values are absent"
                    .to_owned(),
                "gpu 0: nvmlDeviceGetZ: the current user does not have permission to perform \
                 this operation"
                    .to_owned(),
                "nvmlDeviceGetFieldValues(field 185): not known to this driver; its value is \
                 absent"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn init_errors_are_one_line() {
        for e in [
            NvmlError::LibRmVersionMismatch,
            NvmlError::NoPermission,
            NvmlError::DriverNotLoaded,
            NvmlError::Unknown,
        ] {
            let line = init_error("/x/libnvidia-ml.so.1", &e);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("NVML init failed: "), "{line}");
        }
        assert!(init_error("p", &NvmlError::LibRmVersionMismatch)
            .contains("driver/library version mismatch"));
        assert!(init_error("p", &NvmlError::NoPermission).contains("insufficient permissions"));
    }
}
