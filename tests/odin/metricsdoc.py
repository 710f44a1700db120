"""The one parser of docs/metrics.md, the metric reference.

Each exporter has a `## <name> (prefix ...)` section; `## Shared by every exporter` holds the
rows every exporter serves, written with `<prefix>`. A row is a table line whose first
column is a name in backquotes: `| `name` | type | labels | source | meaning |`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import REPO

PATH = REPO / "docs" / "metrics.md"
SHARED = "Shared by every exporter"
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|(?:([^|]*)\|)?(?:([^|]*)\|)?")


@dataclass(frozen=True)
class Row:
    name: str  # as written (`<prefix>_...` in the shared section)
    type: str
    labels: frozenset
    source: str
    section: str  # the `## ` heading the row is under
    meaning: str = ""


def rows(path: Path = PATH) -> list[Row]:
    """Every metric row of the file, in order."""
    out, section = [], ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        m = _ROW.match(line)
        if m:
            labels = frozenset(x.strip() for x in m.group(3).split(",") if x.strip())
            out.append(Row(m.group(1), m.group(2), labels, (m.group(4) or "").strip(), section,
                           (m.group(5) or "").strip()))
    return out


def sections(path: Path = PATH) -> list[str]:
    """The `## ` headings of the file."""
    return [line[3:].strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.startswith("## ")]


def section_of(exporter: str, path: Path = PATH) -> str | None:
    """The heading of an exporter's section (`## network-exporter (prefix ...)`), or None."""
    for s in sections(path):
        if s == exporter or s.startswith(exporter + " "):
            return s
    return None


def for_exporter(exporter: str, prefix: str, path: Path = PATH) -> dict[str, Row]:
    """What one exporter must serve: the shared rows with `<prefix>` replaced, plus the rows of
    its own section. name -> Row."""
    own = section_of(exporter, path)
    out = {}
    for r in rows(path):
        if r.section.startswith(SHARED) or (own is not None and r.section == own):
            name = r.name.replace("<prefix>", prefix)
            out[name] = Row(name, r.type, r.labels, r.source, r.section, r.meaning)
    return out


def names(path: Path = PATH) -> set[str]:
    """Every name in the first column, as written (`<prefix>_...` included)."""
    return {r.name for r in rows(path)}


def series_names(row: Row) -> list[str]:
    """The series names a row's family serves (a histogram: _bucket, _sum, _count too)."""
    if row.type == "histogram":
        return [row.name, row.name + "_bucket", row.name + "_sum", row.name + "_count"]
    return [row.name]


def documents(name: str, prefixes: list[str], path: Path = PATH, documented: set[str] | None = None) -> bool:
    """Whether a metric name (a series name: histogram suffixes allowed) is in the file, under
    its own name or as a shared `<prefix>_...` row for one of `prefixes`."""
    documented = names(path) if documented is None else documented
    candidates = [name] + [name[: -len(s)] for s in ("_bucket", "_sum", "_count") if name.endswith(s)]
    for cand in candidates:
        if cand in documented:
            return True
        for prefix in prefixes:
            if cand.startswith(prefix + "_") and "<prefix>" + cand[len(prefix):] in documented:
                return True
    return False


BACKGROUND = "(background collectors)"


def problems(exporter: str, prefix: str, served: dict[str, set[str]], types: dict[str, str],
             both_ways: bool = True, path: Path = PATH, background: bool = True) -> list[str]:
    """Differences between the reference and what an exporter serves (`served`: family ->
    label names, `types`: family -> type). both_ways: documented rows must be served too.
    background=False: the exporter has no background collector, so the shared rows whose
    meaning says they are for background collectors are not expected of it."""
    docs = for_exporter(exporter, prefix, path)
    out = []
    for fam, labels in sorted(served.items()):
        if fam not in docs:
            out.append(f"{fam} is served but not documented")
            continue
        row = docs[fam]
        if types.get(fam) != row.type:
            out.append(f"{fam}: documented as {row.type}, served as {types.get(fam)}")
        if set(labels) != set(row.labels):
            out.append(f"{fam}: documented labels {sorted(row.labels)}, served {sorted(labels)}")
    if both_ways:
        for fam in sorted(set(docs) - set(served)):
            if not background and docs[fam].section.startswith(SHARED) and BACKGROUND in docs[fam].meaning:
                continue
            out.append(f"{fam} is documented but not served")
    return out
