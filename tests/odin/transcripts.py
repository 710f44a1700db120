"""Generated Claude Code transcript trees of realistic shape, with the answers both readers owe.

    tree = generate(root, seed=7, start=date(2026, 10, 1), days=6)
    tree.truth(tz)      {(day, model): Usage}: every response once, with its final usage
                        (what token-collector must count)
    tree.ccusage(tz)    {(day, model): Usage}: what ccusage 20.0.24 counts on the same tree
                        (the rules below, established with the real binary)
    tree.dropped(tz)    what ccusage drops: responses whose timestamps carry microseconds
    tree.doubled(tz)    what ccusage counts again: a response a resumed session repeats under
                        another requestId

The shape (seeded, so every run writes the same bytes): several projects (`cwd`), sessions on
several days, each response written as one line per content block sharing `message.id` and
`requestId`, with `output_tokens` growing from line to line (the last is final); subagent
files under `<session>/subagents/` whose responses are partly repeated in the parent file
(`isSidechain`), some of them under another `requestId`; resumed sessions whose new file
starts by repeating lines of the old one (same ids and timestamps); `<synthetic>` API-error
lines; user lines, summaries and large `file-history-snapshot` lines; corrupt and truncated
lines (one file ends in a half-written line); 1-hour cache writes; several models; a few
responses stamped with microseconds and some with no fraction at all.

What ccusage 20.0.24 does (tests/test_e2e_token.py checks these against the binary):
  - it reads only compactly serialised lines (`"timestamp":"` without spaces), as Claude Code
    writes them; so does this generator;
  - a timestamp must have no fraction or exactly three digits: other lines are dropped;
  - responses are deduplicated by (message.id, requestId), keeping the largest usage; the same
    message.id under another requestId counts again, except that a subagent's response
    repeated in its parent's file (under any requestId) counts once;
  - `<synthetic>` lines are not counted;
  - cost: above 200k tokens ccusage prices only the tokens beyond 200k of each type at the
    long-context rate, Anthropic the whole request: the generator keeps every request's input
    (input + cache read + cache write) under 200k, so the two agree.
"""
from __future__ import annotations

import json
import random
import uuid as uuidlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from .fakeapi import Usage

MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"]
PROJECTS = ["/home/ada/src/odin", "/home/ada/src/website", "/srv/work/billing-api",
            "/home/ada/notes"]
VERSION = "2.1.332"


def compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_cwd(cwd: str) -> str:
    """Claude Code's project directory name for a working directory."""
    return "".join(c if c.isalnum() else "-" for c in cwd)


@dataclass
class Response:
    message_id: str
    request_id: str
    model: str
    project: str
    ts: datetime  # of its first line (UTC)
    usage: Usage  # final
    micro: bool = False  # its lines' timestamps carry microseconds
    sidechain_copy: bool = False  # a subagent's response repeated in the parent's file
    forks: list = field(default_factory=list)  # the usage of each repeat under another
    #                                             requestId in a resumed session's file

    def day(self, tz: ZoneInfo) -> str:
        return self.ts.astimezone(tz).date().isoformat()


@dataclass
class Tree:
    root: Path
    responses: list = field(default_factory=list)
    lines: int = 0  # written, the half-written last lines included
    files: list = field(default_factory=list)

    def _sum(self, tz, usages) -> dict:
        out: dict = defaultdict(Usage)
        for r in self.responses:
            for u in usages(r):
                out[(r.day(tz), r.model)] = out[(r.day(tz), r.model)] + u
        return dict(out)

    def truth(self, tz: ZoneInfo) -> dict:
        return self._sum(tz, lambda r: [r.usage])

    def ccusage(self, tz: ZoneInfo) -> dict:
        return self._sum(tz, lambda r: [] if r.micro else [r.usage, *r.forks])

    def dropped(self, tz: ZoneInfo) -> dict:
        return self._sum(tz, lambda r: [r.usage] if r.micro else [])

    def doubled(self, tz: ZoneInfo) -> dict:
        return self._sum(tz, lambda r: [] if r.micro else r.forks)

    def projects(self) -> set[str]:
        return {r.project for r in self.responses}


def _ts(t: datetime, micro: bool, nofrac: bool) -> str:
    t = t.astimezone(timezone.utc)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    if nofrac:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class _Gen:
    def __init__(self, root: Path, rng: random.Random, tz: ZoneInfo, models: list[str]):
        self.root = root
        self.rng = rng
        self.tz = tz
        self.models = models
        self.tree = Tree(root)
        self.n = 0

    def uuid(self) -> str:
        return str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4))

    def usage(self) -> Usage:
        r = self.rng
        cache_write = r.choice([0, 0, r.randint(1, 30000)])
        one_hour = r.choice([0, cache_write, r.randint(0, cache_write)])
        return Usage(input=r.randint(1, 4000), output=r.randint(1, 9000),
                     cache_read=r.choice([0, r.randint(1, 150000)]),
                     cache_write_5m=cache_write - one_hour, cache_write_1h=one_hour)

    def base(self, session: str, cwd: str, t: datetime, micro=False, nofrac=False,
             sidechain=False, agent=None) -> dict:
        d = {"parentUuid": self.uuid(), "isSidechain": sidechain, "userType": "external",
             "cwd": cwd, "sessionId": session, "version": VERSION, "gitBranch": "main"}
        if agent:
            d["agentId"] = agent
        d["timestamp"] = _ts(t, micro, nofrac)
        d["uuid"] = self.uuid()
        return d

    def response_lines(self, session: str, cwd: str, t: datetime, model: str,
                       sidechain=False, agent=None) -> tuple[Response, list[str]]:
        r = self.rng
        self.n += 1
        # The lines of one response lie within a second: none straddles midnight in the zone.
        if (t + timedelta(seconds=1)).astimezone(self.tz).date() != t.astimezone(self.tz).date():
            t += timedelta(seconds=2)
        usage = self.usage()
        micro = r.random() < 0.06
        nofrac = not micro and r.random() < 0.05
        resp = Response(message_id=f"msg_01{self.n:08d}{r.getrandbits(40):010x}",
                        request_id=f"req_011{r.getrandbits(64):016x}", model=model,
                        project=cwd, ts=t, usage=usage, micro=micro)
        kinds = r.choice([["text"], ["thinking", "text"], ["text", "tool_use"],
                          ["thinking", "text", "tool_use"], ["tool_use", "tool_use"]])
        all_final = r.random() < 0.3  # newer clients write the final usage on every line
        lines = []
        for i, kind in enumerate(kinds):
            last = i == len(kinds) - 1
            out = usage.output if (last or all_final) else max(1, usage.output * (i + 1) // (len(kinds) + 1))
            if kind == "text":
                block = {"type": "text", "text": r.choice(["Done.", "Let me look.", "Here it is."])}
            elif kind == "thinking":
                block = {"type": "thinking", "thinking": "…", "signature": "sig"}
            else:
                block = {"type": "tool_use", "id": f"toolu_01{r.getrandbits(48):012x}", "name": "Bash",
                         "input": {"command": "ls"}}
            d = self.base(session, cwd, t + timedelta(milliseconds=137 * i), micro, nofrac,
                          sidechain, agent)
            d.update({"type": "assistant", "requestId": resp.request_id,
                      "message": {"id": resp.message_id, "type": "message", "role": "assistant",
                                  "model": model, "content": [block],
                                  "stop_reason": None if not last else "end_turn",
                                  "stop_sequence": None,
                                  "usage": {**usage.api(output=out)}}})
            lines.append(compact(d))
        self.tree.responses.append(resp)
        return resp, lines

    def fork(self, lines: list[str]) -> list[str]:
        """Lines of a session repeated at the start of a resumed one: the same ids and
        timestamps, but some responses (not subagents' ones) under a new requestId, as a
        forked session writes them."""
        by_id = {r.message_id: r for r in self.tree.responses}
        fork_rid: dict[str, str] = {}
        seen: dict[str, int] = {}
        out = []
        for ln in lines:
            try:
                d = json.loads(ln)
            except ValueError:
                out.append(ln)
                continue
            resp = by_id.get((d.get("message") or {}).get("id")) if isinstance(d.get("message"), dict) else None
            if resp and not resp.sidechain_copy and d.get("requestId") == resp.request_id:
                if resp.message_id not in fork_rid and self.rng.random() < 0.3:
                    fork_rid[resp.message_id] = f"req_011{self.rng.getrandbits(64):016x}"
                if resp.message_id in fork_rid:
                    ln = ln.replace(resp.request_id, fork_rid[resp.message_id])
                    out_tokens = d["message"]["usage"]["output_tokens"]
                    seen[resp.message_id] = max(seen.get(resp.message_id, 0), out_tokens)
            out.append(ln)
        for mid, out_tokens in seen.items():  # a copy cut short holds a smaller output
            resp = by_id[mid]
            resp.forks.append(replace(resp.usage, output=out_tokens))
        return out

    def noise(self, session: str, cwd: str, t: datetime) -> list[str]:
        """Lines without usage: a user prompt, sometimes a synthetic error, a snapshot, a
        summary, a corrupt line."""
        r = self.rng
        out = []
        d = self.base(session, cwd, t)
        d.update({"type": "user", "message": {"role": "user", "content": "please fix the tests"}})
        out.append(compact(d))
        if r.random() < 0.1:
            d = self.base(session, cwd, t + timedelta(milliseconds=5))
            d.update({"type": "assistant", "isApiErrorMessage": True,
                      "message": {"id": self.uuid(), "type": "message", "role": "assistant",
                                  "model": "<synthetic>", "content": [{"type": "text", "text": "API Error: 529 overloaded"}],
                                  "stop_reason": "stop_sequence", "stop_sequence": "",
                                  "usage": Usage().api()}})
            out.append(compact(d))
        if r.random() < 0.08:
            out.append(compact({"type": "file-history-snapshot", "messageId": self.uuid(),
                                "snapshot": {"trackedFileBackups": {f"src/f{i}.rs": {"backupFileName": "x" * 40, "version": i}
                                                                    for i in range(400)}},
                                "isSnapshotUpdate": False}))
        if r.random() < 0.05:
            out.append(compact({"type": "summary", "summary": "Fixing tests", "leafUuid": self.uuid()}))
        if r.random() < 0.05:
            full = compact({"type": "assistant", "timestamp": _ts(t, False, False), "message": {"id": "x"}})
            out.append(full[: r.randint(5, len(full) - 2)])
        return out

    def write(self, path: Path, lines: list[str], tail: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for ln in lines:
                f.write(ln + "\n")
            f.write(tail)
        if path not in self.tree.files:
            self.tree.files.append(path)
        self.tree.lines += len(lines) + (1 if tail else 0)

    def session(self, cwd: str, start: datetime, turns: int, model: str,
                resume_from: list[str] | None = None) -> list[str]:
        r = self.rng
        sid = self.uuid()
        proj_dir = self.root / "projects" / encode_cwd(cwd)
        main = proj_dir / f"{sid}.jsonl"
        lines: list[str] = list(resume_from or [])
        t = start
        for _ in range(turns):
            lines += self.noise(sid, cwd, t)
            t += timedelta(seconds=r.randint(2, 40), milliseconds=r.randint(0, 999))
            _, rl = self.response_lines(sid, cwd, t, model if r.random() < 0.8 else r.choice(self.models))
            lines += rl
            t += timedelta(seconds=r.randint(1, 30))
            if r.random() < 0.15:  # a subagent: its own file, some responses repeated here
                agent = f"a{r.getrandbits(32):08x}"
                sub = proj_dir / sid / "subagents" / f"agent-{agent}.jsonl"
                sub_lines = []
                for _ in range(r.randint(1, 3)):
                    t += timedelta(seconds=r.randint(1, 20), milliseconds=r.randint(0, 999))
                    resp, rl = self.response_lines(sid, cwd, t, r.choice(self.models), True, agent)
                    sub_lines += rl
                    if r.random() < 0.5:  # repeated in the parent's file
                        resp.sidechain_copy = True
                        if r.random() < 0.3:  # under another requestId
                            other = f"req_011{r.getrandbits(64):016x}"
                            rl = [ln.replace(resp.request_id, other) for ln in rl]
                        lines += rl
                self.write(sub, sub_lines)
        tail = ""
        if r.random() < 0.1:  # a line still being written
            tail = compact({"type": "assistant", "timestamp": _ts(t, False, False),
                            "message": {"id": "msg_partial", "usage": {"input_tokens": 5}}})[:40]
        self.write(main, lines, tail)
        return lines


def generate(root: Path, seed: int = 7, start: date = date(2026, 10, 1), days: int = 6,
             sessions_per_day: int = 6, tz: str = "America/New_York",
             models: list[str] | None = None, projects: list[str] | None = None,
             now: datetime | None = None) -> Tree:
    """Writes a tree under root/projects/ and returns what was written. Sessions start at
    random times of each local day in `tz` (some just before midnight, so that the zone
    decides the day).

    With `now` (an aware datetime), the tree is a history as it stands at `now`: sessions
    that would start later than 6 hours before it are left out (none runs into the future,
    and 5 hours pass without activity), and one last session of a few turns ends a few
    minutes before it, so that a 5-hour block begins then and is active at `now` (the demo
    data of scripts/run-stack.sh). Without it nothing changes: the same seed writes the same
    bytes."""
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    g = _Gen(Path(root), rng, zone, models or MODELS)
    projects = projects or PROJECTS
    cutoff = None if now is None else now.astimezone(timezone.utc) - timedelta(hours=6)
    for d in range(days):
        day = start + timedelta(days=d)
        for s in range(sessions_per_day):
            local = datetime(day.year, day.month, day.day, tzinfo=zone)
            if s == 0:
                offset = timedelta(hours=23, minutes=50)  # crosses midnight in the zone
            else:
                offset = timedelta(seconds=rng.randint(0, 22 * 3600))
            t0 = (local + offset).astimezone(timezone.utc)
            cwd = rng.choice(projects)
            if cutoff is not None and t0 > cutoff:
                continue
            lines = g.session(cwd, t0, rng.randint(2, 10), rng.choice(g.models))
            if rng.random() < 0.25:  # resumed later: the new file starts with the old lines
                keep = g.fork(lines[: rng.randint(1, len(lines))])
                resumed = t0 + timedelta(hours=rng.randint(1, 30))
                if cutoff is None or resumed <= cutoff:
                    g.session(cwd, resumed, rng.randint(1, 4), rng.choice(g.models),
                              resume_from=keep)
    if now is not None:
        # At most ~2.5 minutes a turn (a subagent's included): 4 turns end before `now`.
        g.session(projects[0], now.astimezone(timezone.utc) - timedelta(minutes=14), 4,
                  g.models[0])
    return g.tree


def line_census(tree: Tree) -> dict[str, int]:
    """The tree's lines by what a reader makes of them: `usage` (assistant lines with a
    usage, `<synthetic>` ones included), `no_usage` (other valid JSON), `malformed`."""
    out = {"usage": 0, "no_usage": 0, "malformed": 0, "synthetic": 0}
    for f in tree.files:
        for raw in f.read_text(encoding="utf-8").split("\n"):
            if not raw:
                continue
            try:
                d = json.loads(raw)
            except ValueError:
                out["malformed"] += 1
                continue
            msg = d.get("message") if isinstance(d, dict) else None
            if isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
                out["usage"] += 1
                out["synthetic"] += msg.get("model") == "<synthetic>"
            else:
                out["no_usage"] += 1
    return out
