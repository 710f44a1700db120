//! Reading transcript and spool files: only appended bytes, complete lines only (a last line
//! without `\n` waits until it is complete), one transaction per chunk committing the file's
//! new offset with what its lines counted. A file that shrank or was replaced (another inode)
//! is read again from the start; the dedup makes that safe. A deleted file changes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::live::Live;
use crate::store::{Item, Outcomes, Store, MALFORMED, NO_USAGE};
use crate::transcript::{parse_line, Line};
use crate::usage::Captured;

/// Bytes read per transaction (more when one line is longer).
const CHUNK: usize = 4 << 20;

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
}

/// Result of one pass.
#[derive(Debug, Default)]
pub struct Pass {
    pub files: usize,
    /// Files read (or tried) in this pass.
    pub attempted: usize,
    pub errors: Vec<String>,
    /// mtime of the newest file with complete lines left unread (errors).
    pub lagging_mtime: Option<SystemTime>,
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
    /// Every file of the tree and the spool.
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
        // While this pass reads, the lag is that of the newest file with unread bytes.
        let mut pending: Option<SystemTime> = None;
        for (p, _) in &files {
            let key = p.to_string_lossy();
            let Ok(meta) = std::fs::metadata(p) else {
                continue;
            };
            let offset = match self.store.file_offset(&key) {
                Ok(Some((ino, off))) if ino == meta.ino() => off,
                _ => 0,
            };
            if meta.len() > offset {
                pending = pending.max(meta.modified().ok());
            }
        }
        if let Some(t) = pending {
            lock(&self.live).lag_seconds = lag_since(t);
        }
        for (p, kind) in &files {
            self.ingest_into(p, *kind, &mut pass);
        }
        // Forget files that are gone (what they counted stays counted).
        if let Ok(known) = self.store.files() {
            let gone: Vec<String> = known.into_iter().filter(|k| !present.contains(k)).collect();
            if let Err(e) = self.store.forget_files(&gone) {
                pass.errors.push(format!("forget deleted files: {e:#}"));
            }
        }
        let now = now_ms();
        let mut live = lock(&self.live);
        live.files_followed = files.len() as u64;
        live.prune(now);
        pass
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
                        self.ingest_into(&f, kind, &mut pass);
                    }
                }
            } else if let Some(kind) = self.sources.kind_of(&p) {
                self.ingest_into(&p, kind, &mut pass);
            }
        }
        pass
    }

    fn ingest_into(&mut self, p: &Path, kind: Kind, pass: &mut Pass) {
        pass.attempted += 1;
        if let Err(e) = self.ingest_file(p, kind) {
            // The path is the user's own file name; never its content.
            pass.errors.push(format!("{}: {e:#}", p.display()));
            if let Ok(m) = std::fs::metadata(p) {
                if let Ok(t) = m.modified() {
                    pass.lagging_mtime = pass.lagging_mtime.max(Some(t));
                }
            }
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
            buf.drain(..=last_nl);
        }
        Ok(())
    }
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
