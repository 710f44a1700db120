//! [`NvidiaSmiBackend`]: the nvidia-smi [`Backend`], run by the background `gpu` collector.
//!
//! At first use it runs `<command> --help-query-gpu` to learn which fields this driver accepts
//! (one unknown field makes nvidia-smi reject the whole query) and `<command> --version` for
//! the CUDA version; both are cached. Every read then runs
//! `--query-gpu=<accepted fields> --format=csv` and `--query-compute-apps=... --format=csv`,
//! all within one deadline. A `--query-gpu` that nvidia-smi rejects (a non-zero exit) drops the
//! cached field list, so the next read asks `--help-query-gpu` again (the driver may have been
//! upgraded underneath).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::parse::{parse_compute_apps, parse_query_gpu, FieldCatalog, GPU_FIELDS, PROCESS_FIELDS};
use super::runner::{compute_apps_args, query_gpu_args, RunError, RunOutput, Runner};
use super::table::{self, Layout};
use crate::reading::{Backend, Snapshot};

/// Output larger than this is not nvidia-smi answering a query: the command is killed.
const MAX_STDOUT: usize = 4 << 20;

/// What the probe learnt about the installed nvidia-smi.
#[derive(Debug, Clone)]
struct Probe {
    /// `--query-gpu` fields this driver accepts, in the spelling it accepts.
    gpu_fields: Vec<String>,
    cuda_version: Option<String>,
}

/// Runs nvidia-smi (or the `--nvidia-smi.command` wrapper) and parses what it prints.
#[derive(Debug)]
pub struct NvidiaSmiBackend {
    command: Vec<String>,
    probe: Mutex<Option<Probe>>,
    /// See [`Runner::watchdog`].
    watchdog: Option<PathBuf>,
    /// Set by [`Backend::stop`]; see [`Runner::cancel`].
    cancel: Arc<AtomicBool>,
}

/// `CUDA Version : 13.1` from `nvidia-smi --version`, or the `CUDA Version: 12.2` of the
/// table header older drivers print.
pub fn parse_cuda_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once("CUDA Version")?;
        let v = rest.trim_start().strip_prefix(':')?.trim();
        let v = v.split_whitespace().next()?.trim_end_matches('|');
        (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_owned())
    })
}

impl NvidiaSmiBackend {
    /// `command`: program and leading words (`split_command` of `--nvidia-smi.command`).
    pub fn new(command: Vec<String>) -> NvidiaSmiBackend {
        NvidiaSmiBackend {
            command,
            probe: Mutex::new(None),
            watchdog: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Run every command under the watchdog `program` (this executable:
    /// [`super::watchdog::this_executable`]); see [`super::watchdog`].
    pub fn with_watchdog(mut self, program: Option<PathBuf>) -> NvidiaSmiBackend {
        self.watchdog = program;
        self
    }

    fn runner(&self, deadline: Instant) -> Result<Runner, anyhow::Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            bail!("no time left of the collection timeout");
        }
        Ok(Runner {
            watchdog: self.watchdog.clone(),
            cancel: Some(Arc::clone(&self.cancel)),
            ..Runner::new(self.command.clone(), left, MAX_STDOUT)
        })
    }

    fn run(&self, deadline: Instant, args: &[String]) -> anyhow::Result<RunOutput> {
        let what = args.first().map(String::as_str).unwrap_or("");
        let what = what.split('=').next().unwrap_or(what);
        self.runner(deadline)?
            .run(args)
            .map_err(|e: RunError| anyhow!("nvidia-smi {what}: {e}"))
    }

    /// Run `--help-query-gpu` (and `--version`) now, unless already done, within `timeout`:
    /// whether this nvidia-smi can be used at all. Used at start-up by the backend selection.
    pub fn probe(&self, timeout: Duration) -> anyhow::Result<()> {
        self.ensure_probe(Instant::now() + timeout).map(|_| ())
    }

    fn ensure_probe(&self, deadline: Instant) -> anyhow::Result<Probe> {
        if let Some(p) = self.probe.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(p);
        }
        let help = self.run(deadline, &["--help-query-gpu".to_owned()])?;
        let catalog = FieldCatalog::from_help(&help.stdout);
        if catalog.is_empty() {
            bail!(
                "nvidia-smi --help-query-gpu listed no fields: {:?}",
                table::excerpt(help.stdout.trim(), 120)
            );
        }
        let gpu_fields = catalog.select(GPU_FIELDS);
        if !gpu_fields.iter().any(|f| f == "index") {
            bail!("nvidia-smi --help-query-gpu does not list the `index` field");
        }
        // The CUDA version is a label, not worth failing for: older nvidia-smi lack --version.
        let cuda_version = self
            .run(deadline, &["--version".to_owned()])
            .ok()
            .and_then(|o| parse_cuda_version(&o.stdout));
        let p = Probe {
            gpu_fields,
            cuda_version,
        };
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        Ok(p)
    }

    fn forget_probe(&self) {
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Backend for NvidiaSmiBackend {
    fn name(&self) -> &'static str {
        "nvidia-smi"
    }

    fn stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn read(&self, timeout: Duration) -> anyhow::Result<Snapshot> {
        let deadline = Instant::now() + timeout;
        let probe = self.ensure_probe(deadline)?;
        let out = match self
            .runner(deadline)?
            .run(&query_gpu_args(&probe.gpu_fields))
        {
            Ok(o) => o,
            Err(e) => {
                // A rejected field list (driver upgraded underneath) is fixed by asking again.
                // A timeout is not: asking again would spend the next run's budget on the
                // probe too.
                if matches!(e, RunError::Failed { .. }) {
                    self.forget_probe();
                }
                return Err(anyhow!("nvidia-smi --query-gpu: {e}"));
            }
        };
        let parsed = parse_query_gpu(&out.stdout, Layout::Header).map_err(|e| {
            anyhow!(
                "nvidia-smi --query-gpu printed something unreadable ({e}): {:?}",
                table::excerpt(out.stdout.trim(), 120)
            )
        })?;
        let mut snap = Snapshot {
            gpus: parsed.items,
            cuda_version: probe.cuda_version.clone(),
            problems: parsed.problems,
            ..Snapshot::default()
        };
        // Processes are a detail: when they cannot be read the GPUs are still served.
        match self.run(deadline, &compute_apps_args(PROCESS_FIELDS)) {
            Ok(o) => match parse_compute_apps(&o.stdout, Layout::Header) {
                Ok(p) => {
                    snap.processes = p.items;
                    snap.problems.extend(p.problems);
                }
                Err(e) => snap
                    .problems
                    .push(format!("nvidia-smi --query-compute-apps: unreadable: {e}")),
            },
            Err(e) => snap.problems.push(format!("{e:#}")),
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_version_from_version_and_table_header() {
        let v = "NVIDIA-SMI version  : 590.48.01\nNVML version        : 590.48\n\
                 DRIVER version      : 590.48.01\nCUDA Version        : 13.1\n";
        assert_eq!(parse_cuda_version(v).as_deref(), Some("13.1"));
        let header =
            "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2     |";
        assert_eq!(parse_cuda_version(header).as_deref(), Some("12.2"));
        assert_eq!(parse_cuda_version("CUDA Version : N/A"), None);
        assert_eq!(parse_cuda_version("nothing"), None);
    }
}
