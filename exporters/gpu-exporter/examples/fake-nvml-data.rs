//! Print the fake NVML's data file (tests/fake-nvml/fake_nvml.c) for one nvidia-smi capture:
//!
//! ```text
//! fake-nvml-data <capture file> <idle|load> <N|as-is>
//! ```
//!
//! The capture's `--query-gpu` and `--query-compute-apps` sections of that phase are read with
//! the exporter's own nvidia-smi parser and written in NVML's units by the same code the NVML
//! backend tests use (`gpu_exporter::testing::fake_nvml::data`), with the NVML-only values of
//! `NvmlOnly::for_gpu` and the MIG devices of the capture's `nvidia-smi -L`. `as-is` keeps the
//! capture's GPUs; a number `N` makes N copies of its first GPU (GPUs 0..N with distinct UUIDs
//! and PCI bus ids; the first GPU's processes go to copy 0, MIG devices are left out).
//!
//! tests/test_e2e_gpu.py runs this (built by `cargo test` or `cargo build --examples`) to start
//! gpu-exporter on the NVML backend against the fake library.

use std::process::ExitCode;

use gpu_exporter::nvidia_smi::parse::{parse_compute_apps, parse_query_gpu};
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::testing::capture::{split_sections, Capture, Phase};
use gpu_exporter::testing::fake_nvml::data::{
    cuda_version_from_q, data_file, migs_from_listing, replicate, NvmlOnly,
};

const USAGE: &str = "usage: fake-nvml-data <capture file> <idle|load> <N|as-is>";

fn run(args: &[String]) -> Result<String, String> {
    let [path, phase, gpus] = args else {
        return Err(USAGE.to_owned());
    };
    let phase = match phase.as_str() {
        "idle" => Phase::Idle,
        "load" => Phase::Load,
        other => return Err(format!("phase {other:?} is neither idle nor load\n{USAGE}")),
    };
    let copies = match gpus.as_str() {
        "as-is" => None,
        n => match n.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Some(n),
            _ => {
                return Err(format!(
                    "{n:?} is neither as-is nor a GPU count 1..64\n{USAGE}"
                ))
            }
        },
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let cap = Capture {
        file: path.clone(),
        sections: split_sections(&text),
    };
    let smi = parse_query_gpu(cap.query_gpu(phase), Layout::Header)
        .map_err(|e| format!("{path}: --query-gpu: {e}"))?
        .items;
    let first = smi
        .first()
        .ok_or_else(|| format!("{path}: no GPU in --query-gpu"))?;
    let mut processes = parse_compute_apps(cap.compute_apps(phase), Layout::Header)
        .map_err(|e| format!("{path}: --query-compute-apps: {e}"))?
        .items;
    let cuda = cap
        .by_command("nvidia-smi -q")
        .first()
        .and_then(|s| cuda_version_from_q(&s.body))
        .map(|(_, n)| n);
    let (gpus, migs) = match copies {
        None => {
            let migs = match cap.by_command("nvidia-smi -L").first() {
                Some(list) => migs_from_listing(&list.body, &smi),
                None => Vec::new(),
            };
            (smi.clone(), migs)
        }
        Some(n) => {
            let gpus = replicate(first, n);
            processes.retain(|p| p.gpu_uuid.is_some() && p.gpu_uuid == first.uuid);
            for p in &mut processes {
                p.gpu_uuid = gpus[0].uuid.clone();
            }
            (gpus, Vec::new())
        }
    };
    Ok(data_file(&gpus, NvmlOnly::for_gpu, &processes, &migs, cuda))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(data) => {
            print!("{data}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake-nvml-data: {e}");
            ExitCode::from(2)
        }
    }
}
