"""The DAG of the simulator-equivalence test: the real operator on exported market events.

One chain per job, one after the other: ``market_<i>`` loads job i's scenario into the embedded
backend (the simulator's market events, exported) and returns its deadline measured from that
moment, the origin of the scenario's windows; ``train_<i>`` runs the deadline-aware policy with
that deadline (an XComArg into the templated ``deadline``). Everything per job comes from the
run's conf (``tests/e2e/test_equivalence.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import RETRYABLE_OUTCOMES, SpotRetryPolicy

JOBS = 4
POLL = 0.2
# Seconds instead of hours: 4 s of work, a checkpoint every second, 0.5 s per (re)start, a 1 s
# margin. The deadline is the task's, so that the policy object is the simulator's as well.
POLICY = SpotRetryPolicy(
    retry_on=RETRYABLE_OUTCOMES,
    max_attempts=4,
    backoff_initial_seconds=0,
    deadline_aware=True,
    expected_training_seconds=4,
    restart_overhead_seconds=0.5,
    checkpoint_interval_seconds=1,
    deadline_margin_seconds=1,
)


@task(trigger_rule="all_done")
def market(index: int, conf: dict[str, Any] | None = None) -> str:
    """Load job ``index``'s market events; its deadline (ISO-8601), counted from now.

    :param index: the job.
    :param conf: the run's conf.
    """
    assert conf is not None
    job = conf["jobs"][index]
    admin = AdminClient(conf["admin"]["endpoint"], conf["admin"]["token"])
    admin.load_scenario(job["scenario"], replace=True)
    return (datetime.now(UTC) + timedelta(seconds=job["deadline_seconds"])).isoformat()


with DAG(
    dag_id="e2e_equivalence",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    render_template_as_native_obj=True,
    tags=["e2e"],
) as e2e_equivalence:
    previous: Any = None
    for _index in range(JOBS):
        _market = market.override(task_id=f"market_{_index}")(_index, conf="{{ dag_run.conf }}")
        _train = SageMakerSpotTrainingOperator(
            task_id=f"train_{_index}",
            config=f"{{{{ dag_run.conf['jobs'][{_index}]['config'] }}}}",
            job_name=f"{{{{ dag_run.conf['name'] }}}}-{_index}",
            spot_retry_policy=POLICY,
            deadline=_market,
            poll_interval=POLL,
            print_log=False,
        )
        if previous is not None:
            previous >> _market
        previous = _market >> _train
