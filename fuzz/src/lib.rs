//! One function per fuzz target, each taking the raw bytes AFL++ made and handing them to the
//! parsers of one kind of input through the same entry points the exporters use. A target
//! panics (and AFL++ records a crash) when a parser panics or when a property every answer
//! must have does not hold: values finite, counts that add up. `src/bin/<target>.rs` wraps
//! each in `afl::fuzz!`; `src/bin/seeds.rs` writes their starting corpora from the
//! repository's fixtures and the nvidia-smi captures in `../shared`.
//!
//! Where an input is a file, the target writes it into a scratch tree under the temporary
//! directory (one per fuzzing process) and runs the collector or reader on that tree, so the
//! reading code is exercised too. The first byte of most inputs picks which file or layout
//! the rest is.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odin_common::{Collector, Context, Sink};

/// The repository root (this crate's parent directory).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

/// This process's scratch directory, created once.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("odin-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create the scratch directory");
        d
    })
}

fn context(procfs: &Path, sysfs: &Path) -> Context {
    Context {
        procfs: procfs.to_path_buf(),
        sysfs: sysfs.to_path_buf(),
        timeout: Duration::from_secs(5),
    }
}

/// Every gauge and counter value the sink holds is a finite number.
pub fn assert_finite(sink: &Sink, what: &str) {
    for f in sink.families() {
        for m in f.get_metric() {
            let v = match f.get_field_type() {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            };
            assert!(v.is_finite(), "{what}: {} has the value {v}", f.name());
        }
    }
}

/// Run one collection and check its samples.
fn collect(c: &dyn Collector, ctx: &Context, prefix: &'static str, what: &str) -> Sink {
    let mut sink = Sink::new(prefix);
    let _ = c.collect(ctx, &mut sink);
    assert_finite(&sink, what);
    sink
}

fn split(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(b, rest)| (*b, rest))
}

/// `nvidia-smi --query-gpu` / `--query-compute-apps` CSV, with and without a header.
pub mod nvidia_smi_csv {
    use gpu_exporter::metrics::{emit, EmitOptions};
    use gpu_exporter::nvidia_smi::parse::{
        parse_compute_apps, parse_query_gpu, GPU_FIELDS, PROCESS_FIELDS,
    };
    use gpu_exporter::nvidia_smi::table::Layout;
    use gpu_exporter::reading::Snapshot;
    use odin_common::Sink;

    /// The fields power-exporter's GPU reader asks for without a header.
    const POWER_FIELDS: &[&str] = &["pci.bus_id", "power.draw"];

    pub fn run(data: &[u8]) {
        let Some((sel, rest)) = super::split(data) else {
            return;
        };
        let text = String::from_utf8_lossy(rest);
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        let mut snap = Snapshot::default();
        match sel % 5 {
            0 | 1 | 2 => {
                let layout = match sel % 5 {
                    0 => Layout::Header,
                    1 => Layout::NoHeader(GPU_FIELDS),
                    _ => Layout::NoHeader(POWER_FIELDS),
                };
                let Ok(p) = parse_query_gpu(&text, layout) else {
                    return;
                };
                assert!(p.items.len() <= lines, "more GPUs than lines");
                snap.gpus = p.items;
            }
            n => {
                let layout = if n == 3 {
                    Layout::Header
                } else {
                    Layout::NoHeader(PROCESS_FIELDS)
                };
                let Ok(p) = parse_compute_apps(&text, layout) else {
                    return;
                };
                assert!(p.items.len() <= lines, "more processes than lines");
                snap.processes = p.items;
            }
        }
        let mut sink = Sink::new("nvidia_gpu");
        emit(&snap, &EmitOptions::default(), &mut sink);
        super::assert_finite(&sink, "nvidia-smi CSV");
    }
}

/// nvidia-smi's text (not CSV) output: `--help-query-gpu` (the field catalogue), `--version`
/// and the `-q` / table header lines the CUDA version is read from.
pub mod nvidia_smi_q {
    use gpu_exporter::nvidia_smi::backend::parse_cuda_version;
    use gpu_exporter::nvidia_smi::parse::{FieldCatalog, GPU_FIELDS};

    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let cat = FieldCatalog::from_help(&text);
        for f in cat.select(GPU_FIELDS) {
            assert!(
                cat.knows(&f),
                "selected {f:?}, which the catalogue does not list"
            );
            assert!(cat.primary(&f).is_some());
        }
        if let Some(v) = parse_cuda_version(&text) {
            assert!(!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
        }
    }
}

/// The `/proc/net` files network-exporter reads, and its inet_diag netlink answers.
pub mod proc_net {
    use std::fs;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use network_exporter::collectors::device_filter::DeviceFilter;
    use network_exporter::collectors::tcpstat::{self, Source, TcpstatArgs};
    use network_exporter::collectors::{netdev, netstat, sockstat, softnet, wireless};
    use odin_common::Collector;

    /// The files, in selector order (the first byte of an input, modulo the count; the last
    /// entry is a netlink datagram instead of a file).
    pub const FILES: &[&str] = &[
        "dev",
        "wireless",
        "softnet_stat",
        "snmp",
        "netstat",
        "snmp6",
        "sockstat",
        "sockstat6",
        "tcp",
        "tcp6",
        "inet_diag",
    ];

    fn root() -> &'static PathBuf {
        static ROOT: OnceLock<PathBuf> = OnceLock::new();
        ROOT.get_or_init(|| {
            let r = super::scratch().join("proc_net");
            fs::create_dir_all(r.join("proc/net")).unwrap();
            fs::create_dir_all(r.join("sys")).unwrap();
            r
        })
    }

    pub fn run(data: &[u8]) {
        let Some((sel, rest)) = super::split(data) else {
            return;
        };
        let file = FILES[usize::from(sel) % FILES.len()];
        if file == "inet_diag" {
            return inet_diag(rest);
        }
        let root = root();
        let net = root.join("proc/net");
        for f in FILES {
            let _ = fs::remove_file(net.join(f));
        }
        fs::write(net.join(file), rest).unwrap();
        // netstat needs `snmp` before it reads the other two; sockstat needs `sockstat`.
        if file == "netstat" || file == "snmp6" {
            fs::write(net.join("snmp"), "").unwrap();
        }
        if file == "sockstat6" {
            fs::write(net.join("sockstat"), "").unwrap();
        }
        if file == "tcp6" {
            fs::write(net.join("tcp"), "").unwrap();
        }
        let ctx = super::context(&root.join("proc"), &root.join("sys"));
        let all = || DeviceFilter::new(None, Some("")).expect("an empty exclude compiles");
        let c: Box<dyn Collector> = match file {
            "dev" => Box::new(netdev::Netdev::new(all())),
            "wireless" => Box::new(wireless::Wireless::new(all())),
            "softnet_stat" => Box::new(softnet::Softnet::new()),
            "snmp" | "netstat" | "snmp6" => Box::new(netstat::Netstat::new()),
            "sockstat" | "sockstat6" => Box::new(sockstat::Sockstat::with_page_size(4096)),
            _ => Box::new(tcpstat::Tcpstat::new(&TcpstatArgs {
                source: Source::Procfs,
            })),
        };
        super::collect(c.as_ref(), &ctx, "network", file);
    }

    /// The sequence number the seeds' datagrams carry.
    pub const SEQ: u32 = 1;

    fn inet_diag(rest: &[u8]) {
        let Some((kind, datagram)) = super::split(rest) else {
            return;
        };
        let kind = if kind & 1 == 0 { 18 } else { 20 };
        if let Ok(w) = tcpstat::walk_inet_diag(datagram, kind, SEQ) {
            // A message takes at least its 16-byte header; a counted socket also a 72-byte
            // inet_diag_msg.
            let sockets: u64 = w.v4_states.iter().chain(&w.v6_states).sum();
            assert!(sockets <= (datagram.len() / (16 + 72)) as u64);
            assert!(w.item_errors.len() <= datagram.len() / 16);
        }
    }
}

/// sysfs attribute files: odin-common's reader and the power-exporter and razer-exporter
/// collectors that turn them into values, on copies of the fixture trees with one file
/// replaced by the input.
pub mod sysfs_attr {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use odin_common::sysfs;
    use power_exporter::collectors::{battery, hwmon, rapl, thermal};
    use razer_exporter::collectors::openrazer;

    /// Fixture trees (relative to the repository) that are copied and fuzzed, in selector
    /// order.
    pub const TREES: &[&str] = &[
        "exporters/power-exporter/tests/fixtures/host-laptop",
        "exporters/power-exporter/tests/fixtures/host-desktop",
        "exporters/power-exporter/tests/fixtures/host-amd",
        "exporters/power-exporter/tests/fixtures/battery-laptop",
        "exporters/power-exporter/tests/fixtures/battery-charge",
        "exporters/power-exporter/tests/fixtures/rapl-desktop",
        "exporters/razer-exporter/tests/fixtures/desk",
    ];

    struct Tree {
        root: PathBuf,
        /// Regular files under `sys/`, sorted, with their original content.
        files: Vec<(PathBuf, Vec<u8>)>,
        razer: bool,
    }

    fn files_of(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                files_of(&e.path(), out);
            } else if t.is_file() {
                let content = fs::read(e.path()).unwrap_or_default();
                out.push((e.path(), content));
            }
        }
    }

    fn trees() -> &'static Vec<Tree> {
        static TREES_: OnceLock<Vec<Tree>> = OnceLock::new();
        TREES_.get_or_init(|| {
            TREES
                .iter()
                .enumerate()
                .map(|(i, rel)| {
                    let root = super::scratch().join(format!("sysfs{i}"));
                    odin_testkit::copy_tree(&super::repo().join(rel), &root);
                    let mut files = Vec::new();
                    files_of(&root.join("sys"), &mut files);
                    Tree {
                        root,
                        files,
                        razer: rel.contains("razer"),
                    }
                })
                .collect()
        })
    }

    /// The number of attribute files of tree `t` (the seeds generator names them).
    pub fn files(t: usize) -> Vec<(PathBuf, Vec<u8>)> {
        let root = super::repo().join(TREES[t]);
        let mut out = Vec::new();
        files_of(&root.join("sys"), &mut out);
        out.into_iter()
            .map(|(p, c)| (p.strip_prefix(&root).unwrap().to_path_buf(), c))
            .collect()
    }

    pub fn run(data: &[u8]) {
        if data.len() < 3 {
            return;
        }
        let trees = trees();
        let tree = &trees[usize::from(data[0]) % trees.len()];
        if tree.files.is_empty() {
            return;
        }
        let which = usize::from(u16::from_le_bytes([data[1], data[2]])) % tree.files.len();
        let content = &data[3..];
        let (path, original) = &tree.files[which];
        fs::write(path, content).unwrap();

        // The shared reader, on the file as it is now.
        let text = sysfs::read(path);
        if let Ok(t) = &text {
            assert_eq!(t.trim(), t, "read() trims");
        }
        let _ = sysfs::read_i64(path);
        let _ = sysfs::read_u64(path);

        let sys = tree.root.join("sys");
        let ctx = super::context(&tree.root.join("proc"), &sys);
        if tree.razer {
            let o = openrazer::OpenRazer::new(Duration::from_secs(30), Duration::from_secs(10));
            super::collect(&o, &ctx, "razer", "openrazer");
            let _ = razer_exporter::hid::find(&sys, Path::new("/nonexistent-dev"));
        } else {
            super::collect(&battery::Battery::new(None), &ctx, "power", "battery");
            super::collect(&hwmon::Hwmon::new(), &ctx, "power", "hwmon");
            super::collect(&thermal::Thermal::new(), &ctx, "power", "thermal");
            let r = rapl::Rapl::new(Duration::from_secs(10));
            let now = Instant::now();
            for later in [0, 2] {
                let mut sink = odin_common::Sink::new("power");
                let _ = r.collect_at(&ctx, &mut sink, now + Duration::from_secs(later));
                super::assert_finite(&sink, "rapl");
            }
        }
        fs::write(path, original).unwrap();
    }
}

/// Claude Code transcript lines (`projects/**/*.jsonl`) and token-collector's own spool lines.
pub mod transcript {
    use token_collector::ingest::{parse_chunk, Kind};
    use token_collector::store::Item;
    use token_collector::transcript::{parse_line, Line};

    pub fn run(data: &[u8]) {
        let Some((sel, chunk)) = super::split(data) else {
            return;
        };
        let kind = if sel & 1 == 0 {
            Kind::Transcript
        } else {
            Kind::Spool
        };
        let lines = chunk
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .count();
        let (items, outcomes) = parse_chunk(chunk, kind);
        let counted = items.len() as u64 + outcomes.iter().sum::<u64>();
        assert_eq!(counted, lines as u64, "every line is an item or an outcome");
        for item in &items {
            if let Item::Captured(c) = item {
                if let Some(cost) = c.stated_cost_usd {
                    assert!(cost.is_finite(), "stated cost {cost}");
                }
            }
        }
        if kind == Kind::Transcript {
            for line in chunk.split(|&b| b == b'\n') {
                if let Line::Usage(r) = parse_line(line) {
                    assert!(!r.message_id.is_empty() || line.contains(&b'"'));
                }
            }
        }
    }
}

/// Captured terminal output, as `token-collector wrap` sees it: ANSI escapes, partial reads,
/// JSON, Python reprs, `/cost` blocks.
pub mod terminal_capture {
    use token_collector::capture::{ansi, cost_block, pyrepr, recognise, span, Scanner};

    pub fn run(data: &[u8]) {
        let Some((sel, output)) = super::split(data) else {
            return;
        };
        let whole = recognise(output);
        for r in &whole {
            if let Some(c) = r.stated_cost_usd {
                assert!(c.is_finite(), "stated cost {c}");
            }
        }
        // The same output in reads of `sel` bytes: the same usages found.
        let step = usize::from(sel).max(1);
        let mut s = Scanner::new();
        let mut chunked = Vec::new();
        for piece in output.chunks(step) {
            s.feed(piece);
            chunked.extend(s.take_found());
        }
        chunked.extend(s.finish());
        assert_eq!(
            chunked, whole,
            "found in reads of {step} bytes, and in one read"
        );
        let stripped = ansi::strip(output);
        assert!(stripped.len() <= output.len());
        let _ = cost_block::parse(&stripped, true);
        if stripped.first() == Some(&b'{') {
            let _ = span::json_object(&stripped, 1 << 20);
            let _ = pyrepr::parse_js_object(&stripped, 1 << 20);
        }
        let _ = pyrepr::parse_call(&stripped, 1 << 20);
    }
}

/// The Blade controller's 90-byte answers: `decode`, and a controller read fed the input as
/// its device's answers.
pub mod hid_report {
    use razer_exporter::hid::report::{decode, Request, ALL, REPORT_LEN};
    use razer_exporter::hid::transport::{Transport, TransportError};
    use razer_exporter::hid::Controller;

    /// Answers each request with the next piece of the input: a length byte, then that many
    /// bytes (a length of 0 is silence).
    struct Answers {
        data: Vec<u8>,
        at: usize,
    }

    impl Transport for Answers {
        fn exchange(&mut self, _: &Request) -> Result<Vec<u8>, TransportError> {
            let Some(&n) = self.data.get(self.at) else {
                return Err(TransportError::NoAnswer);
            };
            self.at += 1;
            if n == 0 {
                return Err(TransportError::NoAnswer);
            }
            let end = (self.at + usize::from(n)).min(self.data.len());
            let out = self.data[self.at..end].to_vec();
            self.at = end;
            Ok(out)
        }

        fn retry_delay(&self) -> std::time::Duration {
            std::time::Duration::ZERO
        }
    }

    pub fn run(data: &[u8]) {
        let Some((sel, rest)) = super::split(data) else {
            return;
        };
        if sel & 0x80 == 0 {
            let get = &ALL[usize::from(sel) % ALL.len()];
            if let Ok(args) = decode(get, 0xff, rest) {
                assert_eq!(rest.len(), REPORT_LEN);
                assert_eq!(&args[..], &rest[8..88]);
            }
            return;
        }
        let mut c = Controller::new(Box::new(Answers {
            data: rest.to_vec(),
            at: 0,
        }));
        let r = c.read();
        for rpm in r.fan_rpm.into_iter().flatten() {
            assert!(rpm <= 25_500);
        }
        if let Some((_, threshold)) = r.optimizer {
            assert!(threshold <= 127);
        }
        assert!(c.requests <= (ALL.len() as u64) * 3);
    }
}

/// `--hid.replay` files (TOML), and the collector reading the laptops they describe.
pub mod hid_replay {
    use std::time::Duration;

    use razer_exporter::collectors::hid::{Hid, Source};
    use razer_exporter::hid::replay::parse;

    pub fn run(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(laptops) = parse(text) else {
            return;
        };
        let hid = Hid::new(
            Source::Replay(laptops),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        let ctx = odin_testkit::live_context();
        for _ in 0..2 {
            super::collect(&hid, &ctx, "razer", "hid replay");
        }
    }
}

/// `/proc/<pid>` files claude-process-exporter reads, through its readers and a whole scan of
/// a tree with one Claude Code process whose file is the input.
pub mod proc_pid {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Duration;

    use claude_process_exporter::detect::Extra;
    use claude_process_exporter::procfs::{parse_stat, parse_tcp_table, Proc, ENV_NAMES};
    use claude_process_exporter::scan::{Config, Scanner};

    /// The files, in selector order; `../stat` is `/proc/stat`.
    pub const FILES: &[&str] = &[
        "stat",
        "status",
        "io",
        "limits",
        "smaps_rollup",
        "environ",
        "cmdline",
        "net/tcp",
        "net/tcp6",
        "../stat",
    ];

    /// What each file holds in the scratch tree before the input replaces one.
    pub fn original(file: &str) -> &'static [u8] {
        match file {
            "stat" => b"4242 (claude) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 123456 1048576 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
            "status" => b"Name:\tclaude\nVmSwap:\t       8 kB\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n",
            "io" => b"rchar: 1\nwchar: 2\nread_bytes: 4096\nwrite_bytes: 8192\n",
            "limits" => b"Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 4096                 files     \n",
            "smaps_rollup" => b"Rss:  40 kB\nPss:  25 kB\n",
            "environ" => b"PATH=/usr/bin\0CLAUDECODE=1\0",
            "cmdline" => b"claude\0--print\0",
            "net/tcp" | "net/tcp6" => b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n",
            _ => b"cpu  1 2 3 4\nbtime 1700000000\n",
        }
    }

    const PID: i32 = 4242;

    fn root() -> &'static PathBuf {
        static ROOT: OnceLock<PathBuf> = OnceLock::new();
        ROOT.get_or_init(|| {
            let root = super::scratch().join("proc_pid/proc");
            let d = root.join(PID.to_string());
            fs::create_dir_all(d.join("fd")).unwrap();
            fs::create_dir_all(d.join("ns")).unwrap();
            fs::create_dir_all(d.join("net")).unwrap();
            for f in FILES {
                fs::write(d.join(f), original(f)).unwrap();
            }
            symlink(
                "/home/u/.local/share/claude/versions/2.1.197",
                d.join("exe"),
            )
            .unwrap();
            symlink("/home/u", d.join("cwd")).unwrap();
            symlink("net:[4026531840]", d.join("ns/net")).unwrap();
            symlink("socket:[111]", d.join("fd/3")).unwrap();
            root
        })
    }

    pub fn run(data: &[u8]) {
        let Some((sel, content)) = super::split(data) else {
            return;
        };
        let file = FILES[usize::from(sel) % FILES.len()];
        let root = root();
        let path = root.join(PID.to_string()).join(file);
        fs::write(&path, content).unwrap();

        let _ = parse_stat(content);
        let text = String::from_utf8_lossy(content);
        let mut bad = 0;
        let socks = parse_tcp_table(&text, file.ends_with('6'), None, &mut bad);
        assert!(socks.len() as u64 + bad <= text.lines().count() as u64);

        let mut p = Proc::new(root);
        let _ = p.boot_time();
        let _ = p.stat(PID);
        let _ = p.status(PID);
        let _ = p.io(PID);
        let _ = p.fd_limit(PID);
        let _ = p.pss(PID);
        let _ = p.environ_names(PID, ENV_NAMES);
        let _ = p.cmdline(PID);
        let _ = p.net_file(PID, "tcp");

        let scanner = Scanner::new(
            Config {
                extra: Extra::default(),
                restart_window: Duration::from_secs(60),
                max_instances: 8,
            },
            root,
        );
        let _ = scanner.scan_now();
        fs::write(&path, original(file)).unwrap();
    }
}

/// Run `f` on `input`, failing loudly (for the corpus checks) when it takes longer than
/// `limit`.
pub fn timed(name: &str, input: &[u8], limit: Duration, f: fn(&[u8])) {
    let t = Instant::now();
    f(input);
    let took = t.elapsed();
    assert!(
        took <= limit,
        "{name}: {took:?} for {} bytes of input",
        input.len()
    );
}

/// Every target by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("nvidia_smi_csv", nvidia_smi_csv::run),
    ("nvidia_smi_q", nvidia_smi_q::run),
    ("proc_net", proc_net::run),
    ("sysfs_attr", sysfs_attr::run),
    ("transcript", transcript::run),
    ("terminal_capture", terminal_capture::run),
    ("hid_report", hid_report::run),
    ("hid_replay", hid_replay::run),
    ("proc_pid", proc_pid::run),
];
