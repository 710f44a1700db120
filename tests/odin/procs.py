"""A process's relatives and facts from /proc, for the tests that start process trees.

    children(pid)   the pids whose parent is pid (now)
    tree(pid)       pid and every descendant, parents before children
    comm(pid)       /proc/<pid>/comm, "?" once the process is gone
    started(pid)    its start time in clock ticks (field 22 of stat), None once it is gone:
                    with the pid, tells a process from a later one that reuses the number
"""
from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = _stat_fields(d.name)
            if fields is not None and int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children(p)
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def started(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])
