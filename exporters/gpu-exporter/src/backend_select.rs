//! `--backend=auto|nvml|nvidia-smi`: which [`Backend`] the `gpu` collector reads, and why.
//!
//! - `auto` (default): NVML if it loads and initialises (`nvml_ok`); else nvidia-smi if
//!   `--help-query-gpu` answers within the timeout (`nvml_unavailable_fell_back`); else none
//!   (`nothing_available`).
//! - `nvml`: NVML or none (`forced` / `forced_unavailable`).
//! - `nvidia-smi`: always nvidia-smi (`forced`), even if the start-up probe fails: the driver
//!   may come up later, and every collection tries again.
//!
//! With no backend the exporter still serves: zero GPUs, and the `gpu` collector fails every
//! run with [`hint`].

use std::path::Path;
use std::time::Duration;

use crate::nvidia_smi::backend::NvidiaSmiBackend;
use crate::reading::Backend;

/// The `--backend` flag: `auto`, `nvml` or `nvidia-smi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Auto,
    Nvml,
    NvidiaSmi,
}

/// `reason` label values of `nvidia_gpu_backend_info` (a fixed vocabulary).
pub mod reason {
    /// auto: NVML loaded and initialised.
    pub const NVML_OK: &str = "nvml_ok";
    /// auto: NVML did not load or initialise; nvidia-smi answered.
    pub const FELL_BACK: &str = "nvml_unavailable_fell_back";
    /// The backend named by `--backend`.
    pub const FORCED: &str = "forced";
    /// `--backend=nvml` and NVML did not load or initialise.
    pub const FORCED_UNAVAILABLE: &str = "forced_unavailable";
    /// auto: neither NVML nor nvidia-smi works.
    pub const NOTHING: &str = "nothing_available";
}

/// The outcome of the selection.
pub struct Selection {
    /// `None`: no backend works (`name` is `none`).
    pub backend: Option<Box<dyn Backend>>,
    /// `nvml`, `nvidia-smi` or `none`.
    pub name: &'static str,
    /// One of [`reason`].
    pub reason: &'static str,
    /// Why the preferred backend is not used, one line (NVML's error on a fallback; both
    /// errors when none works); `None` when nothing went wrong.
    pub problem: Option<String>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("name", &self.name)
            .field("reason", &self.reason)
            .field("problem", &self.problem)
            .finish()
    }
}

/// The one-line advice when no backend works.
pub fn hint(problem: &str) -> String {
    format!(
        "no GPU backend available ({problem}); to fix: in Kubernetes set runtimeClassName: nvidia \
         and NVIDIA_VISIBLE_DEVICES=all (NVIDIA_DRIVER_CAPABILITIES=utility); in a container \
         mount the host's libnvidia-ml.so.1 (or point --nvml.library at it); or put nvidia-smi \
         on PATH (or set --nvidia-smi.command)"
    )
}

/// Choose. `open_nvml` is [`crate::nvml::open`] in the binary (a stand-in in tests);
/// `smi_timeout` bounds the nvidia-smi probe.
pub fn select(
    choice: Choice,
    nvml_library: Option<&Path>,
    open_nvml: impl FnOnce(Option<&Path>) -> anyhow::Result<Box<dyn Backend>>,
    smi: NvidiaSmiBackend,
    smi_timeout: Duration,
) -> Selection {
    let nvml_err = match choice {
        Choice::NvidiaSmi => {
            let problem = smi
                .probe(smi_timeout)
                .err()
                .map(|e| format!("nvidia-smi does not answer yet: {e:#}"));
            return Selection {
                backend: Some(Box::new(smi)),
                name: "nvidia-smi",
                reason: reason::FORCED,
                problem,
            };
        }
        Choice::Nvml | Choice::Auto => match open_nvml(nvml_library) {
            Ok(b) => {
                return Selection {
                    backend: Some(b),
                    name: "nvml",
                    reason: if choice == Choice::Nvml {
                        reason::FORCED
                    } else {
                        reason::NVML_OK
                    },
                    problem: None,
                }
            }
            Err(e) => format!("NVML: {e:#}"),
        },
    };
    if choice == Choice::Nvml {
        return Selection {
            backend: None,
            name: "none",
            reason: reason::FORCED_UNAVAILABLE,
            problem: Some(nvml_err),
        };
    }
    match smi.probe(smi_timeout) {
        Ok(()) => Selection {
            backend: Some(Box::new(smi)),
            name: "nvidia-smi",
            reason: reason::FELL_BACK,
            problem: Some(format!("{nvml_err}; fell back to nvidia-smi")),
        },
        Err(e) => Selection {
            backend: None,
            name: "none",
            reason: reason::NOTHING,
            problem: Some(format!("{nvml_err}; nvidia-smi: {e:#}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Snapshot;

    struct FakeNvml;
    impl Backend for FakeNvml {
        fn name(&self) -> &'static str {
            "nvml"
        }
        fn read(&self, _: Duration) -> anyhow::Result<Snapshot> {
            Ok(Snapshot::default())
        }
    }

    fn ok(_: Option<&Path>) -> anyhow::Result<Box<dyn Backend>> {
        Ok(Box::new(FakeNvml))
    }
    fn missing(lib: Option<&Path>) -> anyhow::Result<Box<dyn Backend>> {
        anyhow::bail!(
            "cannot load {:?}",
            lib.unwrap_or(Path::new("libnvidia-ml.so.1"))
        )
    }
    fn smi(cmd: &str) -> NvidiaSmiBackend {
        NvidiaSmiBackend::new(vec![cmd.to_owned()])
    }
    const T: Duration = Duration::from_secs(2);

    #[test]
    fn auto_prefers_nvml() {
        let s = select(Choice::Auto, None, ok, smi("/nonexistent/nvidia-smi"), T);
        assert_eq!((s.name, s.reason, s.problem), ("nvml", "nvml_ok", None));
        let s = select(Choice::Nvml, None, ok, smi("/nonexistent/nvidia-smi"), T);
        assert_eq!((s.name, s.reason), ("nvml", "forced"));
    }

    #[test]
    fn auto_without_anything_is_none_with_both_reasons() {
        let s = select(
            Choice::Auto,
            Some(Path::new("/x/libnvidia-ml.so")),
            missing,
            smi("/nonexistent/nvidia-smi"),
            T,
        );
        assert_eq!((s.name, s.reason), ("none", "nothing_available"));
        assert!(s.backend.is_none());
        let p = s.problem.unwrap();
        assert!(
            p.starts_with("NVML: cannot load \"/x/libnvidia-ml.so\"; nvidia-smi: "),
            "{p}"
        );
        assert!(p.contains("/nonexistent/nvidia-smi"), "{p}");
    }

    #[test]
    fn forced_nvml_does_not_fall_back_and_forced_smi_stays() {
        let s = select(
            Choice::Nvml,
            None,
            missing,
            smi("/nonexistent/nvidia-smi"),
            T,
        );
        assert_eq!((s.name, s.reason), ("none", "forced_unavailable"));
        let s = select(
            Choice::NvidiaSmi,
            None,
            ok,
            smi("/nonexistent/nvidia-smi"),
            T,
        );
        assert_eq!((s.name, s.reason), ("nvidia-smi", "forced"));
        assert!(s.problem.unwrap().contains("does not answer yet"));
    }

    #[test]
    fn hint_names_every_fix() {
        let h = hint("x");
        for fix in [
            "runtimeClassName: nvidia",
            "NVIDIA_VISIBLE_DEVICES=all",
            "libnvidia-ml.so.1",
            "--nvml.library",
            "nvidia-smi on PATH",
        ] {
            assert!(h.contains(fix), "{fix}");
        }
        assert!(!h.contains('\n'));
    }
}
