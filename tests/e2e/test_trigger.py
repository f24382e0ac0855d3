"""The deferrable trigger against the embedded backend: events, restarts, kills, API errors.

Triggers reach Airflow Variables (their log position) through the supervisor's comms; the tests
run them under Airflow's own in-process supervisor, as ``dag.test()`` does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest
import structlog
import structlog.testing
from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG
from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.sdk.execution_time.supervisor import (
    InProcessSupervisorComms,
    InProcessTestSupervisor,
    set_supervisor_comms,
)

from airflow_spot_provider import position_store
from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.events import BackoffEnded, JobEnded, event_from_json
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.position import Position
from airflow_spot_provider.request import build_spot_request
from airflow_spot_provider.triggers.spot_training import (
    SageMakerSpotTrainingTrigger,
    SpotBackoffTrigger,
)
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
        # The first Variable call of a process starts the in-process API (about 20 s here):
        # pay it before a test times a trigger against a running job.
        position_store.load(position_store.VARIABLE_PREFIX + "warm-up")
        yield


@pytest.fixture(scope="module", autouse=True)
def _warm_comms(emulator: SpotEmulator) -> None:
    """Start the in-process API once, before any test creates a job it will time."""
    with supervisor_comms():
        pass


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
    trigger = trigger_for("job-a1", position={"job_name": "job-a1", "transitions": 3})
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, cls = classpath.rpartition(".")
    again = getattr(__import__(module, fromlist=[cls]), cls)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["position"]["transitions"] == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"job_name": ""},
        {"job_name": "j", "poll_interval": 0},
        {"job_name": "j", "max_error_polls": 0},
        {"job_name": "j", "position": {"job_name": "k"}},
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SageMakerSpotTrainingTrigger(**kwargs)


def test_fires_once_with_the_report(emulator: SpotEmulator, sm: Any, name: str) -> None:
    create_job(sm, name, train_seconds=1.0)
    with supervisor_comms():
        event = asyncio.run(first_event(trigger_for(name)))
    ended = event_from_json(event)
    assert isinstance(ended, JobEnded)
    assert ended.report.outcome is not None and ended.report.outcome.value == "COMPLETED"
    assert ended.position.transitions == 5


def _logged(captured: list[dict[str, Any]], name: str) -> list[str]:
    """The progress lines a trigger logged (it logs through structlog, as Airflow's do)."""
    lines = [str(entry.get("event", "")) for entry in captured]
    return [line for line in lines if line.startswith(f"[live] {name} is ")]


def _relayed(captured: list[dict[str, Any]]) -> list[str]:
    """The CloudWatch lines a trigger relayed."""
    lines = [str(entry.get("event", "")) for entry in captured]
    return [line for line in lines if line.startswith("[algo-1-")]


def test_restart_neither_repeats_nor_loses_transitions(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    emulator.admin.load_scenario(
        [{"interrupt": {"job": name, "at_training_second": 0.5, "attempt": 1}}], replace=True
    )
    # Long enough to still run after the restart on a loaded machine (the cancellation waits for
    # the position's save): the re-created trigger must have something to resume.
    create_job(sm, name, train_seconds=8.0)
    _, kwargs = trigger_for(name).serialize()  # what the operator deferred with

    async def run_until_restart() -> None:
        task = asyncio.ensure_future(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
        deadline = time.monotonic() + 20
        while len(_logged(captured, name)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()  # the triggerer goes away; the job must keep running
        with pytest.raises(asyncio.CancelledError):
            await task
        # A graceful cancellation ends only once what was logged is saved (not at loop shutdown).
        saved = await asyncio.to_thread(position_store.load_position, name)
        assert saved is not None
        assert saved.transitions == len(_logged(captured, name))

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        asyncio.run(run_until_restart())
        assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == (
            TrainingJobStatus.IN_PROGRESS
        )
        event = asyncio.run(
            first_event(SageMakerSpotTrainingTrigger(**kwargs))
        )  # re-created from its kwargs
    ended = event_from_json(event)
    assert isinstance(ended, JobEnded) and ended.report.outcome is not None
    statuses = [line.split(" ")[3] for line in _logged(captured, name)]
    expected = [t.status.value for t in ended.report.transitions]
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
    assert event["position"]["streams"]  # the position travels with the event


def _wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def _await_until(predicate: Any, timeout: float = 30.0) -> None:
    """:func:`_wait_until` on the running event loop (whose tasks make ``predicate`` true)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_restart_in_a_long_phase_relays_no_cloudwatch_line_twice(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    # Bug 4: deferred while Training, the trigger's kwargs and the Variable it saved hold the
    # same transition count; only the CloudWatch marks differ. The restart must take the later.
    create_job(sm, name, train_seconds=4.0)
    _wait_until(
        lambda: sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] == S.TRAINING
    )
    seen = len(sm.describe_training_job(TrainingJobName=name)["SecondaryStatusTransitions"])
    position = Position(name, transitions=seen).to_json()  # what the task logged before deferring
    _, kwargs = trigger_for(name, print_log=True, position=position).serialize()

    async def run_until_restart() -> None:
        task = asyncio.ensure_future(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
        deadline = time.monotonic() + 20
        while len(_relayed(captured)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()  # the triggerer goes away (no user action): the job keeps running
        with pytest.raises(asyncio.CancelledError):
            await task

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        asyncio.run(run_until_restart())
        before = len(_relayed(captured))
        saved = position_store.load_position(name)
        assert saved is not None and saved.transitions == seen  # the same count as the kwargs
        event = asyncio.run(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
        assert position_store.load_position(name) is None  # gone once the trigger fired
    assert event["status"] == "done"
    relayed = _relayed(captured)
    assert before >= 3 and len(relayed) > before
    assert len(relayed) == len(set(relayed)), "a CloudWatch line was relayed twice"
    steps = [line.split(" ")[-1] for line in relayed if " step " in line]
    assert steps == [f"{n}/16" for n in range(1, 17)]  # each step once, none lost


async def run_like_the_triggerer(trigger: SageMakerSpotTrainingTrigger) -> None:
    """What Airflow 3.3's ``TriggerRunner.run_trigger`` does with a cancelled trigger.

    (``airflow/jobs/triggerer_job_runner.py``): ``on_kill`` only if the ``CancelledError`` still
    carries the user-action message, then the error propagates.
    """
    try:
        async for _ in trigger.run():
            pass
    except asyncio.CancelledError as error:
        if error.args and error.args[0] == _USER_ACTION_CANCEL_MSG:
            await trigger.on_kill()
        raise


# The blocking calls a trigger awaits off the event loop: its Variable calls (asyncio.to_thread)
# and the Amazon provider's connection lookup (get_async_conn awaits asgiref.sync_to_async).
OFF_LOOP_CALLS = {
    "load_position": (position_store, "load_position"),
    "save_position": (position_store, "save_position"),
    "get_async_conn": (AwsGenericHook, "_get_async_conn"),
}


@pytest.mark.parametrize("call", sorted(OFF_LOOP_CALLS))
def test_user_action_while_awaiting_an_off_loop_call_stops_the_job(
    emulator: SpotEmulator, sm: Any, name: str, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bug 1: the triggerer cancels a trigger's task with a message when a user marks the task
    # failed; a trigger that loses the message while awaiting a blocking call never gets on_kill.
    create_job(sm, name, train_seconds=60.0)
    entered, release = threading.Event(), threading.Event()
    owner, attribute = OFF_LOOP_CALLS[call]
    blocking = getattr(owner, attribute)

    def held(*args: Any) -> Any:  # the call in flight when the user acts
        entered.set()
        release.wait(20)
        return blocking(*args)

    monkeypatch.setattr(owner, attribute, held)

    async def mark_failed_mid_call() -> BaseException:
        task = asyncio.ensure_future(run_like_the_triggerer(trigger_for(name)))
        assert await asyncio.to_thread(entered.wait, 30), f"{call} was never awaited"
        task.cancel(msg=_USER_ACTION_CANCEL_MSG)
        release.set()
        with pytest.raises(asyncio.CancelledError) as cancelled:
            await task
        return cancelled.value

    with supervisor_comms(), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        error = asyncio.run(mark_failed_mid_call())
        gc.collect()
    assert error.args == (_USER_ACTION_CANCEL_MSG,)
    # The client context the cancelled lookup returned is dropped, its coroutine closed.
    assert not [w for w in warned if "was never awaited" in str(w.message)]
    _wait_until(
        lambda: (
            sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
            == TrainingJobStatus.STOPPED
        )
    )


def test_error_event_leaves_no_variable_behind(emulator: SpotEmulator) -> None:
    # Bug 4b: a position an earlier trigger of this job saved must go with the error event.
    with supervisor_comms():
        position_store.save_position(Position("no-such-job-4b", transitions=2))
        event = asyncio.run(first_event(trigger_for("no-such-job-4b", max_error_polls=1)))
        assert event["status"] == "error"
        assert position_store.load_position("no-such-job-4b") is None


def test_backoff_trigger_round_trip_fires_with_the_state() -> None:
    until = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    classpath, kwargs = SpotBackoffTrigger(until=until, carry={"latest": "j-a2"}).serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert classpath.endswith("triggers.spot_training.SpotBackoffTrigger")

    async def fire() -> dict[str, Any]:
        started = time.monotonic()
        event = await anext(SpotBackoffTrigger(**kwargs).run())
        assert time.monotonic() - started >= 0.2  # it waited for the moment
        return dict(event.payload)

    assert event_from_json(asyncio.run(fire())) == BackoffEnded({"latest": "j-a2"})
    with pytest.raises(ValueError, match="time zone"):
        SpotBackoffTrigger(until="2026-01-01T00:00:00")


def test_on_kill_cancelled_again_still_stops_the_job(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    # The triggerer cancels a killed trigger again on its next loop, about a second later,
    # possibly while on_kill is still opening its client: the stop must go on regardless.
    create_job(sm, name, train_seconds=60.0)

    def stopped() -> bool:
        status = sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        return bool(status == TrainingJobStatus.STOPPED)

    async def kill_then_cancel_again() -> None:
        killing = asyncio.ensure_future(trigger_for(name).on_kill())
        await asyncio.sleep(0)  # on_kill has started
        killing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await killing
        await asyncio.to_thread(_wait_until, stopped)  # the loop runs on: the stop finishes

    with supervisor_comms():
        asyncio.run(kill_then_cancel_again())
