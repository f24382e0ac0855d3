"""DAGs of the deployment tests: one spot training task per mode and policy.

Copied into the deployment's own dags folder. The request, the spot arguments and the base job
name come from the run's conf, so that each test cell chooses its job and its spot market; the
policy, the mode and the task retries are fixed per DAG. Short poll intervals keep cells short.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_spot_provider.groups import spot_training_group
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy

POLL_SECONDS = 1.0
POLICIES = {
    "once": SpotRetryPolicy(max_attempts=1),
    "retry": SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0.5),
    # Bug 3 of issue #7, as reported: a backoff that outlasts the trigger's hand-back.
    "backoff": SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=4),
    # The same with a backoff that outlasts the hand-back on a loaded machine too (resuming a
    # deferred task took up to a minute here, with a load average of 15 on 2 cores).
    "long_backoff": SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=45),
}
# dag id -> (policy, deferrable, task retries)
SPOT_DAGS = {
    "deploy_once_deferred": ("once", True, 0),
    "deploy_once_worker": ("once", False, 0),
    "deploy_retry_deferred": ("retry", True, 0),
    "deploy_retry_worker": ("retry", False, 0),
    "deploy_backoff_deferred": ("backoff", True, 0),
    "deploy_long_backoff_deferred": ("long_backoff", True, 0),
    "deploy_once_worker_retried": ("once", False, 1),
}
_FROM_CONF: dict[str, Any] = {
    "config": "{{ dag_run.conf['config'] }}",
    "checkpoint_s3_uri": "{{ dag_run.conf['checkpoint_s3_uri'] }}",
    "max_run": "{{ dag_run.conf['max_run'] }}",
    "max_wait": "{{ dag_run.conf['max_wait'] }}",
    "job_name": "{{ dag_run.conf['name'] }}",
}


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=True,
        tags=["deployment"],
    )


def _spot_dag(dag_id: str, policy: str, deferrable: bool, retries: int) -> DAG:
    with _dag(dag_id) as dag:
        SageMakerSpotTrainingOperator(
            task_id="train",
            **_FROM_CONF,
            spot_retry_policy=POLICIES[policy],
            deferrable=deferrable,
            poll_interval=POLL_SECONDS,
            retries=retries,
            retry_delay=timedelta(seconds=2),
        )
    return dag


for _dag_id, (_policy, _deferrable, _retries) in SPOT_DAGS.items():
    globals()[_dag_id] = _spot_dag(_dag_id, _policy, _deferrable, _retries)


# launch >> wait >> report: the sensor follows the chain in the triggerer and resubmits it.
with _dag("deploy_group") as deploy_group:
    spot_training_group(
        group_id="spot",
        **_FROM_CONF,
        spot_retry_policy=POLICIES["retry"],
        deferrable=True,
        poll_interval=POLL_SECONDS,
    )
