"""``SageMakerSpotTrainingSensor``: wait on a spot training job by name, resubmitting it if due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_spot_provider import position_store
from airflow_spot_provider.chain_end import given_up_result
from airflow_spot_provider.events import ChainState
from airflow_spot_provider.exceptions import SpotTrainingError
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.operators.chain import SpotChainMixin
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.runner import ChainRunner
from airflow_spot_provider.task_deadline import check_static

if TYPE_CHECKING:
    from airflow.sdk import Context


class _NotYet(Exception):  # noqa: N818  (not an error: control flow of a poke)
    """The chain goes on: this poke is over."""


class PokeMode:
    """One look per poke: following and waiting end the poke; the next poke looks again."""

    def follow(self, runner: ChainRunner, job_name: str, *, just_created: bool) -> None:
        """End the poke."""
        raise _NotYet

    def wait(self, runner: ChainRunner, seconds: float) -> None:
        """End the poke."""
        raise _NotYet


class SageMakerSpotTrainingSensor(SpotChainMixin, AwsBaseSensor[SageMakerSpotHook]):
    """Wait for a spot training job (and the attempts resubmitted after it) to complete.

    With a launch task and this sensor as two tasks, the sensor logs the lifecycle and, when the
    job ends with an outcome its retry policy covers, resubmits it from its own description so
    that it resumes from the same checkpoint. Between pokes, the chain's state (what was logged,
    a decided resubmission) is kept in an Airflow Variable, so ``mode="reschedule"`` logs each
    transition once.

    :param job_name: the first job of the chain (templated, e.g. from the launch task's XCom).
    :param spot_retry_policy: when and how to resubmit; ``SpotRetryPolicy()`` by default. (Not
        ``retry_policy``: Airflow 3.3's own task argument of that name governs task retries.)
    :param deadline: the model is due by then (templated): an aware datetime or its ISO-8601
        text, e.g. ``"{{ data_interval_end + macros.timedelta(hours=12) }}"``. It replaces the
        policy's deadline for this run, in every mode; it must be ahead when the sensor starts
        (first try, first poke), and a deadline-aware policy without a deadline of its own
        needs it. None: the policy's.
    :param deferrable: wait in the triggerer (``[operators] default_deferrable``).
    :param poll_interval: seconds between two checks in deferrable mode.
    :param print_log: log the training job's CloudWatch lines (deferrable mode).
    """

    aws_hook_class = SageMakerSpotHook
    template_fields: Sequence[str] = aws_template_fields("job_name", "deadline")
    # BaseSensorOperator gives up after 7 days; a spot job may wait up to 28 (MaxWait's limit).
    DEFAULT_TIMEOUT = timedelta(days=29).total_seconds()

    def __init__(
        self,
        *,
        job_name: str,
        spot_retry_policy: SpotRetryPolicy | None = None,
        deadline: datetime | str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        print_log: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", self.DEFAULT_TIMEOUT)
        super().__init__(**kwargs)
        self.job_name = job_name
        self.spot_retry_policy = SpotRetryPolicy.checked(spot_retry_policy)
        self.deadline = deadline
        check_static(self.spot_retry_policy, deadline)
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.print_log = print_log

    def _runner(self, context: Context, state: ChainState | None = None) -> ChainRunner:
        # No state: the sensor starts following (execute, or the first poke of its try).
        policy = self._run_policy(context, starting=state is None)
        return ChainRunner(
            jobs=self.hook.jobs(self.log, self.poll_interval),
            policy=policy,
            first_name=self.job_name,
            base_request=None,
            log=self.log,
            print_log=self.print_log,
            poll_interval=self.poll_interval,
            state=state,
            list_checkpoints=self._list_checkpoints,
        )

    def execute(self, context: Context) -> Any:
        """Deferrable: follow in the triggerer; otherwise poke as any sensor does."""
        if self.deferrable:
            return self._run_chain(self._runner(context))
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue:
        """One look at the chain: log what is new, resubmit if due, done when completed."""
        key = position_store.CHAIN_PREFIX + self.job_name
        runner = self._active
        if runner is None or runner.first_name != self.job_name:
            # A new process each poke in reschedule mode: take the chain's state from the last.
            saved = position_store.load(key)
            runner = self._runner(context, None if saved is None else ChainState.from_json(saved))
            self._active = runner
        try:
            summary = runner.run(PokeMode())
        except _NotYet:
            if self.reschedule:
                position_store.save(key, runner.state.to_json())
            return PokeReturnValue(is_done=False)
        except SpotTrainingError as given_up:
            self._chain_ended(given_up_result(given_up), given_up=True)
            raise
        self._chain_ended(summary)
        return PokeReturnValue(is_done=True, xcom_value=summary)
