"""Compatibility shim for bench/network_vs_node_exporter.py, which still imports odintest:
the helpers now live in the odin package beside this file (tests/odin/). New code imports
odin directly; remove this file once bench/ does."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from odin import REPO, shared_dir, target_dir  # noqa: E402,F401
from odin.exporters import Proc, binary, free_port, gunzip, http_get, wait_http  # noqa: E402,F401
from odin.exposition import family_of  # noqa: E402,F401
from odin.exposition import parse as parse_exposition  # noqa: E402,F401
