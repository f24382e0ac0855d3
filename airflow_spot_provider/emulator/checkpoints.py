"""Checkpoint sync between a job's local checkpoint dir and ``CheckpointConfig.S3Uri``.

As SageMaker documents it (model-checkpoints): at every (re)start the objects under the S3 URI
are copied into the local path; during training new and changed local files are uploaded; a file
deleted locally is deleted in S3; objects added to S3 after the start are not copied in.

The key of a local file is the URI's prefix, as a folder, plus the file's relative POSIX path:
``s3://b/ckpt`` and ``s3://b/ckpt/`` both put ``sub/a.pt`` at ``ckpt/sub/a.pt``.

Bounded: files stream from disk (one PUT each, so that the ETag is the file's MD5), several at
a time; a sync stops starting uploads once its budget is spent or it is asked to stop, so that a
teardown never waits for 100,000 small files. What it left is not lost: a restarted host's
checkpoint dir is kept (:meth:`.Sandbox.reset_for_restart`) and :meth:`CheckpointSync.restore`
first uploads every local file that S3 does not hold as it is, then brings in the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from botocore.exceptions import HTTPClientError

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
UPLOAD_THREADS = 8
# Time one sync may spend starting uploads: bounds a teardown (plus the uploads in flight).
SYNC_BUDGET_SECONDS = 60.0


class CheckpointSync:
    """Mirror one local checkpoint dir to one S3 prefix.

    Thread-safe: :meth:`sync_once` holds a lock, so the final sync of the job state machine cannot
    interleave with a scan still running in a worker thread.

    :param s3: the S3 client.
    :param s3_uri: ``CheckpointConfig.S3Uri``.
    :param local_dir: the sandbox's checkpoint dir.
    :param budget_seconds: time one sync may spend starting uploads.
    """

    def __init__(
        self,
        s3: S3Client,
        s3_uri: str,
        local_dir: Path,
        budget_seconds: float = SYNC_BUDGET_SECONDS,
    ) -> None:
        self._s3 = s3
        self.budget_seconds = budget_seconds
        self._halt = threading.Event()  # set: the sync in flight starts no more uploads
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
        """Make the local dir what S3 holds under the prefix, losing nothing of either.

        Files left in the local dir by a previous life of the host (a crash, a teardown past its
        budget) are uploaded first unless S3 holds them as they are; then every object not
        already there is downloaded. Keys that would leave the local dir (``..``) are skipped
        with a warning.

        :returns: the number of files restored (downloaded or found in place).
        """
        with self._lock:
            self._halt.clear()
            self.local_dir.mkdir(parents=True, exist_ok=True)
            leftovers = self._push_leftovers(time.monotonic() + self.budget_seconds)
            count = 0
            for key, _size in iter_keys(self._s3, self.bucket, self.prefix):
                try:
                    rel = safe_relative(key[len(self.prefix) :])
                    target = self.local_dir.joinpath(*rel.parts)
                    if rel.as_posix() in leftovers:
                        continue  # the local file is as new as S3's, or newer: never overwritten
                    download_to(self._s3, self.bucket, key, target, self.local_dir)
                except (SandboxError, OSError) as err:
                    log.warning(
                        "checkpoint object s3://%s/%s not restored: %s", self.bucket, key, err
                    )
                    continue
                self._known[rel.as_posix()] = _stamp(target)
                count += 1
            return count + len(leftovers)

    def _push_leftovers(self, deadline: float) -> set[str]:
        """Upload what a previous life left locally and S3 lacks; the files left.

        A file S3 holds byte for byte (size, then MD5 = ETag) is known; one past the budget
        stays unknown, so that the next sync uploads it.
        """
        leftovers = self._scan()
        if not leftovers:
            return set()
        held = self._listing()
        missing: list[str] = []
        for rel in sorted(leftovers):
            if time.monotonic() > deadline:
                break
            if _same(self.local_dir / rel, held.get(rel)):
                self._known[rel] = leftovers[rel]
            else:
                missing.append(rel)
        # A restart after an interruption finds its own files: only a loss of sync is news.
        (log.warning if missing else log.info)(
            "checkpoint dir %s: %d files left by a previous start, %d of them not in S3",
            self.local_dir,
            len(leftovers),
            len(missing),
        )
        for rel in self._upload_all(missing, deadline):
            self._known[rel] = leftovers[rel]
        return set(leftovers)

    def _listing(self) -> dict[str, tuple[int, str]]:
        """Relative path to (size, ETag) of every object under the prefix."""
        held: dict[str, tuple[int, str]] = {}
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                rel = item["Key"][len(self.prefix) :]
                held[rel] = (int(item.get("Size", 0)), str(item.get("ETag", "")).strip('"'))
        return held

    def _upload(self, rel: str) -> bool:
        if self._halt.is_set():
            return False
        try:
            with (self.local_dir / rel).open("rb") as file:
                body = FixedLengthBody(file)
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key_of(rel),
                    Body=cast("BinaryIO", body),  # a binary file object, read-only
                    ContentLength=len(body),
                )
        except FileNotFoundError:
            return False  # deleted between the scan and the upload (a temp file renamed away)
        except (FileShrankError, HTTPClientError) as err:
            # Raised while the checksum is computed, or while sending (wrapped by botocore).
            if not isinstance(err, FileShrankError) and not isinstance(
                err.kwargs.get("error"), FileShrankError
            ):
                raise
            log.info("checkpoint file %s shrank while uploaded; the next sync sends it", rel)
            return False
        return True

    def _upload_all(self, rels: list[str], deadline: float) -> list[str]:
        """Upload files in parallel until done, halted or past ``deadline``; those uploaded.

        The first batch starts whatever the deadline: on a machine so loaded that the scan
        alone outlasts the budget, each sync must still make progress (else nothing is ever
        uploaded). Only a halt (a teardown) stops it before.
        """
        done: list[str] = []
        if not rels:
            return done
        with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="checkpoint-upload") as pool:
            futures: list[tuple[str, Future[bool]]] = []
            for rel in rels:
                late = len(futures) >= UPLOAD_THREADS and time.monotonic() > deadline
                if self._halt.is_set() or late:
                    log.warning(
                        "checkpoint sync of %s stopped with %d of %d uploads not started",
                        self.local_dir,
                        len(rels) - len(futures),
                        len(rels),
                    )
                    break
                futures.append((rel, pool.submit(self._upload, rel)))
                if len(futures) % UPLOAD_THREADS == 0:
                    futures[-UPLOAD_THREADS][1].result()  # at most a few in flight
            done = [rel for rel, future in futures if future.result()]
        return done

    def sync_once(self) -> int:
        """Upload new and changed local files, delete in S3 the files deleted locally.

        A file is changed when its size or mtime (ns) differs from when it was last uploaded.
        Symlinks are never followed nor uploaded. Stops starting uploads after
        ``budget_seconds`` or when :meth:`halt` is called; the rest goes at the next sync.

        :returns: the number of uploads plus deletions.
        """
        with self._lock:
            self._halt.clear()
            deadline = time.monotonic() + self.budget_seconds
            local = self._scan()
            changed = [rel for rel, stamp in sorted(local.items()) if self._known.get(rel) != stamp]
            uploaded = self._upload_all(changed, deadline)
            for rel in uploaded:
                # The stamp from before the upload: a write during it shows at the next scan.
                self._known[rel] = local[rel]
            changes = len(uploaded)
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

    def halt(self) -> None:
        """Make the sync in flight start no more uploads (the next sync starts afresh)."""
        self._halt.set()

    async def run(self, interval: float = 0.5) -> None:
        """Call :meth:`sync_once` every ``interval`` seconds, in a worker thread, until cancelled.

        A failing scan (S3 unreachable...) is logged and retried at the next interval. On
        cancellation, a scan in flight is awaited before the cancellation propagates, so that no
        upload runs behind the caller's back once the task is done.

        :param interval: seconds between the end of a scan and the start of the next.
        """
        while True:
            self._halt.clear()
            future = asyncio.ensure_future(asyncio.to_thread(self.sync_once))
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                self.halt()  # the teardown's final sync follows: do not make it wait
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


class FileShrankError(ValueError):
    """The file ended before the length its upload declared (it was truncated meanwhile)."""


class FixedLengthBody(io.RawIOBase):
    """The first bytes of an open file, as many as it held when opened, never more nor fewer.

    A trainer may write a checkpoint file while it is uploaded. ``Content-Length`` is the size
    when the request is built, but the HTTP client sends a file body until its end: bytes written
    in between (the upload waits up to 1 s for ``100 Continue``) went out past the declared length,
    and the server parsed them as the start of the next request on that connection (and answered
    it 400). A file that grew is sent cut at its declared size (its new mtime makes the next sync
    send it again); one that shrank raises, so that the connection is dropped, not left short.

    :param file: the file, open in binary mode at its start.
    """

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file
        self._size = os.fstat(file.fileno()).st_size
        self._position = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(base + offset, 0), self._size)
        self._file.seek(self._position)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._size - self._position
        if size is not None and size >= 0:
            wanted = min(wanted, size)
        data = self._file.read(wanted)
        if len(data) < wanted:
            raise FileShrankError(f"{self._file.name} ended at byte {self._position + len(data)}")
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _same(path: Path, held: tuple[int, str] | None) -> bool:
    """Whether an object (size, ETag) holds the local file byte for byte (a multipart ETag is
    not an MD5: such a file is uploaded again)."""
    if held is None or "-" in held[1] or held[0] != path.stat().st_size:
        return False
    return _md5(path) == held[1]


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as reader:
        while chunk := reader.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> _Stamp:
    st = path.stat()
    return st.st_size, st.st_mtime_ns
