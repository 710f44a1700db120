//! The nvidia-smi parser on the five real captures, idle and under load.
//!
//! Every expected value below was read off the capture files by hand (the `--query-gpu` CSV
//! sections), then converted to base units: MiB x 1048576, MHz x 1e6, us x 1e-6. `None` where
//! the capture says `[N/A]`, `N/A` or another no-value token.

use gpu_exporter::nvidia_smi::parse::{
    parse_compute_apps, parse_query_gpu, FieldCatalog, GPU_FIELDS,
};
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::reading::{ClockEventReason, GpuReading};
use gpu_exporter::testing::capture::{Capture, Phase, CAPTURES};

const MIB: f64 = 1024.0 * 1024.0;
const MASKED_UUID: &str = "GPU-00000000-0000-0000-0000-000000000000";

fn mib(x: f64) -> Option<f64> {
    Some(x * MIB)
}
fn mhz(x: f64) -> Option<f64> {
    Some(x * 1e6)
}
fn microseconds(x: f64) -> Option<f64> {
    Some(x * 1e-6)
}

/// What one GPU row of one capture section says.
struct Expect {
    name: &'static str,
    bus_id: &'static str,
    driver: &'static str,
    vbios: &'static str,
    compute_cap: &'static str,
    serial: Option<&'static str>,
    pstate: u8,
    persistence: bool,
    display_active: bool,
    temp: f64,
    mem_temp: Option<f64>,
    tlimit: Option<f64>,
    /// draw, average, instant
    power: (f64, Option<f64>, f64),
    /// limit (= enforced = default), min, max
    limits: (f64, f64, f64),
    /// total, reserved, used, free (MiB)
    memory: (f64, f64, f64, f64),
    /// gpu, memory, encoder, decoder (all four absent on the MIG GPU)
    util: Option<(f64, f64, f64, f64)>,
    /// graphics, sm, memory, video (MHz)
    clocks: (f64, f64, f64, f64),
    /// max graphics, sm, memory (MHz)
    max_clocks: (f64, f64, f64),
    fan: Option<f64>,
    pcie: (f64, f64, f64, f64),
    active_mask: u64,
    /// the reasons whose flag column says `Active`
    active: &'static [ClockEventReason],
    /// clocks_event_reasons_counters.sw_power_cap in us (the other counters are all 0)
    sw_power_cap_us: f64,
    ecc_enabled: Option<bool>,
    /// ECC error totals, all 0 where the GPU has ECC
    ecc_zero: bool,
    mig: Option<bool>,
    /// correctable, uncorrectable, pending, failure: Some((0, 0, false, false)) or all absent
    remapped: bool,
    /// sessions, average fps, average latency (us)
    encoder: (f64, f64, f64),
}

fn check(file: &str, phase: Phase, g: &GpuReading, e: &Expect) {
    let at = format!("{file} {phase:?}");
    let close = |what: &str, got: Option<f64>, want: Option<f64>| match (got, want) {
        (Some(a), Some(b)) => {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{at}: {what}: got {a}, want {b}"
            )
        }
        (a, b) => assert_eq!(a, b, "{at}: {what}"),
    };
    assert_eq!(g.index, Some(0), "{at}");
    assert_eq!(g.uuid.as_deref(), Some(MASKED_UUID), "{at}");
    assert_eq!(g.name.as_deref(), Some(e.name), "{at}");
    assert_eq!(g.pci_bus_id.as_deref(), Some(e.bus_id), "{at}");
    assert_eq!(g.driver_version.as_deref(), Some(e.driver), "{at}");
    assert_eq!(g.vbios_version.as_deref(), Some(e.vbios), "{at}");
    assert_eq!(g.compute_capability.as_deref(), Some(e.compute_cap), "{at}");
    assert_eq!(g.compute_mode.as_deref(), Some("Default"), "{at}");
    assert_eq!(g.serial.as_deref(), e.serial, "{at}");
    assert_eq!(g.performance_state, Some(e.pstate), "{at}");
    assert_eq!(g.persistence_mode, Some(e.persistence), "{at}");
    assert_eq!(g.display_active, Some(e.display_active), "{at}");

    close("temperature", g.temperature_celsius, Some(e.temp));
    close(
        "memory temperature",
        g.memory_temperature_celsius,
        e.mem_temp,
    );
    close("tlimit", g.slowdown_margin_celsius, e.tlimit);

    close("power.draw", g.power_draw_watts, Some(e.power.0));
    close("power.draw.average", g.power_draw_average_watts, e.power.1);
    close(
        "power.draw.instant",
        g.power_draw_instant_watts,
        Some(e.power.2),
    );
    close("power.limit", g.power_limit_watts, Some(e.limits.0));
    close(
        "enforced.power.limit",
        g.enforced_power_limit_watts,
        Some(e.limits.0),
    );
    close(
        "power.default_limit",
        g.default_power_limit_watts,
        Some(e.limits.0),
    );
    close("power.min_limit", g.min_power_limit_watts, Some(e.limits.1));
    close("power.max_limit", g.max_power_limit_watts, Some(e.limits.2));

    close("memory.total", g.memory_total_bytes, mib(e.memory.0));
    close("memory.reserved", g.memory_reserved_bytes, mib(e.memory.1));
    close("memory.used", g.memory_used_bytes, mib(e.memory.2));
    close("memory.free", g.memory_free_bytes, mib(e.memory.3));

    let u = e.util;
    close("utilization.gpu", g.utilization_gpu_percent, u.map(|u| u.0));
    close(
        "utilization.memory",
        g.utilization_memory_percent,
        u.map(|u| u.1),
    );
    close(
        "utilization.encoder",
        g.utilization_encoder_percent,
        u.map(|u| u.2),
    );
    close(
        "utilization.decoder",
        g.utilization_decoder_percent,
        u.map(|u| u.3),
    );
    close(
        "utilization.jpeg",
        g.utilization_jpeg_percent,
        u.map(|_| 0.0),
    );
    close("utilization.ofa", g.utilization_ofa_percent, u.map(|_| 0.0));

    close(
        "clocks.current.graphics",
        g.clock_graphics_hz,
        mhz(e.clocks.0),
    );
    close("clocks.current.sm", g.clock_sm_hz, mhz(e.clocks.1));
    close("clocks.current.memory", g.clock_memory_hz, mhz(e.clocks.2));
    close("clocks.current.video", g.clock_video_hz, mhz(e.clocks.3));
    close(
        "clocks.max.graphics",
        g.clock_max_graphics_hz,
        mhz(e.max_clocks.0),
    );
    close("clocks.max.sm", g.clock_max_sm_hz, mhz(e.max_clocks.1));
    close(
        "clocks.max.memory",
        g.clock_max_memory_hz,
        mhz(e.max_clocks.2),
    );

    close("fan.speed", g.fan_speed_percent, e.fan);
    close(
        "pcie.link.gen.current",
        g.pcie_link_gen_current,
        Some(e.pcie.0),
    );
    close("pcie.link.gen.max", g.pcie_link_gen_max, Some(e.pcie.1));
    close(
        "pcie.link.width.current",
        g.pcie_link_width_current,
        Some(e.pcie.2),
    );
    close("pcie.link.width.max", g.pcie_link_width_max, Some(e.pcie.3));

    let ev = &g.clock_events;
    assert_eq!(ev.supported_mask, Some(0x1FF), "{at}");
    assert_eq!(ev.active_mask, Some(e.active_mask), "{at}");
    for r in ClockEventReason::ALL {
        let want = e.active.contains(&r);
        if r == ClockEventReason::DisplayClockSetting {
            // No flag column for it in nvidia-smi: derived from the mask.
            assert_eq!(ev.flag(r), None, "{at}: {r:?}");
        } else {
            assert_eq!(ev.flag(r), Some(want), "{at}: flag {r:?}");
        }
        assert_eq!(ev.active(r), Some(want), "{at}: active {r:?}");
        // The flag columns and the active mask agree.
        assert_eq!(e.active_mask & r.bit() != 0, want, "{at}: mask bit {r:?}");
    }
    close(
        "sw_power_cap counter",
        ev.time_seconds(ClockEventReason::SwPowerCap),
        microseconds(e.sw_power_cap_us),
    );
    for r in [
        ClockEventReason::SyncBoost,
        ClockEventReason::SwThermalSlowdown,
        ClockEventReason::HwThermalSlowdown,
        ClockEventReason::HwPowerBrakeSlowdown,
    ] {
        close(&format!("{r:?} counter"), ev.time_seconds(r), Some(0.0));
    }
    for r in [
        ClockEventReason::GpuIdle,
        ClockEventReason::ApplicationsClocksSetting,
        ClockEventReason::HwSlowdown,
        ClockEventReason::DisplayClockSetting,
    ] {
        close(&format!("{r:?} counter"), ev.time_seconds(r), None);
    }

    assert_eq!(g.ecc_mode_current, e.ecc_enabled, "{at}");
    assert_eq!(g.ecc_mode_pending, e.ecc_enabled, "{at}");
    let zero = e.ecc_zero.then_some(0.0);
    close(
        "ecc corrected volatile",
        g.ecc_corrected_volatile_total,
        zero,
    );
    close(
        "ecc corrected aggregate",
        g.ecc_corrected_aggregate_total,
        zero,
    );
    close(
        "ecc uncorrected volatile",
        g.ecc_uncorrected_volatile_total,
        zero,
    );
    close(
        "ecc uncorrected aggregate",
        g.ecc_uncorrected_aggregate_total,
        zero,
    );
    // No capture has retired-page counts (Hopper and Ada use row remapping).
    close("retired single", g.retired_pages_single_bit, None);
    close("retired double", g.retired_pages_double_bit, None);
    assert_eq!(g.retired_pages_pending, None, "{at}");
    let rz = e.remapped.then_some(0.0);
    close("remapped correctable", g.remapped_rows_correctable, rz);
    close("remapped uncorrectable", g.remapped_rows_uncorrectable, rz);
    assert_eq!(g.remapped_rows_pending, e.remapped.then_some(false), "{at}");
    assert_eq!(g.remapped_rows_failure, e.remapped.then_some(false), "{at}");

    assert_eq!(g.mig_mode_current, e.mig, "{at}");
    assert_eq!(g.mig_mode_pending, e.mig, "{at}");

    close("encoder sessions", g.encoder_sessions, Some(e.encoder.0));
    close("encoder fps", g.encoder_average_fps, Some(e.encoder.1));
    close(
        "encoder latency",
        g.encoder_average_latency_seconds,
        microseconds(e.encoder.2),
    );
}

fn run_case(file: &str, phase: Phase, e: &Expect) {
    run_case_on(&Capture::load(file), phase, e);
}

fn run_case_on(cap: &Capture, phase: Phase, e: &Expect) {
    let file = cap.file.as_str();
    let parsed = parse_query_gpu(cap.query_gpu(phase), Layout::Header).expect("header");
    assert!(
        parsed.problems.is_empty(),
        "{file} {phase:?}: {:?}",
        parsed.problems
    );
    assert_eq!(
        parsed.items.len(),
        1,
        "{file} {phase:?}: one GPU per capture"
    );
    check(file, phase, &parsed.items[0], e);
}

use ClockEventReason::{GpuIdle, SwPowerCap};

const RTX2080: Expect = Expect {
    name: "NVIDIA GeForce RTX 2080 SUPER",
    bus_id: "00000000:0C:00.0",
    driver: "595.71.05",
    vbios: "90.04.7A.40.73",
    compute_cap: "7.5",
    serial: None,
    pstate: 8,
    persistence: false,
    display_active: true,
    temp: 40.0,
    mem_temp: None,
    tlimit: None,
    power: (39.32, None, 39.32),
    limits: (250.0, 105.0, 350.0),
    memory: (8192.0, 408.0, 214.0, 7571.0),
    util: Some((0.0, 9.0, 0.0, 0.0)),
    clocks: (765.0, 765.0, 810.0, 705.0),
    max_clocks: (2145.0, 2145.0, 7751.0),
    fan: Some(38.0),
    pcie: (1.0, 3.0, 16.0, 16.0),
    active_mask: 0x4,
    active: &[SwPowerCap],
    sw_power_cap_us: 212553937.0,
    ecc_enabled: None,
    ecc_zero: false,
    mig: None,
    remapped: false,
    encoder: (0.0, 0.0, 0.0),
};

#[test]
fn rtx_2080_super_idle() {
    run_case(CAPTURES[0], Phase::Idle, &RTX2080);
}

#[test]
fn rtx_2080_super_load() {
    run_case(
        CAPTURES[0],
        Phase::Load,
        &Expect {
            pstate: 2,
            temp: 45.0,
            power: (111.50, None, 111.50),
            memory: (8192.0, 408.0, 819.0, 6967.0),
            util: Some((8.0, 3.0, 100.0, 0.0)),
            clocks: (2055.0, 2055.0, 7500.0, 1905.0),
            pcie: (3.0, 3.0, 16.0, 16.0),
            active_mask: 0x0,
            active: &[],
            sw_power_cap_us: 221310321.0,
            encoder: (2.0, 107.0, 99454.0),
            ..RTX2080
        },
    );
}

const RTX4080: Expect = Expect {
    name: "NVIDIA GeForce RTX 4080 SUPER",
    bus_id: "00000000:01:00.0",
    driver: "595.71.05",
    vbios: "95.03.44.00.B2",
    compute_cap: "8.9",
    serial: None,
    pstate: 8,
    persistence: false,
    display_active: true,
    temp: 43.0,
    mem_temp: None,
    tlimit: None,
    power: (26.20, Some(26.20), 28.77),
    limits: (320.0, 150.0, 400.0),
    memory: (16376.0, 434.0, 596.0, 15348.0),
    util: Some((0.0, 23.0, 0.0, 0.0)),
    clocks: (210.0, 210.0, 405.0, 1185.0),
    max_clocks: (3165.0, 3165.0, 11501.0),
    // The fans stand still at idle: a real 0, not an absent value.
    fan: Some(0.0),
    pcie: (1.0, 4.0, 16.0, 16.0),
    active_mask: 0x1,
    active: &[GpuIdle],
    sw_power_cap_us: 0.0,
    ecc_enabled: None,
    ecc_zero: false,
    mig: None,
    remapped: false,
    encoder: (0.0, 0.0, 0.0),
};

#[test]
fn rtx_4080_super_idle() {
    run_case(CAPTURES[1], Phase::Idle, &RTX4080);
}

#[test]
fn rtx_4080_super_load() {
    run_case(
        CAPTURES[1],
        Phase::Load,
        &Expect {
            pstate: 2,
            temp: 46.0,
            power: (84.24, Some(84.24), 86.41),
            memory: (16376.0, 434.0, 1474.0, 14470.0),
            util: Some((7.0, 2.0, 72.0, 0.0)),
            clocks: (2805.0, 2805.0, 11251.0, 2145.0),
            pcie: (4.0, 4.0, 16.0, 16.0),
            active_mask: 0x0,
            active: &[],
            encoder: (2.0, 184.0, 62844.0),
            ..RTX4080
        },
    );
}

const H100: Expect = Expect {
    name: "NVIDIA H100 80GB HBM3",
    bus_id: "00000000:00:09.0",
    driver: "590.48.01",
    vbios: "96.00.A5.00.01",
    compute_cap: "9.0",
    serial: Some("0000000000000"),
    pstate: 0,
    persistence: true,
    display_active: false,
    temp: 41.0,
    mem_temp: Some(48.0),
    tlimit: Some(46.0),
    power: (69.85, Some(69.85), 69.62),
    limits: (700.0, 200.0, 700.0),
    memory: (81559.0, 479.0, 0.0, 81081.0),
    util: Some((0.0, 0.0, 0.0, 0.0)),
    clocks: (345.0, 345.0, 2619.0, 765.0),
    max_clocks: (1980.0, 1980.0, 2619.0),
    // Passively cooled: no fan.
    fan: None,
    pcie: (5.0, 5.0, 16.0, 16.0),
    active_mask: 0x1,
    active: &[GpuIdle],
    sw_power_cap_us: 0.0,
    ecc_enabled: Some(true),
    ecc_zero: true,
    mig: Some(false),
    remapped: true,
    encoder: (0.0, 0.0, 0.0),
};

#[test]
fn h100_idle() {
    run_case(CAPTURES[2], Phase::Idle, &H100);
}

#[test]
fn h100_load() {
    run_case(
        CAPTURES[2],
        Phase::Load,
        &Expect {
            temp: 59.0,
            mem_temp: Some(54.0),
            tlimit: Some(26.0),
            power: (631.95, Some(631.95), 625.68),
            memory: (81559.0, 479.0, 19818.0, 61263.0),
            util: Some((100.0, 11.0, 0.0, 0.0)),
            clocks: (1980.0, 1980.0, 2619.0, 1545.0),
            active_mask: 0x0,
            active: &[],
            ..H100
        },
    );
}

/// The same H100 with MIG enabled: utilization is `[N/A]` (per-instance only), and so is row
/// remapping.
const H100_MIG: Expect = Expect {
    temp: 42.0,
    mem_temp: Some(48.0),
    tlimit: Some(45.0),
    power: (71.15, Some(71.15), 70.72),
    memory: (81559.0, 479.0, 59.0, 81022.0),
    util: None,
    mig: Some(true),
    remapped: false,
    ..H100
};

#[test]
fn h100_mig_idle() {
    run_case(CAPTURES[3], Phase::Idle, &H100_MIG);
}

#[test]
fn h100_mig_load() {
    run_case(
        CAPTURES[3],
        Phase::Load,
        &Expect {
            temp: 53.0,
            mem_temp: Some(59.0),
            tlimit: Some(24.0),
            power: (433.78, Some(433.78), 447.35),
            memory: (81559.0, 479.0, 11125.0, 69956.0),
            clocks: (1980.0, 1980.0, 2619.0, 1545.0),
            active_mask: 0x0,
            active: &[],
            ..H100_MIG
        },
    );
}

const L40S: Expect = Expect {
    name: "NVIDIA L40S",
    bus_id: "00000000:01:00.0",
    driver: "595.80",
    vbios: "95.02.66.00.02",
    compute_cap: "8.9",
    serial: Some("0000000000000"),
    pstate: 0,
    persistence: false,
    display_active: false,
    temp: 63.0,
    mem_temp: None,
    tlimit: Some(25.0),
    power: (144.97, Some(144.97), 127.67),
    limits: (350.0, 100.0, 350.0),
    memory: (46068.0, 609.0, 0.0, 45460.0),
    // The capture really says 100 % at "idle" (a leftover kernel, by the clocks).
    util: Some((100.0, 9.0, 0.0, 0.0)),
    clocks: (2520.0, 2520.0, 9001.0, 1965.0),
    max_clocks: (2520.0, 2520.0, 9001.0),
    fan: None,
    pcie: (4.0, 4.0, 16.0, 16.0),
    active_mask: 0x0,
    active: &[],
    sw_power_cap_us: 200740215.0,
    ecc_enabled: Some(true),
    ecc_zero: true,
    mig: None,
    remapped: true,
    encoder: (0.0, 0.0, 0.0),
};

#[test]
fn l40s_idle() {
    run_case(CAPTURES[4], Phase::Idle, &L40S);
}

#[test]
fn l40s_load() {
    run_case(
        CAPTURES[4],
        Phase::Load,
        &Expect {
            temp: 54.0,
            tlimit: Some(34.0),
            power: (110.23, Some(110.23), 112.38),
            memory: (46068.0, 609.0, 1235.0, 44225.0),
            util: Some((9.0, 2.0, 60.0, 0.0)),
            sw_power_cap_us: 204642816.0,
            encoder: (2.0, 237.0, 4271133.0),
            ..L40S
        },
    );
}

/// (pid, process name, used MiB) per capture under load; idle has none except on the 4080.
#[test]
fn compute_apps_in_every_capture() {
    type Procs = &'static [(u32, &'static str, f64)];
    let cases: [(&str, Procs, Procs); 5] = [
        (
            CAPTURES[0],
            &[],
            &[(5268, "ffmpeg", 370.0), (5267, "ffmpeg", 230.0)],
        ),
        (
            CAPTURES[1],
            &[(2165, "/usr/bin/kwin_wayland", 25.0)],
            &[
                (2165, "/usr/bin/kwin_wayland", 25.0),
                (5022, "ffmpeg", 503.0),
                (5021, "ffmpeg", 360.0),
            ],
        ),
        (
            CAPTURES[2],
            &[],
            &[
                (11327, "/root/tools/memhog", 2566.0),
                (11328, "/root/tools/memhog", 1542.0),
                (11345, "./gpu_burn", 15690.0),
            ],
        ),
        (
            CAPTURES[3],
            &[],
            &[
                (21180, "/root/tools/memhog", 2296.0),
                (21181, "/root/tools/memhog", 1272.0),
                (21198, "./gpu_burn", 7484.0),
            ],
        ),
        (
            CAPTURES[4],
            &[],
            &[(20037, "ffmpeg", 538.0), (20038, "ffmpeg", 681.0)],
        ),
    ];
    for (file, idle, load) in cases {
        let cap = Capture::load(file);
        for (phase, want) in [(Phase::Idle, idle), (Phase::Load, load)] {
            let p = parse_compute_apps(cap.compute_apps(phase), Layout::Header).expect("header");
            assert!(p.problems.is_empty(), "{file} {phase:?}: {:?}", p.problems);
            let got: Vec<(u32, String, Option<f64>)> = p
                .items
                .iter()
                .map(|r| {
                    (
                        r.pid,
                        r.process_name.clone().unwrap_or_default(),
                        r.used_memory_bytes,
                    )
                })
                .collect();
            let want: Vec<(u32, String, Option<f64>)> = want
                .iter()
                .map(|(pid, n, m)| (*pid, (*n).to_owned(), mib(*m)))
                .collect();
            assert_eq!(got, want, "{file} {phase:?}");
            for r in &p.items {
                assert_eq!(r.gpu_uuid.as_deref(), Some(MASKED_UUID), "{file}");
                assert!(
                    r.gpu_pci_bus_id
                        .as_deref()
                        .is_some_and(|b| b.starts_with("00000000:")),
                    "{file}"
                );
            }
        }
    }
}

/// What `--help-query-gpu` of each driver accepts: every field the exporter wants, both
/// spellings of the clock event reasons; `kmd_version` only from 595 on.
#[test]
fn help_query_gpu_catalogs() {
    for (file, has_kmd) in [
        (CAPTURES[0], true),
        (CAPTURES[1], true),
        (CAPTURES[2], false),
        (CAPTURES[3], false),
        (CAPTURES[4], true),
    ] {
        let cat = FieldCatalog::from_help(Capture::load(file).help_query_gpu());
        let wanted: Vec<String> = GPU_FIELDS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(cat.select(GPU_FIELDS), wanted, "{file}");
        assert_eq!(cat.knows("kmd_version"), has_kmd, "{file}");
        assert_eq!(
            cat.primary("clocks_throttle_reasons.sw_power_cap"),
            Some("clocks_event_reasons.sw_power_cap"),
            "{file}"
        );
        assert_eq!(cat.primary("gpu_uuid"), Some("uuid"), "{file}");
        assert!(
            !cat.knows("clocks_event_reasons.display_clock_setting"),
            "{file}"
        );
    }
}

/// Garbage, truncation and shape errors on real data.
#[test]
fn damaged_capture_output() {
    let cap = Capture::load(CAPTURES[2]);
    let full = cap.query_gpu(Phase::Load);
    let mut lines = full.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();

    // A row cut in the middle (nvidia-smi killed while printing): skipped and noted.
    let cut = &row[..row.len() / 2];
    let p = parse_query_gpu(&format!("{header}\n{cut}\n"), Layout::Header).unwrap();
    assert!(p.items.is_empty());
    assert_eq!(p.problems.len(), 1);
    assert!(p.problems[0].starts_with("line 2: "), "{}", p.problems[0]);
    assert!(
        p.problems[0].contains("columns, skipped"),
        "{}",
        p.problems[0]
    );

    // The header cut instead: the columns it still names are read, the row is too long.
    let short_header: Vec<&str> = header.split(", ").take(20).collect();
    let p = parse_query_gpu(
        &format!("{}\n{row}\n", short_header.join(", ")),
        Layout::Header,
    )
    .unwrap();
    assert!(p.items.is_empty());
    assert!(
        p.problems[0].contains("values for 20 columns"),
        "{}",
        p.problems[0]
    );

    // One good row survives a bad one next to it.
    let p = parse_query_gpu(&format!("{header}\n{cut}\n{row}\n"), Layout::Header).unwrap();
    assert_eq!(p.items.len(), 1);
    assert_eq!(p.items[0].temperature_celsius, Some(59.0));
    assert_eq!(p.problems.len(), 1);

    // Garbage instead of CSV: the output as a whole is rejected.
    assert!(parse_query_gpu("\u{0}\u{1}\u{fffd}binary junk\n", Layout::Header).is_err());
    assert!(parse_query_gpu(
        "Failed to initialize NVML: Driver/library version mismatch\n",
        Layout::Header
    )
    .is_err());
    assert!(parse_query_gpu("", Layout::Header).is_err());
    // Header with no rows: no GPUs, not an error.
    let p = parse_query_gpu(&format!("{header}\n"), Layout::Header).unwrap();
    assert!(p.items.is_empty() && p.problems.is_empty());
}

/// This crate's own capture: an H200 recorded through the exporter's nvidia-smi backend by
/// `bench/gpu_real.py` (its exact queries, not the every-field query of the shared captures).
fn h200() -> Capture {
    Capture::from_path(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/captures/nvidia-h200__580.159.04.txt"),
    )
}

const H200: Expect = Expect {
    name: "NVIDIA H200",
    bus_id: "00000000:00:06.0",
    driver: "580.159.04",
    vbios: "96.00.A5.00.1A",
    compute_cap: "9.0",
    serial: Some("0000000000000"),
    pstate: 0,
    persistence: true,
    display_active: false,
    temp: 32.0,
    mem_temp: Some(35.0),
    tlimit: Some(55.0),
    power: (81.29, Some(81.29), 81.32),
    limits: (700.0, 200.0, 700.0),
    memory: (143771.0, 616.0, 0.0, 143156.0),
    util: Some((0.0, 0.0, 0.0, 0.0)),
    clocks: (885.0, 885.0, 3201.0, 900.0),
    max_clocks: (1980.0, 1980.0, 3201.0),
    fan: None,
    pcie: (5.0, 5.0, 16.0, 16.0),
    active_mask: 0x1,
    active: &[GpuIdle],
    sw_power_cap_us: 0.0,
    ecc_enabled: Some(true),
    ecc_zero: true,
    mig: Some(false),
    remapped: true,
    encoder: (0.0, 0.0, 0.0),
};

#[test]
fn h200_idle() {
    run_case_on(&h200(), Phase::Idle, &H200);
}

/// Under a matrix-product load at 692 W of its 700 W limit: the software power cap holds the
/// clocks down (bit 0x4) and its counter runs.
#[test]
fn h200_load() {
    run_case_on(
        &h200(),
        Phase::Load,
        &Expect {
            temp: 53.0,
            mem_temp: Some(45.0),
            tlimit: Some(34.0),
            power: (692.28, Some(692.28), 692.80),
            memory: (143771.0, 616.0, 1139.0, 142018.0),
            util: Some((100.0, 24.0, 0.0, 0.0)),
            clocks: (1470.0, 1470.0, 3201.0, 1500.0),
            active_mask: 0x4,
            active: &[SwPowerCap],
            sw_power_cap_us: 5128699.0,
            ..H200
        },
    );
}

#[test]
fn h200_processes_and_fields() {
    let cap = h200();
    for (phase, want) in [
        (Phase::Idle, vec![]),
        (
            Phase::Load,
            vec![(788, "/opt/torch/.venv/bin/python3".to_owned(), mib(1130.0))],
        ),
    ] {
        let p = parse_compute_apps(cap.compute_apps(phase), Layout::Header).expect("header");
        assert!(p.problems.is_empty(), "{phase:?}: {:?}", p.problems);
        let got: Vec<_> = p
            .items
            .iter()
            .map(|r| {
                (
                    r.pid,
                    r.process_name.clone().unwrap_or_default(),
                    r.used_memory_bytes,
                )
            })
            .collect();
        assert_eq!(got, want, "{phase:?}");
    }
    let cat = FieldCatalog::from_help(cap.help_query_gpu());
    let wanted: Vec<String> = GPU_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(cat.select(GPU_FIELDS), wanted);
    assert!(!cat.knows("kmd_version"), "580 predates kmd_version");
}
