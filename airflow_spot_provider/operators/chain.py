"""The per-mode part of following a chain: the worker, deferred, poke by poke.

Shared by :class:`SageMakerSpotTrainingOperator` and :class:`SageMakerSpotTrainingSensor`; the
chain itself is :class:`~airflow_spot_provider.runner.ChainRunner`'s business.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow_spot_provider.chain_end import chain_ended, given_up_result
from airflow_spot_provider.events import ChainState, event_from_json
from airflow_spot_provider.exceptions import SpotTrainingError
from airflow_spot_provider.progress import CheckpointObject, list_checkpoint_objects
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.runner import ChainRunner
from airflow_spot_provider.task_deadline import task_policy

if TYPE_CHECKING:
    from airflow.sdk import Context


class WorkerMode:
    """Follow and wait in the worker process."""

    def follow(self, runner: ChainRunner, job_name: str, *, just_created: bool) -> None:
        """Poll the job here until it ends."""
        runner.follow_here(job_name, just_created=just_created)

    def wait(self, runner: ChainRunner, seconds: float) -> None:
        """Sleep the backoff."""
        time.sleep(seconds)


class DeferredMode:
    """Follow in the triggerer, wait on a TimeDeltaTrigger; the chain's state travels along.

    :param task: the operator (it defers).
    """

    def __init__(self, task: SpotChainMixin) -> None:
        self.task = task

    def follow(self, runner: ChainRunner, job_name: str, *, just_created: bool) -> None:
        """Defer to :class:`SageMakerSpotTrainingTrigger`."""
        from airflow_spot_provider.triggers.spot_training import SageMakerSpotTrainingTrigger

        trigger = SageMakerSpotTrainingTrigger(
            job_name=job_name,
            aws_conn_id=self.task.aws_conn_id,
            region_name=self.task.region_name,
            poll_interval=self.task.poll_interval,
            position=runner.state.position(job_name).to_json(),
            print_log=runner.print_log,
            wait_first=just_created,
            carry=runner.state.to_json(),
            switch=runner.switch_kwargs(job_name),
        )
        self._defer(trigger)

    def wait(self, runner: ChainRunner, seconds: float) -> None:
        """Defer on the backoff."""
        from airflow_spot_provider.triggers.spot_training import SpotBackoffTrigger

        until = datetime.now(UTC) + timedelta(seconds=seconds)
        self._defer(SpotBackoffTrigger(until=until.isoformat(), carry=runner.state.to_json()))

    def _defer(self, trigger: Any) -> None:
        cast(Any, self.task).defer(trigger=trigger, method_name="execute_complete")


class SpotChainMixin:
    """Run a :class:`ChainRunner` to the end of its chain, in the worker or deferred.

    The host class (an operator) provides ``_runner(context, state)``, ``deferrable``,
    ``poll_interval``, ``aws_conn_id``, ``region_name``, ``spot_retry_policy`` and ``deadline``.
    """

    spot_retry_policy: SpotRetryPolicy
    deadline: Any = None
    deferrable: bool
    poll_interval: float
    aws_conn_id: str | None
    region_name: str | None
    wait_for_completion: bool = True
    # The chain this task runs, for on_kill (which gets no context).
    _active: ChainRunner | None = None
    # The chain's result (or summary when given up) once it has ended, for OpenLineage.
    chain_result: Mapping[str, Any] | None = None

    def _runner(self, context: Context, state: ChainState | None = None) -> ChainRunner:
        raise NotImplementedError

    def _run_policy(self, context: Context, *, starting: bool) -> SpotRetryPolicy:
        """The policy of this run: the task's rendered ``deadline`` in it; checked before any AWS
        call (:func:`~airflow_spot_provider.task_deadline.task_policy`).

        :param context: the task context.
        :param starting: the task starts following its chain here (not a resumption after a
            deferral, nor a later poke): on the task's first try the deadline must be ahead. A
            retry or a resumption leaves a deadline passed meanwhile to the policy, which then
            creates no attempt but still follows (and can stop) the running one.
        """
        first_try = int(getattr(context["ti"], "try_number", 1) or 1) <= 1
        now = datetime.now(UTC) if starting and first_try else None
        return task_policy(self.spot_retry_policy, self.deadline, now=now)

    def _list_checkpoints(self, uri: str) -> list[CheckpointObject]:
        """The objects under a checkpoint prefix, with the task's AWS connection (the worker's).

        :param uri: ``CheckpointConfig.S3Uri``.
        """
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        s3 = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()
        return list_checkpoint_objects(s3, uri)

    def _run_chain(self, runner: ChainRunner) -> dict[str, Any]:
        self._active = runner
        if not self.wait_for_completion:
            # Launch only: resubmitting is the follower's business (it holds the policy).
            return runner.launch()
        mode = DeferredMode(self) if self.deferrable else WorkerMode()
        try:
            result = runner.run(mode)
        except SpotTrainingError as given_up:
            self._chain_ended(given_up_result(given_up), given_up=True)
            raise
        self._active = None
        self._chain_ended(result)
        return result

    def _chain_ended(self, result: Mapping[str, Any], *, given_up: bool = False) -> None:
        """Keep the chain's result for OpenLineage; metrics, and the view's XCom if given up."""
        self.chain_result = result
        host = cast(Any, self)
        chain_ended(result, dag_id=host.dag_id, task_id=host.task_id, given_up=given_up)

    def execute_complete(
        self, context: Context, event: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after a trigger fired: take its event, then carry on with the chain.

        :param context: the task context.
        :param event: the trigger's event (:mod:`airflow_spot_provider.events`), which hands the
            chain's state back.
        """
        fired = event_from_json(event or {})
        runner = self._runner(context, ChainState.from_json(fired.state))
        runner.take_event(fired)
        return self._run_chain(runner)

    def on_kill(self) -> None:
        """Stop every job of the chain still running, so that a killed task leaves none billing."""
        if self._active is not None and self.wait_for_completion:
            self._active.stop_running()
