"""Servers from the OS packages that a distributed deployment needs: Redis and PostgreSQL.

Redis is the Celery broker; PostgreSQL the metadata DB (two triggerers on SQLite both take the
same trigger: see ``test_celery.py``). Each runs as a child of the test, on a port the OS hands
out, with its files in a temp dir and nothing kept. ``make test`` installs ``redis-server`` and
``postgresql`` with apt-get when it runs as root; where one is missing, :func:`missing` says so
and the cell is skipped with that reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.deployment.deployment import free_port, wait_for

REDIS_SERVER = "redis-server"
# Debian keeps PostgreSQL's server commands out of PATH, one directory per major version.
POSTGRES_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
# PostgreSQL refuses to run as root: as root, the server runs as this user.
POSTGRES_USER = "postgres"
POSTGRES_COMMANDS = ("initdb", "pg_ctl")


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and POSTGRES_BINS and (POSTGRES_BINS[-1] / name).exists():
        found = str(POSTGRES_BINS[-1] / name)
    return found


def missing(*commands: str) -> str | None:
    """Why a cell cannot run here (the OS commands it needs that are not found), or None.

    :param commands: e.g. ``redis-server``, ``initdb``.
    """
    absent = [command for command in commands if _find(command) is None]
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


class PostgresServer:
    """A PostgreSQL cluster of its own on a free loopback port, trusting local connections.

    Its data directory is a fresh temp dir (removed on exit); durability is off (``fsync``),
    as nothing outlives the test. As root, the server runs as :data:`POSTGRES_USER`.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgresql+psycopg://airflow@127.0.0.1:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="celery-postgres-"))
        self.data = self.directory / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", POSTGRES_USER, "--"]

    def _run(self, name: str, *args: str) -> None:
        command = [*self._as, str(_find(name)), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def __enter__(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "airflow", "-A", "trust", "--no-sync")
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
