//! The token-collector binary: the subcommands `wrap`, `shell-init` and `report`, else the
//! exporter; everything is in the library (`token_collector`).

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A write past a file size limit (systemd's LimitFSIZE=, ulimit -f) fails with EFBIG and
    // is reported as a database error, instead of SIGXFSZ killing the process.
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    // Each subcommand gets the arguments after its name.
    let rest = args.get(2..).unwrap_or_default();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("wrap") => token_collector::wrap::main(rest),
        Some("shell-init") => token_collector::shell_init::main(rest),
        Some("report") => token_collector::report::main(rest),
        _ => odin_common::run(&token_collector::SPEC, token_collector::setup),
    }
}
