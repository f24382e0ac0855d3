"""Servers from the OS packages that a distributed deployment needs: Redis and PostgreSQL.

Redis is the Celery broker; PostgreSQL the metadata DB (Airflow hands triggers out to triggerers
with ``SELECT ... FOR UPDATE SKIP LOCKED``, row locks that SQLite lacks). Each runs as a child of
the test, on a port the OS hands out, with its files in a temp dir and nothing kept. ``make test``
installs ``redis-server`` and ``postgresql`` with apt-get when it runs as root; where one is
missing, :func:`missing` says so and the cell is skipped with that reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """``redis-server`` on a free loopback port, without persistence; yields its URL.

    :param directory: its working directory (its log goes there).
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory)]
    args += ["--logfile", str(directory / "redis.log")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for(answers, 30, f"redis-server on port {port}", every=0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster of its own on a free loopback port, trusting local connections;
    yields its SQLAlchemy URL (psycopg 3).

    Its data directory is a fresh temp dir (removed on exit); durability is off (``fsync``),
    as nothing outlives the test. As root, the server runs as :data:`POSTGRES_USER`.
    """
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="celery-postgres-"))
    data = str(directory / "data")
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(POSTGRES_USER)
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", POSTGRES_USER, "--"]

    def run(name: str, *args: str) -> None:
        command = [*as_user, str(_find(name)), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    try:
        run("initdb", "-D", data, "-U", "airflow", "-A", "trust", "--no-sync")
        run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            str(directory / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        try:
            yield f"postgresql+psycopg://airflow@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
