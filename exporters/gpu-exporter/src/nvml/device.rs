//! Per-device reads: everything NVML says about one GPU, in the units of [`GpuReading`]
//! (processes and MIG devices are in their own modules). Each `read_*` function fills one
//! group of values; every call goes through the [`ErrorPolicy`].

use nvml_wrapper::enum_wrappers::device::{
    Clock, ComputeMode, EccCounter, MemoryError, PerformanceState, TemperatureSensor,
    TemperatureThreshold,
};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};

use super::errors::{clone_error, ErrorPolicy};
use super::raw;
use crate::reading::{ClockEventReason, GpuReading};

/// `NVML_FI_DEV_MEMORY_TEMP`: HBM temperature, °C.
const FI_MEMORY_TEMP: u32 = 82;
/// `NVML_FI_DEV_POWER_AVERAGE`: power averaged over 1 s, mW.
const FI_POWER_AVERAGE: u32 = 185;
/// `NVML_FI_DEV_POWER_INSTANT`: instantaneous power, mW.
const FI_POWER_INSTANT: u32 = 186;

const HERTZ_PER_MHZ: f64 = 1e6;

/// Milliwatts to watts.
pub(crate) fn watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

/// What does not change while the driver is loaded, and costs the most to ask for again:
/// on an H200 (driver 580.159.04) the three maximum clocks took 5.4 ms of CPU per read, more
/// than all the other per-scrape calls but energy together.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fixed {
    /// graphics, sm, memory (Hz)
    max_clocks: [Option<f64>; 3],
    /// slowdown, shutdown (°C)
    thresholds: [Option<f64>; 2],
}

impl Fixed {
    fn read(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>) -> Fixed {
        let mut max = |clock: Clock| {
            errors
                .value("nvmlDeviceGetMaxClockInfo", dev.max_clock_info(clock))
                .map(|mhz| f64::from(mhz) * HERTZ_PER_MHZ)
        };
        let max_clocks = [max(Clock::Graphics), max(Clock::SM), max(Clock::Memory)];
        let mut threshold = |t: TemperatureThreshold| {
            errors
                .value(
                    "nvmlDeviceGetTemperatureThreshold",
                    dev.temperature_threshold(t),
                )
                .map(f64::from)
        };
        let thresholds = [
            threshold(TemperatureThreshold::Slowdown),
            threshold(TemperatureThreshold::Shutdown),
        ];
        Fixed {
            max_clocks,
            thresholds,
        }
    }

    fn apply(&self, g: &mut GpuReading) {
        [
            g.clock_max_graphics_hz,
            g.clock_max_sm_hz,
            g.clock_max_memory_hz,
        ] = self.max_clocks;
        [
            g.temperature_slowdown_threshold_celsius,
            g.temperature_shutdown_threshold_celsius,
        ] = self.thresholds;
    }
}

/// Everything NVML says about one GPU. `driver_version` is the system's, read once; `fixed`
/// holds the [`Fixed`] values of GPUs already read, by UUID (kept only from a read that
/// reported no problem, so a passing failure is asked again). Stops after index and UUID
/// when the GPU is lost (`errors.gpu_lost`). PCIe throughput is not read here
/// (`super::pcie`).
pub(crate) fn read_gpu(
    nvml: &Nvml,
    dev: &Device<'_>,
    driver_version: Option<String>,
    fixed: &mut std::collections::HashMap<String, Fixed>,
    errors: &mut ErrorPolicy<'_>,
) -> GpuReading {
    let mut g = GpuReading {
        index: errors.value("nvmlDeviceGetIndex", dev.index()),
        uuid: errors.value("nvmlDeviceGetUUID", dev.uuid()),
        ..GpuReading::default()
    };
    if errors.gpu_lost {
        return g;
    }
    match g.uuid.as_ref().and_then(|u| fixed.get(u)) {
        Some(f) => f.apply(&mut g),
        None => {
            let before = errors.problems.len();
            let f = Fixed::read(dev, errors);
            f.apply(&mut g);
            if let (Some(uuid), true) = (&g.uuid, errors.problems.len() == before) {
                if !errors.gpu_lost {
                    fixed.insert(uuid.clone(), f);
                }
            }
        }
    }
    read_identity(dev, driver_version, errors, &mut g);
    read_modes(dev, errors, &mut g);
    read_temperatures(nvml, dev, errors, &mut g);
    read_field_values(dev, errors, &mut g);
    read_power(dev, errors, &mut g);
    if let Some(m) = framebuffer_memory(nvml, dev, errors) {
        g.memory_total_bytes = Some(m.total as f64);
        g.memory_reserved_bytes = m.reserved.map(|r| r as f64);
        g.memory_used_bytes = Some(m.used as f64);
        g.memory_free_bytes = Some(m.free as f64);
    }
    read_utilization(nvml, dev, errors, &mut g);
    read_clocks(dev, errors, &mut g);
    read_fans(dev, errors, &mut g);
    read_pcie(dev, errors, &mut g);
    read_clock_events(dev, errors, &mut g);
    read_memory_health(nvml, dev, errors, &mut g);
    g
}

/// Name, PCI bus id, serial, driver and VBIOS versions, compute capability and mode.
fn read_identity(
    dev: &Device<'_>,
    driver_version: Option<String>,
    errors: &mut ErrorPolicy<'_>,
    g: &mut GpuReading,
) {
    g.name = errors.value("nvmlDeviceGetName", dev.name());
    g.pci_bus_id = errors
        .value("nvmlDeviceGetPciInfo_v3", dev.pci_info())
        .map(|p| p.bus_id);
    g.serial = errors.value("nvmlDeviceGetSerial", dev.serial());
    g.driver_version = driver_version;
    g.vbios_version = errors.value("nvmlDeviceGetVbiosVersion", dev.vbios_version());
    g.compute_capability = errors
        .value(
            "nvmlDeviceGetCudaComputeCapability",
            dev.cuda_compute_capability(),
        )
        .map(|c| format!("{}.{}", c.major, c.minor));
    g.compute_mode = errors
        .value("nvmlDeviceGetComputeMode", dev.compute_mode())
        .map(|m| compute_mode_text(m).to_owned());
}

/// Performance state, persistence mode, display, MIG and ECC modes.
fn read_modes(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    g.performance_state = errors
        .value("nvmlDeviceGetPerformanceState", dev.performance_state())
        .and_then(pstate_number);
    g.persistence_mode = errors.value("nvmlDeviceGetPersistenceMode", dev.is_in_persistent_mode());
    g.display_active = errors.value("nvmlDeviceGetDisplayActive", dev.is_display_active());
    if let Some(m) = errors.value("nvmlDeviceGetMigMode", dev.mig_mode()) {
        g.mig_mode_current = Some(m.current == 1);
        g.mig_mode_pending = Some(m.pending == 1);
    }
    if let Some(e) = errors.value("nvmlDeviceGetEccMode", dev.is_ecc_enabled()) {
        g.ecc_mode_current = Some(e.currently_enabled);
        g.ecc_mode_pending = Some(e.pending_enabled);
    }
}

/// Core temperature and the margin to slowdown (the thresholds are [`Fixed`]).
fn read_temperatures(
    nvml: &Nvml,
    dev: &Device<'_>,
    errors: &mut ErrorPolicy<'_>,
    g: &mut GpuReading,
) {
    g.temperature_celsius = errors
        .value(
            "nvmlDeviceGetTemperature",
            dev.temperature(TemperatureSensor::Gpu),
        )
        .map(f64::from);
    g.slowdown_margin_celsius = errors
        .value(
            "nvmlDeviceGetMarginTemperature",
            raw::margin_temperature(nvml, dev),
        )
        .map(f64::from);
}

/// The clock-event time counters (nanoseconds) as field values, by the canonical (v12)
/// field id that `nvml-wrapper` translates for the driver in use.
pub const CLOCK_EVENT_FIELDS: [(u32, ClockEventReason); 5] = [
    (74, ClockEventReason::SwPowerCap),
    (76, ClockEventReason::SyncBoost),
    (251, ClockEventReason::SwThermalSlowdown),
    (252, ClockEventReason::HwThermalSlowdown),
    (253, ClockEventReason::HwPowerBrakeSlowdown),
];

/// Whether a driver numbers fields 251-255 as 269-273 (580.82 and later; `nvml-wrapper`
/// asks for the new numbers there). For the fake library's data, which speaks as a driver.
pub fn clock_event_fields_renumbered(driver_version: &str) -> bool {
    let mut parts = driver_version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 580 || (major == 580 && minor >= 82)
}

/// The values only `nvmlDeviceGetFieldValues` has: memory temperature, average and
/// instantaneous power, and how long each clock-event reason has held the clocks down. One
/// call for all of them (0.05 ms on an H200).
fn read_field_values(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    let fields = [
        FI_MEMORY_TEMP,
        FI_POWER_AVERAGE,
        FI_POWER_INSTANT,
        CLOCK_EVENT_FIELDS[0].0,
        CLOCK_EVENT_FIELDS[1].0,
        CLOCK_EVENT_FIELDS[2].0,
        CLOCK_EVENT_FIELDS[3].0,
        CLOCK_EVENT_FIELDS[4].0,
    ]
    .map(FieldId);
    let Some(values) = errors.value("nvmlDeviceGetFieldValues", dev.field_values_for(&fields))
    else {
        return;
    };
    let mut field = |k: usize| -> Option<f64> {
        let value = match values.get(k)? {
            Ok(sample) => sample.value.as_ref().map_err(clone_error),
            Err(e) => Err(clone_error(e)),
        };
        errors.field_value(fields[k].0, value.map(as_f64))
    };
    g.memory_temperature_celsius = field(0);
    g.power_draw_average_watts = field(1).map(|mw| mw / 1000.0);
    g.power_draw_instant_watts = field(2).map(|mw| mw / 1000.0);
    for (k, (_, reason)) in CLOCK_EVENT_FIELDS.iter().enumerate() {
        let seconds = field(3 + k).map(|ns| ns / 1e9);
        g.clock_events.set_time_seconds(*reason, seconds);
    }
}

/// Power draw, limits and energy.
fn read_power(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    g.power_draw_watts = errors
        .value("nvmlDeviceGetPowerUsage", dev.power_usage())
        .map(watts);
    g.power_limit_watts = errors
        .value(
            "nvmlDeviceGetPowerManagementLimit",
            dev.power_management_limit(),
        )
        .map(watts);
    g.enforced_power_limit_watts = errors
        .value(
            "nvmlDeviceGetEnforcedPowerLimit",
            dev.enforced_power_limit(),
        )
        .map(watts);
    g.default_power_limit_watts = errors
        .value(
            "nvmlDeviceGetPowerManagementDefaultLimit",
            dev.power_management_limit_default(),
        )
        .map(watts);
    if let Some(c) = errors.value(
        "nvmlDeviceGetPowerManagementLimitConstraints",
        dev.power_management_limit_constraints(),
    ) {
        g.min_power_limit_watts = Some(watts(c.min_limit));
        g.max_power_limit_watts = Some(watts(c.max_limit));
    }
    g.energy_consumed_joules = errors
        .value(
            "nvmlDeviceGetTotalEnergyConsumption",
            dev.total_energy_consumption(),
        )
        .map(|mj| mj as f64 / 1000.0);
}

/// Framebuffer memory: `nvmlDeviceGetMemoryInfo_v2` (with the reserved amount), or on a
/// library without it the original call (no reserved amount). Also used for MIG devices.
pub(crate) fn framebuffer_memory(
    nvml: &Nvml,
    dev: &Device<'_>,
    errors: &mut ErrorPolicy<'_>,
) -> Option<raw::Memory> {
    match dev.memory_info() {
        Ok(m) => Some(raw::Memory {
            total: m.total,
            reserved: Some(m.reserved),
            used: m.used,
            free: m.free,
        }),
        Err(e @ (NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound)) => {
            errors.value::<()>("nvmlDeviceGetMemoryInfo_v2", Err(e));
            errors.value("nvmlDeviceGetMemoryInfo", raw::memory_v1(nvml, dev))
        }
        Err(e) => errors.value("nvmlDeviceGetMemoryInfo_v2", Err(e)),
    }
}

/// Utilization of the GPU and its engines, and the encoder's sessions.
fn read_utilization(
    nvml: &Nvml,
    dev: &Device<'_>,
    errors: &mut ErrorPolicy<'_>,
    g: &mut GpuReading,
) {
    if let Some(u) = errors.value("nvmlDeviceGetUtilizationRates", dev.utilization_rates()) {
        g.utilization_gpu_percent = Some(f64::from(u.gpu));
        g.utilization_memory_percent = Some(f64::from(u.memory));
    }
    g.utilization_encoder_percent = errors
        .value("nvmlDeviceGetEncoderUtilization", dev.encoder_utilization())
        .map(|u| f64::from(u.utilization));
    g.utilization_decoder_percent = errors
        .value("nvmlDeviceGetDecoderUtilization", dev.decoder_utilization())
        .map(|u| f64::from(u.utilization));
    g.utilization_jpeg_percent = errors
        .value(
            "nvmlDeviceGetJpgUtilization",
            raw::jpg_utilization(nvml, dev),
        )
        .map(f64::from);
    g.utilization_ofa_percent = errors
        .value(
            "nvmlDeviceGetOfaUtilization",
            raw::ofa_utilization(nvml, dev),
        )
        .map(f64::from);
    if let Some(s) = errors.value("nvmlDeviceGetEncoderStats", dev.encoder_stats()) {
        g.encoder_sessions = Some(f64::from(s.session_count));
        g.encoder_average_fps = Some(f64::from(s.average_fps));
        g.encoder_average_latency_seconds = Some(f64::from(s.average_latency) * 1e-6);
    }
}

/// Current clocks (the maximum clocks are [`Fixed`]).
fn read_clocks(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    let mut current = |clock: Clock| {
        errors
            .value("nvmlDeviceGetClockInfo", dev.clock_info(clock))
            .map(|mhz| f64::from(mhz) * HERTZ_PER_MHZ)
    };
    g.clock_graphics_hz = current(Clock::Graphics);
    g.clock_sm_hz = current(Clock::SM);
    g.clock_memory_hz = current(Clock::Memory);
    g.clock_video_hz = current(Clock::Video);
}

/// Every fan's speed, in percent; the first is also the GPU's fan speed.
fn read_fans(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    let fans = errors
        .value("nvmlDeviceGetNumFans", dev.num_fans())
        .unwrap_or(0);
    for fan in 0..fans {
        match errors.value("nvmlDeviceGetFanSpeed_v2", dev.fan_speed(fan)) {
            Some(percent) => g.fan_speeds_percent.push(f64::from(percent)),
            None => break,
        }
    }
    g.fan_speed_percent = g.fan_speeds_percent.first().copied();
}

/// PCIe link generation and width, and replays (throughput: `super::pcie`).
fn read_pcie(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    g.pcie_link_gen_current = errors
        .value(
            "nvmlDeviceGetCurrPcieLinkGeneration",
            dev.current_pcie_link_gen(),
        )
        .map(f64::from);
    g.pcie_link_gen_max = errors
        .value(
            "nvmlDeviceGetMaxPcieLinkGeneration",
            dev.max_pcie_link_gen(),
        )
        .map(f64::from);
    g.pcie_link_width_current = errors
        .value(
            "nvmlDeviceGetCurrPcieLinkWidth",
            dev.current_pcie_link_width(),
        )
        .map(f64::from);
    g.pcie_link_width_max = errors
        .value("nvmlDeviceGetMaxPcieLinkWidth", dev.max_pcie_link_width())
        .map(f64::from);
    g.pcie_replays = errors
        .value("nvmlDeviceGetPcieReplayCounter", dev.pcie_replay_counter())
        .map(f64::from);
}

/// Which clock event (throttle) reasons the GPU supports and which hold clocks down now.
fn read_clock_events(dev: &Device<'_>, errors: &mut ErrorPolicy<'_>, g: &mut GpuReading) {
    g.clock_events.supported_mask = errors
        .value(
            "nvmlDeviceGetSupportedClocksThrottleReasons",
            dev.supported_throttle_reasons(),
        )
        .map(|r| r.bits());
    g.clock_events.active_mask = errors
        .value(
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            dev.current_throttle_reasons(),
        )
        .map(|r| r.bits());
}

/// ECC error counts, retired pages and remapped rows.
fn read_memory_health(
    nvml: &Nvml,
    dev: &Device<'_>,
    errors: &mut ErrorPolicy<'_>,
    g: &mut GpuReading,
) {
    let mut ecc = |error: MemoryError, counter: EccCounter| {
        errors
            .value(
                "nvmlDeviceGetTotalEccErrors",
                dev.total_ecc_errors(error, counter),
            )
            .map(|n| n as f64)
    };
    g.ecc_corrected_volatile_total = ecc(MemoryError::Corrected, EccCounter::Volatile);
    g.ecc_corrected_aggregate_total = ecc(MemoryError::Corrected, EccCounter::Aggregate);
    g.ecc_uncorrected_volatile_total = ecc(MemoryError::Uncorrected, EccCounter::Volatile);
    g.ecc_uncorrected_aggregate_total = ecc(MemoryError::Uncorrected, EccCounter::Aggregate);
    g.retired_pages_single_bit = errors
        .value(
            "nvmlDeviceGetRetiredPages",
            raw::retired_page_count(nvml, dev, raw::CAUSE_MULTIPLE_SINGLE_BIT),
        )
        .map(f64::from);
    g.retired_pages_double_bit = errors
        .value(
            "nvmlDeviceGetRetiredPages",
            raw::retired_page_count(nvml, dev, raw::CAUSE_DOUBLE_BIT),
        )
        .map(f64::from);
    g.retired_pages_pending = errors.value(
        "nvmlDeviceGetRetiredPagesPendingStatus",
        dev.are_pages_pending_retired(),
    );
    if let Some(r) = errors.value("nvmlDeviceGetRemappedRows", raw::remapped_rows(nvml, dev)) {
        g.remapped_rows_correctable = Some(f64::from(r.correctable));
        g.remapped_rows_uncorrectable = Some(f64::from(r.uncorrectable));
        g.remapped_rows_pending = Some(r.pending);
        g.remapped_rows_failure = Some(r.failure);
    }
}

/// nvidia-smi's words for the compute mode.
fn compute_mode_text(m: ComputeMode) -> &'static str {
    match m {
        ComputeMode::Default => "Default",
        ComputeMode::ExclusiveThread => "Exclusive_Thread",
        ComputeMode::Prohibited => "Prohibited",
        ComputeMode::ExclusiveProcess => "Exclusive_Process",
    }
}

/// `P0`..`P15` as 0..15; `None` when unknown.
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

/// A field value as a number, whatever its type.
fn as_f64(v: &SampleValue) -> f64 {
    match *v {
        SampleValue::F64(x) => x,
        SampleValue::U32(x) => f64::from(x),
        SampleValue::U64(x) => x as f64,
        SampleValue::I64(x) => x as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
