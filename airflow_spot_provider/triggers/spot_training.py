"""The triggers of a deferred spot training task: following a job, waiting out a backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_spot_provider.events import BackoffEnded, FollowFailed, JobEnded
from airflow_spot_provider.exceptions import SpotApiError
from airflow_spot_provider.hooks.errors import ApiRetryRule
from airflow_spot_provider.hooks.job_calls import stop_job
from airflow_spot_provider.hooks.jobs import AsyncJobs
from airflow_spot_provider.next_action import switch_due
from airflow_spot_provider.position import Position
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.triggers.kill_guard import kill_verdict
from airflow_spot_provider.watch import Subscription, watching
from airflow_spot_provider.watch.following import take_news
from airflow_spot_provider.watch.registry import registry

T = TypeVar("T")
# Stops requested by on_kill, kept until done (the event loop holds tasks weakly).
_STOPPING: set[asyncio.Task[None]] = set()


async def _keeping_cancel_message(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` in a task of its own, so that a cancellation keeps its message.

    The triggerer cancels a trigger with the message ``__airflow_user_action__`` when a user
    marks the task failed or clears it, and calls ``on_kill`` only if the ``CancelledError``
    that comes out still carries it. Library code awaited while following may re-raise a
    cancellation without its message (``asgiref.sync_to_async`` does, and the Amazon provider's
    ``get_async_conn`` awaits it). Awaiting through :func:`asyncio.shield`, the cancellation is
    raised here, with its message, whatever the work was awaiting; the work is then cancelled.

    :param work: the coroutine.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task  # let it clean up (close its clients) before the trigger goes
        raise cancelled


def _switch_check(switch: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool] | None:
    """The follower's early exit from a trigger's ``switch`` kwarg (None: none).

    :param switch: ``first_name``, ``policy``, ``base_request`` and ``history`` (plain JSON).
    :raises SpotRequestValidationError: a policy that does not read back.
    """
    if not switch:
        return None
    policy = SpotRetryPolicy.from_json(switch["policy"])
    first_name, base = str(switch["first_name"]), switch.get("base_request")
    history = [dict(d) for d in switch.get("history") or ()]
    return lambda describe: switch_due(
        first_name=first_name,
        history=history,
        describe=describe,
        policy=policy,
        base_request=base,
        now=datetime.now(UTC),
    )


class SageMakerSpotTrainingTrigger(BaseTrigger):
    """Follow a training job until it ends, showing its progress as it happens.

    The job is followed by the triggerer's shared watch of the connection and region
    (:mod:`airflow_spot_provider.watch`): one ``ListTrainingJobs`` for all the triggers of the
    process tells which jobs changed, and only those are described. The trigger takes the
    follow step on each new description itself and writes what is new to its own log.

    Fires one event (:mod:`airflow_spot_provider.events`): :class:`JobEnded` with the final
    description and the position reached, or :class:`FollowFailed` with the AWS error code when
    the API kept failing with a lasting error. Transient errors (throttling, 5xx, connection)
    are waited out for as long as they last (:class:`ApiRetryRule`), once for all triggers of the
    watch. Transitions are shown as ``[live]`` lines: the task writes them to its own log when it
    resumes (see :mod:`airflow_spot_provider.follower`). A triggerer restart re-creates the
    trigger from its kwargs; it then carries on from the later of that position and the one it
    saved in a Variable as it went. The order at start: subscribe to the watch with the kwargs'
    position, load the saved one meanwhile (in one thread hop with every trigger of the loop
    starting then, :class:`~airflow_spot_provider.watch.saver.PositionSaver`), merge, and only
    then take the news that queued up: the watch reads no CloudWatch line for the trigger before
    the merge (the kwargs' marks may be behind), and a job that ended meanwhile is described
    again with its last lines. A trigger cancelled gracefully (a restart) ends only once its
    position is saved, so no line is logged twice; a killed triggerer (``kill -9``) may log the
    lines of its last moments again, never lose them.

    :param job_name: the training job.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param poll_interval: seconds of the poll cycle: the watch lists what changed twice per
        interval (the smallest of its triggers'), and the job is described when it changed.
    :param position: the :class:`Position` JSON of what was logged before deferring.
    :param max_error_polls: lasting API errors in a row before giving up.
    :param stop_on_kill: stop the job when a user kills the deferred task.
    :param print_log: also relay the training job's CloudWatch lines.
    :param wait_first: wait one poll interval before the first describe (a job just created).
    :param carry: the task's state, handed back untouched in the event.
    :param switch: for a deadline-aware policy, what :func:`~airflow_spot_provider.next_action.
        switch_due` needs (``first_name``, ``policy`` JSON, ``base_request``, ``history``): while
        the job waits for capacity the trigger asks it on each poll (pure, no AWS call) and
        hands the job back to the worker, which decides again and stops it, when it says so.
        None: follow to the end.
    """

    def __init__(
        self,
        *,
        job_name: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 30.0,
        position: dict[str, Any] | None = None,
        max_error_polls: int = ApiRetryRule.max_lasting,
        stop_on_kill: bool = True,
        print_log: bool = False,
        wait_first: bool = False,
        carry: dict[str, Any] | None = None,
        switch: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # Validated here: these values cross a serialization boundary into another process.
        if not job_name:
            raise ValueError("job_name must be a non-empty string")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval={poll_interval!r}: must be > 0 seconds")
        self.rule = ApiRetryRule(
            max_lasting=max_error_polls, initial_seconds=min(1.0, poll_interval)
        )
        self.job_name = job_name
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = float(poll_interval)
        self.position = Position.from_json(position or {"job_name": job_name})
        if self.position.job_name != job_name:
            raise ValueError(f"position is of {self.position.job_name}, not of job {job_name}")
        self.max_error_polls = max_error_polls
        self.stop_on_kill = stop_on_kill
        self.print_log = print_log
        self.wait_first = wait_first
        self.carry = carry
        self.switch = switch
        self.stop_when = _switch_check(switch)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and kwargs, enough to re-create the trigger after a restart."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "position": self.position.to_json(),
                "max_error_polls": self.max_error_polls,
                "stop_on_kill": self.stop_on_kill,
                "print_log": self.print_log,
                "wait_first": self.wait_first,
                "carry": self.carry,
                "switch": self.switch,
            },
        )

    def _jobs(self) -> AsyncJobs:
        return AsyncJobs(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            log=self.log,
            rule=self.rule,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Follow until the job ends, showing transitions (and log lines) as they happen."""
        event = await _keeping_cancel_message(self._follow())
        yield TriggerEvent(event.to_json())  # type: ignore[no-untyped-call]

    async def _follow(self) -> JobEnded | FollowFailed:
        """Follow the job to its end through the loop's shared watch; the event to fire."""
        saver = registry().saver
        sub = Subscription(
            self.position,
            poll_interval=self.poll_interval,
            print_log=self.print_log,
            wait_first=self.wait_first,
            max_error_polls=self.max_error_polls,
            ticks=self.stop_when is not None,
        )
        try:
            async with watching(
                sub, aws_conn_id=self.aws_conn_id, region_name=self.region_name
            ) as watch:
                # Subscribed first: the watch describes the job while the saved position loads
                # (with every other trigger's that starts now: one thread hop); its news wait.
                position = self.position.merge(await saver.load(self.job_name))
                watch.loaded(sub, position)
                describe, position = await take_news(
                    sub,
                    position,
                    self.log,
                    keep=lambda kept, moved: saver.keep(kept, urgent=moved),
                    stop_when=self.stop_when,
                )
        except SpotApiError as error:
            self._forget()
            return FollowFailed(self.job_name, error.code, error.message, self.carry)
        except BaseException:
            # Cancelled (a restart): leave only once the position is saved, or the next
            # triggerer would log its lines again. (Firing needs no save: the event carries it.)
            await saver.hurry(self.job_name)
            raise
        self._forget()  # the position travels with the event from here on
        return JobEnded(self.job_name, describe, position, self.carry)

    def _forget(self) -> None:
        """Delete the saved position (with the loop's next batch: the event need not wait)."""
        registry().saver.forget(self.job_name)

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed, clear): stop the job so it stops billing.

        Not called on a triggerer restart, which must leave the job running. Nor does it stop a
        job whose task is still deferred: Airflow also cancels so a trigger that another triggerer
        took over (apache/airflow#73454, :mod:`~airflow_spot_provider.triggers.kill_guard`). The
        stop runs in a task of its own: the triggerer cancels a killed trigger again on its next
        loop (about a second later) while ``on_kill`` may still be opening its client, and that
        cancellation must not abandon the stop.
        """
        stopping = asyncio.ensure_future(self._stop_and_forget())
        _STOPPING.add(stopping)  # a reference, so that it finishes even if on_kill is cancelled
        stopping.add_done_callback(_STOPPING.discard)
        await asyncio.shield(stopping)

    async def _stop_and_forget(self) -> None:
        verdict = await kill_verdict(self.task_instance)
        if not verdict.stop:
            # Another triggerer follows the job and reads the saved position: keep both.
            self.log.warning(
                "Trigger cancelled as if by a user, but %s: training job %s left running.",
                verdict.reason,
                self.job_name,
            )
            return
        self.log.info("Trigger killed, %s: stopping as asked.", verdict.reason)
        if self.stop_on_kill:
            async with self._jobs() as jobs:
                stopped = await jobs.run(stop_job(self.job_name))
            self.log.info(
                "Task killed while deferred: %s training job %s.",
                "stopped" if stopped else "nothing to stop for",
                self.job_name,
            )
        self._forget()


class SpotBackoffTrigger(BaseTrigger):
    """Wait until a resubmission's backoff is over, then hand the task its state back.

    :param until: when the backoff ends (ISO-8601, aware).
    :param carry: the task's state, handed back untouched in the event.
    """

    def __init__(self, *, until: str, carry: dict[str, Any] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        moment = datetime.fromisoformat(until)
        if moment.tzinfo is None:
            raise ValueError(f"until={until!r}: must carry a time zone")
        self.until = moment
        self.carry = carry

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and kwargs."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"until": self.until.isoformat(), "carry": self.carry},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep until the moment, then fire."""
        while (left := (self.until - datetime.now(UTC)).total_seconds()) > 0:
            await asyncio.sleep(min(left, 60.0))
        yield TriggerEvent(BackoffEnded(self.carry).to_json())  # type: ignore[no-untyped-call]
