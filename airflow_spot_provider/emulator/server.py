"""``SpotEmulator``: the embedded SageMaker training backend, in-process.

One background thread runs one asyncio loop: the aiohttp server and the job clock share it.
S3 (:mod:`.s3`) runs its own loop in its own thread.

    with SpotEmulator(data_dir="/tmp/spot") as emulator:
        sagemaker = emulator.boto3_client("sagemaker")
        ...
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from aiohttp import web

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.backend import Backend
from airflow_spot_provider.emulator.config import EmulatorConfig
from airflow_spot_provider.emulator.http import build_app
from airflow_spot_provider.emulator.jobs import wall_clock
from airflow_spot_provider.emulator.leftovers import claim, kill_leftovers, release
from airflow_spot_provider.emulator.s3 import DUMMY_CREDENTIALS, S3Server
from airflow_spot_provider.emulator.scenario import load_file

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 120.0


class SpotEmulator:
    """The spot emulator as a context manager (``start()`` on enter, ``stop()`` on exit).

    :param data_dir: where jobs, logs, sandboxes and the S3 snapshot live; a temporary dir
        (removed on stop) when None.
    :param host: address to bind (default ``127.0.0.1``).
    :param port: port to bind (default 0: any free port).
    :param seed: seed of the random market model (default 0).
    :param scenario: scenario events (dict or list) or a JSON/YAML file, loaded on start.
    :param config: a full configuration; the arguments above, when given, override it.
    """

    def __init__(
        self,
        *,
        data_dir: Path | str | None = None,
        host: str | None = None,
        port: int | None = None,
        seed: int | None = None,
        scenario: Any = None,
        config: EmulatorConfig | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None and config is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spot-emulator-")
            data_dir = self._tmp.name
        overrides = {
            k: v
            for k, v in {"data_dir": data_dir, "host": host, "port": port, "seed": seed}.items()
            if v is not None
        }
        if config is None:
            self.config = EmulatorConfig(**overrides)  # type: ignore[arg-type]
        else:
            self.config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
        self._scenario = scenario
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._clock: asyncio.Task[None] | None = None
        self._s3: S3Server | None = None
        self.backend: Backend | None = None
        self.endpoint_url = ""
        self.s3_endpoint_url = ""
        self.admin_token = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SpotEmulator:
        """Start S3, the loop thread, the HTTP server and the job clock; print the connection."""
        if self._loop is not None:
            raise RuntimeError("the emulator is already started")
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        claim(config.pid_path)
        # Before any job restarts: nothing of a crashed backend may write into the sandboxes.
        kill_leftovers(config.processes_path, config.data_dir / "jobs")
        self.admin_token = config.admin_token or secrets.token_urlsafe(24)
        _write_private(config.token_path, self.admin_token)
        self._s3 = S3Server(
            config.s3_dir, config.host, config.s3_bind_port, config.region, config.allowed_hosts
        )
        try:
            self.s3_endpoint_url = self._s3.start(config.legacy_s3_snapshot_dir)
        except BaseException:
            self.stop()
            raise
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="spot-emulator", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(_START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        print(self.announcement(), flush=True)
        return self

    async def _astart(self) -> None:
        assert self._s3 is not None
        backend = self.backend = Backend(self.config, self._s3.client(), self.s3_endpoint_url)
        backend.machine.restore(wall_clock())
        if self._scenario is not None:
            spec = self._scenario
            backend.load_scenario(load_file(spec) if isinstance(spec, str | Path) else spec)
        self._runner = web.AppRunner(
            build_app(backend, self.admin_token),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.endpoint_url = f"http://{shown}:{port}"
        self._clock = asyncio.ensure_future(backend.machine.run())

    def stop(self) -> None:
        """Stop serving, stop the jobs' processes (state kept), stop S3 (on disk already)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._astop(), loop).result(_STOP_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread is not None:
                    self._thread.join(_STOP_TIMEOUT)
                loop.close()
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None
            self.config.token_path.unlink(missing_ok=True)
            release(self.config.pid_path)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _astop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
        if self.backend is not None:
            await self.backend.machine.shutdown()
            self.backend.close()

    def __enter__(self) -> SpotEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients ------------------------------------------------------------------------------

    def airflow_connection(self) -> str:
        """The Airflow AWS connection, as JSON for ``AIRFLOW_CONN_<ID>``, routing SageMaker,
        CloudWatch Logs and S3 to the emulator (``extra.service_config.<service>.endpoint_url``).
        """
        endpoints = {
            "sagemaker": self.endpoint_url,
            "logs": self.endpoint_url,
            "s3": self.s3_endpoint_url,
        }
        return json.dumps(
            {
                "conn_type": "aws",
                "login": DUMMY_CREDENTIALS["aws_access_key_id"],
                "password": DUMMY_CREDENTIALS["aws_secret_access_key"],
                "extra": {
                    "region_name": self.config.region,
                    "service_config": {k: {"endpoint_url": v} for k, v in endpoints.items()},
                },
            }
        )

    def announcement(self) -> str:
        """What :meth:`start` prints: the endpoints, the admin token, the connection to paste."""
        return (
            f"spot-emulator: SageMaker and CloudWatch Logs at {self.endpoint_url}, "
            f"S3 at {self.s3_endpoint_url}, data in {self.config.data_dir}\n"
            f"spot-emulator: admin token {self.admin_token} (also in {self.config.token_path})\n"
            f"export AIRFLOW_CONN_AWS_DEFAULT='{self.airflow_connection()}'"
        )

    def boto3_client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of ``sagemaker``, ``logs`` or ``s3`` bound to the emulator.

        :param service: the service name.
        :param kwargs: more arguments of ``boto3.client`` (``config=``...).
        """
        endpoint = self.s3_endpoint_url if service == "s3" else self.endpoint_url
        session = boto3.session.Session()
        return session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint,
            region_name=self.config.region,
            **DUMMY_CREDENTIALS,
            **kwargs,
        )

    @property
    def admin(self) -> AdminClient:
        """A client of the admin API (interrupt, set_capacity, events...), with this run's token.

        A property: ``emulator.admin.interrupt(job)``.
        """
        return AdminClient(self.endpoint_url, token=self.admin_token)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (the admin token).

    :param path: the file.
    :param text: its content.
    """
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
