//! One file per data source. Each file's first doc comment says what it reads and which
//! metrics it produces; `SPEC` in the crate root declares them.

pub mod device_filter;
pub mod dns;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod sockstat;
pub mod softnet;
pub mod tcpstat;
#[cfg(test)]
pub(crate) mod testing;
pub mod wireless;

use odin_common::{Field, Labels, Sink};

/// Write a table of fields for items that carry one label each (`device`, `cpu`, `family`):
/// one family per field, one sample per `(label value, item)` the field can read.
pub(crate) fn write_fields_with_label<'a, T: 'a>(
    out: &mut Sink,
    fields: &[Field<T>],
    label: &str,
    items: impl IntoIterator<Item = (&'a str, &'a T)>,
) {
    let items: Vec<(&str, &T)> = items.into_iter().collect();
    let labels: Vec<[(&str, &str); 1]> = items.iter().map(|(value, _)| [(label, *value)]).collect();
    let rows: Vec<(&Labels<'_>, &T)> = labels
        .iter()
        .zip(&items)
        .map(|(labels, (_, item))| (&labels[..], *item))
        .collect();
    out.fields(fields, &rows);
}
