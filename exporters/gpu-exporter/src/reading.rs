//! What one reading of one GPU holds, independent of the backend that produced it.
//!
//! The nvidia-smi backend fills these from `--query-gpu` / `--query-compute-apps` CSV; the NVML
//! backend (not written yet, issue 3) is meant to fill the same structs, so the two can be
//! compared value for value on the same capture.
//!
//! Every measured value is an `Option`: `None` means the source did not say (`[N/A]`,
//! `[Not Supported]`, a permission error, a field the driver does not know). `None` becomes an
//! absent series, never a 0. Values are in base units (bytes, watts, hertz, seconds, celsius)
//! except utilization and fan speed, which stay in percent (0-100) as the driver reports them,
//! because Hydra's `nvidia_gpu_utilization_percent` is in percent.

/// One GPU at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    // --- identity ---
    /// nvidia-smi / NVML index (the `gpu` label).
    pub index: Option<u32>,
    /// `GPU-xxxxxxxx-...` (the `uuid` label).
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// `00000000:0C:00.0` as nvidia-smi prints it (8-digit domain).
    pub pci_bus_id: Option<String>,
    pub serial: Option<String>,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    /// `8.9`
    pub compute_capability: Option<String>,
    /// `Default`, `Exclusive_Process`, `Prohibited`.
    pub compute_mode: Option<String>,

    // --- modes ---
    /// Performance state number: 0 for `P0` (fastest) to 15.
    pub performance_state: Option<u8>,
    pub persistence_mode: Option<bool>,
    pub display_active: Option<bool>,
    pub mig_mode_current: Option<bool>,
    pub mig_mode_pending: Option<bool>,
    pub ecc_mode_current: Option<bool>,
    pub ecc_mode_pending: Option<bool>,

    // --- thermals (celsius) ---
    pub temperature_celsius: Option<f64>,
    pub memory_temperature_celsius: Option<f64>,
    /// `temperature.gpu.tlimit`: degrees left before the GPU starts slowing down (can be
    /// negative on some boards, see `-q` "GPU Slowdown T.Limit Temp").
    pub slowdown_margin_celsius: Option<f64>,

    // --- power (watts) ---
    /// `power.draw`: what nvidia-smi shows by default (on newer drivers the 1 s average).
    pub power_draw_watts: Option<f64>,
    pub power_draw_average_watts: Option<f64>,
    pub power_draw_instant_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub enforced_power_limit_watts: Option<f64>,
    pub default_power_limit_watts: Option<f64>,
    pub min_power_limit_watts: Option<f64>,
    pub max_power_limit_watts: Option<f64>,

    // --- framebuffer memory (bytes) ---
    pub memory_total_bytes: Option<f64>,
    pub memory_reserved_bytes: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_free_bytes: Option<f64>,

    // --- utilization (percent, 0-100) ---
    pub utilization_gpu_percent: Option<f64>,
    pub utilization_memory_percent: Option<f64>,
    pub utilization_encoder_percent: Option<f64>,
    pub utilization_decoder_percent: Option<f64>,
    pub utilization_jpeg_percent: Option<f64>,
    pub utilization_ofa_percent: Option<f64>,

    // --- encoder sessions ---
    pub encoder_sessions: Option<f64>,
    pub encoder_average_fps: Option<f64>,
    /// Microseconds as nvidia-smi reports it, converted to seconds.
    pub encoder_average_latency_seconds: Option<f64>,

    // --- clocks (hertz) ---
    pub clock_graphics_hz: Option<f64>,
    pub clock_sm_hz: Option<f64>,
    pub clock_memory_hz: Option<f64>,
    pub clock_video_hz: Option<f64>,
    pub clock_max_graphics_hz: Option<f64>,
    pub clock_max_sm_hz: Option<f64>,
    pub clock_max_memory_hz: Option<f64>,

    // --- fan (percent of maximum; nvidia-smi's query gives only the first fan) ---
    pub fan_speed_percent: Option<f64>,

    // --- PCIe ---
    pub pcie_link_gen_current: Option<f64>,
    pub pcie_link_gen_max: Option<f64>,
    pub pcie_link_width_current: Option<f64>,
    pub pcie_link_width_max: Option<f64>,

    // --- clock event ("throttle") reasons ---
    pub clock_events: ClockEvents,

    // --- ECC and memory health ---
    pub ecc_corrected_volatile_total: Option<f64>,
    pub ecc_corrected_aggregate_total: Option<f64>,
    pub ecc_uncorrected_volatile_total: Option<f64>,
    pub ecc_uncorrected_aggregate_total: Option<f64>,
    pub retired_pages_single_bit: Option<f64>,
    pub retired_pages_double_bit: Option<f64>,
    pub retired_pages_pending: Option<bool>,
    pub remapped_rows_correctable: Option<f64>,
    pub remapped_rows_uncorrectable: Option<f64>,
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,

    // --- NVML only (nvidia-smi's --query-gpu has no field for these; None there) ---
    /// Energy consumed since the driver loaded (`nvmlDeviceGetTotalEnergyConsumption`, mJ/1000).
    pub energy_consumed_joules: Option<f64>,
    /// `NVML_TEMPERATURE_THRESHOLD_SLOWDOWN`.
    pub temperature_slowdown_threshold_celsius: Option<f64>,
    /// `NVML_TEMPERATURE_THRESHOLD_SHUTDOWN`.
    pub temperature_shutdown_threshold_celsius: Option<f64>,
    /// Every fan's speed in percent, by fan index (NVML: `nvmlDeviceGetFanSpeed_v2`).
    /// nvidia-smi fills only `fan_speed_percent` (its first fan).
    pub fan_speeds_percent: Vec<f64>,
    /// `nvmlDeviceGetPcieThroughput`, bytes per second over the driver's ~20 ms window.
    pub pcie_rx_bytes_per_second: Option<f64>,
    pub pcie_tx_bytes_per_second: Option<f64>,
    /// `nvmlDeviceGetPcieReplayCounter` (a counter).
    pub pcie_replays: Option<f64>,
    /// XID errors seen since the exporter started, by XID code (NVML events; counters).
    pub xid_errors: std::collections::BTreeMap<u64, u64>,
    /// Code of the last XID error seen since the exporter started (dcgm-exporter's
    /// `DCGM_FI_DEV_XID_ERRORS`); None before the first one.
    pub last_xid: Option<u64>,
}

/// One MIG device (GPU instance + compute instance) of a MIG-enabled GPU (NVML only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigDeviceReading {
    /// Index of the parent GPU (its `gpu` label).
    pub gpu_index: u32,
    pub gpu_uuid: String,
    /// `MIG-xxxxxxxx-...`
    pub uuid: String,
    pub gpu_instance_id: Option<u32>,
    pub compute_instance_id: Option<u32>,
    /// Profile name, e.g. `1g.10gb`.
    pub profile: Option<String>,
    pub memory_used_bytes: Option<f64>,
    pub memory_total_bytes: Option<f64>,
}

/// Everything one backend read in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub gpus: Vec<GpuReading>,
    pub processes: Vec<ProcessReading>,
    pub mig_devices: Vec<MigDeviceReading>,
    /// CUDA driver version (`13.1`), where the backend can tell.
    pub cuda_version: Option<String>,
    /// Per-item problems (a row skipped, one GPU lost, a call NotSupported that was expected to
    /// work): reported through `Sink::item_error`, never fatal.
    pub problems: Vec<String>,
}

/// A source of GPU readings: NVML or nvidia-smi. `read` is called from a background collector
/// thread; it must return within `timeout` (the nvidia-smi runner kills its child), and
/// returns `Err` only when nothing could be read at all.
pub trait Backend: Send + Sync {
    /// `nvml` or `nvidia-smi`: the `backend` label of `nvidia_gpu_backend_info`.
    fn name(&self) -> &'static str;
    fn read(&self, timeout: std::time::Duration) -> anyhow::Result<Snapshot>;
    /// The exporter is stopping: make a `read` in progress return at once (the nvidia-smi
    /// backend kills its command) and later ones fail at once. Default: nothing to stop.
    fn stop(&self) {}
}

/// Why the clocks are below their maximum. nvidia-smi calls these `clocks_event_reasons.*`
/// since driver 535 and `clocks_throttle_reasons.*` before; NVML calls them "clocks event
/// reasons" / "clocks throttle reasons". One concept, one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClockEventReason {
    GpuIdle,
    ApplicationsClocksSetting,
    SwPowerCap,
    HwSlowdown,
    SyncBoost,
    SwThermalSlowdown,
    HwThermalSlowdown,
    HwPowerBrakeSlowdown,
    DisplayClockSetting,
}

impl ClockEventReason {
    pub const ALL: [ClockEventReason; 9] = [
        ClockEventReason::GpuIdle,
        ClockEventReason::ApplicationsClocksSetting,
        ClockEventReason::SwPowerCap,
        ClockEventReason::HwSlowdown,
        ClockEventReason::SyncBoost,
        ClockEventReason::SwThermalSlowdown,
        ClockEventReason::HwThermalSlowdown,
        ClockEventReason::HwPowerBrakeSlowdown,
        ClockEventReason::DisplayClockSetting,
    ];

    /// The bit of this reason in the `supported` / `active` masks (NVML's
    /// `nvmlClocksEventReason*` constants, which nvidia-smi prints as hex).
    pub fn bit(self) -> u64 {
        match self {
            ClockEventReason::GpuIdle => 0x1,
            ClockEventReason::ApplicationsClocksSetting => 0x2,
            ClockEventReason::SwPowerCap => 0x4,
            ClockEventReason::HwSlowdown => 0x8,
            ClockEventReason::SyncBoost => 0x10,
            ClockEventReason::SwThermalSlowdown => 0x20,
            ClockEventReason::HwThermalSlowdown => 0x40,
            ClockEventReason::HwPowerBrakeSlowdown => 0x80,
            ClockEventReason::DisplayClockSetting => 0x100,
        }
    }

    /// The suffix nvidia-smi uses after `clocks_event_reasons.` (and `..._counters.`); also the
    /// `reason` label value we propose.
    pub fn key(self) -> &'static str {
        match self {
            ClockEventReason::GpuIdle => "gpu_idle",
            ClockEventReason::ApplicationsClocksSetting => "applications_clocks_setting",
            ClockEventReason::SwPowerCap => "sw_power_cap",
            ClockEventReason::HwSlowdown => "hw_slowdown",
            ClockEventReason::SyncBoost => "sync_boost",
            ClockEventReason::SwThermalSlowdown => "sw_thermal_slowdown",
            ClockEventReason::HwThermalSlowdown => "hw_thermal_slowdown",
            ClockEventReason::HwPowerBrakeSlowdown => "hw_power_brake_slowdown",
            ClockEventReason::DisplayClockSetting => "display_clock_setting",
        }
    }

    pub fn from_key(key: &str) -> Option<ClockEventReason> {
        ClockEventReason::ALL.into_iter().find(|r| r.key() == key)
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The clock event reasons of one GPU: the two masks, the per-reason flag columns, and the
/// per-reason time counters some drivers keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClockEvents {
    /// Bitmask of reasons this GPU can report.
    pub supported_mask: Option<u64>,
    /// Bitmask of reasons active now.
    pub active_mask: Option<u64>,
    flags: [Option<bool>; 9],
    seconds: [Option<f64>; 9],
}

impl ClockEvents {
    /// The per-reason column (`Active` / `Not Active`) as the source gave it.
    pub fn flag(&self, reason: ClockEventReason) -> Option<bool> {
        self.flags[reason.slot()]
    }

    pub fn set_flag(&mut self, reason: ClockEventReason, value: Option<bool>) {
        self.flags[reason.slot()] = value;
    }

    /// Whether `reason` is active: the explicit flag when the source gave one, else the active
    /// mask, provided the supported mask (when known) says the GPU can report the reason.
    pub fn active(&self, reason: ClockEventReason) -> Option<bool> {
        if let Some(flag) = self.flag(reason) {
            return Some(flag);
        }
        let active = self.active_mask?;
        if let Some(supported) = self.supported_mask {
            if supported & reason.bit() == 0 {
                return None;
            }
        }
        Some(active & reason.bit() != 0)
    }

    /// Time spent with this reason active since the driver loaded, in seconds (a counter),
    /// where the driver counts it.
    pub fn time_seconds(&self, reason: ClockEventReason) -> Option<f64> {
        self.seconds[reason.slot()]
    }

    pub fn set_time_seconds(&mut self, reason: ClockEventReason, value: Option<f64>) {
        self.seconds[reason.slot()] = value;
    }
}

/// One process using a GPU (`--query-compute-apps`, NVML running compute processes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessReading {
    pub pid: u32,
    /// The name the driver gives (often a full path); the collector may prefer `/proc/<pid>/comm`.
    pub process_name: Option<String>,
    pub used_memory_bytes: Option<f64>,
    pub gpu_uuid: Option<String>,
    pub gpu_pci_bus_id: Option<String>,
}

impl GpuReading {
    /// Only the identity of this GPU (index, uuid, name, bus id, serial, versions), every
    /// measured value `None`: what the collector keeps between reads and serves while the GPU
    /// is runtime-suspended and must not be woken up to be measured.
    pub fn identity(&self) -> GpuReading {
        GpuReading {
            index: self.index,
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            pci_bus_id: self.pci_bus_id.clone(),
            serial: self.serial.clone(),
            driver_version: self.driver_version.clone(),
            vbios_version: self.vbios_version.clone(),
            compute_capability: self.compute_capability.clone(),
            ..GpuReading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_keys_round_trip_and_bits_are_distinct() {
        let mut all_bits = 0u64;
        for r in ClockEventReason::ALL {
            assert_eq!(ClockEventReason::from_key(r.key()), Some(r));
            assert_eq!(all_bits & r.bit(), 0, "{r:?} bit reused");
            all_bits |= r.bit();
        }
        // Nine reasons: exactly the 0x1FF "supported" mask the real captures show.
        assert_eq!(all_bits, 0x1FF);
        assert_eq!(ClockEventReason::from_key("nonsense"), None);
    }

    #[test]
    fn active_prefers_flag_then_mask_and_respects_supported() {
        let mut ev = ClockEvents::default();
        assert_eq!(ev.active(ClockEventReason::SwPowerCap), None);
        ev.active_mask = Some(0x4);
        assert_eq!(ev.active(ClockEventReason::SwPowerCap), Some(true));
        assert_eq!(ev.active(ClockEventReason::GpuIdle), Some(false));
        ev.supported_mask = Some(0x0FF);
        assert_eq!(ev.active(ClockEventReason::DisplayClockSetting), None);
        ev.set_flag(ClockEventReason::SwPowerCap, Some(false));
        assert_eq!(ev.active(ClockEventReason::SwPowerCap), Some(false));
        ev.set_time_seconds(ClockEventReason::SyncBoost, Some(1.5));
        assert_eq!(ev.time_seconds(ClockEventReason::SyncBoost), Some(1.5));
        assert_eq!(ev.time_seconds(ClockEventReason::SwPowerCap), None);
    }
}
