"""Following the alerts' `runbook_url` links to the headings of docs/runbooks.md.

    headings(markdown)       every ATX heading outside fenced code: (level, text, anchor)
    github_anchor(text)      the anchor GitHub gives a heading's text (before de-duplication)
    follow(url, repo)        the heading a runbook link reaches in the repository, or why none
    problems(rules, repo)    every alert's link followed, every `##` section owned by an alert

A link is `<base>/<path in the repository>#<anchor>`: the part after the base names a file of
the repository (docs/runbooks.md), the anchor one of its headings, named as GitHub names them
(the heading's text without its Markdown, lower case, punctuation dropped, spaces as hyphens,
`-1`, `-2`, ... appended to repeats). rules/check_rules.py and tests/test_runbooks.py use it.
Standard library only.
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from . import REPO

RUNBOOKS = "docs/runbooks.md"
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _plain(text: str) -> str:
    """A heading's text as rendered: closing #s, inline code marks, emphasis, links, images
    and HTML tags taken away, their text kept."""
    text = re.sub(r"[ \t]+#+$", "", text).strip()
    if re.fullmatch(r"#+", text):
        return ""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)   # images: their alt text
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)    # links: their text
    text = re.sub(r"<[^>]+>", "", text)                     # inline HTML
    text = text.replace("`", "")
    text = re.sub(r"(\*{1,3}|(?<!\w)_{1,3}|_{1,3}(?!\w))", "", text)  # emphasis marks
    return text


def github_anchor(text: str) -> str:
    """GitHub's anchor for a heading's rendered text: lower case; every character that is not
    a letter, digit, `_`, `-` or space dropped; each space a hyphen."""
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown: str) -> list[tuple[int, str, str]]:
    """(level, text, anchor) of every ATX heading outside fenced code blocks, in order; a
    repeated anchor gets `-1`, `-2`, ... as on GitHub."""
    out, seen, fence = [], {}, None
    for line in markdown.splitlines():
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        m = _ATX.match(line)
        if not m:
            continue
        text = _plain(m.group(2) or "")
        base = anchor = github_anchor(text)
        # github-slugger: a taken anchor gets the next free count of its base appended.
        while anchor in seen:
            seen[base] += 1
            anchor = f"{base}-{seen[base]}"
        seen[anchor] = 0
        out.append((len(m.group(1)), text, anchor))
    return out


def split(url: str, base: str) -> tuple[str, str] | None:
    """(path in the repository, anchor) of a link under `base`, or None if it is not one."""
    if not url.startswith(base.rstrip("/") + "/"):
        return None
    rest = url[len(base.rstrip("/")) + 1:]
    path, _, anchor = rest.partition("#")
    return urllib.parse.unquote(path), urllib.parse.unquote(anchor)


def follow(url: str, base: str, repo: Path = REPO):
    """The heading (level, text, anchor) that a link reaches, or a string saying why none."""
    parts = split(url, base)
    if parts is None:
        return f"{url!r} does not start with {base}/"
    path, anchor = parts
    if not anchor:
        return f"{url!r} has no #anchor"
    file = (repo / path).resolve()
    if repo.resolve() not in file.parents or not file.is_file():
        return f"{path} is not a file of the repository"
    for h in headings(file.read_text(encoding="utf-8")):
        if h[2] == anchor:
            return h
    return f"{path} has no heading with the anchor #{anchor}"


def base_of(url: str) -> str | None:
    """The base of a runbook link: what comes before /docs/runbooks.md#."""
    m = re.match(r"^(https?://\S+?)/" + re.escape(RUNBOOKS) + "#", url)
    return m.group(1) if m else None


def alert_links(rule_files) -> dict[str, str]:
    """alert name -> its runbook_url ("" when it has none)."""
    from . import rules
    return {r["alert"]: str((r.get("annotations") or {}).get("runbook_url", ""))
            for p in rule_files for r in rules.rules(p) if "alert" in r}


def problems(rule_files, repo: Path = REPO, runbooks: str = RUNBOOKS) -> list[str]:
    """Every alert's link must reach a `##` heading whose text is the alert's name, and every
    `##` heading of the runbooks must be an alert's. Returns what is wrong."""
    links = alert_links(rule_files)
    out = []
    bases = {base_of(u) for u in links.values()}
    if None in bases:
        out += [f"alert {a}: runbook_url {u!r} is not <base>/{runbooks}#<anchor>"
                for a, u in sorted(links.items()) if base_of(u) is None]
    bases.discard(None)
    if len(bases) > 1:
        out.append(f"runbook links use more than one base: {sorted(bases)}")
    for alert, url in sorted(links.items()):
        base = base_of(url)
        if base is None:
            continue
        h = follow(url, base, repo)
        if isinstance(h, str):
            out.append(f"alert {alert}: {h}")
        elif h[0] != 2 or h[1] != alert:
            out.append(f"alert {alert}: {url} reaches {'#' * h[0]} {h[1]}, not the section ## {alert}")
    sections = [h for h in headings((repo / runbooks).read_text(encoding="utf-8")) if h[0] == 2]
    out += [f"{runbooks}: section '## {text}' (#{anchor}) belongs to no alert"
            for _, text, anchor in sections if text not in links]
    return out
