"""What to verify and how: the trainer (script mode or a full request) and the options.

Both are checked before anything starts; a bad value raises :class:`VerifyUsageError` naming the
field, the value and the rule.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_spot_provider.exceptions import SpotProviderError, shown
from airflow_spot_provider.verify.artifacts import Tolerance

# A script-mode framework image: on AWS it runs the entry point; the embedded backend runs the
# same script mode with the local Python.
DEFAULT_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
ROLE_ARN = "arn:aws:iam::123456789012:role/spot-verify-resume"
# SageMaker's ChannelName is at most 64 characters (botocore's model).
CHANNEL_NAME_MAX_CHARS = 64


class VerifyUsageError(SpotProviderError, ValueError):
    """The verification was asked for with a bad input (the message names field, value, rule).

    :param message: the whole message.
    :param field: the field named, when the error is about one (the CLI names its option).
    :param value: the value given.
    :param rule: the rule it breaks.
    """

    def __init__(
        self, message: str, *, field: str | None = None, value: Any = None, rule: str = ""
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.rule = rule


def _fail(name: str, value: Any, rule: str) -> VerifyUsageError:
    # The value is shown clipped: a path or a script name can be of any size.
    return VerifyUsageError(f"{name}={shown(value)}: {rule}", field=name, value=value, rule=rule)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the OS, a loop of links: no directory either
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # as in _is_dir
        return False


@dataclass(frozen=True)
class TrainerSpec:
    """The trainer to verify: script mode (``source_dir`` + ``entry_point``) or ``request``.

    :param source_dir: the directory holding the entry point (uploaded as ``sourcedir.tar.gz``).
    :param entry_point: the script, relative to ``source_dir`` (``train.py``).
    :param hyperparameters: the script's hyperparameters (JSON-encoded into the request).
    :param data: channel name -> a local directory uploaded as that input channel.
    :param request: a full CreateTrainingJob request instead of script mode; ``source_dir`` and
        ``data``, when given, replace its ``sagemaker_submit_directory`` and channels.
    :param instance_type: the instance type of the runs.
    :param image: the training image of script mode.
    """

    source_dir: Path | None = None
    entry_point: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Path] = field(default_factory=dict)
    request: Mapping[str, Any] | None = None
    instance_type: str = DEFAULT_INSTANCE_TYPE
    image: str = DEFAULT_IMAGE

    def __post_init__(self) -> None:
        if self.source_dir is not None:
            object.__setattr__(self, "source_dir", Path(self.source_dir))
        object.__setattr__(self, "data", {k: Path(v) for k, v in self.data.items()})
        if self.request is None:
            self._check_script()
        elif not isinstance(self.request, Mapping):
            raise _fail("request", type(self.request).__name__, "must be a JSON object")
        elif self.entry_point is not None:
            raise _fail("entry_point", self.entry_point, "give it in script mode, not with request")
        if self.source_dir is not None and not _is_dir(self.source_dir):
            raise _fail("source_dir", str(self.source_dir), "must be an existing directory")
        for channel, directory in self.data.items():
            plain = channel.replace("-", "").replace("_", "").isalnum()
            if not plain or len(channel) > CHANNEL_NAME_MAX_CHARS:
                rule = f"a channel name is 1-{CHANNEL_NAME_MAX_CHARS} letters, digits, - and _"
                raise _fail("data", channel, rule)
            if not _is_dir(directory):
                raise _fail(f"data[{channel}]", str(directory), "must be an existing directory")
        if not self.instance_type.startswith("ml."):
            raise _fail("instance_type", self.instance_type, "must be an ml.* instance type")

    def _check_script(self) -> None:
        if self.source_dir is None:
            raise _fail("source_dir", None, "required in script mode (or give a request)")
        if not _is_dir(Path(self.source_dir)):
            raise _fail("source_dir", str(self.source_dir), "must be an existing directory")
        if not self.entry_point:
            raise _fail("entry_point", self.entry_point, "required in script mode")
        rel = PurePosixPath(self.entry_point)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix != ".py":
            raise _fail("entry_point", self.entry_point, "a .py path inside source_dir")
        if not _is_file(Path(self.source_dir) / rel):
            raise _fail("entry_point", self.entry_point, f"not found in {self.source_dir}")

    def base_request(self, source_uri: str | None, channels: Mapping[str, str]) -> dict[str, Any]:
        """The request every run starts from (no name, no spot or checkpoint settings yet).

        :param source_uri: where ``source_dir`` was uploaded (None: not given).
        :param channels: channel name -> ``s3://`` prefix of the uploaded data.
        """
        if self.request is not None:
            request = copy.deepcopy(dict(self.request))
        else:
            request = {
                "AlgorithmSpecification": {
                    "TrainingImage": self.image,
                    "TrainingInputMode": "File",
                },
                "HyperParameters": {k: json.dumps(v) for k, v in self.hyperparameters.items()},
                "ResourceConfig": {
                    "InstanceType": self.instance_type,
                    "InstanceCount": 1,
                    "VolumeSizeInGB": 1,
                },
            }
            request["HyperParameters"]["sagemaker_program"] = json.dumps(self.entry_point)
        request.setdefault("RoleArn", ROLE_ARN)
        if source_uri is not None:
            hps = request.setdefault("HyperParameters", {})
            hps["sagemaker_submit_directory"] = json.dumps(source_uri)
        if channels:
            given = [
                c for c in request.get("InputDataConfig") or [] if c["ChannelName"] not in channels
            ]
            request["InputDataConfig"] = given + [
                _channel(n, u) for n, u in sorted(channels.items())
            ]
        return request


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


def run_request(
    base: Mapping[str, Any], job_name: str, max_runtime: int, bucket: str
) -> dict[str, Any]:
    """One run's request: spot, its own checkpoint prefix, its own output path.

    :param base: from :meth:`TrainerSpec.base_request`.
    :param job_name: the run's job name.
    :param max_runtime: ``MaxRuntimeInSeconds``.
    :param bucket: the verification's bucket.
    """
    request = copy.deepcopy(dict(base))
    request["TrainingJobName"] = job_name
    request["EnableManagedSpotTraining"] = True
    checkpoint = dict(request.get("CheckpointConfig") or {})
    checkpoint["S3Uri"] = checkpoint_uri(bucket, job_name)
    request["CheckpointConfig"] = checkpoint
    request["OutputDataConfig"] = {"S3OutputPath": f"s3://{bucket}/models/"}
    request["StoppingCondition"] = {
        "MaxRuntimeInSeconds": max_runtime,
        "MaxWaitTimeInSeconds": max_runtime * 2,
    }
    return request


def checkpoint_uri(bucket: str, job_name: str) -> str:
    """The checkpoint prefix of a run (one per run, so that runs cannot share checkpoints).

    :param bucket: the verification's bucket.
    :param job_name: the run's job name.
    """
    return f"s3://{bucket}/checkpoints/{job_name}/"


def _positive(name: str, value: float, *, upper: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= upper:
        raise _fail(name, value, f"must be a number > 0 and <= {upper:g}")


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify.

    :param runs: interrupted runs (1-20; the first four cover the four kinds of the plan).
    :param seed: seed of the random interruption points.
    :param tolerance: how close the models must be (default: bit-identical).
    :param max_lost_seconds: work one interruption may cost; default one checkpoint interval of
        the reference plus the timing noise.
    :param require_sigterm_checkpoint: fail unless the trainer saves on SIGTERM.
    :param notice_seconds: SIGTERM to SIGKILL (EC2 gives 120 s; short here to be quick).
    :param sync_seconds: the backend's checkpoint upload interval.
    :param listing_seconds: how often the checkpoint prefixes are listed.
    :param timeout_seconds: how long a run may take before the verification gives up.
    :param max_runtime_seconds: ``MaxRuntimeInSeconds`` of each run.
    """

    runs: int = 4
    seed: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance)
    max_lost_seconds: float | None = None
    require_sigterm_checkpoint: bool = False
    notice_seconds: float = 2.0
    sync_seconds: float = 0.2
    listing_seconds: float = 0.05
    timeout_seconds: float = 600.0
    max_runtime_seconds: int = 3600

    def __post_init__(self) -> None:
        if (
            isinstance(self.runs, bool)
            or not isinstance(self.runs, int)
            or not 1 <= self.runs <= 20
        ):
            raise _fail("runs", self.runs, "must be an integer from 1 to 20")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise _fail("seed", self.seed, "must be an integer")
        if self.max_lost_seconds is not None:
            _positive("max_lost_seconds", self.max_lost_seconds)
        _positive("notice_seconds", self.notice_seconds, upper=120)
        _positive("sync_seconds", self.sync_seconds, upper=60)
        _positive("listing_seconds", self.listing_seconds, upper=5)
        _positive("timeout_seconds", self.timeout_seconds)
        _positive("max_runtime_seconds", self.max_runtime_seconds, upper=2_419_200)

    @property
    def lag(self) -> float:
        """Seconds from a checkpoint's write to its listing, at most: one sync, two listings."""
        return self.sync_seconds + 2 * self.listing_seconds

    @property
    def slack(self) -> float:
        """Seconds of timing noise in the figures: the lag plus start-up jitter."""
        return self.lag + 0.5
