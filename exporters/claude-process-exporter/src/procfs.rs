//! Small, allocation-light readers of the `/proc` files this exporter needs, below any procfs
//! root (`--path.procfs`, fixture trees in tests).
//!
//! Every reader tells a process that is gone ([`ReadError::Gone`]: it exited while being
//! read, counted and skipped) from one the exporter may not read ([`ReadError::Denied`]:
//! another user's, without root or `CAP_SYS_PTRACE`) and from a malformed file.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The process (or the file) vanished: it exited mid-scan.
    Gone,
    /// Permission denied: another user's process.
    Denied,
    /// The file was read but did not parse.
    Malformed(String),
}

impl ReadError {
    /// `path` names the file in the message of a failed read (a procfs path: a pid and a
    /// file name, nothing of the process's own).
    fn from_io(e: &io::Error, path: &Path) -> Self {
        match e.kind() {
            io::ErrorKind::PermissionDenied => ReadError::Denied,
            // ENOENT, and ESRCH from a reader of a task that just died: gone.
            io::ErrorKind::NotFound => ReadError::Gone,
            _ if e.raw_os_error() == Some(libc::ESRCH) => ReadError::Gone,
            _ => ReadError::Malformed(format!("{}: read error ({e})", path.display())),
        }
    }
}

pub type ProcResult<T> = Result<T, ReadError>;

/// Reads relative to one procfs root, with a reusable buffer.
pub struct Proc {
    root: PathBuf,
    buf: Vec<u8>,
}

/// What `/proc/<pid>/stat` says (the fields the exporter uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub ppid: i32,
    pub kernel_thread: bool,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
    pub vsize: u64,
    /// Pages.
    pub rss: u64,
}

/// What `/proc/<pid>/status` adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub swap_bytes: Option<u64>,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
}

/// `/proc/<pid>/io`'s storage bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Io {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// `/proc/<pid>/fd`: how many, and the inodes of the sockets among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fds {
    pub count: u64,
    pub sockets: Vec<u64>,
}

impl Proc {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Proc {
            root: root.into(),
            buf: Vec::with_capacity(4096),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, pid: i32, file: &str) -> PathBuf {
        let mut p = self.root.join(pid.to_string());
        if !file.is_empty() {
            p.push(file);
        }
        p
    }

    /// Read a whole file into the shared buffer.
    ///
    /// procfs files report no size, and `read_to_end` would spend an `fstat`, a seek and a
    /// final empty read on each; a scan reads thousands. The per-process files read here
    /// (`stat`, `status`, `io`, `limits`, `smaps_rollup`, `environ`, `cmdline`, `/proc/stat`)
    /// are produced whole by one read when the buffer is large enough, so [`Self::slurp`]
    /// stops at the first short read that ends a line. Tables that the kernel hands out a
    /// page at a time (`net/tcp`) go through [`Self::slurp_to_end`].
    fn slurp(&mut self, path: &Path) -> ProcResult<&[u8]> {
        self.read_into_buf(path, false)
    }

    /// Read a file to its end (an empty read), whatever the sizes of the reads before.
    fn slurp_to_end(&mut self, path: &Path) -> ProcResult<&[u8]> {
        self.read_into_buf(path, true)
    }

    fn read_into_buf(&mut self, path: &Path, to_end: bool) -> ProcResult<&[u8]> {
        self.buf.clear();
        let mut f = fs::File::open(path).map_err(|e| ReadError::from_io(&e, path))?;
        loop {
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(self.buf.capacity().max(4096));
            }
            let len = self.buf.len();
            let room = self.buf.capacity() - len;
            self.buf.resize(len + room, 0);
            let n = match f.read(&mut self.buf[len..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.buf.truncate(len);
                    continue;
                }
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(ReadError::from_io(&e, path));
                }
            };
            self.buf.truncate(len + n);
            let ends_line = self.buf.last().map_or(true, |&b| b == b'\n' || b == 0);
            if n == 0 || (!to_end && n < room && ends_line) {
                return Ok(&self.buf);
            }
        }
    }

    /// Every numeric entry of the procfs root: the processes.
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let mut out = Vec::with_capacity(1024);
        for entry in fs::read_dir(&self.root)? {
            let Ok(entry) = entry else { continue };
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            {
                if pid > 0 {
                    out.push(pid);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// `btime` of `/proc/stat`: boot time in Unix seconds.
    pub fn boot_time(&mut self) -> ProcResult<u64> {
        let path = self.root.join("stat");
        let text = self.slurp(&path)?;
        let text = String::from_utf8_lossy(text);
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ReadError::Malformed("/proc/stat: no btime line".into()))
    }

    pub fn stat(&mut self, pid: i32) -> ProcResult<Stat> {
        let path = self.path(pid, "stat");
        let raw = self.slurp(&path)?;
        parse_stat(raw).ok_or_else(|| ReadError::Malformed(format!("/proc/{pid}/stat: malformed")))
    }

    pub fn status(&mut self, pid: i32) -> ProcResult<Status> {
        let path = self.path(pid, "status");
        let raw = self.slurp(&path)?;
        let mut st = Status::default();
        for line in raw.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (key, rest) = (&line[..colon], &line[colon + 1..]);
            let slot = match key {
                b"VmSwap" => &mut st.swap_bytes,
                b"voluntary_ctxt_switches" => &mut st.voluntary_switches,
                b"nonvoluntary_ctxt_switches" => &mut st.involuntary_switches,
                _ => continue,
            };
            let text = std::str::from_utf8(rest).unwrap_or("").trim();
            let mut parts = text.split_whitespace();
            let n = parts.next().and_then(|v| v.parse::<u64>().ok());
            // A kB count too large for bytes is as malformed as no number at all.
            *slot = match (n, parts.next()) {
                (Some(n), Some("kB")) if n.checked_mul(1024).is_some() => Some(n * 1024),
                (Some(n), None) => Some(n),
                _ => {
                    return Err(ReadError::Malformed(format!(
                        "/proc/{pid}/status: malformed"
                    )))
                }
            };
        }
        Ok(st)
    }

    pub fn io(&mut self, pid: i32) -> ProcResult<Io> {
        let path = self.path(pid, "io");
        let raw = self.slurp(&path)?;
        let text = String::from_utf8_lossy(raw);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        match (field("read_bytes:"), field("write_bytes:")) {
            (Some(r), Some(w)) => Ok(Io {
                read_bytes: r,
                write_bytes: w,
            }),
            _ => Err(ReadError::Malformed(format!("/proc/{pid}/io: malformed"))),
        }
    }

    /// The soft limit on open files (`Max open files` of `/proc/<pid>/limits`); `None` when
    /// unlimited.
    pub fn fd_limit(&mut self, pid: i32) -> ProcResult<Option<u64>> {
        let path = self.path(pid, "limits");
        let raw = self.slurp(&path)?;
        let text = String::from_utf8_lossy(raw);
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .ok_or_else(|| ReadError::Malformed(format!("/proc/{pid}/limits: malformed")))?;
        match line["Max open files".len()..].split_whitespace().next() {
            Some("unlimited") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ReadError::Malformed(format!("/proc/{pid}/limits: malformed"))),
            None => Err(ReadError::Malformed(format!(
                "/proc/{pid}/limits: malformed"
            ))),
        }
    }

    /// Open descriptors and the inodes of the sockets among them (`socket:[N]` links).
    pub fn fds(&self, pid: i32) -> ProcResult<Fds> {
        let dir = self.path(pid, "fd");
        let entries = fs::read_dir(&dir).map_err(|e| ReadError::from_io(&e, &dir))?;
        let mut out = Fds::default();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            out.count += 1;
            // A descriptor closed between the listing and the readlink is simply not a socket.
            if let Ok(target) = fs::read_link(entry.path()) {
                if let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok())
                {
                    out.sockets.push(inode);
                }
            }
        }
        Ok(out)
    }

    /// The names (never the values) of the process's environment variables that are in
    /// `wanted`. The values are read by the kernel into the buffer and overwritten; they are
    /// never copied out, compared or kept.
    pub fn environ_names(
        &mut self,
        pid: i32,
        wanted: &[&'static str],
    ) -> ProcResult<Vec<&'static str>> {
        let path = self.path(pid, "environ");
        let raw = self.slurp(&path)?;
        let mut found: Vec<&'static str> = Vec::new();
        for entry in raw.split(|&b| b == 0) {
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            if let Some(w) = wanted.iter().find(|w| w.as_bytes() == &entry[..eq]) {
                if !found.contains(w) {
                    found.push(w);
                }
            }
        }
        self.buf.fill(0);
        Ok(found)
    }

    /// The command line's arguments, only to classify the process (headless, `--bg-*`,
    /// `cli.js`); callers keep booleans, never the arguments.
    pub fn cmdline(&mut self, pid: i32) -> ProcResult<Vec<String>> {
        let path = self.path(pid, "cmdline");
        let raw = self.slurp(&path)?;
        let args = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        self.buf.fill(0);
        Ok(args)
    }

    pub fn exe(&self, pid: i32) -> ProcResult<PathBuf> {
        let path = self.path(pid, "exe");
        fs::read_link(&path).map_err(|e| ReadError::from_io(&e, &path))
    }

    pub fn cwd(&self, pid: i32) -> ProcResult<PathBuf> {
        let path = self.path(pid, "cwd");
        fs::read_link(&path).map_err(|e| ReadError::from_io(&e, &path))
    }

    /// The inode of the process's network namespace (`ns/net` -> `net:[N]`).
    pub fn net_ns(&self, pid: i32) -> ProcResult<u64> {
        let path = self.path(pid, "ns/net");
        let target = fs::read_link(&path).map_err(|e| ReadError::from_io(&e, &path))?;
        target
            .to_str()
            .and_then(|t| t.strip_prefix("net:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ReadError::Malformed(format!("/proc/{pid}/ns/net: malformed")))
    }

    /// `Pss` of `/proc/<pid>/smaps_rollup`, in bytes.
    pub fn pss(&mut self, pid: i32) -> ProcResult<u64> {
        let path = self.path(pid, "smaps_rollup");
        let raw = self.slurp(&path)?;
        let text = String::from_utf8_lossy(raw);
        text.lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .and_then(|kb| kb.checked_mul(1024))
            .ok_or_else(|| ReadError::Malformed(format!("/proc/{pid}/smaps_rollup: malformed")))
    }

    /// A file of the process's own view of the network (`net/tcp`, `net/tcp6`): in the
    /// process's network namespace, which is how a container's sockets are resolved.
    pub fn net_file(&mut self, pid: i32, file: &str) -> ProcResult<String> {
        let path = self.path(pid, &format!("net/{file}"));
        let raw = self.slurp_to_end(&path)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// A file inside the process's root directory (its mount namespace), for the
    /// `package.json` of the npm package its executable lies in.
    pub fn file_in_root(&self, pid: i32, path: &Path) -> ProcResult<String> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let path = self.path(pid, "root").join(rel);
        fs::read_to_string(&path).map_err(|e| ReadError::from_io(&e, &path))
    }
}

/// The environment variable names this exporter ever looks for.
pub const ENV_NAMES: &[&str] = &[
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDE_PID",
    "CLAUDE_PROJECT_DIR",
];

pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&raw[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(&raw[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    if f.len() < 22 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    Some(Stat {
        pid,
        comm,
        ppid: f[1].parse().ok()?,
        kernel_thread: n(6)? & PF_KTHREAD != 0,
        utime: n(11)?,
        stime: n(12)?,
        threads: f[17].parse::<i64>().ok()?.max(0) as u64,
        starttime: n(19)?,
        vsize: n(20)?,
        rss: f[21].parse::<i64>().ok()?.max(0) as u64,
    })
}

/// One TCP socket of a `net/tcp{,6}` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub inode: u64,
    pub state: u8,
    pub port: u16,
    pub ipv6: bool,
    pub scope: Scope,
}

/// Where a listening socket is reachable from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Loopback,
    Any,
    Other,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Loopback => "loopback",
            Scope::Any => "any",
            Scope::Other => "other",
        }
    }
}

pub const TCP_LISTEN: u8 = 0x0A;

/// The kernel's TCP state names (`include/net/tcp_states.h`), lower case.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        0x01 => "established",
        0x02 => "syn_sent",
        0x03 => "syn_recv",
        0x04 => "fin_wait1",
        0x05 => "fin_wait2",
        0x06 => "time_wait",
        0x07 => "close",
        0x08 => "close_wait",
        0x09 => "last_ack",
        0x0A => "listen",
        0x0B => "closing",
        0x0C => "new_syn_recv",
        _ => "unknown",
    }
}

/// The sockets of a `net/tcp` or `net/tcp6` table (those whose inode is in `wanted`, when
/// given). Malformed lines are counted in `bad`.
pub fn parse_tcp_table(
    text: &str,
    ipv6: bool,
    wanted: Option<&HashSet<u64>>,
    bad: &mut u64,
) -> Vec<TcpSocket> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 {
            if !line.trim().is_empty() {
                *bad += 1;
            }
            continue;
        }
        let Ok(inode) = f[9].parse::<u64>() else {
            *bad += 1;
            continue;
        };
        if wanted.is_some_and(|w| !w.contains(&inode)) {
            continue;
        }
        let (Some((addr, port)), Ok(state)) = (f[1].split_once(':'), u8::from_str_radix(f[3], 16))
        else {
            *bad += 1;
            continue;
        };
        let (Ok(port), Some(scope)) = (u16::from_str_radix(port, 16), address_scope(addr, ipv6))
        else {
            *bad += 1;
            continue;
        };
        out.push(TcpSocket {
            inode,
            state,
            port,
            ipv6,
            scope,
        });
    }
    out
}

/// The scope of a local address as `net/tcp{,6}` prints it: 32-bit words in host byte order,
/// hex.
fn address_scope(hex: &str, ipv6: bool) -> Option<Scope> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    // Each word holds four address bytes in the kernel's memory order; on the little-endian
    // machines this reads on, from_str_radix gives the bytes reversed.
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| {
            if cfg!(target_endian = "little") {
                w.to_le_bytes()
            } else {
                w.to_be_bytes()
            }
        })
        .collect();
    if !ipv6 {
        if bytes.len() != 4 {
            return None;
        }
        return Some(v4_scope([bytes[0], bytes[1], bytes[2], bytes[3]]));
    }
    if bytes.len() != 16 {
        return None;
    }
    let b: [u8; 16] = bytes.try_into().ok()?;
    let addr = std::net::Ipv6Addr::from(b);
    if addr.is_unspecified() {
        return Some(Scope::Any);
    }
    if addr.is_loopback() {
        return Some(Scope::Loopback);
    }
    if let Some(v4) = addr.to_ipv4_mapped() {
        return Some(v4_scope(v4.octets()));
    }
    Some(Scope::Other)
}

fn v4_scope(b: [u8; 4]) -> Scope {
    let addr = std::net::Ipv4Addr::from(b);
    if addr.is_unspecified() {
        Scope::Any
    } else if addr.is_loopback() {
        Scope::Loopback
    } else {
        Scope::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let raw = b"4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 123456 1048576 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(raw).unwrap();
        assert_eq!(st.pid, 4242);
        assert_eq!(st.comm, "my (odd) name");
        assert_eq!(st.ppid, 1);
        assert!(!st.kernel_thread);
        assert_eq!((st.utime, st.stime, st.threads), (250, 75, 7));
        assert_eq!((st.starttime, st.vsize, st.rss), (123456, 1048576, 300));
    }

    #[test]
    fn kernel_thread_flag() {
        let raw = b"77 (claude) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0 40 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0";
        assert!(parse_stat(raw).unwrap().kernel_thread);
    }

    #[test]
    fn truncated_stat_is_malformed() {
        assert_eq!(parse_stat(b"12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    /// `net/tcp` comes a page at a time: a table longer than a page is read whole.
    #[test]
    fn net_table_longer_than_a_page_is_read_whole() {
        use std::net::{TcpListener, TcpStream};
        use std::os::unix::fs::MetadataExt;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // 60 connections, both ends: at least 121 lines of about 150 bytes.
        let mut held = Vec::new();
        for _ in 0..60 {
            held.push(TcpStream::connect(addr).unwrap());
            held.push(listener.accept().unwrap().0);
        }
        let me = std::process::id() as i32;
        let mut inodes = HashSet::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if let Ok(t) = std::fs::read_link(entry.path()) {
                if t.to_string_lossy().starts_with("socket:") {
                    inodes.insert(std::fs::metadata(entry.path()).unwrap().ino());
                }
            }
        }
        assert!(inodes.len() > 120, "{} sockets", inodes.len());
        let mut proc = Proc::new("/proc");
        let text = proc.net_file(me, "tcp").unwrap();
        assert!(text.len() > 4096 * 3, "{} bytes", text.len());
        let mut bad = 0;
        let found = parse_tcp_table(&text, false, Some(&inodes), &mut bad);
        assert_eq!(
            found.len(),
            inodes.len(),
            "every socket of this process is in the table"
        );
        drop(held);
    }

    #[test]
    fn tcp_table_scopes_and_states() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1 0 100 0 0 10 0\n\
   2: 0F02000A:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 113 1 0 100 0 0 10 0\n\
   3: broken line\n";
        let wanted: HashSet<u64> = [111, 112, 113].into();
        let mut bad = 0;
        let socks = parse_tcp_table(v4, false, Some(&wanted), &mut bad);
        assert_eq!(bad, 1);
        assert_eq!(socks.len(), 3);
        assert_eq!(
            (socks[0].port, socks[0].scope, socks[0].state),
            (8080, Scope::Loopback, TCP_LISTEN)
        );
        assert_eq!((socks[1].port, socks[1].scope), (22, Scope::Any));
        assert_eq!(
            (socks[2].scope, tcp_state_name(socks[2].state)),
            (Scope::Other, "established")
        );
        let v6 = "header\n\
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 211 1 0 100 0 0 10 0\n\
   1: 00000000000000000000000000000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 212 1 0 100 0 0 10 0\n\
   2: 0000000000000000FFFF00000100007F:0052 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 213 1 0 100 0 0 10 0\n\
   3: 0000000000000000FFFF00000100007F:0053 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0 100 0 0 10 0\n";
        let wanted: HashSet<u64> = [211, 212, 213].into();
        let socks = parse_tcp_table(v6, true, Some(&wanted), &mut bad);
        let scopes: Vec<_> = socks.iter().map(|s| (s.port, s.scope)).collect();
        assert_eq!(
            scopes,
            vec![
                (80, Scope::Loopback),
                (81, Scope::Any),
                (82, Scope::Loopback)
            ]
        );
    }
}
