"""Every example DAG runs green on the embedded backend (the same files run on AWS)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.lifecycle import TrainingJobStatus
from tests.e2e.test_spot_training_dags import jobs_named, run_dag, task_state, xcom

pytestmark = pytest.mark.e2e

FAST = {"max_run_seconds": 60, "max_wait_seconds": 120}


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch: pytest.MonkeyPatch, emulator: SpotEmulator) -> None:
    # The examples read their poll interval from the environment at parse time.
    monkeypatch.setenv("SPOT_EXAMPLES_POLL_INTERVAL", "0.3")


def test_example_spot_training(sm: Any) -> None:
    run = run_dag("example_spot_training", {"steps": 20, "step_sleep": 0.02, **FAST})
    assert run.state == DagRunState.SUCCESS
    assert xcom(run, "train")["outcome"] == "COMPLETED"


def test_example_retry_on_stopped_resubmits_after_max_wait(emulator: SpotEmulator, sm: Any) -> None:
    emulator.admin.load_scenario(
        [{"interrupt": {"job": "retry-on-stopped-*-a1", "at_training_second": 0.5}}], replace=True
    )
    conf = {"steps": 40, "step_sleep": 0.05, "max_run_seconds": 8, "max_wait_seconds": 8}
    with CapacityGap(emulator, "ml.m5.xlarge", "retry-on-stopped"):
        run = run_dag("example_retry_on_stopped", conf)
    assert run.state == DagRunState.SUCCESS
    launched = xcom(run, "retry_on_stopped.launch")
    report = xcom(run, "retry_on_stopped.report")
    assert report["outcome"] == "COMPLETED"
    assert report["attempts"][0]["job_name"] == launched["job_name"]
    assert [a["outcome"] for a in report["attempts"]] == ["MAX_WAIT_EXCEEDED", "COMPLETED"]
    assert report["totals"]["interruptions"] == 1


def test_example_spot_sweep_maps_one_chain_per_config(sm: Any) -> None:
    rates = [0.05, 0.5]
    run = run_dag("example_spot_sweep", {"learning_rates": rates, "steps": 10, **FAST})
    assert run.state == DagRunState.SUCCESS
    names = {xcom(run, "train", map_index=i)["job_name"] for i in range(len(rates))}
    assert len(names) == len(rates)  # the map index is part of the job names
    assert all(task_state(run, "train", i) == "success" for i in range(len(rates)))
    for job_name in names:
        (job,) = jobs_named(sm, job_name)
        assert job["TrainingJobStatus"] == TrainingJobStatus.COMPLETED


def test_example_scheduled_retraining_publishes_only_a_better_model(sm: Any) -> None:
    first = run_dag("example_scheduled_retraining", {"steps": 30, **FAST})
    assert first.state == DagRunState.SUCCESS
    assert xcom(first, "evaluate")["accuracy"] > 0.8
    assert xcom(first, "publish_if_better") is True  # nothing was published yet
    # Same day, same data, same deterministic trainer: not better, so not published.
    again = run_dag("example_scheduled_retraining", {"steps": 30, **FAST})
    assert again.state == DagRunState.SUCCESS
    assert xcom(again, "evaluate")["accuracy"] == xcom(first, "evaluate")["accuracy"]
    assert xcom(again, "publish_if_better") is False
