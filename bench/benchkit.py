"""What the scripts of bench/ share beyond tests/odin/measure.py: building the release binaries,
waiting for the exporters of a head-to-head to serve, stopping them.

    build(*crates)          `cargo build --release --locked -p ...`: {crate: its binary}
    serving(targets)        waits until every {name: (Proc, port)} serves /metrics; if one does
                            not, stops them all and raises
    stop(targets)           stops every Proc of `targets`
    start_pair(...)         one of ours and one other exporter started and serving

Each benchmark's own setup (which flags, which fixture tree) lives in its script as a `start*`
function, so that bench/all.py measures the same setups as the scripts it stands for.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, target_dir  # noqa: E402
from odin.exporters import Proc, free_port, wait_http  # noqa: E402


def build(*crates: str) -> dict[str, Path]:
    """The release binaries of `crates`, built (or found up to date) by one cargo command."""
    argv = ["cargo", "build", "--release", "--locked", "-q"]
    for c in crates:
        argv += ["-p", c]
    subprocess.run(argv, cwd=REPO, check=True)
    return {c: target_dir() / "release" / c for c in crates}


def stop(targets: dict) -> None:
    for proc, _ in targets.values():
        proc.stop()


def serving(targets: dict, timeout: float = 30) -> dict:
    """`targets` once each of them answers /metrics; on a failure every one is stopped and the
    error raised with the log of the one that failed."""
    for name, (proc, port) in targets.items():
        try:
            wait_http(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        except BaseException:
            stop(targets)
            print(f"{name} did not serve:\n{proc.tail()}", file=sys.stderr)
            raise
    return targets


def start_pair(work: Path, ours: tuple[str, list], other: tuple[str, list], env: dict | None = None) -> dict:
    """{name: (Proc, port)} of two exporters, serving. `ours` and `other` are (name, argv
    without --web.listen-address); the flag (which node_exporter spells the same) is added with
    a free loopback port. `env` is given to ours only."""
    targets = {}
    try:
        for (name, argv), extra_env, log in ((ours, env, "ours.log"), (other, None, "peer.log")):
            port = free_port()
            targets[name] = (Proc([*argv, f"--web.listen-address=127.0.0.1:{port}"], work / log,
                                  env=extra_env), port)
    except BaseException:
        stop(targets)
        raise
    return serving(targets)
