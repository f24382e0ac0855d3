"""DAGs of the end-to-end tests: one spot training task per mode and policy.

The request, the spot arguments and the base name come from the run's conf, so that each test
chooses its job and its spot market scenario; the policy and the mode are fixed per DAG.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task, task_group

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.events import ChainState
from airflow_spot_provider.groups import spot_training_group
from airflow_spot_provider.lifecycle import SpotJobReport
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import RETRYABLE_OUTCOMES, SpotRetryPolicy
from airflow_spot_provider.runner import ChainRunner
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor

POLICIES = {
    "once": SpotRetryPolicy(max_attempts=1),
    "retry": SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0.5),
    # A backoff longer than the trigger's hand-back: the task defers (or sleeps) on it.
    "backoff": SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=4),
    # Deadline-aware: 3 s of work, 1 s restarts and checkpoints and a 40 s margin leave spot
    # about 14 s of a 60 s deadline, then an attempt still waiting for capacity gives way to
    # on-demand. The deadline here is a placeholder: _DeadlineAfterFirstJob sets the real one.
    "deadline": SpotRetryPolicy(
        max_attempts=2,
        backoff_initial_seconds=0,
        deadline=datetime(2100, 1, 1, tzinfo=UTC),
        deadline_aware=True,
        expected_training_seconds=3,
        restart_overhead_seconds=1,
        checkpoint_interval_seconds=1,
        deadline_margin_seconds=40,
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
# The request, the spot arguments and the base name, from the run's conf.
FROM_CONF: dict[str, Any] = {
    "config": "{{ dag_run.conf['config'] }}",
    "checkpoint_s3_uri": "{{ dag_run.conf.get('checkpoint_s3_uri') }}",
    "max_run": "{{ dag_run.conf['max_run'] }}",
    "max_wait": "{{ dag_run.conf['max_wait'] }}",
    "job_name": "{{ dag_run.conf['name'] }}",
}


DEADLINE_AFTER = timedelta(seconds=60)


def _deadline_after_first_job(runner: ChainRunner) -> ChainRunner:
    """Set the deadline 60 s after the chain's first job was created (or after now, before it).

    A loaded machine may take half a minute to start a task: a deadline fixed when the DAG is
    parsed would leave a test's spot phase to chance.

    :param runner: the task's runner.
    """
    chain = runner.chain()
    first = SpotJobReport.from_describe(runner.describe(chain[0])) if chain else None
    start = (first.creation_time if first else None) or datetime.now(UTC)
    runner.policy = replace(runner.policy, deadline=start + DEADLINE_AFTER)
    return runner


class _DeadlineAfterFirstJob(SageMakerSpotTrainingOperator):
    """The operator, with :func:`_deadline_after_first_job`."""

    def _runner(self, context: Any, state: ChainState | None = None) -> ChainRunner:
        return _deadline_after_first_job(super()._runner(context, state))


class _SensorDeadlineAfterFirstJob(SageMakerSpotTrainingSensor):
    """The sensor, with :func:`_deadline_after_first_job`."""

    def _runner(self, context: Any, state: ChainState | None = None) -> ChainRunner:
        return _deadline_after_first_job(super()._runner(context, state))


# The "deadline" policy without a deadline of its own: the task's templated ``deadline`` gives it,
# 60 s after the data interval's end (the logical date of a manual run), or the run's conf says.
TASK_DEADLINE_POLICY = replace(POLICIES["deadline"], deadline=None)
TASK_DEADLINE = (
    "{{ dag_run.conf['deadline'] if 'deadline' in dag_run.conf"
    " else data_interval_end + macros.timedelta(seconds=60) }}"
)


def _e2e_dag(dag_id: str) -> DAG:
    """A manual DAG of these tests (native rendering: conf values keep their types)."""
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=True,
        tags=["e2e"],
    )


def _spot_dag(dag_id: str, *, deferrable: bool, policy: str) -> DAG:
    with _e2e_dag(dag_id) as dag:
        operator = _DeadlineAfterFirstJob if policy == "deadline" else SageMakerSpotTrainingOperator
        operator(
            task_id="train",
            **FROM_CONF,
            spot_retry_policy=POLICIES[policy],
            deferrable=deferrable,
            poll_interval=POLL,
        )
    return dag


for _mode, _deferrable in (("deferred", True), ("worker", False)):
    for _policy in POLICIES:
        _id = f"e2e_{_policy}_{_mode}"
        globals()[_id] = _spot_dag(_id, deferrable=_deferrable, policy=_policy)


for _mode, _deferrable in (("deferred", True), ("worker", False)):
    with _e2e_dag(f"e2e_task_deadline_{_mode}") as _dag:
        SageMakerSpotTrainingOperator(
            task_id="train",
            **FROM_CONF,
            spot_retry_policy=TASK_DEADLINE_POLICY,
            deadline=TASK_DEADLINE,
            deferrable=_deferrable,
            poll_interval=POLL,
        )
    globals()[_dag.dag_id] = _dag


def _launch_and_sensor(
    dag_id: str,
    sensor: type[SageMakerSpotTrainingSensor],
    policy: SpotRetryPolicy,
    deadline: str | None = None,
) -> DAG:
    """A launch task, then a sensor in reschedule mode that follows (and resubmits) the chain."""
    with _e2e_dag(dag_id) as dag:
        launch = SageMakerSpotTrainingOperator(
            task_id="launch",
            **FROM_CONF,
            spot_retry_policy=policy if deadline else None,
            deadline=deadline,
            wait_for_completion=False,
        )
        launch >> sensor(
            task_id="wait",
            job_name=launch.output["job_name"],
            spot_retry_policy=policy,
            deadline=deadline,
            poke_interval=POLL,
            mode="reschedule",
        )
    return dag


e2e_launch_and_sensor = _launch_and_sensor(
    "e2e_launch_and_sensor", SageMakerSpotTrainingSensor, POLICIES["retry"]
)
e2e_launch_and_deadline_sensor = _launch_and_sensor(
    "e2e_launch_and_deadline_sensor", _SensorDeadlineAfterFirstJob, POLICIES["deadline"]
)
e2e_launch_and_task_deadline_sensor = _launch_and_sensor(
    "e2e_launch_and_task_deadline_sensor",
    SageMakerSpotTrainingSensor,
    TASK_DEADLINE_POLICY,
    TASK_DEADLINE,
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


# --- the simulator equivalence (tests/e2e/test_equivalence.py) ---------------------------------
# One chain per job, one after the other. Each task first loads its job's scenario into the
# embedded backend (the simulator's market events, exported) and counts its deadline from that
# moment, the origin of the scenario's windows and the simulator's second 0; then it runs the
# deadline-aware policy as the operator does. Everything per job comes from the run's conf.

EQUIVALENCE_JOBS = 4
EQUIVALENCE_POLL = 0.2
# Seconds instead of hours: 6 s of work, a checkpoint every second, 0.5 s per (re)start, a 2.5 s
# margin (the backend's stop, polls and restart take longer on a loaded machine than in the
# simulator). The deadline is the task's, so that the policy object is the simulator's as well.
EQUIVALENCE_POLICY = SpotRetryPolicy(
    retry_on=RETRYABLE_OUTCOMES,
    max_attempts=4,
    backoff_initial_seconds=0,
    deadline_aware=True,
    expected_training_seconds=6,
    restart_overhead_seconds=0.5,
    checkpoint_interval_seconds=1,
    deadline_margin_seconds=2.5,
)


class _OnItsMarket(SageMakerSpotTrainingOperator):
    """The operator, started on its job's market: the scenario is loaded and the deadline set
    (pushed as XCom ``deadline``) at the start of ``execute``, just before attempt 1 (a task of
    ``dag.test()`` may start seconds after the one before it on a loaded machine).

    :param index: the job in the run's conf.
    """

    def __init__(self, *, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def execute(self, context: Any) -> dict[str, Any]:
        conf = context["dag_run"].conf
        job = conf["jobs"][self.index]
        AdminClient(conf["admin"]["endpoint"], conf["admin"]["token"]).load_scenario(
            job["scenario"], replace=True
        )
        self.deadline = datetime.now(UTC) + timedelta(seconds=job["deadline_seconds"])
        context["ti"].xcom_push(key="deadline", value=self.deadline.isoformat())
        return super().execute(context)


with _e2e_dag("e2e_equivalence") as e2e_equivalence:
    _previous: Any = None
    for _index in range(EQUIVALENCE_JOBS):
        _train = _OnItsMarket(
            task_id=f"train_{_index}",
            index=_index,
            config=f"{{{{ dag_run.conf['jobs'][{_index}]['config'] }}}}",
            job_name=f"{{{{ dag_run.conf['name'] }}}}-{_index}",
            spot_retry_policy=EQUIVALENCE_POLICY,
            deadline="2100-01-01T00:00:00+00:00",  # replaced by execute, from the market
            poll_interval=EQUIVALENCE_POLL,
            print_log=False,
            trigger_rule="all_done",
        )
        if _previous is not None:
            _previous >> _train
        _previous = _train
