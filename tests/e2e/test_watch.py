"""The triggerer's shared watch against the embedded backend, through real aiobotocore clients.

Many triggers run on one event loop, as in Airflow's triggerer. Where the backend cannot produce
a case (a List answer that misses a change), the watch's answers are edited on their way back
from the client (:class:`Tap`); the calls are counted there too.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import structlog.testing
from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG
from botocore.exceptions import ClientError

from airflow_spot_provider import position_store
from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.events import JobEnded, event_from_json
from airflow_spot_provider.hooks.job_calls import Call
from airflow_spot_provider.hooks.jobs import AsyncJobs
from airflow_spot_provider.lifecycle import SpotJobReport, TrainingJobStatus
from airflow_spot_provider.position import Position
from airflow_spot_provider.request import build_spot_request
from airflow_spot_provider.triggers.spot_training import SageMakerSpotTrainingTrigger
from airflow_spot_provider.watch import heap
from airflow_spot_provider.watch import registry as watch_registry  # the module
from airflow_spot_provider.watch.book import Tuning
from airflow_spot_provider.watch.following import follow_jobs_sync
from airflow_spot_provider.watch.loop import Watch
from tests.e2e.conftest import BUCKET, synthetic_config
from tests.e2e.test_trigger import (
    _await_until,
    _logged,
    _relayed,
    _wait_until,
    create_job,
    first_event,
    run_like_the_triggerer,
    supervisor_comms,
)
from tests.e2e.test_unclosed_sessions import unclosed_sessions

pytestmark = pytest.mark.e2e

NO_SWEEP = Tuning(sweep_per_interval=0)


@pytest.fixture(scope="module", autouse=True)
def _warm_comms(emulator: SpotEmulator) -> None:
    """Start the in-process API once, before any test creates a job it will time."""
    with supervisor_comms():
        pass


@dataclass
class Tap:
    """The watch's calls as they come back from the client: counted, and edited if asked.

    :param edit: rewrites an answer (a List that misses a change), or None.
    """

    edit: Callable[[Call, Any], Any] | None = None
    calls: list[tuple[int, str]] = field(default_factory=list)  # (watch cycle, operation)
    spans: list[tuple[str, float, float]] = field(default_factory=list)

    def ops(self, operation: str) -> int:
        return sum(1 for _, op in self.calls if op == operation)


@pytest.fixture
def tap(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tap]:
    found = Tap()
    original = AsyncJobs._call

    async def _call(jobs: AsyncJobs, call: Call) -> Any:
        watch = _current_watch()
        found.calls.append((watch.cycles if watch else -1, call.operation))
        started = time.monotonic()
        reply = await original(jobs, call)
        found.spans.append((call.operation, started, time.monotonic()))
        return found.edit(call, reply) if found.edit else reply

    monkeypatch.setattr(AsyncJobs, "_call", _call)
    yield found


def _current_watch() -> Watch | None:
    watches = list(watch_registry.registry().watches.values())
    return watches[0] if watches else None


def tune(monkeypatch: pytest.MonkeyPatch, tuning: Tuning) -> None:
    monkeypatch.setattr(watch_registry, "TUNING", tuning)


def trigger(name: str, poll_interval: float = 0.2, **kwargs: Any) -> SageMakerSpotTrainingTrigger:
    return SageMakerSpotTrainingTrigger(job_name=name, poll_interval=poll_interval, **kwargs)


def request(job: str, config: dict[str, Any], max_wait: int = 60) -> dict[str, Any]:
    return build_spot_request(
        config,
        checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/{job}/",
        max_run=max_wait,
        max_wait=max_wait,
        job_name=job,
    )


def _ended(payload: dict[str, Any]) -> JobEnded:
    event = event_from_json(payload)
    assert isinstance(event, JobEnded), payload
    return event


def _each_transition_once(captured: list[dict[str, Any]], name: str, ended: JobEnded) -> None:
    statuses = [line.split(" ")[3] for line in _logged(captured, name)]
    assert statuses == [t.status.value for t in ended.report.transitions]


def test_changes_between_two_lists_are_never_missed(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No sweep: only the List can bring a change. Lists every 0.5 s while the jobs change status
    # every few tenths of a second (several changes within one cycle).
    tune(monkeypatch, NO_SWEEP)
    names = [f"{name}-{i}" for i in range(3)]
    hidden = names[0]
    edited: list[Any] = []

    def hide_the_end_at_the_watermark(call: Call, reply: Any) -> Any:
        # The first List that shows the job's end drops it, as an answer not yet consistent
        # would, and carries another (unwatched) job changed at the very same time: the
        # watermark then equals the hidden change's LastModifiedTime.
        summaries = reply.get("TrainingJobSummaries", []) if isinstance(reply, dict) else []
        for summary in summaries:
            ended = TrainingJobStatus(summary["TrainingJobStatus"]).is_terminal
            if summary["TrainingJobName"] == hidden and ended and not edited:
                edited.append(summary["LastModifiedTime"])
                decoy = {**summary, "TrainingJobName": f"{name}-decoy"}
                others = [s for s in summaries if s is not summary]
                return {**reply, "TrainingJobSummaries": [*others, decoy]}
        return reply

    tap.edit = hide_the_end_at_the_watermark
    for index, job in enumerate(names):
        create_job(sm, job, train_seconds=0.5 + 0.3 * index)

    async def follow_all() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger(n, 1.0)) for n in names))

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        events = asyncio.run(asyncio.wait_for(follow_all(), 60))
    assert edited, "the job's end was never listed: the edit did not happen"
    for job, payload in zip(names, events, strict=True):
        ended = _ended(payload)
        assert ended.report.outcome is not None and ended.report.outcome.value == "COMPLETED"
        _each_transition_once(captured, job, ended)
    assert tap.ops("describe_training_job") < 3 * 6  # described on changes, not every cycle


def test_a_list_answer_that_misses_a_change_is_caught_by_the_slow_describe(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune(monkeypatch, Tuning(sweep_every=3))
    missed, listed = f"{name}-missed", f"{name}-listed"

    def never_list(call: Call, reply: Any) -> Any:
        if call.operation != "list_training_jobs":
            return reply
        kept = [s for s in reply["TrainingJobSummaries"] if s["TrainingJobName"] != missed]
        return {**reply, "TrainingJobSummaries": kept}

    tap.edit = never_list
    for job in (missed, listed):
        create_job(sm, job, train_seconds=0.5)

    async def follow_both() -> list[dict[str, Any]]:
        both = (first_event(trigger(n, 0.3)) for n in (missed, listed))
        return await asyncio.gather(*both)

    with supervisor_comms():
        started = time.monotonic()
        events = asyncio.run(asyncio.wait_for(follow_both(), 60))
    for payload in events:
        assert _ended(payload).report.is_terminal
    # Seen only by the sweep: every 3 intervals of 0.3 s, so within a few seconds of its end.
    assert time.monotonic() - started < 30


def test_a_cancelled_trigger_leaves_the_others_running(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap
) -> None:
    killed, restarted, followed = (f"{name}-{part}" for part in ("killed", "restarted", "kept"))
    for job, seconds in ((killed, 60.0), (restarted, 60.0), (followed, 3.0)):
        create_job(sm, job, train_seconds=seconds)

    async def cancel_two_of_three() -> tuple[Watch, dict[str, Any]]:
        tasks = {
            job: asyncio.ensure_future(run_like_the_triggerer(trigger(job)))
            for job in (killed, restarted)
        }
        kept = asyncio.ensure_future(first_event(trigger(followed)))
        await _await_until(lambda: len(getattr(_current_watch(), "subs", ())) == 3)
        watch = _current_watch()
        assert watch is not None
        tasks[killed].cancel(msg=_USER_ACTION_CANCEL_MSG)  # a user marked the task failed
        tasks[restarted].cancel()  # the triggerer shuts down (no message)
        for task in tasks.values():
            with pytest.raises(asyncio.CancelledError):
                await task
        assert _current_watch() is watch and set(watch.subs) == {followed}
        return watch, await asyncio.wait_for(kept, 60)

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        watch, payload = asyncio.run(cancel_two_of_three())
    ended = _ended(payload)
    assert ended.report.outcome is not None and ended.report.outcome.value == "COMPLETED"
    _each_transition_once(captured, followed, ended)
    assert watch.closed

    def status(job: str) -> str:
        return str(sm.describe_training_job(TrainingJobName=job)["TrainingJobStatus"])

    _wait_until(lambda: status(killed) == TrainingJobStatus.STOPPED)  # on_kill: its job only
    assert status(restarted) == TrainingJobStatus.IN_PROGRESS  # a restart leaves it running
    sm.stop_training_job(TrainingJobName=restarted)


def test_throttling_of_the_shared_list_is_backed_off_once_for_all(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune(monkeypatch, NO_SWEEP)
    names = [f"{name}-{i}" for i in range(6)]
    for job in names:
        create_job(sm, job, train_seconds=3.0)
    before = emulator.admin.stats()
    # The HTTP requests each List call sent (botocore's retries and the rule's). Only the watch
    # lists, one call at a time: the requests sent during a call are that call's.
    sent, attempts = [0], list[int]()
    listed = AsyncJobs._call  # the tap's

    def one_more(**_: Any) -> None:
        sent[0] += 1

    async def counted(jobs: AsyncJobs, call: Call) -> Any:
        if call.operation != "list_training_jobs":
            return await listed(jobs, call)
        client = await jobs._client(call.service)
        event = "before-send.sagemaker.ListTrainingJobs"
        client.meta.events.register(event, one_more, unique_id="counted-attempts")
        first = sent[0]
        try:
            return await listed(jobs, call)
        finally:
            attempts.append(sent[0] - first)

    monkeypatch.setattr(AsyncJobs, "_call", counted)

    async def follow_all() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trigger(n, 0.4))) for n in names]
        # Every job described once: the watch lists from its first List on.
        await _await_until(lambda: tap.ops("list_training_jobs") > 0)
        emulator.admin.load_scenario(
            [{"throttle": {"operation": "ListTrainingJobs", "count": 12}}], replace=True
        )
        return await asyncio.wait_for(asyncio.gather(*tasks), 90)

    with supervisor_comms():
        events = asyncio.run(follow_all())
    for payload in events:
        assert _ended(payload).report.is_terminal
    after = emulator.admin.stats()
    throttled = sum(
        count - before["api_errors"].get(key, 0)
        for key, count in after["api_errors"].items()
        if key.startswith("SageMaker.ListTrainingJobs:")
    )
    assert throttled == 12  # every throttled answer was for the one shared List
    # One call waited it out, for the six triggers: its 12 throttled requests, then the answer.
    assert [n for n in attempts if n > 1] == [13], attempts
    assert len(attempts) < 60  # about two per 0.4 s interval, not one per trigger and retry


async def _idle_cycles(
    tasks: list[asyncio.Future[Any]], settle: float, span: float
) -> tuple[int, int, list[Any]]:
    """The watch's whole cycles in ``span`` seconds after ``settle``; then the triggers cancelled.

    :param tasks: the triggers' first events.
    :param settle: seconds before counting.
    :param span: seconds counted.
    """
    await asyncio.sleep(settle)
    watch = _current_watch()
    assert watch is not None and watch.listing
    first = watch.cycles + 1
    await asyncio.sleep(span)
    last = watch.cycles - 1
    for task in tasks:
        task.cancel()
    return first, last, await asyncio.gather(*tasks, return_exceptions=True)


def _idle_jobs(sm: Any, names: list[str]) -> None:
    """Create jobs in a burst that then only log (a line a minute): none changes after it."""
    for job in names:
        sm.create_training_job(**request(job, synthetic_config(120.0, 60.0), max_wait=300))
    _wait_until(
        lambda: all(
            sm.describe_training_job(TrainingJobName=n)["SecondaryStatus"] == "Training"
            for n in names
        ),
        timeout=60,
    )


def _calls_per_interval(
    sm: Any, tap: Tap, names: list[str], counted: Callable[[str], bool], settle: float, span: float
) -> tuple[Counter[int], Counter[int], list[dict[str, Any]]]:
    """Follow jobs with their logs at a 1 s interval; the watch's calls per poll interval in
    ``span`` intervals after ``settle``, those ``counted`` apart, and the logs; then stop them.

    :param names: the jobs (created already).
    :param counted: which operations to count apart.
    :param settle: intervals before counting (every job described, its log caught up).
    :param span: intervals counted.
    """

    async def measure() -> tuple[Counter[int], Counter[int]]:
        tasks = [asyncio.ensure_future(first_event(trigger(n, 1.0, print_log=True))) for n in names]
        first, last, _ = await _idle_cycles(tasks, settle, span)
        per_interval: Counter[int] = Counter()
        apart: Counter[int] = Counter()
        for cycle, op in tap.calls:
            if first <= cycle <= last:
                per_interval[(cycle - first) // 2] += 1
                apart[(cycle - first) // 2] += counted(op)
        print(Counter(op for cycle, op in tap.calls if first <= cycle <= last), last - first)
        return per_interval, apart

    try:
        with structlog.testing.capture_logs() as captured, supervisor_comms():
            per_interval, apart = asyncio.run(measure())
    finally:
        for job in names:
            sm.stop_training_job(TrainingJobName=job)
    print(f"calls per poll interval with {len(names)} jobs: {sorted(per_interval.values())}")
    return per_interval, apart, captured


def test_calls_per_cycle_with_many_idle_jobs_stay_within_the_bound(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap
) -> None:
    names = [f"{name}-{i:02d}" for i in range(60)]
    _idle_jobs(sm, names)
    per_interval, describes, _ = _calls_per_interval(
        sm, tap, names, lambda op: op == "describe_training_job", settle=4, span=10
    )
    assert len(per_interval) >= 4
    # Nothing changed: the describes are the sweep's (3 per interval at most).
    assert max(describes.values()) <= 3, describes
    assert max(per_interval.values()) <= 10, per_interval


def test_the_lines_of_many_jobs_cost_one_read_of_the_group_per_interval(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap
) -> None:
    count = 40
    names = [f"{name}-{i:02d}" for i in range(count)]
    for index, job in enumerate(names):  # 200 + index steps of 0.5 s: each job's lines told apart
        config = synthetic_config(0.5 * (200 + index), 0.5)
        sm.create_training_job(**request(job, config, max_wait=300))
    per_interval, reads, captured = _calls_per_interval(
        sm,
        tap,
        names,
        lambda op: op in ("filter_log_events", "describe_log_streams"),
        settle=5,
        span=6,
    )
    assert len(per_interval) >= 3
    # Every job logs twice a second: one FilterLogEvents of the group per interval reads them all.
    assert max(reads.values()) <= 1, reads
    assert tap.ops("describe_log_streams") <= count  # each job's own look-up, once
    assert max(per_interval.values()) <= 10, per_interval
    relayed = _relayed(captured)
    assert len(relayed) == len(set(relayed)), "a CloudWatch line was relayed twice"
    for index in range(count):
        steps = [int(line.split(" ")[-1].split("/")[0]) for line in relayed
                 if " step " in line and line.endswith(f"/{200 + index}")]  # fmt: skip
        assert len(steps) >= 8 and steps == list(range(1, len(steps) + 1)), (index, steps)


def _no_date(call: Call, reply: Any) -> Any:
    """A List answer without the HTTP ``Date`` (as a proxy that drops it would deliver)."""
    if call.operation == "list_training_jobs":
        reply["ResponseMetadata"]["HTTPHeaders"].pop("date")
    return reply


@pytest.mark.parametrize("date", [True, False], ids=["with-date", "without-date"])
def test_an_idle_burst_is_listed_in_one_page_once_the_margin_has_passed(
    emulator: SpotEmulator,
    sm: Any,
    name: str,
    tap: Tap,
    monkeypatch: pytest.MonkeyPatch,
    date: bool,
) -> None:
    # 30 jobs created within a second, 10 per List page, a 2 s margin: the burst's times stay
    # within the margin of the newest one for good.
    margin, interval = 2.0, 0.5
    tune(monkeypatch, Tuning(margin=timedelta(seconds=margin), page_size=10, sweep_per_interval=0))
    tap.edit = None if date else _no_date
    names = [f"{name}-{i:02d}" for i in range(30)]
    _idle_jobs(sm, names)

    async def pages_per_walk() -> list[int]:
        tasks = [asyncio.ensure_future(first_event(trigger(n, interval))) for n in names]
        # Every job described, then the margin and the Date's second passed; then six intervals.
        first, last, done = await _idle_cycles(tasks, margin + 3.0, 6 * interval)
        assert all(isinstance(d, asyncio.CancelledError) for d in done), done  # no event
        pages = Counter(c for c, op in tap.calls if op == "list_training_jobs" and c >= first)
        return [pages[cycle] for cycle in range(first, last + 1)]

    try:
        with supervisor_comms():
            pages = asyncio.run(pages_per_walk())
    finally:
        for job in names:
            sm.stop_training_job(TrainingJobName=job)
    print(f"List pages per walk, {'with' if date else 'without'} the Date header: {pages}")
    assert len(pages) >= 4
    if date:
        assert set(pages) == {1}, pages  # the watermark moved with the service's clock
    else:
        assert min(pages) >= 3, pages  # as before: the whole burst, every walk


def test_jobs_that_end_together_are_described_together(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune(monkeypatch, NO_SWEEP)
    count, interval = 40, 1.0
    names = [f"{name}-{i:02d}" for i in range(count)]
    for job in names:
        create_job(sm, job, train_seconds=4.0)
    in_flight = [0, 0]  # now, most (in the batch under way)
    batches: list[tuple[int, int]] = []  # each cycle's describes: (calls, most in flight)
    pools: set[int] = set()
    describe, described = AsyncJobs._call, Watch._describe  # the tap's, the watch's

    async def counted(jobs: AsyncJobs, call: Call) -> Any:
        if call.operation != "describe_training_job":
            return await describe(jobs, call)
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            return await describe(jobs, call)
        finally:
            in_flight[0] -= 1

    async def batch(watch: Watch, jobs: AsyncJobs, order: list[str]) -> Any:
        calls, in_flight[1] = tap.ops("describe_training_job"), 0
        try:
            return await described(watch, jobs, order)
        finally:
            batches.append((tap.ops("describe_training_job") - calls, in_flight[1]))
            for _, client in jobs._clients.values():
                pools.add(int(client.meta.config.max_pool_connections))

    monkeypatch.setattr(AsyncJobs, "_call", counted)
    monkeypatch.setattr(Watch, "_describe", batch)

    async def follow_all() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trigger(n, interval))) for n in names]
        return await asyncio.wait_for(asyncio.gather(*tasks), 90)

    with supervisor_comms():
        events = asyncio.run(follow_all())
    for payload in events:
        assert _ended(payload).report.is_terminal
    concurrency = Tuning().concurrency
    print(f"{count} jobs: (describes, most in flight) per cycle {batches}, pools {pools}")
    assert pools and min(pools) >= concurrency  # botocore's default of 10 would queue the rest
    # A cycle's describes all go at once, as many as the concurrency allows: however the
    # jobs' ends spread over the cycles (the creates above take a while on a busy machine).
    assert all(most == min(calls, concurrency) for calls, most in batches), batches
    assert max(calls for calls, _ in batches) > 1, batches  # some were described together


def test_the_watch_ends_with_its_last_subscriber_and_a_new_one_starts_afresh(
    emulator: SpotEmulator, sm: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    def described() -> int:
        return int(emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0))

    async def one_then_another() -> tuple[Watch, Watch]:
        watches = []
        for job in (f"{name}-1", f"{name}-2"):
            await asyncio.to_thread(create_job, sm, job, 2.0)
            before = described()
            task = asyncio.ensure_future(first_event(trigger(job)))
            # Following: its watch describes the job through its own SageMaker client.
            await _await_until(lambda t=task, n=before: t.done() or described() > n)
            watch = _current_watch()
            assert watch is not None and not task.done(), task
            watches.append(watch)
            await task
            assert _current_watch() is None  # gone with its last subscriber
            assert watch.task is not None
            await asyncio.wait([watch.task], timeout=5)
            assert watch.closed
        return watches[0], watches[1]

    with unclosed_sessions(caplog) as unclosed, supervisor_comms():
        one, other = asyncio.run(one_then_another())
    assert one is not other
    assert unclosed == []  # each watch closed its clients as it ended


def test_log_lines_are_relayed_once_through_filter_log_events_across_a_restart(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap
) -> None:
    names = [f"{name}-{i}" for i in range(3)]
    for job, seconds in zip(names, (4.0, 3.0, 2.5), strict=True):
        create_job(sm, job, train_seconds=seconds)  # 16, 12 and 10 steps: lines told apart
    restarted = names[0]
    _, kwargs = trigger(restarted, print_log=True).serialize()

    async def restart_one() -> None:
        task = asyncio.ensure_future(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
        others = [asyncio.ensure_future(first_event(trigger(n, print_log=True))) for n in names[1:]]
        deadline = time.monotonic() + 30
        while not _steps(captured) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)
        task.cancel()  # the triggerer goes away; the others' triggers run on
        with pytest.raises(asyncio.CancelledError):
            await task
        for other in others:
            _ended(await asyncio.wait_for(other, 60))

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        asyncio.run(restart_one())
        before = len(_steps(captured))
        _ended(asyncio.run(first_event(SageMakerSpotTrainingTrigger(**kwargs))))
    assert 0 < before < 16, "the restart did not fall within the training log"
    relayed = _relayed(captured)
    assert len(relayed) == len(set(relayed)), "a CloudWatch line was relayed twice"
    assert _steps(captured) == [f"{n}/16" for n in range(1, 17)]  # once each, in order
    assert tap.ops("filter_log_events") > 0 and tap.ops("get_log_events") == 0


def _steps(captured: list[dict[str, Any]]) -> list[str]:
    """The step lines relayed of the 16-step job (the others have 12 and 10 steps)."""
    lines = _relayed(captured)
    return [line.split(" ")[-1] for line in lines if " step " in line and line.endswith("/16")]


class Refusing:
    """A client that answers some operations AccessDenied, as IAM does (the backend has no IAM).

    :param client: the real client.
    :param refused: the boto3 method names refused.
    """

    def __init__(self, client: Any, refused: frozenset[str]) -> None:
        self.client = client
        self.refused = refused

    def __getattr__(self, operation: str) -> Any:
        if operation not in self.refused:
            return getattr(self.client, operation)

        async def refuse(**kwargs: Any) -> Any:
            error = {"Code": "AccessDeniedException", "Message": f"not allowed: {operation}"}
            response = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(response, operation)

        return refuse


@pytest.mark.parametrize("describe_refused", [False, True])
def test_a_refused_list_falls_back_to_describes_and_a_refused_describe_fails(
    emulator: SpotEmulator,
    sm: Any,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    describe_refused: bool,
) -> None:
    refused = {"list_training_jobs"} | ({"describe_training_job"} if describe_refused else set())
    original = AsyncJobs._client

    async def _client(jobs: AsyncJobs, service: str) -> Any:
        client = await original(jobs, service)
        return Refusing(client, frozenset(refused)) if service == "sagemaker" else client

    monkeypatch.setattr(AsyncJobs, "_client", _client)
    names = [f"{name}-{i}" for i in range(2)]
    for job in names:
        create_job(sm, job, train_seconds=1.0)

    async def follow_all() -> list[dict[str, Any]]:
        both = (first_event(trigger(n, max_error_polls=2)) for n in names)
        return await asyncio.wait_for(asyncio.gather(*both), 60)

    with structlog.testing.capture_logs() as captured, supervisor_comms():
        events = asyncio.run(follow_all())
    if describe_refused:  # nothing left to follow with: each trigger ends with the error
        assert [(e["status"], e["code"]) for e in events] == [
            ("error", "AccessDeniedException")
        ] * 2
        return
    for payload in events:
        assert _ended(payload).report.is_terminal
    notes = [str(e["event"]) for e in captured if "ListTrainingJobs keeps failing" in str(e)]
    assert len(notes) == 2  # said once to each trigger


def test_log_marks_alone_are_saved_lazily_and_transitions_at_once(
    emulator: SpotEmulator, sm: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[Position] = []
    save = position_store.save_position

    def counted(position: Position) -> None:
        saved.append(position)
        save(position)

    monkeypatch.setattr(position_store, "save_position", counted)
    create_job(sm, name, train_seconds=4.0)  # 16 lines, one per 0.25 s
    with structlog.testing.capture_logs() as captured, supervisor_comms():
        payload = asyncio.run(first_event(trigger(name, print_log=True)))
    ended = _ended(payload)
    assert len(_relayed(captured)) >= 16
    # One save per change of the transitions (the last one goes with the event), none per
    # cycle that only relayed lines: their marks wait up to LOG_MARK_SAVE_SECONDS.
    assert 0 < len(saved) < len(ended.report.transitions)
    assert all(a.transitions < b.transitions for a, b in itertools.pairwise(saved))


def _slow_loads(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[float]:
    """Saved positions that take ``seconds`` to load (a busy supervisor); when each load ended."""
    ended: list[float] = []
    load = position_store.load_position

    def slow(job_name: str) -> Position | None:
        time.sleep(seconds)
        found = load(job_name)
        ended.append(time.monotonic())
        return found

    monkeypatch.setattr(position_store, "load_position", slow)
    return ended


async def _follow_until_steps(kwargs: dict[str, Any], captured: list[dict[str, Any]]) -> None:
    """Run a trigger until it relayed three steps of the job, then restart (cancel) it."""
    task = asyncio.ensure_future(first_event(SageMakerSpotTrainingTrigger(**kwargs)))
    deadline = time.monotonic() + 30
    while len(_steps(captured)) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()  # the triggerer goes away: the job keeps running, the position is saved
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("ended_before", [False, True])
def test_a_restarted_trigger_is_described_before_its_saved_position_loads_and_repeats_nothing(
    emulator: SpotEmulator,
    sm: Any,
    name: str,
    tap: Tap,
    monkeypatch: pytest.MonkeyPatch,
    ended_before: bool,
) -> None:
    # The kwargs hold the position before deferring (nothing logged); the Variable a newer one.
    create_job(sm, name, train_seconds=4.0)  # 16 lines, one per 0.25 s
    _, kwargs = trigger(name, print_log=True).serialize()
    with structlog.testing.capture_logs() as captured, supervisor_comms():
        asyncio.run(_follow_until_steps(kwargs, captured))
        before = len(_steps(captured))
        if ended_before:  # its last lines not relayed yet, and its end seen before the load
            _wait_until(lambda: _status(sm, name).is_terminal)
        loads = _slow_loads(monkeypatch, 2.0)
        restarted = time.monotonic()
        ended = _ended(asyncio.run(first_event(SageMakerSpotTrainingTrigger(**kwargs))))
    assert 3 <= before < 16, "the restart did not fall within the training log"
    relayed = _relayed(captured)
    assert len(relayed) == len(set(relayed)), "a CloudWatch line was relayed twice"
    assert _steps(captured) == [f"{n}/16" for n in range(1, 17)]  # once each: none lost
    _each_transition_once(captured, name, ended)  # the early describe was taken after the merge
    describes = [start for op, start, _ in tap.spans if op == "describe_training_job"]
    after = [start for start in describes if start >= restarted]
    assert min(after) < loads[0], "the restarted trigger was described only after its load"
    if ended_before:  # its end held back, then described again with its last lines
        assert len(after) >= 2


def _status(sm: Any, name: str) -> TrainingJobStatus:
    return TrainingJobStatus(sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"])


@pytest.mark.parametrize("freeze_heap", [True, False])
def test_the_heap_is_frozen_after_the_first_cycle_unless_tuned_off(
    emulator: SpotEmulator, sm: Any, name: str, monkeypatch: pytest.MonkeyPatch, freeze_heap: bool
) -> None:
    gc.unfreeze()
    monkeypatch.setattr(heap, "_frozen_for", 0)  # as in a fresh triggerer process
    tune(monkeypatch, Tuning(freeze_heap=freeze_heap))
    create_job(sm, name, train_seconds=1.0)
    try:
        with supervisor_comms():
            _ended(asyncio.run(first_event(trigger(name))))
        assert (gc.get_freeze_count() > 0) == freeze_heap
    finally:
        gc.unfreeze()  # the rest of the test process is collected as usual


def test_a_worker_follows_many_jobs_through_one_watch(
    emulator: SpotEmulator, sm: Any, name: str, tap: Tap, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"{name}-{i:02d}" for i in range(12)]
    for index, job in enumerate(names):  # they end over about three seconds
        create_job(sm, job, train_seconds=1.0 + index / 4)
    caplog.set_level(logging.INFO, logger="worker")
    with supervisor_comms():  # a worker task has its supervisor; the call is synchronous
        described = follow_jobs_sync(
            names, poll_interval=0.5, print_log=True, log=logging.getLogger("worker")
        )
    assert sorted(described) == names
    lines = [r.getMessage() for r in caplog.records if r.name == "worker"]
    for job, describe in described.items():
        report = SpotJobReport.from_describe(describe)
        assert report.status == TrainingJobStatus.COMPLETED, job
        logged = [line for line in lines if line.startswith(f"[live] {job} is ")]
        assert len(logged) == len(report.transitions), (job, logged)  # each transition once
    assert any(line.startswith("[algo-1-") for line in lines)  # the relayed CloudWatch lines
    # One watch for all: the jobs are described when they change, not on every poll.
    describes = tap.ops("describe_training_job")
    changes = sum(len(SpotJobReport.from_describe(d).transitions) for d in described.values())
    assert tap.ops("list_training_jobs") > 0 and describes <= changes + 3 * len(names), describes
    print(f"{len(names)} jobs: {describes} describes for {changes} transitions")


def test_following_many_jobs_refuses_bad_arguments_before_any_call(tap: Tap) -> None:
    with pytest.raises(ValueError, match=r"job_names=\['a', 'a'\]: must be distinct"):
        follow_jobs_sync(["a", "a"])
    with pytest.raises(ValueError, match="job_names=\\[\\]"):
        follow_jobs_sync([])
    with pytest.raises(ValueError, match="poll_interval=0: must be > 0"):
        follow_jobs_sync(["a"], poll_interval=0)
    assert tap.calls == []
