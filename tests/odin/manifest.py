"""exporters.toml, the one list of exporters, read through scripts/manifest.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from . import REPO

_spec = importlib.util.spec_from_file_location("odin_manifest_script", REPO / "scripts" / "manifest.py")
_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_script)

PATH: Path = _script.PATH


def load(path=PATH) -> list[dict]:
    """Every exporter of the manifest (dicts: name, port, prefix, short, run_args, host)."""
    return _script.load(path)


def get(name: str, path=PATH) -> dict:
    return _script.get(name, path)


def names(path=PATH) -> list[str]:
    return [e["name"] for e in load(path)]


def prefixes(path=PATH) -> list[str]:
    return [e["prefix"] for e in load(path)]
