"""A dnsmasq on loopback for network-exporter's DNS prober (tests/test_e2e_network.py,
tests/test_alerting.py).

    Dnsmasq(work, {"ok.odin.test": "127.0.0.9"})   started on a free port, answers those names
    .server                                        "127.0.0.1:PORT", for --dns.server
    .answer(names)                                 the names it answers from now on (SIGHUP)
    .stop()

It reads no /etc/resolv.conf and no /etc/hosts and forwards nothing: it is authoritative for
`domain` (odin.test) alone, answering the names of its own hosts file and NXDOMAIN for every
other name of the domain. The system's resolver is left untouched. Debian: dnsmasq-base.

Standard library only.
"""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from .exporters import Proc, free_port

DOMAIN = "odin.test"


def dnsmasq_binary() -> str:
    for cand in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("dnsmasq not installed (Debian: dnsmasq-base; scripts/setup.sh)")


class Dnsmasq:
    """dnsmasq on 127.0.0.1 and a free port, answering `names` (name -> IPv4 address) of
    `domain` from a hosts file under `work`, NXDOMAIN for the domain's other names."""

    def __init__(self, work: Path, names: dict[str, str], domain: str = DOMAIN, timeout: float = 10):
        work.mkdir(parents=True, exist_ok=True)
        self.hosts = work / "dnsmasq.hosts"
        self._write(names)
        last = ""
        for _ in range(3):  # the free port may be taken between free_port() and dnsmasq's bind
            self.port = free_port()
            self.proc = Proc([dnsmasq_binary(), "--no-daemon", "--no-resolv", "--no-hosts",
                              f"--addn-hosts={self.hosts}", "--bind-interfaces",
                              "--listen-address=127.0.0.1", f"--port={self.port}",
                              f"--local=/{domain}/", "--user=root", "--pid-file=", "--log-facility=-"],
                             work / "dnsmasq.log")
            if self._wait(lambda out: "started" in out and self._reads(out) >= 1, timeout):
                return
            last = self.proc.tail()
            self.proc.stop()
        raise RuntimeError(f"dnsmasq did not start:\n{last}")

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self, names: dict[str, str]) -> None:
        tmp = self.hosts.with_name(self.hosts.name + ".tmp")
        tmp.write_text("".join(f"{addr} {name}\n" for name, addr in names.items()))
        tmp.replace(self.hosts)

    def _reads(self, out: str) -> int:
        """How many times dnsmasq has logged reading the hosts file."""
        return out.count(f"read {self.hosts} ")

    def _wait(self, done, timeout: float) -> bool:
        deadline = time.time() + timeout
        while True:
            out = self.proc.output()
            if done(out):
                return True
            if self.proc.p.poll() is not None or time.time() >= deadline:
                return False
            time.sleep(0.05)

    def answer(self, names: dict[str, str], timeout: float = 10) -> None:
        """Answers `names` from now on, and NXDOMAIN for the names it answered before and no
        longer has: the hosts file rewritten, then SIGHUP (dnsmasq clears its cache and reads
        the file again); returns once it has logged the new read."""
        before = self._reads(self.proc.output())
        self._write(names)
        self.proc.p.send_signal(signal.SIGHUP)
        if not self._wait(lambda out: self._reads(out) > before, timeout):
            raise RuntimeError(f"dnsmasq did not read {self.hosts} again:\n{self.proc.tail()}")

    def stop(self) -> int:
        return self.proc.stop()

    def tail(self) -> str:
        return self.proc.tail()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
