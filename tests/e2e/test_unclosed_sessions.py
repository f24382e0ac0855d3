"""A deferrable run under ``dag.test()`` closes every aiohttp session it opened.

``dag.test()`` (and ``airflow dags test``) runs the trigger in ``asyncio.run`` and takes its
first event: the event loop ends with the trigger, and cancels whatever still runs on it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from collections.abc import Iterator

import pytest
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import run_dag, spot_conf

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def unclosed_sessions(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """What aiohttp said of client sessions (and connectors) left unclosed, once the block ends.

    An unclosed session says so when it is collected (a ``ResourceWarning``, and an error through
    the event loop's exception handler): the garbage is collected as the block ends.

    :param caplog: pytest's log capture.
    """
    said: list[str] = []
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.ERROR, logger="asyncio"),
    ):
        warnings.simplefilter("always", ResourceWarning)
        yield said
        gc.collect()
    said.extend(r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage())
    said.extend(str(w.message) for w in caught if "aiohttp" in str(w.filename))


def test_a_deferred_run_leaves_no_unclosed_client_session(
    emulator: SpotEmulator, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with unclosed_sessions(caplog) as unclosed:
        run = run_dag("e2e_once_deferred", spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.SUCCESS
    assert unclosed == []
