//! gpu-exporter binary. Not wired yet: the backends exist as a library (`src/lib.rs`), the
//! collectors and the odin-common runtime wiring come in a later session (issue 3).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "gpu-exporter {}: not yet wired (issue 3): no metrics are served; \
         only the nvidia-smi parsing and runner library exist so far",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
