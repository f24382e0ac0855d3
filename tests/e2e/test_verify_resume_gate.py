"""The resume gate in real Airflow: ``example_verify_resume_gate`` with ``dag.test()`` (the gate
verifies the example trainer on its own embedded backend, then the spot run goes to the session's
backend), and the operator failing on a trainer that does not resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.operators.verify_resume import (
    ResumeVerificationError,
    VerifyResumeOperator,
)
from airflow_spot_provider.verify.spec import VerifyUsageError
from tests.e2e.test_spot_training_dags import run_dag, task_state, xcom

pytestmark = pytest.mark.e2e

TRAINERS = Path(__file__).resolve().parents[1] / "verify" / "trainers"


@pytest.fixture(autouse=True)
def _fast_polling(monkeypatch: pytest.MonkeyPatch, emulator: SpotEmulator) -> None:
    monkeypatch.setenv("SPOT_EXAMPLES_POLL_INTERVAL", "0.3")


def test_gate_passes_then_the_spot_run_trains(sm: Any) -> None:
    conf = {
        "steps": 20,
        "step_sleep": 0.02,
        "verify_steps": 40,
        "verify_runs": 2,
        "max_run_seconds": 60,
        "max_wait_seconds": 120,
    }
    run = run_dag("example_verify_resume_gate", conf)

    assert run.state == DagRunState.SUCCESS
    report = xcom(run, "verify_resume")
    assert report["verdict"]["passed"] is True and report["exit_status"] == 0
    assert report["verdict"]["line"].startswith("resumes: yes; ")
    assert [r["kind"] for r in report["runs"]] == ["random", "checkpoint_write"]
    assert xcom(run, "train")["outcome"] == "COMPLETED"
    assert task_state(run, "train") == "success"


def test_gate_fails_on_a_trainer_that_loses_its_work() -> None:
    gate = VerifyResumeOperator(
        task_id="gate",
        source_dir=TRAINERS,
        entry_point="checkpoints_at_end.py",
        hyperparameters={"total_steps": 30, "step_sleep": 0.05},
        runs=1,
        notice_seconds=0.5,
    )
    with pytest.raises(ResumeVerificationError, match=r"the trainer does not resume: resumes: no"):
        gate.execute(context={})  # type: ignore[arg-type]


def test_gate_checks_its_options_when_the_dag_is_parsed() -> None:
    with pytest.raises(VerifyUsageError, match=r"runs=0: must be an integer from 1 to 20"):
        VerifyResumeOperator(task_id="gate", source_dir="/x", entry_point="t.py", runs=0)
    with pytest.raises(VerifyUsageError, match=r"tolerance rtol=-1"):
        VerifyResumeOperator(task_id="gate", source_dir="/x", entry_point="t.py", rtol=-1)
