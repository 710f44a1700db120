//! Where a candidate (a JSON object, a Python repr) ends in captured text: balanced brackets
//! that respect string literals, without parsing the value. Fails fast on text that cannot be
//! the thing looked for, so that scanning ordinary output stays linear in practice.

/// How far a candidate starting at the first byte goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// It ends after this many bytes (the closing bracket included).
    Complete(usize),
    /// The text ends before the candidate does: more output may complete it.
    Incomplete,
    /// Not the thing looked for (or longer than the limit).
    Invalid,
}

/// Where a scan stands with respect to JSON string literals.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

/// What one byte is, for a scan that only looks at what lies outside strings.
enum Byte {
    /// Part of a string literal, its quotes included.
    InString,
    /// A raw newline inside a string: JSON strings cannot hold one.
    NewlineInString,
    /// Structure, whitespace or a scalar.
    Outside,
}

impl Strings {
    fn feed(&mut self, b: u8) -> Byte {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            } else if b == b'\n' {
                return Byte::NewlineInString;
            }
            return Byte::InString;
        }
        if b == b'"' {
            self.inside = true;
            return Byte::InString;
        }
        Byte::Outside
    }
}

/// The extent of a JSON object starting at `buf[0] == b'{'`. Outside strings only JSON's own
/// bytes are allowed (structure, whitespace, numbers, `true`/`false`/`null`); a raw newline
/// inside a string ends the candidate (JSON strings cannot hold one, so a line cut short in
/// the middle of a string is never glued to the next line).
pub fn json_object(buf: &[u8], max: usize) -> Span {
    debug_assert_eq!(buf.first(), Some(&b'{'));
    // The first token after `{` must be a key or `}`.
    match buf[1..].iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Span::Incomplete,
        Some(b'"') | Some(b'}') => {}
        Some(_) => return Span::Invalid,
    }
    let mut stack: Vec<u8> = Vec::new();
    let mut strings = Strings::default();
    for (i, &b) in buf.iter().enumerate() {
        if i >= max {
            return Span::Invalid;
        }
        match strings.feed(b) {
            Byte::NewlineInString => return Span::Invalid,
            Byte::InString => continue,
            Byte::Outside => {}
        }
        match b {
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return Span::Invalid;
                }
                if stack.is_empty() {
                    return Span::Complete(i + 1);
                }
            }
            b':' | b',' | b' ' | b'\t' | b'\r' | b'\n' => {}
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'E' => {}
            b'a'..=b'z' => {}
            _ => return Span::Invalid,
        }
    }
    Span::Incomplete
}

/// What [`json_object`] answers at each `{` inside a candidate it found
/// [`Span::Incomplete`] (one that runs to the end of `buf`, which starts with that candidate's
/// `{`), found in one pass instead of one scan from each: `(offset, answer)` for every `{`
/// after the first that lies outside a string. At such a `{` a scan of its own is in the same
/// state as the outer one, so it ends where the outer one gets back to the depth it had
/// there, or runs to the end as well. A `{` not listed is scanned as usual. Without this, the
/// end of an output holding a long unfinished object (`{"a":{"a":{"a":...`) would cost time
/// quadratic in its length.
pub fn nested_objects(buf: &[u8], max: usize) -> Vec<(usize, Span)> {
    let mut out = Vec::new();
    // Closing byte, and the offset of the `{` when its own scan would get past its first
    // token (a key or `}`).
    let mut stack: Vec<(u8, Option<usize>)> = Vec::new();
    let mut strings = Strings::default();
    for (i, &b) in buf.iter().enumerate() {
        match strings.feed(b) {
            Byte::NewlineInString => return out,
            Byte::InString => continue,
            Byte::Outside => {}
        }
        match b {
            b'{' => {
                let first = buf[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                let own = (i > 0 && matches!(first, Some(b'"') | Some(b'}'))).then_some(i);
                stack.push((b'}', own));
            }
            b'[' => stack.push((b']', None)),
            b'}' | b']' => match stack.pop() {
                Some((close, own)) if close == b => {
                    if let Some(j) = own.filter(|&j| i - j < max) {
                        out.push((j, Span::Complete(i + 1 - j)));
                    }
                    if stack.is_empty() {
                        // The outer candidate ends here: it was not incomplete after all.
                        return out;
                    }
                }
                _ => return out,
            },
            _ => {}
        }
    }
    for (_, own) in stack {
        if let Some(j) = own.filter(|&j| buf.len() - j <= max) {
            out.push((j, Span::Incomplete));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects() {
        assert_eq!(
            json_object(br#"{"a":{"b":[1,2,"}"]}} tail"#, 1000),
            Span::Complete(21)
        );
        assert_eq!(json_object(b"{}", 10), Span::Complete(2));
        assert_eq!(json_object(b"{\n  \"a\": true\n}", 100), Span::Complete(15));
        assert_eq!(json_object(br#"{"a":"x\"}"}"#, 100), Span::Complete(12));
    }

    #[test]
    fn not_json() {
        assert_eq!(json_object(b"{ foo }", 100), Span::Invalid);
        assert_eq!(json_object(br#"{"a": Foo}"#, 100), Span::Invalid);
        assert_eq!(json_object(br#"{"a": [1}"#, 100), Span::Invalid);
        assert_eq!(json_object(b"{\"a\": \"cut\n{\"b\":1}", 100), Span::Invalid);
        assert_eq!(json_object(br#"{"a": "long"}"#, 5), Span::Invalid);
    }

    #[test]
    fn truncated() {
        assert_eq!(json_object(br#"{"a": {"b": 1"#, 100), Span::Incomplete);
        assert_eq!(json_object(b"{", 100), Span::Incomplete);
        assert_eq!(json_object(br#"{"a": "str"#, 100), Span::Incomplete);
    }
}
