"""One Airflow deployment and one embedded backend, shared by every deployment cell.

Sharing is sound because each cell has its own DAG run, its own job names (scenarios and
capacity gaps match them or use the cell's own instance type) and asserts on its own jobs.
Cells that kill a component run after the others, one component crash at a time.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from airflow_spot_provider.emulator import Durations, EmulatorConfig, SpotEmulator
from tests.deployment.deployment import COMPONENTS, AirflowDeployment
from tests.deployment.rest import AirflowApi
from tests.e2e.conftest import BUCKET

DAGS = sorted((Path(__file__).parent / "dags").glob("*.py"))
DAG_IDS = [
    "deploy_once_deferred",
    "deploy_once_worker",
    "deploy_retry_deferred",
    "deploy_retry_worker",
    "deploy_backoff_deferred",
    "deploy_long_backoff_deferred",
    "deploy_once_worker_retried",
    "deploy_group",
]


@pytest.fixture(scope="session")
def spot_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotEmulator]:
    """The embedded SageMaker backend, in this process; the deployment reaches it over HTTP."""
    config = EmulatorConfig(
        data_dir=tmp_path_factory.mktemp("deploy-backend"),
        # Capacity comes back 3 s after an interruption (0.3 s by default): time enough for a
        # CapacityGap to see the interruption and take capacity away on a loaded machine.
        durations=Durations(restart_delay_seconds=3.0),
    )
    with serving(config) as backend:
        yield backend


@contextmanager
def serving(config: EmulatorConfig) -> Iterator[SpotEmulator]:
    """The embedded backend, with the bucket of the tests' checkpoints and models.

    :param config: its configuration.
    """
    with SpotEmulator(config=config) as backend:
        backend.boto3_client("s3").create_bucket(Bucket=BUCKET)
        yield backend


@pytest.fixture(scope="session")
def airflow(
    spot_backend: SpotEmulator, request: pytest.FixtureRequest
) -> Iterator[AirflowDeployment]:
    """Airflow 3.3 as users run it: migrate, then four components as separate processes.

    Its home (config, DB, component outputs, task logs) is kept when a test failed, and its
    path printed, so that the components' side of a failure can be read.
    """
    home = Path(tempfile.mkdtemp(prefix="deploy-airflow-"))
    deployment = AirflowDeployment(home, DAGS, spot_backend.airflow_connection())
    deployment.migrate()
    for component in COMPONENTS:
        deployment.start(component)
    try:
        deployment.wait_healthy()
        yield deployment
    finally:
        deployment.close(keep=bool(request.session.testsfailed))


@pytest.fixture(scope="session")
def api(airflow: AirflowDeployment) -> Iterator[AirflowApi]:
    """The deployment's REST API, once the DAGs are parsed."""
    client = AirflowApi(airflow.base_url)
    client.wait_for_dags(DAG_IDS)
    yield client
    client.close()


def cell_name() -> str:
    """A base job name unique to one cell (scenarios and listings match jobs by it)."""
    return f"d{uuid.uuid4().hex[:10]}"
