//! `--backend=auto|nvml|nvidia-smi`: which [`Backend`] the `gpu` collector reads, and why.
//!
//! - `auto` (default): NVML if it loads and initialises (`nvml_ok`); else nvidia-smi if
//!   `--help-query-gpu` answers within the timeout (`nvml_unavailable_fell_back`); else none
//!   (`nothing_available`).
//! - `nvml`: NVML or none (`forced` / `forced_unavailable`).
//! - `nvidia-smi`: always nvidia-smi (`forced`), even if the probe fails: the driver may come
//!   up later, and every collection tries again.
//!
//! With no backend the exporter still serves: zero GPUs, and the `gpu` collector fails every
//! run with [`hint`].
//!
//! NVML answers at once, so its part is decided at start-up ([`start`]). nvidia-smi may take
//! up to its timeout to answer the probe (or hang), so that part is left to the `gpu`
//! collector's first background run ([`Selector::choose`]) while the exporter already serves;
//! until then [`Selector::waiting`] says what it waits for.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    pub backend: Option<Arc<dyn Backend>>,
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

/// The selection as far as it can be made at once: NVML's part.
pub enum Start {
    /// Decided: NVML works, or `--backend=nvml` and it does not.
    Done(Selection),
    /// nvidia-smi has to answer the probe first ([`Pending::finish`]).
    Probe(Pending),
}

/// A selection waiting for nvidia-smi's answer: for `--backend=nvidia-smi`, which uses it
/// anyway, the answer is only reported; for `auto` (NVML failed) it decides between
/// nvidia-smi and none.
pub struct Pending {
    /// `Auto` or `NvidiaSmi`.
    choice: Choice,
    /// `auto`: why NVML is not used.
    nvml_err: String,
    smi: Arc<NvidiaSmiBackend>,
}

/// Make NVML's part of the selection. `open_nvml` is [`crate::nvml::open`] in the binary (a
/// stand-in in tests).
pub fn start(
    choice: Choice,
    nvml_library: Option<&Path>,
    open_nvml: impl FnOnce(Option<&Path>) -> anyhow::Result<Box<dyn Backend>>,
    smi: Arc<NvidiaSmiBackend>,
) -> Start {
    let nvml_err = match choice {
        Choice::NvidiaSmi => {
            return Start::Probe(Pending {
                choice,
                nvml_err: String::new(),
                smi,
            })
        }
        Choice::Nvml | Choice::Auto => match open_nvml(nvml_library) {
            Ok(b) => {
                return Start::Done(Selection {
                    backend: Some(Arc::from(b)),
                    name: "nvml",
                    reason: if choice == Choice::Nvml {
                        reason::FORCED
                    } else {
                        reason::NVML_OK
                    },
                    problem: None,
                })
            }
            Err(e) => format!("NVML: {e:#}"),
        },
    };
    if choice == Choice::Nvml {
        return Start::Done(Selection {
            backend: None,
            name: "none",
            reason: reason::FORCED_UNAVAILABLE,
            problem: Some(nvml_err),
        });
    }
    Start::Probe(Pending {
        choice,
        nvml_err,
        smi,
    })
}

impl Pending {
    /// Probe nvidia-smi within `timeout` and conclude; the probe's error, if it failed, comes
    /// along (it is also in the selection's `problem`).
    pub fn finish(self, timeout: Duration) -> (Selection, Option<anyhow::Error>) {
        let probed = self.smi.probe(timeout);
        let smi: Arc<dyn Backend> = self.smi;
        let sel = match (self.choice, &probed) {
            (Choice::NvidiaSmi, _) => Selection {
                backend: Some(smi),
                name: "nvidia-smi",
                reason: reason::FORCED,
                problem: probed
                    .as_ref()
                    .err()
                    .map(|e| format!("nvidia-smi does not answer yet: {e:#}")),
            },
            (_, Ok(())) => Selection {
                backend: Some(smi),
                name: "nvidia-smi",
                reason: reason::FELL_BACK,
                problem: Some(format!("{}; fell back to nvidia-smi", self.nvml_err)),
            },
            (_, Err(e)) => Selection {
                backend: None,
                name: "none",
                reason: reason::NOTHING,
                problem: Some(format!("{}; nvidia-smi: {e:#}", self.nvml_err)),
            },
        };
        (sel, probed.err())
    }
}

/// Choose at once, probing nvidia-smi if need be (within `smi_timeout`).
pub fn select(
    choice: Choice,
    nvml_library: Option<&Path>,
    open_nvml: impl FnOnce(Option<&Path>) -> anyhow::Result<Box<dyn Backend>>,
    smi: NvidiaSmiBackend,
    smi_timeout: Duration,
) -> Selection {
    match start(choice, nvml_library, open_nvml, Arc::new(smi)) {
        Start::Done(sel) => sel,
        Start::Probe(p) => p.finish(smi_timeout).0,
    }
}

/// The one log line of the outcome: `msg="gpu backend selected" backend=... reason=...
/// detail=...`, at `warn` when no backend works.
pub fn log(sel: &Selection) {
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
}

enum State {
    /// Nobody has asked nvidia-smi yet.
    Pending(Pending),
    /// Being asked (by the `gpu` collector's first run); kept to stop it at shutdown.
    Probing(Arc<NvidiaSmiBackend>),
    Chosen(Arc<Selection>),
}

/// The selection the `backend` and `gpu` collectors share: made at start-up where NVML
/// decides, else by the `gpu` collector's first run.
pub struct Selector {
    state: Mutex<State>,
    /// When the selection began (start-up).
    since: Instant,
}

impl Selector {
    /// The selection begun by [`start`]; a decided one is logged now.
    pub fn new(start: Start) -> Selector {
        let state = match start {
            Start::Done(sel) => {
                log(&sel);
                State::Chosen(Arc::new(sel))
            }
            Start::Probe(p) => State::Pending(p),
        };
        Selector {
            state: Mutex::new(state),
            since: Instant::now(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The selection, once made.
    pub fn chosen(&self) -> Option<Arc<Selection>> {
        match &*self.state() {
            State::Chosen(sel) => Some(Arc::clone(sel)),
            _ => None,
        }
    }

    /// The selection, made now if need be (probing nvidia-smi within `timeout`, and logging
    /// the outcome). `Err`: the probe failed in this call and nvidia-smi is used anyway
    /// (`--backend=nvidia-smi`), or another thread is probing right now.
    pub fn choose(&self, timeout: Duration) -> anyhow::Result<Arc<Selection>> {
        let pending = {
            let mut st = self.state();
            match &*st {
                State::Chosen(sel) => return Ok(Arc::clone(sel)),
                State::Probing(_) => anyhow::bail!("the backend is being chosen"),
                State::Pending(p) => {
                    let smi = Arc::clone(&p.smi);
                    match std::mem::replace(&mut *st, State::Probing(smi)) {
                        State::Pending(p) => p,
                        _ => unreachable!("just matched"),
                    }
                }
            }
        };
        let (sel, probe_err) = pending.finish(timeout);
        log(&sel);
        let sel = Arc::new(sel);
        *self.state() = State::Chosen(Arc::clone(&sel));
        match probe_err {
            Some(e) if sel.backend.is_some() => Err(e.context("nvidia-smi does not answer yet")),
            _ => Ok(sel),
        }
    }

    /// While the selection waits for nvidia-smi, what for:
    /// `choosing a backend: nvidia-smi has not answered for 3 s`.
    pub fn waiting(&self) -> Option<String> {
        match &*self.state() {
            State::Chosen(_) => None,
            State::Pending(_) | State::Probing(_) => Some(format!(
                "choosing a backend: nvidia-smi has not answered for {} s",
                self.since.elapsed().as_secs()
            )),
        }
    }

    /// The exporter is stopping: stop the probe or the chosen backend's read in progress.
    pub fn stop(&self) {
        match &*self.state() {
            State::Pending(p) => p.smi.stop(),
            State::Probing(smi) => smi.stop(),
            State::Chosen(sel) => {
                if let Some(b) = &sel.backend {
                    b.stop();
                }
            }
        }
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
    fn nvml_decides_at_once_and_nvidia_smi_in_the_first_run() {
        let sel = Selector::new(start(
            Choice::Auto,
            None,
            ok,
            Arc::new(smi("/nonexistent/nvidia-smi")),
        ));
        assert_eq!(sel.chosen().unwrap().name, "nvml");
        assert_eq!(sel.waiting(), None);

        let sel = Selector::new(start(
            Choice::Auto,
            None,
            missing,
            Arc::new(smi("/nonexistent/nvidia-smi")),
        ));
        assert!(sel.chosen().is_none());
        assert_eq!(
            sel.waiting().as_deref(),
            Some("choosing a backend: nvidia-smi has not answered for 0 s")
        );
        // auto: a failed probe means no backend, which is no error of the choice itself.
        let chosen = sel.choose(T).unwrap();
        assert_eq!((chosen.name, chosen.reason), ("none", "nothing_available"));
        assert_eq!(sel.chosen().unwrap().name, "none");
        assert_eq!(sel.waiting(), None);

        // Forced: nvidia-smi is used anyway; the run that probed fails with the probe's error,
        // later ones get the selection.
        let sel = Selector::new(start(
            Choice::NvidiaSmi,
            None,
            ok,
            Arc::new(smi("/nonexistent/nvidia-smi")),
        ));
        assert!(sel.chosen().is_none());
        let err = format!("{:#}", sel.choose(T).unwrap_err());
        assert!(err.starts_with("nvidia-smi does not answer yet: "), "{err}");
        let chosen = sel.choose(T).unwrap();
        assert_eq!((chosen.name, chosen.reason), ("nvidia-smi", "forced"));
        assert!(chosen
            .problem
            .as_deref()
            .unwrap()
            .contains("/nonexistent/nvidia-smi"));
    }

    #[test]
    fn a_stopped_selection_does_not_wait_for_nvidia_smi() {
        let sel = Selector::new(start(
            Choice::NvidiaSmi,
            None,
            ok,
            Arc::new(smi("/bin/sleep")),
        ));
        sel.stop();
        let begin = Instant::now();
        let err = format!("{:#}", sel.choose(Duration::from_secs(30)).unwrap_err());
        assert!(
            begin.elapsed() < Duration::from_secs(1),
            "{:?}",
            begin.elapsed()
        );
        assert!(err.contains("shutting down"), "{err}");
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
