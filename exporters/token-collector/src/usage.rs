//! The shared vocabulary of token-collector: what one API response used, where it was seen,
//! and what a terminal capture recognised. Transcript parsing, capture recognition, pricing
//! and storage all speak these types.

use serde::{Deserialize, Serialize};

/// Token counts and server-tool requests of one API response (Anthropic's `usage` object).
/// A cache write without the 5-minute/1-hour breakdown counts as a 5-minute write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    /// `server_tool_use.web_search_requests`.
    pub web_search_requests: u64,
    /// `server_tool_use.web_fetch_requests`.
    pub web_fetch_requests: u64,
}

/// `usage.speed`: `fast` has its own price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    #[default]
    Standard,
    Fast,
}

/// Where a usage was seen: the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A Claude Code transcript (`<config>/projects/**/*.jsonl`).
    ClaudeCode,
    /// Captured terminal output (`token-collector wrap`).
    Terminal,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::ClaudeCode => "claude_code",
            Source::Terminal => "terminal",
        }
    }
}

/// What a terminal capture recognised, as `wrap` writes it to the spool (one JSON object per
/// line). The identity decides how it is counted (docs/token-collector.md, "Counting rules"):
/// a Claude Code result counts only when the collector has no transcript of its session; an
/// API message counts once by its message id; an SDK `Usage(...)` line once per occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    pub identity: CapturedIdentity,
    /// Model id, when the output names one (`modelUsage` keys, `"model"` of a message).
    pub model: Option<String>,
    pub usage: Usage,
    #[serde(default)]
    pub speed: Speed,
    /// Cost the output itself stated (`total_cost_usd`), for comparison only: the collector
    /// prices usage from its own table.
    pub stated_cost_usd: Option<f64>,
    /// Unix time in milliseconds when `wrap` saw it.
    pub seen_at_ms: i64,
    /// The working directory of the wrapped command (for the `project` label).
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CapturedIdentity {
    /// `claude -p --output-format json|stream-json` result (also its `/cost` block, when it
    /// names the session).
    ClaudeCodeSession { session_id: String },
    /// An Anthropic Messages API response printed as JSON.
    ApiMessage { message_id: String },
    /// Claude Code output that names no session (its `/cost` block): the transcripts are
    /// authoritative, so it counts (once, by `occurrence`) only while the collector knows no
    /// transcript at all.
    ClaudeCodeUnnamed { occurrence: String },
    /// No id at all (the Python SDK's `Usage(...)` repr, a `/cost` block without a session):
    /// `occurrence` is unique per capture (`<spool file>:<line>`), so it counts once.
    Anonymous { occurrence: String },
}
