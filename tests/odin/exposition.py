"""Prometheus text exposition format: parsing, sample look-up, promtool check metrics."""
from __future__ import annotations

import re
import subprocess

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict  # {(name, ((label, value), ...)): float}


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Parses Prometheus text format into ({(name, labels): value}, {family: type});
    labels are a sorted tuple of (name, value) pairs. Raises ValueError on a bad line."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            types[fam] = typ
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable exposition line: {line!r}")
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def family_of(name: str, types: dict[str, str]) -> str:
    """A series name's family: `x_bucket`, `x_sum`, `x_count` of a histogram or summary `x`."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name


def families(text: str) -> dict[str, set[str]]:
    """Every family served in `text`, with the label names its series carry (`le` left out)."""
    samples, types = parse(text)
    out: dict[str, set[str]] = {}
    for (name, labels) in samples:
        out.setdefault(family_of(name, types), set()).update(k for k, _ in labels if k != "le")
    return out


def normalize(name: str, known: set[str]) -> str:
    """Maps a histogram's series name (`x_bucket`) to its family (`x`) when `x` is known."""
    if name in known:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name


def sample(samples: Samples, name: str, **labels) -> list[tuple[dict, float]]:
    """The series of `name` whose labels include `labels`: [(label dict, value)]."""
    out = []
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == name and all(d.get(k) == want for k, want in labels.items()):
            out.append((d, v))
    return out


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def promtool_findings(text: str) -> tuple[int, list[str]]:
    """`promtool check metrics` on an exposition: (exit status, non-empty output lines)."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    return p.returncode, [ln for ln in (p.stdout + p.stderr).decode().splitlines() if ln.strip()]
