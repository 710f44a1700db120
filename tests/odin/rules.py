"""Prometheus rule files of rules/ (PyYAML, from the repository's .venv)."""
from __future__ import annotations

from pathlib import Path

from . import REPO


def files() -> list[Path]:
    """Every rule file Prometheus loads (deploy/prometheus/prometheus.yml: rules/*.yml)."""
    return sorted((REPO / "rules").glob("*.yml"))


def load(path: Path) -> dict:
    import yaml
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def rules(path: Path) -> list[dict]:
    return [r for g in load(path).get("groups", []) or [] for r in g.get("rules", []) or []]


def exprs(paths=None) -> list[str]:
    return [str(r.get("expr", "")) for p in (files() if paths is None else paths) for r in rules(p)]


def declared(paths=None) -> int:
    """How many alerting and recording rules the files declare."""
    return sum(1 for p in (files() if paths is None else paths) for r in rules(p)
               if "alert" in r or "record" in r)
