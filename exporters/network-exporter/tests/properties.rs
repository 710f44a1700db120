//! Property tests of every `/proc/net` parser and of the inet_diag answer parser, on the
//! fixture files mutated by `odin_testkit::mutate`: no panic, bounded time and memory, finite
//! values, the unchanged healthy host read without an item error, and a file cut inside its
//! last line costing at most one item error more than the same file without that line. Each
//! variant is written into a scratch `/proc` tree and read by the collector itself, so the
//! file reading is exercised too. The coverage-guided counterpart is `fuzz/` (target
//! `proc_net`).

use std::fs;
use std::path::{Path, PathBuf};

use network_exporter::collectors::device_filter::DeviceFilter;
use network_exporter::collectors::tcpstat::{self, Source, TcpstatArgs};
use network_exporter::collectors::{netdev, netstat, sockstat, softnet, wireless};
use odin_common::{Collector, Sink};
use odin_testkit::mutate::{
    assert_finite, bounded, line_ends, variants, CountingAlloc, Limits, Variant,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The files, each with the collector that reads it and the files that collector needs
/// besides (written empty).
const FILES: &[(&str, &[&str])] = &[
    ("dev", &[]),
    ("wireless", &[]),
    ("softnet_stat", &[]),
    ("snmp", &[]),
    ("netstat", &["snmp"]),
    ("snmp6", &["snmp"]),
    ("sockstat", &[]),
    ("sockstat6", &["sockstat"]),
    ("tcp", &[]),
    ("tcp6", &["tcp"]),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn collector(file: &str) -> Box<dyn Collector> {
    let all = || DeviceFilter::new(None, Some("")).unwrap();
    match file {
        "dev" => Box::new(netdev::Netdev::new(all())),
        "wireless" => Box::new(wireless::Wireless::new(all())),
        "softnet_stat" => Box::new(softnet::Softnet::new()),
        "snmp" | "netstat" | "snmp6" => Box::new(netstat::Netstat::new()),
        "sockstat" | "sockstat6" => Box::new(sockstat::Sockstat::with_page_size(4096)),
        _ => Box::new(tcpstat::Tcpstat::new(&TcpstatArgs {
            source: Source::Procfs,
        })),
    }
}

/// A scratch tree holding only `file` (with `content`) and the files it needs.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        Tree { dir }
    }

    /// Collect `file` holding `content`: the sink, and whether the run succeeded.
    fn collect(&self, file: &str, needs: &[&str], content: &[u8]) -> (Sink, bool) {
        let net = self.dir.path().join("proc/net");
        for (f, _) in FILES {
            let _ = fs::remove_file(net.join(f));
        }
        for n in needs {
            fs::write(net.join(n), "").unwrap();
        }
        fs::write(net.join(file), content).unwrap();
        let ctx = odin_testkit::fixture_context(self.dir.path());
        let mut sink = Sink::new("network");
        let ok = collector(file).collect(&ctx, &mut sink).is_ok();
        assert_finite(&sink, file);
        (sink, ok)
    }
}

/// Every fixture version of every file.
fn inputs() -> Vec<(&'static str, &'static [&'static str], String, Vec<u8>)> {
    let mut out = Vec::new();
    for tree in ["host-a", "broken", "malformed"] {
        for (file, needs) in FILES {
            let p = fixtures().join(tree).join("proc/net").join(file);
            if let Ok(content) = fs::read(&p) {
                out.push((*file, *needs, format!("{tree}/{file}"), content));
            }
        }
    }
    out
}

#[test]
fn every_proc_net_file_survives_mutations() {
    let tree = Tree::new();
    for (i, (file, needs, label, content)) in inputs().into_iter().enumerate() {
        for v in variants(&content, 0x6e65_7400 + i as u64, 48) {
            bounded(&label, &v, Limits::default(), |b| {
                tree.collect(file, needs, b)
            });
        }
    }
}

#[test]
fn the_healthy_host_reads_without_item_errors() {
    let tree = Tree::new();
    for (file, needs) in FILES {
        let content = fs::read(fixtures().join("host-a/proc/net").join(file)).unwrap();
        let (sink, ok) = tree.collect(file, needs, &content);
        assert!(ok, "{file}");
        assert!(
            sink.item_errors().is_empty(),
            "{file}: {:?}",
            sink.item_errors()
        );
        assert!(!sink.families().is_empty(), "{file}");
    }
}

/// A file cut inside a line (a read that raced the kernel, a truncated copy) is read up to the
/// cut, with at most one item error more than the file without that line.
#[test]
fn a_line_cut_short_is_at_most_one_item_error() {
    let tree = Tree::new();
    for (file, needs, label, content) in inputs() {
        if !label.starts_with("host-a") {
            continue;
        }
        let ends = line_ends(&content);
        let mut start = 0;
        for &end in &ends {
            let (before, _) = tree.collect(file, needs, &content[..start]);
            let line = &content[start..end];
            for at in (1..line.len()).filter(|&i| line[i - 1] == b' ' || line[i] == b' ') {
                let v = Variant {
                    what: format!("cut at byte {}", start + at),
                    bytes: content[..start + at].to_vec(),
                };
                let (cut, _) = bounded(&label, &v, Limits::default(), |b| {
                    tree.collect(file, needs, b)
                });
                assert!(
                    cut.item_errors().len() <= before.item_errors().len() + 1,
                    "{label} {}: {:?}",
                    v.what,
                    cut.item_errors()
                );
            }
            start = end;
        }
    }
}

/// An inet_diag answer: socket messages (family, state) of type `kind`, then `NLMSG_DONE`.
fn datagram(kind: u16, sockets: &[(u8, u8)]) -> Vec<u8> {
    let mut d = Vec::new();
    let mut msg = |ty: u16, payload: &[u8]| {
        d.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        d.extend_from_slice(&ty.to_ne_bytes());
        d.extend_from_slice(&2u16.to_ne_bytes());
        d.extend_from_slice(&7u32.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(payload);
    };
    for &(family, state) in sockets {
        let mut p = [0u8; 72];
        p[0] = family;
        p[1] = state;
        p[56..60].copy_from_slice(&100u32.to_ne_bytes());
        msg(kind, &p);
    }
    msg(3, &0i32.to_ne_bytes());
    d
}

#[test]
fn inet_diag_answers_survive_mutations() {
    let sockets = [(2, 1), (10, 10), (2, 6), (10, 1), (2, 11)];
    let whole = datagram(18, &sockets);
    let w = tcpstat::walk_inet_diag(&whole, 18, 7).unwrap();
    assert!(w.done && w.item_errors.is_empty());
    assert_eq!(w.v4_states.iter().sum::<u64>(), 3);
    assert_eq!(w.v6_states.iter().sum::<u64>(), 2);
    for (kind, seed) in [(18u16, 1u64), (20, 2)] {
        for v in variants(&datagram(kind, &sockets), seed, 64) {
            bounded("inet_diag", &v, Limits::default(), |b| {
                if let Ok(w) = tcpstat::walk_inet_diag(b, kind, 7) {
                    let counted: u64 = w.v4_states.iter().chain(&w.v6_states).sum();
                    assert!(counted <= (b.len() / 88) as u64);
                    assert!(w.item_errors.len() <= b.len() / 16);
                }
            });
        }
        // Cut at every byte: an error or fewer sockets, never a panic.
        let d = datagram(kind, &sockets);
        for at in 0..d.len() {
            if let Ok(w) = tcpstat::walk_inet_diag(&d[..at], kind, 7) {
                assert!(w.v4_states.iter().chain(&w.v6_states).sum::<u64>() <= 5);
            }
        }
    }
}
