//! One scan of the process table: which processes are Claude Code instances, their trees, the
//! orphans, and what each costs. [`Scanner::snapshot`] is what the collectors read.
//!
//! Cost: every scan reads `/proc/<pid>/stat` of every process (to find candidates and the
//! parent links); `status`, `io`, `limits`, `fd/` and the sockets only of instances and their
//! descendants (the first `--max-instances` instances); `exe`, `cmdline`, `cwd` and the
//! environment's names once per process lifetime (cached by pid, start time and name).
//! Snapshots younger than [`REUSE`] are shared, so two collectors of one scrape scan once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::detect::{self, Extra, Install, Role};
use crate::procfs::{self, Proc, ReadError, Scope, TcpSocket, ENV_NAMES};

/// A snapshot this young is served again instead of scanning anew.
pub const REUSE: Duration = Duration::from_millis(500);

/// Parents that adopt orphans: init (pid 1) and these subreapers. A process under one of them
/// has its environment's names checked once for the session markers.
const SUBREAPERS: &[&str] = &[
    "systemd",
    "init",
    "tini",
    "dumb-init",
    "docker-init",
    "catatonit",
    "containerd-shim",
    "conmon",
    "s6-svscan",
    "runsvdir",
];

#[derive(Debug, Clone)]
pub struct Config {
    pub extra: Extra,
    pub restart_window: Duration,
    pub max_instances: usize,
}

/// Identity of a process across scans: pid and start time (clock ticks after boot).
type Key = (i32, u64);

/// Counters summed over a tree: kept per member and added to the tree's total when it leaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub utime: u64,
    pub stime: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Counters {
    /// Saturating: the counts come from files, and a corrupt one must not wrap the total.
    fn add(&mut self, o: &Counters) {
        self.utime = self.utime.saturating_add(o.utime);
        self.stime = self.stime.saturating_add(o.stime);
        self.read_bytes = self.read_bytes.saturating_add(o.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(o.write_bytes);
        self.voluntary = self.voluntary.saturating_add(o.voluntary);
        self.involuntary = self.involuntary.saturating_add(o.involuntary);
    }

    /// Each counter at the larger of the two readings of one process: a file that could not
    /// be read this time (the process exited between its `stat` and its `io`) reads as 0,
    /// and must neither take back what the last scan counted nor lose it at the exit.
    fn at_least(&mut self, o: &Counters) {
        self.utime = self.utime.max(o.utime);
        self.stime = self.stime.max(o.stime);
        self.read_bytes = self.read_bytes.max(o.read_bytes);
        self.write_bytes = self.write_bytes.max(o.write_bytes);
        self.voluntary = self.voluntary.max(o.voluntary);
        self.involuntary = self.involuntary.max(o.involuntary);
    }
}

/// What one process (or a tree, summed) costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub swap_bytes: Option<u64>,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub read_bytes: Option<u64>,
    pub written_bytes: Option<u64>,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// TCP connections by state name (listening sockets are in `ports`).
    pub tcp: BTreeMap<&'static str, u64>,
}

/// One live instance, as the collectors export it.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub pid: i32,
    pub version: String,
    pub install: Install,
    pub headless: bool,
    pub start_time: f64,
    /// The instance process alone.
    pub own: Reading,
    /// The instance and every descendant; counters never go back.
    pub tree: Reading,
    pub fd_limit: Option<u64>,
    /// Descendants by role.
    pub roles: BTreeMap<Role, u64>,
    /// Listening TCP ports of the tree: (port, ipv6, scope).
    pub ports: BTreeSet<(u16, bool, Scope)>,
    /// Pids of the tree, the instance first.
    pub members: Vec<i32>,
}

/// The result of one scan.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The first `--max-instances` live instances, oldest first.
    pub instances: Vec<InstanceReport>,
    pub omitted: usize,
    pub interactive: u64,
    pub headless: u64,
    pub descendants: BTreeMap<Role, u64>,
    /// Orphans by role: (processes, resident bytes).
    pub orphans: BTreeMap<Role, (u64, u64)>,
    pub oldest_start: Option<f64>,
    pub starts: u64,
    pub exits: u64,
    pub restarts: u64,
    pub vanished: u64,
    pub scanned: u64,
    pub unreadable: u64,
    /// Malformed files met in this scan (never their content).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
struct Meta {
    version: String,
    install: Install,
    headless: bool,
    cwd: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum Class {
    Kernel,
    Instance(Meta),
    Plain,
}

/// What is known of one process for its whole life (its name included: an exec changes it).
#[derive(Debug, Clone)]
struct Known {
    start: u64,
    comm: String,
    class: Class,
    /// The executable could not be read (another user's process).
    denied: bool,
    /// Marker names of the environment, read when first needed; `Some(None)`: unreadable.
    env: Option<Option<Vec<&'static str>>>,
    /// Whether its command line names a `--bg-*` helper; read when first needed.
    helper: Option<Option<bool>>,
}

#[derive(Debug, Clone)]
struct Live {
    headless: bool,
    cwd: Option<PathBuf>,
    /// Each member's counters at the last scan, and what members that left had reached.
    members: HashMap<Key, Counters>,
    departed: Counters,
}

#[derive(Debug)]
struct Exit {
    cwd: PathBuf,
    /// Last scan that saw it alive, and the scan that saw it gone (Unix seconds).
    alive_at: f64,
    gone_at: f64,
}

#[derive(Default)]
struct State {
    boot_time: Option<u64>,
    known: HashMap<i32, Known>,
    live: HashMap<Key, Live>,
    /// Roles of processes seen in a tree: an orphan keeps its role after its instance dies.
    history: HashMap<Key, Role>,
    exits_pending: Vec<Exit>,
    scans: u64,
    starts: u64,
    exits: u64,
    restarts: u64,
    vanished: u64,
    last_scan_time: f64,
    last: Option<(Instant, Arc<Snapshot>)>,
}

pub struct Scanner {
    cfg: Config,
    procfs: PathBuf,
    ticks: f64,
    page_size: u64,
    state: Mutex<State>,
}

fn sysconf(name: libc::c_int, fallback: i64) -> i64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v
    } else {
        fallback
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Scanner {
    pub fn new(cfg: Config, procfs: impl Into<PathBuf>) -> Self {
        Scanner {
            cfg,
            procfs: procfs.into(),
            ticks: sysconf(libc::_SC_CLK_TCK, 100) as f64,
            page_size: sysconf(libc::_SC_PAGESIZE, 4096) as u64,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last snapshot, if any (for `/health`).
    pub fn last(&self) -> Option<Arc<Snapshot>> {
        self.lock().last.as_ref().map(|(_, s)| s.clone())
    }

    /// A snapshot at most [`REUSE`] old: the last one, or a new scan. `Err` only when the
    /// procfs root itself cannot be listed.
    pub fn snapshot(&self) -> anyhow::Result<Arc<Snapshot>> {
        let mut st = self.lock();
        if let Some((at, snap)) = &st.last {
            if at.elapsed() < REUSE {
                return Ok(snap.clone());
            }
        }
        let snap = Arc::new(self.scan(&mut st)?);
        st.last = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// A new scan, whatever the age of the last one (tests step through scans with it).
    pub fn scan_now(&self) -> anyhow::Result<Arc<Snapshot>> {
        let mut st = self.lock();
        let snap = Arc::new(self.scan(&mut st)?);
        st.last = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// Seconds since the epoch of a start time in clock ticks after boot.
    fn start_seconds(&self, boot: u64, ticks: u64) -> f64 {
        boot as f64 + ticks as f64 / self.ticks
    }

    fn scan(&self, st: &mut State) -> anyhow::Result<Snapshot> {
        let mut proc = Proc::new(&self.procfs);
        let now = unix_now();
        let mut snap = Snapshot::default();
        let pids = proc
            .pids()
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", self.procfs.display()))?;
        let boot = match st.boot_time {
            Some(b) => b,
            None => {
                let b = proc.boot_time().map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the boot time from {}/stat: {e:?}",
                        self.procfs.display()
                    )
                })?;
                st.boot_time = Some(b);
                b
            }
        };

        // 1. stat of every process.
        let mut stats: HashMap<i32, procfs::Stat> = HashMap::with_capacity(pids.len());
        for pid in pids {
            match proc.stat(pid) {
                Ok(s) => {
                    stats.insert(pid, s);
                }
                Err(ReadError::Gone) => snap.vanished += 1,
                Err(ReadError::Denied) => snap.unreadable += 1,
                Err(ReadError::Malformed(what)) => snap.errors.push(what),
            }
        }
        snap.scanned = stats.len() as u64;

        // 2. Classify what is new (or was renamed by an exec) since the last scan.
        st.known.retain(|pid, k| {
            stats
                .get(pid)
                .is_some_and(|s| s.starttime == k.start && s.comm == k.comm)
        });
        let mut gone = Vec::new();
        for (pid, s) in &stats {
            if st.known.contains_key(pid) {
                continue;
            }
            match self.classify(&mut proc, s) {
                Ok(k) => {
                    st.known.insert(*pid, k);
                }
                Err(()) => gone.push(*pid),
            }
        }
        for pid in gone {
            stats.remove(&pid);
            snap.vanished += 1;
        }

        // 3. Parent links, instances oldest first.
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for s in stats.values() {
            if !s.kernel_thread {
                children.entry(s.ppid).or_default().push(s.pid);
            }
        }
        for c in children.values_mut() {
            c.sort_unstable();
        }
        let mut instances: Vec<i32> = st
            .known
            .iter()
            .filter(|(_, k)| matches!(k.class, Class::Instance(_)))
            .map(|(pid, _)| *pid)
            .collect();
        instances.sort_by_key(|pid| (stats[pid].starttime, *pid));

        // 4. Each instance's tree, roles inherited from the instance's direct children.
        let mut role_of: HashMap<i32, Role> = HashMap::new();
        let mut trees: Vec<(i32, Vec<(i32, Role)>)> = Vec::new();
        for &ipid in &instances {
            let mut members = Vec::new();
            let mut stack: Vec<(i32, Option<Role>)> = vec![(ipid, None)];
            let mut seen = HashSet::new();
            while let Some((pid, role)) = stack.pop() {
                if !seen.insert(pid) {
                    continue;
                }
                if let Some(r) = role {
                    members.push((pid, r));
                    role_of.entry(pid).or_insert(r);
                }
                for &c in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
                    let r = match role {
                        Some(r) => r,
                        None => self.role_of(&mut proc, &mut st.known, c),
                    };
                    stack.push((c, Some(r)));
                }
            }
            trees.push((ipid, members));
        }
        for r in role_of.values() {
            *snap.descendants.entry(*r).or_default() += 1;
        }

        // 5. Orphans: outside every live tree, with a role from history or session markers.
        let in_tree: HashSet<i32> = role_of
            .keys()
            .copied()
            .chain(instances.iter().copied())
            .collect();
        let mut orphan_roots: Vec<(i32, Role)> = Vec::new();
        let mut pids_sorted: Vec<i32> = stats.keys().copied().collect();
        pids_sorted.sort_unstable();
        for &pid in &pids_sorted {
            let s = &stats[&pid];
            if s.kernel_thread || in_tree.contains(&pid) {
                continue;
            }
            if let Some(r) = st.history.get(&(pid, s.starttime)) {
                // Its parent was in a tree too: the branch is counted from its top.
                let parent_in_history = stats.get(&s.ppid).is_some_and(|p| {
                    st.history.contains_key(&(p.pid, p.starttime)) && !in_tree.contains(&p.pid)
                });
                if !parent_in_history {
                    orphan_roots.push((pid, *r));
                }
                continue;
            }
            let adopted = s.ppid == 1
                || stats
                    .get(&s.ppid)
                    .is_some_and(|p| SUBREAPERS.contains(&p.comm.as_str()));
            if !adopted {
                continue;
            }
            let marked = self
                .env(&mut proc, &mut st.known, pid)
                .is_some_and(|names| detect::session_marked(&names));
            if marked {
                let r = self.role_of(&mut proc, &mut st.known, pid);
                orphan_roots.push((pid, r));
            }
        }
        let mut orphan_roles: HashMap<i32, Role> = HashMap::new();
        for (root, role) in orphan_roots {
            let mut stack = vec![root];
            while let Some(pid) = stack.pop() {
                if in_tree.contains(&pid) || orphan_roles.insert(pid, role).is_some() {
                    continue;
                }
                stack.extend(children.get(&pid).map(Vec::as_slice).unwrap_or(&[]));
            }
        }
        for (pid, role) in &orphan_roles {
            let e = snap.orphans.entry(*role).or_default();
            e.0 += 1;
            e.1 =
                e.1.saturating_add(stats[pid].rss.saturating_mul(self.page_size));
        }

        // 6. History: roles of every tree member and orphan still alive.
        let mut history = HashMap::new();
        for (pid, role) in role_of.iter().chain(orphan_roles.iter()) {
            history.insert((*pid, stats[pid].starttime), *role);
        }
        st.history = history;

        // 7. Lifecycle: starts, exits, restarts.
        let live_keys: HashMap<Key, i32> = instances
            .iter()
            .map(|p| ((*p, stats[p].starttime), *p))
            .collect();
        let ended: Vec<Key> = st
            .live
            .keys()
            .filter(|k| !live_keys.contains_key(k))
            .copied()
            .collect();
        for key in ended {
            let l = st.live.remove(&key).expect("listed above");
            st.exits += 1;
            if let (false, Some(cwd)) = (l.headless, l.cwd) {
                st.exits_pending.push(Exit {
                    cwd,
                    alive_at: st.last_scan_time,
                    gone_at: now,
                });
            }
        }
        let window = self.cfg.restart_window.as_secs_f64();
        let mut new_keys: Vec<(Key, i32)> = live_keys
            .iter()
            .filter(|(k, _)| !st.live.contains_key(k))
            .map(|(k, p)| (*k, *p))
            .collect();
        new_keys.sort_by_key(|(k, _)| (k.1, k.0));
        for (key, pid) in new_keys {
            let Class::Instance(meta) = &st.known[&pid].class else {
                continue;
            };
            if st.scans > 0 {
                st.starts += 1;
            }
            let start = self.start_seconds(boot, key.1);
            if let (false, Some(cwd)) = (meta.headless, &meta.cwd) {
                if let Some(i) = st.exits_pending.iter().position(|e| {
                    &e.cwd == cwd && start >= e.alive_at - 1.0 && start <= e.gone_at + window
                }) {
                    st.exits_pending.remove(i);
                    st.restarts += 1;
                }
            }
            st.live.insert(
                key,
                Live {
                    headless: meta.headless,
                    cwd: meta.cwd.clone(),
                    members: HashMap::new(),
                    departed: Counters::default(),
                },
            );
        }
        st.exits_pending.retain(|e| e.gone_at + window >= now);

        // 8. Readings of the first --max-instances instances.
        let mut denied: HashSet<i32> = st
            .known
            .iter()
            .filter(|(_, k)| k.denied)
            .map(|(p, _)| *p)
            .collect();
        // TCP tables of each network namespace, read once per scan when a tree has a socket there.
        let mut tables: HashMap<u64, HashMap<u64, TcpSocket>> = HashMap::new();
        for (ipid, members) in &trees {
            let meta = match &st.known[ipid].class {
                Class::Instance(m) => m.clone(),
                _ => continue,
            };
            if meta.headless {
                snap.headless += 1;
            } else {
                snap.interactive += 1;
            }
            let start = self.start_seconds(boot, stats[ipid].starttime);
            snap.oldest_start = Some(snap.oldest_start.map_or(start, |o: f64| o.min(start)));
            if snap.instances.len() >= self.cfg.max_instances {
                snap.omitted += 1;
                continue;
            }
            let key = (*ipid, stats[ipid].starttime);
            let report = self.read_tree(
                &mut proc,
                st,
                key,
                &meta,
                members,
                &stats,
                start,
                &mut snap,
                &mut denied,
                &mut tables,
            );
            snap.instances.push(report);
        }
        snap.unreadable += denied.len() as u64;

        st.scans += 1;
        st.last_scan_time = now;
        st.vanished += snap.vanished;
        snap.vanished = st.vanished;
        snap.starts = st.starts;
        snap.exits = st.exits;
        snap.restarts = st.restarts;
        Ok(snap)
    }

    /// Classify a process seen for the first time (or renamed). `Err` when it vanished.
    fn classify(&self, proc: &mut Proc, s: &procfs::Stat) -> Result<Known, ()> {
        let mut known = Known {
            start: s.starttime,
            comm: s.comm.clone(),
            class: Class::Plain,
            denied: false,
            env: None,
            helper: None,
        };
        if s.kernel_thread {
            known.class = Class::Kernel;
            return Ok(known);
        }
        let exe = match proc.exe(s.pid) {
            Ok(p) => Some(p),
            Err(ReadError::Gone) => {
                // A zombie has no executable but is still there; anything else exited.
                if proc.stat(s.pid).is_err() {
                    return Err(());
                }
                None
            }
            Err(_) => {
                known.denied = true;
                None
            }
        };
        let first = detect::instance(&s.comm, exe.as_deref(), None, &self.cfg.extra);
        if first.is_none() && !detect::needs_cmdline(&s.comm, exe.as_deref()) {
            return Ok(known);
        }
        let args = match proc.cmdline(s.pid) {
            Ok(a) => Some(a),
            Err(ReadError::Gone) => return Err(()),
            Err(_) => None,
        };
        let Some(found) =
            detect::instance(&s.comm, exe.as_deref(), args.as_deref(), &self.cfg.extra)
        else {
            known.helper = Some(args.as_deref().map(detect::is_helper));
            return Ok(known);
        };
        let version = found
            .version
            .clone()
            .or_else(|| self.npm_version(proc, s.pid, exe.as_deref(), args.as_deref()))
            .unwrap_or_else(|| "unknown".to_owned());
        let headless = args.as_deref().is_some_and(detect::headless);
        let cwd = if headless { None } else { proc.cwd(s.pid).ok() };
        known.helper = Some(Some(false));
        known.class = Class::Instance(Meta {
            version,
            install: found.install,
            headless,
            cwd,
        });
        Ok(known)
    }

    /// The `version` of the `package.json` of the npm package the executable (or, under node,
    /// the `cli.js` argument) lies in, read in the process's own mount namespace.
    fn npm_version(
        &self,
        proc: &Proc,
        pid: i32,
        exe: Option<&Path>,
        args: Option<&[String]>,
    ) -> Option<String> {
        let from_args = args.and_then(|a| {
            a.iter()
                .skip(1)
                .take(3)
                .find(|x| x.ends_with("@anthropic-ai/claude-code/cli.js"))
                .map(PathBuf::from)
        });
        let candidates = [exe.map(Path::to_path_buf), from_args];
        for path in candidates.iter().flatten() {
            let Some(dir) = detect::npm_package_dir(path) else {
                continue;
            };
            let Ok(text) = proc.file_in_root(pid, &dir.join("package.json")) else {
                continue;
            };
            let version = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_owned));
            if let Some(v) =
                version.filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Some(v);
            }
        }
        None
    }

    /// Marker names of a process's environment (cached); `None` when unreadable.
    fn env(
        &self,
        proc: &mut Proc,
        known: &mut HashMap<i32, Known>,
        pid: i32,
    ) -> Option<Vec<&'static str>> {
        let k = known.get_mut(&pid)?;
        if k.env.is_none() {
            let read = proc.environ_names(pid, ENV_NAMES);
            if matches!(read, Err(ReadError::Denied)) {
                k.denied = true;
            }
            k.env = Some(read.ok());
        }
        k.env.clone().flatten()
    }

    /// The role of the top of a branch (a direct child of an instance, or an orphan).
    fn role_of(&self, proc: &mut Proc, known: &mut HashMap<i32, Known>, pid: i32) -> Role {
        let env = self.env(proc, known, pid);
        let Some(k) = known.get_mut(&pid) else {
            return Role::Other;
        };
        if k.helper.is_none() {
            k.helper = Some(proc.cmdline(pid).ok().map(|a| detect::is_helper(&a)));
        }
        detect::role(&k.comm, k.helper == Some(Some(true)), env.as_deref())
    }

    #[allow(clippy::too_many_arguments)]
    fn read_tree(
        &self,
        proc: &mut Proc,
        st: &mut State,
        key: Key,
        meta: &Meta,
        members: &[(i32, Role)],
        stats: &HashMap<i32, procfs::Stat>,
        start: f64,
        snap: &mut Snapshot,
        denied: &mut HashSet<i32>,
        tables: &mut HashMap<u64, HashMap<u64, TcpSocket>>,
    ) -> InstanceReport {
        let ipid = key.0;
        let mut report = InstanceReport {
            pid: ipid,
            version: meta.version.clone(),
            install: meta.install,
            headless: meta.headless,
            start_time: start,
            own: Reading::default(),
            tree: Reading::default(),
            fd_limit: None,
            roles: Role::ALL.iter().map(|r| (*r, 0)).collect(),
            ports: BTreeSet::new(),
            members: std::iter::once(ipid)
                .chain(members.iter().map(|(p, _)| *p))
                .collect(),
        };
        for (_, r) in members {
            *report.roles.entry(*r).or_default() += 1;
        }
        report.fd_limit = match proc.fd_limit(ipid) {
            Ok(l) => l,
            Err(e) => {
                self.note(e, ipid, snap, denied);
                None
            }
        };
        // Sockets of every member, resolved per network namespace.
        let mut sockets_of: Vec<(i32, Vec<u64>)> = Vec::new();
        let mut current: HashMap<Key, Counters> = HashMap::new();
        let mut tree_complete = Reading::default();
        let (mut any_swap, mut any_fds, mut any_io, mut any_cs) = (false, false, false, false);
        for &pid in &report.members {
            let Some(s) = stats.get(&pid) else { continue };
            let mut r = Reading {
                cpu_user_seconds: s.utime as f64 / self.ticks,
                cpu_system_seconds: s.stime as f64 / self.ticks,
                resident_bytes: s.rss.saturating_mul(self.page_size),
                virtual_bytes: s.vsize,
                threads: s.threads,
                ..Reading::default()
            };
            let mut c = Counters {
                utime: s.utime,
                stime: s.stime,
                ..Counters::default()
            };
            let mut exited = false;
            match proc.status(pid) {
                Ok(x) => {
                    r.swap_bytes = x.swap_bytes;
                    r.voluntary_switches = x.voluntary_switches;
                    r.involuntary_switches = x.involuntary_switches;
                    c.voluntary = x.voluntary_switches.unwrap_or(0);
                    c.involuntary = x.involuntary_switches.unwrap_or(0);
                }
                Err(ReadError::Gone) => exited = true,
                Err(e) => self.note(e, pid, snap, denied),
            }
            match proc.io(pid) {
                Ok(x) => {
                    r.read_bytes = Some(x.read_bytes);
                    r.written_bytes = Some(x.write_bytes);
                    c.read_bytes = x.read_bytes;
                    c.write_bytes = x.write_bytes;
                }
                Err(ReadError::Gone) => exited = true,
                Err(e) => self.note(e, pid, snap, denied),
            }
            match proc.fds(pid) {
                Ok(f) => {
                    r.open_fds = Some(f.count);
                    if !f.sockets.is_empty() {
                        sockets_of.push((pid, f.sockets));
                    }
                }
                Err(ReadError::Gone) => exited = true,
                Err(e) => self.note(e, pid, snap, denied),
            }
            // Exited between its stat and the other files: counted, and its stat figures
            // kept. Whatever could not be read keeps the last scan's count (see `at_least`).
            if exited {
                snap.vanished += 1;
            }
            let key_of_member = (pid, s.starttime);
            if let Some(last) = st
                .live
                .get(&key)
                .and_then(|l| l.members.get(&key_of_member))
            {
                c.at_least(last);
            }
            current.insert(key_of_member, c);
            let t = &mut tree_complete;
            // Saturating sums: the values come from files (see `Counters::add`).
            t.resident_bytes = t.resident_bytes.saturating_add(r.resident_bytes);
            t.virtual_bytes = t.virtual_bytes.saturating_add(r.virtual_bytes);
            t.threads = t.threads.saturating_add(r.threads);
            any_swap |= r.swap_bytes.is_some();
            any_fds |= r.open_fds.is_some();
            any_io |= r.read_bytes.is_some();
            any_cs |= r.voluntary_switches.is_some();
            t.swap_bytes = Some(
                t.swap_bytes
                    .unwrap_or(0)
                    .saturating_add(r.swap_bytes.unwrap_or(0)),
            );
            t.open_fds = Some(
                t.open_fds
                    .unwrap_or(0)
                    .saturating_add(r.open_fds.unwrap_or(0)),
            );
            if pid == ipid {
                report.own = r;
            }
        }
        // Tree counters: members that left add what they had reached; never backwards.
        let live = st
            .live
            .get_mut(&key)
            .expect("registered in the lifecycle step");
        let previous = std::mem::take(&mut live.members);
        for (k, c) in &previous {
            if !current.contains_key(k) {
                live.departed.add(c);
            }
        }
        let mut total = live.departed;
        for c in current.values() {
            total.add(c);
        }
        live.members = current;
        tree_complete.cpu_user_seconds = total.utime as f64 / self.ticks;
        tree_complete.cpu_system_seconds = total.stime as f64 / self.ticks;
        tree_complete.read_bytes = any_io.then_some(total.read_bytes);
        tree_complete.written_bytes = any_io.then_some(total.write_bytes);
        tree_complete.voluntary_switches = any_cs.then_some(total.voluntary);
        tree_complete.involuntary_switches = any_cs.then_some(total.involuntary);
        if !any_swap {
            tree_complete.swap_bytes = None;
        }
        if !any_fds {
            tree_complete.open_fds = None;
        }
        report.tree = tree_complete;

        // TCP: one read of net/tcp{,6} per network namespace of the tree.
        if !sockets_of.is_empty() {
            let mut ns_of: HashMap<i32, u64> = HashMap::new();
            for (pid, _) in &sockets_of {
                let Ok(ns) = proc.net_ns(*pid) else { continue };
                ns_of.insert(*pid, ns);
                if let std::collections::hash_map::Entry::Vacant(e) = tables.entry(ns) {
                    e.insert(self.tcp_table(proc, *pid, snap));
                }
            }
            // Inode numbers are per namespace: a socket is (namespace, inode).
            let mut tree_seen = HashSet::new();
            for (pid, inodes) in &sockets_of {
                let Some(ns) = ns_of.get(pid) else { continue };
                for inode in inodes {
                    let Some(s) = tables.get(ns).and_then(|t| t.get(inode)) else {
                        continue;
                    };
                    if s.state == procfs::TCP_LISTEN {
                        report.ports.insert((s.port, s.ipv6, s.scope));
                        continue;
                    }
                    let name = procfs::tcp_state_name(s.state);
                    if *pid == ipid {
                        *report.own.tcp.entry(name).or_default() += 1;
                    }
                    if tree_seen.insert((*ns, *inode)) {
                        *report.tree.tcp.entry(name).or_default() += 1;
                    }
                }
            }
        }
        report
    }

    /// Every TCP socket of the network namespace `pid` is in, by inode (`net/tcp` and
    /// `net/tcp6` as that process sees them).
    fn tcp_table(&self, proc: &mut Proc, pid: i32, snap: &mut Snapshot) -> HashMap<u64, TcpSocket> {
        let mut out = HashMap::new();
        for (file, v6) in [("tcp", false), ("tcp6", true)] {
            let mut bad = 0;
            if let Ok(text) = proc.net_file(pid, file) {
                for s in procfs::parse_tcp_table(&text, v6, None, &mut bad) {
                    out.insert(s.inode, s);
                }
            }
            if bad > 0 {
                snap.errors
                    .push(format!("/proc/{pid}/net/{file}: {bad} malformed lines"));
            }
        }
        out
    }

    fn note(&self, e: ReadError, pid: i32, snap: &mut Snapshot, denied: &mut HashSet<i32>) {
        match e {
            ReadError::Gone => {}
            ReadError::Denied => {
                denied.insert(pid);
            }
            ReadError::Malformed(what) => snap.errors.push(what),
        }
    }
}
