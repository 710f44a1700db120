"""Fixtures of ODIN's Python tests (helpers: the odin package beside this file).

Nothing here is autouse and nothing starts a process unless a test asks for it: the
end-to-end modules ask for `stack`, after defining a module-scoped `scenario` fixture that
returns an odin.prometheus.Stack (not started). Other suites (tests/test_images.py) share
this directory and run on their own.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def stack(request, scenario):
    """The module's scenario started: its exporters and a real Prometheus scraping them.
    Stopped after the module's last test; the processes' log tails are printed when a test
    of the module failed."""
    failed_before = request.session.testsfailed
    try:
        scenario.start()
    except BaseException:
        scenario.stop()
        _print(request, "stack did not start\n" + scenario.tails())
        raise
    yield scenario
    scenario.stop()
    if request.session.testsfailed > failed_before:
        _print(request, scenario.tails())


def _print(request, text: str) -> None:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + text, file=sys.stderr)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("odin")

