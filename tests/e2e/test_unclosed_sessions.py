"""A deferrable run under ``dag.test()`` closes every aiohttp session it opened.

``dag.test()`` (and ``airflow dags test``) runs the trigger in ``asyncio.run`` and takes its
first event: the event loop ends with the trigger, and cancels whatever still runs on it.
"""

from __future__ import annotations

import gc
import logging
import warnings

import pytest
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import run_dag, spot_conf

pytestmark = pytest.mark.e2e


def test_a_deferred_run_leaves_no_unclosed_client_session(
    emulator: SpotEmulator, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.ERROR, logger="asyncio"),
    ):
        warnings.simplefilter("always", ResourceWarning)
        run = run_dag("e2e_once_deferred", spot_conf(name, synthetic_config(1.0)))
        gc.collect()  # an unclosed session says so when it is collected
    assert run.state == DagRunState.SUCCESS
    unclosed = [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]
    assert unclosed == []
    aiohttp = [str(w.message) for w in caught if "aiohttp" in str(w.filename)]
    assert aiohttp == []
