//! The gpu-exporter binary for odin-testkit.

#![allow(dead_code)] // each test binary uses a different part

use odin_testkit::Exe;
pub use odin_testkit::{sample, value, Exporter};

pub const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_gpu-exporter"),
    env_prefix: "GPU_EXPORTER_",
};

/// `Exporter::start(args, env)`: the gpu-exporter binary on 127.0.0.1:0.
pub trait Start {
    fn start(args: &[String], env: &[(&str, &str)]) -> Exporter;
}

impl Start for Exporter {
    fn start(args: &[String], env: &[(&str, &str)]) -> Exporter {
        EXE.start(args, env)
    }
}

/// `--once` run to the end.
pub fn once(args: &[String], env: &[(&str, &str)]) -> std::process::Output {
    EXE.once(args, env)
}
