"""S3 for the emulator: a small S3 server of its own, objects on disk, in its own thread.

Why not moto's S3 server, which the emulator used before: moto keeps every object in memory and
its state is process-wide, so a crash lost every object written since the last clean stop, two
emulators in one process shared one S3, a 1 GiB checkpoint cost about three times its size in
memory, and moto answers every origin with CORS headers (a web page could overwrite a job's
``sourcedir.tar.gz`` by a form POST). Here each write is on disk before it is answered
(:mod:`.s3store`), objects stream between socket and file, and the endpoint answers only loopback
``Host`` names and no foreign ``Origin`` (:mod:`.guard`). The operations served are those the
clients of the project use (:mod:`.s3http`).

The server runs its own event loop in its own thread, so that a large upload never delays the
SageMaker API, whose loop ticks the jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from aiohttp import web
from botocore.config import Config

from airflow_spot_provider.emulator.guard import allowed_hosts
from airflow_spot_provider.emulator.s3http import build_s3_app
from airflow_spot_provider.emulator.s3store import ObjectStore, copy_blob

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Clients need credentials to sign with; they are not secrets and are checked by nothing.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_MANIFEST = "manifest.json"
_START_TIMEOUT = 30.0


def s3_client(endpoint_url: str, region: str = "us-east-1") -> S3Client:
    """A boto3 S3 client bound to an endpoint, path-style (no bucket DNS on 127.0.0.1).

    :param endpoint_url: the S3 endpoint.
    :param region: the region to sign for.
    """
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
    )
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
        aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"],
    )
    return client


class S3Server:
    """The emulator's S3 on ``host:port``, its data under ``root``.

    :param root: the data directory of S3 (``<data_dir>/s3-store``).
    :param host: the address to bind.
    :param port: the port (0: any free port).
    :param region: the region of buckets and clients.
    :param extra_hosts: ``Host`` names to answer besides the loopback ones and ``host``.
    """

    def __init__(
        self,
        root: Path,
        host: str,
        port: int = 0,
        region: str = "us-east-1",
        extra_hosts: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self._host, self._port, self._region = host, port, region
        self._hosts = allowed_hosts(host, extra_hosts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.store: ObjectStore | None = None
        self.endpoint_url = ""

    def start(self, legacy_snapshot: Path | None = None) -> str:
        """Open the store (importing a snapshot of the moto days once), serve; the endpoint.

        :param legacy_snapshot: the dir where an older emulator saved S3 on stop.
        :raises OSError: the port is taken.
        """
        self.store = ObjectStore(self.root)
        if legacy_snapshot is not None and (legacy_snapshot / _MANIFEST).is_file():
            count = import_snapshot(self.store, legacy_snapshot)
            log.warning("S3: %d objects imported from the old snapshot %s", count, legacy_snapshot)
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="spot-emulator-s3", daemon=True
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
            self.endpoint_url = future.result(_START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self.endpoint_url

    async def _serve(self) -> str:
        assert self.store is not None
        app = build_s3_app(self.store, self._region, self._hosts)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def client(self) -> S3Client:
        """A new client of this server."""
        return s3_client(self.endpoint_url, self._region)

    def stop(self) -> None:
        """Stop serving and close the store (everything is on disk already)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                if self._runner is not None:
                    asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread is not None:
                    self._thread.join(30)
                loop.close()
        if self.store is not None:
            self.store.close()
            self.store = None


def import_snapshot(store: ObjectStore, source: Path) -> int:
    """Import the snapshot an emulator of the moto days saved on stop, then set it aside.

    :param store: the object store.
    :param source: the snapshot dir (``manifest.json`` and ``objects/``).
    :returns: the number of objects imported.
    """
    manifest = json.loads((source / _MANIFEST).read_text(encoding="utf-8"))
    for name in manifest["buckets"]:
        store.create_bucket(name)
    for item in manifest["objects"]:
        path = source / "objects" / item["file"]
        blob = store.new_blob()
        etag = copy_blob(path, blob)
        store.put(item["bucket"], item["key"], blob, blob.stat().st_size, etag, {})
    done = source.with_name(source.name + ".imported")
    shutil.rmtree(done, ignore_errors=True)
    source.rename(done)
    return len(manifest["objects"])
