//! The capture recognisers on the fixtures of tests/fixtures/capture/: every shape, malformed
//! and truncated output, ANSI colours, output split at every byte, and a planted secret that
//! must not reach any record.

use token_collector::capture::{recognise, Recognised, Scanner, Shape};
use token_collector::usage::{CapturedIdentity, Speed, Usage};

const SECRET: &str = "PLANTEDSECRET";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/capture/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Recognises the fixture whole, then fed in chunks of 1, 2, 3, 7 and 4096 bytes (with the
/// found records taken as they come): every way must give the same records. Checks that no
/// record holds the planted secret.
fn found(name: &str) -> Vec<Recognised> {
    let bytes = fixture(name);
    let whole = recognise(&bytes);
    for size in [1usize, 2, 3, 7, 4096] {
        let mut s = Scanner::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(size) {
            s.feed(chunk);
            got.extend(s.take_found());
        }
        got.extend(s.finish());
        assert_eq!(got, whole, "{name} fed in chunks of {size}");
    }
    for r in &whole {
        let c = r.clone().into_captured("f:1".into(), 0, None);
        let line = serde_json::to_string(&c).unwrap();
        assert!(!line.contains(SECRET), "{name}: secret in {line}");
    }
    whole
}

fn session(id: &str) -> Option<CapturedIdentity> {
    Some(CapturedIdentity::ClaudeCodeSession {
        session_id: id.into(),
    })
}

fn message(id: &str) -> Option<CapturedIdentity> {
    Some(CapturedIdentity::ApiMessage {
        message_id: id.into(),
    })
}

#[test]
fn claude_json_result_one_record_per_model() {
    let f = found("claude_json_result.txt");
    assert_eq!(f.len(), 2, "{f:#?}");
    let sid = "6f1e2d3c-4b5a-4987-9a1b-2c3d4e5f6a7b";
    let sonnet = f
        .iter()
        .find(|r| r.model.as_deref() == Some("claude-sonnet-4-5-20250929"))
        .unwrap();
    assert_eq!(sonnet.shape, Shape::ClaudeCodeResult);
    assert_eq!(sonnet.identity, session(sid));
    // modelUsage's counts; the 1-hour share of `usage.cache_creation` goes to the one model
    // that wrote to the cache, web fetches to the model with the most output.
    assert_eq!(
        sonnet.usage,
        Usage {
            input: 1200,
            output: 340,
            cache_read: 20480,
            cache_write_5m: 3000,
            cache_write_1h: 6000,
            web_search_requests: 1,
            web_fetch_requests: 2,
        }
    );
    assert_eq!(sonnet.stated_cost_usd, Some(0.0831));
    let haiku = f
        .iter()
        .find(|r| r.model.as_deref() == Some("claude-haiku-4-5-20251001"))
        .unwrap();
    assert_eq!(haiku.identity, session(sid));
    assert_eq!(
        haiku.usage,
        Usage {
            input: 10,
            output: 5,
            ..Usage::default()
        }
    );
    assert_eq!(haiku.stated_cost_usd, Some(0.0010235));
}

#[test]
fn stream_json_counts_the_result_line_only() {
    let f = found("claude_stream_json.jsonl");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.shape, Shape::ClaudeCodeResult);
    assert_eq!(r.identity, session("9b8c7d6e-1111-4222-8333-444455556666"));
    assert_eq!(r.model, None, "no modelUsage: the model is unknown");
    assert_eq!(
        r.usage,
        Usage {
            input: 3,
            output: 8,
            cache_write_5m: 100,
            ..Usage::default()
        }
    );
    assert_eq!(r.stated_cost_usd, Some(0.00099));
}

#[test]
fn verbose_json_array_counts_the_result_only() {
    let f = found("claude_verbose_json_array.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].shape, Shape::ClaudeCodeResult);
    assert_eq!(f[0].usage.output, 8);
}

#[test]
fn api_message_printed_by_curl() {
    let f = found("api_message_curl.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.shape, Shape::ApiMessage);
    assert_eq!(r.identity, message("msg_01XFDUDYJgAACzvnptvVoYEL"));
    assert_eq!(r.model.as_deref(), Some("claude-opus-4-1-20250805"));
    assert_eq!(
        r.usage,
        Usage {
            input: 2095,
            output: 503,
            cache_read: 0,
            cache_write_5m: 51,
            cache_write_1h: 2000,
            web_search_requests: 3,
            web_fetch_requests: 1,
        }
    );
    assert_eq!(r.speed, Speed::Standard);
    assert_eq!(r.stated_cost_usd, None);
}

#[test]
fn api_message_pretty_printed_in_colour_with_fast_speed() {
    let f = found("api_message_jq_color.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.identity, message("msg_01FastPrettyJq000000001"));
    assert_eq!(r.model.as_deref(), Some("claude-opus-4-6"));
    assert_eq!(r.speed, Speed::Fast);
    assert_eq!(
        r.usage,
        Usage {
            input: 12,
            output: 77,
            cache_read: 4096,
            ..Usage::default()
        }
    );
}

#[test]
fn server_sent_events_give_the_final_usage() {
    let f = found("api_sse_stream.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.shape, Shape::ApiMessageStream);
    assert_eq!(r.identity, message("msg_01SseStream0000000001"));
    assert_eq!(r.model.as_deref(), Some("claude-haiku-4-5-20251001"));
    assert_eq!(
        r.usage,
        Usage {
            input: 472,
            output: 15,
            ..Usage::default()
        }
    );
}

#[test]
fn batch_results_nested_messages() {
    let f = found("batch_results.jsonl");
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].identity, message("msg_01Batch000000000000001"));
    assert_eq!(f[0].usage.output, 20);
}

#[test]
fn python_sdk_usage_repr_is_anonymous() {
    let f = found("sdk_usage_repr.txt");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f
        .iter()
        .all(|r| r.shape == Shape::SdkUsageRepr && r.identity.is_none() && r.model.is_none()));
    assert_eq!(
        f[0].usage,
        Usage {
            input: 25,
            output: 120,
            cache_read: 2048,
            cache_write_5m: 0,
            cache_write_1h: 1024,
            web_search_requests: 2,
            web_fetch_requests: 0,
        }
    );
    assert_eq!(
        f[1].usage,
        Usage {
            input: 7,
            output: 9,
            ..Usage::default()
        }
    );
    // The anonymous record takes the occurrence the writer gives it.
    let c = f[0]
        .clone()
        .into_captured("x.jsonl:1".into(), 5, Some("/p".into()));
    assert_eq!(
        c.identity,
        CapturedIdentity::Anonymous {
            occurrence: "x.jsonl:1".into()
        }
    );
}

#[test]
fn python_sdk_message_repr_has_its_id() {
    let f = found("sdk_message_repr.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.shape, Shape::SdkMessageRepr);
    assert_eq!(r.identity, message("msg_01ReprMessage00000000001"));
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        r.usage,
        Usage {
            input: 50,
            output: 60,
            cache_write_5m: 300,
            ..Usage::default()
        }
    );
}

#[test]
fn cost_block_one_anonymous_record_per_model() {
    let f = found("cost_block.txt");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f
        .iter()
        .all(|r| r.shape == Shape::CostBlock && r.identity.is_none()));
    assert_eq!(f[0].model.as_deref(), Some("claude-haiku"));
    assert_eq!(
        f[0].usage,
        Usage {
            input: 39_400,
            output: 1_600,
            cache_read: 0,
            cache_write_5m: 4_100,
            ..Usage::default()
        }
    );
    assert_eq!(f[0].stated_cost_usd, Some(0.0524));
    assert_eq!(f[1].model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        f[1].usage,
        Usage {
            input: 787,
            output: 49_400,
            cache_read: 5_900_000,
            cache_write_5m: 183_800,
            ..Usage::default()
        }
    );
    assert_eq!(f[1].stated_cost_usd, Some(3.20));
}

#[test]
fn cost_block_without_costs_per_model() {
    let f = found("cost_block_unknown_models.txt");
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].model.as_deref(), Some("grok-code-fast-1"));
    assert_eq!(f[0].usage.input, 1_300);
    assert_eq!(f[0].stated_cost_usd, None);
    assert_eq!(f[1].usage.cache_read, 18_500);
}

#[test]
fn cost_block_without_usage_by_model_gives_nothing() {
    assert_eq!(found("cost_block_old.txt"), vec![]);
}

#[test]
fn malformed_and_truncated_output_counts_only_whole_objects() {
    let f = found("malformed.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].identity, message("msg_01AfterGarbage000000001"));
    assert_eq!(f[0].usage.output, 2);
}

#[test]
fn shapes_between_other_text_on_one_line() {
    let out = br#"before {"id":"msg_1","type":"message","model":"m","usage":{"input_tokens":1,"output_tokens":2}} middle Usage(input_tokens=3, output_tokens=4) after"#;
    let f = recognise(out);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].identity, message("msg_1"));
    assert_eq!(f[1].usage.input, 3);
}

#[test]
fn everything_in_one_capture() {
    let mut all = Vec::new();
    let names = [
        "claude_json_result.txt",
        "claude_stream_json.jsonl",
        "api_message_curl.txt",
        "api_message_jq_color.txt",
        "api_sse_stream.txt",
        "sdk_usage_repr.txt",
        "sdk_message_repr.txt",
        "cost_block.txt",
        "malformed.txt",
    ];
    let mut expected = 0;
    for n in names {
        expected += recognise(&fixture(n)).len();
        all.extend(fixture(n));
        // malformed.txt ends cut short: a newline ends its last (truncated) line.
        all.push(b'\n');
    }
    assert_eq!(recognise(&all).len(), expected);
}

#[test]
fn large_output_is_scanned_in_bounded_memory() {
    let mut s = Scanner::new();
    let line = b"lorem ipsum { not json } dolor sit amet, 0123456789 abcdefghij\n";
    for _ in 0..100_000 {
        s.feed(line);
    }
    s.feed(br#"{"id":"msg_big","type":"message","usage":{"input_tokens":1,"output_tokens":1}}"#);
    let f = s.finish();
    assert_eq!(f.len(), 1);
}

/// Output cut short anywhere: nothing panics, and nothing is made up. Every record found in
/// a prefix is one of the whole output's records (a `/cost` line cut before its `($...)`
/// lacks the stated cost; a server-sent-event stream cut before its `message_delta` reports
/// the usage of `message_start`).
#[test]
fn every_prefix_of_every_fixture() {
    let names = [
        "claude_json_result.txt",
        "claude_stream_json.jsonl",
        "claude_verbose_json_array.txt",
        "api_message_curl.txt",
        "api_message_jq_color.txt",
        "api_sse_stream.txt",
        "batch_results.jsonl",
        "sdk_usage_repr.txt",
        "sdk_message_repr.txt",
        "cost_block.txt",
        "cost_block_unknown_models.txt",
        "malformed.txt",
        "sdk_stream_events_repr.txt",
        "node_console_log.txt",
    ];
    for name in names {
        let bytes = fixture(name);
        let whole = recognise(&bytes);
        for cut in 0..bytes.len() {
            for r in recognise(&bytes[..cut]) {
                let known = whole.iter().any(|w| {
                    let mut w = w.clone();
                    if r.shape == Shape::CostBlock && r.stated_cost_usd.is_none() {
                        w.stated_cost_usd = None;
                    }
                    if r.shape == Shape::ApiMessageStream {
                        return w.identity == r.identity;
                    }
                    w == r
                });
                assert!(known, "{name} cut at {cut}: made-up record {r:#?}");
            }
        }
    }
}

/// Random bytes (with the characters the recognisers look for) in random chunks: no panic.
#[test]
fn random_garbage_does_not_panic() {
    let alphabet: &[u8] =
        b"{}[]\"\\:,()=' \n\rUsage(Message(Total cost:$0123456789.kmtruefalsenull\x1b[m\xff\xe2";
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        let len = (next() % 4000) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let mut s = Scanner::new();
        let mut i = 0;
        while i < bytes.len() {
            let n = 1 + (next() % 64) as usize;
            s.feed(&bytes[i..(i + n).min(bytes.len())]);
            s.take_found();
            i += n;
        }
        s.finish();
    }
}

#[test]
fn python_sdk_stream_events_give_the_final_usage() {
    let f = found("sdk_stream_events_repr.txt");
    assert_eq!(f.len(), 1, "{f:#?}");
    let r = &f[0];
    assert_eq!(r.shape, Shape::ApiMessageStream);
    assert_eq!(r.identity, message("msg_01ReprStream000000000001"));
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        r.usage,
        Usage {
            input: 21,
            output: 42,
            cache_read: 1500,
            ..Usage::default()
        }
    );
}

#[test]
fn python_debug_prints_of_usage_are_counted() {
    let out = b"response.usage=Usage(input_tokens=5, output_tokens=6)\nusage=Usage(input_tokens=7, output_tokens=8)\n";
    let f = recognise(out);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!((f[0].usage.input, f[1].usage.input), (5, 7));
}

#[test]
fn node_console_log_of_a_message() {
    let f = found("node_console_log.txt");
    assert_eq!(
        f.len(),
        1,
        "a bare usage object has no shape of its own: {f:#?}"
    );
    let r = &f[0];
    assert_eq!(r.shape, Shape::ApiMessage);
    assert_eq!(r.identity, message("msg_01NodeConsoleLog000000001"));
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        r.usage,
        Usage {
            input: 14,
            output: 9,
            cache_read: 0,
            cache_write_5m: 48,
            cache_write_1h: 2000,
            web_search_requests: 1,
            web_fetch_requests: 0,
        }
    );
}
