//! The SQLite state: per request only ids, times, model, project, usage and cost (never
//! message text); file offsets; persisted counters. Every batch of lines commits its offset
//! and what it counted in one transaction, so `kill -9` at any moment loses nothing and
//! counts nothing twice. Counting rules (docs/token-collector.md, "Counting rules"):
//!
//! - A transcript response counts once per `message.id`, across files, sessions and restarts,
//!   with its largest usage: a later line with more tokens adds only the difference.
//! - A terminal capture of an API message counts once per message id (the same key as
//!   transcripts: a response seen in both counts once, under the source that saw it first).
//! - A terminal capture without an id counts once per occurrence.
//! - A terminal capture of a Claude Code session counts only when no transcript line of that
//!   session is known. When a transcript of a session counted that way arrives later, the
//!   session's terminal usage is a credit: transcript usage of that session is counted under
//!   `claude_code` only past the credit (per token type, cost in USD, one request), so totals
//!   equal the larger of the two and no counter goes down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::pricing::Pricing;
use crate::transcript::Record;
use crate::usage::{Captured, CapturedIdentity, Source, Speed, Usage};

/// How the `project` label is made from a working directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProjectLabel {
    /// The whole path.
    Path,
    /// Its last component.
    Name,
    /// Always `all`.
    None,
}

/// Token types in the order of [`Counts::tokens`] and of the `type` label.
pub const TOKEN_TYPES: [&str; 5] = [
    "input",
    "output",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
];

/// The `outcome` label values of `llm_ingest_lines_total`, in the order of [`Outcomes`].
pub const OUTCOMES: [&str; 4] = ["counted", "duplicate", "malformed", "no_usage"];

/// Lines by outcome.
pub type Outcomes = [u64; 4];
pub const COUNTED: usize = 0;
pub const DUPLICATE: usize = 1;
pub const MALFORMED: usize = 2;
pub const NO_USAGE: usize = 3;

/// One unit of input to [`Store::commit_batch`].
#[derive(Debug, Clone)]
pub enum Item {
    Transcript(Record),
    Captured(Captured),
}

/// What one item added to the counters (already committed).
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub source: Source,
    /// The owner of the file the response was first counted from.
    pub user: String,
    pub model: String,
    pub project: String,
    pub ts_ms: i64,
    pub usage: Usage,
    /// `None` when the model has no price (its tokens go to `unpriced`).
    pub cost: Option<f64>,
    pub new_request: bool,
}

impl Delta {
    pub fn tokens(&self) -> u64 {
        token_sum(&self.usage)
    }
}

pub fn token_sum(u: &Usage) -> u64 {
    u.input + u.output + u.cache_read + u.cache_write_5m + u.cache_write_1h
}

fn to_array(u: &Usage) -> [u64; 7] {
    [
        u.input,
        u.output,
        u.cache_read,
        u.cache_write_5m,
        u.cache_write_1h,
        u.web_search_requests,
        u.web_fetch_requests,
    ]
}

fn from_array(a: [u64; 7]) -> Usage {
    Usage {
        input: a[0],
        output: a[1],
        cache_read: a[2],
        cache_write_5m: a[3],
        cache_write_1h: a[4],
        web_search_requests: a[5],
        web_fetch_requests: a[6],
    }
}

/// A series: source, model, project, user (`""` when the `user` label is off).
pub type SeriesKey = (Source, String, String, String);

/// Persisted counters: per series, unpriced tokens per model, lines by outcome.
pub type Persisted = (Vec<(SeriesKey, Counts)>, Vec<(String, u64)>, Outcomes);

/// One counted request: event time (ms), model, project, user, tokens, cost.
pub type RecentRow = (i64, String, String, String, u64, f64);

/// Counter values of one (source, model, project, user) series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub tokens: [u64; 5],
    pub cost: f64,
    pub requests: u64,
    pub web_search: u64,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    session_id TEXT,
    ts_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    project TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    speed INTEGER NOT NULL,
    raw_input INTEGER NOT NULL, raw_output INTEGER NOT NULL, raw_cache_read INTEGER NOT NULL,
    raw_cw5 INTEGER NOT NULL, raw_cw1h INTEGER NOT NULL, raw_ws INTEGER NOT NULL,
    raw_wf INTEGER NOT NULL,
    raw_cost REAL,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL, wf INTEGER NOT NULL,
    cost REAL NOT NULL,
    priced INTEGER NOT NULL,
    requests INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);
CREATE INDEX IF NOT EXISTS requests_session ON requests (session_id);
CREATE TABLE IF NOT EXISTS transcript_sessions (session_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS credits (
    session_id TEXT PRIMARY KEY,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL, wf INTEGER NOT NULL,
    cost REAL NOT NULL,
    requests INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (name TEXT PRIMARY KEY, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS totals (
    source TEXT NOT NULL, model TEXT NOT NULL, project TEXT NOT NULL,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL,
    cost REAL NOT NULL, requests INTEGER NOT NULL,
    user TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, model, project, user)
);
CREATE TABLE IF NOT EXISTS unpriced (model TEXT PRIMARY KEY, tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lines (outcome TEXT PRIMARY KEY, n INTEGER NOT NULL);
";

/// Whether `table` has `column` (for migrations, and `report` on a database not migrated).
pub fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A database of a version before the `user` label: usage counted then belongs to user `''`.
/// `totals` is rebuilt because `user` joins its primary key.
fn migrate(conn: &Connection) -> anyhow::Result<()> {
    if !has_column(conn, "requests", "user")? {
        conn.execute_batch("ALTER TABLE requests ADD COLUMN user TEXT NOT NULL DEFAULT ''")
            .context("cannot add the user column to requests")?;
    }
    if !has_column(conn, "totals", "user")? {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE totals_user (
                 source TEXT NOT NULL, model TEXT NOT NULL, project TEXT NOT NULL,
                 input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
                 cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL,
                 cost REAL NOT NULL, requests INTEGER NOT NULL,
                 user TEXT NOT NULL DEFAULT '',
                 PRIMARY KEY (source, model, project, user)
             );
             INSERT INTO totals_user (source, model, project, input, output, cache_read, cw5,
                 cw1h, ws, cost, requests, user)
                 SELECT source, model, project, input, output, cache_read, cw5, cw1h, ws, cost,
                     requests, '' FROM totals;
             DROP TABLE totals;
             ALTER TABLE totals_user RENAME TO totals;
             COMMIT;",
        )
        .context("cannot add the user column to totals")?;
    }
    Ok(())
}

/// Why the database a store has open can no longer be used, found by [`Store::check_file`] or
/// by an error of SQLite: it is rebuilt (see `Ingester::rebuild`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The file was deleted, or another file put in its place: what the open connection
    /// writes would be lost at the next start.
    Gone(String),
    /// The file is damaged: SQLite says so, or its header is no longer SQLite's.
    Corrupt(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Gone(why) | Fault::Corrupt(why) => f.write_str(why),
        }
    }
}

/// Whether an error (of any store call) says the database file is damaged.
pub fn is_corruption(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    })
}

/// Whether an error comes from the database (rather than from a file being read).
pub fn is_store_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<rusqlite::Error>())
}

/// The first 16 bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// `<path><suffix>`: the database's `-wal` and `-shm` files, and where a damaged one is moved.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Move a damaged database and its `-wal` and `-shm` files aside, to
/// `<path>.corrupt-<unix seconds>` (kept for a look, never read again); returns that name.
pub fn move_aside(path: &Path) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let to = with_suffix(path, &format!(".corrupt-{secs}"));
    for part in ["", "-wal", "-shm"] {
        let from = with_suffix(path, part);
        match std::fs::rename(&from, with_suffix(&to, part)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot move {} aside", from.display()))
            }
        }
    }
    Ok(to)
}

/// The database and what counting needs besides it.
pub struct Store {
    conn: Connection,
    /// The database file (`None` for a connection opened elsewhere) and the device and inode
    /// it had when opened, to notice it being deleted or replaced.
    file: Option<(PathBuf, (u64, u64))>,
    pricing: Pricing,
    project_mode: ProjectLabel,
    project_max: usize,
    /// Project name (in the current mode) to label; loaded once, grown as projects appear.
    projects: HashMap<String, String>,
    projects_kept: usize,
}

fn source_from(s: &str) -> Source {
    if s == "terminal" {
        Source::Terminal
    } else {
        Source::ClaudeCode
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

struct Existing {
    source: String,
    user: String,
    model: String,
    project: String,
    ts_ms: i64,
    speed: Speed,
    raw: [u64; 7],
    raw_cost: Option<f64>,
}

impl Store {
    /// Open (creating it and its directory) the database at `path`.
    pub fn open(
        path: &Path,
        pricing: Pricing,
        project_mode: ProjectLabel,
        project_max: usize,
    ) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        let mut store = Store::with_connection(conn, pricing, project_mode, project_max)
            .with_context(|| format!("database {}", path.display()))?;
        store.file = Some((path.to_path_buf(), identity(path)?));
        Ok(store)
    }

    /// The database file, when the store was opened from one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Whether the database file is still the one this store has open, and still looks like
    /// a database. Cheap (a `stat` and a 16-byte read): run before every ingest pass.
    pub fn check_file(&self) -> Result<(), Fault> {
        let Some((path, id)) = &self.file else {
            return Ok(());
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Fault::Gone(format!(
                    "database {} was deleted while in use",
                    path.display()
                )))
            }
            // Cannot tell (a permission change?): SQLite will say if it cannot go on.
            Err(_) => return Ok(()),
        };
        if (meta.dev(), meta.ino()) != *id {
            return Err(Fault::Gone(format!(
                "database {} was replaced by another file while in use",
                path.display()
            )));
        }
        // A new database in WAL mode stays empty until its first checkpoint.
        let mut head = [0u8; 16];
        let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head));
        match read {
            Ok(16) if &head != MAGIC => Err(Fault::Corrupt(format!(
                "database {} is damaged: its header is not SQLite's",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Close the database and open the file at its path again: after [`Fault::Gone`] a new
    /// one (or the file now there), after [`Fault::Corrupt`] a new one, the damaged file moved
    /// aside first. Returns where the damaged file went. The caller fills it again.
    pub fn reopen(&mut self, fault: &Fault) -> anyhow::Result<Option<PathBuf>> {
        let Some((path, _)) = self.file.clone() else {
            anyhow::bail!("the database is not a file");
        };
        // Closing checkpoints into the old (deleted or damaged) file and lets go of its
        // -wal and -shm, which must not be paired with the new file.
        let old = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        drop(old);
        let moved = match fault {
            Fault::Corrupt(_) => Some(move_aside(&path)?),
            Fault::Gone(_) => {
                if !path.exists() {
                    for part in ["-wal", "-shm"] {
                        let _ = std::fs::remove_file(with_suffix(&path, part));
                    }
                }
                None
            }
        };
        // Its directory may have gone with it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)
            .context("cannot create the schema")?;
        migrate(&conn)?;
        self.conn = conn;
        self.file = Some((path.clone(), identity(&path)?));
        Ok(moved)
    }

    /// Make the persisted counters those served (`series` keyed as the live counters are:
    /// user `""` when the `user` label is off), after a rebuild that could not see usage of
    /// transcripts deleted since it was counted. Series whose stored totals already agree are
    /// left alone; the others get one row holding the served values. Also stores every
    /// project label handed out, so that labels stay the same after a restart.
    pub fn align_totals(
        &mut self,
        series: &BTreeMap<SeriesKey, Counts>,
        unpriced: &BTreeMap<String, u64>,
        lines: Outcomes,
        label_user: bool,
    ) -> anyhow::Result<()> {
        let (stored, _, _) = self.load_totals()?;
        let mut sums: HashMap<SeriesKey, Counts> = HashMap::new();
        for ((source, model, project, user), c) in stored {
            let user = if label_user { user } else { String::new() };
            let s = sums.entry((source, model, project, user)).or_default();
            for (t, v) in s.tokens.iter_mut().zip(c.tokens) {
                *t += v;
            }
            s.cost += c.cost;
            s.requests += c.requests;
            s.web_search += c.web_search;
        }
        let same = |a: &Counts, b: &Counts| {
            a.tokens == b.tokens
                && a.requests == b.requests
                && a.web_search == b.web_search
                && (a.cost - b.cost).abs() <= 1e-9 * a.cost.abs().max(1.0)
        };
        let tx = self.conn.transaction()?;
        for (key, want) in series {
            if sums.get(key).is_some_and(|have| same(have, want)) {
                continue;
            }
            let (source, model, project, user) = key;
            // With the label off, the served series sums every user's rows.
            if label_user {
                tx.execute(
                    "DELETE FROM totals
                     WHERE source = ?1 AND model = ?2 AND project = ?3 AND user = ?4",
                    params![source.label(), model, project, user],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM totals WHERE source = ?1 AND model = ?2 AND project = ?3",
                    params![source.label(), model, project],
                )?;
            }
            tx.execute(
                "INSERT INTO totals (source, model, project, input, output, cache_read, cw5, cw1h,
                     ws, cost, requests, user)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    source.label(),
                    model,
                    project,
                    i(want.tokens[0]),
                    i(want.tokens[1]),
                    i(want.tokens[2]),
                    i(want.tokens[3]),
                    i(want.tokens[4]),
                    i(want.web_search),
                    want.cost,
                    i(want.requests),
                    user,
                ],
            )?;
        }
        tx.execute("DELETE FROM unpriced", [])?;
        for (model, n) in unpriced {
            tx.execute(
                "INSERT INTO unpriced (model, tokens) VALUES (?1, ?2)",
                params![model, i(*n)],
            )?;
        }
        tx.execute("DELETE FROM lines", [])?;
        for (k, n) in OUTCOMES.iter().zip(lines) {
            tx.execute(
                "INSERT INTO lines (outcome, n) VALUES (?1, ?2)",
                params![k, i(n)],
            )?;
        }
        let prefix = mode_prefix(self.project_mode);
        for (name, label) in &self.projects {
            tx.execute(
                "INSERT OR IGNORE INTO projects (name, label) VALUES (?1, ?2)",
                params![format!("{prefix}{name}"), label],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Open an existing database read-only (for `report`).
    pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open database {}", path.display()))?;
        Ok(conn)
    }

    pub fn with_connection(
        conn: Connection,
        pricing: Pricing,
        project_mode: ProjectLabel,
        project_max: usize,
    ) -> anyhow::Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)
            .context("cannot create the schema")?;
        migrate(&conn)?;
        let prefix = mode_prefix(project_mode);
        let mut projects = HashMap::new();
        let mut kept = 0;
        {
            let mut st = conn.prepare("SELECT name, label FROM projects WHERE name LIKE ?1")?;
            let rows = st.query_map([format!("{prefix}%")], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (name, label) = row?;
                if label != "other" {
                    kept += 1;
                }
                projects.insert(name[prefix.len()..].to_string(), label);
            }
        }
        Ok(Store {
            conn,
            file: None,
            pricing,
            project_mode,
            project_max,
            projects,
            projects_kept: kept,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The stored inode and offset of `path`.
    pub fn file_offset(&self, path: &str) -> anyhow::Result<Option<(u64, u64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT inode, offset FROM files WHERE path = ?1",
                [path],
                |r| Ok((u(r.get(0)?), u(r.get(1)?))),
            )
            .optional()?)
    }

    /// Every stored file with its inode and offset.
    pub fn file_offsets(&self) -> anyhow::Result<HashMap<String, (u64, u64)>> {
        let mut st = self.conn.prepare("SELECT path, inode, offset FROM files")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (u(r.get(1)?), u(r.get(2)?))))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forget files that are gone (their counted usage stays).
    pub fn forget_files(&self, paths: &[String]) -> anyhow::Result<()> {
        for p in paths {
            self.conn
                .execute("DELETE FROM files WHERE path = ?1", [p])?;
        }
        Ok(())
    }

    /// Every followed path with its offset.
    pub fn files(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT path FROM files")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Count `items` and move `path` to `offset`, in one transaction. Returns what was added
    /// to the counters; `outcomes` gets one entry per item plus `extra` (lines without usage,
    /// malformed lines) already classified by the caller. `user` is the owner of the file.
    pub fn commit_batch(
        &mut self,
        file: Option<(&str, u64, u64)>,
        user: &str,
        items: &[Item],
        extra: Outcomes,
    ) -> anyhow::Result<(Vec<Delta>, Outcomes)> {
        self.commit_files(file.as_slice(), user, items, extra)
    }

    /// [`Store::commit_batch`] for the lines of several files of one owner, in one
    /// transaction: `items` in file order, then each file's new (path, inode, offset).
    pub fn commit_files(
        &mut self,
        files: &[(&str, u64, u64)],
        user: &str,
        items: &[Item],
        extra: Outcomes,
    ) -> anyhow::Result<(Vec<Delta>, Outcomes)> {
        let mut outcomes = extra;
        let mut deltas = Vec::new();
        let mut new_projects = Vec::new();
        let mut sessions: HashSet<&str> = HashSet::new();
        let tx = self.conn.transaction()?;
        for item in items {
            let d = match item {
                Item::Transcript(r) => {
                    let project = project_label(
                        &mut self.projects,
                        &mut self.projects_kept,
                        &mut new_projects,
                        self.project_mode,
                        self.project_max,
                        r.cwd.as_deref(),
                    );
                    // Once per session and transaction (most lines of a file share one).
                    if let Some(sid) = r.session_id.as_deref().filter(|s| sessions.insert(*s)) {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO transcript_sessions (session_id) VALUES (?1)",
                        )?
                        .execute([sid])?;
                    }
                    count_message(
                        &tx,
                        &self.pricing,
                        Source::ClaudeCode,
                        user,
                        &format!("msg:{}", r.message_id),
                        r.session_id.as_deref(),
                        r.ts_ms,
                        &r.model,
                        &project,
                        &r.usage,
                        r.speed,
                    )?
                }
                Item::Captured(c) => {
                    let project = project_label(
                        &mut self.projects,
                        &mut self.projects_kept,
                        &mut new_projects,
                        self.project_mode,
                        self.project_max,
                        c.cwd.as_deref(),
                    );
                    count_captured(&tx, &self.pricing, c, user, &project)?
                }
            };
            match d {
                Some(d) => {
                    outcomes[COUNTED] += 1;
                    add_totals(&tx, &d)?;
                    deltas.push(d);
                }
                None => outcomes[DUPLICATE] += 1,
            }
        }
        for (name, label) in &new_projects {
            tx.prepare_cached("INSERT OR IGNORE INTO projects (name, label) VALUES (?1, ?2)")?
                .execute(params![
                    format!("{}{name}", mode_prefix(self.project_mode)),
                    label
                ])?;
        }
        for (k, n) in OUTCOMES.iter().zip(outcomes) {
            if n > 0 {
                tx.prepare_cached(
                    "INSERT INTO lines (outcome, n) VALUES (?1, ?2)
                     ON CONFLICT (outcome) DO UPDATE SET n = n + excluded.n",
                )?
                .execute(params![k, i(n)])?;
            }
        }
        for &(path, inode, offset) in files {
            tx.prepare_cached(
                "INSERT INTO files (path, inode, offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT (path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset",
            )?
            .execute(params![path, i(inode), i(offset)])?;
        }
        tx.commit()?;
        Ok((deltas, outcomes))
    }

    /// Counter values as persisted: per series, unpriced tokens per model, lines by outcome.
    pub fn load_totals(&self) -> anyhow::Result<Persisted> {
        let mut st = self.conn.prepare(
            "SELECT source, model, project, input, output, cache_read, cw5, cw1h, ws, cost, requests,
                    user
             FROM totals",
        )?;
        let series = st
            .query_map([], |r| {
                Ok((
                    (
                        source_from(&r.get::<_, String>(0)?),
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(11)?,
                    ),
                    Counts {
                        tokens: [
                            u(r.get(3)?),
                            u(r.get(4)?),
                            u(r.get(5)?),
                            u(r.get(6)?),
                            u(r.get(7)?),
                        ],
                        web_search: u(r.get(8)?),
                        cost: r.get(9)?,
                        requests: u(r.get(10)?),
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self.conn.prepare("SELECT model, tokens FROM unpriced")?;
        let unpriced = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut lines = [0; 4];
        let mut st = self.conn.prepare("SELECT outcome, n FROM lines")?;
        for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))? {
            let (k, n) = row?;
            if let Some(idx) = OUTCOMES.iter().position(|o| *o == k) {
                lines[idx] = n;
            }
        }
        Ok((series, unpriced, lines))
    }

    /// Counted usage per request since `since_ms` (event time): time, model, project, user,
    /// tokens, cost. For the day, month and block gauges after a restart.
    pub fn for_each_recent(
        &self,
        since_ms: i64,
        mut each: impl FnMut(RecentRow),
    ) -> anyhow::Result<()> {
        let mut st = self.conn.prepare(
            "SELECT ts_ms, model, project, user, input + output + cache_read + cw5 + cw1h, cost
             FROM requests WHERE ts_ms >= ?1 ORDER BY ts_ms",
        )?;
        let mut rows = st.query([since_ms])?;
        // Row by row: a month of a busy history is a million rows, never held at once.
        while let Some(r) = rows.next()? {
            each((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                u(r.get(4)?),
                r.get(5)?,
            ));
        }
        Ok(())
    }

    /// The last event time (ms) of each project and user.
    pub fn last_activity(&self) -> anyhow::Result<Vec<((String, String), i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT project, user, MAX(ts_ms) FROM requests GROUP BY project, user")?;
        let rows = st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The device and inode of `path`.
fn identity(path: &Path) -> anyhow::Result<(u64, u64)> {
    let m = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

fn mode_prefix(mode: ProjectLabel) -> &'static str {
    match mode {
        ProjectLabel::Path => "path:",
        ProjectLabel::Name => "name:",
        ProjectLabel::None => "none:",
    }
}

/// The project's name in `mode` (no cwd: `unknown`).
pub fn project_name(mode: ProjectLabel, cwd: Option<&str>) -> String {
    let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
        return "unknown".to_string();
    };
    match mode {
        ProjectLabel::None => "all".to_string(),
        ProjectLabel::Path => cwd.to_string(),
        ProjectLabel::Name => {
            let t = cwd.trim_end_matches(['/', '\\']);
            let name = t.rsplit(['/', '\\']).next().unwrap_or(t);
            if name.is_empty() {
                "/".to_string()
            } else {
                name.to_string()
            }
        }
    }
}

/// The label of a project: its name while fewer than `max` projects have one, `other` after.
fn project_label(
    projects: &mut HashMap<String, String>,
    kept: &mut usize,
    new: &mut Vec<(String, String)>,
    mode: ProjectLabel,
    max: usize,
    cwd: Option<&str>,
) -> String {
    let name = project_name(mode, cwd);
    if let Some(l) = projects.get(&name) {
        return l.clone();
    }
    let label = if *kept < max && name != "other" {
        *kept += 1;
        name.clone()
    } else {
        "other".to_string()
    };
    projects.insert(name.clone(), label.clone());
    new.push((name, label.clone()));
    label
}

fn get_existing(tx: &Transaction, key: &str) -> anyhow::Result<Option<Existing>> {
    Ok(tx
        .prepare_cached(
            "SELECT source, model, project, ts_ms, speed, raw_input, raw_output, raw_cache_read,
                    raw_cw5, raw_cw1h, raw_ws, raw_wf, raw_cost, user
             FROM requests WHERE key = ?1",
        )?
        .query_row([key], |r| {
            Ok(Existing {
                source: r.get(0)?,
                model: r.get(1)?,
                project: r.get(2)?,
                ts_ms: r.get(3)?,
                speed: if r.get::<_, i64>(4)? == 1 {
                    Speed::Fast
                } else {
                    Speed::Standard
                },
                raw: [
                    u(r.get(5)?),
                    u(r.get(6)?),
                    u(r.get(7)?),
                    u(r.get(8)?),
                    u(r.get(9)?),
                    u(r.get(10)?),
                    u(r.get(11)?),
                ],
                raw_cost: r.get(12)?,
                user: r.get(13)?,
            })
        })
        .optional()?)
}

/// Count one response (by its key) with the largest usage seen for it; returns `None` when it
/// adds nothing.
#[allow(clippy::too_many_arguments)]
fn count_message(
    tx: &Transaction,
    pricing: &Pricing,
    source: Source,
    user: &str,
    key: &str,
    session_id: Option<&str>,
    ts_ms: i64,
    model: &str,
    project: &str,
    usage: &Usage,
    speed: Speed,
) -> anyhow::Result<Option<Delta>> {
    let new = to_array(usage);
    let existing = get_existing(tx, key)?;
    let (source, user, model, project, ts_ms, speed, old, old_cost) = match &existing {
        Some(e) => (
            source_from(&e.source),
            e.user.as_str(),
            e.model.as_str(),
            e.project.as_str(),
            e.ts_ms,
            e.speed,
            e.raw,
            e.raw_cost.unwrap_or(0.0),
        ),
        None => (source, user, model, project, ts_ms, speed, [0; 7], 0.0),
    };
    let mut merged = old;
    for (m, n) in merged.iter_mut().zip(new) {
        *m = (*m).max(n);
    }
    if existing.is_some() && merged == old {
        return Ok(None);
    }
    let merged_usage = from_array(merged);
    let raw_cost = pricing.cost(model, &merged_usage, speed);
    let mut delta = [0u64; 7];
    for k in 0..7 {
        delta[k] = merged[k] - old[k];
    }
    let mut cost_delta = raw_cost.map(|c| (c - old_cost).max(0.0));
    let mut new_request = existing.is_none();
    // A terminal capture of this session already counted: transcript usage past it only.
    if let (Source::ClaudeCode, Some(sid)) = (source, session_id) {
        take_credit(tx, sid, &mut delta, &mut cost_delta, &mut new_request)?;
    }
    let d = Delta {
        source,
        user: user.to_string(),
        model: model.to_string(),
        project: project.to_string(),
        ts_ms,
        usage: from_array(delta),
        cost: cost_delta,
        new_request,
    };
    let c = to_array(&d.usage);
    if existing.is_none() {
        tx.prepare_cached(
            "INSERT INTO requests (key, source, session_id, ts_ms, model, project, speed,
                raw_input, raw_output, raw_cache_read, raw_cw5, raw_cw1h, raw_ws, raw_wf, raw_cost,
                input, output, cache_read, cw5, cw1h, ws, wf, cost, priced, requests, user)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
        )?
        .execute(params![
            key,
            source.label(),
            session_id,
            ts_ms,
            model,
            project,
            i64::from(speed == Speed::Fast),
            i(merged[0]),
            i(merged[1]),
            i(merged[2]),
            i(merged[3]),
            i(merged[4]),
            i(merged[5]),
            i(merged[6]),
            raw_cost,
            i(c[0]),
            i(c[1]),
            i(c[2]),
            i(c[3]),
            i(c[4]),
            i(c[5]),
            i(c[6]),
            d.cost.unwrap_or(0.0),
            i64::from(raw_cost.is_some()),
            i64::from(d.new_request),
            user,
        ])?;
    } else {
        tx.prepare_cached(
            "UPDATE requests SET raw_input = ?2, raw_output = ?3, raw_cache_read = ?4,
                raw_cw5 = ?5, raw_cw1h = ?6, raw_ws = ?7, raw_wf = ?8, raw_cost = ?9,
                input = input + ?10, output = output + ?11, cache_read = cache_read + ?12,
                cw5 = cw5 + ?13, cw1h = cw1h + ?14, ws = ws + ?15, wf = wf + ?16,
                cost = cost + ?17
             WHERE key = ?1",
        )?
        .execute(params![
            key,
            i(merged[0]),
            i(merged[1]),
            i(merged[2]),
            i(merged[3]),
            i(merged[4]),
            i(merged[5]),
            i(merged[6]),
            raw_cost,
            i(c[0]),
            i(c[1]),
            i(c[2]),
            i(c[3]),
            i(c[4]),
            i(c[5]),
            i(c[6]),
            d.cost.unwrap_or(0.0),
        ])?;
    }
    Ok(Some(d))
}

/// Consume the session's terminal credit, if any, from a transcript delta.
fn take_credit(
    tx: &Transaction,
    sid: &str,
    delta: &mut [u64; 7],
    cost: &mut Option<f64>,
    new_request: &mut bool,
) -> anyhow::Result<()> {
    let credit = tx
        .prepare_cached(
            "SELECT input, output, cache_read, cw5, cw1h, ws, wf, cost, requests
             FROM credits WHERE session_id = ?1",
        )?
        .query_row([sid], |r| {
            let mut a = [0u64; 7];
            for (k, v) in a.iter_mut().enumerate() {
                *v = u(r.get(k)?);
            }
            Ok((a, r.get::<_, f64>(7)?, u(r.get(8)?)))
        })
        .optional()?;
    let Some((mut left, mut cost_left, mut req_left)) = credit else {
        return Ok(());
    };
    for k in 0..7 {
        let take = left[k].min(delta[k]);
        left[k] -= take;
        delta[k] -= take;
    }
    if let Some(c) = cost.as_mut() {
        let take = cost_left.min(*c);
        cost_left -= take;
        *c -= take;
    }
    if *new_request && req_left > 0 {
        req_left -= 1;
        *new_request = false;
    }
    tx.prepare_cached(
        "UPDATE credits SET input = ?2, output = ?3, cache_read = ?4, cw5 = ?5, cw1h = ?6,
            ws = ?7, wf = ?8, cost = ?9, requests = ?10 WHERE session_id = ?1",
    )?
    .execute(params![
        sid,
        i(left[0]),
        i(left[1]),
        i(left[2]),
        i(left[3]),
        i(left[4]),
        i(left[5]),
        i(left[6]),
        cost_left,
        i(req_left)
    ])?;
    Ok(())
}

/// A capture with no id: once per occurrence (`<spool file>:<line>`).
fn count_anonymous(
    tx: &Transaction,
    pricing: &Pricing,
    c: &Captured,
    user: &str,
    project: &str,
    model: &str,
    occurrence: &str,
) -> anyhow::Result<Option<Delta>> {
    let key = format!("anon:{occurrence}");
    if get_existing(tx, &key)?.is_some() {
        return Ok(None);
    }
    count_message(
        tx,
        pricing,
        Source::Terminal,
        user,
        &key,
        None,
        c.seen_at_ms,
        model,
        project,
        &c.usage,
        c.speed,
    )
}

fn count_captured(
    tx: &Transaction,
    pricing: &Pricing,
    c: &Captured,
    user: &str,
    project: &str,
) -> anyhow::Result<Option<Delta>> {
    let model = c.model.as_deref().unwrap_or("unknown");
    match &c.identity {
        CapturedIdentity::ApiMessage { message_id } => count_message(
            tx,
            pricing,
            Source::Terminal,
            user,
            &format!("msg:{message_id}"),
            None,
            c.seen_at_ms,
            model,
            project,
            &c.usage,
            c.speed,
        ),
        CapturedIdentity::ClaudeCodeUnnamed { occurrence } => {
            let any_transcript: bool = tx
                .prepare_cached("SELECT 1 FROM transcript_sessions LIMIT 1")?
                .exists([])?;
            if any_transcript {
                return Ok(None);
            }
            count_anonymous(tx, pricing, c, user, project, model, occurrence)
        }
        CapturedIdentity::Anonymous { occurrence } => {
            count_anonymous(tx, pricing, c, user, project, model, occurrence)
        }
        CapturedIdentity::ClaudeCodeSession { session_id } => {
            let known: bool = tx
                .prepare_cached("SELECT 1 FROM transcript_sessions WHERE session_id = ?1")?
                .exists([session_id])?;
            if known {
                return Ok(None);
            }
            let key = format!("session:{session_id}:{model}");
            let d = count_message(
                tx,
                pricing,
                Source::Terminal,
                user,
                &key,
                Some(session_id),
                c.seen_at_ms,
                model,
                project,
                &c.usage,
                c.speed,
            )?;
            if let Some(d) = &d {
                let a = to_array(&d.usage);
                tx.prepare_cached(
                    "INSERT INTO credits (session_id, input, output, cache_read, cw5, cw1h, ws, wf,
                        cost, requests)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (session_id) DO UPDATE SET input = input + excluded.input,
                        output = output + excluded.output,
                        cache_read = cache_read + excluded.cache_read,
                        cw5 = cw5 + excluded.cw5, cw1h = cw1h + excluded.cw1h,
                        ws = ws + excluded.ws, wf = wf + excluded.wf,
                        cost = cost + excluded.cost, requests = requests + excluded.requests",
                )?
                .execute(params![
                    session_id,
                    i(a[0]),
                    i(a[1]),
                    i(a[2]),
                    i(a[3]),
                    i(a[4]),
                    i(a[5]),
                    i(a[6]),
                    d.cost.unwrap_or(0.0),
                    i64::from(d.new_request)
                ])?;
            }
            Ok(d)
        }
    }
}

fn add_totals(tx: &Transaction, d: &Delta) -> anyhow::Result<()> {
    let a = to_array(&d.usage);
    tx.prepare_cached(
        "INSERT INTO totals (source, model, project, input, output, cache_read, cw5, cw1h, ws,
            cost, requests, user)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (source, model, project, user) DO UPDATE SET input = input + excluded.input,
            output = output + excluded.output, cache_read = cache_read + excluded.cache_read,
            cw5 = cw5 + excluded.cw5, cw1h = cw1h + excluded.cw1h, ws = ws + excluded.ws,
            cost = cost + excluded.cost, requests = requests + excluded.requests",
    )?
    .execute(params![
        d.source.label(),
        d.model,
        d.project,
        i(a[0]),
        i(a[1]),
        i(a[2]),
        i(a[3]),
        i(a[4]),
        i(a[5]),
        d.cost.unwrap_or(0.0),
        i64::from(d.new_request),
        d.user,
    ])?;
    if d.cost.is_none() && d.tokens() > 0 {
        tx.prepare_cached(
            "INSERT INTO unpriced (model, tokens) VALUES (?1, ?2)
             ON CONFLICT (model) DO UPDATE SET tokens = tokens + excluded.tokens",
        )?
        .execute(params![d.model, i(d.tokens())])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables `requests` and `totals` as they were before the `user` column.
    const OLD_SCHEMA: &str = "
CREATE TABLE requests (
    key TEXT PRIMARY KEY, source TEXT NOT NULL, session_id TEXT, ts_ms INTEGER NOT NULL,
    model TEXT NOT NULL, project TEXT NOT NULL, speed INTEGER NOT NULL,
    raw_input INTEGER NOT NULL, raw_output INTEGER NOT NULL, raw_cache_read INTEGER NOT NULL,
    raw_cw5 INTEGER NOT NULL, raw_cw1h INTEGER NOT NULL, raw_ws INTEGER NOT NULL,
    raw_wf INTEGER NOT NULL, raw_cost REAL,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL, wf INTEGER NOT NULL,
    cost REAL NOT NULL, priced INTEGER NOT NULL, requests INTEGER NOT NULL
);
CREATE TABLE totals (
    source TEXT NOT NULL, model TEXT NOT NULL, project TEXT NOT NULL,
    input INTEGER NOT NULL, output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
    cw5 INTEGER NOT NULL, cw1h INTEGER NOT NULL, ws INTEGER NOT NULL,
    cost REAL NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (source, model, project)
);
INSERT INTO requests VALUES ('msg:old', 'claude_code', 's0', 1795600800000,
    'claude-sonnet-4-5', 'alpha', 0, 10, 5, 0, 0, 0, 0, 0, 0.1, 10, 5, 0, 0, 0, 0, 0, 0.1, 1, 1);
INSERT INTO totals VALUES ('claude_code', 'claude-sonnet-4-5', 'alpha', 10, 5, 0, 0, 0, 0,
    0.1, 1);
";

    fn record(id: &str) -> Item {
        Item::Transcript(Record {
            message_id: id.to_string(),
            session_id: Some("s1".to_string()),
            ts_ms: 1_795_600_900_000,
            model: "claude-sonnet-4-5".to_string(),
            cwd: Some("/home/ada/src/alpha".to_string()),
            usage: Usage {
                input: 100,
                output: 7,
                ..Usage::default()
            },
            speed: Speed::Standard,
        })
    }

    #[test]
    fn an_old_database_gets_the_user_column_and_keeps_its_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(OLD_SCHEMA)
            .unwrap();
        let mut store = Store::open(&path, Pricing::shipped(), ProjectLabel::Name, 50).unwrap();
        let conn = store.connection();
        assert!(has_column(conn, "requests", "user").unwrap());
        assert!(has_column(conn, "totals", "user").unwrap());
        let (series, _, _) = store.load_totals().unwrap();
        let key = |user: &str| {
            (
                Source::ClaudeCode,
                "claude-sonnet-4-5".to_string(),
                "alpha".to_string(),
                user.to_string(),
            )
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].0, key(""));
        assert_eq!(series[0].1.tokens, [10, 5, 0, 0, 0]);
        assert_eq!(series[0].1.requests, 1);
        // New usage is stored per user, beside the old series; more usage of the old request
        // stays with its old user.
        let (deltas, outcomes) = store
            .commit_batch(None, "ada", &[record("new"), record("old")], [0; 4])
            .unwrap();
        assert_eq!(outcomes[COUNTED], 2);
        assert_eq!(deltas[0].user, "ada");
        assert_eq!(deltas[1].user, "");
        let (series, _, _) = store.load_totals().unwrap();
        let by: HashMap<_, _> = series.into_iter().collect();
        assert_eq!(by[&key("")].tokens, [100, 7, 0, 0, 0]);
        assert_eq!(by[&key("")].requests, 1);
        assert_eq!(by[&key("ada")].tokens, [100, 7, 0, 0, 0]);
        assert_eq!(
            store.last_activity().unwrap(),
            vec![
                (("alpha".to_string(), String::new()), 1_795_600_800_000),
                (("alpha".to_string(), "ada".to_string()), 1_795_600_900_000)
            ]
        );
        drop(store);
        // Opening it again migrates nothing more.
        let store = Store::open(&path, Pricing::shipped(), ProjectLabel::Name, 50).unwrap();
        assert_eq!(store.load_totals().unwrap().0.len(), 2);
    }

    #[test]
    fn a_response_keeps_the_user_it_was_first_counted_for() {
        let conn = Connection::open_in_memory().unwrap();
        let mut store =
            Store::with_connection(conn, Pricing::shipped(), ProjectLabel::Name, 50).unwrap();
        store
            .commit_batch(None, "ada", &[record("m")], [0; 4])
            .unwrap();
        let Item::Transcript(mut r) = record("m") else {
            unreachable!()
        };
        r.usage.output = 9;
        let (deltas, _) = store
            .commit_batch(None, "bob", &[Item::Transcript(r)], [0; 4])
            .unwrap();
        assert_eq!(deltas[0].user, "ada");
        assert_eq!(deltas[0].usage.output, 2);
    }
}
