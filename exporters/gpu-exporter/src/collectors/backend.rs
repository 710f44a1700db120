//! Collector `backend`: which GPU backend is active and why.
//!
//! Writes `nvidia_gpu_backend_info{backend, reason} 1`. It fails (so `/health` shows the
//! `backend` component unhealthy, with the reason as its error) when the selection did not get
//! what it wanted: auto fell back to nvidia-smi because NVML could not load
//! (`nvml_unavailable_fell_back`; the exporter is then `degraded`), or no backend works at all.
//! A forced `--backend=nvidia-smi` is not a failure of this component.

use odin_common::{Collector, Context, Sink};

use crate::backend_select::{reason, Selection};

pub struct BackendInfo {
    name: &'static str,
    reason: &'static str,
    /// The error this component reports on every run, if any.
    failure: Option<String>,
}

impl BackendInfo {
    pub fn new(sel: &Selection) -> BackendInfo {
        let failure = match sel.reason {
            reason::FELL_BACK | reason::NOTHING | reason::FORCED_UNAVAILABLE => Some(format!(
                "backend={} reason={}: {}",
                sel.name,
                sel.reason,
                sel.problem.as_deref().unwrap_or("")
            )),
            _ => None,
        };
        BackendInfo {
            name: sel.name,
            reason: sel.reason,
            failure,
        }
    }
}

impl Collector for BackendInfo {
    fn name(&self) -> &'static str {
        "backend"
    }

    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        out.gauge(
            "nvidia_gpu_backend_info",
            "The active GPU backend (nvml, nvidia-smi, none) and why it was chosen; always 1.",
        )
        .sample(&[("backend", self.name), ("reason", self.reason)], 1.0);
        match &self.failure {
            Some(f) => Err(anyhow::anyhow!("{f}")),
            None => Ok(()),
        }
    }
}
