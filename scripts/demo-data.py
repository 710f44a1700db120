#!/usr/bin/env python3
"""Demo data for scripts/run-stack.sh on a machine without the hardware (or the Claude Code
history) an exporter reads. Everything comes from the repository; nothing is downloaded.

  demo-data.py power DIR    a laptop's /sys under DIR/sys: RAPL with a psys domain, a charging
                            battery with AC, a discharging fuel-gauge battery (time to empty,
                            temperature) and a peripheral battery, thermal zones with trip
                            points, hwmon chips with a discrete GPU's (power, fan with a
                            minimum): power-exporter's own fixture trees, merged
  demo-data.py token DIR    a Claude Code history under DIR/projects: six days of sessions
                            ending with one a few minutes before now, so that a 5-hour block
                            is active when the demo starts, several models and projects (the
                            transcript generator the token-collector tests use)

Each command prints the directory to point the exporter at. razer-exporter's demo needs no
generation: its fixture desk tree and demo/blade-15.toml are used as they are.
"""
from __future__ import annotations

import os
import shutil
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "exporters/power-exporter/tests/fixtures"
# Whole fixture trees, merged (none of their files may collide).
POWER_TREES = ["rapl-psys", "battery-laptop", "host-laptop"]
# Single devices of other fixture trees: (tree, class, name). A power_supply by its directory
# name; an hwmon chip by its `name` file, with its device directory, renumbered to the first
# free hwmonN of the merged tree (two trees both have an hwmon1, say).
POWER_PICKS = [
    ("host-desktop", "hwmon", "amdgpu"),  # power1_average, fan1_min: a discrete GPU's chip
    ("battery-charge", "power_supply", "bq27500-0"),  # discharging: time_to_empty_now, temp
]


def _files(root: Path) -> list[Path]:
    """Every file and symbolic link under root, relative to it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        out += [(here / n).relative_to(root) for n in filenames]
        out += [(here / n).relative_to(root) for n in dirnames if (here / n).is_symlink()]
    return out


def _merge(src: Path, dest: Path) -> None:
    """Copies the tree src into dest; a file or link that dest has already is an error (the
    demo would silently show one fixture's value instead of the other's)."""
    clash = [str(f) for f in _files(src) if os.path.lexists(dest / f)]
    if clash:
        raise SystemExit(f"demo-data: {src} collides with the merged tree: {', '.join(clash[:5])}")
    shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)


def _pick(sys_dir: Path, tree: str, cls: str, name: str) -> None:
    src = FIXTURES / tree / "sys"
    if cls == "power_supply":
        _merge(src / "class/power_supply" / name, sys_dir / "class/power_supply" / name)
        return
    chips = [c for c in (src / "class/hwmon").iterdir()
             if (c / "name").is_file() and (c / "name").read_text().strip() == name]
    if len(chips) != 1:
        raise SystemExit(f"demo-data: {len(chips)} hwmon chips named {name} in {tree}")
    link = chips[0]
    real = Path(os.path.normpath(link.parent / os.readlink(link)))  # devices/.../hwmon/hwmonN
    device = real.parent.parent
    taken = {p.name for p in (sys_dir / "class/hwmon").iterdir()}
    number = next(n for n in range(1000) if f"hwmon{n}" not in taken)
    dest_device = sys_dir / device.relative_to(src)
    _merge(device, dest_device)
    new = f"hwmon{number}"
    moved = dest_device / "hwmon" / new
    if real.name != new:
        (dest_device / "hwmon" / real.name).rename(moved)
    os.symlink(os.path.relpath(moved, sys_dir / "class/hwmon"), sys_dir / "class/hwmon" / new)


def power(dest: Path) -> Path:
    sys_dir = dest / "sys"
    if sys_dir.exists():
        shutil.rmtree(sys_dir)
    sys_dir.mkdir(parents=True)
    for name in POWER_TREES:
        _merge(FIXTURES / name / "sys", sys_dir)
    for tree, cls, name in POWER_PICKS:
        _pick(sys_dir, tree, cls, name)
    return sys_dir


def token(dest: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from odin.transcripts import generate  # noqa: E402

    if (dest / "projects").exists():
        shutil.rmtree(dest / "projects")
    days = 6
    now = datetime.now(timezone.utc)
    generate(dest, seed=11, start=date.today() - timedelta(days=days - 1), days=days, now=now)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("power", "token"):
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    print({"power": power, "token": token}[argv[1]](dest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
