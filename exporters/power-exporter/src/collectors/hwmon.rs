//! `hwmon`: (being written).

use odin_common::{Collector, Context, Sink};

pub struct Hwmon;

impl Hwmon {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Hwmon
    }
}

impl Collector for Hwmon {
    fn collect(&self, _ctx: &Context, _out: &mut Sink) -> anyhow::Result<()> {
        Ok(())
    }
}
