"""Read a run's evidence against the reference run: restores, progress lost, SIGTERM saves.

No I/O. Progress is measured on the reference run's clock: the *position* of a checkpoint object
is the number of seconds the uninterrupted reference run had worked when the same content (same
ETag) reached S3. A deterministic trainer writes the same checkpoint contents whatever the
interruptions, so positions tell, without knowing the trainer's format, whether a restarted
attempt went on from its checkpoint (its first new checkpoint lies further than the restored one)
or started over (it rewrites an early one). Contents the reference never wrote (a save on SIGTERM
in mid-interval, a trainer that stamps times into its checkpoints) get a position estimated from
the time the attempt had worked. Seconds of work start at the trainer's first output line of an
attempt (its imports and set-up are not progress), or at the start of Training if it prints
nothing.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_spot_provider.lifecycle import SecondaryStatus
from airflow_spot_provider.verify.evidence import Attempt, Objects, ObjectVersion, RunEvidence

_S = SecondaryStatus
# Lines of a trainer's log worth showing as evidence of what it did with its checkpoints.
EVIDENCE_RE = re.compile(r"resum|restor|checkpoint|sigterm|load", re.IGNORECASE)
_SAYS_RESUMED_RE = re.compile(r"resum|restor", re.IGNORECASE)
_EPSILON = 1e-3  # seconds: keeps an estimated position strictly between two reference ones


@dataclass(frozen=True)
class Reference:
    """What the uninterrupted run established.

    :param job_name: its training job.
    :param work_seconds: seconds of work from its first output line to the end of Training.
    :param positions: checkpoint ETag -> seconds of work when it reached S3.
    :param checkpoint_moments: seconds of work at which checkpoints reached S3 (one per listing).
    :param checkpoint_bytes: total size of the checkpoint objects at its end.
    :param largest_object: the largest checkpoint object, bytes.
    :param objects: how many checkpoint objects it left.
    :param training_seconds: the length of its Training phase (what the plan uses).
    :param prints: the trainer printed something (then an attempt that printed nothing did no
        work yet).
    :param listing_gap: the longest time between two listings of its prefix (the resolution of
        every time measured from checkpoints).
    """

    job_name: str
    work_seconds: float
    positions: Mapping[str, float]
    checkpoint_moments: tuple[float, ...]
    checkpoint_bytes: int
    largest_object: int
    objects: int
    training_seconds: float
    prints: bool = True
    listing_gap: float = 0.0

    @property
    def checkpoint_interval(self) -> float:
        """The median gap between checkpoints; the whole run when it saved once or never."""
        moments = sorted(self.checkpoint_moments)
        gaps = [b - a for a, b in itertools.pairwise(moments)]
        return statistics.median(gaps) if gaps else self.work_seconds

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "job_name": self.job_name,
            "training_seconds": round(self.training_seconds, 3),
            "work_seconds": round(self.work_seconds, 3),
            "checkpoint_interval_seconds": round(self.checkpoint_interval, 3),
            "checkpoints_written": len(self.checkpoint_moments),
            "checkpoint_objects": self.objects,
            "checkpoint_bytes": self.checkpoint_bytes,
            "largest_checkpoint_object_bytes": self.largest_object,
            "listing_gap_seconds": round(self.listing_gap, 3),
        }


def work_origin(evidence: RunEvidence, attempt: Attempt) -> float:
    """When the trainer of an attempt began to work: its first output line, else Training.

    :param evidence: the run's evidence.
    :param attempt: one of its attempts.
    """
    lines = [
        line.time
        for line in evidence.log_lines
        if line.time >= attempt.training_start
        and (attempt.training_end is None or line.time < attempt.training_end)
    ]
    return min(lines) if lines else attempt.training_start


def reference_of(evidence: RunEvidence) -> Reference:
    """The reference figures of an uninterrupted, completed run.

    :param evidence: its evidence.
    :raises ValueError: it has no finished Training phase.
    """
    finished = [a for a in evidence.attempts if a.training_end is not None]
    if not finished:
        raise ValueError(f"{evidence.job_name} has no finished Training phase")
    attempt = finished[-1]
    assert attempt.training_end is not None
    origin = work_origin(evidence, attempt)
    positions: dict[str, float] = {}
    for version in evidence.timeline.versions():
        positions.setdefault(version.etag, max(0.0, version.first_seen - origin))
    # One moment per listing that showed a new content (a temporary file renamed into place
    # has the content of the file it becomes: one write, not two).
    moments = set(positions.values())
    final = evidence.timeline.last()
    return Reference(
        job_name=evidence.job_name,
        work_seconds=max(attempt.training_end - origin, 1e-3),
        positions=positions,
        checkpoint_moments=tuple(sorted(moments)),
        checkpoint_bytes=sum(o.size for o in final.values()),
        largest_object=max((o.size for o in final.values()), default=0),
        objects=len(final),
        training_seconds=attempt.training_end - attempt.training_start,
        prints=bool(evidence.log_lines),
        listing_gap=max(
            (b.time - a.time for a, b in itertools.pairwise(evidence.timeline.listings)),
            default=0.0,
        ),
    )


@dataclass(frozen=True)
class InterruptionReport:
    """One interruption of a run and what followed it.

    :param attempt: the start number it hit.
    :param at_training_second: seconds after that attempt's Training began.
    :param progress_seconds: work done by then (reference seconds).
    :param checkpoints_at_restart: checkpoint objects in S3 when the next attempt began.
    :param restored: the next attempt went on from them (None: nothing to restore, or unknown).
    :param restore_evidence: how ``restored`` was decided.
    :param resumed_from_seconds: work the next attempt started from (None: no next attempt).
    :param lost_seconds: work lost (``progress_seconds - resumed_from_seconds``).
    :param from_scratch: the next attempt started from zero although work had been done.
    :param sigterm_checkpoint: a checkpoint reached S3 during the notice (None: nothing to save).
    :param sigterm_checkpoint_seconds: SIGTERM to that checkpoint seen in S3.
    """

    attempt: int
    at_training_second: float
    progress_seconds: float
    checkpoints_at_restart: int
    restored: bool | None
    restore_evidence: str
    resumed_from_seconds: float | None
    lost_seconds: float | None
    from_scratch: bool
    sigterm_checkpoint: bool | None
    sigterm_checkpoint_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (seconds rounded to milliseconds)."""
        return {k: _round(v) for k, v in self.__dict__.items()}


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


@dataclass
class _Walk:
    """The state carried from one attempt of a run to the next."""

    evidence: RunEvidence
    reference: Reference
    lag: float
    versions: list[ObjectVersion]
    resumed: float = 0.0  # work the current attempt started from
    estimated: dict[str, float] = field(default_factory=dict)  # ETag -> estimated position

    def position(self, etag: str) -> float:
        known = self.reference.positions.get(etag)
        return known if known is not None else self.estimated.get(etag, 0.0)

    def worked(self, attempt: Attempt, moment: float) -> float:
        """Seconds the attempt's trainer had worked at ``moment``: since its first line; none
        before it printed anything (unless the trainer never prints)."""
        lines = self.evidence.lines_between(attempt.training_start, moment)
        if not lines and self.reference.prints:
            return 0.0
        return max(0.0, moment - work_origin(self.evidence, attempt))

    def lower_at(self, attempt: Attempt, moment: float) -> float:
        """The attempt's last checkpoint the reference also wrote, before ``moment``."""
        return max(
            [self.resumed]
            + [
                self.reference.positions[v.etag]
                for v in self.versions
                if attempt.training_start <= v.first_seen < moment + self.lag
                and v.etag in self.reference.positions
            ]
        )

    def progress_at(self, attempt: Attempt, moment: float) -> float:
        """The work done at ``moment``: the time worked since the restored checkpoint, kept
        between the attempt's last checkpoint the reference also wrote and the reference's next
        one (a trainer slowed down by a busy machine does not seem to get further)."""
        lower = self.lower_at(attempt, moment)
        ahead = [p for p in self.reference.positions.values() if p > lower]
        # Strictly before the next one: a content the reference also wrote would have matched.
        upper = min(ahead, default=self.reference.work_seconds + _EPSILON) - _EPSILON
        return min(max(self.resumed + self.worked(attempt, moment), lower), upper)

    def estimate_new(self, attempt: Attempt, until: float, sigterm_at: float | None) -> None:
        """Give positions to the attempt's checkpoint contents the reference never wrote."""
        for version in self.versions:
            inside = attempt.training_start <= version.first_seen < until
            if inside and version.etag not in self.reference.positions:
                moment = min(version.first_seen, sigterm_at or version.first_seen)
                self.estimated.setdefault(version.etag, self.progress_at(attempt, moment))


def analyze_interruptions(
    evidence: RunEvidence, reference: Reference, lag: float
) -> list[InterruptionReport]:
    """Each interruption of a run, with the restore that followed.

    :param evidence: the run's evidence.
    :param reference: the reference figures.
    :param lag: seconds from a checkpoint's write to its listing (sync plus listing intervals).
    """
    walk = _Walk(evidence, reference, lag, evidence.timeline.versions())
    attempts = sorted(evidence.attempts, key=lambda a: a.number)
    reports: list[InterruptionReport] = []
    for index, attempt in enumerate(attempts):
        following = attempts[index + 1] if index + 1 < len(attempts) else None
        until = following.training_start if following else float("inf")
        sigterm_at = evidence.interrupts.get(attempt.number)
        walk.estimate_new(attempt, until, sigterm_at)
        if sigterm_at is None or attempt.ended_by is not _S.INTERRUPTED:
            continue
        reports.append(_interruption(walk, attempt, following, sigterm_at, until))
    return reports


def _interruption(
    walk: _Walk, attempt: Attempt, following: Attempt | None, sigterm_at: float, until: float
) -> InterruptionReport:
    progress = walk.progress_at(attempt, sigterm_at)
    worked = walk.worked(attempt, sigterm_at)
    saved, saved_after = _sigterm_checkpoint(walk, sigterm_at, until, worked)
    present = walk.evidence.timeline.present_at(until) if following else {}
    restored: bool | None = None
    how = "no checkpoint objects when the next attempt started"
    resumed_next: float | None = None
    if following is not None:
        resumed_next = 0.0
        if present:
            restored_at = max(walk.position(etag) for etag, *_ in present.values())
            restored, how = _restored(walk, following, present, restored_at)
            resumed_next = 0.0 if restored is False else restored_at
        walk.resumed = resumed_next
    lost = None if resumed_next is None else max(0.0, progress - resumed_next)
    return InterruptionReport(
        attempt=attempt.number,
        at_training_second=sigterm_at - attempt.training_start,
        progress_seconds=progress,
        checkpoints_at_restart=len(present),
        restored=restored,
        restore_evidence=how,
        resumed_from_seconds=resumed_next,
        lost_seconds=lost,
        from_scratch=resumed_next == 0.0 and progress > walk.lag,
        sigterm_checkpoint=saved,
        sigterm_checkpoint_seconds=saved_after,
    )


def _sigterm_checkpoint(
    walk: _Walk, sigterm_at: float, until: float, worked: float
) -> tuple[bool | None, float | None]:
    """Whether the trainer saved when told to stop: a content the reference never wrote reached
    S3 between SIGTERM and the next attempt. None when there was nothing new to save: the
    attempt had not worked yet, or a periodic checkpoint had just been written."""
    window = [v for v in walk.versions if sigterm_at < v.first_seen < until]
    own = [v for v in window if v.etag not in walk.reference.positions]
    if own:
        return True, min(v.first_seen for v in own) - sigterm_at
    recent = [v for v in walk.versions if sigterm_at - walk.lag <= v.first_seen < until]
    if worked <= walk.lag or recent:
        return None, None
    return False, None


def _restored(
    walk: _Walk, following: Attempt, present: Objects, restored_at: float
) -> tuple[bool | None, str]:
    """Whether ``following`` went on from the checkpoint at ``restored_at``, and why we think so."""
    end = walk.evidence.interrupts.get(following.number) or following.training_end or float("inf")
    # The newest restorable content written again before any real work (a trainer that
    # re-saves what it loaded) is no sign; written again after work, it was redone.
    newest = {e for e, *_ in present.values() if walk.position(e) >= restored_at}
    resave = walk.reference.checkpoint_interval / 2
    known = [
        v
        for v in walk.versions
        if following.training_start <= v.first_seen < end
        and v.etag in walk.reference.positions
        and not (v.etag in newest and walk.worked(following, v.first_seen) < resave)
    ]
    if known:
        return _by_content(walk, known[0], following, end)
    if following.ended_by is _S.UPLOADING and following.training_end is not None:
        took = following.training_end - work_origin(walk.evidence, following)
        whole = walk.reference.work_seconds
        went_on = abs(took - (whole - restored_at)) <= abs(took - whole)
        return went_on, (
            f"it worked {took:.2f} s to the end; from the restored checkpoint "
            f"{whole - restored_at:.2f} s were left, from scratch {whole:.2f} s"
        )
    return _from_log(walk, following, end, "it wrote no checkpoint")


def _by_content(
    walk: _Walk, first: ObjectVersion, following: Attempt, end: float
) -> tuple[bool | None, str]:
    """Decide on contents, no clock: a restarted trainer that went on writes a checkpoint the
    run had not reached yet; one that started over writes again one it had written before."""
    before = {
        v.etag
        for v in walk.versions
        if v.first_seen < following.training_start and v.etag in walk.reference.positions
    }
    at = walk.reference.positions[first.etag]
    if first.etag in before:
        return False, (
            f"it wrote {first.key!r} again as the run had written it before the interruption "
            f"(the reference's checkpoint at {at:.2f} s of work): it started over"
        )
    if before:
        return True, (
            f"its first new checkpoint {first.key!r} is one the run had not reached "
            f"(the reference's at {at:.2f} s of work)"
        )
    # Nothing the reference also wrote was saved before the interruption: going on and
    # starting over both write the reference's first checkpoint next.
    return _from_log(walk, following, end, "nothing saved before it matches the reference")


def _from_log(walk: _Walk, following: Attempt, end: float, why: str) -> tuple[bool | None, str]:
    """The trainer's own word on resuming, when its checkpoints cannot tell."""
    said = _says_resumed(walk.evidence.lines_between(following.training_start, end))
    if said:
        return True, f"its log says so: {said!r}"
    return None, f"could not tell: {why}, and the trainer's log does not say it resumed"


def _says_resumed(lines: Sequence[str]) -> str | None:
    return next((line for line in lines if _SAYS_RESUMED_RE.search(line)), None)


def evidence_lines(evidence: RunEvidence, limit: int = 12) -> list[str]:
    """The trainer's lines about checkpoints (resume, restore, SIGTERM...), the first ``limit``.

    :param evidence: the run's evidence.
    :param limit: lines returned at most.
    """
    return [line.message for line in evidence.log_lines if EVIDENCE_RE.search(line.message)][:limit]
