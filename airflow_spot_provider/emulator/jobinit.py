"""The first process of a training job's container: builds its file view, runs the entry point.

Started by :mod:`.container` as ``python -I -S jobinit.py SPEC`` (standard library only, so that
it starts in milliseconds and imports nothing of the backend), either inside a fresh user + mount
+ PID (+ UTS) namespace made by ``unshare(1)``, or, where namespaces are not available, as a plain
child of the backend. ``SPEC`` is a JSON object:

- ``binds``: ``[[host_dir, container_dir], ...]``, parents first. With binds, the process builds
  a new root on a private tmpfs (``stage``): every entry of the host's ``/`` is bind-mounted into
  it, except along the container dirs, which are made as plain directories and bound to the
  sandbox (``/opt/ml`` -> the job's sandbox). Then it ``chroot``\\s there: the host's own
  ``/opt/ml`` is never written, nor even looked at.
- ``stage``: an empty directory of the backend's data dir that the tmpfs is mounted on.
- ``hostname``: the container's host name (``algo-1``...), set when the UTS namespace is new.
- ``cwd``, ``argv``: where and what to run (``execvp``, never a shell).
- ``lifeline``: a file descriptor whose other end only the backend holds: when it reads EOF, the
  backend is gone, and the job goes too.
- ``namespaced``: whether this process is PID 1 of its own PID namespace.

As PID 1 of the job's PID namespace it stays the main process's parent and exits with its exit
status (128+N after signal N, as a container runtime reports); the kernel then kills every other
process of the namespace, ``setsid()`` or not. Without namespaces it makes itself a child
subreaper, so that orphans of the job become its children, and kills them all before it exits.
It ignores SIGTERM itself: the backend signals the job's process group, which holds the main
process.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import select
import signal
import sys
from typing import Any

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_CHILD_SUBREAPER = 36
EXIT_CANNOT_RUN = 127  # what a shell reports for a command it cannot run
EXIT_SETUP_FAILED = 125  # the container could not be set up (as ``docker run`` reports)
_KILL_ROUNDS = 100  # bound on kill-and-reap rounds of descendants (each round empties a level)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return libc


def _sethostname(name: str) -> None:
    # libc rather than the socket module: importing it costs more than the whole setup.
    raw = name.encode()
    if _libc().sethostname(raw, len(raw)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"sethostname {name}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2), raising OSError with the paths in the message."""
    result = _libc().mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _is_ancestor(path: str, targets: list[str]) -> bool:
    return any(t.startswith(path.rstrip("/") + "/") for t in targets)


def _replicate(host: str, new: str) -> None:
    """Make ``new`` show the host's ``host`` (a symlink copied, anything else bind-mounted)."""
    if os.path.islink(host):
        os.symlink(os.readlink(host), new)
        return
    if os.path.isdir(host):
        os.mkdir(new)
    else:
        os.close(os.open(new, os.O_CREAT | os.O_WRONLY, 0o644))
    try:
        _mount(host, new, None, _MS_BIND | _MS_REC)
    except OSError:  # not bindable (a socket of another user...): the job does without it
        (os.rmdir if os.path.isdir(new) else os.unlink)(new)


def _populate(host_dir: str, new_dir: str, targets: list[str]) -> None:
    """Fill ``new_dir`` (on the tmpfs) with ``host_dir``'s entries; descend along the targets."""
    for name in sorted(os.listdir(host_dir)):
        host = os.path.join(host_dir, name)
        new = os.path.join(new_dir, name)
        if host in targets:
            continue  # bound to the sandbox afterwards; the host's own stays unseen
        if _is_ancestor(host, targets) and os.path.isdir(host):
            os.mkdir(new)
            _populate(host, new, targets)
        else:
            _replicate(host, new)


def build_root(stage: str, binds: list[list[str]]) -> None:
    """Make the job's file view and ``chroot`` into it (inside a new mount namespace only).

    :param stage: an empty directory for the tmpfs holding the new root.
    :param binds: ``[host_dir, container_dir]`` pairs, parents first.
    """
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates back to the host
    _mount("tmpfs", stage, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    root = os.path.join(stage, "root")
    os.mkdir(root)
    _populate("/", root, [dst for _src, dst in binds])
    for src, dst in binds:
        target = root + dst
        os.makedirs(target, exist_ok=True)
        _mount(src, target, None, _MS_BIND | _MS_REC)
    os.chroot(root)
    os.chdir("/")


def _exec_main(spec: dict[str, Any], keep_closed: list[int]) -> None:
    """In the forked child: restore signals, close the init's fds, exec the entry point."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for fd in keep_closed:
            os.close(fd)
        os.chdir(spec["cwd"])
        argv = [str(a) for a in spec["argv"]]
        os.execvpe(argv[0], argv, os.environ)
    except OSError as err:
        os.write(2, f"cannot run {spec['argv'][0]!r}: {err.strerror or err}\n".encode())
    os._exit(EXIT_CANNOT_RUN)


def _children() -> list[int]:
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                pids += [int(p) for p in handle.read().split()]
        except OSError:
            continue
    return pids


def kill_descendants() -> None:
    """Kill every descendant (as a subreaper, orphans became children) and reap them."""
    for _round in range(_KILL_ROUNDS):
        pids = _children()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        for _pid in pids:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break


def _reap(main_pid: int) -> int | None:
    """Reap every ended child; the main process's exit code if it ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return EXIT_CANNOT_RUN  # no child at all: the main process was reaped before
        if pid == 0:
            return None
        if pid == main_pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def supervise(main_pid: int, lifeline: int | None, wakeup: int) -> int:
    """Wait for the main process (reaping the others) or for the backend's end.

    :param main_pid: the entry point's process.
    :param lifeline: read end of the backend's pipe (EOF: the backend is gone), or None.
    :param wakeup: read end of the SIGCHLD wake-up pipe.
    :returns: the exit code of the container.
    """
    watched = [wakeup] + ([lifeline] if lifeline is not None else [])
    while True:
        code = _reap(main_pid)
        if code is not None:
            return code
        ready, _w, _x = select.select(watched, [], [])
        if lifeline in ready and not os.read(lifeline, 1):
            return 128 + signal.SIGKILL  # the backend died: so does its job
        if wakeup in ready:
            os.read(wakeup, 512)


def main(argv: list[str]) -> int:
    """Set up, run and supervise the job's entry point; the container's exit code.

    :param argv: ``[program, SPEC]``.
    """
    spec: dict[str, Any] = json.loads(argv[1])
    lifeline = spec.get("lifeline")
    try:
        if spec.get("hostname"):
            _sethostname(spec["hostname"])
        if spec.get("binds"):
            build_root(spec["stage"], spec["binds"])
        if not spec.get("namespaced"):
            _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except OSError as err:
        print(f"cannot set up the job's container: {err}", file=sys.stderr, flush=True)
        return EXIT_SETUP_FAILED
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
    pid = os.fork()
    if pid == 0:
        _exec_main(spec, [fd for fd in (lifeline, wake_r, wake_w) if fd is not None])
    code = supervise(pid, lifeline, wake_r)
    if not spec.get("namespaced"):
        kill_descendants()
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv))
