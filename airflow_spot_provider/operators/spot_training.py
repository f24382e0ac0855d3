"""``SageMakerSpotTrainingOperator``: launch a managed spot training job, follow it, resubmit it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_spot_provider.events import ChainState
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.job_names import check_job_name_prefix
from airflow_spot_provider.links import SageMakerSpotTrainingJobLink, SpotTrainingViewLink
from airflow_spot_provider.operators.chain import SpotChainMixin
from airflow_spot_provider.request import (
    SAGEMAKER_MAX_WAIT_SECONDS,
    attempt_job_name,
    build_spot_request,
    is_static,
    positive_seconds,
    task_job_base_name,
)
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.runner import ChainRunner
from airflow_spot_provider.task_deadline import check_static

if TYPE_CHECKING:
    from airflow.sdk import Context


class SageMakerSpotTrainingOperator(SpotChainMixin, AwsBaseOperator[SageMakerSpotHook]):
    """Launch a SageMaker managed spot training job with checkpoints and follow it to the end.

    When the job ends with an outcome the retry policy covers (by default
    ``Stopped``/``MaxWaitTimeExceeded``), the next attempt is created with the same
    ``CheckpointConfig.S3Uri`` so that it resumes from the last checkpoint. Job names are
    deterministic per task instance and attempt: an Airflow retry re-attaches to the jobs it
    started instead of creating duplicates.

    :param config: the CreateTrainingJob request (dict or JSON), without ``TrainingJobName``.
    :param checkpoint_s3_uri: ``CheckpointConfig.S3Uri``; overrides the config's.
    :param checkpoint_local_path: ``CheckpointConfig.LocalPath``; overrides the config's.
    :param max_run: ``MaxRuntimeInSeconds`` (seconds or timedelta); overrides the config's.
    :param max_wait: ``MaxWaitTimeInSeconds`` (seconds or timedelta); overrides the config's.
    :param job_name: readable start of the job names, used as given (letters, digits and inner
        hyphens, a run of them made one; at most 40 characters); the task id, with other
        characters made hyphens, if None.
    :param spot_retry_policy: when and how to resubmit; ``SpotRetryPolicy()`` by default. (Not
        ``retry_policy``: Airflow 3.3's own task argument of that name governs task retries.)
    :param deadline: the model is due by then (templated): an aware datetime or its ISO-8601
        text, e.g. ``"{{ data_interval_end + macros.timedelta(hours=12) }}"``. It replaces the
        policy's deadline for this run; it must be ahead when the task starts (first try), and a
        deadline-aware policy without a deadline of its own needs it. None: the policy's.
    :param wait_for_completion: follow the job to its end (False: return once it is created).
    :param deferrable: follow the job in the triggerer (``[operators] default_deferrable``).
    :param poll_interval: seconds between two DescribeTrainingJob calls.
    :param print_log: log the training job's CloudWatch lines (worker mode).
    """

    aws_hook_class = SageMakerSpotHook
    template_fields: Sequence[str] = aws_template_fields(
        "config",
        "job_name",
        "checkpoint_s3_uri",
        "checkpoint_local_path",
        "max_run",
        "max_wait",
        "deadline",
    )
    template_fields_renderers = {"config": "json"}
    operator_extra_links = (SageMakerSpotTrainingJobLink(), SpotTrainingViewLink())
    ui_color = "#f2d6a2"

    def __init__(
        self,
        *,
        config: Mapping[str, Any] | str,
        checkpoint_s3_uri: str | None = None,
        checkpoint_local_path: str | None = None,
        max_run: int | str | timedelta | None = None,
        max_wait: int | str | timedelta | None = None,
        job_name: str | None = None,
        spot_retry_policy: SpotRetryPolicy | None = None,
        deadline: datetime | str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        print_log: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.checkpoint_s3_uri = checkpoint_s3_uri
        self.checkpoint_local_path = checkpoint_local_path
        self.max_run = max_run
        self.max_wait = max_wait
        self.job_name = job_name
        self.spot_retry_policy = SpotRetryPolicy.checked(spot_retry_policy)
        self.deadline = deadline
        check_static(self.spot_retry_policy, deadline)
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        # No poll is worth waiting longer than a job may live.
        self.poll_interval = positive_seconds(
            poll_interval, "poll_interval", SAGEMAKER_MAX_WAIT_SECONDS
        )
        self.print_log = print_log
        if is_static(job_name):
            check_job_name_prefix(job_name)
        if is_static([config, checkpoint_s3_uri, checkpoint_local_path, max_run, max_wait]):
            # Fail at DAG parse time where the values are already known.
            self._spot_request()

    def _spot_request(self) -> dict[str, Any]:
        return build_spot_request(
            self.config,
            checkpoint_s3_uri=self.checkpoint_s3_uri,
            checkpoint_local_path=self.checkpoint_local_path,
            max_run=self.max_run,
            max_wait=self.max_wait,
        )

    def _first_job_name(self, context: Context) -> str:
        check_job_name_prefix(self.job_name)  # rendered now
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        dag_run = context.get("dag_run")
        base = task_job_base_name(
            ti.dag_id,
            ti.task_id,
            ti.run_id,
            map_index,
            prefix=self.job_name,
            clear_number=int(getattr(dag_run, "clear_number", 0) or 0),
        )
        return attempt_job_name(base, 1)

    def _runner(self, context: Context, state: ChainState | None = None) -> ChainRunner:
        # No state: execute() starts the chain; with one: execute_complete() resumes it.
        policy = self._run_policy(context, starting=state is None)
        return ChainRunner(
            jobs=self.hook.jobs(self.log, self.poll_interval),
            policy=policy,
            first_name=self._first_job_name(context),
            base_request=self._spot_request(),
            log=self.log,
            print_log=self.print_log,
            poll_interval=self.poll_interval,
            state=state,
            list_checkpoints=self._list_checkpoints,
            on_attempt=lambda job_name: self._link(context, job_name),
        )

    def _link(self, context: Context, job_name: str) -> None:
        """Point the console link at the chain's latest job (created or attached to)."""
        SageMakerSpotTrainingJobLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_name=job_name,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Create (or re-attach to) the job chain and follow it to its end."""
        runner = self._runner(context)
        self._link(context, runner.first_name)
        # The chain's identity, for a sensor in another task: ``launch.output["job_name"]``.
        context["ti"].xcom_push(key="job_name", value=runner.first_name)
        return self._run_chain(runner)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the S3 channels in; the model artifact and the checkpoint prefix out.

        :param task_instance: the task instance that completed.
        """
        from airflow_spot_provider import lineage

        return lineage.operator_lineage(self._spot_request(), self.chain_result)
