"""Checks shared by the end-to-end scenarios (each exporter's test file calls them)."""
from __future__ import annotations

from . import rules


def rules_loaded(client) -> tuple[int, int]:
    """(rules Prometheus loaded, rules rules/*.yml declare)."""
    loaded = sum(len(g["rules"]) for g in client.rule_groups())
    return loaded, rules.declared()


def rules_unhealthy(client) -> list[str]:
    return [r["name"] for g in client.rule_groups() for r in g["rules"]
            if r.get("health") not in ("ok", None)]
