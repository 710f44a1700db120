//! The binary against the real `/proc` of this machine, with stand-in Claude Code processes
//! the test starts: a copy of bash installed as `.../claude/versions/9.9.9/claude` (so its
//! name is `claude`) running a tool-like child; a key planted in its environment and command
//! line must appear nowhere; run as an unprivileged user it says what it cannot see, and with
//! CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH it sees it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odin_testkit::{assert_promtool_clean, sample, value, Exe};

const EXE: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_claude-process-exporter"),
    env_prefix: "CLAUDE_PROCESS_EXPORTER_",
};
const SECRET: &str = "sk-ant-api03-PLANTED-SECRET-DO-NOT-EXPORT";
const ARG_MARKER: &str = "odin-cmdline-marker-7f3a";

/// A stand-in instance: bash named `claude`, running `sleep` twice (one child marked as the
/// Bash tool's by its environment's names), with a key in its environment and arguments.
struct FakeClaude {
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeClaude {
    fn start() -> FakeClaude {
        let dir = tempfile::tempdir().unwrap();
        let bin: PathBuf = dir.path().join("claude/versions/9.9.9/claude");
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::copy("/bin/bash", &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let script =
            format!("CLAUDE_PID=$$ CLAUDECODE=1 sleep 3600 & sleep 3600; : {SECRET} {ARG_MARKER}");
        let spawn = || {
            Command::new(&bin)
                .arg("-c")
                .arg(&script)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("ANTHROPIC_API_KEY", SECRET)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .spawn()
        };
        // Another test thread forking while the copy's write descriptor was open holds it
        // open a moment longer: ETXTBSY, retried.
        let mut tries = 0;
        let child = loop {
            match spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        let me = FakeClaude { child, _dir: dir };
        // Both children started.
        let deadline = Instant::now() + Duration::from_secs(10);
        while children(me.pid()).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the stand-in's children did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for FakeClaude {
    fn drop(&mut self) {
        for c in children(self.pid()) {
            // SAFETY: kill(2) on a pid this test started.
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        if rest.split(' ').nth(1) == Some(&pid.to_string()) {
            out.push(p);
        }
    }
    out
}

fn status_field(pid: i32, key: &str) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn scrape(e: &odin_testkit::Exporter) -> String {
    let r = e.get("/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn finds_the_instance_with_values_that_agree_with_proc() {
    let fake = FakeClaude::start();
    let pid = fake.pid().to_string();
    let e = EXE.start(&[], &[]);
    let rss_before = status_field(fake.pid(), "VmRSS:") * 1024.0;
    let text = scrape(&e);
    let rss_after = status_field(fake.pid(), "VmRSS:") * 1024.0;
    assert_promtool_clean(&text);
    let info = format!(
        r#"claude_instance_info{{pid="{pid}",version="9.9.9",install="native",mode="interactive"}}"#
    );
    assert_eq!(sample(&text, &info), Some(1.0), "{text}");
    let p = fake.pid();
    let threads = value(&text, &format!(r#"claude_instance_threads{{pid="{pid}"}}"#));
    assert_eq!(threads, status_field(p, "Threads:"));
    let rss = value(
        &text,
        &format!(r#"claude_instance_resident_memory_bytes{{pid="{pid}"}}"#),
    );
    // The kernel's RSS counters are summed lazily per CPU: stat and status may differ by a
    // few pages, and the process may still be settling.
    let slack = 256.0 * 1024.0;
    assert!(
        rss >= rss_before.min(rss_after) - slack && rss <= rss_before.max(rss_after) + slack,
        "{rss} vs VmRSS {rss_before}..{rss_after}"
    );
    let open = value(
        &text,
        &format!(r#"claude_instance_open_fds{{pid="{pid}"}}"#),
    );
    assert_eq!(open as usize, fds(p));
    assert_eq!(
        value(
            &text,
            &format!(r#"claude_instance_processes{{pid="{pid}",role="tool"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"claude_instance_processes{{pid="{pid}",role="other"}}"#)
        ),
        1.0
    );
    let tree_fds = value(&text, &format!(r#"claude_tree_open_fds{{pid="{pid}"}}"#));
    let want: usize = std::iter::once(p).chain(children(p)).map(fds).sum();
    assert_eq!(tree_fds as usize, want);
    assert_eq!(
        value(&text, &format!(r#"claude_tree_threads{{pid="{pid}"}}"#)),
        3.0,
        "bash and two sleeps, one thread each"
    );
    assert!(value(&text, r#"claude_instances{mode="interactive"}"#) >= 1.0);
    assert_eq!(
        value(&text, r#"claude_collector_success{collector="processes"}"#),
        1.0
    );

    // It exits: its series go at the next scrape, and the exit is counted.
    let exits = value(&text, "claude_instance_exits_total");
    drop(fake);
    std::thread::sleep(odin_scan_reuse());
    let text = scrape(&e);
    assert_eq!(sample(&text, &info), None);
    assert!(sample(&text, &format!(r#"claude_instance_threads{{pid="{pid}"}}"#)).is_none());
    // (At least: the other tests' stand-ins come and go in parallel.)
    assert!(value(&text, "claude_instance_exits_total") >= exits + 1.0);
}

fn odin_scan_reuse() -> Duration {
    claude_process_exporter::scan::REUSE + Duration::from_millis(100)
}

#[test]
fn a_planted_key_appears_nowhere() {
    let fake = FakeClaude::start();
    let e = EXE.start(&["--log.level=debug".into(), "--collector.pss".into()], &[]);
    let metrics = scrape(&e);
    assert!(
        metrics.contains(&format!(r#"pid="{}""#, fake.pid())),
        "the stand-in was found"
    );
    let health = e.get("/health").text();
    let landing = e.get("/").text();
    std::thread::sleep(Duration::from_millis(200));
    let log = e.log();
    for (what, text) in [
        ("/metrics", &metrics),
        ("/health", &health),
        ("/", &landing),
        ("log", &log),
    ] {
        assert!(!text.contains(SECRET), "{what} leaks the key");
        assert!(!text.contains("sk-ant"), "{what} leaks a key prefix");
        assert!(!text.contains(ARG_MARKER), "{what} shows the command line");
    }
}

fn setpriv(caps: bool) -> Vec<String> {
    let mut a: Vec<String> = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        .map(String::from)
        .into();
    if caps {
        a.push("--inh-caps=+sys_ptrace,+dac_read_search".into());
        a.push("--ambient-caps=+sys_ptrace,+dac_read_search".into());
    }
    a.push("--".into());
    a.push(EXE.bin.into());
    a
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn unprivileged_it_says_what_it_cannot_see_and_the_capabilities_fix_it() {
    if !running_as_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to start the exporter as another user");
        return;
    }
    let fake = FakeClaude::start();
    let pid = fake.pid().to_string();
    let setpriv_exe = Exe {
        bin: "/usr/bin/setpriv",
        env_prefix: "CLAUDE_PROCESS_EXPORTER_",
    };
    let plain = setpriv_exe.start(&setpriv(false), &[]);
    let text = scrape(&plain);
    // Found by its name (stat is readable by anyone); its files are not.
    assert!(
        text.contains(&format!(
            r#"claude_instance_info{{pid="{pid}",version="unknown",install="unknown""#
        )),
        "{text}"
    );
    assert!(value(&text, "claude_scan_unreadable_processes") >= 1.0);
    assert!(sample(
        &text,
        &format!(r#"claude_instance_open_fds{{pid="{pid}"}}"#)
    )
    .is_none());
    let health = plain.get("/health").text();
    assert!(health.contains("CAP_SYS_PTRACE"), "{health}");
    drop(plain);

    let capable = setpriv_exe.start(&setpriv(true), &[]);
    let text = scrape(&capable);
    assert!(
        text.contains(&format!(
            r#"claude_instance_info{{pid="{pid}",version="9.9.9",install="native""#
        )),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"claude_instance_open_fds{{pid="{pid}"}}"#)
        ) as usize,
        fds(fake.pid())
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"claude_instance_processes{{pid="{pid}",role="tool"}}"#)
        ),
        1.0
    );
}

#[test]
fn invalid_regex_is_refused_naming_the_flag() {
    let out = EXE.once(&["--match.comm=(".into()], &[]);
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("--match.comm"), "{all}");
}
