//! `pss` (off by default): proportional set size of each instance and of its tree, from
//! `/proc/<pid>/smaps_rollup`, for the instances the `processes` collector exports. Reading
//! `smaps_rollup` walks the process's page tables: its cost is in docs/benchmarks.md.

use std::sync::Arc;

use odin_common::{Collector, Context, Sink};

use crate::procfs::{Proc, ReadError};
use crate::scan::Scanner;

pub struct Pss {
    scanner: Arc<Scanner>,
}

impl Pss {
    pub fn new(scanner: Arc<Scanner>) -> Self {
        Pss { scanner }
    }
}

impl Collector for Pss {
    fn collect(&self, ctx: &Context, out: &mut Sink) -> anyhow::Result<()> {
        let snap = self.scanner.snapshot()?;
        let mut proc = Proc::new(&ctx.procfs);
        let mut rows = Vec::new();
        for i in &snap.instances {
            let mut own = None;
            let mut tree = 0u64;
            let mut any = false;
            for &pid in &i.members {
                match proc.pss(pid) {
                    Ok(b) => {
                        any = true;
                        tree += b;
                        if pid == i.pid {
                            own = Some(b);
                        }
                    }
                    Err(ReadError::Malformed(what)) => out.item_error(what),
                    Err(_) => {}
                }
            }
            rows.push((i.pid.to_string(), own, any.then_some(tree)));
        }
        let mut f = out.gauge(
            "instance_proportional_memory_bytes",
            "Proportional set size of the instance process (shared pages divided among their users).",
        );
        for (pid, own, _) in &rows {
            f.sample(&[("pid", pid)], *own);
        }
        let mut f = out.gauge(
            "tree_proportional_memory_bytes",
            "Proportional set size of the instance and its descendants, summed: shared pages count once.",
        );
        for (pid, _, tree) in &rows {
            f.sample(&[("pid", pid)], *tree);
        }
        Ok(())
    }
}
