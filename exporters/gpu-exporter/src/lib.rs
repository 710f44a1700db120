//! gpu-exporter as a library: the pieces the binary is assembled from.
//!
//! - [`SPEC`], [`Args`] and [`setup`]: what the exporter is, its own flags, and the state its
//!   collectors are built from (the backend selection, begun at start).
//! - [`reading`], what a backend reads (backend-neutral [`reading::Snapshot`]).
//! - [`nvidia_smi`], the nvidia-smi backend (parser, runner, [`nvidia_smi::backend`]).
//! - [`nvml`], the NVML backend.
//! - [`backend_select`], `--backend=auto|nvml|nvidia-smi`.
//! - [`metrics`] and [`dcgm`], a snapshot to metric families (`docs/metrics.md`).
//! - [`suspend`], runtime-suspend state of a GPU from sysfs.
//! - [`power`], a power-only reader (NVML or nvidia-smi, suspend rule included) for
//!   power-exporter's `gpu` collector.
//! - [`collectors`], the `backend` and `gpu` collectors handed to odin-common.
//! - `testing` (feature `test-support`), the fake NVML and the real captures for this crate's
//!   tests, benches and examples.

pub mod backend_select;
pub mod collectors;
pub mod dcgm;
pub mod metrics;
pub mod nvidia_smi;
pub mod nvml;
pub mod power;
pub mod reading;
pub mod suspend;
#[cfg(feature = "test-support")]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use odin_common::{built, parse_duration, Built, CollectorDef, ExporterSpec, Mode, Settings};

use backend_select::{Choice, Selector};
use collectors::{backend::BackendCollector, gpu};
use nvidia_smi::{backend::NvidiaSmiBackend, runner, watchdog};

/// gpu-exporter's own flags (the shared ones come from odin-common).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where GPU readings come from: `auto` (NVML, else nvidia-smi), `nvml`, `nvidia-smi`.
    #[arg(
        long = "backend",
        value_name = "BACKEND",
        value_enum,
        default_value_t = Choice::Auto
    )]
    pub backend: Choice,

    /// Path of libnvidia-ml.so to load instead of the system's `libnvidia-ml.so.1`.
    #[arg(long = "nvml.library", value_name = "PATH")]
    pub nvml_library: Option<PathBuf>,

    /// How to run nvidia-smi: a program and leading words, split like a shell would split
    /// them (no shell runs), e.g. `ssh gpu-host nvidia-smi`.
    #[arg(
        long = "nvidia-smi.command",
        value_name = "COMMAND",
        default_value = "nvidia-smi"
    )]
    pub smi_command: String,

    /// Time one nvidia-smi collection (all its runs) may take before it is killed.
    #[arg(long = "nvidia-smi.timeout", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    pub smi_timeout: Duration,

    /// Time between nvidia-smi collections; with NVML, between PCIe throughput samples (the
    /// rest of NVML is read on every scrape).
    #[arg(long = "collect.interval", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub interval: Duration,

    /// Also export dcgm-exporter's `DCGM_FI_DEV_*` family (Grafana dashboard 12239).
    #[arg(long = "metrics.dcgm-compat")]
    pub dcgm_compat: bool,

    /// `Hostname` label of the DCGM family. Default: `$NODE_NAME`, else the host name.
    #[arg(long = "metrics.dcgm-hostname", value_name = "NAME")]
    pub dcgm_hostname: Option<String>,
}

/// What the collectors are built from: the flags and the backend selection (made at start
/// where NVML decides, else by the `gpu` collector's first run).
pub struct Setup {
    pub args: Args,
    selector: Arc<Selector>,
}

/// gpu-exporter, every collector declared once. `backend` comes first: the runtime runs (and
/// lists) collectors in this order.
pub const SPEC: ExporterSpec<Setup> = ExporterSpec {
    name: "gpu-exporter",
    prefix: "nvidia_gpu",
    version: env!("CARGO_PKG_VERSION"),
    about: "NVIDIA GPU metrics through NVML or nvidia-smi; Hydra and dcgm-exporter compatible.",
    default_port: 9835,
    collectors: &[
        CollectorDef::on(
            "backend",
            "active backend and why; unhealthy when no backend works",
            build_backend,
        ),
        CollectorDef::on(
            "gpu",
            "GPU readings from NVML (on scrape) or nvidia-smi (in the background)",
            build_gpu,
        ),
    ],
};

/// Check the flags and begin the backend selection: NVML's part now (it answers at once),
/// nvidia-smi's in the `gpu` collector's first run, so that a hung nvidia-smi does not delay
/// serving. Every nvidia-smi run goes through the watchdog ([`nvidia_smi::watchdog`]) when
/// this executable can be one.
pub fn setup(args: Args, _settings: &Settings) -> anyhow::Result<Setup> {
    let command = runner::split_command(&args.smi_command)
        .map_err(|e| anyhow::anyhow!("--nvidia-smi.command: {e}"))?;
    if command.is_empty() {
        anyhow::bail!("--nvidia-smi.command is empty");
    }
    if let Err(e) = runner::become_subreaper() {
        log::warn!(
            "cannot become a child subreaper ({e}); killed nvidia-smi wrappers' children are \
             left to init"
        );
    }
    let watchdog = watchdog::this_executable();
    if watchdog.is_none() {
        log::warn!(
            "cannot run the nvidia-smi watchdog (no /proc/self/exe, or a main without \
             watchdog::run_if_asked); a hung nvidia-smi outlives a killed exporter"
        );
    }
    let smi = NvidiaSmiBackend::new(command).with_watchdog(watchdog);
    let start = backend_select::start(
        args.backend,
        args.nvml_library.as_deref(),
        |library| nvml::open_with(library, args.interval),
        Arc::new(smi),
    );
    Ok(Setup {
        selector: Arc::new(Selector::new(start)),
        args,
    })
}

fn build_backend(setup: &Setup) -> Built {
    built(BackendCollector::new(Arc::clone(&setup.selector)))
}

/// NVML is read inside each scrape; nvidia-smi (and no backend at all, so that `/health`
/// reports the problem from the start) in the background, which is also where the choice
/// between nvidia-smi and none is made when it waits for nvidia-smi's answer.
fn build_gpu(setup: &Setup) -> Built {
    let args = &setup.args;
    let background = Mode::Background {
        interval: args.interval,
        timeout: args.smi_timeout,
    };
    let (source, mode) = match setup.selector.chosen() {
        Some(sel) => match &sel.backend {
            Some(b) if b.name() == "nvml" => (gpu::Source::Backend(Arc::clone(b)), Mode::OnScrape),
            Some(b) => (gpu::Source::Backend(Arc::clone(b)), background),
            None => (
                gpu::Source::Unavailable {
                    hint: backend_select::hint(sel.problem.as_deref().unwrap_or("")),
                },
                background,
            ),
        },
        None => (gpu::Source::Choose(Arc::clone(&setup.selector)), background),
    };
    let hostname = args
        .dcgm_compat
        .then(|| dcgm::resolve_hostname(args.dcgm_hostname.as_deref()));
    built(gpu::GpuCollector::new(source, mode, hostname))
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_is_valid() {
        super::SPEC.check().unwrap();
    }
}
