//! `rapl`: (being written).

use odin_common::{Collector, Context, Sink};

pub struct Rapl;

impl Rapl {
    pub fn new(window: std::time::Duration) -> Self {
        let _ = window;
        Rapl
    }
}

impl Collector for Rapl {
    fn collect(&self, _ctx: &Context, _out: &mut Sink) -> anyhow::Result<()> {
        Ok(())
    }
}
