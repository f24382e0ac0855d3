"""S3 buckets and objects on disk: one file per object, an SQLite index of keys.

Every write is on disk before it is acknowledged: the object's bytes go to a new file, then the
index row pointing at it is committed (WAL, ``synchronous=NORMAL``: it survives a crash of the
emulator, not of the machine), then the file it replaces is removed. A crash between two steps
leaves at worst a file no row points at, removed at the next start. Nothing is held in memory
but the index connection: object bytes stream between the socket and the file.

Not thread-safe: one :class:`ObjectStore` belongs to the S3 server's event-loop thread; only the
byte copies (:func:`copy_blob`, :func:`concat_blobs`) run in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_spot_provider.emulator.store import open_database

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# Past every key that starts with a common prefix (keys are compared as code points).
_AFTER_ALL = "\U0010ffff"
_COPY_CHUNK = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified REAL NOT NULL,
    headers TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    created REAL NOT NULL,
    headers TEXT NOT NULL
);
"""


class S3Error(Exception):
    """An S3 error answer.

    :param code: the S3 error code (``NoSuchKey``...).
    :param message: the message.
    :param status: the HTTP status.
    :param fields: more elements of the ``<Error>`` document (``Key``, ``BucketName``...).
    """

    def __init__(self, code: str, message: str, status: int = 400, **fields: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields


def no_such_bucket(bucket: str) -> S3Error:
    """``NoSuchBucket`` for ``bucket``.

    :param bucket: the bucket name.
    """
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)


@dataclass(frozen=True)
class ObjectInfo:
    """What the index knows of one object.

    :param key: the key.
    :param path: the file holding its bytes.
    :param size: bytes.
    :param etag: the ETag, without quotes.
    :param modified: epoch seconds.
    :param headers: the stored headers (Content-Type, x-amz-meta-*...).
    """

    key: str
    path: Path
    size: int
    etag: str
    modified: float
    headers: dict[str, str]


@dataclass(frozen=True)
class Listing:
    """One page of a listing.

    :param objects: the objects of the page.
    :param prefixes: the common prefixes of the page.
    :param truncated: whether more follow.
    :param last: what the page ended on (a key or a common prefix), to continue after.
    """

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    last: str


def check_bucket_name(name: str) -> None:
    """Refuse a bucket name S3 refuses.

    :param name: the bucket name.
    :raises S3Error: ``InvalidBucketName``.
    """
    if not _BUCKET_RE.match(name) or ".." in name or _IP_RE.match(name):
        raise S3Error(
            "InvalidBucketName", "The specified bucket is not valid.", 400, BucketName=name
        )


def check_key(key: str) -> None:
    """Refuse an empty key or one longer than S3's 1,024 bytes.

    :param key: the key.
    :raises S3Error: ``KeyTooLongError`` or ``InvalidArgument``.
    """
    if not key:
        raise S3Error("InvalidArgument", "The object key must not be empty.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long", 400, Key=key[:64])


class ObjectStore:
    """The emulator's S3 data under one directory.

    :param root: the directory (``<data_dir>/s3-store``), created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.parts = root / "uploads"
        for directory in (self.blobs, self.parts):
            directory.mkdir(parents=True, exist_ok=True)
        self._db = open_database(root / "index.sqlite3", _SCHEMA)
        self._remove_orphans()

    def close(self) -> None:
        """Close the index."""
        self._db.close()

    def _remove_orphans(self) -> None:
        """Remove files no row points at (a crash between writing a file and indexing it)."""
        known = {row[0] for row in self._db.execute("SELECT blob FROM objects")}
        for path in self.blobs.iterdir():
            if path.name not in known:
                path.unlink(missing_ok=True)
        uploads = {row[0] for row in self._db.execute("SELECT upload_id FROM uploads")}
        for path in self.parts.iterdir():
            if path.name not in uploads:
                shutil.rmtree(path, ignore_errors=True)

    # -- buckets ------------------------------------------------------------------------------

    def buckets(self) -> list[tuple[str, float]]:
        """Every bucket and its creation time, by name."""
        rows = self._db.execute("SELECT name, created FROM buckets ORDER BY name").fetchall()
        return [(str(n), float(c)) for n, c in rows]

    def has_bucket(self, name: str) -> bool:
        """Whether the bucket exists.

        :param name: the bucket name.
        """
        row = self._db.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone()
        return row is not None

    def require_bucket(self, name: str) -> None:
        """Raise ``NoSuchBucket`` unless the bucket exists.

        :param name: the bucket name.
        """
        if not self.has_bucket(name):
            raise no_such_bucket(name)

    def create_bucket(self, name: str) -> bool:
        """Create a bucket.

        :param name: the bucket name.
        :returns: False when it existed already.
        """
        check_bucket_name(name)
        if self.has_bucket(name):
            return False
        with self._db:
            self._db.execute("INSERT INTO buckets (name, created) VALUES (?, ?)", (name, now()))
        return True

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket.

        :param name: the bucket name.
        :raises S3Error: ``NoSuchBucket``, ``BucketNotEmpty``.
        """
        self.require_bucket(name)
        if self._db.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone():
            raise S3Error(
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
                409,
                BucketName=name,
            )
        with self._db:
            self._db.execute("DELETE FROM buckets WHERE name = ?", (name,))

    # -- objects ------------------------------------------------------------------------------

    def new_blob(self) -> Path:
        """A fresh path for an object's bytes (written, then given to :meth:`put`)."""
        return self.blobs / uuid.uuid4().hex

    def put(
        self, bucket: str, key: str, blob: Path, size: int, etag: str, headers: dict[str, str]
    ) -> ObjectInfo:
        """Index a written file as the object ``key``; the file it replaces is removed.

        :param bucket: the bucket.
        :param key: the key.
        :param blob: the file (from :meth:`new_blob`), complete.
        :param size: its size.
        :param etag: its ETag, without quotes.
        :param headers: the headers to store.
        """
        old = self.get(bucket, key)
        modified = now()
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, modified, headers) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bucket, key, blob.name, size, etag, modified, json.dumps(headers)),
            )
        if old is not None:
            old.path.unlink(missing_ok=True)
        return ObjectInfo(key, blob, size, etag, modified, headers)

    def get(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object, or None.

        :param bucket: the bucket.
        :param key: the key.
        """
        row = self._db.execute(
            "SELECT key, blob, size, etag, modified, headers FROM objects "
            "WHERE bucket = ? AND key = ?",
            (bucket, key),
        ).fetchone()
        return None if row is None else self._info(row)

    def require(self, bucket: str, key: str) -> ObjectInfo:
        """The object; ``NoSuchBucket`` or ``NoSuchKey`` when it is not there.

        :param bucket: the bucket.
        :param key: the key.
        """
        found = self.get(bucket, key)
        if found is None:
            self.require_bucket(bucket)
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)
        return found

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        """Delete objects (a missing key is not an error, as in S3).

        :param bucket: the bucket.
        :param keys: the keys.
        """
        gone: list[Path] = []
        with self._db:
            for key in keys:
                found = self.get(bucket, key)
                if found is not None:
                    self._db.execute(
                        "DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key)
                    )
                    gone.append(found.path)
        for path in gone:
            path.unlink(missing_ok=True)

    def list(self, bucket: str, prefix: str, delimiter: str, after: str, limit: int) -> Listing:
        """A page of keys after ``after`` under ``prefix``, rolled up at ``delimiter``.

        :param bucket: the bucket.
        :param prefix: only keys that start with it.
        :param delimiter: roll keys up to their common prefix at its first occurrence after
            ``prefix`` ('' for none).
        :param after: start after this key (a common prefix: after all its keys).
        :param limit: at most this many keys plus common prefixes.
        """
        self.require_bucket(bucket)
        if delimiter and after.startswith(prefix) and after.endswith(delimiter):
            after += _AFTER_ALL
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        cursor, last = after, ""
        while len(objects) + len(prefixes) < limit:
            row = self._next_row(bucket, prefix, cursor)
            if row is None:
                return Listing(objects, prefixes, False, last)
            info = self._info(row)
            cut = info.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                last = info.key[: cut + len(delimiter)]
                prefixes.append(last)
                cursor = last + _AFTER_ALL
            else:
                objects.append(info)
                last = cursor = info.key
        return Listing(objects, prefixes, self._next_row(bucket, prefix, cursor) is not None, last)

    def _next_row(self, bucket: str, prefix: str, cursor: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT key, blob, size, etag, modified, headers FROM objects "
            "WHERE bucket = ? AND key > ? AND key >= ? ORDER BY key LIMIT 1",
            (bucket, cursor, prefix),
        ).fetchone()
        if row is None or not str(row[0]).startswith(prefix):
            return None
        return row

    def _info(self, row: tuple[Any, ...]) -> ObjectInfo:
        key, blob, size, etag, modified, headers = row
        return ObjectInfo(
            str(key), self.blobs / str(blob), int(size), str(etag), float(modified),
            json.loads(headers),
        )  # fmt: skip

    def count(self) -> int:
        """The number of objects in every bucket."""
        return int(self._db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])

    # -- multipart uploads --------------------------------------------------------------------

    def create_upload(self, bucket: str, key: str, headers: dict[str, str]) -> str:
        """Start a multipart upload.

        :param bucket: the bucket.
        :param key: the key.
        :param headers: the headers the object will have.
        :returns: the upload id.
        """
        self.require_bucket(bucket)
        upload_id = uuid.uuid4().hex
        (self.parts / upload_id).mkdir()
        with self._db:
            self._db.execute(
                "INSERT INTO uploads (upload_id, bucket, key, created, headers) "
                "VALUES (?, ?, ?, ?, ?)",
                (upload_id, bucket, key, now(), json.dumps(headers)),
            )
        return upload_id

    def upload(self, upload_id: str, bucket: str, key: str) -> dict[str, str]:
        """The headers of an upload in progress; ``NoSuchUpload`` when there is none.

        :param upload_id: the upload id.
        :param bucket: the bucket it must be for.
        :param key: the key it must be for.
        """
        row = self._db.execute(
            "SELECT headers FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?",
            (upload_id, bucket, key),
        ).fetchone()
        if row is None:
            raise S3Error(
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the upload "
                "may have been aborted or completed.",
                404,
                UploadId=upload_id,
            )
        headers: dict[str, str] = json.loads(row[0])
        return headers

    def part_path(self, upload_id: str, number: int) -> Path:
        """The file of part ``number`` of an upload.

        :param upload_id: the upload id.
        :param number: the part number (1 to 10,000).
        """
        return self.parts / upload_id / f"{number:05d}"

    def end_upload(self, upload_id: str) -> None:
        """Forget an upload and its parts (completed or aborted).

        :param upload_id: the upload id.
        """
        with self._db:
            self._db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        shutil.rmtree(self.parts / upload_id, ignore_errors=True)


def now() -> float:
    """Epoch seconds, rounded to the millisecond as S3 shows them."""
    return round(time.time(), 3)


def copy_blob(source: Path, target: Path) -> str:
    """Copy an object's bytes to a new file; its MD5 hex digest (the new ETag).

    :param source: the source file.
    :param target: the new file.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(_COPY_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def concat_blobs(parts: list[Path], target: Path) -> int:
    """Concatenate parts into a new file (CompleteMultipartUpload); the total size.

    :param parts: the part files, in order.
    :param target: the new file.
    """
    with target.open("wb") as writer:
        for part in parts:
            with part.open("rb") as reader:
                shutil.copyfileobj(reader, writer, _COPY_CHUNK)
        return writer.tell()


def remove_quietly(path: Path) -> None:
    """Remove a file if it is there (a failed write's leftover).

    :param path: the file.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
