"""Downloading and Uploading stages, and the script-mode source fetch, against the S3 server."""

from __future__ import annotations

import io
import json
import tarfile
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError
from airflow_spot_provider.emulator.stages import (
    StageError,
    download_inputs,
    failure_reason,
    fetch_source,
    iter_keys,
    parse_s3_uri,
    upload_model,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_buckets = count()


@pytest.fixture(scope="module")
def s3(standalone_s3: S3Client) -> S3Client:
    """S3 without the emulator: these modules test its parts on their own."""
    return standalone_s3


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"stages-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return name


def _put(s3: S3Client, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b.tar.gz", ("bucket", "a/b.tar.gz")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("https://my.bucket.s3.us-east-1.amazonaws.com/ckpt/x", ("my.bucket", "ckpt/x")),
        ("https://bucket.s3-eu-west-1.amazonaws.com/k", ("bucket", "k")),
        ("https://s3.us-east-1.amazonaws.com/bucket/ckpt", ("bucket", "ckpt")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["bucket/key", "s3:///key", "ftp://b/k", "https://"])
def test_parse_s3_uri_refuses_other_uris(uri: str) -> None:
    with pytest.raises(StageError):
        parse_s3_uri(uri)


def test_iter_keys_paginates_and_skips_folder_markers(s3: S3Client, bucket: str) -> None:
    _put(s3, bucket, {f"p/{i}": b"x" * i for i in range(5)} | {"p/folder/": b"", "q/0": b""})
    calls: list[str] = []

    def count_call(**kwargs: Any) -> None:
        calls.append(kwargs["params"]["url_path"])

    s3.meta.events.register("before-call.s3.ListObjectsV2", count_call)
    try:
        keys = list(iter_keys(s3, bucket, "p/", page_size=2))
    finally:
        s3.meta.events.unregister("before-call.s3.ListObjectsV2", count_call)
    assert keys == [(f"p/{i}", i) for i in range(5)]
    assert len(calls) == 3  # 2 + 2 + 1 (+ the marker): one call per page


def _request(bucket: str, **extra: Any) -> dict[str, Any]:
    def channel(name: str, uri: str) -> dict[str, Any]:
        source = {"S3DataType": "S3Prefix", "S3Uri": uri}
        return {"ChannelName": name, "DataSource": {"S3DataSource": source}}

    return {
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "HyperParameters": {"epochs": "3", "sagemaker_program": '"train.py"'},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
        "InputDataConfig": [
            channel("train", f"s3://{bucket}/data/train"),
            channel("test", f"s3://{bucket}/data/test.csv") | {"ContentType": "text/csv"},
            channel("all", f"s3://{bucket}/data/"),
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/out/"},
        **extra,
    }


def test_download_inputs_fills_channels_and_config(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    _put(
        s3,
        bucket,
        {
            "data/train/a.csv": b"1,2",
            "data/train/sub/b.csv": b"3,4",
            "data/train-extra/c.csv": b"5,6",
            "data/test.csv": b"7,8",
            "elsewhere/d.csv": b"9",
        },
    )
    box = Sandbox.create(tmp_path, "job-1", {}, host="algo-2")
    download_inputs(s3, box, _request(bucket))

    assert _files(box.channel_dir("train")) == {
        "a.csv": b"1,2",
        "sub/b.csv": b"3,4",
        "train-extra/c.csv": b"5,6",  # the prefix "data/train" also matches "data/train-extra"
    }
    assert _files(box.channel_dir("test")) == {"test.csv": b"7,8"}
    assert set(_files(box.channel_dir("all"))) == {
        "train/a.csv",
        "train/sub/b.csv",
        "train-extra/c.csv",
        "test.csv",
    }
    config = box.input_config_dir
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "epochs": "3",
        "sagemaker_program": '"train.py"',
    }
    data_config = json.loads((config / "inputdataconfig.json").read_text())
    assert data_config["test"] == {
        "ContentType": "text/csv",
        "RecordWrapperType": "None",
        "S3DistributionType": "FullyReplicated",
        "TrainingInputMode": "File",
    }
    assert sorted(data_config) == ["all", "test", "train"]
    resource = json.loads((config / "resourceconfig.json").read_text())
    assert resource["current_host"] == "algo-2"
    assert resource["hosts"] == ["algo-1", "algo-2"]
    assert resource["current_instance_type"] == "ml.m5.large"


def test_download_refuses_a_key_escaping_its_channel(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    _put(s3, bucket, {"data/train/../../../../escape.txt": b"evil"})
    box = Sandbox.create(tmp_path, "job-1", {})
    request = _request(bucket)
    request["InputDataConfig"] = request["InputDataConfig"][:1]
    with pytest.raises(SandboxError):
        download_inputs(s3, box, request)
    assert not list(tmp_path.rglob("escape.txt"))


def test_download_refuses_a_symlinked_folder_leading_out(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    _put(s3, bucket, {"data/train/sub/deep/x.csv": b"evil"})
    box = Sandbox.create(tmp_path, "job-1", {})
    outside = tmp_path / "outside"
    outside.mkdir()
    box.channel_dir("train").mkdir(parents=True)
    (box.channel_dir("train") / "sub").symlink_to(outside)
    request = _request(bucket)
    request["InputDataConfig"] = request["InputDataConfig"][:1]
    with pytest.raises(SandboxError):
        download_inputs(s3, box, request)
    assert list(outside.iterdir()) == []


def test_unsupported_data_source_is_a_stage_error(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    box = Sandbox.create(tmp_path, "job-1", {})
    request = _request(bucket)
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    with pytest.raises(StageError, match="ManifestFile"):
        download_inputs(s3, box, request)


def test_missing_bucket_raises_the_s3_error(s3: S3Client, tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", {})
    with pytest.raises(s3.exceptions.NoSuchBucket):
        download_inputs(s3, box, _request("no-such-bucket"))


def _tar_members(s3: S3Client, uri: str) -> dict[str, bytes]:
    bucket, key = parse_s3_uri(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_upload_model_packs_the_model_dir(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", {})
    (box.model_dir / "model.npy").write_bytes(b"weights")
    (box.model_dir / "sub").mkdir()
    (box.model_dir / "sub" / "meta.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for S3")
    (box.model_dir / "leak").symlink_to(secret)

    uri = upload_model(s3, box, _request(bucket), "job-1")

    assert uri == f"s3://{bucket}/out/job-1/output/model.tar.gz"
    assert _tar_members(s3, uri) == {"model.npy": b"weights", "sub/meta.json": b"{}"}
    listed = [k for k, _ in iter_keys(s3, bucket, "out/")]
    assert listed == ["out/job-1/output/model.tar.gz"]  # output/data was empty: no output.tar.gz
    assert [p.name for p in box.root.glob("*.tar.gz")] == []


def test_upload_model_also_packs_output_data(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-2", {})
    (box.output_data_dir / "eval.txt").write_text("auc=0.9")
    request = _request(bucket, OutputDataConfig={"S3OutputPath": f"s3://{bucket}"})
    uri = upload_model(s3, box, request, "job-2")
    assert uri == f"s3://{bucket}/job-2/output/model.tar.gz"
    assert _tar_members(s3, uri) == {}
    output = f"s3://{bucket}/job-2/output/output.tar.gz"
    assert _tar_members(s3, output) == {"eval.txt": b"auc=0.9"}


def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_fetch_source_from_s3_tarball(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    body = _tarball({"train.py": b"print(1)", "pkg/util.py": b"X = 1"})
    _put(s3, bucket, {"src/sourcedir.tar.gz": body})
    box = Sandbox.create(tmp_path, "job-1", {})
    (box.code_dir / "stale.py").write_text("old")
    code = fetch_source(s3, box, f"s3://{bucket}/src/sourcedir.tar.gz")
    assert code == box.code_dir
    assert _files(code) == {"train.py": b"print(1)", "pkg/util.py": b"X = 1"}


def test_fetch_source_refuses_members_escaping(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    _put(s3, bucket, {"evil.tar.gz": _tarball({"../../../evil.py": b"x", "/abs.py": b"y"})})
    box = Sandbox.create(tmp_path, "job-1", {})
    with pytest.raises(tarfile.FilterError):
        fetch_source(s3, box, f"s3://{bucket}/evil.tar.gz")
    assert not list(tmp_path.rglob("evil.py"))
    assert not Path("/abs.py").exists()


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_fetch_source_copies_a_local_dir(tmp_path: Path, s3: S3Client, scheme: str) -> None:
    source = tmp_path / "src"
    (source / "__pycache__").mkdir(parents=True)
    (source / "train.py").write_text("print(1)")
    (source / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (source / "link.py").symlink_to(source / "train.py")
    box = Sandbox.create(tmp_path / "data", "job-1", {})
    code = fetch_source(s3, box, f"{scheme}{source}")
    assert _files(code) == {"train.py": b"print(1)"}
    (code / "train.py").write_text("changed by the job")
    assert (source / "train.py").read_text() == "print(1)"


def test_fetch_source_accepts_a_local_tarball(tmp_path: Path, s3: S3Client) -> None:
    archive = tmp_path / "sourcedir.tar.gz"
    archive.write_bytes(_tarball({"train.py": b"print(2)"}))
    box = Sandbox.create(tmp_path / "data", "job-1", {})
    assert _files(fetch_source(s3, box, str(archive))) == {"train.py": b"print(2)"}


@pytest.mark.parametrize("source", ["relative/src", "/no/such/dir", "file://no/such"])
def test_fetch_source_refuses_bad_local_sources(tmp_path: Path, s3: S3Client, source: str) -> None:
    box = Sandbox.create(tmp_path, "job-1", {})
    with pytest.raises(StageError):
        fetch_source(s3, box, source)


def test_failure_reason_reads_the_failure_file(tmp_path: Path) -> None:
    box = Sandbox.create(tmp_path, "job-1", {})
    assert failure_reason(box) is None
    (box.output_dir / "failure").write_text("  ValueError: bad input\n" + "x" * 2000)
    reason = failure_reason(box)
    assert reason is not None
    assert reason.startswith("ValueError: bad input")
    assert len(reason) == 1024
