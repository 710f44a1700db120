//! What the unit tests share: the fixture trees under `tests/fixtures/` and one collection of
//! a collector on one of them.

use std::path::{Path, PathBuf};

use odin_common::{Collector, Sink};

/// `tests/fixtures/<name>` (a directory holding `sys/`).
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One run of `collector` on fixture `name`; panics if the run fails.
pub(crate) fn collect(collector: &dyn Collector, name: &str) -> Sink {
    let mut out = Sink::new("razer");
    collector
        .collect(&odin_testkit::fixture_context(&fixture(name)), &mut out)
        .unwrap_or_else(|e| panic!("collect on {name}: {e:#}"));
    out
}
