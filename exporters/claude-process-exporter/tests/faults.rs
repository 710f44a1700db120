//! Processes that exit while the scanner reads them, and files that fail to read:
//!
//! - on a fixture `/proc`, a tree member whose `stat` is still there but whose `status`, `io`
//!   and `fd/` are gone (it exited between the two reads): the scan succeeds, the process is
//!   counted in `vanished`, its stat figures are kept, and the tree's counters neither go back
//!   nor lose what it had reached when it leaves for good;
//! - an `io` file answering `EIO` (a symlink to `/proc/self/mem`): one item error, the rest of
//!   the process is read;
//! - live, a stand-in instance whose children are started and reaped all the time while the
//!   scanner runs on the real `/proc`: every scan succeeds and no tree counter goes back.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use claude_process_exporter::detect::Extra;
use claude_process_exporter::scan::{Config, InstanceReport, Scanner, Snapshot};
use odin_testkit::faults::{answers, replace, EIO};

const BTIME: u64 = 1_700_000_000;

/// What one fake process holds.
struct P {
    pid: i32,
    ppid: i32,
    comm: &'static str,
    utime: u64,
    read_bytes: u64,
    voluntary: u64,
}

fn write_proc(root: &Path, p: &P) {
    let d = root.join(p.pid.to_string());
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("fd")).unwrap();
    fs::create_dir_all(d.join("ns")).unwrap();
    fs::write(
        d.join("stat"),
        format!(
            "{} ({}) S {} {} {} 0 -1 4194560 0 0 0 0 {} 20 0 0 20 0 3 0 {} 123456789 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
            p.pid, p.comm, p.ppid, p.pid, p.pid, p.utime, 1000 + p.pid
        ),
    )
    .unwrap();
    fs::write(
        d.join("status"),
        format!(
            "Name:\t{}\nVmSwap:\t       0 kB\nvoluntary_ctxt_switches:\t{}\nnonvoluntary_ctxt_switches:\t1\n",
            p.comm, p.voluntary
        ),
    )
    .unwrap();
    fs::write(
        d.join("io"),
        format!(
            "rchar: 1\nwchar: 2\nread_bytes: {}\nwrite_bytes: 512\n",
            p.read_bytes
        ),
    )
    .unwrap();
    fs::write(d.join("cmdline"), format!("{}\0", p.comm)).unwrap();
    fs::write(d.join("environ"), "PATH=/usr/bin\0").unwrap();
    symlink("/usr/bin/true", d.join("exe")).unwrap();
    symlink("/home/u", d.join("cwd")).unwrap();
    symlink("net:[4026531840]", d.join("ns/net")).unwrap();
    symlink("/dev/null", d.join("fd/0")).unwrap();
}

fn fixture_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("proc");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("stat"), format!("cpu  1 2 3 4\nbtime {BTIME}\n")).unwrap();
    (dir, root)
}

fn scanner(root: &Path, extra: Extra) -> Scanner {
    Scanner::new(
        Config {
            extra,
            restart_window: Duration::from_secs(60),
            max_instances: 64,
        },
        root,
    )
}

fn instance(s: &Snapshot, pid: i32) -> &InstanceReport {
    s.instances
        .iter()
        .find(|i| i.pid == pid)
        .unwrap_or_else(|| panic!("no instance {pid}"))
}

/// init (pid 1) and a Claude Code instance (pid 100) under it.
fn init_and_claude(root: &Path) {
    for p in [
        P {
            pid: 1,
            ppid: 0,
            comm: "init",
            utime: 1,
            read_bytes: 0,
            voluntary: 0,
        },
        P {
            pid: 100,
            ppid: 1,
            comm: "claude",
            utime: 100,
            read_bytes: 4096,
            voluntary: 10,
        },
    ] {
        write_proc(root, &p);
    }
}

#[test]
fn a_member_that_exits_between_its_stat_and_its_other_files() {
    let (_dir, root) = fixture_root();
    init_and_claude(&root);
    let child = P {
        pid: 101,
        ppid: 100,
        comm: "cargo",
        utime: 50,
        read_bytes: 8192,
        voluntary: 7,
    };
    write_proc(&root, &child);
    let s = scanner(&root, Extra::default());
    let first = s.scan_now().unwrap();
    let tree = instance(&first, 100).tree.clone();
    assert_eq!(tree.read_bytes, Some(4096 + 8192));
    assert_eq!(tree.voluntary_switches, Some(10 + 7));
    assert_eq!(first.vanished, 0);

    // The child exits after its stat is read: status, io and fd/ are gone, stat is not.
    let d = root.join("101");
    fs::remove_file(d.join("status")).unwrap();
    fs::remove_file(d.join("io")).unwrap();
    fs::remove_dir_all(d.join("fd")).unwrap();
    let mid = s.scan_now().expect("the scan succeeds");
    assert_eq!(mid.vanished, 1, "counted");
    assert!(mid.errors.is_empty(), "{:?}", mid.errors);
    let t = &instance(&mid, 100).tree;
    assert_eq!(t.read_bytes, tree.read_bytes, "no counter goes back");
    assert_eq!(t.voluntary_switches, tree.voluntary_switches);
    assert_eq!(t.cpu_user_seconds, tree.cpu_user_seconds);
    assert_eq!(t.threads, tree.threads, "its stat figures are kept");

    // Gone for good: what it had reached stays in the tree's counters.
    fs::remove_dir_all(&d).unwrap();
    let after = s.scan_now().unwrap();
    let t = &instance(&after, 100).tree;
    assert_eq!(t.read_bytes, tree.read_bytes, "nothing lost at the exit");
    assert_eq!(t.voluntary_switches, tree.voluntary_switches);
    assert_eq!(t.cpu_user_seconds, tree.cpu_user_seconds);
    assert_eq!(after.vanished, 1, "the vanished count is a running total");
}

#[test]
fn an_io_file_answering_eio_is_one_item_error() {
    if !answers(EIO, libc::EIO) {
        return;
    }
    let (_dir, root) = fixture_root();
    init_and_claude(&root);
    write_proc(
        &root,
        &P {
            pid: 101,
            ppid: 100,
            comm: "cargo",
            utime: 50,
            read_bytes: 8192,
            voluntary: 7,
        },
    );
    let s = scanner(&root, Extra::default());
    let first = s.scan_now().unwrap();
    let io = root.join("101/io");
    replace(&io, EIO);
    let snap = s.scan_now().expect("the scan succeeds");
    assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
    assert!(snap.errors[0].contains("/proc/101/io"), "{:?}", snap.errors);
    let (was, now) = (&instance(&first, 100).tree, &instance(&snap, 100).tree);
    assert_eq!(now.read_bytes, was.read_bytes, "the last reading stands");
    assert_eq!(
        now.voluntary_switches, was.voluntary_switches,
        "status still read"
    );
}

/// The tree counters of one report, to compare scans.
fn counters(i: &InstanceReport) -> [f64; 6] {
    let t = &i.tree;
    [
        t.cpu_user_seconds,
        t.cpu_system_seconds,
        t.read_bytes.unwrap_or(0) as f64,
        t.written_bytes.unwrap_or(0) as f64,
        t.voluntary_switches.unwrap_or(0) as f64,
        t.involuntary_switches.unwrap_or(0) as f64,
    ]
}

/// A child process killed and reaped when dropped, a failed assertion included.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn live_children_that_come_and_go_while_scanned() {
    // A stand-in instance: a copy of sh under a name of its own, found by --match.comm, whose
    // children (short sleeps and trues) start and are reaped all the time.
    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("odinfaultinst");
    fs::copy("/bin/sh", &shell).unwrap();
    let inst = Command::new(&shell)
        .args([
            "-c",
            "while :; do sleep 0.003 & sleep 0.001; true; wait; done",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let inst = Reaped(inst);
    let pid = i32::try_from(inst.0.id()).unwrap();
    let extra = Extra {
        comm: Some(regex::Regex::new("^odinfaultinst$").unwrap()),
        exe: None,
    };
    let s = scanner(Path::new("/proc"), extra);
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut last: Option<[f64; 6]> = None;
    let (mut scans, mut seen_members) = (0, 0usize);
    while Instant::now() < deadline {
        let snap = s.scan_now().expect("every scan succeeds");
        scans += 1;
        let Some(i) = snap.instances.iter().find(|i| i.pid == pid) else {
            continue;
        };
        seen_members = seen_members.max(i.members.len());
        let now = counters(i);
        if let Some(prev) = last {
            for (k, (a, b)) in prev.iter().zip(now).enumerate() {
                assert!(b >= *a, "tree counter {k} went back: {prev:?} -> {now:?}");
            }
        }
        last = Some(now);
    }
    let vanished = s.scan_now().unwrap().vanished;
    drop(inst);
    assert!(last.is_some(), "the stand-in instance was never found");
    eprintln!(
        "{scans} scans, up to {seen_members} members; {vanished} processes (host-wide) vanished while scanned"
    );
}
