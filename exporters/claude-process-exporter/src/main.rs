//! The claude-process-exporter binary; everything it does is in the library
//! (`claude_process_exporter`).

use std::process::ExitCode;

fn main() -> ExitCode {
    odin_common::run(
        &claude_process_exporter::SPEC,
        claude_process_exporter::setup,
    )
}
