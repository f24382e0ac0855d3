"""Test-wide setup: an isolated Airflow home, set before anything imports airflow."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="spot-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
# The example DAGs are the DAGs under test; Airflow puts this folder on sys.path.
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
# A second bundle holds the DAGs that only the end-to-end tests run.
E2E_DAGS_FOLDER = Path(__file__).resolve().parent / "e2e" / "dags"
_LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": "dags-folder", "classpath": _LOCAL_BUNDLE, "kwargs": {}},
        {"name": "e2e", "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(E2E_DAGS_FOLDER)}},
    ]
)
# No real AWS credentials or config may leak into a test.
for _name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

import pytest  # noqa: E402  (after the environment above, which airflow reads at import)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh Airflow metadata DB (SQLite, in the temporary home)."""
    from airflow.utils import db

    db.resetdb()
