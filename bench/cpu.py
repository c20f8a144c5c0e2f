"""CPU time of processes (and their descendants) from /proc/PID/stat."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every thread's children list."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a proxy started with --workers forks)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of these processes and their descendants, in seconds."""
    user = system = 0
    for root in pids:
        for pid in tree(root):
            fields = _stat_fields(pid)
            if fields is not None:
                user += int(fields[11])  # utime: field 14 of /proc/PID/stat
                system += int(fields[12])  # stime: field 15
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their descendants, in seconds."""
    return sum(cpu_times(pids))
