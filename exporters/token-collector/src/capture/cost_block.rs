//! Claude Code's `/cost` summary (also the summary it prints when an interactive session ends),
//! in the shape current Claude Code versions print:
//!
//! ```text
//! > /cost
//!   ⎿  Total cost:            $3.10
//!      Total duration (API):  7m 48s
//!      Total duration (wall): 16m 49s
//!      Total code changes:    383 lines added, 133 lines removed
//!      Usage by model:
//!         claude-haiku:  39.4k input, 1.6k output, 0 cache read, 4.1k cache write ($0.0524)
//!         claude-sonnet-4-5:  9.4k input, 33.7k output, 2.3m cache read, 172.2k cache write ($3.10)
//! ```
//!
//! The token counts are rounded (`9.4k`, `2.3m`): what this gives is approximate, and the
//! model names are Claude Code's short display names. Lines before `Usage by model:` other
//! than `Total cost:` are skipped; `Usage by model:` alone (as `/usage` prints it) is read too.

/// One `Usage by model:` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLine {
    pub model: String,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub web_search: u64,
    pub cost_usd: Option<f64>,
}

/// A whole block: the per-model lines and the total it stated.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub total_cost_usd: Option<f64>,
    pub models: Vec<ModelLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The block and the bytes it took (up to the end of its last line).
    Complete(Block, usize),
    /// The output ends before anything says the block is over.
    Incomplete,
    Invalid,
}

pub const MARKERS: [&[u8]; 2] = [b"Total cost:", b"Usage by model:"];

const MAX_BLOCK: usize = 64 * 1024;

/// Reads a block starting at `buf[0]` (on a marker); `eof` says no more output will come.
pub fn parse(buf: &[u8], eof: bool) -> Parsed {
    let mut block = Block {
        total_cost_usd: None,
        models: Vec::new(),
    };
    let mut pos = 0;
    let mut consumed = 0;
    let mut in_models = false;
    let mut first = true;
    loop {
        if pos >= MAX_BLOCK {
            return Parsed::Invalid;
        }
        let rest = &buf[pos..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], pos + n + 1),
            None if eof => (rest, buf.len()),
            None => return Parsed::Incomplete,
        };
        let text = String::from_utf8_lossy(line);
        let t = text.trim().trim_start_matches('⎿').trim();
        let mut belongs = true;
        if first {
            if let Some(v) = t.strip_prefix("Total cost:") {
                block.total_cost_usd = dollars(v.trim());
            } else if t.starts_with("Usage by model:") {
                in_models = true;
            } else {
                return Parsed::Invalid;
            }
            first = false;
        } else if in_models {
            match model_line(t) {
                Some(m) => block.models.push(m),
                None => belongs = false,
            }
        } else if t.starts_with("Usage by model:") {
            in_models = true;
        } else if !t.starts_with("Total ") {
            belongs = false;
        }
        if !belongs {
            break;
        }
        consumed = next;
        pos = next;
        if pos >= buf.len() {
            if eof {
                break;
            }
            return Parsed::Incomplete;
        }
    }
    Parsed::Complete(block, consumed)
}

/// `$3.10`, `$0.0524 (costs may be inaccurate ...)`.
fn dollars(s: &str) -> Option<f64> {
    let s = s.strip_prefix('$')?;
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    s[..end].replace(',', "").parse().ok()
}

/// `9.4k` -> 9400, `2.3m` -> 2300000, `787` -> 787.
fn count(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        'b' | 'B' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.replace(',', "").parse().ok()?;
    if !(v >= 0.0 && v.is_finite()) {
        return None;
    }
    Some((v * mult).round() as u64)
}

/// `claude-sonnet-4-5:  9.4k input, 33.7k output, 2.3m cache read, 172.2k cache write ($3.10)`.
fn model_line(t: &str) -> Option<ModelLine> {
    let (model, rest) = t.split_once(':')?;
    let model = model.trim();
    if model.is_empty()
        || model.len() > 128
        || !model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]/@".contains(c))
    {
        return None;
    }
    let mut rest = rest.trim();
    let mut cost_usd = None;
    if let Some(open) = rest.rfind("($") {
        if rest.ends_with(')') {
            cost_usd = dollars(&rest[open + 1..rest.len() - 1]);
            rest = rest[..open].trim();
        }
    }
    let mut m = ModelLine {
        model: model.to_string(),
        input: 0,
        output: 0,
        cache_read: 0,
        cache_write: 0,
        web_search: 0,
        cost_usd,
    };
    // Claude Code prints all four counts; a line with fewer is not this shape, or was cut.
    let mut seen = [false; 4];
    for part in rest.split(',') {
        let part = part.trim();
        let (n, what) = part.split_once(' ')?;
        let n = count(n)?;
        match what.trim() {
            "input" => (m.input, seen[0]) = (n, true),
            "output" => (m.output, seen[1]) = (n, true),
            "cache read" => (m.cache_read, seen[2]) = (n, true),
            "cache write" => (m.cache_write, seen[3]) = (n, true),
            "web search" | "web searches" => m.web_search = n,
            _ => return None,
        }
    }
    seen.iter().all(|s| *s).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(count("9.4k"), Some(9400));
        assert_eq!(count("2.3m"), Some(2_300_000));
        assert_eq!(count("787"), Some(787));
        assert_eq!(count("1.2b"), Some(1_200_000_000));
        assert_eq!(count("x"), None);
        assert_eq!(dollars("$0.1046 (costs may be inaccurate)"), Some(0.1046));
    }

    #[test]
    fn block_needs_its_end() {
        let b = "Total cost:            $3.10\n     Usage by model:\n   claude-x:  1 input, 2 output, 0 cache read, 0 cache write ($3.10)\n";
        assert_eq!(parse(b.as_bytes(), false), Parsed::Incomplete);
        let Parsed::Complete(block, n) = parse(b.as_bytes(), true) else {
            panic!()
        };
        assert_eq!(n, b.len());
        assert_eq!(block.models.len(), 1);
        let more = format!("{b}> next prompt\n");
        let Parsed::Complete(_, n) = parse(more.as_bytes(), false) else {
            panic!()
        };
        assert_eq!(n, b.len());
    }
}
