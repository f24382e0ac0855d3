"""Checkpoint progress checks for the follower of a chain of spot attempts: pure, plus a lister.

Three findings, each decided on data (object listings, ``SecondaryStatusTransitions``, the
describe's flags), never on message text:

- ``no_checkpoints``: the checkpoint prefix holds no object, so the next attempt would start from
  scratch (checked before resubmitting);
- ``checkpoints_stale``: an attempt that was interrupted trained longer than a checkpoint
  interval, yet the prefix's newest object is older than the attempt's first Training (its
  checkpoints did not advance: a trainer that stopped saving, a sync that stopped);
- ``ran_on_demand``: the request asked for spot but the describe says
  ``EnableManagedSpotTraining`` false.

:func:`apply_requirement` lets the policy decide on ``no_checkpoints``: ``give_up`` turns a
resubmission into a :class:`~airflow_spot_provider.retry.GiveUp`; ``resubmit`` (the default)
resubmits anyway and the finding stays a warning of the summary. :func:`list_checkpoint_objects`
is the one I/O function: a paginated ListObjectsV2 of the prefix with a boto3 S3 client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from airflow_spot_provider.lifecycle import JobOutcome, SecondaryStatus, SpotJobReport, to_datetime
from airflow_spot_provider.retry import Decision, GiveUp, Resubmit

_S3_URI_RE = re.compile(r"^(?:s3://([^/]+)/?(.*)|https://([^/]+)\.s3[.-][^/]*/?(.*))$")


class FindingKind(StrEnum):
    """What a progress check found."""

    NO_CHECKPOINTS = "no_checkpoints"  # the prefix is empty: the next attempt starts from zero
    CHECKPOINTS_STALE = "checkpoints_stale"  # an attempt trained without its checkpoints moving
    RAN_ON_DEMAND = "ran_on_demand"  # spot was asked for, the job ran on-demand


class ProgressRequirement(StrEnum):
    """What ``require_checkpoint_progress`` asks when there is nothing to resume from."""

    RESUBMIT = "resubmit"  # resubmit anyway; the finding is a warning in the log and summary
    GIVE_UP = "give_up"  # make no attempt that would start from scratch


@dataclass(frozen=True)
class CheckpointObject:
    """One object under the checkpoint prefix.

    :param key: its key.
    :param size: bytes.
    :param last_modified: when it was written (aware).
    :param etag: its ETag (the same content gives the same ETag).
    """

    key: str
    size: int
    last_modified: datetime
    etag: str = ""

    @classmethod
    def from_listing(cls, item: Mapping[str, Any]) -> CheckpointObject:
        """From one ``Contents`` item of ListObjectsV2.

        :param item: ``{Key, Size, LastModified}``.
        :raises ValueError: no usable ``LastModified``.
        """
        modified = to_datetime(item.get("LastModified"))
        if modified is None:
            raise ValueError(f"checkpoint object {item.get('Key')!r} has no LastModified")
        return cls(
            str(item["Key"]), int(item.get("Size") or 0), modified, str(item.get("ETag") or "")
        )


@dataclass(frozen=True)
class Finding:
    """One thing the checks found, worded for the log and the summary.

    :param kind: what.
    :param message: the sentence.
    :param attempt: the attempt it is about (1-based), if any.
    :param job_name: that attempt's job, if any.
    """

    kind: FindingKind
    message: str
    attempt: int | None = None
    job_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "kind": self.kind.value,
            "message": self.message,
            "attempt": self.attempt,
            "job_name": self.job_name,
        }


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` or a virtual-hosted ``https://`` S3 URL.

    :param uri: the URI.
    :raises ValueError: not an S3 URI (the message names it).
    """
    match = _S3_URI_RE.match(uri)
    if not match:
        raise ValueError(f"checkpoint URI {uri!r}: must be s3://bucket/prefix")
    bucket = match.group(1) or match.group(3)
    prefix = match.group(2) if match.group(1) else match.group(4)
    return bucket, prefix or ""


def list_checkpoint_objects(s3: Any, uri: str, page_size: int = 1000) -> list[CheckpointObject]:
    """Every object under a checkpoint prefix (ListObjectsV2, all pages); folder markers left out.

    The prefix is taken as a folder (``s3://b/ckpt`` lists ``ckpt/...``), as SageMaker's sync
    writes it.

    :param s3: a boto3 S3 client.
    :param uri: ``CheckpointConfig.S3Uri``.
    :param page_size: keys per call (S3 returns at most 1,000).
    """
    bucket, prefix = split_s3_uri(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    return [
        CheckpointObject.from_listing(item)
        for page in pages
        for item in page.get("Contents", [])
        if not str(item["Key"]).endswith("/")
    ]


def no_checkpoints(
    objects: Sequence[CheckpointObject], uri: str, next_attempt: int
) -> Finding | None:
    """``no_checkpoints`` when the prefix is empty before an attempt.

    :param objects: the prefix's objects.
    :param uri: the prefix (for the message).
    :param next_attempt: the attempt about to be created (1-based).
    """
    if objects:
        return None
    return Finding(
        FindingKind.NO_CHECKPOINTS,
        f"no checkpoint objects under {uri}: attempt {next_attempt} would start from scratch",
        attempt=next_attempt,
    )


def first_training_start(report: SpotJobReport) -> datetime | None:
    """When the attempt first entered Training (None if it never did).

    :param report: the attempt's report.
    """
    return next(
        (t.start for t in report.transitions if t.status is SecondaryStatus.TRAINING and t.start),
        None,
    )


def trained_seconds(report: SpotJobReport) -> float:
    """Seconds the attempt spent in Training, summed over its restarts, from its transitions.

    :param report: the attempt's report.
    """
    total = 0.0
    transitions = report.transitions
    for index, transition in enumerate(transitions):
        if transition.status is not SecondaryStatus.TRAINING or transition.start is None:
            continue
        following = transitions[index + 1] if index + 1 < len(transitions) else None
        end = transition.end or (following.start if following else None) or report.end_time
        if end is not None:
            total += max(0.0, (end - transition.start).total_seconds())
    return total


def checkpoints_stale(
    objects: Sequence[CheckpointObject],
    report: SpotJobReport,
    attempt: int,
    checkpoint_interval_seconds: float,
) -> Finding | None:
    """``checkpoints_stale`` when an interrupted attempt trained past an interval without saving.

    :param objects: the prefix's objects after the attempt ended.
    :param report: the attempt's report (ended).
    :param attempt: its number (1-based).
    :param checkpoint_interval_seconds: how often the trainer is expected to save (> 0).
    :raises ValueError: a non-positive interval.
    """
    if not checkpoint_interval_seconds > 0:
        raise ValueError(
            f"checkpoint_interval_seconds={checkpoint_interval_seconds!r}: must be > 0"
        )
    started = first_training_start(report)
    trained = trained_seconds(report)
    if report.interruptions == 0 or started is None or trained <= checkpoint_interval_seconds:
        return None
    newest = max((o.last_modified for o in objects), default=None)
    if newest is not None and newest >= started:
        return None
    seen = "no checkpoint objects" if newest is None else f"newest object {newest.isoformat()}"
    return Finding(
        FindingKind.CHECKPOINTS_STALE,
        f"checkpoints did not advance during attempt {attempt} ({report.job_name}): it trained "
        f"{trained:.0f} s (interval {checkpoint_interval_seconds:g} s) and was interrupted "
        f"{report.interruptions} time(s); {seen}, training began {started.isoformat()}",
        attempt=attempt,
        job_name=report.job_name,
    )


def ran_on_demand(report: SpotJobReport, attempt: int, requested_spot: bool) -> Finding | None:
    """``ran_on_demand`` when the request asked for spot and the job did not run on spot.

    :param report: the attempt's report (``managed_spot`` from the describe).
    :param attempt: its number (1-based).
    :param requested_spot: the request's ``EnableManagedSpotTraining``.
    """
    if not requested_spot or report.managed_spot:
        return None
    return Finding(
        FindingKind.RAN_ON_DEMAND,
        f"attempt {attempt} ({report.job_name}) asked for spot but ran on-demand "
        "(EnableManagedSpotTraining false in DescribeTrainingJob): no spot savings",
        attempt=attempt,
        job_name=report.job_name,
    )


def attempt_findings(
    objects: Sequence[CheckpointObject],
    history: Sequence[SpotJobReport],
    requested_spot: Sequence[bool],
    checkpoint_interval_seconds: float,
) -> list[Finding]:
    """Every finding about the attempts so far (stale checkpoints, on-demand runs).

    Only the last attempt can be compared with the listing: earlier attempts' objects may have
    been replaced since.

    :param objects: the prefix's objects now.
    :param history: the attempts' reports, oldest first.
    :param requested_spot: each attempt's request ``EnableManagedSpotTraining``, same order.
    :param checkpoint_interval_seconds: the expected checkpoint interval.
    :raises ValueError: ``requested_spot`` of another length than ``history``.
    """
    if len(requested_spot) != len(history):
        raise ValueError(
            f"requested_spot has {len(requested_spot)} entries for {len(history)} attempt(s)"
        )
    found = [
        f
        for number, (report, spot) in enumerate(zip(history, requested_spot, strict=True), 1)
        if (f := ran_on_demand(report, number, spot)) is not None
    ]
    if history:
        stale = checkpoints_stale(objects, history[-1], len(history), checkpoint_interval_seconds)
        if stale is not None:
            found.append(stale)
    return found


def apply_requirement(
    decision: Decision,
    findings: Iterable[Finding],
    requirement: ProgressRequirement,
    last_outcome: JobOutcome | None = None,
) -> Decision:
    """The retry decision once ``require_checkpoint_progress`` has had its say.

    :param decision: the retry policy's decision.
    :param findings: the findings before the resubmission (``no_checkpoints`` matters here).
    :param requirement: give up, or resubmit anyway.
    :param last_outcome: how the last attempt ended (carried by the GiveUp).
    """
    if not isinstance(decision, Resubmit) or requirement is ProgressRequirement.RESUBMIT:
        return decision
    empty = next((f for f in findings if f.kind is FindingKind.NO_CHECKPOINTS), None)
    if empty is None:
        return decision
    return GiveUp(
        reason=f"{empty.message}; require_checkpoint_progress=give_up, so no resubmission",
        outcome=last_outcome,
    )
