//! Helpers for the collector unit tests: fixture contexts and sample look-ups.

use std::path::PathBuf;
use std::time::Duration;

use odin_common::{Context, Sink};
use prometheus::proto::MetricType;

/// A fixture tree: `tests/fixtures/<tree>/{proc,sys}`.
pub fn fixture(tree: &str) -> Context {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(tree);
    Context {
        procfs: root.join("proc"),
        sysfs: root.join("sys"),
        timeout: Duration::from_secs(5),
    }
}

/// The fixture host: `tests/fixtures/host-a/{proc,sys}`.
pub fn host_a() -> Context {
    fixture("host-a")
}

/// The machine the tests run on.
pub fn live_host() -> Context {
    Context {
        procfs: PathBuf::from("/proc"),
        sysfs: PathBuf::from("/sys"),
        timeout: Duration::from_secs(5),
    }
}

/// A context whose procfs/sysfs are the given directory.
pub fn at(dir: &std::path::Path) -> Context {
    Context {
        procfs: dir.to_path_buf(),
        sysfs: dir.to_path_buf(),
        timeout: Duration::from_secs(5),
    }
}

/// The value of the sample of family `name` whose labels are exactly `labels` (any order).
pub fn value(sink: &Sink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let fam = sink.families().iter().find(|f| f.name() == name)?;
    let m = fam.get_metric().iter().find(|m| {
        m.get_label().len() == labels.len()
            && labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|lp| lp.name() == *k && lp.value() == *v)
            })
    })?;
    Some(if fam.get_field_type() == MetricType::COUNTER {
        m.get_counter().get_value()
    } else {
        m.get_gauge().get_value()
    })
}

/// The values of label `label` over the samples of family `name`, in output order.
pub fn label_values(sink: &Sink, name: &str, label: &str) -> Vec<String> {
    sink.families()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|lp| lp.name() == label)
                .map(|lp| lp.value().to_owned())
        })
        .collect()
}
