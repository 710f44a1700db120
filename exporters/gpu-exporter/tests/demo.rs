//! The repository's own demo data (`demo/odin-demo.txt`, synthetic): the fake nvidia-smi
//! answers from it, and gpu-exporter reads two GPUs from it in both sections, as
//! `scripts/run-stack.sh` does in its GPU demo mode.

use std::path::PathBuf;
use std::process::Command;

use odin_testkit::{assert_promtool_clean, label_values, value, Exe};

const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_gpu-exporter"),
    env_prefix: "GPU_EXPORTER_",
};

fn crate_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn demo() -> String {
    crate_path("demo/odin-demo.txt").display().to_string()
}

#[test]
fn fake_nvidia_smi_answers_from_the_demo_capture() {
    for section in ["idle", "load"] {
        let out = Command::new(crate_path("tests/fake-nvidia-smi"))
            .args(["--query-gpu=index,name,uuid", "--format=csv,noheader"])
            .env("FAKE_NVIDIA_SMI_CAPTURE", demo())
            .env("FAKE_NVIDIA_SMI_SECTION", section)
            .output()
            .expect("run the fake nvidia-smi");
        assert!(out.status.success(), "{section}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "{section}: {text}");
        assert!(rows[0].starts_with("0, ODIN Demo GPU"), "{text}");
        assert!(rows[1].starts_with("1, ODIN Demo GPU"), "{text}");
    }
}

#[test]
fn gpu_exporter_once_sees_two_gpus_in_both_sections() {
    let dir = tempfile::tempdir().unwrap();
    for tree in ["proc", "sys"] {
        std::fs::create_dir_all(dir.path().join(tree)).unwrap();
    }
    let mut args = odin_testkit::tree_args(dir.path());
    args.push("--backend=nvidia-smi".to_owned());
    args.push(format!(
        "--nvidia-smi.command={}",
        crate_path("tests/fake-nvidia-smi").display()
    ));
    let capture = demo();
    for section in ["idle", "load"] {
        let out = EXE.once(
            &args,
            &[
                ("FAKE_NVIDIA_SMI_CAPTURE", &capture),
                ("FAKE_NVIDIA_SMI_SECTION", section),
            ],
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{section}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(value(&text, "nvidia_gpu_devices"), 2.0, "{section}");
        assert_eq!(
            label_values(&text, "nvidia_gpu_info", "gpu"),
            ["0", "1"],
            "{section}"
        );
        assert_eq!(
            value(
                &text,
                "nvidia_gpu_collector_item_errors_total{collector=\"gpu\"}"
            ),
            0.0,
            "{section}: every row and value of the demo data reads cleanly"
        );
        assert_promtool_clean(&text);
    }
}
