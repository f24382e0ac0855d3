"""Processes a crashed backend leaves behind, found and killed by the next start.

The backend writes its own pid and start time to ``backend.pid`` and the pids of the jobs'
training processes to ``processes.json`` in the data dir. A start that finds a live backend on
the same data dir refuses to run (two backends would write the same sandboxes and store); one
that finds training processes of a backend that is gone kills them (their process groups, and
any process whose environment points into this data dir's sandboxes, which catches a child that
left its group with ``setsid()``) before any job restarts, so that nothing of the previous life
writes into the new sandboxes. A pid is trusted only with the start time it was recorded with:
a recycled pid is never signalled.

Linux only (``/proc``); elsewhere the records are kept and nothing is scanned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

_PROC = Path("/proc")


class DataDirInUseError(RuntimeError):
    """Another live backend serves the same data dir."""


def start_time(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), or None when it is gone.

    :param pid: the process id.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (IndexError, ValueError):
        return None


def _alive(record: object) -> int | None:
    """The pid of a ``[pid, start_time]`` record whose process still runs, else None."""
    if not isinstance(record, list) or len(record) != 2:
        return None
    pid, started = record
    if not isinstance(pid, int) or pid <= 1:
        return None
    return pid if start_time(pid) == started else None


def _write_json(path: Path, value: object) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value), encoding="utf-8")
    temporary.replace(path)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def claim(pid_path: Path) -> None:
    """Record this process as the data dir's backend.

    :param pid_path: the pid file.
    :raises DataDirInUseError: a live backend in another process holds the data dir.
    """
    holder = _alive(_read_json(pid_path))
    if holder is not None and holder != os.getpid():
        raise DataDirInUseError(
            f"{pid_path.parent} is in use by the spot emulator of pid {holder}; stop it first "
            f"or give another --data-dir"
        )
    _write_json(pid_path, [os.getpid(), start_time(os.getpid())])


def release(pid_path: Path) -> None:
    """Forget this process as the data dir's backend (on a clean stop).

    :param pid_path: the pid file.
    """
    if _alive(_read_json(pid_path)) == os.getpid():
        pid_path.unlink(missing_ok=True)


class ProcessRecord:
    """``processes.json``: rewritten whenever the set of training processes changes.

    :param path: the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: dict[str, int] = {}

    def update(self, pids: Mapping[str, int]) -> None:
        """Record the training processes now running (cheap when nothing changed).

        :param pids: job name to the pid of its training process (group leader).
        """
        if pids == self._written:
            return
        records = {name: [pid, start_time(pid)] for name, pid in pids.items()}
        _write_json(self.path, records)
        self._written = dict(pids)


def _sandbox_processes(jobs_dir: Path) -> Iterator[int]:
    """Pids of processes (of this user) whose environment points into ``jobs_dir``."""
    marker = ("=" + str(jobs_dir) + os.sep).encode()
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # another user's, or gone
            continue
        if marker in environ:
            yield int(entry.name)


def kill_leftovers(processes_path: Path, jobs_dir: Path) -> int:
    """Kill the training processes a previous backend left running; how many were found.

    :param processes_path: ``processes.json``.
    :param jobs_dir: the data dir's ``jobs`` dir (the sandboxes).
    """
    records = _read_json(processes_path)
    found = 0
    for name, record in records.items() if isinstance(records, dict) else ():
        pid = _alive(record)
        if pid is None:
            continue
        found += 1
        log.warning("killing process %d of job %s, left by a previous emulator", pid, name)
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)
    for pid in _sandbox_processes(jobs_dir.resolve()):
        found += 1
        log.warning("killing process %d, running in a sandbox of a previous emulator", pid)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    processes_path.unlink(missing_ok=True)
    return found
