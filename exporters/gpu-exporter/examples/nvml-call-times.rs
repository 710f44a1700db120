//! How long each NVML call of one gpu-exporter read takes on this machine's driver:
//!
//! ```text
//! cargo run --release -p gpu-exporter --example nvml-call-times -- [READS] [LIBRARY]
//! ```
//!
//! Opens the NVML backend as the exporter does (the system's `libnvidia-ml.so.1`, or
//! LIBRARY), reads every GPU READS times (default 50) with each call timed, and prints one
//! Markdown row per NVML function: calls per read, mean and largest wall time, mean CPU time
//! of the reading thread, sorted by wall time per read. The first row of a device also holds
//! `nvmlDeviceGetHandleByIndex`; field values are fetched in one call, timed under the first
//! field. PCIe throughput is not part of a read (the backend samples it in a thread): its
//! calls are timed on their own, as are a few field-value alternatives to per-scrape calls
//! (energy, PCIe replays, PCIe byte counters). Measures the real driver's cost, which the
//! fake library of the tests cannot show.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gpu_exporter::nvml::{CallClock, NvmlBackend};
use nvml_wrapper::enum_wrappers::device::PcieUtilCounter;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;

#[derive(Default)]
struct Row {
    calls: u32,
    wall: Duration,
    max: Duration,
    cpu: Duration,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let reads: u32 = match args.next().map(|a| a.parse()) {
        None => 50,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: nvml-call-times [READS] [LIBRARY]");
            return ExitCode::from(2);
        }
    };
    let library = args.next().map(PathBuf::from);
    let t0 = Instant::now();
    let backend = match NvmlBackend::open(library.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nvml-call-times: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("NVML opened in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut whole = Vec::new();
    let mut gpus = 0;
    for _ in 0..reads {
        let mut clock = CallClock::default();
        let t = Instant::now();
        match backend.read_timed(&mut clock) {
            Ok(snap) => gpus = snap.gpus.len(),
            Err(e) => {
                eprintln!("nvml-call-times: read failed: {e:#}");
                return ExitCode::FAILURE;
            }
        }
        whole.push(t.elapsed());
        for (function, wall, cpu) in clock.calls {
            let row = rows.entry(function).or_default();
            row.calls += 1;
            row.wall += wall;
            row.max = row.max.max(wall);
            row.cpu += cpu;
        }
    }
    whole.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{gpus} GPU(s), {reads} reads: whole read p50 {:.2} ms, max {:.2} ms",
        ms(whole[whole.len() / 2]),
        ms(whole[whole.len() - 1])
    );
    println!();
    println!("| NVML function | calls per read | wall per read (ms) | largest call (ms) | CPU per read (ms) |");
    println!("|---|---|---|---|---|");
    let mut sorted: Vec<_> = rows.into_iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.1.wall));
    let per_read = |d: Duration| ms(d) / f64::from(reads);
    for (function, r) in sorted {
        println!(
            "| {function} | {:.0} | {:.3} | {:.3} | {:.3} |",
            f64::from(r.calls) / f64::from(reads),
            per_read(r.wall),
            ms(r.max),
            per_read(r.cpu)
        );
    }
    drop(backend);
    alternatives(library.as_deref(), reads)
}

/// Each of a few single calls, `reads` times on every GPU: mean wall time.
fn alternatives(library: Option<&std::path::Path>, reads: u32) -> ExitCode {
    let nvml = match library {
        Some(lib) => Nvml::builder().lib_path(lib.as_os_str()).init(),
        None => Nvml::init(),
    };
    let nvml = match nvml {
        Ok(n) => n,
        Err(e) => {
            eprintln!("nvml-call-times: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    println!("| GPU | call | mean wall (ms) | answer |");
    println!("|---|---|---|---|");
    let count = nvml.device_count().unwrap_or(0);
    for i in 0..count {
        let Ok(dev) = nvml.device_by_index(i) else {
            continue;
        };
        let time = |what: &str, f: &mut dyn FnMut() -> String| {
            let t = Instant::now();
            let mut answer = String::new();
            for _ in 0..reads {
                answer = f();
            }
            let mean = t.elapsed().as_secs_f64() * 1e3 / f64::from(reads);
            println!("| {i} | {what} | {mean:.3} | {answer} |");
        };
        let field = |id: u32| {
            let dev = &dev;
            move || match dev.field_values_for(&[FieldId(id)]) {
                Ok(v) => match v.first() {
                    Some(Ok(s)) => format!("{:?}", s.value),
                    Some(Err(e)) => format!("error: {e}"),
                    None => "no value".into(),
                },
                Err(e) => format!("error: {e}"),
            }
        };
        time("nvmlDeviceGetTotalEnergyConsumption", &mut || {
            format!("{:?}", dev.total_energy_consumption())
        });
        time("field 83 (TOTAL_ENERGY_CONSUMPTION)", &mut field(83));
        time("nvmlDeviceGetPcieReplayCounter", &mut || {
            format!("{:?}", dev.pcie_replay_counter())
        });
        time("field 94 (PCIE_REPLAY_COUNTER)", &mut field(94));
        time("field 197 (PCIE_COUNT_TX_BYTES)", &mut field(197));
        time("field 198 (PCIE_COUNT_RX_BYTES)", &mut field(198));
        time("nvmlDeviceGetPcieThroughput rx", &mut || {
            format!("{:?}", dev.pcie_throughput(PcieUtilCounter::Receive))
        });
    }
    ExitCode::SUCCESS
}
