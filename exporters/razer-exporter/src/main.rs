use std::process::ExitCode;

fn main() -> ExitCode {
    odin_common::run(&razer_exporter::SPEC, razer_exporter::setup)
}
