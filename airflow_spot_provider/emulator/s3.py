"""S3 for the emulator: moto's S3 server, started in-process, made durable by snapshots.

moto keeps S3 in memory. So that a job resumed after an emulator restart finds its checkpoints
and inputs, :meth:`S3Server.stop` saves every bucket and object under the data dir and
:meth:`S3Server.start` loads them back. Fidelity gap: a crash (no ``stop``) loses what was
written to S3 since the last start; object metadata other than the content type is not kept;
and moto's backends are process-wide, so two emulators in one process share one S3.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# moto needs credentials to sign with; they are not secrets and are checked by nothing.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_MANIFEST = "manifest.json"


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
    """moto's S3 server on a free port of ``host``.

    :param host: the address to bind.
    :param region: the region of the clients.
    """

    def __init__(self, host: str, region: str = "us-east-1") -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        self._region = region
        self.endpoint_url = ""

    def start(self, snapshot_dir: Path | None = None) -> str:
        """Start the server and load a snapshot if there is one.

        :param snapshot_dir: where :meth:`stop` saved S3.
        :returns: the endpoint URL.
        """
        # werkzeug logs every request to stderr; S3 traffic of jobs is not news.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        shown = f"[{host}]" if ":" in host else host
        self.endpoint_url = f"http://{shown}:{port}"
        if snapshot_dir is not None and (snapshot_dir / _MANIFEST).is_file():
            count = restore_snapshot(self.client(), snapshot_dir)
            log.info("S3: %d objects restored from %s", count, snapshot_dir)
        return self.endpoint_url

    def client(self) -> S3Client:
        """A new client of this server."""
        return s3_client(self.endpoint_url, self._region)

    def stop(self, snapshot_dir: Path | None = None) -> None:
        """Save S3 (if asked) and stop the server.

        :param snapshot_dir: where to save S3.
        """
        try:
            if snapshot_dir is not None:
                count = save_snapshot(self.client(), snapshot_dir)
                log.info("S3: %d objects saved to %s", count, snapshot_dir)
        finally:
            self._server.stop()


def save_snapshot(s3: S3Client, target: Path) -> int:
    """Save every bucket and object; the previous snapshot is replaced only once this is whole.

    :param s3: a client of the server.
    :param target: the snapshot dir.
    :returns: the number of objects saved.
    """
    work = target.with_name(target.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    (work / "objects").mkdir(parents=True)
    manifest: dict[str, Any] = {"buckets": [], "objects": []}
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        manifest["buckets"].append(name)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                file_name = f"{len(manifest['objects']):08d}"
                s3.download_file(name, item["Key"], str(work / "objects" / file_name))
                manifest["objects"].append({"bucket": name, "key": item["Key"], "file": file_name})
    (work / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    work.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return len(manifest["objects"])


def restore_snapshot(s3: S3Client, source: Path) -> int:
    """Load a snapshot made by :func:`save_snapshot` (existing objects are overwritten).

    :param s3: a client of the server.
    :param source: the snapshot dir.
    :returns: the number of objects loaded.
    """
    manifest = json.loads((source / _MANIFEST).read_text(encoding="utf-8"))
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for name in manifest["buckets"]:
        if name not in existing:
            s3.create_bucket(Bucket=name)
    for item in manifest["objects"]:
        s3.upload_file(str(source / "objects" / item["file"]), item["bucket"], item["key"])
    return len(manifest["objects"])
