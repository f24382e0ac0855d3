"""Deferrable following of a spot training job in the triggerer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_spot_provider.attempts import FollowState, transition_line
from airflow_spot_provider.hooks.errors import ApiCallError, ApiErrorBudget
from airflow_spot_provider.lifecycle import SpotJobReport, json_safe
from airflow_spot_provider.triggers.polling import DescribePoller, JobPoller

log = logging.getLogger(__name__)

EVENT_DONE = "done"
EVENT_ERROR = "error"


class SageMakerSpotTrainingTrigger(BaseTrigger):
    """Follow a training job until it ends; log every new SecondaryStatus transition once.

    Fires one event: ``{"status": "done", "report": <SpotJobReport JSON>, "follow": ...}`` when the
    job reaches a terminal status, or ``{"status": "error", "code": ..., "message": ...}`` when the
    API kept failing with a non-transient error. Transient errors (throttling, 5xx, connection)
    are retried with backoff for as long as they last: the job's own MaxWait bounds the wait, not a
    poll budget. A triggerer restart re-creates the trigger from its kwargs; transitions logged
    before the restart are then skipped thanks to the ``follow`` position it was created with and
    the position it saves as it goes (see :class:`~airflow_spot_provider.triggers.polling`).

    :param job_name: the training job.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param poll_interval: seconds between two DescribeTrainingJob calls.
    :param follow: the :class:`FollowState` JSON of what was logged before deferring.
    :param max_error_polls: consecutive non-transient API errors before giving up.
    :param stop_on_kill: stop the job when a user kills the deferred task.
    :param print_log: also log the training job's CloudWatch lines.
    :param wait_first: wait one poll interval before the first describe (a job just created):
        one DescribeTrainingJob per poll interval, not one more per attempt.
    """

    def __init__(
        self,
        *,
        job_name: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 30.0,
        follow: dict[str, Any] | None = None,
        max_error_polls: int = 5,
        stop_on_kill: bool = True,
        print_log: bool = False,
        wait_first: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # Validated here: these values cross a serialization boundary into another process.
        if not job_name:
            raise ValueError("job_name must be a non-empty string")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval={poll_interval!r}: must be > 0 seconds")
        if max_error_polls < 1:
            raise ValueError(f"max_error_polls={max_error_polls!r}: must be >= 1")
        self.job_name = job_name
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = float(poll_interval)
        self.follow = FollowState.from_json(follow or {"job_name": job_name}).to_json()
        self.max_error_polls = max_error_polls
        self.stop_on_kill = stop_on_kill
        self.print_log = print_log
        self.wait_first = wait_first

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and kwargs, enough to re-create the trigger after a restart."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "follow": self.follow,
                "max_error_polls": self.max_error_polls,
                "stop_on_kill": self.stop_on_kill,
                "print_log": self.print_log,
                "wait_first": self.wait_first,
            },
        )

    def _poller(self) -> JobPoller:
        return DescribePoller(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the job ends, logging transitions as they happen."""
        state = FollowState.from_json(self.follow)
        budget = ApiErrorBudget(max_errors=self.max_error_polls)
        async with self._poller() as poller:
            state = await poller.resume_position(state)
            if self.wait_first and state.transitions == 0:
                await asyncio.sleep(self.poll_interval)
            while True:
                try:
                    describe = await poller.describe(self.job_name)
                except ApiCallError as error:
                    self.log.warning("DescribeTrainingJob %s failed: %s", self.job_name, error)
                    if budget.exhausted(error):
                        yield TriggerEvent(self._error_event(error))  # type: ignore[no-untyped-call]
                        return
                    await asyncio.sleep(budget.backoff_seconds(self.poll_interval))
                    continue
                budget.reset()
                report = SpotJobReport.from_describe(describe)
                new = state.take_new(report)
                for transition in new:
                    self.log.info(transition_line(self.job_name, transition))
                if await self._print_log_lines(poller, state) or new:
                    await poller.save_position(state)
                if report.is_terminal:
                    yield TriggerEvent(  # type: ignore[no-untyped-call]
                        {
                            "status": EVENT_DONE,
                            "job_name": self.job_name,
                            "report": report.to_json(),
                            "follow": state.to_json(),
                            # The final description, so the task does not describe it again.
                            "describe": json_safe(describe),
                        }
                    )
                    return
                await asyncio.sleep(self.poll_interval)

    async def _print_log_lines(self, poller: JobPoller, state: FollowState) -> bool:
        """Log the training job's new CloudWatch lines; True if there were any."""
        if not self.print_log:
            return False
        try:
            lines = await poller.log_lines(self.job_name, state.log_tokens)
        except ApiCallError as error:  # the log is a nicety: the job's status is what matters
            self.log.warning("Could not read the training log of %s: %s", self.job_name, error)
            return False
        for stream, line in lines:
            self.log.info("[%s] %s", stream.rsplit("/", 1)[-1], line)
        return bool(lines)

    def _error_event(self, error: ApiCallError) -> dict[str, Any]:
        return {
            "status": EVENT_ERROR,
            "job_name": self.job_name,
            "code": error.code,
            "message": error.message,
        }

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed, clear): stop the job so it stops billing.

        Not called on a triggerer restart, which must leave the job running.
        """
        if not self.stop_on_kill:
            return
        async with self._poller() as poller:
            stopped = await poller.stop(self.job_name)
        self.log.info(
            "Task killed while deferred: %s training job %s.",
            "stopped" if stopped else "nothing to stop for",
            self.job_name,
        )
