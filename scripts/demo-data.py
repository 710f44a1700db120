#!/usr/bin/env python3
"""Demo data for scripts/run-stack.sh on a machine without the hardware (or the Claude Code
history) an exporter reads. Everything comes from the repository; nothing is downloaded.

  demo-data.py power DIR    a laptop's /sys under DIR/sys: RAPL with a psys domain, a battery
                            with AC and a peripheral battery, thermal zones with trip points,
                            hwmon chips (power-exporter's own fixture trees, merged)
  demo-data.py token DIR    a Claude Code history under DIR/projects: six days of sessions
                            ending today, several models and projects (the transcript
                            generator the token-collector tests use)

Each command prints the directory to point the exporter at. razer-exporter's demo needs no
generation: its fixture desk tree and demo/blade-15.toml are used as they are.
"""
from __future__ import annotations

import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POWER_TREES = ["rapl-psys", "battery-laptop", "host-laptop"]


def power(dest: Path) -> Path:
    fixtures = REPO / "exporters/power-exporter/tests/fixtures"
    if (dest / "sys").exists():
        shutil.rmtree(dest / "sys")
    for name in POWER_TREES:
        shutil.copytree(fixtures / name / "sys", dest / "sys", dirs_exist_ok=True, symlinks=True)
    return dest / "sys"


def token(dest: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from odin.transcripts import generate  # noqa: E402

    if (dest / "projects").exists():
        shutil.rmtree(dest / "projects")
    days = 6
    generate(dest, seed=11, start=date.today() - timedelta(days=days - 1), days=days)
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
