//! Removal of terminal escape sequences from a byte stream, resumable across chunk boundaries
//! (a sequence split between two reads is still removed whole).

/// Where the stripper is inside an escape sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    /// After ESC.
    Esc,
    /// Inside `ESC [` ... final byte (0x40..=0x7e).
    Csi,
    /// Inside `ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _` ... BEL or `ESC \`.
    String,
    /// ESC seen inside a string sequence (an `ESC \` terminator, or a new sequence).
    StringEsc,
    /// After `ESC (`, `ESC )` and the like: one more byte names the character set.
    Charset,
}

/// Strips CSI (colours, cursor movement), OSC (titles, hyperlinks), DCS/PM/APC strings and
/// two-byte escapes; every other byte, `\r` and invalid UTF-8 included, passes unchanged.
#[derive(Debug, Clone, Default)]
pub struct AnsiStripper {
    state: State,
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

impl AnsiStripper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `input` without escape sequences to `out`.
    pub fn strip_into(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &b in input {
            self.state = match self.state {
                State::Text => {
                    // 8-bit CSI (0x9b) is left alone: it is a UTF-8 continuation byte.
                    if b == ESC {
                        State::Esc
                    } else {
                        out.push(b);
                        State::Text
                    }
                }
                State::Esc => match b {
                    b'[' => State::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => State::String,
                    b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' | b'#' | b'%' => State::Charset,
                    ESC => State::Esc,
                    _ => State::Text,
                },
                State::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        State::Text
                    } else if b == ESC {
                        State::Esc
                    } else {
                        State::Csi
                    }
                }
                State::String => match b {
                    BEL => State::Text,
                    ESC => State::StringEsc,
                    _ => State::String,
                },
                State::StringEsc => match b {
                    b'\\' => State::Text,
                    b'[' => State::Csi,
                    _ => State::String,
                },
                State::Charset => State::Text,
            };
        }
    }
}

/// `input` without escape sequences (a whole capture at once).
pub fn strip(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    AnsiStripper::new().strip_into(input, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_titles_and_links_go() {
        let s = b"\x1b[1;39m{\x1b[0m\x1b]0;title\x07\"a\"\x1b]8;;http://x\x1b\\:1}\x1b(B";
        assert_eq!(strip(s), b"{\"a\":1}");
    }

    #[test]
    fn split_sequences_are_removed_whole() {
        let mut st = AnsiStripper::new();
        let mut out = Vec::new();
        for chunk in [
            &b"ab\x1b"[..],
            b"[3",
            b"1m",
            b"c\x1b]0;t",
            b"itle\x1b",
            b"\\d",
        ] {
            st.strip_into(chunk, &mut out);
        }
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn invalid_utf8_and_cr_pass() {
        assert_eq!(strip(b"\xff\xfe\r\n\xe2\x82"), b"\xff\xfe\r\n\xe2\x82");
    }
}
