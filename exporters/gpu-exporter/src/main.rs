//! gpu-exporter: NVIDIA GPU metrics for Prometheus through NVML, or nvidia-smi when NVML
//! cannot load. This file only wires flags to the backend selection and the collectors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gpu_exporter::backend_select::{self, Choice, Selection};
use gpu_exporter::collectors::{backend::BackendInfo, gpu};
use gpu_exporter::nvidia_smi::{backend::NvidiaSmiBackend, runner};
use gpu_exporter::{dcgm, nvml};
use odin_common::{parse_duration, Collector, CollectorSpec, ExporterSpec, Mode};

#[derive(Debug, clap::Args)]
struct Args {
    /// Where GPU readings come from: `auto` (NVML, else nvidia-smi), `nvml`, `nvidia-smi`.
    #[arg(long = "backend", value_name = "BACKEND", default_value = "auto",
          value_parser = Choice::NAMES)]
    backend: String,

    /// Path of libnvidia-ml.so to load instead of the system's `libnvidia-ml.so.1`.
    #[arg(long = "nvml.library", value_name = "PATH")]
    nvml_library: Option<PathBuf>,

    /// How to run nvidia-smi: a program and leading words, split like a shell would split
    /// them (no shell runs), e.g. `ssh gpu-host nvidia-smi`.
    #[arg(
        long = "nvidia-smi.command",
        value_name = "COMMAND",
        default_value = "nvidia-smi"
    )]
    smi_command: String,

    /// Time one nvidia-smi collection (all its runs) may take before it is killed.
    #[arg(long = "nvidia-smi.timeout", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    smi_timeout: Duration,

    /// Time between nvidia-smi collections (NVML is read on every scrape instead).
    #[arg(long = "collect.interval", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    interval: Duration,

    /// Also export dcgm-exporter's `DCGM_FI_DEV_*` family (Grafana dashboard 12239).
    #[arg(long = "metrics.dcgm-compat")]
    dcgm_compat: bool,

    /// `Hostname` label of the DCGM family. Default: `$NODE_NAME`, else the host name.
    #[arg(long = "metrics.dcgm-hostname", value_name = "NAME")]
    dcgm_hostname: Option<String>,
}

const SPEC: ExporterSpec = ExporterSpec {
    name: "gpu-exporter",
    prefix: "nvidia_gpu",
    version: env!("CARGO_PKG_VERSION"),
    about: "NVIDIA GPU metrics through NVML or nvidia-smi; Hydra and dcgm-exporter compatible.",
    default_port: 9835,
    collectors: &[
        CollectorSpec {
            name: "gpu",
            default_enabled: true,
            help: "GPU readings from NVML (on scrape) or nvidia-smi (in the background)",
        },
        CollectorSpec {
            name: "backend",
            default_enabled: true,
            help: "active backend and why; unhealthy when auto fell back or none works",
        },
    ],
};

fn build(args: &Args, settings: &odin_common::Settings) -> anyhow::Result<Vec<Box<dyn Collector>>> {
    let command = runner::split_command(&args.smi_command)
        .map_err(|e| anyhow::anyhow!("--nvidia-smi.command: {e}"))?;
    if command.is_empty() {
        anyhow::bail!("--nvidia-smi.command is empty");
    }
    if let Err(e) = runner::become_subreaper() {
        log::warn!("cannot become a child subreaper ({e}); killed nvidia-smi wrappers' children are left to init");
    }
    let choice = Choice::parse(&args.backend).expect("clap checked --backend");
    let sel: Selection = backend_select::select(
        choice,
        args.nvml_library.as_deref(),
        nvml::open,
        NvidiaSmiBackend::new(command),
        args.smi_timeout,
    );
    let detail = sel.problem.clone().unwrap_or_default();
    odin_common::logging::event(
        if sel.backend.is_some() {
            log::Level::Info
        } else {
            log::Level::Warn
        },
        "gpu backend selected",
        &[
            ("backend", sel.name),
            ("reason", sel.reason),
            ("detail", &detail),
        ],
    );

    let mut out: Vec<Box<dyn Collector>> = vec![Box::new(BackendInfo::new(&sel))];
    if settings.enabled("gpu") {
        let background = Mode::Background {
            interval: args.interval,
            timeout: args.smi_timeout,
        };
        let (source, mode) = match sel.backend {
            Some(b) if b.name() == "nvml" => (gpu::Source::Backend(b), Mode::OnScrape),
            Some(b) => (gpu::Source::Backend(b), background),
            None => (
                gpu::Source::Unavailable {
                    hint: backend_select::hint(sel.problem.as_deref().unwrap_or("")),
                },
                background,
            ),
        };
        let hostname = args
            .dcgm_compat
            .then(|| dcgm::resolve_hostname(args.dcgm_hostname.as_deref()));
        out.push(Box::new(gpu::GpuCollector::new(source, mode, hostname)));
    }
    Ok(out)
}

fn main() -> ExitCode {
    odin_common::run::<Args>(&SPEC, build)
}
