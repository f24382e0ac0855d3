"""Running the trainer on the embedded backend and reading what the runs leave behind.

Everything goes through real boto3 clients (SageMaker, S3, CloudWatch Logs) and the backend's
admin API (scenario events that interrupt a job at a training second; the event log that says
when SIGTERM was sent). No sandbox path is read: the checkpoint prefix in S3 is the evidence.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_spot_provider.emulator.config import Durations, EmulatorConfig
from airflow_spot_provider.emulator.server import SpotEmulator
from airflow_spot_provider.lifecycle import SpotJobReport, TrainingJobStatus, json_safe
from airflow_spot_provider.progress import list_checkpoint_objects, split_s3_uri
from airflow_spot_provider.verify.evidence import (
    CheckpointTimeline,
    Listing,
    LogLine,
    RunEvidence,
    Stored,
    attempts_of,
    interrupt_times,
)
from airflow_spot_provider.verify.spec import VerifyOptions, checkpoint_uri, run_request

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Describe calls only tell when a run has ended: no need to be quick (the clock is the backend's).
_POLL_SECONDS = 0.25


def emulator_config(data_dir: Path, options: VerifyOptions) -> EmulatorConfig:
    """The backend's configuration for a verification: short phases, the notice asked for.

    :param data_dir: the backend's data dir.
    :param options: the verification options.
    """
    durations = Durations(
        starting_seconds=0.2,
        downloading_min_seconds=0.1,
        uploading_min_seconds=0.05,
        stopping_seconds=0.05,
        interruption_notice_seconds=options.notice_seconds,
        # Long enough for the final sync's objects to be listed before the restart restores.
        restart_delay_seconds=0.3,
    )
    return EmulatorConfig(
        data_dir=data_dir,
        durations=durations,
        tick_seconds=0.05,
        checkpoint_sync_seconds=options.sync_seconds,
    )


class CheckpointWatcher:
    """Lists the checkpoint prefix of every watched run, over and over, in a thread.

    :param s3: a boto3 S3 client (used by the watcher thread only).
    :param interval: seconds between two rounds of listings.
    """

    def __init__(self, s3: Any, interval: float) -> None:
        self._s3 = s3
        self._interval = interval
        self._listings: dict[str, list[Listing]] = {}
        self._uris: dict[str, str] = {}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spot-verify-watch", daemon=True)

    def watch(self, job_name: str, uri: str) -> None:
        """Start listing a run's prefix.

        :param job_name: the run's job name.
        :param uri: its checkpoint prefix.
        """
        with self._lock:
            self._uris[job_name] = uri
            self._listings.setdefault(job_name, [])
        if not self._thread.is_alive():
            self._thread.start()

    def unwatch(self, job_name: str) -> None:
        """Stop listing a run's prefix (its job ended), after one last listing.

        :param job_name: the run's job name.
        """
        self._record(job_name)
        with self._lock:
            self._done.add(job_name)

    def timeline(self, job_name: str) -> CheckpointTimeline:
        """The listings of a run so far, plus one taken now.

        :param job_name: the run's job name.
        """
        self._record(job_name)
        with self._lock:
            return CheckpointTimeline(tuple(self._listings.get(job_name, ())))

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                names = [n for n in self._listings if n not in self._done]
            for name in names:
                try:
                    self._record(name)
                except Exception:  # one failed listing is a gap, not the end of the watch
                    continue
            self._stop.wait(self._interval)

    def _record(self, job_name: str) -> None:
        moment = time.time()
        objects = list_checkpoints(self._s3, self._uris[job_name])
        with self._lock:
            self._listings.setdefault(job_name, []).append(Listing(moment, objects))


def list_checkpoints(s3: Any, uri: str) -> dict[str, Stored]:
    """Key relative to the prefix -> every object under a checkpoint prefix.

    :param s3: a boto3 S3 client.
    :param uri: the ``s3://`` prefix, ending with ``/``.
    """
    start = len(split_s3_uri(uri)[1])
    return {
        o.key[start:]: Stored(o.etag, o.size, o.last_modified.timestamp())
        for o in list_checkpoint_objects(s3, uri)
    }


class VerifyBackend:
    """The embedded backend of one verification, with its clients and the watcher.

    :param data_dir: the backend's data dir (its own temporary dir when None).
    :param options: the verification options.
    """

    def __init__(self, data_dir: Path | None, options: VerifyOptions) -> None:
        self._options = options
        self._own_dir: Any = None
        if data_dir is None:
            import tempfile

            self._own_dir = tempfile.TemporaryDirectory(prefix="spot-verify-")
            data_dir = Path(self._own_dir.name)
        self.emulator = SpotEmulator(config=emulator_config(Path(data_dir), options))
        # A data dir the user gives may serve other runs: a bucket and names of this verification.
        self.token = secrets.token_hex(4)
        self.bucket = f"spot-verify-{self.token}"
        self.sagemaker: Any = None
        self.s3: Any = None
        self.logs: Any = None
        self.watcher: CheckpointWatcher | None = None

    def __enter__(self) -> VerifyBackend:
        # The emulator prints its connection on start: keep stdout for the report.
        with contextlib.redirect_stdout(io.StringIO()):
            self.emulator.start()
        self.sagemaker = self.emulator.boto3_client("sagemaker")
        self.s3 = self.emulator.boto3_client("s3")
        self.logs = self.emulator.boto3_client("logs")
        self.s3.create_bucket(Bucket=self.bucket)
        self.watcher = CheckpointWatcher(
            self.emulator.boto3_client("s3"), self._options.listing_seconds
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.watcher is not None:
            self.watcher.close()
        try:
            self._drop_bucket()
        finally:
            self.emulator.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    def _drop_bucket(self) -> None:
        """Delete the verification's objects, so that a data dir the user gave does not fill up."""
        if self.s3 is None:
            return
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        self.s3.delete_bucket(Bucket=self.bucket)

    def request(self, base: Mapping[str, Any], suffix: str, max_runtime: int) -> dict[str, Any]:
        """The request of one run of this verification.

        :param base: from :meth:`TrainerSpec.base_request`.
        :param suffix: ``reference``, ``run-1``...
        :param max_runtime: ``MaxRuntimeInSeconds``.
        """
        return run_request(base, self.job_name(suffix), max_runtime, self.bucket)

    def job_name(self, suffix: str) -> str:
        """A job name of this verification (its checkpoint prefix and model path follow).

        :param suffix: ``reference``, ``run-1``...
        """
        return f"verify-{self.token}-{suffix}"

    # -- inputs -------------------------------------------------------------------------------

    def upload_source(self, source_dir: Path) -> str:
        """``sourcedir.tar.gz`` of a directory to S3, as the SageMaker SDK does.

        :param source_dir: the trainer's directory.
        :returns: its ``s3://`` URI.
        """
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(source_dir.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.add(path, arcname=path.relative_to(source_dir).as_posix())
        key = "code/sourcedir.tar.gz"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())
        return f"s3://{self.bucket}/{key}"

    def upload_data(self, channel: str, directory: Path) -> str:
        """A local directory to S3 as an input channel's prefix.

        :param channel: the channel name.
        :param directory: the local directory.
        :returns: the ``s3://`` prefix.
        """
        prefix = f"data/{channel}/"
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(directory).as_posix()
                self.s3.upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{prefix}"

    # -- runs ---------------------------------------------------------------------------------

    def start(self, request: Mapping[str, Any], scenario: list[dict[str, Any]]) -> str:
        """Load a run's interruptions, then create its job and watch its checkpoints.

        :param request: the CreateTrainingJob request.
        :param scenario: the backend's scenario events of the run.
        :returns: the job name.
        """
        name = str(request["TrainingJobName"])
        if scenario:
            self.emulator.admin.load_scenario(scenario)
        assert self.watcher is not None
        self.watcher.watch(name, checkpoint_uri(self.bucket, name))
        self.sagemaker.create_training_job(**request)
        return name

    def wait(self, names: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Describe the jobs until each has ended; their last descriptions.

        :param names: the job names.
        :param timeout: seconds; a job still running then is stopped and reported as it ends.
        """
        pending = set(names)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        stopped: set[str] = set()
        while pending:
            for name in sorted(pending):
                described = self.sagemaker.describe_training_job(TrainingJobName=name)
                if TrainingJobStatus(described["TrainingJobStatus"]).is_terminal:
                    done[name] = described
                    pending.discard(name)
                    assert self.watcher is not None
                    self.watcher.unwatch(name)
                elif time.monotonic() > deadline and name not in stopped:
                    self.sagemaker.stop_training_job(TrainingJobName=name)
                    stopped.add(name)
            if pending:
                time.sleep(_POLL_SECONDS)
        return done

    def evidence(self, name: str, described: Mapping[str, Any]) -> RunEvidence:
        """Everything a finished run left: checkpoints over time, attempts, SIGTERMs, log, model.

        :param name: the job name.
        :param described: its last description.
        """
        assert self.watcher is not None
        report = SpotJobReport.from_describe(described)
        return RunEvidence(
            job_name=name,
            description=json_safe(dict(described)),
            attempts=tuple(attempts_of(report.transitions)),
            interrupts=interrupt_times(self.emulator.admin.events(job=name, kind="interrupt")),
            timeline=self.watcher.timeline(name),
            log_lines=tuple(self.log_lines(name)),
            model=self.model(described) if report.status is TrainingJobStatus.COMPLETED else None,
        )

    def log_lines(self, name: str) -> list[LogLine]:
        """The trainer's output of a job, from CloudWatch Logs (every stream of the job).

        :param name: the job name.
        """
        streams = self.logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=name + "/"
        )
        lines: list[LogLine] = []
        for stream in streams.get("logStreams", []):
            kwargs: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream["logStreamName"],
                "startFromHead": True,
            }
            while True:
                page = self.logs.get_log_events(**kwargs)
                lines += [LogLine(e["timestamp"] / 1000, str(e["message"])) for e in page["events"]]
                if not page["events"] or page.get("nextForwardToken") == kwargs.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextForwardToken"]
        return sorted(lines, key=lambda line: line.time)

    def model(self, described: Mapping[str, Any]) -> bytes | None:
        """A completed job's ``model.tar.gz`` (None when it is not there).

        :param described: the job's description.
        """
        uri = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if not uri:
            return None
        bucket, key = split_s3_uri(str(uri))
        try:
            body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return body
