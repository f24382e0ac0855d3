"""The trigger process of ``bench_triggers.py``: N triggers on one event loop, as in a triggerer.

Run by the benchmark, not by hand: ``python benchmarks/trigger_process.py SPEC.json``. What it
reproduces of Airflow 3.3's ``TriggerRunner`` (``airflow/jobs/triggerer_job_runner.py``):

- each trigger runs in its own asyncio task through the runner's own ``run_trigger`` (greenback
  portal, log context, span, ``async for`` over ``run()``, the events deque, ``cleanup()``);
  triggers are created one after the other with ``await asyncio.sleep(0)`` in between, as
  ``create_triggers`` does; the runner's block watchdog runs, and its main loop's one-second
  cycle (``cleanup_finished_triggers`` and draining the events) runs too;
- logging is Airflow's trigger-runner logging: structlog JSON lines to an unbuffered file
  (the real runner writes them to a socket its supervisor reads; here the file is never read);
- ``airflow.sdk.Variable`` works as in a triggerer: ``task_runner.SUPERVISOR_COMMS`` forwards
  each request to a *separate* supervisor process (:func:`_supervise`), one request at a time,
  which answers it through Airflow's in-process Execution API on a real metadata DB (SQLite in a
  temporary ``AIRFLOW_HOME``), as the triggerer's supervisor does. The process context is
  ``client``, so connections and Variables go through the same secrets search path;
- at the end the remaining triggers are cancelled without a message (a triggerer shutdown).

Not reproduced: the supervisor's DB queries for triggers to run (the triggers are given), the
Fernet-encrypted kwargs, ``TriggerStateChanges`` round trips of events. Measured here, in this
process: every AWS call (``AioBaseClient._make_api_call`` wrapped: time, operation, job), each
event's time, the event loop's lag (a task sleeping 50 ms, its overshoot) and the Variable
requests. The result is one JSON line on stdout; the benchmark samples this process's RSS.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from collections import deque
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # as TriggerRunner.run() sets it

PROBE_SECONDS = 0.05
NEXT_PAGE = "<next page>"  # the job of a call that continues a List walk
# A request the supervisor process answers with an error (not a pickled reply).
_FAILED = "__failed__"


def _supervise(conn: Connection) -> None:
    """The triggerer supervisor's side: answer comms requests on the metadata DB, one at a time.

    :param conn: the pipe to the trigger process.
    """
    import uuid

    import psutil  # type: ignore[import-untyped]
    import structlog
    from airflow.sdk.execution_time.comms import GetVariable
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
    )

    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(),
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="supervisor").bind(),
        client=InProcessTestSupervisor._api_client(),  # type: ignore[no-untyped-call]
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    supervisor.comms.send(GetVariable(key="bench-warm-up"))  # its API up before the first ask
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        try:
            conn.send(supervisor.comms.send(message))
        except Exception as error:  # answered, so that the trigger's call fails as it would
            conn.send((_FAILED, repr(error)))


class SupervisorComms:
    """``SUPERVISOR_COMMS`` of the trigger process: requests go to the supervisor process.

    Thread-safe (triggers call Variables from worker threads) and serial, as the triggerer's
    one socket to its supervisor is. Counts requests by kind, with their times.
    """

    def __init__(self) -> None:
        context = get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_supervise, args=(child,), daemon=True)
        self.process.start()
        self._lock = threading.Lock()
        self.requests: list[tuple[float, str, float]] = []  # (asked at, kind, seconds taken)

    def send(self, msg: Any) -> Any:
        """Forward one request; its answer.

        :param msg: a comms request (``GetVariable``, ``PutVariable``...).
        """
        asked = time.time()
        with self._lock:
            self._conn.send(msg)
            answer = self._conn.recv()
        self.requests.append((asked, type(msg).__name__, time.time() - asked))
        if isinstance(answer, tuple) and answer and answer[0] == _FAILED:
            raise RuntimeError(f"supervisor failed on {type(msg).__name__}: {answer[1]}")
        return answer

    def close(self) -> None:
        """End the supervisor process."""
        self._conn.close()
        self.process.terminate()  # it holds nothing to flush: every request was answered
        self.process.join(timeout=10)


class CallRecorder:
    """Every AWS call made by this process's aiobotocore clients: when it was made, the
    operation and its job (:data:`NEXT_PAGE` for the pages of a List walk after the first); when
    each ``ListTrainingJobs`` page answered, the jobs it listed; when each filtered walk began."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str | None]] = []
        self.listed: list[tuple[float, list[str]]] = []
        # When each List walk filtered on LastModifiedTimeAfter began: such a walk reads every
        # job followed (those it lists by their summary, the others by their absence).
        self.walks: list[float] = []

    def install(self) -> None:
        """Wrap ``AioBaseClient._make_api_call`` (every aiobotocore call passes it)."""
        from aiobotocore.client import AioBaseClient

        original = AioBaseClient._make_api_call
        calls, listed, walks = self.calls, self.listed, self.walks

        async def recorded(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            job = api_params.get("TrainingJobName")
            if "NextToken" in api_params:  # a List walk's next page: not a new read of the jobs
                job = NEXT_PAGE
            elif operation_name == "ListTrainingJobs" and "LastModifiedTimeAfter" in api_params:
                walks.append(time.time())
            calls.append((time.time(), operation_name, job))
            answer = await original(client, operation_name, api_params)
            if operation_name == "ListTrainingJobs":
                summaries = answer.get("TrainingJobSummaries", [])
                listed.append((time.time(), [s["TrainingJobName"] for s in summaries]))
            return answer

        AioBaseClient._make_api_call = recorded


class GcPauses:
    """How long each garbage collection took, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (at, generation, seconds)
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(
                (time.time(), info["generation"], time.perf_counter() - self._started)
            )


class TimedEvents(deque[Any]):
    """The runner's events deque, noting when each trigger fired."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: dict[int, float] = {}

    def append(self, entry: Any) -> None:
        """Note the time, then queue as the runner does.

        :param entry: a ``TriggerEventEntry``.
        """
        self.fired.setdefault(entry.trigger_id, time.time())
        super().append(entry)


def make_trigger(kind: str, job_name: str, interval: float) -> Any:
    """A trigger of one kind for one job, as its operator would defer with it.

    :param kind: ``amazon``, ``ours`` or ``ours-nolog``.
    :param job_name: the training job.
    :param interval: the poll interval, seconds.
    """
    if kind == "amazon":
        from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

        return SageMakerTrigger(
            job_name=job_name, job_type="training", waiter_delay=int(interval),
            waiter_max_attempts=100_000, aws_conn_id="aws_default",
        )  # fmt: skip
    from airflow_spot_provider.triggers.spot_training import SageMakerSpotTrainingTrigger

    return SageMakerSpotTrainingTrigger(
        job_name=job_name, aws_conn_id="aws_default", poll_interval=interval,
        print_log=kind == "ours", wait_first=False,
    )  # fmt: skip


async def _probe(lags: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Sleep 50 ms again and again; note how late each wake-up was."""
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append((time.time(), time.monotonic() - started - PROBE_SECONDS))


async def _stdin() -> asyncio.StreamReader:
    """This process's stdin, read asynchronously: the benchmark's "go" line, then its end."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _closed(reader: asyncio.StreamReader) -> None:
    """Return when the benchmark closes stdin (its way to say: finish)."""
    while await reader.read(4096):
        pass


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def _wait_all_described(recorder: CallRecorder, created: dict[str, float]) -> float:
    """Wait until every job was described once since its trigger was created; when.

    Each Amazon trigger and each of our per-job triggers describes its job first thing; a shared
    watch describes each job it starts to follow (its first news), whatever List says.

    :param recorder: the calls made.
    :param created: when each job's trigger was created.
    """
    waiting = dict(created)
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        calls = recorder.calls
        for at, operation, job in calls[seen:]:
            if operation == "DescribeTrainingJob" and job in waiting and at >= waiting[job]:
                del waiting[job]
                if not waiting:
                    return at
        seen = len(calls)


async def _create_triggers(runner: Any, spec: dict[str, Any]) -> dict[str, float]:
    """Create one trigger per job and start it, as ``create_triggers`` does; when each was made.

    :param runner: the ``TriggerRunner``.
    :param spec: ``kind``, ``names``, ``interval``.
    """
    created: dict[str, float] = {}
    for trigger_id, name in enumerate(spec["names"]):
        await asyncio.sleep(0)
        created[name] = time.time()
        trigger = make_trigger(spec["kind"], name, spec["interval"])
        trigger.trigger_id = trigger_id
        trigger.triggerer_job_id = None
        trigger.timeout_after = None
        runner.triggers[trigger_id] = {
            "task": asyncio.create_task(runner.run_trigger(trigger_id, trigger), name=name),
            "is_watcher": False,
            "name": name,
            "events": 0,
        }
    return created


async def run(spec: dict[str, Any], comms: SupervisorComms) -> dict[str, Any]:
    """Get ready, say so, wait for "go" on stdin, run the triggers of ``spec`` until stdin
    closes; the raw measurements.

    :param spec: ``kind``, ``names``, ``interval``, ``log_path``.
    :param comms: the supervisor's channel, started first so that it warms up meanwhile.
    """
    from airflow.jobs.triggerer_job_runner import TriggerRunner
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetVariable
    from airflow.sdk.log import configure_logging, reset_logging

    log_file = open(spec["log_path"], "wb", buffering=0)  # noqa: SIM115  (open to the end)
    reset_logging()  # type: ignore[no-untyped-call]
    configure_logging(json_output=True, output=log_file, sending_to_supervisor=True)
    task_runner.SUPERVISOR_COMMS = comms  # type: ignore[assignment]
    comms.send(GetVariable(key="bench-warm-up"))  # the supervisor's API is up before the clock
    recorder = CallRecorder()
    recorder.install()
    make_trigger(spec["kind"], "warm-up", spec["interval"])  # its module, as trigger_cache holds it
    stdin = await _stdin()
    _say(ready=time.time())
    await stdin.readline()

    runner = TriggerRunner()  # type: ignore[no-untyped-call]
    collections = GcPauses()
    events = runner.events = TimedEvents()
    stop = asyncio.Event()
    lags: list[tuple[float, float]] = []
    probe = asyncio.create_task(_probe(lags, stop))
    watchdog = asyncio.create_task(runner.block_watchdog())  # type: ignore[no-untyped-call]
    names: list[str] = spec["names"]
    created_start = time.time()
    created = await _create_triggers(runner, spec)
    created_end = time.time()
    _say(created=created_end)
    refreshed = asyncio.create_task(_wait_all_described(recorder, created))
    closed = asyncio.create_task(_closed(stdin))
    all_started: float | None = None
    while not closed.done():  # the runner's loop: clean up, hand events on, once a second
        await runner.cleanup_finished_triggers()
        events.clear()
        if all_started is None and refreshed.done():
            all_started = refreshed.result()
            _say(all_started=all_started)
        _say(fired=len(events.fired))
        await asyncio.wait([closed], timeout=1.0)
    shutdown_at = time.time()
    runner.stop = True
    stop.set()
    for details in runner.triggers.values():  # a triggerer shutdown: no message
        details["task"].cancel()
    await asyncio.gather(*(d["task"] for d in runner.triggers.values()), return_exceptions=True)
    await asyncio.gather(probe, watchdog, refreshed, return_exceptions=True)
    comms.close()
    log_file.close()
    return {
        "created_start": created_start,
        "created_end": created_end,
        "all_started": all_started,
        "shutdown_at": shutdown_at,
        "calls": recorder.calls,
        "listed": recorder.listed,
        "walks": recorder.walks,
        "gc_pauses": collections.pauses,
        "fired": {names[i]: at for i, at in events.fired.items()},
        "lags": lags,
        "comms": comms.requests,
        "log_bytes": Path(spec["log_path"]).stat().st_size,
        "log_problems": _problems(Path(spec["log_path"])),
    }


def _problems(log_path: Path) -> dict[str, Any]:
    """How many warnings and errors the triggers logged, and the first few of them."""
    count, first = 0, list[str]()
    with log_path.open("rb") as lines:
        for line in lines:
            if b'"level":"warning"' in line or b'"level":"error"' in line:
                count += 1
                if len(first) < 3:
                    first.append(line.decode(errors="replace")[:500])
    return {"count": count, "first": first}


def main() -> None:
    """Read the spec, run, print the result as the last JSON line."""
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    comms = SupervisorComms()  # first: its process starts while this one imports Airflow
    result = asyncio.run(run(spec, comms))
    _say(result=result)


if __name__ == "__main__":
    main()
