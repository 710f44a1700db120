//! The scanner on fixture `/proc` trees written by each test: every detection rule, roles,
//! reparented children, orphans, a process that vanishes, malformed and unreadable files, a
//! kernel thread named `claude`, `claude-monitor`, tree counters that never go back, restarts,
//! and sockets per network namespace.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::Duration;

use claude_process_exporter::detect::{Extra, Install, Role};
use claude_process_exporter::procfs::Scope;
use claude_process_exporter::scan::{Config, Scanner, Snapshot};

const BTIME: u64 = 1_700_000_000;

fn ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// One fake process.
struct P {
    pid: i32,
    ppid: i32,
    comm: &'static str,
    exe: Option<&'static str>,
    args: Vec<&'static str>,
    env: Vec<&'static str>,
    start: u64,
    utime: u64,
    rss_pages: u64,
    kthread: bool,
    cwd: &'static str,
    sockets: Vec<u64>,
    net_ns: u64,
}

fn p(pid: i32, ppid: i32, comm: &'static str) -> P {
    P {
        pid,
        ppid,
        comm,
        exe: Some("/usr/bin/true"),
        args: vec![comm],
        env: vec!["PATH=/usr/bin"],
        start: 1000 + pid as u64,
        utime: 100,
        rss_pages: 10,
        kthread: false,
        cwd: "/home/u",
        sockets: vec![],
        net_ns: 4026531840,
    }
}

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proc");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("stat"), format!("cpu  1 2 3 4\nbtime {BTIME}\n")).unwrap();
        Tree { _dir: dir, root }
    }

    fn add(&self, p: &P) -> &Self {
        let d = self.root.join(p.pid.to_string());
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("fd")).unwrap();
        fs::create_dir_all(d.join("ns")).unwrap();
        fs::create_dir_all(d.join("net")).unwrap();
        let flags = if p.kthread {
            0x0020_8040u64
        } else {
            0x0040_0100
        };
        fs::write(
            d.join("stat"),
            format!(
                "{} ({}) S {} {} {} 0 -1 {} 0 0 0 0 {} 20 0 0 20 0 3 0 {} 123456789 {} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
                p.pid, p.comm, p.ppid, p.pid, p.pid, flags, p.utime, p.start, p.rss_pages
            ),
        )
        .unwrap();
        fs::write(
            d.join("status"),
            format!("Name:\t{}\nVmSwap:\t       8 kB\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n", p.comm),
        )
        .unwrap();
        fs::write(
            d.join("io"),
            "rchar: 1\nwchar: 2\nread_bytes: 4096\nwrite_bytes: 8192\n",
        )
        .unwrap();
        fs::write(
            d.join("limits"),
            "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 4096                 files     \n",
        )
        .unwrap();
        let mut cmd = p.args.join("\0");
        cmd.push('\0');
        fs::write(d.join("cmdline"), cmd).unwrap();
        let mut env = p.env.join("\0");
        env.push('\0');
        fs::write(d.join("environ"), env).unwrap();
        if let Some(exe) = p.exe {
            symlink(exe, d.join("exe")).unwrap();
        }
        symlink(p.cwd, d.join("cwd")).unwrap();
        symlink(format!("net:[{}]", p.net_ns), d.join("ns/net")).unwrap();
        symlink("/dev/null", d.join("fd/0")).unwrap();
        for (i, s) in p.sockets.iter().enumerate() {
            symlink(format!("socket:[{s}]"), d.join(format!("fd/{}", i + 3))).unwrap();
        }
        fs::write(d.join("smaps_rollup"), "Rss:  40 kB\nPss:  25 kB\n").unwrap();
        self
    }

    fn remove(&self, pid: i32) {
        fs::remove_dir_all(self.root.join(pid.to_string())).unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn scanner(t: &Tree) -> Scanner {
    scanner_with(t, Extra::default(), 64)
}

fn scanner_with(t: &Tree, extra: Extra, max: usize) -> Scanner {
    Scanner::new(
        Config {
            extra,
            restart_window: Duration::from_secs(60),
            max_instances: max,
        },
        &t.root,
    )
}

fn pids(s: &Snapshot) -> Vec<i32> {
    s.instances.iter().map(|i| i.pid).collect()
}

fn find(s: &Snapshot, pid: i32) -> &claude_process_exporter::scan::InstanceReport {
    s.instances
        .iter()
        .find(|i| i.pid == pid)
        .unwrap_or_else(|| panic!("no instance {pid}: {:?}", pids(s)))
}

#[test]
fn every_detection_rule() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&P {
        exe: Some("/home/u/.local/share/claude/versions/2.1.197"),
        ..p(10, 1, "claude")
    });
    t.add(&P {
        exe: Some("/home/u/.local/share/claude/versions/2.1.197"),
        ..p(11, 1, "2.1.197")
    });
    fs::create_dir_all(t.path("12/root/opt/n/node_modules/@anthropic-ai/claude-code/bin")).ok();
    t.add(&P {
        exe: Some("/opt/n/node_modules/@anthropic-ai/claude-code/bin/claude.exe"),
        ..p(12, 1, "claude.exe")
    });
    fs::create_dir_all(t.path("12/root/opt/n/node_modules/@anthropic-ai/claude-code")).unwrap();
    fs::write(
        t.path("12/root/opt/n/node_modules/@anthropic-ai/claude-code/package.json"),
        r#"{"name":"@anthropic-ai/claude-code","version":"2.1.332"}"#,
    )
    .unwrap();
    t.add(&P {
        exe: Some("/usr/bin/node"),
        args: vec![
            "node",
            "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
            "-p",
            "hi",
        ],
        ..p(13, 1, "node")
    });
    t.add(&P {
        exe: Some("/home/u/.vscode/extensions/anthropic.claude-code-2.0.14-linux-x64/resources/native-binary/claude"),
        ..p(14, 1, "claude")
    });
    t.add(&P {
        exe: Some("/opt/x/node_modules/@anthropic-ai/claude-code-linux-x64/claude"),
        ..p(15, 1, "MainThread")
    });
    // Not Claude Code: a kernel thread named claude, claude-monitor, a version-named tool.
    t.add(&P {
        kthread: true,
        exe: None,
        ppid: 2,
        ..p(20, 2, "claude")
    });
    t.add(&P {
        exe: Some("/usr/local/bin/claude-monitor"),
        ..p(21, 1, "claude-monitor")
    });
    t.add(&P {
        exe: Some("/opt/tool/bin/tool"),
        ..p(22, 1, "1.2.3")
    });
    t.add(&P {
        exe: Some("/usr/bin/node"),
        args: vec!["node", "/srv/app.js"],
        ..p(23, 1, "node")
    });
    let snap = scanner(&t).scan_now().unwrap();
    assert_eq!(pids(&snap), vec![10, 11, 12, 13, 14, 15]);
    let got: Vec<(&str, Install, bool)> = snap
        .instances
        .iter()
        .map(|i| (i.version.as_str(), i.install, i.headless))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2.1.197", Install::Native, false),
            ("2.1.197", Install::Native, false),
            ("2.1.332", Install::Npm, false),
            ("unknown", Install::Npm, true),
            ("2.0.14", Install::Vscode, false),
            ("unknown", Install::Npm, false),
        ]
    );
    assert_eq!((snap.interactive, snap.headless), (5, 1));
    let start = find(&snap, 10).start_time;
    assert!(
        (start - (BTIME as f64 + 1010.0 / ticks() as f64)).abs() < 1e-6,
        "{start}"
    );
    assert_eq!(snap.oldest_start, Some(start));
}

#[test]
fn extra_rules_from_flags() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&P {
        exe: Some("/opt/wrap/bin/agent"),
        ..p(30, 1, "agent")
    });
    t.add(&P {
        exe: Some("/usr/bin/x"),
        ..p(31, 1, "my-claude")
    });
    let extra = Extra {
        comm: Some(regex::Regex::new("^my-claude$").unwrap()),
        exe: Some(regex::Regex::new("^/opt/wrap/").unwrap()),
    };
    assert_eq!(pids(&scanner(&t).scan_now().unwrap()), Vec::<i32>::new());
    assert_eq!(
        pids(&scanner_with(&t, extra, 64).scan_now().unwrap()),
        vec![30, 31]
    );
}

#[test]
fn roles_trees_and_totals() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&P {
        sockets: vec![501, 502, 503],
        ..p(100, 1, "claude")
    });
    // The Bash tool's shell and its child; an MCP server with a listener; a --bg helper; other.
    t.add(&P {
        env: vec!["CLAUDECODE=1", "CLAUDE_PID=100", "CLAUDE_CODE_EXECPATH=/x"],
        ..p(101, 100, "zsh")
    });
    t.add(&P {
        env: vec!["CLAUDECODE=1"],
        ..p(102, 101, "sleep")
    });
    t.add(&P {
        env: vec![
            "CLAUDECODE=1",
            "CLAUDE_PROJECT_DIR=/p",
            "CLAUDE_CODE_SESSION_ID=s",
        ],
        sockets: vec![601, 602],
        ..p(103, 100, "python3")
    });
    t.add(&P {
        args: vec!["claude", "--bg-indexer"],
        ..p(104, 100, "claude")
    });
    t.add(&P {
        ..p(105, 100, "git")
    });
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 601 1 0 100 0 0 10 0\n\
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 602 1 0 100 0 0 10 0\n\
   2: 0100007F:A000 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 501 1 0 100 0 0 10 0\n\
   3: 0100007F:A001 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 502 1 0 100 0 0 10 0\n\
   4: 0100007F:A002 0100007F:01BB 08 00000000:00000000 00:00000000 00000000     0        0 503 1 0 100 0 0 10 0\n";
    fs::write(t.path("100/net/tcp"), tcp).unwrap();
    fs::write(t.path("100/net/tcp6"), "header\n").unwrap();
    let s = scanner(&t);
    let snap = s.scan_now().unwrap();
    assert_eq!(pids(&snap), vec![100], "a --bg helper is not an instance");
    let i = find(&snap, 100);
    let roles: Vec<(Role, u64)> = i.roles.iter().map(|(r, n)| (*r, *n)).collect();
    assert_eq!(
        roles,
        vec![
            (Role::Tool, 2),
            (Role::Mcp, 1),
            (Role::Daemon, 1),
            (Role::Other, 1)
        ]
    );
    assert_eq!(snap.descendants.values().sum::<u64>(), 5);
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as u64;
    assert_eq!(i.own.resident_bytes, 10 * page);
    assert_eq!(i.tree.resident_bytes, 60 * page);
    assert_eq!(i.tree.threads, 18);
    assert_eq!(i.tree.open_fds, Some(6 + 5));
    assert_eq!(i.own.open_fds, Some(4));
    assert_eq!(i.fd_limit, Some(1024));
    assert_eq!(i.own.swap_bytes, Some(8192));
    assert_eq!(i.tree.read_bytes, Some(6 * 4096));
    assert_eq!(i.tree.voluntary_switches, Some(30));
    assert!((i.tree.cpu_user_seconds - 600.0 / ticks() as f64).abs() < 1e-9);
    assert_eq!(i.own.tcp.get("established"), Some(&2));
    assert_eq!(i.own.tcp.get("close_wait"), Some(&1));
    assert_eq!(i.tree.tcp.values().sum::<u64>(), 3);
    let ports: Vec<(u16, Scope)> = i.ports.iter().map(|(p, _, s)| (*p, *s)).collect();
    assert_eq!(ports, vec![(3000, Scope::Any), (8080, Scope::Loopback)]);

    // The shell's child exits: the tree's CPU keeps what it had used, and grows with the rest.
    t.remove(102);
    t.add(&P {
        utime: 150,
        env: vec!["CLAUDECODE=1", "CLAUDE_PID=100"],
        ..p(101, 100, "zsh")
    });
    let snap = s.scan_now().unwrap();
    let i = find(&snap, 100);
    assert!(
        (i.tree.cpu_user_seconds - 650.0 / ticks() as f64).abs() < 1e-9,
        "{}",
        i.tree.cpu_user_seconds
    );
    assert_eq!(
        i.tree.resident_bytes,
        50 * page,
        "gauges cover the live members only"
    );
    assert_eq!(i.roles[&Role::Tool], 1);
}

#[test]
fn orphans_from_history_and_from_environment_names() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&p(200, 1, "claude"));
    t.add(&P {
        env: vec!["CLAUDECODE=1", "CLAUDE_PROJECT_DIR=/p"],
        ..p(201, 200, "node")
    });
    t.add(&P {
        env: vec!["CLAUDECODE=1", "CLAUDE_PID=200"],
        ..p(202, 200, "bash")
    });
    // Left over from a session the exporter never saw: reparented to init, marked.
    t.add(&P {
        env: vec!["CLAUDE_CODE_SESSION_ID=x", "CLAUDE_PROJECT_DIR=/q"],
        rss_pages: 100,
        ..p(300, 1, "uvx")
    });
    t.add(&P {
        env: vec!["CLAUDE_CODE_SESSION_ID=x"],
        rss_pages: 50,
        ..p(301, 300, "python3")
    });
    // Reparented to init but not Claude's.
    t.add(&p(302, 1, "cron"));
    let s = scanner(&t);
    let snap = s.scan_now().unwrap();
    assert_eq!(snap.orphans.get(&Role::Mcp).map(|x| x.0), Some(2));
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as u64;
    assert_eq!(snap.orphans[&Role::Mcp].1, 150 * page);
    // The instance is killed: its MCP server is reparented to init and lives on; the shell
    // too, under a subreaper this time.
    t.remove(200);
    t.add(&P {
        env: vec!["CLAUDECODE=1", "CLAUDE_PROJECT_DIR=/p"],
        ..p(201, 1, "node")
    });
    t.add(&P {
        ..p(400, 1, "systemd")
    });
    t.add(&P {
        env: vec!["CLAUDECODE=1", "CLAUDE_PID=200"],
        ..p(202, 400, "bash")
    });
    let snap = s.scan_now().unwrap();
    assert_eq!(pids(&snap), Vec::<i32>::new());
    assert_eq!(snap.orphans.get(&Role::Mcp).map(|x| x.0), Some(3));
    assert_eq!(snap.orphans.get(&Role::Tool).map(|x| x.0), Some(1));
    assert_eq!(snap.exits, 1);
}

#[test]
fn lifecycle_starts_exits_restarts() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&P {
        cwd: "/home/u/proj",
        ..p(500, 1, "claude")
    });
    let s = scanner(&t);
    let snap = s.scan_now().unwrap();
    assert_eq!(
        (snap.starts, snap.exits, snap.restarts),
        (0, 0, 0),
        "running at the first scan: no start"
    );
    // It exits; another starts in the same directory (its start time: just now).
    t.remove(500);
    let now_ticks = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now - BTIME) * ticks()
    };
    t.add(&P {
        cwd: "/home/u/proj",
        start: now_ticks,
        ..p(501, 1, "claude")
    });
    // A headless run in the same directory is no restart.
    t.add(&P {
        cwd: "/home/u/proj",
        start: now_ticks,
        args: vec!["claude", "-p", "x"],
        ..p(502, 1, "claude")
    });
    // Another directory: no restart either.
    t.add(&P {
        cwd: "/home/u/other",
        start: now_ticks,
        ..p(503, 1, "claude")
    });
    let snap = s.scan_now().unwrap();
    assert_eq!((snap.starts, snap.exits, snap.restarts), (3, 1, 1));
    // Series of exited processes disappear.
    t.remove(501);
    let snap = s.scan_now().unwrap();
    assert_eq!(pids(&snap), vec![502, 503]);
    assert_eq!((snap.exits, snap.restarts), (2, 1));
}

#[test]
fn vanished_malformed_and_max_instances() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    for pid in 600..605 {
        t.add(&p(pid, 1, "claude"));
    }
    // A process directory without its files (it exited between the listing and the read).
    fs::create_dir_all(t.path("700")).unwrap();
    // A malformed stat.
    fs::create_dir_all(t.path("701")).unwrap();
    fs::write(t.path("701/stat"), "701 (x) S 1 2\n").unwrap();
    // An instance whose io is malformed: counted as an item error, the rest still read.
    fs::write(t.path("600/io"), "garbage\n").unwrap();
    let s = scanner_with(&t, Extra::default(), 3);
    let snap = s.scan_now().unwrap();
    assert_eq!(
        pids(&snap),
        vec![600, 601, 602],
        "oldest first keep their series"
    );
    assert_eq!(snap.omitted, 2);
    assert_eq!(snap.interactive, 5);
    assert_eq!(snap.vanished, 1);
    assert!(
        snap.errors.iter().any(|e| e.contains("/proc/701/stat")),
        "{:?}",
        snap.errors
    );
    assert!(
        snap.errors.iter().any(|e| e.contains("/proc/600/io")),
        "{:?}",
        snap.errors
    );
    assert_eq!(find(&snap, 600).own.read_bytes, None);
    assert_eq!(find(&snap, 600).own.threads, 3);
}

#[test]
fn sockets_resolved_in_each_network_namespace() {
    let t = Tree::new();
    t.add(&p(1, 0, "init"));
    t.add(&P {
        sockets: vec![900],
        net_ns: 111,
        ..p(800, 1, "claude")
    });
    t.add(&P {
        sockets: vec![900],
        net_ns: 222,
        env: vec!["CLAUDE_PROJECT_DIR=/p"],
        ..p(801, 800, "node")
    });
    let listen = |inode: u64, port: &str| {
        format!("header\n   0: 00000000:{port} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0 100 0 0 10 0\n")
    };
    // The same inode number means different sockets in different namespaces: each process's
    // own table is the one that counts.
    fs::write(t.path("800/net/tcp"), listen(900, "1F90")).unwrap();
    fs::write(t.path("800/net/tcp6"), "header\n").unwrap();
    fs::write(t.path("801/net/tcp"), "header\n").unwrap();
    fs::write(
        t.path("801/net/tcp6"),
        "header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 900 1 0 100 0 0 10 0\n",
    )
    .unwrap();
    let snap = scanner(&t).scan_now().unwrap();
    let ports: Vec<(u16, bool, Scope)> = find(&snap, 800).ports.iter().copied().collect();
    assert_eq!(
        ports,
        vec![(80, true, Scope::Loopback), (8080, false, Scope::Any)]
    );
}
