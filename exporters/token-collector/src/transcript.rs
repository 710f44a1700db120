//! One line of a Claude Code transcript (`<config>/projects/**/*.jsonl`) to the usage it
//! records, if any. Only assistant lines with a `message.usage` matter; every other line
//! (user turns, summaries, huge `file-history-snapshot` lines) is recognised without being
//! parsed: a line that does not contain `"usage"` cannot carry one.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::usage::{Speed, Usage};

/// What one API response used, as one transcript line records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `message.id` (the dedup key), else `requestId`, else `uuid`.
    pub message_id: String,
    pub session_id: Option<String>,
    /// Event time, Unix milliseconds.
    pub ts_ms: i64,
    pub model: String,
    pub cwd: Option<String>,
    pub usage: Usage,
    pub speed: Speed,
}

/// The outcome of one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Usage(Record),
    /// Valid, but no usage (user turns, snapshots, `<synthetic>` errors, summaries).
    NoUsage,
    /// Not JSON, or JSON of the wrong shape (counted as `malformed`).
    Malformed,
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, rename = "requestId")]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    uuid: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    cwd: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<RawMessage<'a>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    usage: Option<RawUsage>,
    // The content is never read: skipped, not built.
    #[allow(dead_code)]
    content: Option<IgnoredAny>,
}

/// Anthropic's `usage` object.
#[derive(Deserialize, Default)]
pub struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<RawCacheCreation>,
    #[serde(default)]
    server_tool_use: Option<RawServerToolUse>,
    #[serde(default)]
    speed: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawCacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
    #[serde(default)]
    web_fetch_requests: Option<u64>,
}

impl RawUsage {
    /// Token counts; a cache write without the 5m/1h breakdown is a 5-minute write, and a
    /// breakdown that accounts for less than the total leaves the rest as 5-minute writes.
    pub fn to_usage(&self) -> (Usage, Speed) {
        let total_write = self.cache_creation_input_tokens.unwrap_or(0);
        let (w5, w1h) = match &self.cache_creation {
            Some(cc) => {
                let w1h = cc.ephemeral_1h_input_tokens.unwrap_or(0);
                let w5 = cc.ephemeral_5m_input_tokens.unwrap_or(0);
                (w5.max(total_write.saturating_sub(w1h)), w1h)
            }
            None => (total_write, 0),
        };
        let stu = self.server_tool_use.as_ref();
        let usage = Usage {
            input: self.input_tokens.unwrap_or(0),
            output: self.output_tokens.unwrap_or(0),
            cache_read: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_5m: w5,
            cache_write_1h: w1h,
            web_search_requests: stu.and_then(|s| s.web_search_requests).unwrap_or(0),
            web_fetch_requests: stu.and_then(|s| s.web_fetch_requests).unwrap_or(0),
        };
        let speed = match self.speed.as_deref() {
            Some("fast") => Speed::Fast,
            _ => Speed::Standard,
        };
        (usage, speed)
    }
}

/// Parse an RFC 3339 timestamp of any sub-second precision to Unix milliseconds.
pub fn parse_ts_ms(s: &str) -> Option<i64> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(ts.as_millisecond())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Classify one line (without its `\n`).
pub fn parse_line(line: &[u8]) -> Line {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Line::NoUsage;
    }
    if trimmed[0] != b'{' || trimmed[trimmed.len() - 1] != b'}' {
        return Line::Malformed;
    }
    if !contains(trimmed, b"\"usage\"") {
        return Line::NoUsage;
    }
    let raw: RawLine = match serde_json::from_slice(trimmed) {
        Ok(r) => r,
        Err(_) => return Line::Malformed,
    };
    let Some(msg) = raw.message else {
        return Line::NoUsage;
    };
    if raw.kind.as_deref().is_some_and(|k| k != "assistant") {
        return Line::NoUsage;
    }
    let Some(u) = msg.usage else {
        return Line::NoUsage;
    };
    let model = msg.model.as_deref().unwrap_or("unknown");
    if model == "<synthetic>" {
        return Line::NoUsage;
    }
    let Some(ts_ms) = raw.timestamp.as_deref().and_then(parse_ts_ms) else {
        return Line::Malformed;
    };
    let Some(id) = msg.id.or(raw.request_id).or(raw.uuid) else {
        return Line::Malformed;
    };
    let (usage, speed) = u.to_usage();
    Line::Usage(Record {
        message_id: id.into_owned(),
        session_id: raw.session_id.map(|s| s.into_owned()),
        ts_ms,
        model: model.to_string(),
        cwd: raw.cwd.map(|s| s.into_owned()),
        usage,
        speed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"parentUuid":"a","isSidechain":false,"cwd":"/home/u/src/odin","sessionId":"s1","type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"hello"}],"usage":{"input_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"cache_creation":{"ephemeral_5m_input_tokens":40,"ephemeral_1h_input_tokens":60},"output_tokens":7,"server_tool_use":{"web_search_requests":2,"web_fetch_requests":1},"service_tier":"standard"}},"requestId":"req_1","uuid":"u1","timestamp":"2026-11-25T10:00:00.123Z"}"#;

    fn rec(line: &str) -> Record {
        match parse_line(line.as_bytes()) {
            Line::Usage(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn assistant_line_with_every_usage_field() {
        let r = rec(LINE);
        assert_eq!(r.message_id, "msg_1");
        assert_eq!(r.session_id.as_deref(), Some("s1"));
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert_eq!(r.cwd.as_deref(), Some("/home/u/src/odin"));
        assert_eq!(r.ts_ms, 1_795_600_800_123);
        assert_eq!(
            r.usage,
            Usage {
                input: 3,
                output: 7,
                cache_read: 200,
                cache_write_5m: 40,
                cache_write_1h: 60,
                web_search_requests: 2,
                web_fetch_requests: 1,
            }
        );
        assert_eq!(r.speed, Speed::Standard);
    }

    #[test]
    fn any_timestamp_precision() {
        for (ts, ms) in [
            ("2026-11-25T10:00:00Z", 1_795_600_800_000),
            ("2026-11-25T10:00:00.5Z", 1_795_600_800_500),
            ("2026-11-25T10:00:00.123456Z", 1_795_600_800_123),
            ("2026-11-25T10:00:00.123456789+00:00", 1_795_600_800_123),
            ("2026-11-25T11:00:00.000+01:00", 1_795_600_800_000),
        ] {
            assert_eq!(parse_ts_ms(ts), Some(ms), "{ts}");
        }
        assert_eq!(parse_ts_ms("yesterday"), None);
    }

    #[test]
    fn cache_write_without_breakdown_is_5m() {
        let l = LINE.replace(
            r#""cache_creation":{"ephemeral_5m_input_tokens":40,"ephemeral_1h_input_tokens":60},"#,
            "",
        );
        let r = rec(&l);
        assert_eq!((r.usage.cache_write_5m, r.usage.cache_write_1h), (100, 0));
    }

    #[test]
    fn fast_speed() {
        let l = LINE.replace(r#""service_tier":"standard""#, r#""speed":"fast""#);
        assert_eq!(rec(&l).speed, Speed::Fast);
    }

    #[test]
    fn lines_without_usage() {
        for l in [
            r#"{"type":"user","message":{"role":"user","content":"hi"},"timestamp":"2026-11-25T10:00:00Z"}"#,
            r#"{"type":"file-history-snapshot","messageId":"x","snapshot":{"trackedFileBackups":{}}}"#,
            r#"{"type":"summary","summary":"x","leafUuid":"y"}"#,
            r#"{"type":"assistant","message":{"id":"msg_s","model":"<synthetic>","usage":{"input_tokens":0,"output_tokens":0}},"timestamp":"2026-11-25T10:00:00Z"}"#,
            "",
        ] {
            assert_eq!(parse_line(l.as_bytes()), Line::NoUsage, "{l}");
        }
    }

    #[test]
    fn malformed_lines() {
        for l in [
            "not json",
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"input_tokens":-1}},"timestamp":"2026-11-25T10:00:00Z"}"#,
            r#"{"type":"assistant","message":{"id":"m","model":"x","usage":{"input_tokens":1}},"timestamp":"never"}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":"#,
        ] {
            assert_eq!(parse_line(l.as_bytes()), Line::Malformed, "{l}");
        }
    }

    #[test]
    fn a_huge_snapshot_line_is_not_parsed() {
        let big = format!(
            r#"{{"type":"file-history-snapshot","snapshot":{{"x":"{}"}}}}"#,
            "a".repeat(1 << 20)
        );
        assert_eq!(parse_line(big.as_bytes()), Line::NoUsage);
    }
}
