//! Recognisers of usage in captured terminal output (what `token-collector wrap` sees).
//!
//! The input is raw bytes: ANSI escapes, invalid or split UTF-8, other text around and between
//! the things looked for. A [`Scanner`] takes the output chunk by chunk as it arrives (memory
//! stays bounded by the largest unfinished candidate, not by the output) and finds:
//!
//! - **Claude Code results** ([`Shape::ClaudeCodeResult`]): the object printed by
//!   `claude -p --output-format json` (also inside the array that `--verbose` prints) and the
//!   `{"type":"result",...}` line of `--output-format stream-json`. One [`Recognised`] per model
//!   of `modelUsage`, identity `ClaudeCodeSession{session_id}`; `usage` (model unknown) when
//!   there is no `modelUsage`. The other stream-json events (`system`, `assistant`, `user`,
//!   `stream_event`) are skipped whole: the result line already sums them.
//! - **Messages API responses printed as JSON** ([`Shape::ApiMessage`]): an object with
//!   `"type":"message"`, an `id` and a `usage` (compact or pretty-printed, `jq -C` colours
//!   included), also nested in other JSON (batch results); identity `ApiMessage{message_id}`.
//!   A raw server-sent-event stream (`message_start` ... `message_delta` ...) gives one
//!   [`Shape::ApiMessageStream`] with the final usage.
//! - **The Python SDK's repr** ([`Shape::SdkUsageRepr`]): `Usage(input_tokens=..., ...)` has
//!   no id and is `Anonymous`; a `Message(id='msg_...', ..., usage=Usage(...))` repr is an
//!   API message with its id and model ([`Shape::SdkMessageRepr`]).
//! - **Claude Code's `/cost` block** ([`Shape::CostBlock`]): one anonymous record per line of
//!   `Usage by model:`, with the rounded counts it prints (see [`cost_block`]).
//!
//! Nothing but ids, model names, counts and stated costs leaves this module: the text around
//! them (prompts, answers, secrets) is never copied into a [`Recognised`].

pub mod ansi;
pub mod cost_block;
pub mod pyrepr;
pub mod span;

use serde_json::{Map, Value};

use crate::usage::{Captured, CapturedIdentity, Speed, Usage};

/// Which shape a usage was recognised in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    ClaudeCodeResult,
    ApiMessage,
    ApiMessageStream,
    SdkUsageRepr,
    SdkMessageRepr,
    CostBlock,
}

/// One usage found in the output, before `wrap` stamps it with time, place and occurrence.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognised {
    pub shape: Shape,
    /// `None` for shapes without any id: the writer gives them an `Anonymous` occurrence.
    pub identity: Option<CapturedIdentity>,
    pub model: Option<String>,
    pub usage: Usage,
    pub speed: Speed,
    pub stated_cost_usd: Option<f64>,
}

impl Recognised {
    /// The spool record: `occurrence` names an anonymous one (`<spool file>:<line>`).
    pub fn into_captured(
        self,
        occurrence: String,
        seen_at_ms: i64,
        cwd: Option<String>,
    ) -> Captured {
        let identity = match (self.identity, self.shape) {
            (Some(identity), _) => identity,
            (None, Shape::CostBlock) => CapturedIdentity::ClaudeCodeUnnamed { occurrence },
            (None, _) => CapturedIdentity::Anonymous { occurrence },
        };
        Captured {
            identity,
            model: self.model,
            usage: self.usage,
            speed: self.speed,
            stated_cost_usd: self.stated_cost_usd,
            seen_at_ms,
            cwd,
        }
    }
}

/// Everything recognised in a whole capture.
pub fn recognise(output: &[u8]) -> Vec<Recognised> {
    let mut s = Scanner::new();
    s.feed(output);
    s.finish()
}

/// The largest candidate (JSON object, repr) kept while waiting for its end.
pub const MAX_CANDIDATE: usize = 32 << 20;

/// Bytes kept at the end of the buffer so that a marker split between chunks is still seen.
const HOLD_BACK: usize = 32;

/// Bytes of already scanned output kept for the look-behind checks.
const CONTEXT: usize = 256;

/// Python reprs looked for (the SDK's class names).
const REPR_MARKERS: [&[u8]; 11] = [
    b"Usage(",
    b"BetaUsage(",
    b"Message(",
    b"BetaMessage(",
    b"ParsedMessage(",
    b"ParsedBetaMessage(",
    b"RawMessageStartEvent(",
    b"RawMessageDeltaEvent(",
    b"RawMessageStopEvent(",
    b"BetaRawMessageStartEvent(",
    b"BetaRawMessageDeltaEvent(",
];

/// A streaming recogniser: [`feed`](Scanner::feed) the output as it comes,
/// [`take_found`](Scanner::take_found) what has been recognised so far, then
/// [`finish`](Scanner::finish).
#[derive(Debug, Default)]
pub struct Scanner {
    ansi: ansi::AnsiStripper,
    /// Output (without escapes) not yet known to hold nothing more.
    buf: Vec<u8>,
    /// The byte just before `buf` (for "not inside a word" checks).
    before: u8,
    /// The last [`CONTEXT`] bytes before `buf`: the look-behind checks (a `"message":` key, a
    /// keyword argument) see them, so their answer does not depend on where reads ended.
    context: Vec<u8>,
    found: Vec<Recognised>,
    /// A server-sent-event message whose `message_delta` may still come: the message and its
    /// usage object so far.
    stream: Option<(Recognised, Map<String, Value>)>,
    /// Do not scan again before the buffer is this long (an unfinished candidate waits for
    /// enough new output, so that a large object arriving in small reads costs linear time).
    retry_at: usize,
    /// During the last scan of the output: what `span::json_object` answers at offsets of the
    /// buffer inside an unfinished object already walked ([`span::nested_objects`]).
    known_spans: std::collections::HashMap<usize, span::Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing here: look at the next byte.
    Next,
    /// A candidate took this many bytes.
    Took(usize),
    /// A candidate starts here and is not finished.
    Wait,
}

impl Scanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk of output.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.ansi.strip_into(chunk, &mut self.buf);
        if self.buf.len() >= self.retry_at {
            self.scan(false);
        }
    }

    /// What was recognised since the last call.
    pub fn take_found(&mut self) -> Vec<Recognised> {
        std::mem::take(&mut self.found)
    }

    /// The output has ended: everything still unfinished is read as it is, and what was
    /// recognised and not yet taken is returned.
    pub fn finish(mut self) -> Vec<Recognised> {
        self.scan(true);
        self.flush_stream();
        self.found
    }

    fn scan(&mut self, eof: bool) {
        let buf = std::mem::take(&mut self.buf);
        self.known_spans.clear();
        let mut i = 0;
        let mut wait_from = None;
        while i < buf.len() {
            let prev = if i == 0 { self.before } else { buf[i - 1] };
            match self.step(&buf, i, prev, eof) {
                Step::Next => i += 1,
                Step::Took(n) => i += n,
                Step::Wait => {
                    wait_from = Some(i);
                    break;
                }
            }
        }
        // A marker cut by the end of a read waits as an unfinished candidate (see `step`).
        let keep_from = wait_from.unwrap_or(buf.len());
        if keep_from > 0 {
            self.before = buf[keep_from - 1];
            let gone = &buf[keep_from.saturating_sub(CONTEXT)..keep_from];
            let drop = (self.context.len() + gone.len()).saturating_sub(CONTEXT);
            self.context.drain(..drop.min(self.context.len()));
            self.context.extend_from_slice(gone);
        }
        self.buf = buf[keep_from..].to_vec();
        self.retry_at = if wait_from.is_some() {
            self.buf.len() * 2 + 4096
        } else {
            0
        };
    }

    /// The output before `buf[i]`: `buf[..i]`, preceded by the context when that is short.
    fn behind<'a>(&self, buf: &'a [u8], i: usize) -> std::borrow::Cow<'a, [u8]> {
        if i >= CONTEXT || self.context.is_empty() {
            std::borrow::Cow::Borrowed(&buf[..i])
        } else {
            std::borrow::Cow::Owned([&self.context[..], &buf[..i]].concat())
        }
    }

    fn step(&mut self, buf: &[u8], i: usize, prev: u8, eof: bool) -> Step {
        let rest = &buf[i..];
        let b = rest[0];
        if b == b'{' {
            let found = match self.known_spans.get(&i) {
                Some(known) => *known,
                None => span::json_object(rest, MAX_CANDIDATE),
            };
            if eof && found == span::Span::Incomplete && !self.known_spans.contains_key(&i) {
                // The output is over: each `{` inside is asked about next, and scanning on
                // from each would cost time quadratic in the object's length.
                for (offset, known) in span::nested_objects(rest, MAX_CANDIDATE) {
                    self.known_spans.insert(i + offset, known);
                }
            }
            return match found {
                span::Span::Complete(n) => match serde_json::from_slice::<Value>(&rest[..n])
                    .ok()
                    .or_else(|| {
                        serde_json::from_str::<Value>(&String::from_utf8_lossy(&rest[..n])).ok()
                    }) {
                    Some(v) => {
                        let nested = after_message_key(&self.behind(buf, i));
                        self.top_level(&v, nested);
                        Step::Took(n)
                    }
                    None => Step::Next,
                },
                span::Span::Incomplete if !eof => Step::Wait,
                span::Span::Invalid if starts_js_object(rest) => {
                    match pyrepr::parse_js_object(rest, MAX_CANDIDATE) {
                        pyrepr::Parsed::Complete(v, n) => {
                            self.top_level(&v, after_message_key(&self.behind(buf, i)));
                            Step::Took(n)
                        }
                        pyrepr::Parsed::Incomplete if !eof => Step::Wait,
                        _ => Step::Next,
                    }
                }
                // `{` then a bare key not followed by its `:` yet: the next read decides.
                span::Span::Invalid if !eof && js_object_undecided(rest) => Step::Wait,
                _ => Step::Next,
            };
        }
        if (b.is_ascii_alphabetic()) && !(prev.is_ascii_alphanumeric() || prev == b'_') {
            if REPR_MARKERS.iter().any(|m| rest.starts_with(m)) {
                // A keyword argument (`..., usage=Usage(...)`, `(message=Message(...`) of an
                // enclosing repr that could not be read whole (cut short): part of something
                // larger (a message with an id, a stream event), not counted on its own.
                if is_keyword_argument(&self.behind(buf, i)) {
                    return Step::Next;
                }
                return match pyrepr::parse_call(rest, MAX_CANDIDATE) {
                    pyrepr::Parsed::Complete(v, n) => {
                        self.top_level(&v, false);
                        Step::Took(n)
                    }
                    pyrepr::Parsed::Incomplete if !eof => Step::Wait,
                    _ => Step::Next,
                };
            }
            if cost_block::MARKERS.iter().any(|m| rest.starts_with(m)) {
                return match cost_block::parse(rest, eof) {
                    cost_block::Parsed::Complete(block, n) => {
                        self.cost_block(block);
                        Step::Took(n.max(1))
                    }
                    cost_block::Parsed::Incomplete => Step::Wait,
                    cost_block::Parsed::Invalid => Step::Next,
                };
            }
        }
        if rest.len() < HOLD_BACK && !eof && could_start_marker(rest) {
            return Step::Wait;
        }
        Step::Next
    }

    /// A whole JSON value (or repr) found in the text. `nested` says the text shows it as the
    /// value of a `"message":` key of an object that could not be read whole (too large, cut
    /// short): a Claude Code stream-json event, whose result line counts instead.
    fn top_level(&mut self, v: &Value, nested: bool) {
        match classify(v) {
            Class::Found(mut found) => {
                if nested && found.iter().all(|r| r.shape != Shape::ClaudeCodeResult) {
                    return;
                }
                self.found.append(&mut found);
            }
            Class::ClaudeCodeEvent => {}
            Class::StreamStart(r, usage) => {
                self.flush_stream();
                self.stream = Some((r, usage));
            }
            Class::StreamDelta(delta) => {
                if let Some((_, usage)) = &mut self.stream {
                    for (k, v) in delta {
                        if !v.is_null() {
                            usage.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            Class::StreamStop => self.flush_stream(),
            Class::Other => self.descend(v, 0),
        }
    }

    /// Messages and results inside JSON that is neither (batch results, logs, wrappers).
    fn descend(&mut self, v: &Value, depth: usize) {
        if depth > 32 {
            return;
        }
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(o) => Box::new(o.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => return,
        };
        for c in children {
            if !c.is_object() && !c.is_array() {
                continue;
            }
            match classify(c) {
                Class::Found(mut f) => self.found.append(&mut f),
                Class::Other => self.descend(c, depth + 1),
                _ => {}
            }
        }
    }

    fn flush_stream(&mut self) {
        if let Some((mut r, usage)) = self.stream.take() {
            let usage = Value::Object(usage);
            if let Some(u) = api_usage(&usage) {
                r.usage = u;
                r.speed = speed_of(&usage, None);
                self.found.push(r);
            }
        }
    }

    fn cost_block(&mut self, block: cost_block::Block) {
        // The stated cost is the model line's own `($...)`: the block's total is not used,
        // since a block cut short would give it to the models that were printed.
        for m in block.models {
            self.found.push(Recognised {
                shape: Shape::CostBlock,
                identity: None,
                model: Some(m.model),
                usage: Usage {
                    input: m.input,
                    output: m.output,
                    cache_read: m.cache_read,
                    cache_write_5m: m.cache_write,
                    cache_write_1h: 0,
                    web_search_requests: m.web_search,
                    web_fetch_requests: 0,
                },
                speed: Speed::Standard,
                stated_cost_usd: m.cost_usd,
            });
        }
    }
}

/// `{ name:` (or `{` at the end of a line, then `name:`): an object literal as Node prints it.
fn starts_js_object(rest: &[u8]) -> bool {
    let t = rest[1..].trim_ascii_start();
    let n = t
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(t.len());
    n > 0 && !t[0].is_ascii_digit() && t[n..].trim_ascii_start().first() == Some(&b':')
}

/// `{` followed by nothing but whitespace and perhaps a bare key that the buffer ends in:
/// what [`starts_js_object`] will say depends on output that has not come yet.
fn js_object_undecided(rest: &[u8]) -> bool {
    let t = rest[1..].trim_ascii_start();
    let n = t
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(t.len());
    t.first().map_or(true, |b| !b.is_ascii_digit()) && t[n..].trim_ascii_start().is_empty()
}

/// Does `before` end with the key `"message":` (or Node's `, message:`) (whitespace allowed)?
fn after_message_key(before: &[u8]) -> bool {
    let t = before.trim_ascii_end();
    let Some(t) = t.strip_suffix(b":") else {
        return false;
    };
    let t = t.trim_ascii_end();
    if t.ends_with(b"\"message\"") {
        return true;
    }
    // Node's `message: {` inside an object literal: `{` or `,` before the key.
    t.strip_suffix(b"message")
        .and_then(|k| k.trim_ascii_end().last())
        .is_some_and(|b| *b == b'{' || *b == b',')
}

/// Does `before` end with `(name=` or `, name=` (a keyword argument inside a repr)? Not
/// `x.usage=` (Python's `f"{x.usage=}"`) nor `usage=` at the start of a line.
fn is_keyword_argument(before: &[u8]) -> bool {
    let Some(t) = before.strip_suffix(b"=") else {
        return false;
    };
    let name_start = t
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(0, |p| p + 1);
    if name_start == t.len() {
        return false;
    }
    matches!(
        t[..name_start].trim_ascii_end().last(),
        Some(b'(') | Some(b',')
    )
}

/// Could `tail` (the last bytes of the buffer) be the start of a marker cut by a read?
fn could_start_marker(tail: &[u8]) -> bool {
    REPR_MARKERS
        .iter()
        .chain(cost_block::MARKERS.iter())
        .any(|m| m.len() > tail.len() && m.starts_with(tail))
}

enum Class {
    Found(Vec<Recognised>),
    /// A Claude Code stream-json event other than the result.
    ClaudeCodeEvent,
    /// `message_start` of a server-sent-event stream: the message and its usage so far.
    StreamStart(Recognised, Map<String, Value>),
    /// `message_delta`: its usage (cumulative counts).
    StreamDelta(Map<String, Value>),
    StreamStop,
    Other,
}

fn classify(v: &Value) -> Class {
    let Some(o) = v.as_object() else {
        return Class::Other;
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    let class = o.get("__class__").and_then(Value::as_str);
    if ty == "result" && (o.contains_key("usage") || o.contains_key("modelUsage")) {
        let found = claude_code_result(o);
        return if found.is_empty() {
            Class::Other
        } else {
            Class::Found(found)
        };
    }
    if ty != "result" && (o.contains_key("session_id") || o.contains_key("parent_tool_use_id")) {
        return Class::ClaudeCodeEvent;
    }
    match ty {
        "message" => {
            if let Some(r) = api_message(o) {
                return Class::Found(vec![r]);
            }
        }
        "message_start" => {
            if let Some(m) = o.get("message").and_then(Value::as_object) {
                if let (Some(mut r), Some(u)) =
                    (api_message(m), m.get("usage").and_then(Value::as_object))
                {
                    r.shape = Shape::ApiMessageStream;
                    return Class::StreamStart(r, u.clone());
                }
            }
        }
        "message_delta" => {
            if let Some(u) = o.get("usage").and_then(Value::as_object) {
                return Class::StreamDelta(u.clone());
            }
        }
        "message_stop" => return Class::StreamStop,
        _ => {}
    }
    if matches!(class, Some("Usage") | Some("BetaUsage")) {
        if let Some(usage) = api_usage(v) {
            return Class::Found(vec![Recognised {
                shape: Shape::SdkUsageRepr,
                identity: None,
                model: None,
                usage,
                speed: speed_of(v, None),
                stated_cost_usd: None,
            }]);
        }
    }
    Class::Other
}

/// A Messages API response: `type` `message`, an `id`, a `usage`.
fn api_message(o: &Map<String, Value>) -> Option<Recognised> {
    let id = o
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| token_like(s))?;
    let usage_v = o.get("usage")?;
    let usage = api_usage(usage_v)?;
    let is_repr = o.contains_key("__class__");
    Some(Recognised {
        shape: if is_repr {
            Shape::SdkMessageRepr
        } else {
            Shape::ApiMessage
        },
        identity: Some(CapturedIdentity::ApiMessage {
            message_id: id.to_string(),
        }),
        model: model_name(o.get("model")),
        usage,
        speed: speed_of(usage_v, Some(o)),
        stated_cost_usd: None,
    })
}

/// The `claude -p` result object.
fn claude_code_result(o: &Map<String, Value>) -> Vec<Recognised> {
    let identity = o
        .get("session_id")
        .and_then(Value::as_str)
        .filter(|s| token_like(s))
        .map(|s| CapturedIdentity::ClaudeCodeSession {
            session_id: s.to_string(),
        });
    let total_cost = o.get("total_cost_usd").and_then(Value::as_f64);
    let usage_v = o.get("usage");
    let total = usage_v.and_then(api_usage);
    let mut out = Vec::new();
    if let Some(models) = o.get("modelUsage").and_then(Value::as_object) {
        let single = models.len() == 1;
        for (model, mu) in models {
            if !token_like(model) {
                continue;
            }
            let Some(mu) = mu.as_object() else { continue };
            let get = |k: &str| mu.get(k).and_then(count).unwrap_or(0);
            let usage = Usage {
                input: get("inputTokens"),
                output: get("outputTokens"),
                cache_read: get("cacheReadInputTokens"),
                cache_write_5m: get("cacheCreationInputTokens"),
                cache_write_1h: 0,
                web_search_requests: get("webSearchRequests"),
                web_fetch_requests: 0,
            };
            out.push(Recognised {
                shape: Shape::ClaudeCodeResult,
                identity: identity.clone(),
                model: Some(model.clone()),
                usage,
                speed: if single {
                    usage_v.map(|u| speed_of(u, None)).unwrap_or_default()
                } else {
                    Speed::Standard
                },
                stated_cost_usd: mu.get("costUSD").and_then(Value::as_f64).or(if single {
                    total_cost
                } else {
                    None
                }),
            });
        }
        if let Some(total) = total {
            split_totals(&mut out, &total);
        }
    }
    if out.is_empty() {
        if let Some(usage) = total {
            out.push(Recognised {
                shape: Shape::ClaudeCodeResult,
                identity,
                model: None,
                usage,
                speed: usage_v.map(|u| speed_of(u, None)).unwrap_or_default(),
                stated_cost_usd: total_cost,
            });
        }
    }
    out
}

/// `modelUsage` has no 1-hour cache writes and no web fetches; `usage` has them for the run
/// as a whole. The 1-hour writes go to the models that wrote to the cache, largest writer
/// first, never more than a model wrote (exact when one model wrote to the cache, the usual
/// case: the auxiliary small model seldom does); web fetches go to the model with the most
/// output (the main loop's).
fn split_totals(models: &mut [Recognised], total: &Usage) {
    let mut left_1h = total.cache_write_1h;
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(models[i].usage.cache_write_5m));
    for i in order {
        let u = &mut models[i].usage;
        let take = left_1h.min(u.cache_write_5m);
        u.cache_write_5m -= take;
        u.cache_write_1h += take;
        left_1h -= take;
    }
    if total.web_fetch_requests > 0 {
        if let Some(main) = models.iter_mut().max_by_key(|r| r.usage.output) {
            main.usage.web_fetch_requests = total.web_fetch_requests;
        }
    }
}

/// An API `usage` object (or the SDK repr's): at least input or output tokens.
fn api_usage(v: &Value) -> Option<Usage> {
    let o = v.as_object()?;
    let get = |k: &str| o.get(k).and_then(count);
    let input = get("input_tokens");
    let output = get("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let cache_total = get("cache_creation_input_tokens").unwrap_or(0);
    let breakdown = o.get("cache_creation").and_then(Value::as_object);
    let (mut w5, w1) = match breakdown {
        Some(b) => (
            b.get("ephemeral_5m_input_tokens")
                .and_then(count)
                .unwrap_or(0),
            b.get("ephemeral_1h_input_tokens")
                .and_then(count)
                .unwrap_or(0),
        ),
        None => (cache_total, 0),
    };
    // Writes the breakdown does not account for count as 5-minute ones.
    if cache_total > w5 + w1 {
        w5 = cache_total - w1;
    }
    let tools = o.get("server_tool_use").and_then(Value::as_object);
    let tool = |k: &str| tools.and_then(|t| t.get(k)).and_then(count).unwrap_or(0);
    Some(Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: get("cache_read_input_tokens").unwrap_or(0),
        cache_write_5m: w5,
        cache_write_1h: w1,
        web_search_requests: tool("web_search_requests"),
        web_fetch_requests: tool("web_fetch_requests"),
    })
}

/// `usage.speed` (or the message's own `speed`): `fast` or standard.
fn speed_of(usage: &Value, message: Option<&Map<String, Value>>) -> Speed {
    let s = usage
        .get("speed")
        .and_then(Value::as_str)
        .or_else(|| message.and_then(|m| m.get("speed")).and_then(Value::as_str));
    if s == Some("fast") {
        Speed::Fast
    } else {
        Speed::Standard
    }
}

/// A token count: a non-negative integer (`12` or `12.0`).
fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1e18)
            .map(|f| f as u64)
    })
}

fn model_name(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| token_like(s))
        .map(str::to_string)
}

/// Ids and model names as Anthropic and Claude Code spell them (letters, digits, `-._:@/[]`,
/// at most 200 bytes). Anything else is not written to the spool.
fn token_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@/[]".contains(&b))
}
