"""Following a chain of attempts from a task: in the worker, or deferred to the triggerer.

Shared by :class:`SageMakerSpotTrainingOperator` and :class:`SageMakerSpotTrainingSensor`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow_spot_provider.chain_end import chain_ended, given_up_result
from airflow_spot_provider.exceptions import SpotTrainingError
from airflow_spot_provider.operators.driver import SpotTrainingDriver

if TYPE_CHECKING:
    from airflow.sdk import Context


class SpotChainMixin:
    """Drive a :class:`SpotTrainingDriver` to the end of its chain.

    The host class (an operator) provides ``_driver(context)``, ``deferrable``,
    ``poll_interval``, ``aws_conn_id`` and ``region_name``.
    """

    deferrable: bool
    poll_interval: float
    aws_conn_id: str | None
    region_name: str | None
    wait_for_completion: bool = True
    # The chain this task drives, for on_kill (which gets no context).
    _active: SpotTrainingDriver | None = None
    # The chain's result (or summary when given up) once it has ended, for OpenLineage.
    chain_result: Mapping[str, Any] | None = None

    def _driver(self, context: Context) -> SpotTrainingDriver:
        raise NotImplementedError

    def _drive(self, driver: SpotTrainingDriver) -> dict[str, Any]:
        self._active = driver
        if not self.wait_for_completion:
            # Launch only: create the first job if there is none; resubmitting is the
            # follower's business (it holds the policy), never a launch task's.
            return driver.created_summary(driver.advance(launch_only=True).job_name)
        while True:
            try:
                step = driver.advance()
            except SpotTrainingError as given_up:
                self._chain_ended(given_up_result(given_up), given_up=True)
                raise
            if step.summary is not None:
                self._active = None
                self._chain_ended(step.summary)
                return step.summary
            if step.wait_seconds > 0:
                if self.deferrable:
                    self._defer_wait(step.wait_seconds, driver)
                driver.sleep(step.wait_seconds)
                continue
            if self.deferrable:
                self._defer_follow(step.job_name, driver, wait_first=step.created)
            driver.follow(step.job_name, self.poll_interval, wait_first=step.created)

    def _chain_ended(self, result: Mapping[str, Any], *, given_up: bool = False) -> None:
        """Keep the chain's result for OpenLineage; metrics, and the view's XCom if given up."""
        self.chain_result = result
        host = cast(Any, self)
        chain_ended(result, dag_id=host.dag_id, task_id=host.task_id, given_up=given_up)

    def _defer_follow(self, job_name: str, driver: SpotTrainingDriver, *, wait_first: bool) -> None:
        from airflow_spot_provider.triggers.spot_training import SageMakerSpotTrainingTrigger

        cast(Any, self).defer(
            trigger=SageMakerSpotTrainingTrigger(
                job_name=job_name,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                poll_interval=self.poll_interval,
                follow=driver.follow_state(job_name).to_json(),
                print_log=driver.print_log,
                wait_first=wait_first,
            ),
            method_name="execute_complete",
            kwargs={"ended": driver.ended_descriptions()},
        )

    def _defer_wait(self, seconds: float, driver: SpotTrainingDriver) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        cast(Any, self).defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=seconds)),
            method_name="execute_complete",
            kwargs={"ended": driver.ended_descriptions()},
        )

    def execute_complete(
        self,
        context: Context,
        event: Mapping[str, Any] | None = None,
        ended: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Resume after a trigger fired: take the job's end, then carry on with the chain.

        :param context: the task context.
        :param event: the follow trigger's event (None or a timestamp after a backoff wait).
        :param ended: descriptions of the chain's ended jobs, carried over the deferral so that
            they are not described again.
        """
        driver = self._driver(context)
        driver.remember_ended(ended or {})
        if isinstance(event, Mapping):
            driver.take_event(event)
        return self._drive(driver)

    def on_kill(self) -> None:
        """Stop every job of the chain still running, so that a killed task leaves none billing."""
        if self._active is not None and self.wait_for_completion:
            self._active.stop_running()
