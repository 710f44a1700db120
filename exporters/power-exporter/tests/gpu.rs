//! The `gpu` collector on gpu-exporter's fakes: its fake `libnvidia-ml.so` (8 GPUs, values
//! from the L40S capture) and its fake nvidia-smi answering from the real captures (read in
//! `../shared`, never copied). Values are checked against what gpu-exporter's own `gpu`
//! collector exports for the same fake; the fake's call log shows what each read asks; a
//! fixture sysfs puts GPUs to sleep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpu_exporter::backend_select::Choice;
use gpu_exporter::collectors::gpu::{GpuCollector, Source};
use gpu_exporter::nvidia_smi::backend::NvidiaSmiBackend;
use gpu_exporter::nvidia_smi::parse::parse_query_gpu;
use gpu_exporter::nvidia_smi::table::Layout;
use gpu_exporter::power::PowerConfig;
use gpu_exporter::reading::GpuReading;
use gpu_exporter::testing::capture::{capture_path, Capture, Phase, CAPTURES};
use gpu_exporter::testing::fake_nvml::{data_file, replicate, FakeNvml, NvmlOnly, Variant};
use odin_common::{Collector, Context, Mode, Sink};
use odin_testkit::{assert_promtool_clean, sample, sink_label_values, sink_value, value, Exe};
use power_exporter::collectors::gpu::Gpu;

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_power-exporter"),
    env_prefix: "POWER_EXPORTER_",
};

const POWER: &str = "power_gpu_power_watts";
const ENERGY: &str = "power_gpu_energy_joules_total";

/// Eight L40S GPUs (the capture's load phase) with distinct UUIDs and bus ids
/// `00000000:1N:00.0`, and the fake's data for them.
fn eight_gpus(energy_follows_power: bool) -> (Vec<GpuReading>, String) {
    let cap = Capture::load(CAPTURES[4]);
    let smi = parse_query_gpu(cap.query_gpu(Phase::Load), Layout::Header).unwrap();
    let gpus = replicate(&smi.items[0], 8);
    let mut data = data_file(&gpus, NvmlOnly::for_gpu, &[], &[], Some(13010));
    if energy_follows_power {
        data.push_str("energy_follows_power=1\n");
    }
    (gpus, data)
}

/// A scratch sysfs (and procfs) for one test.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        Tree { dir }
    }
    fn ctx(&self) -> Context {
        Context {
            procfs: self.dir.path().join("proc"),
            sysfs: self.dir.path().join("sys"),
            timeout: Duration::from_secs(5),
        }
    }
    /// An NVIDIA display controller at `dev` (`0000:13:00.0`) with this `runtime_status`.
    fn gpu(&self, dev: &str, status: &str) {
        let d = self.dir.path().join("sys/bus/pci/devices").join(dev);
        std::fs::create_dir_all(d.join("power")).unwrap();
        std::fs::write(d.join("vendor"), "0x10de\n").unwrap();
        std::fs::write(d.join("class"), "0x030200\n").unwrap();
        std::fs::write(d.join("power/runtime_status"), format!("{status}\n")).unwrap();
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn nvml_collector(fake: &FakeNvml) -> Gpu {
    Gpu::new(
        PowerConfig {
            backend: Choice::Nvml,
            nvml_library: Some(fake.lib.clone()),
            smi_command: vec!["/nonexistent/nvidia-smi".into()],
        },
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
}

/// One run of power-exporter's collector (the fake's environment set, for its first open).
fn run(c: &Gpu, fake: Option<&FakeNvml>, ctx: &Context) -> Sink {
    let mut sink = Sink::new("power");
    let result = match fake {
        Some(f) => f.with_env(None, None, |_| c.collect(ctx, &mut sink)),
        None => c.collect(ctx, &mut sink),
    };
    result.unwrap();
    sink
}

/// One run of gpu-exporter's own `gpu` collector on `source`.
fn gpu_exporter_run(source: Source, ctx: &Context) -> Sink {
    let c = GpuCollector::new(source, Mode::OnScrape, None);
    let mut sink = Sink::new("nvidia_gpu");
    c.collect(ctx, &mut sink).unwrap();
    sink
}

fn labels(g: &GpuReading) -> [(&str, &str); 3] {
    [
        ("gpu", "0"),
        ("uuid", g.uuid.as_deref().unwrap()),
        ("name", g.name.as_deref().unwrap()),
    ]
}

fn with_index<'a>(l: [(&'a str, &'a str); 3], index: &'a str) -> [(&'a str, &'a str); 3] {
    [("gpu", index), l[1], l[2]]
}

fn calls_of(fake: &FakeNvml) -> Vec<String> {
    fake.calls()
}

/// No `power_gpu_*` sample at all.
fn no_series(sink: &Sink) -> bool {
    [POWER, ENERGY]
        .iter()
        .all(|f| sink_label_values(sink, f, "gpu").is_empty())
}

#[test]
fn nvml_energy_counter_matches_gpu_exporter_and_each_read_is_one_call_per_gpu() {
    let (gpus, data) = eight_gpus(false);
    let fake = FakeNvml::new(Variant::Current, &data).log_calls();
    let tree = Tree::new();
    let ctx = tree.ctx();
    let c = nvml_collector(&fake);

    let first = run(&c, Some(&fake), &ctx);
    assert_eq!(sink_label_values(&first, ENERGY, "gpu").len(), 8);
    assert!(
        sink_label_values(&first, POWER, "gpu").is_empty(),
        "no power before a second counter reading"
    );
    let theirs = gpu_exporter_run(Source::Backend(Arc::from(fake.open())), &ctx);
    for (i, g) in gpus.iter().enumerate() {
        let index = i.to_string();
        let l = with_index(labels(g), &index);
        let mine = sink_value(&first, ENERGY, &l).unwrap();
        let want = NvmlOnly::for_gpu(i as u32).energy_mj as f64 / 1000.0;
        assert_eq!(mine, want, "gpu {i}");
        let their = sink_value(
            &theirs,
            "nvidia_gpu_energy_consumed_joules_total",
            &[("gpu", &index), ("uuid", g.uuid.as_deref().unwrap())],
        );
        assert_eq!(Some(mine), their, "gpu {i}: gpu-exporter says otherwise");
    }

    fake.clear_calls();
    std::thread::sleep(Duration::from_millis(50));
    let second = run(&c, None, &ctx);
    let calls = calls_of(&fake);
    let want: Vec<String> = (0..8)
        .map(|i| format!("nvmlDeviceGetTotalEnergyConsumption {i}"))
        .collect();
    assert_eq!(
        calls, want,
        "a read asks each GPU for its energy and nothing else"
    );
    // The fake's counter stands still: 0 W.
    for (i, g) in gpus.iter().enumerate() {
        let index = i.to_string();
        assert_eq!(
            sink_value(&second, POWER, &with_index(labels(g), &index)),
            Some(0.0)
        );
    }
    assert_eq!(c.detail().as_deref(), Some("nvml: 8 GPU(s) read"));
}

#[test]
fn nvml_power_from_the_counter_agrees_with_gpu_exporters_power_draw() {
    let (gpus, data) = eight_gpus(true);
    let fake = FakeNvml::new(Variant::Current, &data);
    let tree = Tree::new();
    let ctx = tree.ctx();
    let c = nvml_collector(&fake);
    run(&c, Some(&fake), &ctx);
    std::thread::sleep(Duration::from_millis(400));
    let mine = run(&c, None, &ctx);
    let theirs = gpu_exporter_run(Source::Backend(Arc::from(fake.open())), &ctx);
    for (i, g) in gpus.iter().enumerate() {
        let index = i.to_string();
        let power = sink_value(&mine, POWER, &with_index(labels(g), &index)).unwrap();
        let draw = sink_value(
            &theirs,
            "nvidia_gpu_power_draw_watts",
            &[("gpu", &index), ("uuid", g.uuid.as_deref().unwrap())],
        )
        .unwrap();
        assert_eq!(Some(draw), g.power_draw_watts, "the capture's value");
        assert!(
            (power - draw).abs() <= draw * 0.02,
            "gpu {i}: {power} W from the counter, gpu-exporter says {draw} W"
        );
    }
}

#[test]
fn nvml_without_an_energy_counter_reads_the_power_usage() {
    let (gpus, data) = eight_gpus(false);
    let fake = FakeNvml::new(Variant::Current, &data).log_calls();
    let tree = Tree::new();
    let ctx = tree.ctx();
    let c = nvml_collector(&fake);
    let rule = "nvmlDeviceGetTotalEnergyConsumption@2:3";
    let mut first = Sink::new("power");
    fake.with_env(Some(rule), None, |_| c.collect(&ctx, &mut first))
        .unwrap();
    let their = fake.open_with(Some(rule), None).unwrap();
    let theirs = gpu_exporter_run(Source::Backend(Arc::from(their)), &ctx);
    let l = with_index(labels(&gpus[2]), "2");
    let draw = sink_value(
        &theirs,
        "nvidia_gpu_power_draw_watts",
        &[("gpu", "2"), ("uuid", gpus[2].uuid.as_deref().unwrap())],
    );
    assert!(draw.is_some());
    assert_eq!(sink_value(&first, POWER, &l), draw);
    assert_eq!(sink_value(&first, ENERGY, &l), None);
    assert!(first.item_errors().is_empty(), "{:?}", first.item_errors());

    fake.clear_calls();
    run(&c, None, &ctx);
    let calls = calls_of(&fake);
    assert_eq!(calls.len(), 8, "{calls:?}");
    assert!(
        calls.contains(&"nvmlDeviceGetPowerUsage 2".to_owned()),
        "{calls:?}"
    );
    assert!(!calls.contains(&"nvmlDeviceGetTotalEnergyConsumption 2".to_owned()));
}

#[test]
fn nvml_never_asks_a_suspended_gpu() {
    let (gpus, data) = eight_gpus(false);
    let fake = FakeNvml::new(Variant::Current, &data).log_calls();
    let tree = Tree::new();
    let ctx = tree.ctx();
    // Before the GPUs are known: every NVIDIA GPU sysfs lists sleeps, so NVML is not asked.
    for i in 0..8 {
        tree.gpu(&format!("0000:{:02x}:00.0", 0x10 + i), "suspended");
    }
    let c = nvml_collector(&fake);
    let sink = run(&c, Some(&fake), &ctx);
    assert!(no_series(&sink));
    assert_eq!(calls_of(&fake), Vec::<String>::new(), "no GPU asked");
    let detail = c.detail().unwrap();
    assert!(
        detail.contains("runtime-suspended, not woken: 0000:10:00.0, 0000:11:00.0"),
        "{detail}"
    );

    // All but GPU 3 wake: the GPUs are learned, GPU 3 is left alone.
    for i in 0..8 {
        if i != 3 {
            tree.gpu(&format!("0000:{:02x}:00.0", 0x10 + i), "active");
        }
    }
    run(&c, None, &ctx);
    fake.clear_calls();
    let sink = run(&c, None, &ctx);
    let calls = calls_of(&fake);
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(calls.iter().all(|l| !l.ends_with(" 3")), "{calls:?}");
    assert_eq!(
        sink_label_values(&sink, ENERGY, "gpu"),
        ["0", "1", "2", "4", "5", "6", "7"]
    );
    let detail = c.detail().unwrap();
    assert_eq!(
        detail,
        "nvml: 7 GPU(s) read; runtime-suspended, not woken: gpu 3 (00000000:13:00.0)"
    );

    // GPU 3 wakes: read again, power from its second reading on.
    tree.gpu("0000:13:00.0", "active");
    let sink = run(&c, None, &ctx);
    let l = with_index(labels(&gpus[3]), "3");
    assert!(sink_value(&sink, ENERGY, &l).is_some());
    assert_eq!(sink_value(&sink, POWER, &l), None);
    let sink = run(&c, None, &ctx);
    assert_eq!(sink_value(&sink, POWER, &l), Some(0.0));
}

// ---- nvidia-smi ----

fn fake_smi() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpu-exporter/tests/fake-nvidia-smi")
}

/// The fake nvidia-smi on capture `i`, load phase, as command words (no global environment),
/// logging every call's first argument to `log`.
fn smi_command(i: usize, log: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo \"$1\" >> '{}'; exec env FAKE_NVIDIA_SMI_CAPTURE='{}' \
             FAKE_NVIDIA_SMI_SECTION=load '{}' \"$@\"",
            log.display(),
            capture_path(CAPTURES[i]).display(),
            fake_smi().display()
        ),
        "fake-nvidia-smi".into(),
    ]
}

fn smi_collector(command: Vec<String>) -> Gpu {
    Gpu::new(
        PowerConfig {
            backend: Choice::NvidiaSmi,
            nvml_library: None,
            smi_command: command,
        },
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
}

#[test]
fn nvidia_smi_power_agrees_with_gpu_exporter_on_every_capture() {
    for (i, file) in CAPTURES.iter().enumerate() {
        let tree = Tree::new();
        let ctx = tree.ctx();
        let command = smi_command(i, &tree.path("calls"));
        let c = smi_collector(command.clone());
        let mine = run(&c, None, &ctx);
        assert!(
            mine.item_errors().is_empty(),
            "{file}: {:?}",
            mine.item_errors()
        );
        let theirs = gpu_exporter_run(
            Source::Backend(Arc::new(NvidiaSmiBackend::new(command))),
            &ctx,
        );
        let indexes = sink_label_values(&theirs, "nvidia_gpu_power_draw_watts", "gpu");
        let uuids = sink_label_values(&theirs, "nvidia_gpu_power_draw_watts", "uuid");
        assert!(!indexes.is_empty(), "{file}");
        assert_eq!(sink_label_values(&mine, POWER, "gpu"), indexes, "{file}");
        assert_eq!(sink_label_values(&mine, POWER, "uuid"), uuids, "{file}");
        for (index, uuid) in indexes.iter().zip(&uuids) {
            let draw = sink_value(
                &theirs,
                "nvidia_gpu_power_draw_watts",
                &[("gpu", index), ("uuid", uuid)],
            );
            let name =
                sink_label_values(&mine, POWER, "name")[index.parse::<usize>().unwrap()].clone();
            assert!(!name.is_empty(), "{file}");
            let l = [("gpu", &**index), ("uuid", &**uuid), ("name", &*name)];
            assert_eq!(sink_value(&mine, POWER, &l), draw, "{file} gpu {index}");
        }
        assert!(sink_label_values(&mine, ENERGY, "gpu").is_empty(), "{file}");
    }
}

#[test]
fn nvidia_smi_is_not_run_while_the_only_gpu_sleeps() {
    // RTX 4080 SUPER at 00000000:01:00.0.
    let tree = Tree::new();
    let ctx = tree.ctx();
    tree.gpu("0000:01:00.0", "active");
    let c = smi_collector(smi_command(1, &tree.path("calls")));
    let awake = run(&c, None, &ctx);
    assert_eq!(sink_label_values(&awake, POWER, "gpu"), ["0"]);
    let runs = || {
        std::fs::read_to_string(tree.path("calls"))
            .unwrap()
            .lines()
            .count()
    };
    let before = runs();

    tree.gpu("0000:01:00.0", "suspended");
    let asleep = run(&c, None, &ctx);
    assert!(no_series(&asleep));
    assert_eq!(runs(), before, "nvidia-smi ran while the GPU was suspended");
    assert_eq!(
        c.detail().as_deref(),
        Some("nvidia-smi: 0 GPU(s) read; runtime-suspended, not woken: gpu 0 (00000000:01:00.0)")
    );

    tree.gpu("0000:01:00.0", "active");
    let again = run(&c, None, &ctx);
    assert_eq!(sink_label_values(&again, POWER, "gpu"), ["0"]);
    assert_eq!(runs(), before + 1);
}

// ---- the binary ----

#[test]
fn nothing_there_is_healthy_and_says_so() {
    let tree = Tree::new();
    let mut args = odin_testkit::tree_args(tree.dir.path());
    args.extend(
        [
            "--no-collector.rapl",
            "--no-collector.battery",
            "--no-collector.thermal",
            "--no-collector.hwmon",
            "--gpu.nvml-library=/nonexistent/libnvidia-ml.so.1",
            "--gpu.nvidia-smi-command=/nonexistent/nvidia-smi",
        ]
        .map(String::from),
    );
    let out = EXPORTER.once(&args, &[]);
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{body}");
    assert_eq!(
        value(&body, r#"power_collector_success{collector="gpu"}"#),
        1.0
    );
    assert!(!body.contains("power_gpu_"), "{body}");

    let e = EXPORTER.start(&args, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.get("/ready").status != 200 {
        assert!(std::time::Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = e.get("/health").json();
    assert_eq!(health["status"], "healthy", "{health}");
    let detail = health["components"]["gpu"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("no GPU backend: NVML: NVML library not found"),
        "{detail}"
    );
    assert!(detail.contains("nvidia-smi: cannot run"), "{detail}");
}

#[test]
fn a_named_backend_that_is_missing_fails_the_run() {
    let tree = Tree::new();
    let c = Gpu::new(
        PowerConfig {
            backend: Choice::NvidiaSmi,
            nvml_library: None,
            smi_command: vec!["/nonexistent/nvidia-smi".into()],
        },
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    let mut sink = Sink::new("power");
    let e = c.collect(&tree.ctx(), &mut sink).unwrap_err().to_string();
    assert!(
        e.starts_with("--gpu.backend=nvidia-smi: nvidia-smi: cannot run"),
        "{e}"
    );
}

#[test]
fn once_through_the_fake_nvidia_smi_is_promtool_clean() {
    let tree = Tree::new();
    let mut args = odin_testkit::tree_args(tree.dir.path());
    for other in ["rapl", "battery", "thermal", "hwmon"] {
        args.push(format!("--no-collector.{other}"));
    }
    args.push("--gpu.backend=nvidia-smi".into());
    args.push(format!("--gpu.nvidia-smi-command={}", fake_smi().display()));
    let capture = capture_path(CAPTURES[2]).display().to_string();
    let out = EXPORTER.once(&args, &[("FAKE_NVIDIA_SMI_CAPTURE", &capture)]);
    let body = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{body}");
    let cap = Capture::load(CAPTURES[2]);
    let smi = parse_query_gpu(cap.query_gpu(Phase::Idle), Layout::Header).unwrap();
    let g = &smi.items[0];
    let series = format!(
        "power_gpu_power_watts{{gpu=\"0\",uuid=\"{}\",name=\"{}\"}}",
        g.uuid.as_deref().unwrap(),
        g.name.as_deref().unwrap()
    );
    assert_eq!(sample(&body, &series), g.power_draw_watts, "{body}");
    assert_promtool_clean(&body);
}
