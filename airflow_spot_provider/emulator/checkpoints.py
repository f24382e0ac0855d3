"""Checkpoint sync between a job's local checkpoint dir and ``CheckpointConfig.S3Uri``.

As SageMaker documents it (model-checkpoints): at every (re)start the objects under the S3 URI
are copied into the local path; during training new and changed local files are uploaded; a file
deleted locally is deleted in S3; objects added to S3 after the start are not copied in.

The key of a local file is the URI's prefix, as a folder, plus the file's relative POSIX path:
``s3://b/ckpt`` and ``s3://b/ckpt/`` both put ``sub/a.pt`` at ``ckpt/sub/a.pt``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_spot_provider.emulator.sandbox import SandboxError
from airflow_spot_provider.emulator.stages import (
    download_to,
    iter_keys,
    parse_s3_uri,
    safe_relative,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# What identifies a version of a local file between two scans.
_Stamp = tuple[int, int]  # (size, mtime_ns)


class CheckpointSync:
    """Mirror one local checkpoint dir to one S3 prefix.

    Thread-safe: :meth:`sync_once` holds a lock, so the final sync of the job state machine cannot
    interleave with a scan still running in a worker thread.

    :param s3: the S3 client.
    :param s3_uri: ``CheckpointConfig.S3Uri``.
    :param local_dir: the sandbox's checkpoint dir.
    """

    def __init__(self, s3: S3Client, s3_uri: str, local_dir: Path) -> None:
        self._s3 = s3
        self.bucket, prefix = parse_s3_uri(s3_uri)
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.local_dir = Path(local_dir)
        # Files known to be in S3 as they were locally: restored or uploaded by this object.
        self._known: dict[str, _Stamp] = {}
        self._lock = threading.Lock()

    def key_of(self, rel: str) -> str:
        """The object key of the local file at relative POSIX path ``rel``.

        :param rel: the path relative to the local dir.
        """
        return self.prefix + rel

    def restore(self) -> int:
        """Copy every object under the prefix into the local dir (creating sub-directories).

        Keys that would leave the local dir (``..``) are skipped with a warning.

        :returns: the number of files restored.
        """
        count = 0
        with self._lock:
            self.local_dir.mkdir(parents=True, exist_ok=True)
            for key, _size in iter_keys(self._s3, self.bucket, self.prefix):
                try:
                    rel = safe_relative(key[len(self.prefix) :])
                    target = self.local_dir.joinpath(*rel.parts)
                    download_to(self._s3, self.bucket, key, target, self.local_dir)
                except (SandboxError, OSError) as err:
                    log.warning(
                        "checkpoint object s3://%s/%s not restored: %s", self.bucket, key, err
                    )
                    continue
                self._known[rel.as_posix()] = _stamp(target)
                count += 1
        return count

    def sync_once(self) -> int:
        """Upload new and changed local files, delete in S3 the files deleted locally.

        A file is changed when its size or mtime (ns) differs from when it was last uploaded.
        Symlinks are never followed nor uploaded.

        :returns: the number of uploads plus deletions.
        """
        with self._lock:
            local = self._scan()
            changes = 0
            for rel, stamp in sorted(local.items()):
                if self._known.get(rel) == stamp:
                    continue
                try:
                    self._s3.upload_file(str(self.local_dir / rel), self.bucket, self.key_of(rel))
                except FileNotFoundError:
                    # Deleted between the scan and the upload (a temp file renamed away).
                    continue
                # The stamp from before the upload: a write during it shows at the next scan.
                self._known[rel] = stamp
                changes += 1
            gone = sorted(set(self._known) - set(local))
            for start in range(0, len(gone), 1000):  # DeleteObjects takes at most 1,000 keys
                batch = gone[start : start + 1000]
                self._s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.key_of(r)} for r in batch], "Quiet": True},
                )
                for rel in batch:
                    del self._known[rel]
                changes += len(batch)
            return changes

    async def run(self, interval: float = 0.5) -> None:
        """Call :meth:`sync_once` every ``interval`` seconds, in a worker thread, until cancelled.

        A failing scan (S3 unreachable...) is logged and retried at the next interval. On
        cancellation, a scan in flight is awaited before the cancellation propagates, so that no
        upload runs behind the caller's back once the task is done.

        :param interval: seconds between the end of a scan and the start of the next.
        """
        while True:
            future = asyncio.ensure_future(asyncio.to_thread(self.sync_once))
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                await asyncio.gather(future, return_exceptions=True)
                raise
            except Exception:
                log.exception("checkpoint sync of %s failed; retrying", self.local_dir)
            await asyncio.sleep(interval)

    def _scan(self) -> dict[str, _Stamp]:
        found: dict[str, _Stamp] = {}
        if not self.local_dir.is_dir():
            return found
        for dirpath, _dirnames, filenames in os.walk(self.local_dir):  # does not follow links
            for filename in filenames:
                path = Path(dirpath) / filename
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):  # lstat: a symlink is not regular
                    continue
                found[path.relative_to(self.local_dir).as_posix()] = (st.st_size, st.st_mtime_ns)
        return found


def _stamp(path: Path) -> _Stamp:
    st = path.stat()
    return st.st_size, st.st_mtime_ns
