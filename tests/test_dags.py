"""Every example DAG imports cleanly, and its tasks retry as ``examples.DEFAULT_ARGS`` says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from airflow_spot_provider.operators.verify_resume import VerifyResumeOperator

DAGS = Path(__file__).resolve().parents[1] / "dags"
EXPECTED = {
    "example_spot_training",
    "example_scheduled_retraining",
    "example_retry_on_stopped",
    "example_spot_sweep",
    "example_verify_resume_gate",
}


@pytest.mark.usefixtures("airflow_db")
def test_example_dags_import_without_errors() -> None:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED
    for dag_id in EXPECTED:
        assert "spot" in bag.get_dag(dag_id).tags


@pytest.mark.usefixtures("airflow_db")
def test_every_example_task_retries_once_soon_but_the_resume_gate_never() -> None:
    """Airflow 3.3's scheduler now and then fails a task that resumed from a deferral (a race,
    see ``examples.DEFAULT_ARGS``): one quick retry, which re-attaches to the job chain. The
    resume gate's FAIL is a verdict: a retry would only run the verification again."""
    bag = DagBag(dag_folder=str(DAGS))
    gates = []
    for dag_id in EXPECTED:
        for task in bag.get_dag(dag_id).tasks:
            if isinstance(task, VerifyResumeOperator):
                gates.append((dag_id, task.task_id))
                assert task.retries == 0, (dag_id, task.task_id)
                continue
            assert task.retries == 1, (dag_id, task.task_id)
            assert task.retry_delay <= timedelta(seconds=30), (dag_id, task.task_id)
    assert gates == [("example_verify_resume_gate", "verify_resume")]
    train = bag.get_dag("example_verify_resume_gate").get_task("train")
    assert train.retries == 1  # the spot task of the gate's DAG keeps its retry
