"""Servers from the OS packages that a distributed deployment needs: Redis (the Celery broker).

Each runs as a child of the test, on a port the OS hands out, with its files in a temp dir and
nothing persisted. ``make test`` installs ``redis-server`` with apt-get when it runs as root;
where it is missing, :func:`missing` says so and the cell is skipped with that reason.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from tests.deployment.deployment import free_port, wait_for

REDIS_SERVER = "redis-server"


def missing(*commands: str) -> str | None:
    """Why a cell cannot run here (the OS commands it needs that are not on PATH), or None.

    :param commands: e.g. ``redis-server``.
    """
    absent = [command for command in commands if shutil.which(command) is None]
    if not absent:
        return None
    return (
        f"{', '.join(absent)} not found: `make test` installs the Debian package(s) with apt-get "
        "when it runs as root"
    )


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence, for as long as the block.

    :param directory: its working directory (its log goes there).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        args += ["--logfile", str(self.directory / "redis.log")]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._answers, 30, f"redis-server on port {self.port}", every=0.1)
        return self

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self._process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
