//! Property tests of the nvidia-smi parsers on the real captures (read from the shared folder,
//! `../shared/captures/nvidia-smi`; skipped with a message where it is absent), mutated by
//! `odin_testkit::mutate`: no panic, bounded time and memory, finite values, and a cut output
//! parsing to the same rows as the whole one up to the cut. The coverage-guided counterpart is
//! `fuzz/` (targets `nvidia_smi_csv`, `nvidia_smi_q`).

use std::path::Path;

use gpu_exporter::metrics::{emit, EmitOptions};
use gpu_exporter::nvidia_smi::backend::parse_cuda_version;
use gpu_exporter::nvidia_smi::parse::{
    parse_compute_apps, parse_query_gpu, FieldCatalog, GPU_FIELDS, PROCESS_FIELDS,
};
use gpu_exporter::nvidia_smi::table::{self, Layout};
use gpu_exporter::reading::Snapshot;
use gpu_exporter::testing::capture::{split_sections, Section};
use odin_common::Sink;
use odin_testkit::mutate::{
    assert_finite, bounded, line_ends, shared_dir, variants, CountingAlloc, Limits,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Every section of every capture, or `None` (said on stderr) without the shared folder.
fn sections() -> Option<Vec<(String, Section)>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(dir) = shared_dir(&repo)
        .map(|s| s.join("captures/nvidia-smi"))
        .filter(|d| d.is_dir())
    else {
        eprintln!(
            "skipped: no captures/nvidia-smi in the shared folder (ODIN_SHARED_DIR, ../shared)"
        );
        return None;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(split_sections(&text).into_iter().map(|s| (name.clone(), s)));
    }
    assert!(!out.is_empty(), "no sections in {}", dir.display());
    Some(out)
}

fn csv_sections(command: &str) -> Vec<(String, Section)> {
    sections()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| s.command.contains(command))
        .collect()
}

/// The parse, its metrics written and checked for finite values.
fn query_gpu(text: &str, layout: Layout<'_>, label: &str) -> Option<usize> {
    let parsed = parse_query_gpu(text, layout).ok()?;
    let n = parsed.items.len();
    let snap = Snapshot {
        gpus: parsed.items,
        ..Snapshot::default()
    };
    let mut sink = Sink::new("nvidia_gpu");
    emit(&snap, &EmitOptions::default(), &mut sink);
    assert_finite(&sink, label);
    Some(n)
}

#[test]
fn query_gpu_csv_survives_mutations() {
    for (i, (file, s)) in csv_sections("--query-gpu=").iter().enumerate() {
        for v in variants(s.body.as_bytes(), 0x6770_7500 + i as u64, 48) {
            let label = format!("{file} {}", s.title);
            bounded(&label, &v, Limits::default(), |b| {
                let text = String::from_utf8_lossy(b);
                query_gpu(&text, Layout::Header, &label);
                query_gpu(&text, Layout::NoHeader(GPU_FIELDS), &label);
                query_gpu(
                    &text,
                    Layout::NoHeader(&["pci.bus_id", "power.draw"]),
                    &label,
                );
            });
        }
    }
}

#[test]
fn compute_apps_csv_survives_mutations() {
    for (i, (file, s)) in csv_sections("--query-compute-apps=").iter().enumerate() {
        for v in variants(s.body.as_bytes(), 0x6170_7000 + i as u64, 40) {
            bounded(&format!("{file} {}", s.title), &v, Limits::default(), |b| {
                let text = String::from_utf8_lossy(b);
                for layout in [Layout::Header, Layout::NoHeader(PROCESS_FIELDS)] {
                    if let Ok(p) = parse_compute_apps(&text, layout) {
                        let mut snap = Snapshot {
                            processes: p.items,
                            ..Snapshot::default()
                        };
                        snap.gpus = parse_query_gpu("index\n0\n", Layout::Header).unwrap().items;
                        let mut sink = Sink::new("nvidia_gpu");
                        emit(&snap, &EmitOptions::default(), &mut sink);
                        assert_finite(&sink, &s.title);
                    }
                }
            });
        }
    }
}

/// Unchanged, every data row is a GPU; cut after line k, the first k - 1 GPUs are the same as
/// the whole output's; cut inside line k, so are they, and at most one more row is read.
#[test]
fn a_cut_output_keeps_the_rows_before_the_cut() {
    for (file, s) in csv_sections("--query-gpu=") {
        let body = s.body.as_bytes();
        let whole = parse_query_gpu(&s.body, Layout::Header).unwrap();
        let rows = s.body.lines().filter(|l| !l.trim().is_empty()).count() - 1;
        assert_eq!(
            whole.items.len(),
            rows,
            "{file} {}: {:?}",
            s.title,
            whole.problems
        );
        let ends = line_ends(body);
        for (line_no, &end) in ends.iter().enumerate().skip(1) {
            let cut = parse_query_gpu(std::str::from_utf8(&body[..end]).unwrap(), Layout::Header)
                .unwrap();
            // Lines after the last row are blank.
            let k = line_no.min(rows);
            assert_eq!(
                cut.items[..],
                whole.items[..k],
                "{file}: cut after line {}",
                k + 1
            );
            // Inside line k + 1: at each comma, and one byte before its end.
            let line = &body[end..ends.get(line_no + 1).copied().unwrap_or(body.len())];
            let inside = line
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b',')
                .map(|(i, _)| i)
                .chain([line.len().saturating_sub(2)]);
            for at in inside {
                let text = String::from_utf8_lossy(&body[..end + at]);
                let part = parse_query_gpu(&text, Layout::Header).unwrap();
                assert!(part.items.len() <= k + 1, "{file}: cut in line {}", k + 2);
                assert_eq!(
                    part.items[..k],
                    whole.items[..k],
                    "{file}: cut in line {}",
                    k + 2
                );
            }
        }
    }
}

#[test]
fn help_version_and_q_text_survive_mutations() {
    let Some(all) = sections() else { return };
    let texts: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| {
            s.command.contains("--help-query-gpu")
                || s.command.contains("--version")
                || s.command.ends_with(" -q")
        })
        .collect();
    assert!(!texts.is_empty());
    for (i, (file, s)) in texts.iter().enumerate() {
        for v in variants(s.body.as_bytes(), 0x7100 + i as u64, 24) {
            bounded(&format!("{file} {}", s.title), &v, Limits::default(), |b| {
                let text = String::from_utf8_lossy(b);
                let cat = FieldCatalog::from_help(&text);
                for f in cat.select(GPU_FIELDS) {
                    assert!(cat.knows(&f));
                }
                if let Some(cuda) = parse_cuda_version(&text) {
                    assert!(cuda.chars().all(|c| c.is_ascii_digit() || c == '.'));
                }
            });
        }
    }
}

/// A number that is finite as printed but not once converted to base units (`1e308 GiB` is
/// about 1.2e317 bytes) is a bad value, not an infinite sample.
#[test]
fn a_quantity_too_large_for_its_unit_is_a_bad_value() {
    assert!(table::quantity("1e308 GiB", None, "MiB").is_err());
    assert!(table::quantity("1e308", Some("GiB"), "MiB").is_err());
    assert!(table::quantity("1.7e308", None, "MiB").is_err());
    assert_eq!(table::quantity("1e300", None, "W"), Ok(Some(1e300)));
    let text = "index, memory.used [MiB]\n0, 1e308 GiB\n";
    let p = parse_query_gpu(text, Layout::Header).unwrap();
    assert_eq!(p.items[0].memory_used_bytes, None);
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
}
