"""The watch's own AWS calls, as generators carried out by :class:`~airflow_spot_provider.hooks.
jobs.AsyncJobs` (so each goes through the one API-retry rule): the List walk and the log scan."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from airflow_spot_provider.hooks.job_calls import Call, Ops
from airflow_spot_provider.watch.book import LogScan, served_at


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


def scan_streams(scan: LogScan, wanted: Callable[[str], bool]) -> Ops[dict[str, int | None]]:
    """The wanted streams of the training jobs' group that moved lately, and their last events.

    :param scan: where the previous scan stopped.
    :param wanted: whether a stream is of a job followed with its log.
    """
    kwargs = scan.args()
    found: dict[str, int | None] = {}
    pages = 0
    while True:
        page = yield Call("logs", "describe_log_streams", dict(kwargs), best_effort=True)
        pages += 1
        if not scan.take(page, pages, wanted, found):
            scan.done()
            return found
        kwargs["nextToken"] = page["nextToken"]
