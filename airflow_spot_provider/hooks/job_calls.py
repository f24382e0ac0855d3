"""What a follower asks of AWS, written once as plain generators (no I/O of their own).

Each operation is a generator that yields :class:`Call` (an AWS call to make), :class:`Sleep` or
:class:`Say` (a line for the task's log), and receives the call's response. The sync adapter
(worker, sensor) and the async adapter (the triggerer's watch, a trigger's ``on_kill``) in
:mod:`airflow_spot_provider.hooks.jobs` carry them out: so the logic of creating,
stopping, listing and reading logs (pages, tokens) exists once, whichever way it runs.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
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


Effect: TypeAlias = Call | Sleep | Say
Ops: TypeAlias = Generator[Effect, Any, T]


def describe_job(job_name: str, lasting: int | None = None) -> Ops[dict[str, Any]]:
    """DescribeTrainingJob.

    :param job_name: the job.
    :param lasting: lasting errors tolerated before failing (None: the rule's own limit).
    """
    args = {"TrainingJobName": job_name}
    call = Call("sagemaker", "describe_training_job", args, job_name, lasting=lasting)
    response: dict[str, Any] = yield call
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


Lines: TypeAlias = list[tuple[str, str]]
# FilterLogEvents reads up to 100 named streams per call (CloudWatch Logs' limit).
MAX_FILTER_STREAMS = 100


def new_log_lines(position: Position) -> Ops[tuple[Lines, Position]]:
    """The job's CloudWatch lines written since ``position``, and the position after them.

    ``DescribeLogStreams`` of the job's streams (all pages), then ``FilterLogEvents`` of those that
    moved past their marks (:func:`read_marked`). A failed call ends the reading with what was
    read so far (the job's status is what a follower follows; the log is a nicety).

    :param position: the job's position (streams ``<job>/algo-N-<epoch>``).
    """
    lines: Lines = []
    try:
        last = yield from job_streams(position.job_name)
        [(lines, position)] = yield from read_marked([position], last)
    except ApiCallError as error:
        if error.code != "ResourceNotFoundException":  # no log group yet: nothing written
            yield Say(f"Could not read the training log of {position.job_name}: {error}", "warning")
    return lines, position


def job_streams(job_name: str) -> Ops[dict[str, int | None]]:
    """A job's streams and the time of each one's last event (None: no event yet).

    :param job_name: the job.
    """
    args: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job_name}/"}
    last: dict[str, int | None] = {}
    while True:
        page = yield Call("logs", "describe_log_streams", dict(args), best_effort=True)
        for stream in page.get("logStreams", []):
            last[str(stream["logStreamName"])] = stream.get("lastEventTimestamp")
        if not page.get("nextToken"):
            return last
        args["nextToken"] = page["nextToken"]


def read_marked(
    positions: Sequence[Position],
    last: Mapping[str, int | None],
    *,
    every_stream: bool = False,
) -> Ops[list[tuple[Lines, Position]]]:
    """The new lines of the streams that moved past the marks of some positions.

    The streams of all positions are read together, up to 100 per ``FilterLogEvents`` call from
    the earliest mark among them (:func:`stream_batches`); each position then takes the events
    of its job past its own marks (:meth:`Position.take_events`). A stream still marked by a
    ``GetLogEvents`` token (a position saved by an older version) is read through it first.

    :param positions: positions of any jobs (one job may appear in several).
    :param last: stream -> the time of its last event, as ``DescribeLogStreams`` said.
    :param every_stream: read every stream of the positions' jobs from its mark (from its start
        when unmarked) whatever ``last`` says of it, as CloudWatch updates
        ``lastEventTimestamp`` eventually: the streams in ``last`` and those any position marks.
        One marked by a token is read through it, then on only if it moved.
    """
    read: list[tuple[Lines, Position]] = []
    for given in positions:
        lines: Lines = []
        read.append((lines, (yield from _read_tokens(given, last, lines))))
    known: Mapping[str, int | None] = last
    if every_stream:  # and the streams marked but not listed (yet): no last event time known
        known = {**dict.fromkeys(s for p in positions for s in p.streams), **last}
    by_job = streams_by_job(known)
    starts = earliest_starts(
        _read_from(given, position, by_job.get(given.job_name, {}), every_stream)
        for given, (_lines, position) in zip(positions, read, strict=True)
    )
    for streams, start in stream_batches(starts):
        of_job = events_by_job((yield from filter_events(streams, start)))
        for index, (lines, before) in enumerate(read):
            if before.job_name in of_job:
                new, after = before.take_events(of_job[before.job_name])
                read[index] = (lines + new, after)
    return read


def _read_from(
    given: Position, tokens_read: Position, last: Mapping[str, int | None], every_stream: bool
) -> dict[str, int]:
    """Where to read one position's streams from (:func:`read_marked`).

    :param given: the position as given.
    :param tokens_read: the position once its token-marked streams were read through their tokens.
    :param last: its job's streams -> the time of each one's last event.
    :param every_stream: every stream, not only those that moved (token-marked ones: if moved).
    """
    starts = moved_starts(tokens_read, last)
    if every_stream:  # the marks as given: a stream just read through its token is not re-read
        starts.update(marked_starts(given, last))
    return starts


def events_by_job(events: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Events grouped by job (streams ``<job>/<host>``), each job's in time order, once each.

    Two reads may bring the same event (its ``eventId``): the first is kept. The sort is stable:
    events of the same millisecond keep the order the service gave.

    :param events: ``FilterLogEvents`` events of any reads.
    """
    seen: set[str] = set()
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for event in sorted(events, key=lambda e: int(e.get("timestamp") or 0)):
        event_id = str(event.get("eventId"))
        if event_id not in seen:
            seen.add(event_id)
            job = str(event.get("logStreamName", "")).split("/", 1)[0]
            grouped.setdefault(job, []).append(event)
    return grouped


def streams_by_job(last: Mapping[str, int | None]) -> dict[str, dict[str, int | None]]:
    """Streams (``<job>/<host>``) grouped by job: each job then looks at its own streams only.

    :param last: stream -> the time of its last event.
    """
    grouped: dict[str, dict[str, int | None]] = {}
    for stream, stamp in last.items():
        grouped.setdefault(stream.split("/", 1)[0], {})[stream] = stamp
    return grouped


def moved_starts(position: Position, last: Mapping[str, int | None]) -> dict[str, int]:
    """The job's streams that have events past the position's marks, and where to read from.

    A stream moved when its last event is later than its mark (events in the very millisecond
    of the mark that came after it are read with the stream's next event, or at the job's end).

    :param position: the job's position.
    :param last: stream -> the time of its last event (None: no event yet).
    """
    prefix = f"{position.job_name}/"
    starts: dict[str, int] = {}
    for stream, stamp in last.items():
        mark = position.streams.get(stream)
        if stamp is None or not stream.startswith(prefix):
            continue
        if mark is None:
            starts[stream] = 0
        elif mark.timestamp is not None and stamp > mark.timestamp:
            starts[stream] = mark.timestamp
    return starts


def marked_starts(position: Position, streams: Iterable[str]) -> dict[str, int]:
    """Where to read streams from whatever their last event time says: from the position's
    mark, or from their start when it has none (a stream marked by a token is left out).

    :param position: the job's position.
    :param streams: the job's streams.
    """
    starts: dict[str, int] = {}
    for stream in streams:
        mark = position.streams.get(stream)
        if mark is None:
            starts[stream] = 0
        elif mark.timestamp is not None:
            starts[stream] = mark.timestamp
    return starts


def earliest_starts(starts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Where to read each stream from for several positions at once: the earliest of their starts.

    :param starts: each position's stream -> the time to read it from.
    """
    earliest: dict[str, int] = {}
    for each in starts:
        for stream, start in each.items():
            earliest[stream] = min(start, earliest.get(stream, start))
    return earliest


def stream_batches(starts: Mapping[str, int]) -> list[tuple[list[str], int]]:
    """Streams to read, grouped by 100 in the order of their start times: (names, start).

    :param starts: stream -> the time to read it from.
    """
    order = sorted(starts, key=lambda stream: (starts[stream], stream))
    batches = [order[i : i + MAX_FILTER_STREAMS] for i in range(0, len(order), MAX_FILTER_STREAMS)]
    return [(names, starts[names[0]]) for names in batches]


def filter_events(streams: Sequence[str], start: int) -> Ops[list[dict[str, Any]]]:
    """Every event of up to 100 named streams from a time on (all pages), interleaved by time.

    :param streams: the streams.
    :param start: ``startTime`` (ms since the epoch).
    """
    args: dict[str, Any] = {
        "logGroupName": LOG_GROUP,
        "logStreamNames": list(streams),
        "startTime": start,
    }
    events: list[dict[str, Any]] = []
    while True:
        page = yield Call("logs", "filter_log_events", dict(args), best_effort=True)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            return events
        args["nextToken"] = page["nextToken"]


def _read_tokens(position: Position, last: Mapping[str, int | None], lines: Lines) -> Ops[Position]:
    """Read the streams still marked by a token to their end; their marks become time marks."""
    for stream, mark in sorted(position.streams.items()):
        if mark.timestamp is not None or not mark.token:
            continue
        position = yield from _stream_lines(stream, position, lines)
        stamp = last.get(stream)
        if position.streams[stream].timestamp is None and stamp is not None:
            # At the stream's end: every event up to its last one was read.
            position = position.with_stream(stream, position.streams[stream].token, 0, stamp + 1)
    return position


def _stream_lines(stream: str, position: Position, lines: Lines) -> Ops[Position]:
    """Read one stream to its end through its token, appending to ``lines``; CloudWatch repeats
    the last token at the end."""
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
            # Every event up to the last one read is read: a time mark just after it.
            kept = mark.timestamp if mark is not None else None
            stamp = int(events[-1]["timestamp"]) + 1 if events else kept
            position = position.with_stream(stream, str(token), len(events), stamp)
        if token is None or not events or (mark is not None and token == mark.token):
            return position
