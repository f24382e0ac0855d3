"""The watch's own AWS calls, as generators carried out by :class:`~airflow_spot_provider.hooks.
jobs.AsyncJobs` (so each goes through the one API-retry rule): the List walk and the read of
the log group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_spot_provider.hooks.job_calls import (
    Call,
    Ops,
    earliest_starts,
    filter_events,
    marked_starts,
    stream_batches,
)
from airflow_spot_provider.position import Position
from airflow_spot_provider.watch.book import GroupRead, served_at


def list_changed(args: Mapping[str, Any]) -> Ops[tuple[list[dict[str, Any]], datetime | None]]:
    """Every ``TrainingJobSummary`` of a List walk (all pages), and when the service answered.

    The time is the first page's (:func:`~airflow_spot_provider.watch.book.served_at`): a job
    that changes while the walk pages may sit on a page already read; the next walk lists it.

    :param args: the first page's arguments (:meth:`~airflow_spot_provider.watch.book.Book.
        list_args`).
    """
    kwargs = dict(args)
    summaries: list[dict[str, Any]] = []
    served: datetime | None = None
    while True:
        page = yield Call("sagemaker", "list_training_jobs", dict(kwargs))
        if "NextToken" not in kwargs:
            served = served_at(page)
        summaries.extend(page.get("TrainingJobSummaries", []))
        if not page.get("NextToken"):
            return summaries, served
        kwargs["NextToken"] = page["NextToken"]


def read_group(group: GroupRead) -> Ops[list[dict[str, Any]]]:
    """The events of the training jobs' group since the previous read (minus the margin).

    ``FilterLogEvents`` with no stream named, paged up to ``Tuning.group_read_pages``; oldest
    first, so a read cut by the cap goes on from its last event next time. Empty pages with a
    ``nextToken`` (CloudWatch may answer so while it searches) are paged through.

    :param group: where the read starts; it notes the events read.
    """
    start = group.start()
    if start is None:
        return []
    kwargs = group.args(start)
    events: list[dict[str, Any]] = []
    for _ in range(group.tuning.group_read_pages):
        page = yield Call("logs", "filter_log_events", dict(kwargs), best_effort=True)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    group.took(events)
    return events


def marked_events(positions: Sequence[Position]) -> Ops[list[dict[str, Any]]]:
    """Every event of the positions' time-marked streams from their marks on, 100 streams per
    ``FilterLogEvents`` call.

    :param positions: the positions (of jobs that ended).
    """
    starts = earliest_starts(marked_starts(position, position.streams) for position in positions)
    events: list[dict[str, Any]] = []
    for streams, start in stream_batches(starts):
        events.extend((yield from filter_events(streams, start)))
    return events
