//! The transcript tree and the spool through parsing, pricing and the store, on the fixtures
//! of tests/fixtures/tree (see each test for what the fixture lines exercise).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use odin_testkit::copy_tree;
use token_collector::ingest::{lock, Ingester, Sources};
use token_collector::live::Live;
use token_collector::pricing::Pricing;
use token_collector::store::{Counts, ProjectLabel, Store};
use token_collector::usage::{Captured, CapturedIdentity, Source, Speed, Usage};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tree");
const S45: &str = "claude-sonnet-4-5-20250929";

struct Env {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    spool: PathBuf,
    db: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("claude");
    copy_tree(Path::new(FIXTURES), &config);
    let spool = tmp.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let db = tmp.path().join("state").join("state.db");
    Env {
        config,
        spool,
        db,
        _tmp: tmp,
    }
}

fn ingester(e: &Env, max: usize) -> Ingester {
    let store = Store::open(&e.db, Pricing::shipped(), ProjectLabel::Name, max).unwrap();
    let live = Live::load(&store, jiff::tz::TimeZone::UTC, false, now()).unwrap();
    Ingester::new(
        store,
        Arc::new(Mutex::new(live)),
        Sources {
            config_dirs: vec![e.config.clone()],
            spool_dir: e.spool.clone(),
        },
    )
    .unwrap()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn series(ing: &Ingester, source: Source, model: &str, project: &str) -> Counts {
    lock(&ing.live)
        .series
        .get(&(
            source,
            model.to_string(),
            project.to_string(),
            String::new(),
        ))
        .copied()
        .unwrap_or_default()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn check_fixture_totals(ing: &Ingester) {
    let cc = Source::ClaudeCode;
    // msg_a counted once with its largest usage (3 lines + a sidechain copy), msg_c (long
    // context), msg_w (cache write without breakdown: 5-minute).
    let s = series(ing, cc, S45, "alpha");
    assert_eq!(s.tokens, [150_017, 1045, 61_000, 700, 200]);
    assert_eq!(s.requests, 3);
    assert!(close(s.cost, 0.003285 + 0.9585 + 0.001566), "{}", s.cost);
    // msg_b: microsecond timestamp, 2 web searches; its resumed copy in beta is not counted.
    let b = series(ing, cc, "claude-opus-4-1-20250805", "alpha");
    assert_eq!(b.tokens, [100, 50, 0, 0, 0]);
    assert_eq!((b.requests, b.web_search), (1, 2));
    assert!(close(b.cost, 0.00525 + 0.02));
    assert_eq!(
        series(ing, cc, "claude-opus-4-1-20250805", "beta"),
        Counts::default()
    );
    // msg_d: fast.
    assert!(close(
        series(ing, cc, "claude-opus-4-6", "alpha").cost,
        0.045
    ));
    // msg_g: sidechain only.
    assert!(close(
        series(ing, cc, "claude-haiku-4-5-20251001", "alpha").cost,
        0.00003
    ));
    let h = series(ing, cc, S45, "beta");
    assert_eq!(h.tokens, [200, 20, 0, 0, 0]);
    // msg_e: no price, tokens counted, cost not.
    let u = series(ing, cc, "claude-unknown-9", "alpha");
    assert_eq!((u.tokens[0], u.tokens[1], u.cost), (100, 10, 0.0));
    let live = lock(&ing.live);
    assert_eq!(live.unpriced.get("claude-unknown-9"), Some(&110));
    assert_eq!(live.unpriced.len(), 1);
    // counted, duplicate, malformed, no_usage. Paths are read in path order, so the sidechain
    // (`s1/subagents/...`) comes before `s1.jsonl`: its copy of msg_a (largest usage) counts,
    // and the three streaming lines of msg_a in s1.jsonl are duplicates, as is msg_b in beta.
    assert_eq!(live.lines, [8, 4, 1, 4]);
}

#[test]
fn the_fixture_tree_counts_each_response_once() {
    let e = env();
    let mut ing = ingester(&e, 50);
    let pass = ing.scan_all();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.files, 3);
    check_fixture_totals(&ing);
    // A second pass reads nothing new.
    ing.scan_all();
    check_fixture_totals(&ing);
}

#[test]
fn a_restart_resumes_from_the_database() {
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    drop(ing);
    let mut ing = ingester(&e, 50);
    check_fixture_totals(&ing);
    ing.scan_all();
    check_fixture_totals(&ing);
    // Day gauges come back too (event time; the fixture is dated 2026-11-25).
    let live = lock(&ing.live);
    assert_eq!(
        live.last_activity.get(&("beta".to_string(), String::new())),
        Some(&1_795_604_401_000)
    );
}

#[test]
fn lost_offsets_rewritten_and_deleted_files_count_nothing_twice() {
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    // Offsets lost (as if the file were re-created): everything is read again, all duplicates.
    ing.store
        .connection()
        .execute("DELETE FROM files", [])
        .unwrap();
    ing.scan_all();
    check_fixture_totals_but_lines(&ing);
    // Rewritten shorter (truncated) then grown again.
    let s2 = e.config.join("projects/-home-u-src-beta/s2.jsonl");
    let content = std::fs::read(&s2).unwrap();
    std::fs::write(&s2, &content[..10]).unwrap();
    ing.scan_all();
    std::fs::write(&s2, &content).unwrap();
    ing.scan_all();
    check_fixture_totals_but_lines(&ing);
    // Deleted: counters stay.
    std::fs::remove_file(&s2).unwrap();
    ing.scan_all();
    check_fixture_totals_but_lines(&ing);
    assert_eq!(lock(&ing.live).files_followed, 2);
}

fn check_fixture_totals_but_lines(ing: &Ingester) {
    let lines = lock(&ing.live).lines;
    let saved = lines;
    lock(&ing.live).lines = [8, 4, 1, 4];
    check_fixture_totals(ing);
    lock(&ing.live).lines = saved;
}

#[test]
fn a_partial_last_line_waits_until_complete_and_growth_adds_the_difference() {
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    let s1 = e.config.join("projects/-home-u-src-alpha/s1.jsonl");
    let text = std::fs::read_to_string(&s1).unwrap();
    let partial = text.rsplit('\n').next().unwrap().to_string();
    assert!(partial.len() > 10);
    // Complete the line Claude Code was writing: msg_f is counted once complete.
    let full = r#"{"type":"assistant","cwd":"/home/u/src/alpha","sessionId":"s1","message":{"id":"msg_f","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":1,"output_tokens":2}},"requestId":"req_f","timestamp":"2026-11-25T10:10:00Z"}"#;
    let mut rewritten = text[..text.len() - partial.len()].to_string();
    rewritten.push_str(full);
    rewritten.push('\n');
    // A later, bigger snapshot of msg_a (across files): only the difference is added.
    rewritten.push_str(r#"{"type":"assistant","cwd":"/home/u/src/alpha","sessionId":"s1","message":{"id":"msg_a","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":10,"output_tokens":50,"cache_read_input_tokens":1000,"cache_creation_input_tokens":500,"cache_creation":{"ephemeral_5m_input_tokens":300,"ephemeral_1h_input_tokens":200}}},"requestId":"req_a","timestamp":"2026-11-25T10:00:09Z"}"#);
    rewritten.push('\n');
    std::fs::write(&s1, rewritten).unwrap();
    ing.scan_all();
    let s = series(&ing, Source::ClaudeCode, S45, "alpha");
    assert_eq!(s.tokens, [150_018, 1045 + 2 + 8, 61_000, 700, 200]);
    assert_eq!(s.requests, 4);
    assert!(close(
        s.cost,
        0.003285 + 0.9585 + 0.001566 + 0.000033 + 8.0 * 15e-6
    ));
}

#[test]
fn the_project_label_is_bounded() {
    let e = env();
    let mut ing = ingester(&e, 1);
    ing.scan_all();
    assert_eq!(
        series(&ing, Source::ClaudeCode, S45, "other").tokens[0],
        200
    );
    drop(ing);
    // The mapping survives a restart.
    let ing = ingester(&e, 1);
    assert_eq!(
        series(&ing, Source::ClaudeCode, S45, "other").tokens[0],
        200
    );
    assert_eq!(
        series(&ing, Source::ClaudeCode, S45, "beta"),
        Counts::default()
    );
}

fn captured(identity: CapturedIdentity, model: &str, input: u64, output: u64) -> Captured {
    Captured {
        identity,
        model: Some(model.to_string()),
        usage: Usage {
            input,
            output,
            ..Usage::default()
        },
        speed: Speed::Standard,
        stated_cost_usd: None,
        seen_at_ms: 1_795_600_800_000,
        cwd: Some("/home/u/src/gamma".to_string()),
    }
}

fn write_spool(e: &Env, name: &str, items: &[Captured]) {
    let mut s = String::new();
    for c in items {
        s.push_str(&serde_json::to_string(c).unwrap());
        s.push('\n');
    }
    std::fs::write(e.spool.join(name), s).unwrap();
}

#[test]
fn terminal_captures_follow_the_counting_rules() {
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    let session = |sid: &str| CapturedIdentity::ClaudeCodeSession {
        session_id: sid.to_string(),
    };
    write_spool(
        &e,
        "a.jsonl",
        &[
            // s1 has a transcript: not counted.
            captured(session("s1"), S45, 1000, 1000),
            // A session without a transcript: counted.
            captured(session("s9"), S45, 100, 10),
            // An API message: once by id, even when printed twice; and msg_b, which the
            // transcript already counted, not at all.
            captured(
                CapturedIdentity::ApiMessage {
                    message_id: "msg_api".into(),
                },
                S45,
                7,
                1,
            ),
            captured(
                CapturedIdentity::ApiMessage {
                    message_id: "msg_api".into(),
                },
                S45,
                7,
                1,
            ),
            captured(
                CapturedIdentity::ApiMessage {
                    message_id: "msg_b".into(),
                },
                "claude-opus-4-1-20250805",
                100,
                50,
            ),
            // No id: once per occurrence.
            captured(
                CapturedIdentity::Anonymous {
                    occurrence: "a.jsonl:6".into(),
                },
                S45,
                3,
                3,
            ),
            captured(
                CapturedIdentity::Anonymous {
                    occurrence: "a.jsonl:7".into(),
                },
                S45,
                3,
                3,
            ),
        ],
    );
    ing.scan_all();
    let t = series(&ing, Source::Terminal, S45, "gamma");
    assert_eq!(t.tokens[..2], [100 + 7 + 3 + 3, 10 + 1 + 3 + 3]);
    assert_eq!(t.requests, 4);
    assert_eq!(
        series(&ing, Source::Terminal, "claude-opus-4-1-20250805", "gamma"),
        Counts::default()
    );
    check_fixture_totals_but_lines(&ing);

    // The transcript of s9 arrives later, with more than the capture: claude_code counts only
    // the excess, terminal keeps what it counted, nothing goes down.
    let dir = e.config.join("projects/-home-u-src-gamma");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("s9.jsonl"),
        concat!(
            r#"{"type":"assistant","cwd":"/home/u/src/gamma","sessionId":"s9","message":{"id":"msg_s9a","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":60,"output_tokens":6}},"requestId":"r","timestamp":"2026-11-25T10:00:00Z"}"#,
            "\n",
            r#"{"type":"assistant","cwd":"/home/u/src/gamma","sessionId":"s9","message":{"id":"msg_s9b","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":60,"output_tokens":6}},"requestId":"r2","timestamp":"2026-11-25T10:00:01Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    ing.scan_all();
    let t2 = series(&ing, Source::Terminal, S45, "gamma");
    assert_eq!(t2, t);
    let c = series(&ing, Source::ClaudeCode, S45, "gamma");
    assert_eq!(c.tokens[..2], [20, 2]);
    assert_eq!(c.requests, 1);
    // A capture of s9 after its transcript: not counted.
    write_spool(&e, "b.jsonl", &[captured(session("s9"), S45, 100, 10)]);
    ing.scan_all();
    assert_eq!(series(&ing, Source::Terminal, S45, "gamma"), t);
}

#[test]
fn the_database_holds_no_message_text() {
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    drop(ing);
    for entry in std::fs::read_dir(e.db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("SECRET-PROMPT-XYZZY"));
        assert!(!hay.contains("please help"));
    }
}

#[test]
fn claude_code_output_naming_no_session_counts_only_without_transcripts() {
    let unnamed = |occurrence: &str| {
        captured(
            CapturedIdentity::ClaudeCodeUnnamed {
                occurrence: occurrence.into(),
            },
            S45,
            40,
            4,
        )
    };
    // With transcripts (the fixture tree): they are authoritative, the /cost lines add nothing.
    let e = env();
    let mut ing = ingester(&e, 50);
    ing.scan_all();
    write_spool(&e, "cost.jsonl", &[unnamed("cost.jsonl:1")]);
    ing.scan_all();
    assert_eq!(
        series(&ing, Source::Terminal, S45, "gamma"),
        Counts::default()
    );
    check_fixture_totals_but_lines(&ing);

    // Without any transcript (a host whose Claude Code keeps them elsewhere): once per line.
    let e = env();
    std::fs::remove_dir_all(e.config.join("projects")).unwrap();
    let mut ing = ingester(&e, 50);
    write_spool(
        &e,
        "cost.jsonl",
        &[unnamed("cost.jsonl:1"), unnamed("cost.jsonl:2")],
    );
    ing.scan_all();
    ing.scan_all();
    let t = series(&ing, Source::Terminal, S45, "gamma");
    assert_eq!(t.tokens[..2], [80, 8]);
    assert_eq!(t.requests, 2);
}

fn assistant_line(id: &str, cwd: &str, model: &str, output: u64) -> String {
    format!(
        r#"{{"type":"assistant","cwd":"{cwd}","sessionId":"many","message":{{"id":"{id}","model":"{model}","usage":{{"input_tokens":1,"output_tokens":{output}}}}},"requestId":"r_{id}","timestamp":"2026-11-25T10:00:00Z"}}"#
    )
}

#[test]
fn a_full_scan_of_many_files_counts_in_walk_order() {
    // Enough files for several transactions, files read ahead in parallel, one file too large
    // to read ahead in the middle, and a response repeated across files: the file first in
    // path order counts it, as when the files are read one after the other.
    const OPUS: &str = "claude-opus-4-1-20250805";
    let e = env();
    let dir = e.config.join("projects/-many");
    std::fs::create_dir_all(&dir).unwrap();
    for k in 0..700 {
        let mut text = assistant_line(&format!("msg_many_{k}"), "/p/many", S45, 1);
        text.push('\n');
        if k == 5 {
            text.push_str(&assistant_line("msg_x", "/p/first", OPUS, 7));
            text.push('\n');
        }
        if k == 600 {
            text.push_str(&assistant_line("msg_x", "/p/later", OPUS, 7));
            text.push('\n');
        }
        if k == 300 {
            let pad = r#"{"type":"user","message":{"role":"user","content":"padding padding padding padding padding padding"}}"#;
            while text.len() < 9 << 20 {
                text.push_str(pad);
                text.push('\n');
            }
            text.push_str(&assistant_line("msg_big", "/p/many", S45, 1));
            text.push('\n');
        }
        // A last line still being written waits.
        if k == 650 {
            text.push_str(r#"{"type":"assistant","cwd":"/p/many""#);
        }
        std::fs::write(dir.join(format!("{k:04}.jsonl")), text).unwrap();
    }
    let mut ing = ingester(&e, 50);
    let pass = ing.scan_all();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.files, 703);
    let many = series(&ing, Source::ClaudeCode, S45, "many");
    assert_eq!((many.requests, many.tokens[1]), (701, 701));
    assert_eq!(series(&ing, Source::ClaudeCode, OPUS, "first").requests, 1);
    assert_eq!(
        series(&ing, Source::ClaudeCode, OPUS, "later"),
        Counts::default()
    );
    let lines = lock(&ing.live).lines;
    // A second pass reads nothing new; completing the partial line counts it.
    ing.scan_all();
    assert_eq!(lock(&ing.live).lines, lines);
    let f = dir.join("0650.jsonl");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.truncate(text.rfind('\n').unwrap() + 1);
    text.push_str(&assistant_line("msg_late", "/p/many", S45, 1));
    text.push('\n');
    std::fs::write(&f, text).unwrap();
    ing.scan_all();
    assert_eq!(series(&ing, Source::ClaudeCode, S45, "many").requests, 702);
    // After a restart, the same.
    drop(ing);
    let ing = ingester(&e, 50);
    assert_eq!(series(&ing, Source::ClaudeCode, S45, "many").requests, 702);
}
