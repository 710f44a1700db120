//! `battery`: (being written).

use odin_common::{Collector, Context, Sink};

pub struct Battery;

impl Battery {
    pub fn new(ignored: Option<regex::Regex>) -> Self {
        let _ = ignored;
        Battery
    }
}

impl Collector for Battery {
    fn collect(&self, _ctx: &Context, _out: &mut Sink) -> anyhow::Result<()> {
        Ok(())
    }
}
