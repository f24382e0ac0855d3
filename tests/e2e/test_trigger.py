"""The deferrable trigger against the embedded backend: events, restarts, kills, API errors.

Triggers reach Airflow Variables (their log position) through the supervisor's comms; the tests
run them under Airflow's own in-process supervisor, as ``dag.test()`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
import structlog
import structlog.testing
from airflow.sdk.execution_time.supervisor import (
    InProcessSupervisorComms,
    InProcessTestSupervisor,
    set_supervisor_comms,
)

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.request import build_spot_request
from airflow_spot_provider.triggers.spot_training import SageMakerSpotTrainingTrigger
from tests.e2e.conftest import BUCKET, synthetic_config

pytestmark = pytest.mark.e2e


@contextmanager
def supervisor_comms() -> Iterator[None]:
    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(),
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="task").bind(),
        client=InProcessTestSupervisor._api_client(),
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    with set_supervisor_comms(supervisor.comms):
        yield


def create_job(sm: Any, name: str, train_seconds: float = 3.0, max_wait: int = 60) -> None:
    request = build_spot_request(
        synthetic_config(train_seconds, 0.25),
        checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/{name}/",
        max_run=max_wait,
        max_wait=max_wait,
        job_name=name,
    )
    sm.create_training_job(**request)


def trigger_for(name: str, **kwargs: Any) -> SageMakerSpotTrainingTrigger:
    return SageMakerSpotTrainingTrigger(job_name=name, poll_interval=0.2, **kwargs)


async def first_event(trigger: SageMakerSpotTrainingTrigger) -> dict[str, Any]:
    events: AsyncIterator[Any] = trigger.run()
    event = await anext(events)
    return dict(event.payload)


def test_serialize_round_trip() -> None:
    trigger = trigger_for("job-a1", follow={"job_name": "job-a1", "transitions": 3})
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, cls = classpath.rpartition(".")
    again = getattr(__import__(module, fromlist=[cls]), cls)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["follow"]["transitions"] == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"job_name": ""},
        {"job_name": "j", "poll_interval": 0},
        {"job_name": "j", "max_error_polls": 0},
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SageMakerSpotTrainingTrigger(**kwargs)


def test_fires_once_with_the_report(emulator: SpotEmulator, sm: Any, name: str) -> None:
    create_job(sm, name, train_seconds=1.0)
    with supervisor_comms():
        event = asyncio.run(first_event(trigger_for(name)))
    assert event["status"] == "done"
    assert event["report"]["outcome"] == "COMPLETED"
    assert event["follow"]["transitions"] == 5


def _logged(captured: list[dict[str, Any]], name: str) -> list[str]:
    """The transition lines a trigger logged (it logs through structlog, as Airflow's do)."""
    lines = [str(entry.get("event", "")) for entry in captured]
    return [line for line in lines if line.startswith(f"{name}: ")]


def test_restart_neither_repeats_nor_loses_transitions(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    emulator.admin.load_scenario(
        [{"interrupt": {"job": name, "at_training_second": 0.5, "attempt": 1}}], replace=True
    )
    create_job(sm, name, train_seconds=2.0)
    _, kwargs = trigger_for(name).serialize()  # what the operator deferred with

    async def run_until_restart() -> None:
        task = asyncio.ensure_future(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
        deadline = time.monotonic() + 20
        while len(_logged(captured, name)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()  # the triggerer goes away; the job must keep running
        with pytest.raises(asyncio.CancelledError):
            await task

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        asyncio.run(run_until_restart())
        assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == (
            TrainingJobStatus.IN_PROGRESS
        )
        event = asyncio.run(
            first_event(SageMakerSpotTrainingTrigger(**kwargs))
        )  # re-created from its kwargs
    assert event["report"]["outcome"] == "COMPLETED"
    statuses = [line.split(" ")[1] for line in _logged(captured, name)]
    expected = [t["status"] for t in event["report"]["transitions"]]
    assert statuses == expected  # each transition once, in order
    assert S.INTERRUPTED in statuses


def test_on_kill_stops_the_job(emulator: SpotEmulator, sm: Any, name: str) -> None:
    create_job(sm, name, train_seconds=30.0)
    with supervisor_comms():
        asyncio.run(trigger_for(name).on_kill())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] == TrainingJobStatus.STOPPED:
            break
        time.sleep(0.1)
    assert job["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert job["SecondaryStatus"] == S.STOPPED


def test_transient_errors_are_waited_out(emulator: SpotEmulator, sm: Any, name: str) -> None:
    create_job(sm, name, train_seconds=0.5)
    emulator.admin.load_scenario(
        [{"throttle": {"operation": "DescribeTrainingJob", "count": 8}}], replace=True
    )
    with supervisor_comms():
        event = asyncio.run(first_event(trigger_for(name, max_error_polls=1)))
    assert event["status"] == "done"


def test_lasting_error_ends_in_an_error_event_with_the_code(emulator: SpotEmulator) -> None:
    with supervisor_comms():
        event = asyncio.run(first_event(trigger_for("no-such-job", max_error_polls=2)))
    assert event["status"] == "error"
    assert event["code"] == "ValidationException"


def test_print_log_relays_the_training_log_once(emulator: SpotEmulator, sm: Any, name: str) -> None:
    create_job(sm, name, train_seconds=1.5)
    with structlog.testing.capture_logs() as captured, supervisor_comms():
        event = asyncio.run(first_event(trigger_for(name, print_log=True)))
    assert event["status"] == "done"
    lines = [str(e.get("event", "")) for e in captured]
    log_lines = [line for line in lines if line.startswith("[algo-1-")]
    assert log_lines, "no training log line relayed"
    assert len(log_lines) == len(set(log_lines))  # each line once
    assert event["follow"]["log_tokens"]  # the position travels with the event
