"""What a run leaves behind, as plain data: checkpoint objects over time, attempts, log lines.

Nothing here does I/O: :mod:`.backend` fills these from S3 (the checkpoint prefix, listed every
few hundredths of a second while the job runs), DescribeTrainingJob, the backend's event log and
CloudWatch Logs; :mod:`.analysis` reads them. No sandbox path is involved: the checkpoint prefix
in S3 is what the next attempt restores, so it is the evidence that matters.

Times are epoch seconds. An object's time is when the watcher first saw it, not its S3
``LastModified`` (whole seconds only): it lags the trainer's write by up to one sync interval of
the backend plus one listing interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from airflow_spot_provider.lifecycle import SecondaryStatus, Transition

_S = SecondaryStatus


class Stored(NamedTuple):
    """One object as a listing shows it.

    :param etag: its ETag (the same content gives the same ETag).
    :param size: bytes.
    :param modified: its ``LastModified`` (whole seconds): a content written again changes it.
    """

    etag: str
    size: int
    modified: float = 0.0


Objects = Mapping[str, Stored]  # key relative to the prefix -> the object


@dataclass(frozen=True)
class Listing:
    """One listing of the checkpoint prefix.

    :param time: when it was taken.
    :param objects: key relative to the prefix -> the object.
    """

    time: float
    objects: Objects


@dataclass(frozen=True)
class ObjectVersion:
    """One write of one checkpoint object, as the listings saw it.

    :param key: the key relative to the prefix.
    :param etag: its ETag (the same content gives the same ETag).
    :param size: bytes.
    :param first_seen: the first listing that showed it.
    """

    key: str
    etag: str
    size: int
    first_seen: float


@dataclass(frozen=True)
class CheckpointTimeline:
    """The listings of a run's checkpoint prefix, oldest first.

    :param listings: the listings.
    """

    listings: tuple[Listing, ...] = ()

    def versions(self) -> list[ObjectVersion]:
        """Every write seen, in order: a key that appears, or whose content or LastModified
        changed since the listing before (the same content written again counts again)."""
        found: list[ObjectVersion] = []
        before: Objects = {}
        for listing in self.listings:
            for key, stored in sorted(listing.objects.items()):
                if before.get(key) != stored:
                    found.append(ObjectVersion(key, stored.etag, stored.size, listing.time))
            before = listing.objects
        return found

    def present_at(self, moment: float) -> dict[str, Stored]:
        """The objects of the last listing taken before ``moment`` (none before the first).

        :param moment: epoch seconds.
        """
        found: Objects = {}
        for listing in self.listings:
            if listing.time >= moment:
                break
            found = listing.objects
        return dict(found)

    def last(self) -> dict[str, Stored]:
        """The objects of the last listing."""
        return dict(self.listings[-1].objects) if self.listings else {}


@dataclass(frozen=True)
class Attempt:
    """One start of a job that reached Training.

    :param number: the start number (1-based), as the backend's scenario counts them.
    :param training_start: when Training began.
    :param training_end: when the next status began (None while training).
    :param ended_by: that next status (Interrupted, Uploading...).
    """

    number: int
    training_start: float
    training_end: float | None
    ended_by: SecondaryStatus | None

    @property
    def seconds(self) -> float | None:
        """How long it trained (None while training)."""
        return None if self.training_end is None else self.training_end - self.training_start


def attempts_of(transitions: Sequence[Transition]) -> list[Attempt]:
    """The attempts of a job, from its ``SecondaryStatusTransitions``.

    Each Downloading is a start; a start that never reached Training keeps its number but is
    left out.

    :param transitions: oldest first.
    """
    attempts: list[Attempt] = []
    starts = 0
    for index, transition in enumerate(transitions):
        if transition.status is _S.DOWNLOADING:
            starts += 1
        if transition.status is not _S.TRAINING or transition.start is None:
            continue
        following = transitions[index + 1] if index + 1 < len(transitions) else None
        end = following.start.timestamp() if following and following.start else None
        attempts.append(
            Attempt(
                number=max(starts, 1),
                training_start=transition.start.timestamp(),
                training_end=end,
                ended_by=following.status if following else None,
            )
        )
    return attempts


@dataclass(frozen=True)
class LogLine:
    """One line the trainer printed.

    :param time: its CloudWatch timestamp.
    :param message: the line.
    """

    time: float
    message: str


@dataclass(frozen=True)
class RunEvidence:
    """Everything read about one run.

    :param job_name: the training job.
    :param description: its last DescribeTrainingJob response (JSON-safe).
    :param attempts: its attempts that trained.
    :param interrupts: start number -> when the backend sent SIGTERM for the interruption.
    :param timeline: its checkpoint prefix over time.
    :param log_lines: the trainer's output.
    :param model: its ``model.tar.gz`` (None without one).
    """

    job_name: str
    description: Mapping[str, Any]
    attempts: tuple[Attempt, ...]
    interrupts: Mapping[int, float]
    timeline: CheckpointTimeline
    log_lines: tuple[LogLine, ...] = ()
    model: bytes | None = field(default=None, repr=False)

    @property
    def completed(self) -> bool:
        """Whether the job ended Completed."""
        return self.description.get("SecondaryStatus") == _S.COMPLETED

    def lines_between(self, start: float, end: float | None) -> list[str]:
        """The log lines of a time window.

        :param start: epoch seconds (inclusive).
        :param end: epoch seconds (exclusive), None for the end of the log.
        """
        return [
            line.message
            for line in self.log_lines
            if line.time >= start and (end is None or line.time < end)
        ]


def interrupt_times(events: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """Start number -> time of the backend's ``interrupt`` events of one job.

    :param events: the job's events of kind ``interrupt`` (fields ``start`` and ``time``).
    """
    return {int(e["start"]): float(e["time"]) for e in events if "start" in e and "time" in e}
