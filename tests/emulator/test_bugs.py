"""An emulator bug ends the job it hit (Failed, InternalServerError); it never freezes it.

These tests break the state machine on purpose, so they run their own emulator: the session's
must end without a single ``bug`` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.jobs import Job, JobState
from airflow_spot_provider.emulator.machine import Machine
from airflow_spot_provider.emulator.runner import TrainingRun
from airflow_spot_provider.emulator.store import Store
from airflow_spot_provider.emulator.testing import (
    fast_config,
    secondary_statuses,
    synthetic_request,
    wait_for_job,
)
from airflow_spot_provider.emulator.work import Runtime
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

BUCKET = "bugs"


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[SpotEmulator]:
    """An emulator of this test alone (its bug events stay out of the session's check)."""
    with SpotEmulator(config=fast_config(tmp_path / "data")) as emulator:
        emulator.boto3_client("s3").create_bucket(Bucket=BUCKET)
        yield emulator


def _machine(emulator: SpotEmulator) -> Machine:
    assert emulator.backend is not None
    return emulator.backend.machine


def test_an_illegal_transition_fails_the_job_and_kills_its_run(
    own_emulator: SpotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = _machine(own_emulator)
    runs: list[tuple[TrainingRun, asyncio.AbstractEventLoop]] = []

    def illegal_training(job: Job, rt: Runtime, now: float) -> None:
        if rt.run is None:  # the run is being started: wait for it, so that it can be killed
            return
        runs.append((rt.run, asyncio.get_running_loop()))
        machine.move(job, S.COMPLETED, now, TrainingJobStatus.COMPLETED)  # Training -> Completed

    monkeypatch.setitem(machine.phases.handlers, S.TRAINING, illegal_training)
    sm = own_emulator.boto3_client("sagemaker")
    name = "illegal-move"
    sm.create_training_job(**synthetic_request(name, BUCKET, train_seconds=60, max_wait=600))

    final = wait_for_job(sm, name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.FAILED
    assert final["SecondaryStatus"] == S.FAILED
    assert final["FailureReason"].startswith("InternalServerError: ")
    assert secondary_statuses(final) == [S.STARTING, S.DOWNLOADING, S.TRAINING, S.FAILED]
    assert final["TrainingEndTime"] == final["SecondaryStatusTransitions"][-1]["StartTime"]
    bugs = own_emulator.admin.events(job=name, kind="bug")
    assert len(bugs) == 1
    assert "IllegalTransitionError" in bugs[0]["error"]
    assert "Training -> Completed" in bugs[0]["error"]
    assert name not in machine.live
    # The run (60 s of training) was stopped with the job, not left running.
    run, loop = runs[0]
    assert asyncio.run_coroutine_threadsafe(run.wait(), loop).result(timeout=30) != 0

    own_emulator.stop()
    store = Store(own_emulator.config.db_path)
    try:
        rows = {row[0]: JobState.from_json(row[3]) for row in store.load_jobs()}
    finally:
        store.close()
    assert rows[name].status is TrainingJobStatus.FAILED
    assert rows[name].secondary is S.FAILED
    assert rows[name].training_end is not None
    assert (rows[name].failure_reason or "").startswith("InternalServerError: ")


def test_a_bug_while_stopping_ends_the_job_stopped(
    own_emulator: SpotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = _machine(own_emulator)

    def broken_stopping(job: Job, rt: Runtime, now: float) -> None:
        raise RuntimeError("a bug in Stopping")

    monkeypatch.setitem(machine.phases.handlers, S.STOPPING, broken_stopping)
    sm = own_emulator.boto3_client("sagemaker")
    name = "bug-while-stopping"
    sm.create_training_job(**synthetic_request(name, BUCKET, train_seconds=60, max_wait=600))
    sm.stop_training_job(TrainingJobName=name)

    final = wait_for_job(sm, name)

    # Stopping -> Failed is no legal move: the job ends as the stop it was asked.
    assert final["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert secondary_statuses(final)[-2:] == [S.STOPPING, S.STOPPED]
    assert "TrainingEndTime" in final
    bugs: list[dict[str, Any]] = own_emulator.admin.events(job=name, kind="bug")
    assert ["a bug in Stopping" in bug["error"] for bug in bugs] == [True]


def test_a_bug_that_leaves_no_legal_ending_still_ends_the_job(
    own_emulator: SpotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = _machine(own_emulator)

    def corrupting_stopping(job: Job, rt: Runtime, now: float) -> None:
        job.state.stop_reason = S.COMPLETED  # Stopping -> Completed is no legal move
        raise RuntimeError("a bug that corrupted the state")

    monkeypatch.setitem(machine.phases.handlers, S.STOPPING, corrupting_stopping)
    sm = own_emulator.boto3_client("sagemaker")
    name = "no-legal-ending"
    sm.create_training_job(**synthetic_request(name, BUCKET, train_seconds=60, max_wait=600))
    sm.stop_training_job(TrainingJobName=name)

    final = wait_for_job(sm, name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.FAILED
    assert secondary_statuses(final)[-2:] == [S.STOPPING, S.FAILED]
    assert final["FailureReason"].startswith("InternalServerError: ")
    assert "TrainingEndTime" in final
    assert name not in machine.live
