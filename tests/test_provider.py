"""The package installs as an Airflow provider."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import distribution, entry_points

import pytest

import airflow_spot_provider
from airflow_spot_provider.provider_info import PACKAGE_NAME, get_provider_info


def test_entry_point_points_at_provider_info() -> None:
    (point,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.value.startswith("airflow_spot_provider.")
    ]
    assert point.load() is get_provider_info


def test_package_name_equals_distribution_name() -> None:
    info = get_provider_info()
    assert info["package-name"] == PACKAGE_NAME == distribution(PACKAGE_NAME).metadata["Name"]
    assert info["versions"] == [airflow_spot_provider.__version__]
    assert distribution(PACKAGE_NAME).version == airflow_spot_provider.__version__


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("list", PACKAGE_NAME),
        ("triggers", "airflow_spot_provider.triggers.spot_training"),
        ("links", "airflow_spot_provider.links.SageMakerSpotTrainingJobLink"),
    ],
)
def test_airflow_lists_what_the_provider_registers(
    tmp_path: object, command: str, expected: str
) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", command, "--output", "plain"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert expected in out


def test_registered_modules_import() -> None:
    info = get_provider_info()
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for module in info[kind][0]["python-modules"]:
            importlib.import_module(module)
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert hasattr(importlib.import_module(module), name)
