"""What a follower asks of AWS, written once as plain generators (no I/O of their own).

Each operation is a generator that yields :class:`Call` (an AWS call to make), :class:`Sleep`,
:class:`Say` (a line for the task's log) or :class:`Save` (a position to keep across processes),
and receives the call's response. The sync adapter (worker, sensor) and the async adapter
(trigger) in :mod:`airflow_spot_provider.hooks.jobs` carry them out: so the logic of creating,
stopping, listing and reading logs (pages, tokens) exists once, whichever way it runs.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from airflow_spot_provider.hooks.errors import ApiCallError
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.position import Position

T = TypeVar("T")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Error codes SageMaker uses for a name already taken (the API model and the service disagree).
NAME_TAKEN = frozenset({"ResourceInUse", "ResourceInUseException"})
# What SageMaker answers a stop of a job that is not running.
_NOT_RUNNING = frozenset({"ValidationException"})


@dataclass(frozen=True)
class Call:
    """One AWS call.

    :param service: ``sagemaker`` or ``logs``.
    :param operation: the boto3 method, e.g. ``describe_training_job``.
    :param kwargs: its arguments.
    :param job_name: the job concerned (for errors).
    :param tolerate: error codes thrown back into the generator at once, as ApiCallError.
    :param lasting: lasting errors tolerated before failing (None: the rule's own limit).
    :param best_effort: any error is thrown back at once (a training log is a nicety).
    """

    service: str
    operation: str
    kwargs: Mapping[str, Any]
    job_name: str | None = None
    tolerate: frozenset[str] = field(default_factory=frozenset)
    lasting: int | None = None
    best_effort: bool = False


@dataclass(frozen=True)
class Sleep:
    """Wait.

    :param seconds: how long.
    """

    seconds: float


@dataclass(frozen=True)
class Say:
    """A line for the task's log.

    :param line: the text.
    :param level: ``info`` or ``warning``.
    """

    line: str
    level: str = "info"


@dataclass(frozen=True)
class Save:
    """Keep a position where a re-created follower finds it (a trigger after a restart).

    :param position: the position.
    """

    position: Position


Effect: TypeAlias = Call | Sleep | Say | Save
Ops: TypeAlias = Generator[Effect, Any, T]


def describe_job(job_name: str) -> Ops[dict[str, Any]]:
    """DescribeTrainingJob.

    :param job_name: the job.
    """
    args = {"TrainingJobName": job_name}
    response: dict[str, Any] = yield Call("sagemaker", "describe_training_job", args, job_name)
    return response


def create_job(request: Mapping[str, Any]) -> Ops[bool]:
    """Create a job unless one of that name exists: True if this call created it.

    :param request: a validated CreateTrainingJob request with ``TrainingJobName``.
    """
    name = str(request["TrainingJobName"])
    try:
        # A create's lasting errors (a bad request, a quota) will not change by trying again.
        yield Call("sagemaker", "create_training_job", request, name, NAME_TAKEN, lasting=1)
    except ApiCallError:
        return False  # an Airflow retry or a resumed task re-attaches instead of duplicating
    return True


def _status(describe: Mapping[str, Any]) -> TrainingJobStatus:
    return TrainingJobStatus(describe["TrainingJobStatus"])


def stop_job(job_name: str) -> Ops[bool]:
    """Stop a job if it is in progress: True if a stop was requested.

    :param job_name: the job.
    """
    if _status((yield from describe_job(job_name))) is not TrainingJobStatus.IN_PROGRESS:
        return False
    args = {"TrainingJobName": job_name}
    try:
        yield Call("sagemaker", "stop_training_job", args, job_name, _NOT_RUNNING)
    except ApiCallError:
        # It may have ended between the two calls: decide on its status, not the message.
        if _status((yield from describe_job(job_name))) is TrainingJobStatus.IN_PROGRESS:
            raise
        return False
    return True


def list_job_names(name_contains: str) -> Ops[list[str]]:
    """Names of every training job whose name contains a string (all pages).

    :param name_contains: the ``NameContains`` filter.
    """
    names: list[str] = []
    kwargs: dict[str, Any] = {"NameContains": name_contains, "MaxResults": 100}
    while True:
        page = yield Call("sagemaker", "list_training_jobs", dict(kwargs))
        names.extend(s["TrainingJobName"] for s in page.get("TrainingJobSummaries", []))
        if not page.get("NextToken"):
            return names
        kwargs["NextToken"] = page["NextToken"]


def new_log_lines(position: Position) -> Ops[tuple[list[tuple[str, str]], Position]]:
    """The job's CloudWatch lines written since ``position``, and the position after them.

    A failed call ends the reading with what was read so far (the job's status is what a
    follower follows; the log is a nicety).

    :param position: the job's position (streams ``<job>/algo-N-<epoch>``).
    """
    lines: list[tuple[str, str]] = []
    prefix = f"{position.job_name}/"
    args = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": prefix}
    try:
        found = yield Call("logs", "describe_log_streams", args, best_effort=True)
        for stream in sorted(s["logStreamName"] for s in found.get("logStreams", [])):
            position = yield from _stream_lines(stream, position, lines)
    except ApiCallError as error:
        if error.code != "ResourceNotFoundException":  # no log group yet: nothing written
            yield Say(f"Could not read the training log of {position.job_name}: {error}", "warning")
    return lines, position


def _stream_lines(stream: str, position: Position, lines: list[tuple[str, str]]) -> Ops[Position]:
    """Read one stream to its end, appending to ``lines``; CloudWatch repeats the last token."""
    while True:
        mark = position.streams.get(stream)
        args: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream}
        if mark is not None:
            args["nextToken"] = mark.token
        else:
            args["startFromHead"] = True
        page = yield Call("logs", "get_log_events", args, best_effort=True)
        events = page.get("events", [])
        lines.extend((stream, str(e.get("message", "")).rstrip("\n")) for e in events)
        token = page.get("nextForwardToken")
        if token is not None:
            position = position.with_stream(stream, str(token), len(events))
        if token is None or not events or (mark is not None and token == mark.token):
            return position
