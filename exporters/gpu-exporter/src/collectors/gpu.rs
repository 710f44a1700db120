//! Collector `gpu`: reads the selected backend (NVML or nvidia-smi) and writes every
//! `nvidia_gpu_*` series of `docs/metrics.md` ("gpu-exporter") through [`crate::metrics::emit`],
//! plus the `DCGM_FI_DEV_*` family with `--metrics.dcgm-compat`.
//!
//! - nvidia-smi runs in the background (`Mode::Background`, every `--collect.interval`, within
//!   `--nvidia-smi.timeout`); scrapes serve the last result and its age. NVML is read inside
//!   each scrape (`Mode::OnScrape`): it answers in microseconds.
//! - Runtime-suspended GPUs are not woken: before calling the backend the collector checks
//!   `<sysfs>/bus/pci/devices/<bus id>/power/runtime_status` of every GPU it saw in the last
//!   successful read. If all are `suspended` the backend is not called: the run serves
//!   `nvidia_gpu_suspended 1`, `nvidia_gpu_info` and `nvidia_gpu_devices` from that last read.
//!   Before the first successful read no bus id is known: the collector then lists the NVIDIA
//!   display controllers in `<sysfs>/bus/pci/devices` (vendor 0x10de, class 0x03xxxx) and,
//!   if every one is `suspended`, serves only `nvidia_gpu_devices` and waits for one to wake.
//!   Limitations: when only some GPUs sleep (a laptop with two dGPUs) the backend is called
//!   and wakes them, since neither NVML nor nvidia-smi can be asked about some GPUs only
//!   without opening the others; their series then say `nvidia_gpu_suspended 1` for that run.
//!   Whether initialising NVML at start-up wakes a sleeping GPU depends on the driver; only a
//!   laptop can tell.
//! - With no backend at all the run writes `nvidia_gpu_devices 0` and fails with a hint naming
//!   the fixes, so `/health` shows why.
//! - Where the backend depends on nvidia-smi's answer to the probe (`--backend=nvidia-smi`, or
//!   `auto` without NVML), the first run makes the selection ([`Source::Choose`]) and reads
//!   with what is left of its timeout; until it returns nothing is served for the GPUs (not
//!   even `nvidia_gpu_devices`), and the component's detail says what it waits for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use odin_common::{Collector, Context, Mode, Sink};

use crate::backend_select::{self, Selector};
use crate::dcgm::DcgmOptions;
use crate::metrics::{self, EmitOptions};
use crate::reading::{Backend, GpuReading, Snapshot};
use crate::suspend;

/// Where readings come from.
pub enum Source {
    Backend(Arc<dyn Backend>),
    /// No backend works; every run fails with this one-line hint.
    Unavailable {
        hint: String,
    },
    /// nvidia-smi or nothing, to be chosen by the first run (which probes nvidia-smi within
    /// the run's timeout, then reads with what is left of it); then as the two above.
    Choose(Arc<Selector>),
}

/// What the collector remembers between runs.
#[derive(Default)]
struct State {
    /// Identity of the GPUs of the last successful read.
    known: Vec<GpuReading>,
    cuda_version: Option<String>,
    /// XID counters of the last read, per GPU index, to tell which code came last.
    xid_seen: BTreeMap<u32, BTreeMap<u64, u64>>,
    /// Most recent XID code per GPU index (`DCGM_FI_DEV_XID_ERRORS`).
    last_xid: BTreeMap<u32, u64>,
}

pub struct GpuCollector {
    source: Source,
    mode: Mode,
    /// `Some(hostname)` with `--metrics.dcgm-compat`.
    dcgm_hostname: Option<String>,
    state: Mutex<State>,
}

impl GpuCollector {
    /// `mode`: `Background` for nvidia-smi (and for no backend, so `/health` reports the
    /// problem from the start), `OnScrape` for NVML.
    pub fn new(source: Source, mode: Mode, dcgm_hostname: Option<String>) -> GpuCollector {
        GpuCollector {
            source,
            mode,
            dcgm_hostname,
            state: Mutex::new(State::default()),
        }
    }

    fn options(&self, ctx: &Context, suspended: BTreeMap<u32, bool>, st: &State) -> EmitOptions {
        let xid_supported = matches!(&self.source, Source::Backend(b) if b.name() == "nvml");
        EmitOptions {
            procfs: Some(ctx.procfs.clone()),
            suspended,
            xid_supported,
            dcgm: self.dcgm_hostname.as_ref().map(|h| DcgmOptions {
                hostname: h.clone(),
                last_xid: st.last_xid.clone(),
            }),
        }
    }
}

/// `runtime_status` of each GPU (by index) that has a bus id; GPUs whose status cannot be
/// read are left out.
fn suspended_states(ctx: &Context, gpus: &[GpuReading]) -> BTreeMap<u32, bool> {
    gpus.iter()
        .filter_map(|g| {
            let s = suspend::runtime_suspended(&ctx.sysfs, g.pci_bus_id.as_deref()?)?;
            Some((g.index?, s))
        })
        .collect()
}

impl State {
    fn track_xids(&mut self, snap: &Snapshot) {
        for g in &snap.gpus {
            let Some(i) = g.index else { continue };
            let before = self.xid_seen.entry(i).or_default();
            // The backend's own record of the last code wins (NVML sees events in order).
            // Without one, of the codes whose count went up since the last read the highest
            // stands for "the last XID" (counters do not say which came last in one interval).
            if let Some(code) = g.last_xid {
                self.last_xid.insert(i, code);
            } else if let Some(code) = g
                .xid_errors
                .iter()
                .filter(|(c, n)| !matches!(before.get(c), Some(b) if *n <= b))
                .map(|(c, _)| *c)
                .next_back()
            {
                self.last_xid.insert(i, code);
            }
            *before = g.xid_errors.clone();
        }
    }
}

impl Collector for GpuCollector {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let deadline = Instant::now() + ctx.timeout;
        let chosen;
        let backend = match &self.source {
            Source::Backend(b) => b,
            Source::Unavailable { hint } => {
                metrics::write_device_count(out, 0);
                anyhow::bail!("{hint}");
            }
            Source::Choose(selector) => {
                chosen = selector.choose(ctx.timeout)?;
                match &chosen.backend {
                    Some(b) => b,
                    None => {
                        metrics::write_device_count(out, 0);
                        let hint = backend_select::hint(chosen.problem.as_deref().unwrap_or(""));
                        anyhow::bail!("{hint}");
                    }
                }
            }
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());

        if st.known.is_empty() {
            // No read yet, so no bus ids: ask sysfs which NVIDIA GPUs there are. If every one
            // sleeps, don't wake them for a first read (a laptop's dGPU); read once one wakes.
            let found = suspend::nvidia_gpus(&ctx.sysfs);
            if !found.is_empty() && found.iter().all(|(_, s)| *s == Some(true)) {
                metrics::write_device_count(out, found.len());
                return Ok(());
            }
        }
        let before = suspended_states(ctx, &st.known);
        if !st.known.is_empty() && before.len() == st.known.len() && before.values().all(|&s| s) {
            // Every GPU sleeps: don't wake them to be measured.
            let snap = Snapshot {
                gpus: st.known.clone(),
                cuda_version: st.cuda_version.clone(),
                ..Snapshot::default()
            };
            let opts = self.options(ctx, before, &st);
            metrics::emit(&snap, &opts, out);
            return Ok(());
        }

        let snap = backend.read(deadline.saturating_duration_since(Instant::now()))?;
        for p in &snap.problems {
            out.item_error(p.clone());
        }
        // GPUs known before keep the status seen before the read (the read may have woken
        // them); new ones are checked now.
        let mut suspended = suspended_states(ctx, &snap.gpus);
        for (i, s) in &before {
            if snap.gpus.iter().any(|g| g.index == Some(*i)) {
                suspended.insert(*i, *s);
            }
        }
        st.known = snap.gpus.iter().map(GpuReading::identity).collect();
        st.cuda_version = snap.cuda_version.clone();
        st.track_xids(&snap);
        let opts = self.options(ctx, suspended, &st);
        metrics::emit(&snap, &opts, out);
        Ok(())
    }

    /// While the backend is being chosen: what the selection waits for.
    fn detail(&self) -> Option<String> {
        match &self.source {
            Source::Choose(selector) => selector.waiting(),
            _ => None,
        }
    }

    /// Kill the nvidia-smi run in progress (the probe or a query) so that shutdown need not
    /// wait for its timeout.
    fn stop(&self) {
        match &self.source {
            Source::Backend(b) => b.stop(),
            Source::Choose(selector) => selector.stop(),
            Source::Unavailable { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Two GPUs; counts its reads.
    struct Fake {
        reads: Arc<AtomicUsize>,
        xids: Mutex<Vec<BTreeMap<u64, u64>>>,
    }

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            "nvml"
        }
        fn read(&self, _: Duration) -> anyhow::Result<Snapshot> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let xid = {
                let mut x = self.xids.lock().unwrap();
                if x.len() > 1 {
                    x.remove(0)
                } else {
                    x.first().cloned().unwrap_or_default()
                }
            };
            let gpu = |i: u32, bus: &str| GpuReading {
                index: Some(i),
                uuid: Some(format!("GPU-{i}")),
                name: Some("Laptop GPU".into()),
                pci_bus_id: Some(bus.into()),
                temperature_celsius: Some(50.0 + f64::from(i)),
                xid_errors: if i == 0 { xid.clone() } else { BTreeMap::new() },
                ..GpuReading::default()
            };
            Ok(Snapshot {
                gpus: vec![gpu(0, "00000000:01:00.0"), gpu(1, "00000000:02:00.0")],
                cuda_version: Some("12.4".into()),
                ..Snapshot::default()
            })
        }
    }

    fn status(root: &Path, dev: &str, s: &str) {
        let p = root.join("bus/pci/devices").join(dev).join("power");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("runtime_status"), format!("{s}\n")).unwrap();
    }

    fn render(sink: Sink) -> String {
        let (fams, _) = sink.into_parts();
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &fams, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn setup(
        xids: Vec<BTreeMap<u64, u64>>,
    ) -> (GpuCollector, Arc<AtomicUsize>, Context, tempfile::TempDir) {
        let reads = Arc::new(AtomicUsize::new(0));
        let fake = Fake {
            reads: Arc::clone(&reads),
            xids: Mutex::new(xids),
        };
        let c = GpuCollector::new(
            Source::Backend(Arc::new(fake)),
            Mode::OnScrape,
            Some("node-a".into()),
        );
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            procfs: dir.path().join("proc"),
            sysfs: dir.path().join("sys"),
            timeout: Duration::from_secs(1),
        };
        (c, reads, ctx, dir)
    }

    fn run(c: &GpuCollector, ctx: &Context) -> String {
        let mut sink = Sink::new(crate::SPEC.prefix);
        c.collect(ctx, &mut sink).unwrap();
        render(sink)
    }

    #[test]
    fn before_the_first_read_sleeping_gpus_found_in_sysfs_are_not_woken() {
        let (c, reads, ctx, _dir) = setup(vec![]);
        let dev = ctx.sysfs.join("bus/pci/devices/0000:01:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x10de\n").unwrap();
        std::fs::write(dev.join("class"), "0x030000\n").unwrap();
        status(&ctx.sysfs, "0000:01:00.0", "suspended");
        let text = run(&c, &ctx);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            0,
            "the backend was not called"
        );
        assert_eq!(
            text.trim_end().lines().last(),
            Some("nvidia_gpu_devices 1"),
            "{text}"
        );
        status(&ctx.sysfs, "0000:01:00.0", "active");
        let text = run(&c, &ctx);
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read once the GPU woke");
        assert!(text.contains("nvidia_gpu_temperature_celsius{"), "{text}");
    }

    #[test]
    fn all_suspended_skips_the_backend_partial_does_not() {
        let (c, reads, ctx, _dir) = setup(vec![]);
        let sys = ctx.sysfs.clone();
        status(&sys, "0000:01:00.0", "active");
        status(&sys, "0000:02:00.0", "active");
        let text = run(&c, &ctx);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(
            text.contains("nvidia_gpu_suspended{gpu=\"0\",uuid=\"GPU-0\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("nvidia_gpu_temperature_celsius{gpu=\"1\",uuid=\"GPU-1\"} 51\n"));

        // Both asleep: no read, identity and suspended only.
        status(&sys, "0000:01:00.0", "suspended");
        status(&sys, "0000:02:00.0", "suspended");
        let text = run(&c, &ctx);
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the backend must not be called"
        );
        assert!(
            text.contains("nvidia_gpu_suspended{gpu=\"0\",uuid=\"GPU-0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nvidia_gpu_suspended{gpu=\"1\",uuid=\"GPU-1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("nvidia_gpu_devices 2\n"), "{text}");
        assert!(text.contains(
            "nvidia_gpu_info{gpu=\"1\",uuid=\"GPU-1\",name=\"Laptop GPU\",pci_bus_id=\"00000000:02:00.0\",driver_version=\"\",vbios_version=\"\",compute_capability=\"\",serial=\"\",cuda_version=\"12.4\"} 1\n"
        ), "{text}");
        assert!(!text.contains("nvidia_gpu_temperature_celsius"), "{text}");
        assert!(!text.contains("DCGM_FI_DEV_GPU_TEMP"), "{text}");

        // One awake: the backend is read; the sleeping one is reported as it was found.
        status(&sys, "0000:02:00.0", "active");
        let text = run(&c, &ctx);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert!(
            text.contains("nvidia_gpu_suspended{gpu=\"0\",uuid=\"GPU-0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nvidia_gpu_suspended{gpu=\"1\",uuid=\"GPU-1\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("nvidia_gpu_temperature_celsius{gpu=\"0\",uuid=\"GPU-0\"} 50\n"));
    }

    #[test]
    fn no_sysfs_means_no_suspended_series_and_reads_go_on() {
        let (c, reads, ctx, _dir) = setup(vec![]);
        let text = run(&c, &ctx);
        let text2 = run(&c, &ctx);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert!(!text.contains("nvidia_gpu_suspended"), "{text}");
        assert_eq!(text, text2);
    }

    #[test]
    fn last_xid_follows_the_counters() {
        let counts = |v: &[(u64, u64)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        let (c, _, ctx, _dir) = setup(vec![
            counts(&[]),
            counts(&[(79, 1)]),
            counts(&[(13, 2), (79, 1)]),
            counts(&[(13, 2), (79, 1)]),
        ]);
        let dcgm = |t: &str, gpu: &str| -> String {
            t.lines()
                .find(|l| {
                    l.starts_with("DCGM_FI_DEV_XID_ERRORS{")
                        && l.contains(&format!("gpu=\"{gpu}\""))
                })
                .unwrap_or_else(|| panic!("{t}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let t = run(&c, &ctx);
        assert_eq!(dcgm(&t, "0"), "0");
        let t = run(&c, &ctx);
        assert_eq!(dcgm(&t, "0"), "79");
        assert!(
            t.contains("nvidia_gpu_xid_errors_total{gpu=\"0\",uuid=\"GPU-0\",xid=\"79\"} 1\n"),
            "{t}"
        );
        let t = run(&c, &ctx);
        assert_eq!(dcgm(&t, "0"), "13");
        let t = run(&c, &ctx);
        assert_eq!(dcgm(&t, "0"), "13", "unchanged counters keep the last code");
        assert_eq!(dcgm(&t, "1"), "0");
    }

    #[test]
    fn unavailable_fails_with_the_hint_and_zero_gpus() {
        let c = GpuCollector::new(
            Source::Unavailable {
                hint: "no GPU backend available (x)".into(),
            },
            Mode::OnScrape,
            None,
        );
        let ctx = Context {
            procfs: "/nonexistent".into(),
            sysfs: "/nonexistent".into(),
            timeout: Duration::from_secs(1),
        };
        let mut sink = Sink::new(crate::SPEC.prefix);
        let err = c.collect(&ctx, &mut sink).unwrap_err();
        assert_eq!(err.to_string(), "no GPU backend available (x)");
        assert_eq!(render(sink), "# HELP nvidia_gpu_devices GPUs the backend sees.\n# TYPE nvidia_gpu_devices gauge\nnvidia_gpu_devices 0\n");
    }
}
