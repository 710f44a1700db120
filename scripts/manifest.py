#!/usr/bin/env python3
"""ODIN's exporter manifest (exporters.toml at the repository root), for scripts and tests.

As a library: ``load()`` returns the list of exporter dicts, ``get(name)`` one of them.
From a shell:
    scripts/manifest.py names                 one exporter name per line
    scripts/manifest.py field NAME KEY        one value (lists: one item per line;
                                              nested keys with dots: host.pid)
"""
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = ROOT / "exporters.toml"

REQUIRED = {"name": str, "port": int, "prefix": str, "short": str, "run_args": list, "host": dict}
HOST_KEYS = {"network": bool, "pid": bool, "procfs": bool, "sysfs": bool, "devices": list,
             "gpu_runtime": bool}
# Host keys that may be left out; absent means false (no exporter before token-collector
# needed them).
OPTIONAL_HOST_KEYS = {"home": bool, "state": bool}


def load(path=PATH):
    """Every exporter of the manifest, checked for the keys and types the tools rely on."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    exporters = data.get("exporter", [])
    seen = {}
    for e in exporters:
        for key, kind in REQUIRED.items():
            if not isinstance(e.get(key), kind):
                raise ValueError(f"{path}: exporter {e.get('name')!r}: {key} must be a {kind.__name__}")
        for key, kind in HOST_KEYS.items():
            if not isinstance(e["host"].get(key), kind):
                raise ValueError(f"{path}: exporter {e['name']}: host.{key} must be a {kind.__name__}")
        for key, kind in OPTIONAL_HOST_KEYS.items():
            e["host"].setdefault(key, kind())
            if not isinstance(e["host"][key], kind):
                raise ValueError(f"{path}: exporter {e['name']}: host.{key} must be a {kind.__name__}")
        e.setdefault("dashboard", e["short"])
        if not isinstance(e["dashboard"], str):
            raise ValueError(f"{path}: exporter {e['name']}: dashboard must be a str")
        unknown = set(e["host"]) - set(HOST_KEYS) - set(OPTIONAL_HOST_KEYS)
        if unknown:
            raise ValueError(f"{path}: exporter {e['name']}: unknown host keys {sorted(unknown)}")
        for key in ("name", "port", "prefix", "short"):
            if (key, e[key]) in seen:
                raise ValueError(f"{path}: {key} {e[key]!r} used by {seen[(key, e[key])]} and {e['name']}")
            seen[(key, e[key])] = e["name"]
    return exporters


def get(name, path=PATH):
    for e in load(path):
        if e["name"] == name:
            return e
    raise KeyError(f"{name}: not in {path}")


def _main(argv):
    if argv[:1] == ["names"] and len(argv) == 1:
        for e in load():
            print(e["name"])
        return 0
    if argv[:1] == ["field"] and len(argv) == 3:
        value = get(argv[1])
        for part in argv[2].split("."):
            value = value[part]
        for item in value if isinstance(value, list) else [value]:
            print(str(item).lower() if isinstance(item, bool) else item)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
