//! Collector `backend`: which GPU backend is active and why.
//!
//! Writes `nvidia_gpu_backend_info{backend, reason} 1` (`backend_info` under the exporter's
//! prefix) and says in `/health` (the component's
//! `detail`) which backend is active and why, NVML's error included when auto fell back to
//! nvidia-smi. It fails (the `backend` component unhealthy, the reason as its error) only when
//! no backend works: nothing available, or a forced `--backend=nvml` that cannot load. A
//! fallback is not a failure: GPUs are measured; the `GpuBackendFellBack` alert and the info
//! metric tell the story. Until the backend is chosen (nvidia-smi has yet to answer the
//! probe) it writes nothing and does not fail; its detail says what the selection waits for.

use std::sync::Arc;

use odin_common::{Collector, Context, Sink};

use crate::backend_select::{reason, Selection, Selector};

/// What the collector reports about one selection.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    name: &'static str,
    reason: &'static str,
    /// The error this component reports on every run, if any.
    failure: Option<String>,
    /// The `/health` line: backend, reason, and the problem that led there.
    detail: String,
}

impl BackendInfo {
    pub fn new(sel: &Selection) -> BackendInfo {
        let detail = match sel.problem.as_deref() {
            Some(p) => format!("backend={} reason={}: {p}", sel.name, sel.reason),
            None => format!("backend={} reason={}", sel.name, sel.reason),
        };
        let failure = match sel.reason {
            reason::NOTHING | reason::FORCED_UNAVAILABLE => Some(detail.clone()),
            _ => None,
        };
        BackendInfo {
            name: sel.name,
            reason: sel.reason,
            failure,
            detail,
        }
    }
}

/// Collector `backend`. While nvidia-smi has yet to answer the probe (see
/// [`crate::backend_select`]) nothing is chosen: it writes no `backend_info` sample and does
/// not fail, and its detail says what the selection waits for.
pub struct BackendCollector {
    selector: Arc<Selector>,
}

impl BackendCollector {
    pub fn new(selector: Arc<Selector>) -> BackendCollector {
        BackendCollector { selector }
    }

    fn info(&self) -> Option<BackendInfo> {
        self.selector.chosen().map(|sel| BackendInfo::new(&sel))
    }
}

impl Collector for BackendCollector {
    fn collect(&self, _ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let Some(info) = self.info() else {
            return Ok(());
        };
        out.gauge(
            "backend_info",
            "The active GPU backend (nvml, nvidia-smi, none) and why it was chosen; always 1.",
        )
        .sample(&[("backend", info.name), ("reason", info.reason)], 1.0);
        match &info.failure {
            Some(f) => Err(anyhow::anyhow!("{f}")),
            None => Ok(()),
        }
    }

    fn detail(&self) -> Option<String> {
        match self.info() {
            Some(info) => Some(info.detail),
            None => self.selector.waiting(),
        }
    }
}
