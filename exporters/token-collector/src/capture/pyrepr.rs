//! A reader for the Python `repr()` of the Anthropic SDK's objects
//! (`Usage(input_tokens=3, cache_creation=CacheCreation(...), service_tier='standard')`,
//! `Message(id='msg_...', content=[TextBlock(...)], usage=Usage(...))`), turned into the JSON
//! value the API would have sent: a call becomes an object of its keyword arguments (its
//! class name under `"__class__"`), `None`/`True`/`False` become `null`/`true`/`false`.

use serde_json::{Map, Number, Value};

/// What reading a repr at the start of a buffer gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The value and the number of bytes it took.
    Complete(Value, usize),
    /// The buffer ends inside the repr.
    Incomplete,
    /// Not a repr this reader understands.
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Incomplete,
    Invalid,
}

type R<T> = Result<T, Fail>;

const MAX_DEPTH: usize = 64;

/// Reads the object literal `{ key: value, ... }` at the start of `buf` as Node's
/// `console.log` prints it (bare keys, `'...'` strings, `null`, `undefined`, `[Object]`).
pub fn parse_js_object(buf: &[u8], max: usize) -> Parsed {
    let mut p = Parser {
        buf,
        pos: 0,
        max,
        depth: 0,
    };
    match p.dict() {
        Ok(v) => Parsed::Complete(v, p.pos),
        Err(Fail::Incomplete) => Parsed::Incomplete,
        Err(Fail::Invalid) => Parsed::Invalid,
    }
}

/// Reads the call `Name(...)` at the start of `buf` (at most `max` bytes).
pub fn parse_call(buf: &[u8], max: usize) -> Parsed {
    let mut p = Parser {
        buf,
        pos: 0,
        max,
        depth: 0,
    };
    let name = match p.ident() {
        Ok(n) => n,
        Err(Fail::Incomplete) => return Parsed::Incomplete,
        Err(Fail::Invalid) => return Parsed::Invalid,
    };
    match p.peek() {
        Ok(b'(') => {}
        Ok(_) => return Parsed::Invalid,
        Err(Fail::Incomplete) => return Parsed::Incomplete,
        Err(Fail::Invalid) => return Parsed::Invalid,
    }
    match p.call(name) {
        Ok(v) => Parsed::Complete(v, p.pos),
        Err(Fail::Incomplete) => Parsed::Incomplete,
        Err(Fail::Invalid) => Parsed::Invalid,
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    max: usize,
    depth: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl Parser<'_> {
    fn peek(&self) -> R<u8> {
        if self.pos >= self.max {
            return Err(Fail::Invalid);
        }
        self.buf.get(self.pos).copied().ok_or(Fail::Incomplete)
    }

    fn bump(&mut self) -> R<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn ws(&mut self) -> R<()> {
        while matches!(self.peek()?, b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
        Ok(())
    }

    fn ident(&mut self) -> R<String> {
        let start = self.pos;
        if !is_ident_start(self.peek()?) {
            return Err(Fail::Invalid);
        }
        while is_ident(self.peek()?) {
            self.pos += 1;
        }
        Ok(String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned())
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(Fail::Invalid)
        } else {
            Ok(())
        }
    }

    /// `Name(` ... `)` with the cursor on `(`.
    fn call(&mut self, name: String) -> R<Value> {
        self.enter()?;
        self.pos += 1; // (
        let mut obj = Map::new();
        obj.insert("__class__".into(), Value::String(name));
        let mut positional = 0;
        loop {
            self.ws()?;
            if self.peek()? == b')' {
                self.pos += 1;
                break;
            }
            // `key=value` or a positional value.
            let save = self.pos;
            let mut key = None;
            if is_ident_start(self.peek()?) {
                let k = self.ident()?;
                if self.peek()? == b'=' && self.buf.get(self.pos + 1) != Some(&b'=') {
                    self.pos += 1;
                    key = Some(k);
                } else {
                    self.pos = save;
                }
            }
            let v = self.value()?;
            let key = key.unwrap_or_else(|| {
                positional += 1;
                format!("_{}", positional - 1)
            });
            obj.insert(key, v);
            self.ws()?;
            match self.bump()? {
                b',' => {}
                b')' => break,
                _ => return Err(Fail::Invalid),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(obj))
    }

    /// `[a, b]`, `(a, b)` with the cursor on the opener.
    fn sequence(&mut self, close: u8) -> R<Value> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.ws()?;
            if self.peek()? == close {
                self.pos += 1;
                break;
            }
            items.push(self.value()?);
            self.ws()?;
            match self.bump()? {
                b',' => {}
                b if b == close => break,
                _ => return Err(Fail::Invalid),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    /// `{key: value, ...}` with the cursor on `{`; keys become strings.
    fn dict(&mut self) -> R<Value> {
        self.enter()?;
        self.pos += 1;
        let mut obj = Map::new();
        loop {
            self.ws()?;
            if self.peek()? == b'}' {
                self.pos += 1;
                break;
            }
            let k = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.ws()?;
            if self.bump()? != b':' {
                return Err(Fail::Invalid);
            }
            let v = self.value()?;
            obj.insert(k, v);
            self.ws()?;
            match self.bump()? {
                b',' => {}
                b'}' => break,
                _ => return Err(Fail::Invalid),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(obj))
    }

    fn string(&mut self) -> R<Value> {
        let quote = self.bump()?;
        let mut out = Vec::new();
        loop {
            let b = self.bump()?;
            match b {
                b'\n' => return Err(Fail::Invalid),
                b'\\' => {
                    let e = self.bump()?;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'\n' => return Err(Fail::Invalid),
                        other => out.push(other),
                    }
                }
                b if b == quote => break,
                b => out.push(b),
            }
        }
        Ok(Value::String(String::from_utf8_lossy(&out).into_owned()))
    }

    fn number(&mut self) -> R<Value> {
        let start = self.pos;
        while matches!(
            self.peek()?,
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'_'
        ) {
            self.pos += 1;
        }
        let text: String = String::from_utf8_lossy(&self.buf[start..self.pos]).replace('_', "");
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or(Fail::Invalid)
    }

    fn value(&mut self) -> R<Value> {
        self.ws()?;
        match self.peek()? {
            b'\'' | b'"' => self.string(),
            b'[' => self.sequence(b']'),
            b'(' => self.sequence(b')'),
            b'{' => self.dict(),
            b'-' | b'0'..=b'9' => self.number(),
            b if is_ident_start(b) => {
                let name = self.ident()?;
                // A string prefix: b'...', r'...', u'...'.
                if matches!(name.as_str(), "b" | "r" | "u" | "rb" | "br")
                    && matches!(self.peek()?, b'\'' | b'"')
                {
                    return self.string();
                }
                if self.peek()? == b'(' {
                    return self.call(name);
                }
                Ok(match name.as_str() {
                    "None" | "null" | "undefined" => Value::Null,
                    "True" | "true" => Value::Bool(true),
                    "False" | "false" => Value::Bool(false),
                    _ => Value::String(name),
                })
            }
            _ => Err(Fail::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_repr() {
        let s = b"Usage(cache_creation=CacheCreation(ephemeral_1h_input_tokens=7, ephemeral_5m_input_tokens=3), cache_creation_input_tokens=10, cache_read_input_tokens=0, input_tokens=25, output_tokens=120, server_tool_use=None, service_tier='standard') trailing";
        let Parsed::Complete(v, n) = parse_call(s, 10_000) else {
            panic!("not parsed")
        };
        assert_eq!(&s[n..], b" trailing");
        assert_eq!(v["input_tokens"], json!(25));
        assert_eq!(v["cache_creation"]["ephemeral_1h_input_tokens"], json!(7));
        assert_eq!(v["server_tool_use"], Value::Null);
        assert_eq!(v["service_tier"], json!("standard"));
        assert_eq!(v["__class__"], json!("Usage"));
    }

    #[test]
    fn nested_message_with_text_and_lists() {
        let s = br#"Message(id='msg_01', content=[TextBlock(citations=None, text='it\'s "fine" (really)', type='text')], model='claude-x', meta={'a': 1, 'b': (1, 2.5)}, usage=Usage(input_tokens=1, output_tokens=2))"#;
        let Parsed::Complete(v, n) = parse_call(s, 10_000) else {
            panic!("not parsed")
        };
        assert_eq!(n, s.len());
        assert_eq!(v["content"][0]["text"], json!("it's \"fine\" (really)"));
        assert_eq!(v["usage"]["output_tokens"], json!(2));
        assert_eq!(v["meta"]["b"][1], json!(2.5));
    }

    #[test]
    fn truncated_and_broken() {
        assert_eq!(
            parse_call(b"Usage(input_tokens=3, outp", 1000),
            Parsed::Incomplete
        );
        assert_eq!(
            parse_call(b"Usage(input_tokens=3 output_tokens=4)", 1000),
            Parsed::Invalid
        );
        assert_eq!(parse_call(b"Usage is high", 1000), Parsed::Invalid);
        assert_eq!(parse_call(b"Usage(text='a\nb')", 1000), Parsed::Invalid);
        assert_eq!(parse_call(b"Usage(input_tokens=3)", 8), Parsed::Invalid);
    }
}
