"""Every example DAG imports cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

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
