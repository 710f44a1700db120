//! The network-exporter binary for odin-testkit, plus helpers only these tests need.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

use odin_testkit::Exe;
pub use odin_testkit::{request, sample, series, tree_args, value, Exporter};

pub const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_network-exporter"),
    env_prefix: "NETWORK_EXPORTER_",
};

/// `Exporter::start(args, env)`: the network-exporter binary on 127.0.0.1:0.
pub trait Start {
    fn start(args: &[String], env: &[(&str, &str)]) -> Exporter;
}

impl Start for Exporter {
    fn start(args: &[String], env: &[(&str, &str)]) -> Exporter {
        EXE.start(args, env)
    }
}

/// The command with `args` and `env` (no NETWORK_EXPORTER_* variables from outside).
pub fn command(args: &[String], env: &[(&str, &str)]) -> std::process::Command {
    EXE.command(args, env)
}

/// `--once` run to the end.
pub fn once(args: &[String], env: &[(&str, &str)]) -> std::process::Output {
    EXE.once(args, env)
}

/// A path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}
