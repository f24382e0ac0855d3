"""Request bodies and kept-alive connections of the emulator's S3: many uploads at once, some of
checkpoint files a trainer writes while they are uploaded, each lands byte for byte and no body
is ever parsed as the next request."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_spot_provider.emulator.checkpoints import CheckpointSync
from airflow_spot_provider.emulator.s3 import S3Server
from airflow_spot_provider.emulator.s3http import MAX_OBJECT_BYTES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SIZES = (0, 1, 1000, 64 * 1024 + 1, 300_000)
THREADS = 6
ROUNDS = 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[S3Server]:
    running = S3Server(tmp_path / "s3", "127.0.0.1")
    running.start()
    try:
        running.client().create_bucket(Bucket="bkt")
        yield running
    finally:
        running.stop()


def _stall_the_server(server: S3Server, stop: threading.Event) -> None:
    """Block the server's loop 1.2 s at a time: a loaded server, whose ``100 Continue`` comes
    after boto3 stopped waiting for it (1 s) and sent the body anyway."""
    loop = server._loop
    assert loop is not None

    async def stall() -> None:
        time.sleep(1.2)  # blocks the loop on purpose

    while not stop.wait(1.5):
        asyncio.run_coroutine_threadsafe(stall(), loop).result(30)


STEP = b'{"step": 7, "steps": 10}'


def _grow_the_file_being_sent(request: Any, **_: Any) -> None:
    """What a trainer does between boto3 sizing a checkpoint file and sending it: write on
    (once per version of the file, so that the next sync sends what it holds then)."""
    name = getattr(getattr(request.body, "_file", request.body), "name", None)
    if isinstance(name, str) and name.endswith(".json"):
        with open(name, "ab+") as file:
            file.seek(max(file.tell() - len(STEP), 0))
            if file.read() != STEP:
                file.write(STEP)


def _client_of_a_writing_trainer(server: S3Server) -> S3Client:
    client = server.client()
    client.meta.events.register("before-send.s3.PutObject", _grow_the_file_being_sent)
    return client


def _uploads(server: S3Server, worker: int, tmp_path: Path) -> dict[str, bytes]:
    """Bytes bodies, file bodies (``Expect: 100-continue``) and checkpoint syncs, on one
    client's kept-alive connections; what each key must hold."""
    s3 = server.client()
    local = tmp_path / f"ckpt-{worker}"
    local.mkdir()
    sync = CheckpointSync(_client_of_a_writing_trainer(server), f"s3://bkt/ckpt-{worker}", local)
    expected: dict[str, bytes] = {}
    for round_ in range(ROUNDS):
        for size in SIZES:
            data = os.urandom(size)
            key = f"w{worker}/r{round_}/{size}"
            s3.put_object(Bucket="bkt", Key=f"{key}.bytes", Body=data)
            source = tmp_path / f"{key.replace('/', '-')}.bin"
            source.write_bytes(data)
            with source.open("rb") as body:
                s3.put_object(Bucket="bkt", Key=f"{key}.file", Body=body)
            expected |= {f"{key}.bytes": data, f"{key}.file": data}
            (local / f"step-{size}.json").write_bytes(data)
        sync.sync_once()  # grows each file as it is sent: the next sync sends it again
        sync.sync_once()
    for path in local.iterdir():
        expected[f"ckpt-{worker}/{path.name}"] = path.read_bytes()
    return expected


def test_concurrent_uploads_on_kept_alive_connections_land_byte_for_byte(
    server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    stop = threading.Event()
    staller = threading.Thread(target=_stall_the_server, args=(server, stop), daemon=True)
    staller.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(_uploads, server, n, tmp_path) for n in range(THREADS)]
            expected = {k: v for future in futures for k, v in future.result().items()}
    finally:
        stop.set()
        staller.join(30)
    s3 = server.client()
    wrong = [
        key for key, data in expected.items()
        if s3.get_object(Bucket="bkt", Key=key)["Body"].read() != data
    ]  # fmt: skip
    assert wrong == []
    assert len(expected) == THREADS * (ROUNDS * 2 * len(SIZES) + len(SIZES))
    parse_errors = [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")]
    assert parse_errors == []


def _exchange(
    endpoint: str, request: bytes, errors: int = 1, timeout: float = 20.0
) -> tuple[bytes, bool]:
    """Send raw bytes on one connection; the answer (up to its ``errors``-th error document), and
    whether the server then closed the connection."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while answer.count(b"</Error>") < errors:
            chunk = sock.recv(65536)
            if not chunk:
                return answer, True
            answer += chunk
        sock.settimeout(2.0)  # an open connection stays silent
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
        return answer, closed


def test_an_oversized_body_is_refused_before_100_continue_and_the_connection_closed(
    server: S3Server,
) -> None:
    head = (
        f"PUT /bkt/huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_OBJECT_BYTES + 1}\r\n"
    )
    answer, closed = _exchange(
        server.endpoint_url, (head + "Expect: 100-continue\r\n\r\n").encode()
    )
    assert answer.startswith(b"HTTP/1.1 400") and b"EntityTooLarge" in answer
    assert closed  # the body was never sent: no byte of what follows is read as one
    answer, closed = _exchange(server.endpoint_url, (head + "\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 400") and b"EntityTooLarge" in answer
    assert closed  # 5 GiB are not read to keep a connection


def test_an_error_answered_before_the_body_is_read_leaves_the_connection_in_step(
    server: S3Server,
) -> None:
    body = b'{"step": 3, "steps": 10}' * 4000
    refused = (
        f"PUT /no-such-bucket/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    encoded = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    chunked = (
        b"PUT /bkt/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: %d\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n"
        b"Content-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 5\r\n"
        b"x-amz-trailer: x-amz-checksum-crc32\r\n\r\n%s" % (len(encoded), encoded)
    )
    missing = b"GET /bkt/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer, closed = _exchange(server.endpoint_url, refused + body + chunked + missing, errors=2)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)  # a status line follows a document
    assert statuses == [b"100", b"404", b"200", b"404"], answer
    assert b"NoSuchBucket" in answer and b"NoSuchKey" in answer and not closed
    assert server.client().get_object(Bucket="bkt", Key="chunked")["Body"].read() == b"hello"


def test_a_refused_host_gets_no_100_continue_and_the_connection_closed(
    server: S3Server,
) -> None:
    # aiohttp answers Expect before its middlewares: the guard must refuse there already.
    answer, closed = _exchange(
        server.endpoint_url,
        b"PUT /bkt/k HTTP/1.1\r\nHost: rebind.evil.example\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 403") and b"AccessDenied" in answer, answer
    assert b"100 Continue" not in answer
    assert closed  # the body was never sent: no byte of what follows is read as one
    assert "k" not in {
        o["Key"] for o in server.client().list_objects_v2(Bucket="bkt").get("Contents", [])
    }
