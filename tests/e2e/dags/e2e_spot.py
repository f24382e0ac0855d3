"""DAGs of the end-to-end tests: one spot training task per mode and policy.

The request, the spot arguments and the base name come from the run's conf, so that each test
chooses its job and its spot market scenario; the policy and the mode are fixed per DAG.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task, task_group

from airflow_spot_provider.groups import spot_training_group
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor

POLICIES = {
    "once": SpotRetryPolicy(max_attempts=1),
    "retry": SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0.5),
    # A backoff longer than the trigger's hand-back: the task defers (or sleeps) on it.
    "backoff": SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=4),
    # Deadline-aware, the deadline 150 s after the DAG is parsed (each test run parses it): 3 s
    # of work, 1 s restarts and checkpoints and a 120 s margin leave spot about 20 s, then an
    # attempt still waiting for capacity gives way to on-demand.
    "deadline": SpotRetryPolicy(
        max_attempts=2,
        backoff_initial_seconds=0,
        deadline=datetime.now(UTC) + timedelta(seconds=150),
        deadline_aware=True,
        expected_training_seconds=3,
        restart_overhead_seconds=1,
        checkpoint_interval_seconds=1,
        deadline_margin_seconds=120,
    ),
    "past": SpotRetryPolicy(max_attempts=2, deadline=datetime(2026, 1, 1, tzinfo=UTC)),
    # An attempt that would start from scratch is not made.
    "progress": SpotRetryPolicy(
        max_attempts=2, backoff_initial_seconds=0.5, require_checkpoint_progress="give_up"
    ),
    # Resubmits whatever the checkpoints say; a 1 s interval flags checkpoints that stood still.
    "stale": SpotRetryPolicy(
        max_attempts=2, backoff_initial_seconds=0.5, checkpoint_interval_seconds=1
    ),
}
POLL = 0.3


def _spot_dag(dag_id: str, *, deferrable: bool, policy: str) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=True,
        tags=["e2e"],
    ) as dag:
        SageMakerSpotTrainingOperator(
            task_id="train",
            config="{{ dag_run.conf['config'] }}",
            checkpoint_s3_uri="{{ dag_run.conf.get('checkpoint_s3_uri') }}",
            max_run="{{ dag_run.conf['max_run'] }}",
            max_wait="{{ dag_run.conf['max_wait'] }}",
            job_name="{{ dag_run.conf['name'] }}",
            spot_retry_policy=POLICIES[policy],
            deferrable=deferrable,
            poll_interval=POLL,
        )
    return dag


for _mode, _deferrable in (("deferred", True), ("worker", False)):
    for _policy in POLICIES:
        _id = f"e2e_{_policy}_{_mode}"
        globals()[_id] = _spot_dag(_id, deferrable=_deferrable, policy=_policy)


with DAG(
    dag_id="e2e_launch_and_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    render_template_as_native_obj=True,
    tags=["e2e"],
) as e2e_launch_and_sensor:
    launch = SageMakerSpotTrainingOperator(
        task_id="launch",
        config="{{ dag_run.conf['config'] }}",
        checkpoint_s3_uri="{{ dag_run.conf.get('checkpoint_s3_uri') }}",
        max_run="{{ dag_run.conf['max_run'] }}",
        max_wait="{{ dag_run.conf['max_wait'] }}",
        job_name="{{ dag_run.conf['name'] }}",
        wait_for_completion=False,
    )
    launch >> SageMakerSpotTrainingSensor(
        task_id="wait",
        job_name=launch.output["job_name"],
        spot_retry_policy=POLICIES["retry"],
        poke_interval=POLL,
        mode="reschedule",
    )


class _DiesAfterCreating(SageMakerSpotTrainingOperator):
    """Dies on its first try right after creating the job, as a worker lost at that moment."""

    def execute(self, context: Any) -> dict[str, Any]:
        if context["ti"].try_number == 1:
            self._runner(context).launch()  # creates attempt 1
            raise RuntimeError("worker lost right after CreateTrainingJob")
        return super().execute(context)


with DAG(
    dag_id="e2e_worker_lost",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    render_template_as_native_obj=True,
    tags=["e2e"],
) as e2e_worker_lost:
    _DiesAfterCreating(
        task_id="train",
        config="{{ dag_run.conf['config'] }}",
        max_run="{{ dag_run.conf['max_run'] }}",
        max_wait="{{ dag_run.conf['max_wait'] }}",
        job_name="{{ dag_run.conf['name'] }}",
        retries=1,
        retry_delay=timedelta(seconds=0),
        poll_interval=POLL,
    )


@task
def _two_configs(conf: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The run's config twice, with different seeds."""
    assert conf is not None
    configs = []
    for seed in (1, 2):
        config = dict(conf["config"])
        config["HyperParameters"] = {**config["HyperParameters"], "seed": str(seed)}
        configs.append(config)
    return configs


@task_group
def _one_chain(config: dict[str, Any]) -> None:
    spot_training_group(
        group_id="spot",
        config=config,
        max_run=60,
        max_wait=120,
        job_name="{{ dag_run.conf['name'] }}",
        spot_retry_policy=POLICIES["retry"],
        deferrable=True,
        poll_interval=POLL,
    )


with DAG(
    dag_id="e2e_mapped_group",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    render_template_as_native_obj=True,
    tags=["e2e"],
) as e2e_mapped_group:
    _one_chain.expand(config=_two_configs(conf="{{ dag_run.conf }}"))
