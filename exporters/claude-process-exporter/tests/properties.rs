//! Property tests of the `/proc/<pid>` readers (`procfs`) and of a whole scan, on real-shaped
//! files mutated by `odin_testkit::mutate`: no panic, bounded time and memory, a malformed
//! file an error the scan counts rather than a crash, and values that never wrap. Each
//! variant replaces one file of a scratch `/proc` tree holding one Claude Code process. The
//! coverage-guided counterpart is `fuzz/` (target `proc_pid`).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_process_exporter::detect::Extra;
use claude_process_exporter::procfs::{parse_stat, parse_tcp_table, Proc, ReadError, ENV_NAMES};
use claude_process_exporter::scan::{Config, Scanner};
use odin_testkit::mutate::{bounded, variants, CountingAlloc, Limits, Variant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PID: i32 = 4242;

/// The files of the process, as a real one has them.
const FILES: &[(&str, &str)] = &[
    ("stat", "4242 (claude) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 123456 1048576 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"),
    ("status", "Name:\tclaude\nUmask:\t0022\nState:\tS (sleeping)\nVmRSS:\t  123456 kB\nVmSwap:\t       8 kB\nThreads:\t7\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n"),
    ("io", "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"),
    ("limits", "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 4096                 files     \n"),
    ("smaps_rollup", "00400000-7fff00000000 ---p 00000000 00:00 0                  [rollup]\nRss:                  40 kB\nPss:                  25 kB\nPss_Anon:             20 kB\n"),
    ("environ", "PATH=/usr/bin\0CLAUDECODE=1\0CLAUDE_CODE_ENTRYPOINT=cli\0"),
    ("cmdline", "claude\0--print\0hello\0"),
    ("net/tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n   1: 0F02000A:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 113 1 0 100 0 0 10 0\n"),
    ("net/tcp6", "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1 0 100 0 0 10 0\n"),
];

const PROC_STAT: &str = "cpu  1 2 3 4\nbtime 1700000000\n";

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proc");
        let d = root.join(PID.to_string());
        for sub in ["fd", "ns", "net"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(root.join("stat"), PROC_STAT).unwrap();
        for (f, content) in FILES {
            fs::write(d.join(f), content).unwrap();
        }
        symlink(
            "/home/u/.local/share/claude/versions/2.1.197",
            d.join("exe"),
        )
        .unwrap();
        symlink("/home/u/src", d.join("cwd")).unwrap();
        symlink("net:[4026531840]", d.join("ns/net")).unwrap();
        symlink("socket:[111]", d.join("fd/3")).unwrap();
        Tree { _dir: dir, root }
    }

    fn path(&self, file: &str) -> PathBuf {
        if file == "/proc/stat" {
            self.root.join("stat")
        } else {
            self.root.join(PID.to_string()).join(file)
        }
    }

    fn scanner(&self) -> Scanner {
        Scanner::new(
            Config {
                extra: Extra::default(),
                restart_window: Duration::from_secs(60),
                max_instances: 8,
            },
            &self.root,
        )
    }
}

/// Every reader on the tree as it is, and a scan of it; checks what holds whatever the files.
fn read_all(root: &Path, scanner: &Scanner) {
    let mut p = Proc::new(root);
    let _ = p.boot_time();
    if let Ok(st) = p.stat(PID) {
        assert_eq!(st.pid, PID);
    }
    let _ = p.status(PID);
    let _ = p.io(PID);
    let _ = p.fd_limit(PID);
    let _ = p.pss(PID);
    if let Ok(names) = p.environ_names(PID, ENV_NAMES) {
        assert!(names.iter().all(|n| ENV_NAMES.contains(n)));
    }
    let _ = p.cmdline(PID);
    for f in ["tcp", "tcp6"] {
        if let Ok(text) = p.net_file(PID, f) {
            let mut bad = 0;
            let socks = parse_tcp_table(&text, f == "tcp6", None, &mut bad);
            assert!(socks.len() as u64 + bad <= text.lines().count() as u64);
        }
    }
    let _ = scanner.scan_now();
}

#[test]
fn proc_pid_files_survive_mutations() {
    let tree = Tree::new();
    let all = FILES.iter().copied().chain([("/proc/stat", PROC_STAT)]);
    for (i, (file, content)) in all.enumerate() {
        let path = tree.path(file);
        for v in variants(content.as_bytes(), 0x7069_6400 + i as u64, 64) {
            bounded(file, &v, Limits::default(), |b| {
                fs::write(&path, b).unwrap();
                let _ = parse_stat(b);
                read_all(&tree.root, &tree.scanner());
            });
        }
        fs::write(&path, content).unwrap();
    }
}

#[test]
fn the_unchanged_process_is_read_whole() {
    let tree = Tree::new();
    let mut p = Proc::new(&tree.root);
    assert_eq!(p.boot_time(), Ok(1_700_000_000));
    let st = p.stat(PID).unwrap();
    assert_eq!(
        (st.comm.as_str(), st.ppid, st.threads, st.rss),
        ("claude", 1, 7, 300)
    );
    let status = p.status(PID).unwrap();
    assert_eq!(status.swap_bytes, Some(8 * 1024));
    assert_eq!(p.pss(PID), Ok(25 * 1024));
    assert_eq!(p.fd_limit(PID), Ok(Some(1024)));
    let snap = tree.scanner().scan_now().unwrap();
    assert_eq!(snap.instances.len(), 1);
}

/// Values too large for the byte count they stand for: a malformed file, not an overflow
/// (found by the `proc_pid` fuzz target and these properties).
#[test]
fn kilobyte_counts_that_overflow_in_bytes_are_malformed() {
    let tree = Tree::new();
    let huge = "18446744073709551615";
    let cases: &[(&str, String)] = &[
        ("status", format!("Name:\tclaude\nVmSwap:\t{huge} kB\n")),
        ("smaps_rollup", format!("Rss: 1 kB\nPss: {huge} kB\n")),
    ];
    for (file, content) in cases {
        fs::write(tree.path(file), content).unwrap();
        let v = Variant {
            what: format!("{file} with {huge} kB"),
            bytes: content.clone().into_bytes(),
        };
        bounded(file, &v, Limits::default(), |_| {
            let mut p = Proc::new(&tree.root);
            let r = match *file {
                "status" => p.status(PID).map(|_| ()),
                _ => p.pss(PID).map(|_| ()),
            };
            assert!(matches!(r, Err(ReadError::Malformed(_))), "{file}: {r:?}");
            tree.scanner().scan_now().unwrap();
        });
    }
}

/// A resident set of i64::MAX pages is more bytes than a u64 holds: the scan must not wrap or
/// panic on it.
#[test]
fn a_resident_set_too_large_for_bytes_does_not_crash_the_scan() {
    let tree = Tree::new();
    let stat = FILES[0].1.replace(" 300 ", " 9223372036854775807 ");
    fs::write(tree.path("stat"), &stat).unwrap();
    let v = Variant {
        what: "rss of i64::MAX pages".into(),
        bytes: stat.into_bytes(),
    };
    bounded("stat", &v, Limits::default(), |_| {
        let snap = tree.scanner().scan_now().unwrap();
        for i in &snap.instances {
            assert!(i.own.resident_bytes > 0, "{i:?}");
        }
    });
}
