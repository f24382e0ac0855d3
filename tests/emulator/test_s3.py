"""The emulator's S3, through boto3: the operations the project's clients use, on disk before
each answer, and what a crash or an older data dir leaves."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from airflow_spot_provider.emulator.s3 import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[S3Server]:
    running = S3Server(tmp_path / "s3", "127.0.0.1")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def s3(server: S3Server) -> S3Client:
    client = server.client()
    client.create_bucket(Bucket="bkt")
    return client


def _keys(s3: S3Client, **kwargs: str) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    prefixes: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="bkt", PaginationConfig={"PageSize": 2}, **kwargs
    )
    for page in pages:
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes


def test_objects_round_trip_with_metadata_ranges_and_copies(s3: S3Client) -> None:
    s3.put_object(
        Bucket="bkt", Key="a b+c/é.txt", Body=b"hello world", ContentType="text/plain",
        Metadata={"step": "7"},
    )  # fmt: skip
    got = s3.get_object(Bucket="bkt", Key="a b+c/é.txt")
    assert got["Body"].read() == b"hello world"
    assert (got["ContentType"], got["Metadata"]) == ("text/plain", {"step": "7"})
    assert got["ETag"] == '"5eb63bbbe01eeed093cb22bb8f5acdc3"'  # the MD5, as S3 gives it
    ranged = s3.get_object(Bucket="bkt", Key="a b+c/é.txt", Range="bytes=6-")
    assert (ranged["Body"].read(), ranged["ContentRange"]) == (b"world", "bytes 6-10/11")
    s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "a b+c/é.txt"})
    assert s3.head_object(Bucket="bkt", Key="copy")["Metadata"] == {"step": "7"}
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="bkt", Key="nope")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as no_bucket:
        s3.list_objects_v2(Bucket="no-such-bucket")
    assert no_bucket.value.response["Error"]["Code"] == "NoSuchBucket"


def test_listings_paginate_and_roll_up_at_the_delimiter(s3: S3Client) -> None:
    for key in ("a/1", "a/2", "b/1", "c", "d/x/1", "e"):
        s3.put_object(Bucket="bkt", Key=key, Body=b".")
    assert _keys(s3) == (["a/1", "a/2", "b/1", "c", "d/x/1", "e"], [])
    assert _keys(s3, Delimiter="/") == (["c", "e"], ["a/", "b/", "d/"])
    assert _keys(s3, Prefix="d/", Delimiter="/") == ([], ["d/x/"])
    assert _keys(s3, StartAfter="b/1") == (["c", "d/x/1", "e"], [])
    v1 = s3.get_paginator("list_objects").paginate(
        Bucket="bkt", Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    assert [p["Prefix"] for page in v1 for p in page.get("CommonPrefixes", [])] == [
        "a/",
        "b/",
        "d/",
    ]
    s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a/1"}, {"Key": "zz"}]})
    assert _keys(s3, Prefix="a/") == (["a/2"], [])


def test_multipart_upload_and_ranged_download(s3: S3Client, tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(os.urandom(17 * 1024 * 1024))  # past boto3's 8 MiB multipart threshold
    s3.upload_file(str(source), "bkt", "big")
    assert s3.head_object(Bucket="bkt", Key="big")["ETag"].endswith('-3"')
    s3.download_file("bkt", "big", str(tmp_path / "back"))  # ranged GETs in parallel
    assert (tmp_path / "back").read_bytes() == source.read_bytes()


def test_objects_are_on_disk_when_answered_and_orphans_go(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "s3", "127.0.0.1")
    server.start()
    s3 = server.client()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"kept")
    (tmp_path / "s3" / "blobs" / "half-written").write_bytes(b"x")  # what a crash leaves
    # A copy taken while it runs, before any stop: the files as a crash leaves them.
    shutil.copytree(tmp_path / "s3", tmp_path / "s3-copy")
    server.stop()
    again = S3Server(tmp_path / "s3-copy", "127.0.0.1")
    again.start()
    try:
        assert again.client().get_object(Bucket="bkt", Key="k")["Body"].read() == b"kept"
        assert not (tmp_path / "s3-copy" / "blobs" / "half-written").exists()
    finally:
        again.stop()


def test_a_snapshot_of_an_older_emulator_is_imported_once(tmp_path: Path) -> None:
    snapshot = tmp_path / "s3"
    (snapshot / "objects").mkdir(parents=True)
    (snapshot / "objects" / "00000000").write_bytes(b"old")
    manifest = {"buckets": ["old"], "objects": [{"bucket": "old", "key": "k", "file": "00000000"}]}
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    server = S3Server(tmp_path / "s3-store", "127.0.0.1")
    server.start(legacy_snapshot=snapshot)
    try:
        assert server.client().get_object(Bucket="old", Key="k")["Body"].read() == b"old"
    finally:
        server.stop()
    assert not snapshot.exists() and (tmp_path / "s3.imported").is_dir()
