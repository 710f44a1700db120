"""Checks shared by the end-to-end scenarios (each exporter's test file calls them)."""
from __future__ import annotations

import contextlib
import io

from . import REPO, dashboards, rules


def rules_loaded(client) -> tuple[int, int]:
    """(rules Prometheus loaded, rules rules/*.yml declare)."""
    loaded = sum(len(g["rules"]) for g in client.rule_groups())
    return loaded, rules.declared()


def rules_unhealthy(client) -> list[str]:
    return [r["name"] for g in client.rule_groups() for r in g["rules"]
            if r.get("health") not in ("ok", None)]


def query_dashboards(url: str, files: list[str], *, prefix: str | None = None,
                     allow_empty: str | None = None, wait: int = 60) -> tuple[int, str]:
    """Run every query of the dashboards `files` (paths under the repository) against the
    Prometheus at `url` (odin.dashboards, `--rate-interval 1m`): its exit code, and the lines
    that are not OK plus the end of its notes, for an assertion message."""
    argv = ["--prometheus", url, "--rate-interval", "1m", "--wait", str(wait)]
    if prefix:
        argv += ["--prefix", prefix]
    if allow_empty:
        argv += ["--allow-empty", str(REPO / allow_empty)]
    argv += [str(REPO / f) for f in files]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = dashboards.main(argv)
    report = "\n".join(ln for ln in out.getvalue().splitlines() if not ln.startswith("OK"))
    return rc, report + err.getvalue()[-2000:]
