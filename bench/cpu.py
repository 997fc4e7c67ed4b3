"""CPU seconds of the processes in a benchmark, read from /proc (Linux only).

A sync's rate on this 2-core machine is bounded by the CPU that every
process in it spends per user: the gateway, PostgreSQL, the side-effect
processes and the load generator itself. Measuring each one over the sync
alone (not the paged read after it) tells where a faster sync would have to
come from, for us and for the peer alike.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) is in parentheses and may hold spaces.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, stat fields) of every process, read once."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat_fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited between the listing and the read
            table[int(entry.name)] = (int(fields[1]), fields)
    return table


def _tree_seconds(table: dict[int, tuple[int, list[str]]], root: int) -> float:
    """User + system CPU of ``root`` and its live descendants, and of the
    children they have reaped (uvicorn's or celery's worker processes, exited
    PostgreSQL backends)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    ticks, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        if pid in table:
            # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 here.
            ticks += sum(int(table[pid][1][i]) for i in range(11, 15))
    return ticks / _TICKS


def postmaster_pid(table: dict[int, tuple[int, list[str]]] | None = None) -> int:
    """The ``postgres`` process whose parent is not one: the postmaster, root
    of every backend."""
    table = table if table is not None else _processes()
    postgres = {pid for pid in table if _command(pid) == "postgres"}
    return min(pid for pid in postgres if table[pid][0] not in postgres)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


class Meter:
    """CPU seconds of named process trees between ``start()`` and ``stop()``.

    ``watched`` maps a name to the pid at the root of a process tree (for
    PostgreSQL, ``postmaster_pid()``: the benchmark's database is the only busy
    one). The load generator's own process is always measured, as ``load``.
    """

    def __init__(self, watched: dict[str, int]) -> None:
        self.watched = watched
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        table = _processes()
        watched = {"load": os.getpid(), **self.watched}
        return {name: _tree_seconds(table, pid) for name, pid in watched.items()}

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> dict[str, float]:
        after = self._now()
        return {name: after[name] - self._before[name] for name in after}


def per_user_line(used: dict[str, float], users: int, cores: int) -> str:
    """CPU milliseconds per user for each process, their sum, and the rate that
    sum allows on ``cores`` cores if nothing else ran."""
    per_user = {name: seconds * 1000 / users for name, seconds in used.items()}
    total = sum(per_user.values())
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in per_user.items())
    bound = cores * 1000 / total if total else float("inf")
    return (
        f"  CPU ms per user during the sync: {parts}; total {total:.2f} "
        f"(at most {bound:.0f} users/s on {cores} cores)"
    )


def main(arguments: list[str]) -> None:
    """``python -m bench.cpu PID|postgres ...``: each tree's CPU seconds so far,
    one per line (bench/run_initial_sync.sh's whole-run figures)."""
    table = _processes()
    for argument in arguments:
        root = postmaster_pid(table) if argument == "postgres" else int(argument)
        print(f"{_tree_seconds(table, root):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
