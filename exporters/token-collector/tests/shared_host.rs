//! The `user` label (docs/token-collector.md, "Shared hosts: the user label"): the real binary
//! on two configuration directories owned by two uids (1000 and 1001) gets a `user` label on
//! every usage family and the right totals per user; the same tree under one owner, and
//! `--label.user=never`, serve no `user` label. Needs root (chown); skipped otherwise.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

use odin_testkit::{assert_promtool_clean, copy_tree, sample, value, Exe};
use token_collector::paths::user_name;

const EXPORTER: Exe = Exe {
    bin: env!("CARGO_BIN_EXE_token-collector"),
    env_prefix: "TOKEN_COLLECTOR_",
};
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tree");
const ADA: u32 = 1000;
const BOB: u32 = 1001;
const S45: &str = "claude-sonnet-4-5-20250929";

/// `chown -R uid:uid path`; false when not permitted (not root).
fn chown_r(path: &Path, uid: u32) -> bool {
    if let Err(e) = chown(path, Some(uid), Some(uid)) {
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        return false;
    }
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_r(&e.unwrap().path(), uid);
        }
    }
    true
}

struct Host {
    tmp: tempfile::TempDir,
    ada: PathBuf,
    bob: PathBuf,
    db: PathBuf,
}

/// Ada's directory holds the fixture tree; Bob's one session of project `gamma` (1000 input
/// and 10 output tokens of Sonnet 4.5). `None` when chown is not permitted.
fn host(ada_uid: u32, bob_uid: u32) -> Option<Host> {
    let tmp = tempfile::tempdir().unwrap();
    let ada = tmp.path().join("ada/.claude");
    copy_tree(Path::new(FIXTURES), &ada);
    let bob = tmp.path().join("bob/.claude");
    let dir = bob.join("projects/-home-bob-src-gamma");
    std::fs::create_dir_all(&dir).unwrap();
    let line = serde_json::json!({
        "type": "assistant", "cwd": "/home/bob/src/gamma", "sessionId": "sb",
        "timestamp": "2026-11-25T12:00:00.000Z", "requestId": "rb",
        "message": {"id": "msg_bob", "model": S45,
                    "usage": {"input_tokens": 1000, "output_tokens": 10}}
    });
    std::fs::write(dir.join("sb.jsonl"), format!("{line}\n")).unwrap();
    // The spool belongs to Ada: with one owner of the directories, there is one owner.
    let db = tmp.path().join("state/state.db");
    let spool = tmp.path().join("state/spool");
    std::fs::create_dir_all(&spool).unwrap();
    if !chown_r(&ada, ada_uid) {
        eprintln!("not root: chown not permitted, skipped");
        return None;
    }
    assert!(chown_r(&bob, bob_uid) && chown_r(&spool, ada_uid));
    Some(Host { tmp, ada, bob, db })
}

fn once(h: &Host, extra: &[&str]) -> String {
    let mut args = vec![
        format!("--claude.config-dir={}", h.ada.display()),
        format!("--claude.config-dir={}", h.bob.display()),
        format!("--storage.path={}", h.db.display()),
        "--timezone=UTC".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = EXPORTER.once(&args, &[("HOME", h.tmp.path().to_str().unwrap())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sample lines of `family` (not its HELP and TYPE lines).
fn lines<'a>(body: &'a str, family: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    body.lines().filter(move |l| {
        l.strip_prefix(family)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

const USER_FAMILIES: [&str; 5] = [
    "llm_tokens_total",
    "llm_cost_usd_total",
    "llm_requests_total",
    "llm_web_search_requests_total",
    "llm_project_last_activity_timestamp_seconds",
];

fn no_user_label(body: &str) {
    assert!(!body.contains("user=\""), "{body}");
    assert_eq!(
        value(
            body,
            &format!(
                r#"llm_tokens_total{{source="claude_code",provider="anthropic",model="{S45}",project="alpha",type="input"}}"#
            )
        ),
        150_017.0
    );
    assert_eq!(
        value(
            body,
            &format!(
                r#"llm_tokens_total{{source="claude_code",provider="anthropic",model="{S45}",project="gamma",type="input"}}"#
            )
        ),
        1000.0
    );
}

fn check_users(body: &str) {
    let (ada, bob) = (user_name(ADA), user_name(BOB));
    let s = |project: &str, user: &str| {
        format!(
            r#"source="claude_code",provider="anthropic",model="{S45}",project="{project}",user="{user}""#
        )
    };
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{},type=\"input\"}}", s("alpha", &ada))
        ),
        150_017.0
    );
    assert_eq!(
        value(body, &format!("llm_requests_total{{{}}}", s("alpha", &ada))),
        3.0
    );
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{},type=\"input\"}}", s("gamma", &bob))
        ),
        1000.0
    );
    assert_eq!(
        value(
            body,
            &format!("llm_tokens_total{{{},type=\"output\"}}", s("gamma", &bob))
        ),
        10.0
    );
    assert_eq!(
        value(body, &format!("llm_requests_total{{{}}}", s("gamma", &bob))),
        1.0
    );
    // $3/M input, $15/M output.
    let cost = value(body, &format!("llm_cost_usd_total{{{}}}", s("gamma", &bob)));
    assert!((cost - 0.00315).abs() < 1e-12, "{cost}");
    // Nothing of Bob's under Ada, nothing of Ada's under Bob.
    assert_eq!(
        sample(
            body,
            &format!("llm_tokens_total{{{},type=\"input\"}}", s("gamma", &ada))
        ),
        None
    );
    assert_eq!(
        sample(
            body,
            &format!("llm_tokens_total{{{},type=\"input\"}}", s("alpha", &bob))
        ),
        None
    );
    assert_eq!(
        value(
            body,
            &format!(
                r#"llm_project_last_activity_timestamp_seconds{{project="beta",user="{ada}"}}"#
            )
        ),
        1_795_604_401.0
    );
    assert_eq!(
        value(
            body,
            &format!(
                r#"llm_project_last_activity_timestamp_seconds{{project="gamma",user="{bob}"}}"#
            )
        ),
        1_795_608_000.0
    );
    // Every sample of the usage families has the label (the day and month gauges too, when
    // the fixture's day is today); ingest, unpriced and block families do not.
    let mut families = USER_FAMILIES.to_vec();
    families.extend([
        "llm_day_cost_usd",
        "llm_day_tokens",
        "llm_month_cost_usd",
        "llm_month_tokens",
    ]);
    for fam in families {
        for l in lines(body, fam) {
            assert!(l.contains(",user=\""), "{l}");
        }
    }
    for fam in [
        "llm_ingest_lines_total",
        "llm_unpriced_tokens_total",
        "llm_block_tokens",
        "llm_ingest_files_followed",
    ] {
        for l in lines(body, fam) {
            assert!(!l.contains("user="), "{l}");
        }
    }
    assert_promtool_clean(body);
}

#[test]
fn two_owners_get_a_user_label_with_their_own_totals() {
    let Some(h) = host(ADA, BOB) else { return };
    let body = once(&h, &[]);
    check_users(&body);
    for fam in USER_FAMILIES {
        assert!(lines(&body, fam).next().is_some(), "{fam} missing");
    }
    // After a restart the counters resume per user.
    let again = once(&h, &[]);
    check_users(&again);
    // `report`: a `user` column in `session`, and `--user`.
    let report = |extra: &[&str]| {
        let mut args = vec!["report".to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(format!("--storage.path={}", h.db.display()));
        EXPORTER.stdout_of(&args)
    };
    let table = report(&["session", "--timezone=UTC"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("user"), "{table}");
    assert!(table
        .lines()
        .any(|l| l.starts_with("sb ") && l.contains(&user_name(BOB))));
    let j: serde_json::Value = serde_json::from_str(&report(&["session", "--json"])).unwrap();
    let sessions = j["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert!(sessions.iter().any(|s| s["user"] == user_name(BOB)));
    let bob = format!("--user={}", user_name(BOB));
    let j: serde_json::Value = serde_json::from_str(&report(&["daily", "--json", &bob])).unwrap();
    assert_eq!(j["totals"]["input"], 1000);
    assert_eq!(j["totals"]["requests"], 1);
    let ada = format!("--user={}", user_name(ADA));
    let j: serde_json::Value = serde_json::from_str(&report(&["daily", "--json", &ada])).unwrap();
    assert_eq!(j["totals"]["input"], 151_437);
    assert_eq!(j["totals"]["requests"], 8);
}

#[test]
fn one_owner_gets_no_user_label() {
    let Some(h) = host(ADA, ADA) else { return };
    let body = once(&h, &[]);
    no_user_label(&body);
    // The report has no user column either.
    let mut c = EXPORTER.command(&[], &[]);
    c.arg("report")
        .arg("session")
        .arg(format!("--storage.path={}", h.db.display()));
    let out = c.output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.lines().next().unwrap().contains("user"), "{table}");
    // `always` pins it on.
    let body = once(&h, &["--label.user=always"]);
    let ada = user_name(ADA);
    assert_eq!(
        value(
            &body,
            &format!(
                r#"llm_requests_total{{source="claude_code",provider="anthropic",model="{S45}",project="gamma",user="{ada}"}}"#
            )
        ),
        1.0
    );
}

#[test]
fn never_pins_the_label_off_with_two_owners() {
    let Some(h) = host(ADA, BOB) else { return };
    let body = once(&h, &["--label.user=never"]);
    no_user_label(&body);
    // The users are stored all the same: `auto` on the same database has them.
    let body = once(&h, &[]);
    check_users(&body);
}
