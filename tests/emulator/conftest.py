"""One emulator for the emulator tests, and boto3 clients bound to it.

The emulator runs with phases of tens of milliseconds (``fast_config``). Tests that need their own
emulator (restart, CLI) start it themselves. Every test talks to it through real boto3 clients.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from airflow_spot_provider.emulator import InstanceMarket, SpotEmulator
from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.testing import fast_config

BUCKET = "spot-emulator-tests"
QUOTA_TYPE = "ml.c5.4xlarge"  # quota of 2 instances, for the ResourceLimitExceeded tests
FLAKY_TYPE = "ml.g4dn.2xlarge"  # random market: about 3 interruptions per training second
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotEmulator]:
    """The session's emulator; at the end, no job may have hit an emulator bug."""
    config = fast_config(
        tmp_path_factory.mktemp("spot-emulator"),
        quotas={QUOTA_TYPE: 2},
        markets={FLAKY_TYPE: InstanceMarket(interruption_rate_per_hour=3 * 3600)},
    )
    with SpotEmulator(config=config) as running:
        yield running
        bugs = running.admin.events(kind="bug")
        assert not bugs, f"emulator bugs: {bugs}"


def _client(emulator: SpotEmulator, service: str) -> Any:
    # No retries: the tests look at each error as the service answers it.
    return emulator.boto3_client(service, config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="session")
def sm(emulator: SpotEmulator) -> Any:
    """A boto3 SageMaker client of the emulator."""
    return _client(emulator, "sagemaker")


@pytest.fixture(scope="session")
def logs(emulator: SpotEmulator) -> Any:
    """A boto3 CloudWatch Logs client of the emulator."""
    return _client(emulator, "logs")


@pytest.fixture(scope="session")
def s3(emulator: SpotEmulator) -> Any:
    """A boto3 S3 client of the emulator's S3."""
    return _client(emulator, "s3")


@pytest.fixture(scope="session")
def bucket(s3: Any) -> str:
    """A bucket for outputs and checkpoints."""
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture(scope="session")
def admin(emulator: SpotEmulator) -> AdminClient:
    """The emulator's admin API."""
    return emulator.admin


@pytest.fixture
def job_name(request: pytest.FixtureRequest) -> str:
    """A job name unique in the session, readable in the event log."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:50]
    return f"{base}-{next(_counter)}"


@pytest.fixture(scope="session")
def flaky_type() -> str:
    """An instance type whose random market interrupts about three times a training second."""
    return FLAKY_TYPE


@pytest.fixture(scope="session")
def quota_type() -> str:
    """An instance type with a quota of 2 instances (spot and on-demand counted apart)."""
    return QUOTA_TYPE


@pytest.fixture(scope="session")
def trainer_dir() -> Path:
    """The example trainer's source dir (``sagemaker_submit_directory``)."""
    return Path(__file__).resolve().parents[2] / "dags" / "training"


@pytest.fixture(scope="session")
def standalone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The emulator's S3 server alone, for tests of the emulator's parts on their own."""
    from airflow_spot_provider.emulator.s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"), "127.0.0.1")
    server.start()
    try:
        yield server.client()
    finally:
        server.stop()
