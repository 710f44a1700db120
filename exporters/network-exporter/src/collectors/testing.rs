//! What only this crate's collector unit tests need: its fixture trees and a sink with its
//! prefix. Generic helpers (contexts, sample look-up) are in odin-testkit.

use std::path::PathBuf;

use odin_common::{Context, Sink};

/// The fixture tree `tests/fixtures/<tree>/{proc,sys}`.
pub fn fixture(tree: &str) -> Context {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(tree);
    odin_testkit::fixture_context(&root)
}

/// The healthy fixture host: `tests/fixtures/host-a/{proc,sys}`.
pub fn host_a() -> Context {
    fixture("host-a")
}

/// An empty sink with network-exporter's metric prefix, as the runtime hands collectors.
pub fn sink() -> Sink {
    Sink::new(crate::SPEC.prefix)
}
