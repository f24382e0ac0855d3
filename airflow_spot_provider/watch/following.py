"""Following jobs through the watch: a subscriber's news taken and logged, and many jobs at once.

:func:`take_news` is what a subscriber does with what the watch brings: the follow step on each
new description, its transitions and the relayed CloudWatch lines written to the subscriber's
log, until the job ends (or ``stop_when`` says so). The trigger takes its news with it, and so
does :func:`follow_jobs`, which follows many jobs from one event loop outside a triggerer: a
worker task that waits for a sweep of jobs (launched with ``wait_for_completion=False``), or any
asyncio code. The jobs share one watch, so following 1,000 of them costs about what following one
costs (one List per half interval, one describe per change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from airflow_spot_provider.follower import Followed, follow_step, is_done, live_line, relay_line
from airflow_spot_provider.hooks.errors import ApiRetryRule
from airflow_spot_provider.lifecycle import SpotJobReport
from airflow_spot_provider.position import Position
from airflow_spot_provider.watch.registry import watching
from airflow_spot_provider.watch.subscription import Subscription

Keep = Callable[[Position, bool], None]


class LineLog(Protocol):
    """Where a follower writes its lines: a trigger's logger (structlog), a task's (logging)."""

    def info(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """Write a line."""

    def warning(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """Write a warning."""


async def take_news(
    sub: Subscription,
    position: Position,
    log: LineLog,
    *,
    keep: Keep | None = None,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[dict[str, Any], Position]:
    """Log what the watch brings (the follow step, live lines, relayed lines) until done.

    :param sub: the subscription.
    :param position: what has been logged of the job.
    :param log: where the lines go (a trigger's logger, a task's).
    :param keep: called with each new position and whether its transitions moved (a trigger
        saves it), or None.
    :param stop_when: the early exit (a deadline switch), or None: until the job ends.
    :raises SpotApiError: the job's describe kept failing with a lasting error.
    """
    describe: dict[str, Any] | None = None
    step: Followed | None = None
    while True:
        news = await sub.next()
        if news.error is not None:
            raise news.error
        for note in news.notes:
            log.warning(note)
        before = position
        if news.describe is not None:
            describe = news.describe
            step = follow_step(SpotJobReport.from_describe(describe), position)
            for transition in step.transitions:
                log.info(live_line(position.job_name, transition))
            position = step.position
        moved = position != before  # the transitions
        for stream, text in news.lines:
            log.info(relay_line(stream, text))
        position = position.with_marks(news.marks)
        if keep is not None and position != before:
            keep(position, moved)
        # Each cycle, news or a tick: stop_when depends on the time too.
        if step and describe and is_done(step, describe, stop_when):
            return describe, position


async def follow_jobs(
    job_names: Sequence[str],
    *,
    aws_conn_id: str | None = "aws_default",
    region_name: str | None = None,
    poll_interval: float = 30.0,
    print_log: bool = False,
    log: logging.Logger | None = None,
) -> dict[str, dict[str, Any]]:
    """Follow jobs until every one has ended, through the loop's shared watch; their last
    descriptions, by job.

    Each job's transitions (and, with ``print_log``, its CloudWatch lines) are logged as they
    happen, as a trigger logs them. A job whose describe keeps failing with a lasting error ends
    the following with that error (the other jobs' subscriptions end with it).

    :param job_names: the training jobs (each once).
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param poll_interval: seconds of the poll cycle (the watch lists twice per interval).
    :param print_log: also relay the jobs' CloudWatch lines.
    :param log: where the lines go; this module's logger if None.
    :raises ValueError: no job, a job named twice, or ``poll_interval`` not above 0 (before any
        AWS call).
    :raises SpotApiError: a lasting API error.
    """
    names = list(job_names)
    if not names or len(set(names)) != len(names) or not all(names):
        raise ValueError(f"job_names={names!r}: must be distinct non-empty job names, at least one")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval={poll_interval!r}: must be > 0 seconds")
    out = log or logging.getLogger(__name__)

    async def one(name: str) -> dict[str, Any]:
        position = Position(name)
        sub = Subscription(
            position,
            poll_interval=poll_interval,
            print_log=print_log,
            wait_first=False,
            max_error_polls=ApiRetryRule.max_lasting,
            ticks=False,
        )
        async with watching(sub, aws_conn_id=aws_conn_id, region_name=region_name) as watch:
            watch.loaded(sub, position)  # nothing saved: the position lives in this call
            describe, _ = await take_news(sub, position, out)
        return describe

    tasks = [asyncio.ensure_future(one(name)) for name in names]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # a job failed, or the caller was cancelled: the others' subscriptions end too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
    return {name: task.result() for name, task in zip(names, tasks, strict=True)}


def follow_jobs_sync(job_names: Sequence[str], **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`follow_jobs` from synchronous code (a worker task): on an event loop of its own.

    :param job_names: the training jobs.
    :param kwargs: the other arguments of :func:`follow_jobs`.
    """
    return asyncio.run(follow_jobs(job_names, **kwargs))
