"""The package installs as an Airflow provider."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution, entry_points

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


def test_airflow_lists_the_provider(tmp_path: object) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "plain"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert PACKAGE_NAME in out
