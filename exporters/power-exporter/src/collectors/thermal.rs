//! `thermal`: (being written).

use odin_common::{Collector, Context, Sink};

pub struct Thermal;

impl Thermal {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Thermal
    }
}

impl Collector for Thermal {
    fn collect(&self, _ctx: &Context, _out: &mut Sink) -> anyhow::Result<()> {
        Ok(())
    }
}
