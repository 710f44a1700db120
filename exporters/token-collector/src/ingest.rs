//! Reading transcript and spool files: only appended bytes, complete lines only (a last line
//! without `\n` waits until it is complete), one transaction per chunk committing the file's
//! new offset with what its lines counted (a full scan reads small files ahead on worker
//! threads and commits several of them, in walk order, per transaction, each with its offset). A file that shrank or was replaced (another inode)
//! is read again from the start; the dedup makes that safe. A deleted file changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::live::Live;
use crate::store::{self, Fault, Item, Outcomes, Store, MALFORMED, NO_USAGE};
use crate::transcript::{parse_line, Line};
use crate::usage::Captured;

/// Bytes read per transaction (more when one line is longer).
const CHUNK: usize = 4 << 20;

/// Files with at most this many bytes to read are read and parsed ahead by worker threads.
const PARALLEL_MAX: u64 = 8 << 20;
/// How far (in files) the workers may read ahead of the commits.
const AHEAD_FILES: usize = 1024;
/// How many bytes read ahead may wait for their commit (more when one file is larger).
const AHEAD_BYTES: u64 = 32 << 20;
/// At most this many files, or about this many items, per transaction of a full scan.
const GROUP_FILES: usize = 256;
const GROUP_ITEMS: usize = 8192;

/// What kind of file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Transcript,
    Spool,
}

/// Where the sources are.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Claude config directories; transcripts are `<dir>/projects/**/*.jsonl`.
    pub config_dirs: Vec<PathBuf>,
    /// Terminal captures: `<dir>/*.jsonl`.
    pub spool_dir: PathBuf,
}

impl Sources {
    /// The directories to watch: each `<config>/projects` and the spool.
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut v: Vec<(PathBuf, bool)> = Vec::new();
        for d in &self.config_dirs {
            v.push((d.join("projects"), true));
            // The configuration directory itself, for the moment Claude Code creates
            // `projects/` in it (before the first session there is none to watch).
            v.push((d.clone(), false));
        }
        v.push((self.spool_dir.clone(), false));
        v
    }

    /// Whether `path` is the `projects/` directory of a configuration directory: its
    /// appearance calls for a full scan, which also starts watching it.
    pub fn is_projects_dir(&self, path: &Path) -> bool {
        self.config_dirs.iter().any(|d| path == d.join("projects"))
    }

    /// The kind of `path`, if it is one of ours.
    pub fn kind_of(&self, path: &Path) -> Option<Kind> {
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            return None;
        }
        if path.parent() == Some(self.spool_dir.as_path()) {
            return Some(Kind::Spool);
        }
        self.config_dirs
            .iter()
            .any(|d| path.starts_with(d.join("projects")))
            .then_some(Kind::Transcript)
    }

    /// The directory whose owner a file belongs to: its transcript root (the first
    /// configuration directory holding it), or the spool.
    pub fn root_of(&self, path: &Path, kind: Kind) -> PathBuf {
        match kind {
            Kind::Spool => self.spool_dir.clone(),
            Kind::Transcript => self
                .config_dirs
                .iter()
                .find(|d| path.starts_with(d.join("projects")))
                .cloned()
                .unwrap_or_else(|| self.spool_dir.clone()),
        }
    }

    /// The owners of the configuration directories that exist: whose usage this collector
    /// sees. The spool is left out: under the system unit it belongs to the service's own
    /// user, which would make one person's host look shared.
    pub fn owners(&self) -> Vec<String> {
        self.config_dirs
            .iter()
            .filter_map(|d| crate::paths::owner_of(d))
            .collect()
    }

    /// Every source file now present.
    pub fn walk(&self) -> Vec<(PathBuf, Kind)> {
        let mut out = Vec::new();
        for d in &self.config_dirs {
            walk_jsonl(&d.join("projects"), true, &mut out, Kind::Transcript);
        }
        walk_jsonl(&self.spool_dir, false, &mut out, Kind::Spool);
        // Transcripts before captures: a Claude Code session whose transcript and capture
        // arrive together is counted from its transcript (source claude_code).
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out.dedup();
        out
    }
}

/// `*.jsonl` files under `dir` (recursively when asked; symlinked directories not followed).
pub fn walk_jsonl(dir: &Path, recursive: bool, out: &mut Vec<(PathBuf, Kind)>, kind: Kind) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if recursive {
                walk_jsonl(&p, true, out, kind);
            }
        } else if p.extension().is_some_and(|x| x == "jsonl") && (ft.is_file() || ft.is_symlink()) {
            out.push((p, kind));
        }
    }
}

/// The store, the live counters and the sources: everything an ingest pass needs.
pub struct Ingester {
    pub store: Store,
    pub live: Arc<Mutex<Live>>,
    pub sources: Sources,
    /// Owner of each source root, looked up once (the first time a file of it is read).
    pub owners: HashMap<PathBuf, String>,
    /// Every file's inode and offset as last committed: how far the live counters have
    /// counted it, kept here too so that a database lost while running can be rebuilt up to
    /// there without counting anything twice.
    committed: HashMap<String, (u64, u64)>,
    /// A database fault whose rebuild has not completed yet (no pass runs until it has), and
    /// whether the new database is open already (a rebuild that failed half-way resumes).
    pending: Option<(Fault, bool)>,
    /// When and why the database was last rebuilt (at start or while running), for `/health`.
    pub last_rebuild: Option<(jiff::Timestamp, String)>,
}

/// Result of one pass.
#[derive(Debug, Default)]
pub struct Pass {
    pub files: usize,
    /// Files read (or tried) in this pass.
    pub attempted: usize,
    /// Files that could not be read (and, below, the database errors too).
    pub errors: Vec<String>,
    /// Database errors (a full disk, an I/O error): what was read stays uncounted, to be
    /// read again.
    pub store_errors: Vec<String>,
    /// A database error that says the file is damaged.
    pub corrupt: Option<String>,
    /// mtime of the newest file with complete lines left unread (errors).
    pub lagging_mtime: Option<SystemTime>,
}

impl Pass {
    /// Note a database error (not a file's).
    fn store_error(&mut self, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        if self.corrupt.is_none() && store::is_corruption(e) {
            self.corrupt = Some(msg.clone());
        }
        self.store_errors.push(msg);
    }
}

/// Seconds from `t` to now (0 when `t` is in the future).
pub fn lag_since(t: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(t)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Ingester {
    /// An ingester on `store`, whose counters `live` was loaded from.
    pub fn new(store: Store, live: Arc<Mutex<Live>>, sources: Sources) -> anyhow::Result<Self> {
        let committed = store.file_offsets()?;
        Ok(Ingester {
            store,
            live,
            sources,
            owners: HashMap::new(),
            committed,
            pending: None,
            last_rebuild: None,
        })
    }

    /// The database fault found before this pass, or pending from an earlier one.
    pub fn fault(&mut self) -> Option<Fault> {
        if self.pending.is_none() {
            self.pending = self.store.check_file().err().map(|f| (f, false));
        }
        self.pending.as_ref().map(|(f, _)| f.clone())
    }

    /// Note a fault found by a pass (a corruption SQLite reported): rebuilt before the next.
    pub fn set_fault(&mut self, fault: Fault) {
        self.pending = Some((fault, false));
    }

    /// Rebuild the database after `fault`: open a new one at its path (a damaged one is moved
    /// aside), then import every file again up to the offset the live counters have counted
    /// it to, without adding to them; then make its persisted counters those served, which
    /// still hold the usage of transcripts deleted since it was counted. The next pass goes
    /// on from there, so nothing is counted twice and no counter goes back. A rebuild that
    /// fails (the disk full meanwhile) is done again, resuming, before the next pass.
    pub fn rebuild(&mut self) -> anyhow::Result<String> {
        let Some((fault, reopened)) = self.pending.clone() else {
            anyhow::bail!("no database fault to rebuild after");
        };
        let moved = if reopened {
            None
        } else {
            let moved = self.store.reopen(&fault)?;
            self.pending = Some((fault.clone(), true));
            moved
        };
        let mut files: Vec<(PathBuf, Kind, u64, u64)> = self
            .committed
            .iter()
            .filter_map(|(k, &(ino, off))| {
                let p = PathBuf::from(k);
                self.sources.kind_of(&p).map(|kind| (p, kind, ino, off))
            })
            .collect();
        // The order of a full scan, which decides which file a response is counted from.
        files.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let (mut redone, mut skipped) = (0, 0);
        for (path, kind, ino, off) in files {
            if self.catch_up(&path, kind, ino, off)? {
                redone += 1;
            } else {
                skipped += 1;
            }
        }
        {
            let live = lock(&self.live);
            let (series, unpriced, lines, label_user) = (
                live.series.clone(),
                live.unpriced.clone(),
                live.lines,
                live.label_user,
            );
            drop(live);
            self.store
                .align_totals(&series, &unpriced, lines, label_user)?;
        }
        self.pending = None;
        lock(&self.live).database_rebuilds += 1;
        let mut msg = format!(
            "{fault}: rebuilt from the transcripts and captures on disk ({redone} files \
             imported again up to what was counted, nothing counted twice"
        );
        if skipped > 0 {
            msg.push_str(&format!(
                "; {skipped} gone or rewritten since, their usage kept in the counters"
            ));
        }
        msg.push(')');
        if let Some(m) = moved {
            msg.push_str(&format!("; the damaged file is kept as {}", m.display()));
        }
        self.last_rebuild = Some((jiff::Timestamp::now(), msg.clone()));
        Ok(msg)
    }

    /// Import `path` into the (rebuilt) database up to `offset`, where the live counters have
    /// counted it, without adding to them; resumes where the database's own offset is.
    /// `Ok(false)` when the file is gone or is no longer the one counted (another inode, or
    /// shorter): nothing of it can be imported.
    fn catch_up(
        &mut self,
        path: &Path,
        kind: Kind,
        inode: u64,
        offset: u64,
    ) -> anyhow::Result<bool> {
        let key = path.to_string_lossy().into_owned();
        let Ok(mut f) = File::open(path) else {
            return Ok(false);
        };
        let meta = f.metadata()?;
        if meta.ino() != inode || meta.len() < offset {
            return Ok(false);
        }
        let mut at = match self.store.file_offset(&key)? {
            Some((ino, off)) if ino == inode && off <= offset => off,
            _ => 0,
        };
        let user = self.user_of(path, kind);
        f.seek(SeekFrom::Start(at))?;
        let mut buf: Vec<u8> = Vec::new();
        // The file position of the end of `buf`; `offset` is always at the end of a line.
        let mut read_to = at;
        while read_to < offset {
            let want = usize::try_from(offset - read_to)
                .unwrap_or(CHUNK)
                .min(CHUNK);
            let start = buf.len();
            buf.resize(start + want, 0);
            let n = f.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                break;
            }
            read_to += n as u64;
            let cut = if read_to == offset {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => continue, // one long line: read on
                }
            };
            let (items, extra) = parse_chunk(&buf[..cut], kind);
            at += cut as u64;
            // What the live counters already hold: committed, not added again.
            self.store
                .commit_batch(Some((&key, inode, at)), &user, &items, extra)?;
            buf.drain(..cut);
        }
        Ok(true)
    }

    /// Every file of the tree and the spool. Files with at most [`PARALLEL_MAX`] bytes to read
    /// are read and parsed ahead by worker threads; the calling thread commits them in the
    /// order of the walk (which decides which file a response is counted from), several files
    /// of one owner per transaction, each with its new offset. Larger files are read here,
    /// in chunks, as [`Ingester::ingest_file`] does.
    pub fn scan_all(&mut self) -> Pass {
        let files = self.sources.walk();
        let mut pass = Pass {
            files: files.len(),
            ..Pass::default()
        };
        let present: HashSet<String> = files
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        let mut stored = match self.store.file_offsets() {
            Ok(m) => m,
            Err(e) => {
                pass.store_error(&e.context("read file offsets"));
                pass.attempted = 1; // every file fails: so does the pass
                return pass;
            }
        };
        // One stat per file: what is left to read, and while this pass reads, the lag is that
        // of the newest file with unread bytes.
        let mut pending: Option<SystemTime> = None;
        let mut plan: Vec<Planned> = Vec::with_capacity(files.len());
        for (p, kind) in files {
            pass.attempted += 1;
            let key = p.to_string_lossy().into_owned();
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.file_error(&p, e.into(), &mut pass);
                    continue;
                }
            };
            let known = stored.remove(&key);
            let offset = match known {
                Some((ino, off)) if ino == meta.ino() && off <= meta.len() => off,
                _ => 0,
            };
            if meta.len() == offset {
                continue;
            }
            if meta.len() > offset {
                pending = pending.max(meta.modified().ok());
            }
            plan.push(Planned {
                path: p,
                key,
                kind,
                known,
                parallel: meta.len() - offset <= PARALLEL_MAX,
                bytes: meta.len() - offset,
            });
        }
        if let Some(t) = pending {
            lock(&self.live).lag_seconds = lag_since(t);
        }
        self.ingest_planned(&plan, &mut pass);
        // Forget files that are gone (what they counted stays counted).
        if let Ok(known) = self.store.files() {
            let gone: Vec<String> = known.into_iter().filter(|k| !present.contains(k)).collect();
            match self.store.forget_files(&gone) {
                Ok(()) => {
                    for k in &gone {
                        self.committed.remove(k);
                    }
                }
                Err(e) => pass.store_error(&e.context("forget deleted files")),
            }
        }
        let now = now_ms();
        let mut live = lock(&self.live);
        live.files_followed = pass.files as u64;
        live.prune(now);
        pass
    }

    /// Read and commit the planned files, in their order.
    fn ingest_planned(&mut self, plan: &[Planned], pass: &mut Pass) {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let window = Window {
            state: Mutex::new(WindowState {
                next: 0,
                wanted: 0,
                in_flight: 0,
                done: false,
                results: HashMap::new(),
            }),
            cv: Condvar::new(),
        };
        std::thread::scope(|scope| {
            if plan.iter().any(|f| f.parallel) {
                for _ in 0..threads {
                    scope.spawn(|| read_ahead(plan, &window));
                }
            }
            let mut group = Group::default();
            for (i, f) in plan.iter().enumerate() {
                if !f.parallel {
                    self.flush(&mut group, pass);
                    {
                        let mut w = lock(&window.state);
                        w.wanted = i;
                        window.cv.notify_all();
                    }
                    self.ingest_into(&f.path, f.kind, pass);
                    continue;
                }
                let read = {
                    let mut w = lock(&window.state);
                    w.wanted = i;
                    window.cv.notify_all();
                    loop {
                        if let Some(r) = w.results.remove(&i) {
                            w.in_flight -= f.bytes;
                            window.cv.notify_all();
                            break r;
                        }
                        w = window.cv.wait(w).unwrap_or_else(|e| e.into_inner());
                    }
                };
                match read {
                    Err(e) => self.file_error(&f.path, e, pass),
                    Ok(None) => {}
                    Ok(Some(r)) => {
                        let user = self.user_of(&f.path, f.kind);
                        if group.user.as_deref() != Some(user.as_str())
                            || group.files.len() >= GROUP_FILES
                            || group.items.len() >= GROUP_ITEMS
                        {
                            self.flush(&mut group, pass);
                            group.user = Some(user);
                        }
                        group
                            .files
                            .push((f.key.clone(), r.inode, r.offset, f.path.clone()));
                        group.items.extend(r.items);
                        for (a, b) in group.extra.iter_mut().zip(r.extra) {
                            *a += b;
                        }
                    }
                }
            }
            self.flush(&mut group, pass);
            let mut w = lock(&window.state);
            w.done = true;
            window.cv.notify_all();
        });
    }

    /// Commit what the group holds (one transaction) and count it live.
    fn flush(&mut self, group: &mut Group, pass: &mut Pass) {
        let g = std::mem::take(group);
        let Some(user) = g.user else { return };
        if g.files.is_empty() {
            return;
        }
        let files: Vec<(&str, u64, u64)> = g
            .files
            .iter()
            .map(|(k, ino, off, _)| (k.as_str(), *ino, *off))
            .collect();
        match self.store.commit_files(&files, &user, &g.items, g.extra) {
            Ok((deltas, outcomes)) => {
                lock(&self.live).apply(&deltas, outcomes, now_ms());
                for (k, ino, off, _) in g.files {
                    self.committed.insert(k, (ino, off));
                }
            }
            Err(e) => {
                pass.store_error(&e);
                for (_, _, _, p) in &g.files {
                    lagging(p, pass);
                }
            }
        }
    }

    fn file_error(&self, p: &Path, e: anyhow::Error, pass: &mut Pass) {
        if store::is_store_error(&e) {
            pass.store_error(&e);
        } else {
            // The path is the user's own file name; never its content.
            pass.errors.push(format!("{}: {e:#}", p.display()));
        }
        lagging(p, pass);
    }

    /// Only the given paths (from file events); directories are walked.
    pub fn scan_paths(&mut self, paths: BTreeSet<PathBuf>) -> Pass {
        let mut pass = Pass::default();
        // Transcripts first, as in a full scan.
        let mut paths: Vec<PathBuf> = paths.into_iter().collect();
        paths.sort_by_key(|p| self.sources.kind_of(p) == Some(Kind::Spool));
        for p in paths {
            if p.is_dir() {
                let mut found = Vec::new();
                walk_jsonl(&p, true, &mut found, Kind::Transcript);
                for (f, _) in found {
                    if let Some(kind) = self.sources.kind_of(&f) {
                        pass.attempted += 1;
                        self.ingest_into(&f, kind, &mut pass);
                    }
                }
            } else if let Some(kind) = self.sources.kind_of(&p) {
                pass.attempted += 1;
                self.ingest_into(&p, kind, &mut pass);
            }
        }
        pass
    }

    fn ingest_into(&mut self, p: &Path, kind: Kind, pass: &mut Pass) {
        if let Err(e) = self.ingest_file(p, kind) {
            self.file_error(p, e, pass);
        }
    }

    /// The owner of the root `path` belongs to (`unknown` when it cannot be looked up).
    fn user_of(&mut self, path: &Path, kind: Kind) -> String {
        let root = self.sources.root_of(path, kind);
        self.owners
            .entry(root)
            .or_insert_with_key(|r| {
                crate::paths::owner_of(r).unwrap_or_else(|| "unknown".to_string())
            })
            .clone()
    }

    /// Read what was appended to `path` since its stored offset.
    pub fn ingest_file(&mut self, path: &Path, kind: Kind) -> anyhow::Result<()> {
        let key = path.to_string_lossy().into_owned();
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let meta = f.metadata()?;
        let (inode, size) = (meta.ino(), meta.len());
        let mut offset = match self.store.file_offset(&key)? {
            Some((ino, off)) if ino == inode && off <= size => off,
            _ => 0,
        };
        if offset == size {
            return Ok(());
        }
        let user = self.user_of(path, kind);
        f.seek(SeekFrom::Start(offset))?;
        let mut buf: Vec<u8> = Vec::new();
        let mut eof = false;
        // A chunk of up to CHUNK bytes; for the usual small append, just what is there (and a
        // little room for what arrives meanwhile) instead of zeroing 4 MiB per file.
        let pending = usize::try_from(size - offset).unwrap_or(CHUNK);
        let first = CHUNK.min(pending.saturating_add(4096));
        while !eof {
            let start = buf.len();
            let grow = if start == 0 && buf.capacity() == 0 {
                first
            } else {
                CHUNK
            };
            buf.resize(start + grow, 0);
            let mut filled = start;
            while filled < buf.len() {
                let n = f.read(&mut buf[filled..])?;
                if n == 0 {
                    eof = true;
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                continue; // one long line: read on (or stop at EOF, leaving it for later)
            };
            let complete = &buf[..=last_nl];
            let (items, extra) = parse_chunk(complete, kind);
            offset += complete.len() as u64;
            let (deltas, outcomes) =
                self.store
                    .commit_batch(Some((&key, inode, offset)), &user, &items, extra)?;
            lock(&self.live).apply(&deltas, outcomes, now_ms());
            self.committed.insert(key.clone(), (inode, offset));
            buf.drain(..=last_nl);
        }
        Ok(())
    }
}

/// A file whose complete lines are left unread: the lag counts from its mtime.
fn lagging(p: &Path, pass: &mut Pass) {
    if let Ok(m) = std::fs::metadata(p) {
        if let Ok(t) = m.modified() {
            pass.lagging_mtime = pass.lagging_mtime.max(Some(t));
        }
    }
}

/// A file of a full scan with bytes to read.
struct Planned {
    path: PathBuf,
    key: String,
    kind: Kind,
    /// Its stored inode and offset.
    known: Option<(u64, u64)>,
    /// Read ahead by the workers (at most [`PARALLEL_MAX`] bytes to read).
    parallel: bool,
    bytes: u64,
}

/// The complete lines of a file read ahead: its inode, its new offset, what they hold.
struct ReadAhead {
    inode: u64,
    offset: u64,
    items: Vec<Item>,
    extra: Outcomes,
}

/// Files read ahead, by index in the plan, waiting for their commit.
struct Window {
    state: Mutex<WindowState>,
    cv: Condvar,
}

struct WindowState {
    /// The next file a worker takes.
    next: usize,
    /// The file the committing thread is at.
    wanted: usize,
    /// Bytes of the files taken and not yet handed to the committing thread.
    in_flight: u64,
    done: bool,
    /// `None`: nothing to commit (gone, or no complete line).
    results: HashMap<usize, anyhow::Result<Option<ReadAhead>>>,
}

/// Files of one owner read ahead, to commit in one transaction.
#[derive(Default)]
struct Group {
    user: Option<String>,
    /// Key, inode, new offset, path.
    files: Vec<(String, u64, u64, PathBuf)>,
    items: Vec<Item>,
    extra: Outcomes,
}

/// A worker: take the next file to read ahead (within the window), read and parse it.
fn read_ahead(plan: &[Planned], window: &Window) {
    let mut w = lock(&window.state);
    loop {
        while w.next < plan.len() && !plan[w.next].parallel {
            w.next += 1;
        }
        if w.done || w.next >= plan.len() {
            return;
        }
        let i = w.next;
        let bytes = plan[i].bytes;
        // The file the committer waits for is always taken; others within the window.
        if i != w.wanted && (i >= w.wanted + AHEAD_FILES || w.in_flight + bytes > AHEAD_BYTES) {
            w = window.cv.wait(w).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        w.next += 1;
        w.in_flight += bytes;
        drop(w);
        let f = &plan[i];
        let r = read_file(&f.path, f.kind, f.known);
        w = lock(&window.state);
        w.results.insert(i, r);
        window.cv.notify_all();
    }
}

/// The complete lines after the stored offset of a file (to its end), parsed.
fn read_file(
    path: &Path,
    kind: Kind,
    known: Option<(u64, u64)>,
) -> anyhow::Result<Option<ReadAhead>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = f.metadata()?;
    let (inode, size) = (meta.ino(), meta.len());
    let offset = match known {
        Some((ino, off)) if ino == inode && off <= size => off,
        _ => 0,
    };
    if offset == size {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(size - offset).unwrap_or(0) + 4096);
    f.read_to_end(&mut buf)?;
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    let complete = &buf[..=last_nl];
    let (items, extra) = parse_chunk(complete, kind);
    Ok(Some(ReadAhead {
        inode,
        offset: offset + complete.len() as u64,
        items,
        extra,
    }))
}

/// The items of complete lines, and the count of lines without usage and of malformed ones.
pub fn parse_chunk(chunk: &[u8], kind: Kind) -> (Vec<Item>, Outcomes) {
    let mut items = Vec::new();
    let mut extra: Outcomes = [0; 4];
    for line in chunk.split(|&b| b == b'\n') {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match kind {
            Kind::Transcript => match parse_line(line) {
                Line::Usage(r) => items.push(Item::Transcript(r)),
                Line::NoUsage => extra[NO_USAGE] += 1,
                Line::Malformed => extra[MALFORMED] += 1,
            },
            Kind::Spool => match serde_json::from_slice::<Captured>(line) {
                Ok(c) => items.push(Item::Captured(c)),
                Err(_) => extra[MALFORMED] += 1,
            },
        }
    }
    (items, extra)
}
