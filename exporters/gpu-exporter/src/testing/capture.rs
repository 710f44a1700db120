//! The real nvidia-smi captures: find them and split one into its sections.
//!
//! A capture is the raw output of several nvidia-smi commands, each section headed by three
//! lines: a rule of 80 `#`, a title such as `# idle :: query-gpu (csv, what the exporter
//! parses)`, and the command line `# $ nvidia-smi --query-gpu=... --format=csv`, then another
//! rule. The body runs to the next rule. The captures are read where they live (never copied
//! into the repository).

use std::path::{Path, PathBuf};

/// The five captures, by file name.
pub const CAPTURES: [&str; 5] = [
    "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt",
    "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt",
    "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt",
    "linux-x86_64__nvidia-h100-mig__590.48.01.txt",
    "linux-x86_64__nvidia-l40s__595.80.txt",
];

/// `captures/nvidia-smi` below the shared directory: `$ODIN_SHARED_DIR`, else `../shared`
/// next to the repository root, else `/work/shared`. Panics when none exists: these tests
/// must not pass by skipping.
pub fn captures_dir() -> PathBuf {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut tried = Vec::new();
    let candidates = std::env::var_os("ODIN_SHARED_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo_root.join("../shared"), PathBuf::from("/work/shared")]);
    for shared in candidates {
        let dir = shared.join("captures/nvidia-smi");
        if dir.is_dir() {
            return dir;
        }
        tried.push(dir);
    }
    panic!(
        "nvidia-smi captures not found; tried {tried:?}. Set ODIN_SHARED_DIR to the shared \
         directory that holds captures/nvidia-smi/"
    );
}

/// Path of one capture file (panics if it is missing).
pub fn capture_path(file: &str) -> PathBuf {
    let p = captures_dir().join(file);
    assert!(p.is_file(), "capture {} missing", p.display());
    p
}

/// Idle or under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Load,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Load => "load",
        }
    }
}

/// One command's output.
#[derive(Debug, Clone)]
pub struct Section {
    /// `idle :: query-gpu (csv, what the exporter parses)`
    pub title: String,
    /// `nvidia-smi --query-gpu=... --format=csv`
    pub command: String,
    pub body: String,
}

impl Section {
    /// The phase word before ` :: ` in the title, if any.
    pub fn phase(&self) -> Option<&str> {
        self.title.split_once(" :: ").map(|(p, _)| p.trim())
    }
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub file: String,
    pub sections: Vec<Section>,
}

fn is_rule(line: &str) -> bool {
    line.len() >= 40 && line.chars().all(|c| c == '#')
}

impl Capture {
    pub fn load(file: &str) -> Capture {
        Capture::from_path(&capture_path(file))
    }

    /// A capture file anywhere, such as this crate's own `tests/captures/` (recorded on a
    /// real GPU by `bench/gpu_real.py`).
    pub fn from_path(path: &Path) -> Capture {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read capture {}: {e}", path.display()));
        Capture {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sections: split_sections(&text),
        }
    }

    /// The sections whose command starts with `prefix` (e.g. `nvidia-smi --query-gpu=`).
    pub fn by_command(&self, prefix: &str) -> Vec<&Section> {
        self.sections
            .iter()
            .filter(|s| s.command.starts_with(prefix))
            .collect()
    }

    /// The section for `command_prefix` in `phase`: titled with the phase word, else (a capture
    /// without titles) the first or second such section in file order.
    pub fn section(&self, command_prefix: &str, phase: Phase) -> &Section {
        let all = self.by_command(command_prefix);
        if let Some(s) = all.iter().find(|s| s.phase() == Some(phase.word())) {
            return s;
        }
        let n = match phase {
            Phase::Idle => 0,
            Phase::Load => 1,
        };
        all.get(n).copied().unwrap_or_else(|| {
            panic!(
                "{}: no {:?} section for {command_prefix:?}",
                self.file, phase
            )
        })
    }

    /// The `--query-gpu=<every field> --format=csv` output in `phase`.
    pub fn query_gpu(&self, phase: Phase) -> &str {
        &self.section("nvidia-smi --query-gpu=", phase).body
    }

    /// The `--query-compute-apps=... --format=csv` output in `phase`.
    pub fn compute_apps(&self, phase: Phase) -> &str {
        &self.section("nvidia-smi --query-compute-apps=", phase).body
    }

    /// The `--help-query-gpu` output.
    pub fn help_query_gpu(&self) -> &str {
        &self
            .by_command("nvidia-smi --help-query-gpu")
            .first()
            .unwrap_or_else(|| panic!("{}: no --help-query-gpu section", self.file))
            .body
    }
}

/// Split a capture into sections: rule, `# title`, `# $ command`, rule, body.
pub fn split_sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header = is_rule(lines[i])
            && i + 3 < lines.len()
            && lines[i + 1].starts_with("# ")
            && lines[i + 2].starts_with("# $ ")
            && is_rule(lines[i + 3]);
        if !header {
            i += 1;
            continue;
        }
        let title = lines[i + 1].trim_start_matches("# ").trim().to_owned();
        let command = lines[i + 2].trim_start_matches("# $ ").trim().to_owned();
        let mut j = i + 4;
        let mut body = String::new();
        while j < lines.len() && !is_rule(lines[j]) {
            body.push_str(lines[j]);
            body.push('\n');
            j += 1;
        }
        out.push(Section {
            title,
            command,
            body,
        });
        i = j;
    }
    out
}

#[test]
fn splits_a_small_capture() {
    let rule = "#".repeat(80);
    let text = format!(
        "{rule}\n# banner\n{rule}\nfree text\n\n{rule}\n# idle :: query-gpu (csv)\n# $ nvidia-smi --query-gpu=index --format=csv\n{rule}\nindex\n0\n\n\n{rule}\n# load :: query-gpu (csv)\n# $ nvidia-smi --query-gpu=index --format=csv\n{rule}\nindex\n1\n"
    );
    let sections = split_sections(&text);
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].title, "idle :: query-gpu (csv)");
    assert_eq!(sections[0].phase(), Some("idle"));
    assert_eq!(
        sections[0].command,
        "nvidia-smi --query-gpu=index --format=csv"
    );
    assert_eq!(sections[0].body, "index\n0\n\n\n");
    let cap = Capture {
        file: "inline".into(),
        sections,
    };
    assert_eq!(cap.query_gpu(Phase::Load), "index\n1\n");
}
