"""Checkpoint sync between a local dir and an S3 prefix, against the emulator's S3 server."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_spot_provider.emulator.checkpoints import CheckpointSync
from airflow_spot_provider.emulator.stages import iter_keys

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_buckets = count()
SLACK_SECONDS = 20.0  # waits for what takes 0.05 s: only a sync that never comes runs out


@pytest.fixture(scope="module")
def s3(standalone_s3: S3Client) -> S3Client:
    """S3 without the emulator: these modules test its parts on their own."""
    return standalone_s3


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"ckpt-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return name


def _objects(s3: S3Client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """The objects under a prefix; one deleted between the listing and the read is left out
    (a running sync may delete while the test looks)."""
    found: dict[str, bytes] = {}
    for key, _ in iter_keys(s3, bucket, prefix):
        try:
            found[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
    return found


def test_restore_copies_the_prefix_into_the_local_dir(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    for key, body in {
        "run/ckpt/a.json": b"a",
        "run/ckpt/sub/deep/b.bin": b"b",
        "run/ckpt/folder/": b"",
        "run/ckpt-other/c.json": b"not mine",
        "run/ckpt/../../escape.txt": b"evil",
    }.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    local = tmp_path / "checkpoints"
    sync = CheckpointSync(s3, f"s3://{bucket}/run/ckpt", local)

    assert sync.restore() == 2
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert files == ["a.json", "sub/deep/b.bin"]
    assert (local / "sub" / "deep" / "b.bin").read_bytes() == b"b"
    assert not list(tmp_path.rglob("escape.txt"))
    # Restored files are in S3 already: nothing to upload.
    assert sync.sync_once() == 0


@pytest.mark.parametrize("suffix", ["", "/"])
def test_key_is_prefix_as_folder_plus_relative_path(
    s3: S3Client, bucket: str, tmp_path: Path, suffix: str
) -> None:
    local = tmp_path / "c"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "x.pt").write_bytes(b"x")
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt{suffix}", local)
    assert sync.sync_once() == 1
    assert _objects(s3, bucket) == {"ckpt/sub/x.pt": b"x"}


def test_bucket_root_prefix(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "c"
    local.mkdir()
    (local / "x").write_bytes(b"1")
    sync = CheckpointSync(s3, f"s3://{bucket}", local)
    assert sync.sync_once() == 1
    assert _objects(s3, bucket) == {"x": b"1"}
    assert CheckpointSync(s3, f"s3://{bucket}/", tmp_path / "r").restore() == 1


def test_sync_uploads_new_and_changed_and_deletes_removed(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "c"
    local.mkdir()
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt", local)
    assert sync.sync_once() == 0

    (local / "step-1.json").write_bytes(b"one")
    (local / "step-2.json").write_bytes(b"two")
    assert sync.sync_once() == 2
    assert sync.sync_once() == 0  # unchanged: no upload

    (local / "step-2.json").write_bytes(b"two, longer")
    assert sync.sync_once() == 1
    assert _objects(s3, bucket)["ckpt/step-2.json"] == b"two, longer"

    # Same size, new mtime: still a change.
    os.utime(local / "step-2.json", ns=(1, 1))
    (local / "step-2.json").write_bytes(b"TWO, LONGER")
    assert sync.sync_once() == 1
    assert _objects(s3, bucket)["ckpt/step-2.json"] == b"TWO, LONGER"

    # Objects added to S3 by someone else are neither restored nor deleted.
    s3.put_object(Bucket=bucket, Key="ckpt/foreign.json", Body=b"f")
    (local / "step-1.json").unlink()
    assert sync.sync_once() == 1
    assert _objects(s3, bucket) == {
        "ckpt/step-2.json": b"TWO, LONGER",
        "ckpt/foreign.json": b"f",
    }


def test_deletion_of_a_restored_file_propagates(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key="ckpt/old.json", Body=b"old")
    local = tmp_path / "c"
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt/", local)
    assert sync.restore() == 1
    (local / "old.json").unlink()
    (local / "new.json").write_bytes(b"new")
    assert sync.sync_once() == 2
    assert _objects(s3, bucket) == {"ckpt/new.json": b"new"}


def test_symlinks_are_not_uploaded(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "f.txt").write_text("private too")
    local = tmp_path / "c"
    local.mkdir()
    (local / "link.txt").symlink_to(secret)
    (local / "dirlink").symlink_to(outside_dir)
    (local / "real.txt").write_text("ok")
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt", local)
    assert sync.sync_once() == 1
    assert _objects(s3, bucket) == {"ckpt/real.txt": b"ok"}


def test_missing_local_dir_syncs_nothing_and_restore_creates_it(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "not-yet"
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt", local)
    assert sync.sync_once() == 0
    assert sync.restore() == 0
    assert local.is_dir()


def test_run_uploads_while_running_and_stops_on_cancel(
    s3: S3Client, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "c"
    local.mkdir()
    sync = CheckpointSync(s3, f"s3://{bucket}/ckpt", local)
    scans = 0
    scan = sync.sync_once

    def counted_scan() -> int:
        nonlocal scans
        scans += 1
        return scan()

    monkeypatch.setattr(sync, "sync_once", counted_scan)

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + SLACK_SECONDS
        while not condition():
            assert time.monotonic() < deadline, "the running sync did not catch up"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        task = asyncio.create_task(sync.run(interval=0.05))
        (local / "a.json").write_bytes(b"a")
        await until(lambda: "ckpt/a.json" in _objects(s3, bucket))
        # Uploaded by the running task's own scans, before any final sync.
        assert not task.done() and scans >= 1
        (local / "a.json").unlink()
        await until(lambda: not _objects(s3, bucket))
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    scans_at_cancel = scans
    # Cancelled: nothing syncs any more until the final sync_once.
    (local / "late.json").write_bytes(b"late")
    time.sleep(0.2)
    assert scans == scans_at_cancel
    assert _objects(s3, bucket) == {}
    assert sync.sync_once() == 1
    assert _objects(s3, bucket) == {"ckpt/late.json": b"late"}


def test_run_survives_a_failing_scan(s3: S3Client, tmp_path: Path) -> None:
    local = tmp_path / "c"
    local.mkdir()
    (local / "a.json").write_bytes(b"a")
    sync = CheckpointSync(s3, "s3://no-such-bucket-xyz/ckpt", local)

    async def scenario() -> bool:
        task = asyncio.create_task(sync.run(interval=0.01))
        await asyncio.sleep(0.3)
        alive = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return alive

    assert asyncio.run(scenario())


def test_restore_uploads_what_a_crash_left_before_anything_is_lost(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "ckpt"
    first = CheckpointSync(s3, f"s3://{bucket}/run", local)
    first.restore()
    (local / "synced.pt").write_bytes(b"synced")
    first.sync_once()
    # The backend dies here: newer files never reached S3, one was rewritten after its sync.
    (local / "newest.pt").write_bytes(b"written after the last sync")
    (local / "synced.pt").write_bytes(b"rewritten")
    s3.put_object(Bucket=bucket, Key="run/only-in-s3.pt", Body=b"from S3")
    before = s3.head_object(Bucket=bucket, Key="run/synced.pt")["LastModified"]

    restarted = CheckpointSync(s3, f"s3://{bucket}/run", local)
    assert restarted.restore() == 3
    assert _objects(s3, bucket, "run/") == {
        "run/synced.pt": b"rewritten",
        "run/newest.pt": b"written after the last sync",
        "run/only-in-s3.pt": b"from S3",
    }
    assert (local / "only-in-s3.pt").read_bytes() == b"from S3"
    assert (local / "synced.pt").read_bytes() == b"rewritten"  # never overwritten by S3's
    assert s3.head_object(Bucket=bucket, Key="run/synced.pt")["LastModified"] >= before
    assert restarted.sync_once() == 0  # everything known: nothing uploaded twice


def test_restore_does_not_upload_what_s3_holds_already(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "ckpt"
    first = CheckpointSync(s3, f"s3://{bucket}/run", local)
    first.restore()
    (local / "a.pt").write_bytes(os.urandom(1000))
    first.sync_once()
    etag = s3.head_object(Bucket=bucket, Key="run/a.pt")["ETag"]
    uploads: list[str] = []

    def count_upload(params: dict[str, str], **kwargs: object) -> None:
        uploads.append(params["Key"])

    s3.meta.events.register("before-call.s3.PutObject", count_upload)
    try:
        restarted = CheckpointSync(s3, f"s3://{bucket}/run", local)
        assert restarted.restore() == 1
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", count_upload)
    assert uploads == []
    assert s3.head_object(Bucket=bucket, Key="run/a.pt")["ETag"] == etag
