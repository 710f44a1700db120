"""Every exporter of exporters.toml started alike, for the tests that hold all of them to one
rule (tests/test_secrets.py, tests/test_shutdown.py).

    iso = Isolated(root)          HOME, XDG directories and every exporter's state under root
    iso.argv(name, port, extra)   the exporter's argv: binary, loopback address, state flags
    iso.env(extra)                a minimal environment: nothing of the caller's leaks in
                                  (no environment twin, no key), HOME and XDG under root

Nothing an exporter writes lands outside root: token-collector, which keeps a database and a
spool (running as root its default is /var/lib/token-collector), is given both under root.
An exporter added to exporters.toml runs with its defaults; give it flags here only if it
writes files of its own.
"""
from __future__ import annotations

from pathlib import Path

from . import manifest
from .exporters import binary


def names() -> list[str]:
    return manifest.names()


class Isolated:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.home = self.root / "home"
        self.state = self.root / "state"
        self.home.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)

    def state_args(self, name: str) -> list[str]:
        """The flags that put `name`'s files under root (none for exporters that write none)."""
        if name == "token-collector":
            db = self.state / "token-collector" / "state.db"
            return [f"--storage.path={db}", f"--spool.dir={db.parent / 'spool'}"]
        return []

    def spool(self) -> Path:
        return self.state / "token-collector" / "spool"

    def argv(self, name: str, port: int | None, extra=()) -> list[str]:
        listen = [f"--web.listen-address=127.0.0.1:{port}"] if port is not None else []
        return [str(binary(name)), *listen, *self.state_args(name), *map(str, extra)]

    def env(self, extra: dict | None = None) -> dict:
        e = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_STATE_HOME": str(self.home / ".local/state"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local/share"),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
        }
        e.update(extra or {})
        return e
