//! Property tests of the two parsers of text someone else wrote: Claude Code transcript lines
//! (`transcript::parse_line`, `ingest::parse_chunk`, token-collector's own spool lines too) and
//! captured terminal output (`capture::Scanner` and the recognisers under it), on the fixtures
//! mutated by `odin_testkit::mutate`: no panic, bounded time and memory, every line counted
//! once, a cut transcript reading as the lines before the cut, stated costs finite, and output
//! fed in small reads recognised as it is when read whole. The coverage-guided counterpart is
//! `fuzz/` (targets `transcript`, `terminal_capture`).

use std::fs;
use std::path::{Path, PathBuf};

use odin_testkit::mutate::{bounded, line_ends, variants, CountingAlloc, Limits, Variant};
use token_collector::capture::{recognise, Recognised, Scanner};
use token_collector::ingest::{parse_chunk, Kind};
use token_collector::store::{Item, MALFORMED};
use token_collector::transcript::{parse_line, Line};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn transcripts() -> Vec<(String, Vec<u8>)> {
    let files = odin_testkit::files_under(&fixtures().join("tree"));
    assert!(!files.is_empty());
    files
        .into_iter()
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect()
}

fn captures() -> Vec<(String, Vec<u8>)> {
    let files = odin_testkit::files_under(&fixtures().join("capture"));
    files
        .into_iter()
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect()
}

fn nonblank_lines(chunk: &[u8]) -> u64 {
    chunk
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count() as u64
}

/// Every non-blank line is exactly one item or one outcome.
fn counted(chunk: &[u8], kind: Kind) -> (Vec<Item>, [u64; 4]) {
    let (items, outcomes) = parse_chunk(chunk, kind);
    assert_eq!(
        items.len() as u64 + outcomes.iter().sum::<u64>(),
        nonblank_lines(chunk),
        "every line counted once"
    );
    (items, outcomes)
}

#[test]
fn transcript_lines_survive_mutations() {
    for (i, (name, content)) in transcripts().into_iter().enumerate() {
        for v in variants(&content, 0x7472_0000 + i as u64, 64) {
            bounded(&name, &v, Limits::default(), |b| {
                counted(b, Kind::Transcript);
                for line in b.split(|&c| c == b'\n') {
                    if let Line::Usage(r) = parse_line(line) {
                        assert!(!r.message_id.is_empty() || line.contains(&b'"'));
                    }
                }
            });
        }
    }
}

/// Cut after a line, a transcript reads as exactly those lines; cut inside a line, the lines
/// before the cut are the same and the cut line is at most one malformed line.
#[test]
fn a_cut_transcript_reads_as_the_lines_before_the_cut() {
    for (name, content) in transcripts() {
        let ends = line_ends(&content);
        let mut start = 0;
        for &end in &ends {
            let (before, before_out) = counted(&content[..start], Kind::Transcript);
            let line = &content[start..end];
            for at in [1, line.len() / 2, line.len().saturating_sub(2)] {
                if at == 0 || at >= line.len() {
                    continue;
                }
                let cut = &content[..start + at];
                let (items, out) = counted(cut, Kind::Transcript);
                assert_eq!(
                    format!("{:?}", &items[..before.len()]),
                    format!("{before:?}"),
                    "{name}: cut at {}",
                    start + at
                );
                assert!(items.len() <= before.len() + 1);
                assert!(out[MALFORMED] <= before_out[MALFORMED] + 1, "{name}");
            }
            start = end;
        }
    }
}

/// The spool lines `wrap` writes from what it recognised, mutated.
#[test]
fn spool_lines_survive_mutations() {
    let mut spool = Vec::new();
    for (n, (_, content)) in captures().iter().enumerate() {
        for r in recognise(content) {
            let c = r.into_captured(format!("spool:{n}"), 1_700_000_000_000, None);
            spool.extend_from_slice(serde_json::to_string(&c).unwrap().as_bytes());
            spool.push(b'\n');
        }
    }
    let (items, outcomes) = counted(&spool, Kind::Spool);
    assert_eq!(
        outcomes.iter().sum::<u64>(),
        0,
        "the unchanged spool reads whole"
    );
    assert!(!items.is_empty());
    for v in variants(&spool, 0x7370_6f6f, 64) {
        bounded("spool", &v, Limits::default(), |b| {
            let (items, _) = counted(b, Kind::Spool);
            for item in items {
                if let Item::Captured(c) = item {
                    assert!(c.stated_cost_usd.map_or(true, f64::is_finite));
                }
            }
        });
    }
}

fn scan_in_reads(output: &[u8], step: usize) -> Vec<Recognised> {
    let mut s = Scanner::new();
    let mut found = Vec::new();
    for piece in output.chunks(step.max(1)) {
        s.feed(piece);
        found.extend(s.take_found());
    }
    found.extend(s.finish());
    found
}

#[test]
fn terminal_captures_survive_mutations() {
    for (i, (name, content)) in captures().into_iter().enumerate() {
        for v in variants(&content, 0x6361_7000 + i as u64, 48) {
            bounded(&name, &v, Limits::default(), |b| {
                let whole = recognise(b);
                for r in &whole {
                    assert!(r.stated_cost_usd.map_or(true, f64::is_finite), "{r:?}");
                }
                let step = 1 + (b.len() % 61);
                assert_eq!(
                    scan_in_reads(b, step),
                    whole,
                    "{name}: reads of {step} bytes"
                );
            });
        }
    }
}

/// Pathological shapes for the scanner's candidates: an object that never closes, many
/// openings, a repr that never ends. Each must stay linear enough to finish quickly.
#[test]
fn unfinished_candidates_stay_bounded() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("open braces", b"{".repeat(200_000)),
        ("open keys", b"{\"a\":".repeat(50_000)),
        ("open repr", b"Usage(input_tokens=".repeat(20_000)),
        (
            "open arrays",
            [b"{\"a\":".as_slice(), &b"[".repeat(200_000)].concat(),
        ),
        (
            "unclosed string",
            [b"{\"usage\": \"".as_slice(), &b"x".repeat(500_000)].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let v = Variant {
            what: what.into(),
            bytes,
        };
        bounded("scanner", &v, Limits::default(), |b| {
            recognise(b);
            scan_in_reads(b, 4096);
        });
    }
}

/// `span::nested_objects` answers what `span::json_object` would at each offset it lists
/// (the shortcut that keeps the end of a long unfinished object linear).
#[test]
fn nested_spans_agree_with_scanning_from_each() {
    use token_collector::capture::span::{json_object, nested_objects, Span};
    let mut inputs: Vec<Vec<u8>> = vec![
        br#"{"a":{"b":1},"c":{"d":[{"e":"{\"x\":1}"}],"f":{ "g":{}}"#.to_vec(),
        br#"{"a": {"b": {"c": {"d": "}"}, "e": ["{", {"f": 2}]}"#.to_vec(),
        b"{\"a\":{\"b\"\n:{}".to_vec(),
    ];
    for (_, content) in captures() {
        for v in variants(&content, 0x6e65_7374, 24) {
            if v.bytes.len() <= 64 * 1024 {
                inputs.push(v.bytes);
            }
        }
    }
    for input in inputs {
        for i in (0..input.len()).filter(|&i| input[i] == b'{') {
            let rest = &input[i..];
            if json_object(rest, 1 << 20) != Span::Incomplete {
                continue;
            }
            for (offset, known) in nested_objects(rest, 1 << 20) {
                assert_eq!(
                    known,
                    json_object(&rest[offset..], 1 << 20),
                    "at {} inside the object at {i} of {:?}",
                    i + offset,
                    String::from_utf8_lossy(&input[..input.len().min(200)])
                );
            }
        }
    }
}

/// A message object shown as the value of a `"message":` key of an object that cannot be
/// read whole is not counted on its own; whether the key arrived in an earlier read must not
/// change that (found by the `terminal_capture` fuzz target: in reads of 14 bytes the key had
/// left the buffer and the message was counted).
#[test]
fn a_nested_message_is_judged_the_same_in_any_reads() {
    let output = b"\x0e\x0e cut-short line\", \"message\": {\"id\": \"msg_01\", \"type\": \
        \"message\", \"model\": \"claude-x\", \"usage\": {\"input_tokens\": 10, \
        \"output_tokens\": 2}}}\n{\"custom_id\": \"req-2\"}\n";
    let whole = recognise(output);
    assert!(whole.is_empty(), "{whole:?}");
    for step in 1..output.len() {
        assert_eq!(scan_in_reads(output, step), whole, "reads of {step} bytes");
    }
    // The same for a repr's keyword argument whose name came in an earlier read.
    let repr = b"Message(id='msg_02', usage=Usage(input_tokens=5, output_tokens=1), cut";
    let whole = recognise(repr);
    for step in 1..repr.len() {
        assert_eq!(
            scan_in_reads(repr, step),
            whole,
            "repr in reads of {step} bytes"
        );
    }
}

/// Every capture fixture in reads of 1 to 64 bytes is recognised as when read whole (found by
/// the `terminal_capture` fuzz target: a Node object literal whose read ended between `{` and
/// the `:` of its first key was passed over).
#[test]
fn every_capture_is_recognised_the_same_in_reads_of_any_size() {
    for (name, content) in captures() {
        let whole = recognise(&content);
        for step in 1..=64 {
            assert_eq!(
                scan_in_reads(&content, step),
                whole,
                "{name}: reads of {step} bytes"
            );
        }
    }
}
