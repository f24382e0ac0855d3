"""The file stages of a training job around its process: ``Downloading`` and ``Uploading``.

Both are synchronous (a boto3 client bound to the emulator's S3); the job state machine runs them
with :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Virtual-hosted style: https://<bucket>.s3[.-]<region>.amazonaws.com/<key>
_VIRTUAL_HOST_RE = re.compile(r"^(?P<bucket>[^.]+(?:\.[^.]+)*?)\.s3[.-]")


class StageError(ValueError):
    """An input or output stage cannot be done as the request asks (unsupported data type...)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` (or an ``https://`` S3 URL, as CheckpointConfig admits).

    :param uri: the URI.
    :returns: ``(bucket, key)``; the key may be empty.
    :raises StageError: not an S3 URI.
    """
    parts = urlsplit(uri)
    if parts.scheme == "s3" and parts.netloc:
        return parts.netloc, parts.path.lstrip("/")
    if parts.scheme == "https" and parts.netloc:
        virtual = _VIRTUAL_HOST_RE.match(parts.netloc)
        if virtual:
            return virtual.group("bucket"), parts.path.lstrip("/")
        bucket, _, key = parts.path.lstrip("/").partition("/")
        if bucket:
            return bucket, key
    raise StageError(f"{uri!r} is not an S3 URI (s3://bucket/key)")


def safe_relative(rel: str) -> PurePosixPath:
    """Check that an S3-derived relative path stays inside the directory it is written to.

    :param rel: a ``/``-separated relative path taken from an object key.
    :raises SandboxError: absolute, empty, or holding ``..``.
    """
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or rel.startswith("/") or ".." in parts or any("\x00" in p for p in parts):
        raise SandboxError(f"object path {rel!r} would leave its directory")
    return PurePosixPath(*parts)


def iter_keys(
    s3: S3Client, bucket: str, prefix: str, page_size: int = 1000
) -> Iterator[tuple[str, int]]:
    """Every object under ``prefix`` (paginated), as ``(key, size)``; folder markers skipped.

    :param s3: the S3 client.
    :param bucket: the bucket.
    :param prefix: the key prefix.
    :param page_size: keys per ListObjectsV2 call (S3 returns at most 1,000).
    """
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith("/"):
                yield key, obj.get("Size", 0)


def _check_within(path: Path, real_root: Path, target: Path) -> None:
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise SandboxError(f"{target} resolves outside {real_root}")


def download_to(s3: S3Client, bucket: str, key: str, target: Path, root: Path) -> None:
    """Download one object to ``target``, which must resolve inside ``root``.

    :param s3: the S3 client.
    :param bucket: the bucket.
    :param key: the key.
    :param target: the local file.
    :param root: the directory ``target`` must stay in, even through symlinks.
    """
    real_root = root.resolve()
    # Check the deepest existing ancestor before mkdir, so that a symlinked folder cannot make
    # mkdir create directories outside the root; then check the parent itself.
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    _check_within(existing, real_root, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_within(target.parent, real_root, target)
    if target.is_symlink():
        target.unlink()
    s3.download_file(bucket, key, str(target))


def _relative_to_prefix(key: str, prefix: str) -> str:
    """The path of ``key`` inside its channel, for an ``S3Prefix`` data source.

    *Unverified* in SageMaker's docs for a prefix that ends mid-name (``data/tr`` matching
    ``data/train/a.csv``): the path is then taken from the prefix's last ``/`` on.
    """
    if key == prefix:
        return PurePosixPath(key).name
    if prefix.endswith("/") or key.startswith(prefix + "/"):
        return key[len(prefix) :].lstrip("/")
    return key[prefix.rfind("/") + 1 :]


def _download_channel(s3: S3Client, sandbox: Sandbox, channel: Mapping[str, Any]) -> int:
    name = str(channel["ChannelName"])
    source = (channel.get("DataSource") or {}).get("S3DataSource")
    target_dir = sandbox.channel_dir(name)
    target_dir.mkdir(parents=True, exist_ok=True)
    if source is None:
        raise StageError(f"channel {name!r}: only S3DataSource is supported by the emulator")
    data_type = source.get("S3DataType", "S3Prefix")
    if data_type != "S3Prefix":
        raise StageError(f"channel {name!r}: S3DataType {data_type!r} is not supported")
    # Every host gets every object: ShardedByS3Key is not emulated (one host per sandbox).
    bucket, prefix = parse_s3_uri(str(source["S3Uri"]))
    count = 0
    for key, _size in iter_keys(s3, bucket, prefix):
        rel = safe_relative(_relative_to_prefix(key, prefix))
        download_to(s3, bucket, key, target_dir.joinpath(*rel.parts), target_dir)
        count += 1
    log.debug("channel %s: %d object(s) from s3://%s/%s", name, count, bucket, prefix)
    return count


def hosts_of(request: Mapping[str, Any]) -> list[str]:
    """SageMaker's host names for the request's ``ResourceConfig.InstanceCount``.

    :param request: the CreateTrainingJob request.
    """
    count = int((request.get("ResourceConfig") or {}).get("InstanceCount") or 1)
    return [f"algo-{i}" for i in range(1, max(count, 1) + 1)]


def resource_config(request: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The content of ``resourceconfig.json`` for ``host``.

    :param request: the CreateTrainingJob request.
    :param host: the current host.
    """
    hosts = hosts_of(request)
    instance_type = (request.get("ResourceConfig") or {}).get("InstanceType", "")
    return {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": hosts,
            }
        ],
        "network_interface_name": "eth0",
    }


def input_data_config(request: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The content of ``inputdataconfig.json``.

    :param request: the CreateTrainingJob request.
    """
    default_mode = (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File")
    config: dict[str, dict[str, Any]] = {}
    for channel in request.get("InputDataConfig") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        entry = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if "ContentType" in channel:
            entry["ContentType"] = channel["ContentType"]
        config[str(channel["ChannelName"])] = entry
    return config


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def download_inputs(s3: S3Client, sandbox: Sandbox, request: Mapping[str, Any]) -> None:
    """The ``Downloading`` stage: input channels into the sandbox and the config files.

    Every channel is read in File mode (Pipe and FastFile too); ``S3Prefix`` only.

    :param s3: the S3 client.
    :param sandbox: the host's sandbox.
    :param request: the CreateTrainingJob request.
    :raises StageError: a channel the emulator cannot serve.
    :raises SandboxError: an object key that would be written outside its channel dir.
    :raises botocore.exceptions.ClientError: S3 refused (missing bucket...).
    """
    config = sandbox.input_config_dir
    _write_json(config / "hyperparameters.json", dict(request.get("HyperParameters") or {}))
    _write_json(config / "inputdataconfig.json", input_data_config(request))
    _write_json(config / "resourceconfig.json", resource_config(request, sandbox.host))
    for channel in request.get("InputDataConfig") or []:
        _download_channel(s3, sandbox, channel)


def model_artifact_uri(request: Mapping[str, Any], job_name: str, name: str = "model") -> str:
    """``<S3OutputPath>/<job>/output/<name>.tar.gz``.

    :param request: the CreateTrainingJob request.
    :param job_name: the job's name.
    :param name: ``model`` or ``output``.
    """
    output_path = str((request.get("OutputDataConfig") or {})["S3OutputPath"])
    bucket, prefix = parse_s3_uri(output_path)
    key = "/".join(p for p in (prefix.strip("/"), job_name, "output", f"{name}.tar.gz") if p)
    return f"s3://{bucket}/{key}"


def _pack(directory: Path, tarball: Path) -> None:
    """Pack the regular files of ``directory`` (paths relative to it), skipping symlinks."""
    with tarfile.open(tarball, "w:gz") as tar:
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if path.is_file() and not path.is_symlink():
                    tar.add(path, arcname=path.relative_to(directory).as_posix())


def _upload_dir(s3: S3Client, sandbox: Sandbox, directory: Path, uri: str) -> None:
    bucket, key = parse_s3_uri(uri)
    fd, name = tempfile.mkstemp(suffix=".tar.gz", dir=sandbox.root)
    os.close(fd)
    try:
        _pack(directory, Path(name))
        s3.upload_file(name, bucket, key)
    finally:
        os.unlink(name)


def upload_model(s3: S3Client, sandbox: Sandbox, request: Mapping[str, Any], job_name: str) -> str:
    """The ``Uploading`` stage: the model dir to ``<S3OutputPath>/<job>/output/model.tar.gz``.

    As SageMaker does, a non-empty ``/opt/ml/output/data`` also goes to ``output.tar.gz`` beside it.

    :param s3: the S3 client.
    :param sandbox: the host's sandbox.
    :param request: the CreateTrainingJob request (``OutputDataConfig.S3OutputPath``).
    :param job_name: the job's name.
    :returns: the ``s3://`` URI of model.tar.gz (``ModelArtifacts.S3ModelArtifacts``).
    """
    uri = model_artifact_uri(request, job_name)
    _upload_dir(s3, sandbox, sandbox.model_dir, uri)
    if sandbox.output_data_dir.is_dir() and any(sandbox.output_data_dir.iterdir()):
        output_uri = model_artifact_uri(request, job_name, "output")
        _upload_dir(s3, sandbox, sandbox.output_data_dir, output_uri)
    return uri


def failure_reason(sandbox: Sandbox, max_chars: int = 1024) -> str | None:
    """The text the job wrote to ``/opt/ml/output/failure``, which SageMaker reports as reason.

    :param sandbox: the host's sandbox.
    :param max_chars: the longest text returned (FailureReason holds 1,024 characters).
    """
    path = sandbox.output_dir / "failure"
    if not path.is_file() or path.is_symlink():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    return text[:max_chars] or None


def _extract(tarball: Path, target: Path) -> None:
    """Extract a source tarball; the ``data`` filter refuses members that leave ``target``.

    Absolute names, ``..``, links pointing outside and device files raise ``tarfile.FilterError``.
    """
    with tarfile.open(tarball, "r:*") as tar:
        tar.extractall(target, filter="data")


def _ignored(directory: str, names: list[str]) -> set[str]:
    """What a local source copy leaves out: caches, and symlinks (a link could lead the copy
    out of the source tree, or let the job write back into the source)."""
    skipped = {"__pycache__", ".git"}
    return {
        n
        for n in names
        if n in skipped or n.endswith(".pyc") or os.path.islink(os.path.join(directory, n))
    }


def fetch_source(s3: S3Client, sandbox: Sandbox, submit_directory: str) -> Path:
    """Put the script-mode source into ``sandbox.code_dir`` (``/opt/ml/code``), emptied first.

    The source is copied, never used in place, so that the job cannot modify it.

    :param s3: the S3 client.
    :param sandbox: the host's sandbox.
    :param submit_directory: ``sagemaker_submit_directory``: ``s3://.../sourcedir.tar.gz``, an
        absolute local directory (or ``.tar.gz`` file), or the same as a ``file://`` URI.
    :returns: the code dir.
    :raises StageError: the source is missing or of an unsupported kind.
    :raises tarfile.FilterError: a tarball member would leave the code dir.
    """
    code_dir = sandbox.code_dir
    if code_dir.exists():
        shutil.rmtree(code_dir)
    code_dir.mkdir(parents=True)
    if submit_directory.startswith("s3://"):
        bucket, key = parse_s3_uri(submit_directory)
        fd, name = tempfile.mkstemp(suffix=".tar.gz", dir=sandbox.root)
        os.close(fd)
        try:
            s3.download_file(bucket, key, name)
            _extract(Path(name), code_dir)
        finally:
            os.unlink(name)
        return code_dir
    local = submit_directory.removeprefix("file://")
    source = Path(local)
    if not source.is_absolute():
        raise StageError(f"sagemaker_submit_directory {submit_directory!r} must be absolute")
    if source.is_dir():
        shutil.copytree(source, code_dir, ignore=_ignored, dirs_exist_ok=True)
    elif source.is_file() and tarfile.is_tarfile(source):
        _extract(source, code_dir)
    else:
        raise StageError(f"sagemaker_submit_directory {submit_directory!r} is not a directory")
    return code_dir
