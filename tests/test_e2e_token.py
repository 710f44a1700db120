"""End to end: token-collector against the real Claude Code client, ccusage and Prometheus.

    -k claude      the real client (scripts/setup.sh installs it into .tools/npm) runs against
                   a fake Messages API on loopback (odin.fakeapi) and writes real transcripts;
                   the collector counts exactly the usages the fake handed out for the
                   responses the transcripts hold (a subagent's file included), costs them
                   as Claude Code's own total_cost_usd, counts a run through
                   `token-collector wrap` once, and a wrapped session whose transcript it
                   cannot see from its capture (source="terminal"); a running collector
                   follows a new session live, and its 5-hour block equals ccusage's
    -k ccusage     a generated transcript tree (odin.transcripts): per model and day the
                   collector's tokens equal ccusage 20.0.24's for every line ccusage reads;
                   what ccusage drops or counts twice is the exact, asserted difference; the
                   cost agrees to the cent, and where the pricing rules differ (long context,
                   web search) each side's number is asserted
    -k prometheus  a real Prometheus scrapes the collector with rules/ loaded; every query of
                   dashboards/token.json and dashboards/overview.json that needs only
                   token-collector (its `llm_` metrics or job, odin.dashboards.select_by_prefix)
                   returns data; the Processes row is
                   claude-process-exporter's, checked by its own end-to-end test
    -k secret      a secret planted in a prompt appears in no file or answer of the collector
    -k fakeapi     the fake API on its own (JSON and streamed answers)

Tools: scripts/setup.sh installs them (test-all runs it); target/debug/token-collector comes
from test-all's build suite.

Claude Code writes the responses' final usage on every line of a response (2.1.332), while
the generated tree also has the older shape (output_tokens growing from line to line).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from odin import REPO, checks, dashboards, manifest, metricsdoc, transcripts
from odin.claude import CCUSAGE, CLAUDE, Home, ccusage_daily, run_claude, tool, transcript_responses
from odin.exporters import Proc, binary, free_port, http_get, wait_http
from odin.exposition import families, parse, promtool_findings
from odin.fakeapi import DELEGATE, FakeAnthropic, Usage, tool_then_text
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("token-collector")
TZ = "America/New_York"
SECRET = "sk-ant-FAKE-SECRET-7f3a9c1e5b2d4680"
UNPRICED = "claude-imaginary-9-20261101"  # no price anywhere
TYPES = ["input", "output", "cache_read", "cache_write_5m", "cache_write_1h"]

# Anthropic's list prices in USD per million tokens (anthropic.com/pricing, as of 2026-11):
# input, output, cache read, 5-minute cache write, 1-hour cache write. ccusage 20.0.24 uses
# the same (test_ccusage_cost_is_the_price_table checks it), as does Claude Code 2.1.332.
PRICES = {
    "claude-sonnet-4-5": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-opus-4-5": (5.0, 25.0, 0.50, 6.25, 10.0),
    "claude-haiku-4-5": (1.0, 5.0, 0.10, 1.25, 2.0),
}


def base_model(model: str) -> str:
    """claude-sonnet-4-5-20250929 -> claude-sonnet-4-5."""
    parts = model.split("-")
    return "-".join(parts[:-1]) if parts[-1].isdigit() and len(parts[-1]) == 8 else model


def price(model: str, u: Usage) -> float:
    """A request's cost under Anthropic's rules (every request here is under 200k input)."""
    p = PRICES[base_model(model)]
    return (u.input * p[0] + u.output * p[1] + u.cache_read * p[2] + u.cache_write_5m * p[3]
            + u.cache_write_1h * p[4]) / 1e6


def total(usages) -> Usage:
    out = Usage()
    for u in usages:
        out = out + u
    return out


# --- the collector ---------------------------------------------------------------------------


class Collector:
    """token-collector serving on loopback over given config dirs, with its own database."""

    def __init__(self, work: Path, config_dirs: list[Path], name: str = "collector",
                 spool: Path | None = None, rescan: str = "1s", extra=()):
        self.work = work
        self.db = work / f"{name}.db"
        self.spool = spool or work / f"{name}-spool"
        self.argv = [binary(EXPORTER["name"]), *[f"--claude.config-dir={d}" for d in config_dirs],
                     f"--storage.path={self.db}", f"--spool.dir={self.spool}",
                     f"--timezone={TZ}", f"--ingest.rescan-interval={rescan}", *extra]
        self.port = 0
        self.proc: Proc | None = None
        self.log = work / f"{name}.log"

    def start(self) -> "Collector":
        self.port = free_port()
        self.proc = Proc([*self.argv, f"--web.listen-address=127.0.0.1:{self.port}"], self.log,
                         env={"TZ": TZ})
        try:
            wait_http(f"http://127.0.0.1:{self.port}/ready", timeout=60)
        except TimeoutError:
            self.proc.stop()
            raise AssertionError("token-collector never became ready\n" + self.proc.tail())
        return self

    def get(self, path: str) -> str:
        status, _, body = http_get(f"http://127.0.0.1:{self.port}{path}")
        assert status == 200, f"{path}: HTTP {status}: {body[:500]!r}"
        return body.decode()

    def samples(self) -> dict:
        return parse(self.get("/metrics"))[0]

    def report(self, kind: str = "daily") -> dict:
        p = subprocess.run([str(binary(EXPORTER["name"])), "report", kind, "--json",
                            f"--storage.path={self.db}", f"--timezone={TZ}"],
                           capture_output=True, text=True, timeout=60, env={"TZ": TZ, "PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, f"report {kind} failed (rc {p.returncode}): {p.stderr[-2000:]}"
        return json.loads(p.stdout)

    def wait_until(self, pred, timeout: float = 30):
        """Scrapes until pred(samples) holds; the last samples."""
        deadline = time.time() + timeout
        while True:
            s = self.samples()
            if pred(s) or time.time() > deadline:
                return s
            time.sleep(0.3)

    def stop(self) -> int:
        return self.proc.stop() if self.proc else 0


def tokens_by_type(samples, **labels) -> dict[str, float]:
    out = defaultdict(float)
    for (name, ls), v in samples.items():
        d = dict(ls)
        if name == "llm_tokens_total" and all(d.get(k) == w for k, w in labels.items()):
            out[d["type"]] += v
    return {t: out.get(t, 0.0) for t in TYPES}


def metric_sum(samples, metric: str, **labels) -> float:
    return sum(v for (name, ls), v in samples.items()
               if name == metric and all(dict(ls).get(k) == w for k, w in labels.items()))


def report_daily(report: dict) -> dict[tuple[str, str], tuple[dict, float]]:
    """token-collector's `report daily --json` ({"daily": [{"period", "models": {model: sums}}]})
    per (day, model): tokens by type and cost."""
    out = {}
    for row in report["daily"]:
        for model, m in row["models"].items():
            out[(row["period"], model)] = ({t: m[t] for t in TYPES}, m["cost_usd"])
    return out


# --- the fake API on its own ------------------------------------------------------------------


def test_fakeapi_answers_both_ways():
    """Non-streaming JSON and streamed events carry the usage the test chose, under unique ids."""
    import urllib.request
    u = Usage(input=3, output=5, cache_read=7, cache_write_5m=11, cache_write_1h=13)
    with FakeAnthropic(usages=[u, u]) as api:
        def post(stream):
            body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream,
                               "messages": [{"role": "user", "content": "hi"}]}).encode()
            req = urllib.request.Request(api.url + "/v1/messages", body, {"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.headers.get("request-id"), r.read().decode()
        rid, text = post(False)
        msg = json.loads(text)
        assert msg["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 11, "ephemeral_1h_input_tokens": 13}
        assert (msg["usage"]["output_tokens"], rid) == (5, "req_fake000000")
        rid, text = post(True)
        events = [json.loads(ln[6:]) for ln in text.splitlines() if ln.startswith("data: ")]
        assert [e["type"] for e in events][:2] == ["message_start", "ping"] and events[-1]["type"] == "message_stop"
        assert events[0]["message"]["usage"]["output_tokens"] == 1
        assert events[-2]["usage"]["output_tokens"] == 5 and events[0]["message"]["id"] == "msg_fake000001"
        assert [r.message_id for r in api.replies] == ["msg_fake000000", "msg_fake000001"]


# --- (a) the real Claude Code client ---------------------------------------------------------


@pytest.fixture(scope="module")
def claude_runs(tmp_path_factory):
    """Three real Claude Code sessions against the fake API, each using the Bash tool once
    (so two requests per session): one plain; one with a secret in its prompt that delegates
    to a subagent (which runs Bash: four requests, a file under <session>/subagents/); one
    through `token-collector wrap`. Yields (home, api, {name: Run}, wrap state dir)."""
    tool(CLAUDE)
    work = tmp_path_factory.mktemp("claude")
    home = Home(work / "home")
    runs = {}
    with FakeAnthropic(script=tool_then_text("echo hi")) as api:
        # Streamed event by event, with a pause after each content block (Claude Code 2.1.332
        # still writes the final usage on every line of a response).
        api.event_delay = 0.2
        runs["plain"] = run_claude(home, api, "say hi using the shell", cwd=home.project("alpha"))
        api.event_delay = 0.0
        runs["secret"] = run_claude(home, api, f"{DELEGATE}: remember the key {SECRET} and say hi",
                                    cwd=home.project("beta"))
        wrap_state = work / "wrap-state"
        try:
            collector = binary(EXPORTER["name"])
        except FileNotFoundError:
            collector = None
        if collector is not None:
            wrap_env = {"TOKEN_COLLECTOR_SPOOL_DIR": str(wrap_state / "spool")}
            runs["wrap"] = run_claude(home, api, f"say hi again {SECRET}", cwd=home.project("alpha"),
                                      prefix=[collector, "wrap", "--"], env=wrap_env)
            # A session whose transcript the collector does not see (another HOME): its
            # captured result is all the collector has, so it counts as source="terminal".
            elsewhere = Home(work / "elsewhere")
            runs["elsewhere"] = run_claude(elsewhere, api, "say hi from elsewhere",
                                           cwd=elsewhere.project("gamma"),
                                           prefix=[collector, "wrap", "--"], env=wrap_env)
            for name in ("wrap", "elsewhere"):
                runs[name].captures = [json.loads(ln) for f in sorted((wrap_state / "spool").glob("*"))
                                       for ln in f.read_text().splitlines()
                                       if runs[name].result["session_id"] in ln]
        yield home, api, runs, wrap_state


def test_claude_runs_succeed(claude_runs):
    home, api, runs, _ = claude_runs
    for name, run in runs.items():
        res = run.result
        assert run.returncode == 0 and not res.get("is_error"), (name, run.stderr[-2000:], res)
        assert res["num_turns"] >= 2, f"{name}: the Bash tool was not used: {res}"
    assert not api.unknown, f"Claude Code asked the fake API for {api.unknown}"


def test_claude_subagent_wrote_its_own_file(claude_runs):
    home, api, runs, _ = claude_runs
    subs = list(home.config.glob("projects/*/*/subagents/*.jsonl"))
    assert subs, "the delegating run wrote no subagent transcript"
    assert len(runs["secret"].replies) == 4, [r.summary for r in runs["secret"].replies]


def test_claude_wrote_every_response_to_its_transcript(claude_runs):
    home, api, runs, _ = claude_runs
    written = transcript_responses(home.config)
    handed = api.by_id()
    assert written, f"no transcript under {home.config}/projects"
    assert set(written) <= set(handed), f"transcripts name ids the fake never handed out: {set(written) - set(handed)}"
    for mid, (model, usage) in written.items():
        assert usage == handed[mid].usage, f"{mid}: transcript {usage}, fake API {handed[mid].usage}"
    elsewhere = {r.message_id for r in runs["elsewhere"].replies} if "elsewhere" in runs else set()
    aux = sorted(set(handed) - set(written) - elsewhere)
    # Not an error: Claude Code may make requests it does not record; they must not be counted.
    print(f"responses in transcripts: {len(written)}, auxiliary: {aux}")


def test_claude_total_cost_is_the_price_table(claude_runs):
    """Claude Code's own total_cost_usd equals the fake's usages priced by PRICES: the
    yardstick the collector's cost is held to below."""
    _, _, runs, _ = claude_runs
    for name, run in runs.items():
        want = sum(price(r.model, r.usage) for r in run.replies)
        assert abs(run.result["total_cost_usd"] - want) < 1e-9, (name, run.result["total_cost_usd"], want)


def test_claude_transcripts_read_by_ccusage_as_the_fake_answered(claude_runs):
    """ccusage on the real client's transcripts: the fake's usages and Claude Code's cost."""
    home, api, runs, _ = claude_runs
    handed = api.by_id()
    written = transcript_responses(home.config)
    runs = {k: v for k, v in runs.items() if k != "elsewhere"}
    day = datetime.now(ZoneInfo(TZ)).date().isoformat()
    want = defaultdict(Usage)
    for mid in written:
        want[(day, handed[mid].model)] = want[(day, handed[mid].model)] + handed[mid].usage
    got = ccusage_daily(home.config, TZ)
    assert {k: v for k, (v, _) in got.items()} == {k: _tok(u) for k, u in want.items()}
    claude_total = sum(r.result["total_cost_usd"] for r in runs.values())
    assert abs(sum(c for _, c in got.values()) - claude_total) < 1e-9


@pytest.fixture(scope="module")
def claude_collector(claude_runs, tmp_path_factory):
    home, api, runs, wrap_state = claude_runs
    work = tmp_path_factory.mktemp("claude-collector")
    # The collector reads the spool the wrapped runs wrote their captures to.
    c = Collector(work, [home.config], spool=wrap_state / "spool").start()
    want = total(u for _, u in transcript_responses(home.config).values())
    want_terminal = total(r.usage for r in runs["elsewhere"].replies) if "elsewhere" in runs else Usage()
    c.wait_until(lambda s: tokens_by_type(s, source="claude_code")["output"] >= want.output
                 and tokens_by_type(s, source="terminal")["output"] >= want_terminal.output, timeout=20)
    yield c
    c.stop()


def test_claude_collector_tokens_equal_fake_usages(claude_runs, claude_collector):
    home, api, runs, _ = claude_runs
    written = transcript_responses(home.config)
    handed = api.by_id()
    want = total(handed[mid].usage for mid in written).by_type()
    got = tokens_by_type(claude_collector.samples(), source="claude_code")
    print(f"llm_tokens_total{{source=claude_code}} {got}; fake API, {len(written)} responses in transcripts: {want}")
    assert got == {k: float(v) for k, v in want.items()}, (
        f"llm_tokens_total by type {got}\nfake API's usages of the {len(written)} responses in "
        f"transcripts {want}")


def test_claude_collector_cost_equals_claude_total_cost(claude_runs, claude_collector):
    _, api, runs, _ = claude_runs
    claude_total = sum(r.result["total_cost_usd"] for r in runs.values())
    got = metric_sum(claude_collector.samples(), "llm_cost_usd_total")
    print("Claude Code total_cost_usd per run: " + ", ".join(f"{k} {r.result['total_cost_usd']!r}" for k, r in runs.items()))
    print(f"collector llm_cost_usd_total {got!r}, Claude Code total_cost_usd {claude_total!r}")
    assert abs(got - claude_total) < 1e-6, f"llm_cost_usd_total {got}, Claude Code's total_cost_usd {claude_total}"


def test_claude_wrap_captured_both_results(claude_runs):
    _, _, runs, _ = claude_runs
    for name in ("wrap", "elsewhere"):
        caps = runs[name].captures
        assert len(caps) == 1 and caps[0]["identity"]["kind"] == "claude_code_session", (name, caps)


def test_claude_collector_counts_the_wrapped_run_once(claude_runs, claude_collector):
    """The wrapped run's transcript is read, so its capture adds nothing; the run whose
    transcript the collector cannot see counts from its capture, as source="terminal"."""
    _, _, runs, wrap_state = claude_runs
    assert "wrap" in runs, "token-collector binary missing: no wrapped run"
    s = claude_collector.samples()
    want = total(r.usage for r in runs["elsewhere"].replies).by_type()
    got = tokens_by_type(s, source="terminal")
    assert got == {k: float(v) for k, v in want.items()}, (
        f"llm_tokens_total{{source=terminal}} {got}, the unseen session's usage {want} "
        "(anything more is the wrapped run counted twice)")
    cost = metric_sum(s, "llm_cost_usd_total", source="terminal")
    assert abs(cost - runs["elsewhere"].result["total_cost_usd"]) < 1e-6, (cost, runs["elsewhere"].result["total_cost_usd"])
    written = transcript_responses(claude_runs[0].config)
    assert metric_sum(s, "llm_requests_total", source="claude_code") == len(written)


def test_claude_collector_projects_and_models(claude_runs, claude_collector):
    s = claude_collector.samples()
    projects = {(dict(ls)["source"], dict(ls).get("project")) for (n, ls), _ in s.items() if n == "llm_tokens_total"}
    models = {dict(ls).get("model") for (n, ls), _ in s.items() if n == "llm_tokens_total"}
    assert projects == {("claude_code", "alpha"), ("claude_code", "beta"), ("terminal", "gamma")}, projects
    assert {base_model(m) for m in models} == {"claude-sonnet-4-5"}, models


@pytest.mark.parametrize("case", ["projects-dir-exists", "config-dir-created-later"])
def test_claude_followed_live(tmp_path_factory, case):
    """The collector already runs when a session starts: the session's usage shows within
    seconds, counted once. With <config>/projects/ in place, inotify finds the new files
    (the rescan interval is 60 s); a config directory that does not exist yet is found by
    the periodic rescan (2 s here)."""
    work = tmp_path_factory.mktemp("claude-live")
    home = Home(work / "home")
    if case == "projects-dir-exists":
        (home.config / "projects").mkdir(parents=True)
    c = Collector(work, [home.config], name="live",
                  rescan="60s" if case == "projects-dir-exists" else "2s").start()
    try:
        with FakeAnthropic(script=tool_then_text("echo hi")) as api:
            run = run_claude(home, api, "say hi using the shell", cwd=home.project("delta"))
            assert run.returncode == 0, run.stderr[-2000:]
            want = total(r.usage for r in run.replies).by_type()
            t = time.monotonic()
            s = c.wait_until(lambda s: tokens_by_type(s)["output"] >= want["output"], timeout=10)
            lag = time.monotonic() - t
        got = tokens_by_type(s)
        assert got == {k: float(v) for k, v in want.items()}, f"live: {got}, fake API {want}"
        print(f"live follow ({case}): counted {lag:.2f}s after Claude Code exited")
        cost = metric_sum(s, "llm_cost_usd_total")
        assert abs(cost - run.result["total_cost_usd"]) < 1e-6, (cost, run.result["total_cost_usd"])
        # The active 5-hour block, as ccusage computes it (its projection depends on the
        # moment of asking, so only its start, end, tokens and cost are compared).
        block = ccusage_active_block(home.config)
        got = {k: metric_sum(s, f"llm_block_{k}") for k in
               ("start_timestamp_seconds", "end_timestamp_seconds", "tokens", "cost_usd")}
        want = {"start_timestamp_seconds": iso_seconds(block["startTime"]),
                "end_timestamp_seconds": iso_seconds(block["endTime"]),
                "tokens": float(block["totalTokens"]), "cost_usd": block["costUSD"]}
        assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-6 for k in got), (
            f"llm_block_*: {got}\nccusage's active block: {want}")
    finally:
        c.stop()


def iso_seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def ccusage_active_block(config: Path) -> dict:
    p = subprocess.run([str(tool(CCUSAGE)), "claude", "blocks", "--json", "--offline", "--active"],
                       env={"PATH": "/usr/bin:/bin", "HOME": str(config), "TZ": TZ,
                            "CLAUDE_CONFIG_DIR": str(config)},
                       capture_output=True, text=True, timeout=60)
    blocks = [b for b in json.loads(p.stdout)["blocks"] if b.get("isActive")]
    assert len(blocks) == 1, p.stdout[-2000:] + p.stderr[-2000:]
    return blocks[0]


# --- (d) the secret --------------------------------------------------------------------------


def test_secret_is_in_the_transcript(claude_runs):
    home, _, _, _ = claude_runs
    assert any(SECRET in f.read_text() for f in home.config.rglob("*.jsonl")), "the planted secret is not in the transcripts"


def test_secret_not_in_database_log_metrics_health(claude_runs, claude_collector):
    c = claude_collector
    places = {"/metrics": c.get("/metrics"), "/health": http_get(f"http://127.0.0.1:{c.port}/health")[2].decode(errors="replace"),
              "log": c.log.read_text(errors="replace")}
    for f in c.db.parent.glob(c.db.name + "*"):
        places[str(f)] = f.read_bytes().decode("latin-1")
    leaks = [where for where, text in places.items() if SECRET in text]
    assert not leaks, f"the secret planted in a prompt appears in {leaks}"


def test_secret_not_in_wrap_spool(claude_runs):
    _, _, _, wrap_state = claude_runs
    leaks = [str(f) for f in wrap_state.rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]
    assert not leaks, f"the secret planted in a prompt appears in {leaks}"


# --- (b) ccusage as the oracle ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The generated tree ($ODIN_TOKEN_SEED picks another one; 7 by default)."""
    return transcripts.generate(tmp_path_factory.mktemp("tree") / "claude",
                                seed=int(os.environ.get("ODIN_TOKEN_SEED", "7")),
                                start=date(2026, 10, 1), days=6, tz=TZ)


@pytest.fixture(scope="module")
def ccusage(tree):
    return ccusage_daily(tree.root, TZ)


@pytest.fixture(scope="module")
def tree_collector(tree, tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("tree-collector"), [tree.root]).start()
    yield c
    c.stop()


def _tok(u: Usage) -> dict:
    return {"input": u.input, "output": u.output, "cache_read": u.cache_read, "cache_write": u.cache_write}


def test_ccusage_tree_has_every_shape(tree):
    tz = ZoneInfo(TZ)
    census = transcripts.line_census(tree)
    assert census["malformed"] > 0 and census["synthetic"] > 0, census
    assert sum(r.micro for r in tree.responses) > 0 and sum(bool(r.forks) for r in tree.responses) > 0
    assert sum(r.sidechain_copy for r in tree.responses) > 0
    assert sum(r.usage.cache_write_1h for r in tree.responses) > 0
    assert len({r.model for r in tree.responses}) >= 3 and len(tree.projects()) >= 3
    assert len({r.day(tz) for r in tree.responses}) >= 6
    assert any("/subagents/" in str(f) for f in tree.files)


def test_ccusage_reads_as_modelled(tree, ccusage):
    """ccusage counts what odin.transcripts says it does (else the oracle is misread)."""
    want = {k: _tok(u) for k, u in tree.ccusage(ZoneInfo(TZ)).items()}
    got = {k: v for k, (v, _) in ccusage.items()}
    diffs = [f"{k}: ccusage {got.get(k)}, modelled {want.get(k)}" for k in sorted(set(got) | set(want))
             if got.get(k) != want.get(k)]
    assert not diffs, "\n".join(diffs)


def test_ccusage_cost_is_the_price_table(tree, ccusage):
    tz = ZoneInfo(TZ)
    cost = defaultdict(float)
    for r in tree.responses:
        if not r.micro:
            for u in [r.usage, *r.forks]:
                cost[(r.day(tz), r.model)] += price(r.model, u)
    bad = [f"{k}: ccusage {c}, price table {cost[k]}" for k, (_, c) in ccusage.items() if abs(c - cost[k]) > 1e-9]
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def collector_daily(tree_collector):
    return report_daily(tree_collector.report("daily"))


def test_ccusage_collector_equals_ccusage_plus_known_differences(tree, ccusage, collector_daily):
    """Per model and day: collector = ccusage + the responses ccusage drops (timestamps with
    microseconds) - the repeats it counts again (another requestId in a resumed session)."""
    tz = ZoneInfo(TZ)
    dropped, doubled = tree.dropped(tz), tree.doubled(tz)
    problems = []
    for key in sorted(set(ccusage) | set(collector_daily) | set(dropped)):
        cc = ccusage.get(key, ({t: 0 for t in ["input", "output", "cache_read", "cache_write"]}, 0))[0]
        got = collector_daily.get(key, ({t: 0 for t in TYPES}, 0))[0]
        got4 = {"input": got["input"], "output": got["output"], "cache_read": got["cache_read"],
                "cache_write": got["cache_write_5m"] + got["cache_write_1h"]}
        d, x = _tok(dropped.get(key, Usage())), _tok(doubled.get(key, Usage()))
        want = {t: cc[t] + d[t] - x[t] for t in cc}
        if got4 != want:
            problems.append(f"{key}: collector {got4}, ccusage {cc} + dropped {d} - doubled {x}")
        print(f"{key[0]} {key[1]:28} ccusage {[cc[t] for t in cc]} ${ccusage.get(key, (0, 0.0))[1]:.6f}"
              f" collector {[got4[t] for t in got4]} ${collector_daily.get(key, (0, 0.0))[1]:.6f}"
              f" dropped {[d[t] for t in d]} doubled {[x[t] for t in x]}")
    assert not problems, "\n".join(problems)


def test_ccusage_collector_equals_truth_by_type(tree, collector_daily):
    """The 5-minute/1-hour split too (ccusage reports only their sum)."""
    want = {k: u.by_type() for k, u in tree.truth(ZoneInfo(TZ)).items()}
    got = {k: v for k, (v, _) in collector_daily.items()}
    diffs = [f"{k}: collector {got.get(k)}, generated {want.get(k)}" for k in sorted(set(got) | set(want))
             if got.get(k) != want.get(k)]
    assert not diffs, "\n".join(diffs)


def test_ccusage_dropped_lines_are_counted(tree, collector_daily):
    tz = ZoneInfo(TZ)
    dropped = total(tree.dropped(tz).values())
    assert dropped.input > 0
    micro = [r for r in tree.responses if r.micro]
    got = defaultdict(int)
    for (day, model), (u, _) in collector_daily.items():
        got[(day, model)] += u["input"]
    for r in micro:
        assert got[(r.day(tz), r.model)] >= r.usage.input, f"{r.message_id} (microsecond timestamps) not counted"


def test_ccusage_cost_agrees_to_the_cent(tree, ccusage, collector_daily):
    tz = ZoneInfo(TZ)
    dropped, doubled = tree.dropped(tz), tree.doubled(tz)
    problems = []
    for key in sorted(set(ccusage) | set(collector_daily)):
        model = key[1]
        want = (ccusage.get(key, (None, 0.0))[1] + price(model, dropped.get(key, Usage()))
                - price(model, doubled.get(key, Usage())))
        got = collector_daily.get(key, (None, 0.0))[1]
        if abs(got - want) >= 0.005:
            problems.append(f"{key}: collector ${got:.6f}, ccusage + dropped - doubled ${want:.6f}")
    assert not problems, "\n".join(problems)


def test_ccusage_ingest_outcomes(tree, tree_collector):
    s = tree_collector.samples()
    census = transcripts.line_census(tree)
    malformed = metric_sum(s, "llm_ingest_lines_total", outcome="malformed")
    partial = sum(1 for f in tree.files if not f.read_bytes().endswith(b"\n"))
    assert census["malformed"] - partial <= malformed <= census["malformed"], (malformed, census, partial)
    assert metric_sum(s, "llm_ingest_lines_total", outcome="duplicate") > 0
    assert metric_sum(s, "llm_ingest_files_followed") == len(tree.files)


# Where the pricing rules differ (one request each, on its own day; docs/token-collector.md):
# (day, usage line's extras, ccusage's cost, Anthropic's cost)
PRICING_DIFFERENCES = [
    # Above 200k input tokens Anthropic prices the whole request at the long-context rate
    # (sonnet 4.5: $6 input, $22.50 output); ccusage only the tokens beyond 200k of each type.
    ("2026-09-01", "claude-sonnet-4-5-20250929", {"input_tokens": 250000, "output_tokens": 1000},
     (200000 * 3 + 50000 * 6 + 1000 * 15) / 1e6, (250000 * 6 + 1000 * 22.5) / 1e6),
    # Web search requests: $10 per 1,000 at Anthropic, nothing at ccusage.
    ("2026-09-02", "claude-sonnet-4-5-20250929",
     {"input_tokens": 1000, "output_tokens": 1000, "server_tool_use": {"web_search_requests": 3}},
     (1000 * 3 + 1000 * 15) / 1e6, (1000 * 3 + 1000 * 15) / 1e6 + 0.03),
    # The `fast` speed: six times the price at both (ccusage names the model `...-fast`).
    ("2026-09-03", "claude-opus-4-6", {"input_tokens": 0, "output_tokens": 100000, "speed": "fast"},
     100000 * 25 * 6 / 1e6, 100000 * 25 * 6 / 1e6),
]


@pytest.fixture(scope="module")
def differences(tmp_path_factory):
    """ccusage's and the collector's cost per day of PRICING_DIFFERENCES."""
    root = tmp_path_factory.mktemp("pricing") / "claude"
    lines = []
    for i, (day, model, usage, _, _) in enumerate(PRICING_DIFFERENCES):
        lines.append(transcripts.compact({
            "type": "assistant", "timestamp": f"{day}T16:00:00.000Z", "sessionId": "s-pricing",
            "cwd": "/home/ada/src/pricing", "version": transcripts.VERSION, "uuid": f"u{i}",
            "requestId": f"req_pricing{i}", "message": {
                "id": f"msg_pricing{i}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "ok"}],
                "usage": {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, **usage}}}))
    f = root / "projects" / "-home-ada-src-pricing" / "s-pricing.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text("\n".join(lines) + "\n")
    cc = defaultdict(float)
    for (day, _), (_, cost) in ccusage_daily(root, TZ).items():
        cc[day] += cost
    c = Collector(tmp_path_factory.mktemp("pricing-collector"), [root]).start()
    try:
        mine = defaultdict(float)
        for (day, _), (_, cost) in report_daily(c.report("daily")).items():
            mine[day] += cost
    finally:
        c.stop()
    return cc, mine


@pytest.mark.parametrize("case", PRICING_DIFFERENCES, ids=["long-context", "web-search", "fast"])
def test_ccusage_pricing_differences(differences, case):
    day, _, _, ccusage_cost, anthropic_cost = case
    cc, mine = differences
    assert abs(cc[day] - ccusage_cost) < 1e-9, f"ccusage ${cc[day]}, expected ${ccusage_cost}"
    assert abs(mine[day] - anthropic_cost) < 1e-9, f"collector ${mine[day]}, Anthropic's rule ${anthropic_cost}"


# --- (c) a real Prometheus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, claude_runs):
    """The collector over a generated history (ending three days ago) and the real Claude
    Code sessions of today, scraped by a real Prometheus."""
    home = claude_runs[0]
    work = tmp_path_factory.mktemp("e2e-token")
    today = datetime.now(ZoneInfo(TZ)).date()
    hist = transcripts.generate(work / "history", seed=11, start=today - timedelta(days=6), days=3, tz=TZ)
    # A model without a price, so that llm_unpriced_tokens_total (and its alert) has a series.
    unpriced = transcripts.generate(work / "unpriced", seed=12, start=today - timedelta(days=4), days=1,
                                    sessions_per_day=1, tz=TZ, models=[UNPRICED])
    return Stack(work, EXPORTER["name"], [
        Target("token", [binary(EXPORTER["name"]), f"--claude.config-dir={hist.root}",
                         f"--claude.config-dir={unpriced.root}", f"--claude.config-dir={home.config}",
                         f"--storage.path={work / 'state.db'}", f"--timezone={TZ}",
                         "--budget.day-usd=5", "--budget.block-usd=2"], env={"TZ": TZ}),
    ])


def test_prometheus_scrapes_the_collector(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == 1 and ups[0]["value"][1] == "1", ups


def test_prometheus_rules_loaded_and_healthy(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"
    assert not checks.rules_unhealthy(stack.client)


def test_prometheus_promtool_check_metrics_silent(stack):
    rc, findings = promtool_findings(stack["token"].metrics())
    assert rc == 0 and not findings, "\n".join(findings)


def test_prometheus_metrics_doc_matches_live_output(stack):
    text = stack["token"].metrics()
    _, types = parse(text)
    problems = metricsdoc.problems(EXPORTER["name"], EXPORTER["prefix"], families(text), types)
    assert not problems, "\n".join(problems)


def test_prometheus_every_dashboard_query_returns_data(stack, capsys):
    rc = dashboards.check_prefix_queries(stack.url, EXPORTER["prefix"],
                                         [REPO / "dashboards/token.json", REPO / "dashboards/overview.json"],
                                         allow_empty=REPO / "dashboards/e2e-allow-empty-token.tsv")
    out = capsys.readouterr()
    assert rc == 0, "\n".join(ln for ln in out.out.splitlines() if not ln.startswith("OK")) + out.err[-2000:]


def test_prometheus_collector_exits_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
