"""The job state machine: one asyncio loop moves the live jobs that are due, in real time.

A timer queue (:class:`~.timers.Timers`) holds each live job's next wake-up: the earliest
deadline its phase knows of (capacity, interruption, MaxWait, MaxRuntime, a phase's minimum
duration), the end of its phase's work (a task's done callback), or a request (stop, admin).
Each tick of the clock handles only the jobs due, so an idle backend costs nothing per job. A job
whose next move depends on what cannot be foreseen (capacity models, scripted interruptions) is
polled every tick, as every job was before. A job is moved when its phase's work is done or the
market, a deadline or a request says so. Every move is checked against
:data:`~airflow_spot_provider.lifecycle.SPOT_TRANSITIONS`, recorded (transition, event log) and
persisted. The lifecycle, as the SageMaker developer guide draws it::

    Starting -> Downloading -> Training -> Uploading -> Completed
    Training -> Interrupted -> Starting -> Downloading -> ...     (first interruption)
    Training -> Interrupted -> Downloading -> ...                 (second and later ones)
    any live phase -> Stopping -> Stopped | MaxWaitTimeExceeded | MaxRuntimeExceeded
    any live phase -> Failed (AlgorithmError, CapacityError, InternalServerError, ClientError)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow_spot_provider.emulator.config import EmulatorConfig
from airflow_spot_provider.emulator.events import EventLog
from airflow_spot_provider.emulator.jobs import (
    STATUS_MESSAGES,
    Job,
    JobState,
    clip_reason,
    wall_clock,
)
from airflow_spot_provider.emulator.leftovers import ProcessRecord
from airflow_spot_provider.emulator.listing import JobIndex
from airflow_spot_provider.emulator.logs import LogStore
from airflow_spot_provider.emulator.market import SpotMarket
from airflow_spot_provider.emulator.phases import INTERNAL_ERROR, Phases
from airflow_spot_provider.emulator.store import Store
from airflow_spot_provider.emulator.timers import Timers
from airflow_spot_provider.emulator.work import After, Runtime
from airflow_spot_provider.lifecycle import (
    BILLABLE_SECONDARY,
    SPOT_TRANSITIONS,
    SecondaryStatus,
    TrainingJobStatus,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_S = SecondaryStatus
HEARTBEAT_SECONDS = 1.0


class IllegalTransitionError(AssertionError):
    """The state machine tried a move SPOT_TRANSITIONS does not allow (a bug)."""


class Machine:
    """All jobs, and the clock that moves the live ones.

    :param config: the configuration.
    :param market: the spot market.
    :param store: the SQLite store.
    :param logs: the CloudWatch log store.
    :param events: the event log.
    :param s3: the S3 client the phases use.
    """

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        market: SpotMarket,
        store: Store,
        logs: LogStore,
        events: EventLog,
        s3: S3Client,
    ) -> None:
        self.config = config
        self.market = market
        self.store = store
        self.logs = logs
        self.events = events
        self.s3 = s3
        self.jobs: dict[str, Job] = {}
        self.live: dict[str, tuple[Job, Runtime]] = {}
        # Instances the live jobs hold, by (instance type, spot): quota checks stay O(1).
        self._in_use: Counter[tuple[str, bool]] = Counter()
        self._heartbeat = 0.0
        self._kills: set[asyncio.Future[None]] = set()  # processes of jobs ended by a bug
        # What the next start kills if this backend dies without stopping its jobs.
        self.processes = ProcessRecord(config.processes_path)
        self.phases = Phases(self)
        self.timers = Timers()
        self.index = JobIndex()  # ListTrainingJobs' sorted keys
        # Scripted interruptions are checked at every tick of the Training jobs (backend sets it).
        self.poll_training = False
        self._watched: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        self._pids_due = True  # the process record is refreshed when a job was moved

    # -- creation, persistence, restart -------------------------------------------------------

    def arn(self, name: str) -> str:
        """The ARN of a training job.

        :param name: the job name.
        """
        return f"arn:aws:sagemaker:{self.config.region}:{self.config.account}:training-job/{name}"

    def create(self, request: dict[str, object], now: float) -> Job:
        """Register a new job in Starting and persist it before the API answers.

        :param request: the validated request.
        :param now: epoch seconds.
        """
        name = str(request["TrainingJobName"])
        state = JobState(
            status=TrainingJobStatus.IN_PROGRESS,
            secondary=_S.STARTING,
            last_modified=now,
            phase_since=now,
        )
        job = Job(request, now, state, self.arn(name))
        job.record_transition(_S.STARTING, now, STATUS_MESSAGES[_S.STARTING])
        self.jobs[name] = job
        self.index.update(job)
        self._add_live(job, Runtime(ready_at=self.capacity_time(job, now, attempt=1)))
        self.store.save_job((name, now, _dumps(request), state.to_json()))
        self.store.commit()
        self.events.record("created", job=name, spot=job.spot, instance_type=job.instance_type)
        return job

    def restore(self, now: float) -> None:
        """Load every job; a job that had instances when the emulator went down was interrupted.

        :param now: epoch seconds.
        """
        heartbeat = float(self.store.get_meta("heartbeat") or now)
        for name, created, request, state_text in self.store.load_jobs():
            job = Job(_loads(request), created, JobState.from_json(state_text), self.arn(name))
            self.jobs[name] = job
            self.index.update(job)
            if job.state.status.is_terminal:
                continue
            rt = Runtime(ready_at=now + self.config.durations.restart_delay_seconds)
            self._add_live(job, rt)
            if job.state.secondary in BILLABLE_SECONDARY:
                # The instances went with the emulator, at its last heartbeat at the latest.
                when = min(max(heartbeat, job.state.last_modified), now)
                self.phases.interrupt_done(job, rt, when)
                self.events.record("interrupt", job=name, source="restart", start=job.state.starts)
                rt.ready_at = max(rt.ready_at, now + self.config.durations.restart_delay_seconds)
            elif job.state.secondary is _S.STARTING:
                rt.ready_at = self.capacity_time(job, now, attempt=job.state.starts + 1)
        self.store.commit()

    def _add_live(self, job: Job, rt: Runtime) -> None:
        self.live[job.name] = (job, rt)
        self._in_use[(job.instance_type, job.spot)] += job.instance_count
        rt.wake = lambda: self.wake(job.name)
        self.timers.wake(job.name, 0.0)

    def wake(self, name: str) -> None:
        """Handle a live job at the next tick (a request changed what it waits for).

        :param name: the job name.
        """
        self.timers.wake(name, 0.0)

    def wake_all(self) -> None:
        """Handle every live job at the next tick (the market or the scenario changed)."""
        for name in self.live:
            self.timers.wake(name, 0.0)

    def instances_in_use(self, instance_type: str, spot: bool) -> int:
        """Instances of a type the live jobs hold (spot and on-demand counted apart).

        :param instance_type: e.g. ``ml.m5.large``.
        :param spot: count spot jobs' instances, else on-demand ones.
        """
        return self._in_use[(instance_type, spot)]

    def save(self, job: Job) -> None:
        """Persist a job's state (committed at the end of the tick).

        :param job: the job.
        """
        self.store.save_job((job.name, job.created, "", job.state.to_json()))
        self.index.update(job)

    # -- the clock ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every ``tick_seconds`` until cancelled."""
        while True:
            try:
                self.tick(wall_clock())
            except Exception:  # the store failed...: log, keep the clock going
                log.exception("tick failed")
            await asyncio.sleep(self.config.tick_seconds)

    def tick(self, now: float) -> None:
        """Move the live jobs that are due and have somewhere to go; then persist.

        :param now: epoch seconds.
        """
        for name in self.timers.pop_due(now):
            entry = self.live.get(name)
            if entry is None:
                continue
            job, rt = entry
            self._pids_due = True
            try:
                self._tick_job(job, rt, now)
            except Exception as err:  # a bug in one job's handling must not stop the others
                self._abort(job, rt, err, now)
            if name in self.live:
                self.timers.wake(name, self._next_wake(job, rt, now))
        self.logs.flush()
        heartbeat = now - self._heartbeat >= HEARTBEAT_SECONDS
        if self._pids_due or heartbeat:
            # A process starts inside a phase's task: the heartbeat catches it within a second.
            self._pids_due = False
            self.processes.update(self.training_pids())
        if heartbeat:
            self._heartbeat = now
            self.store.set_meta("heartbeat", repr(now))
        self.store.commit()

    def _next_wake(self, job: Job, rt: Runtime, now: float) -> float:
        """When a live job must be handled again (``now`` + a tick when it must be polled).

        The end of a pending task wakes it earlier through a done callback.

        :param job: a live job, just handled.
        :param rt: its runtime.
        :param now: epoch seconds.
        """
        poll = now + self.config.tick_seconds
        if rt.interrupt_requested or rt.fail_requested:
            return poll
        if rt.teardown is not None:
            if rt.teardown.done():
                return poll
            self.watch(job.name, rt.teardown)
            stoppable = rt.then in (After.INTERRUPTED, After.RETRY, After.UPLOAD)
            return max(self._deadline(job, now) if stoppable else float("inf"), poll)
        wake = self.phases.next_wake(job, rt, now)
        if wake is None:
            return poll
        if job.state.secondary is not _S.STOPPING:
            wake = min(wake, self._deadline(job, now))
        return max(wake, poll)

    def _deadline(self, job: Job, now: float) -> float:
        """When :meth:`stop_reason` turns true at the earliest (MaxWait, MaxRuntime)."""
        wake = float("inf")
        if job.max_wait is not None:
            wake = job.created + job.max_wait
        if job.state.secondary in (_S.DOWNLOADING, _S.TRAINING):
            wake = min(wake, now + job.max_runtime - job.billable_seconds(now))
        return wake

    def watch(self, name: str, task: asyncio.Future[Any]) -> None:
        """Wake a job when a task of its phase ends (one callback per task).

        :param name: the job name.
        :param task: the task (work or teardown).
        """
        if task not in self._watched:
            self._watched.add(task)
            task.add_done_callback(lambda _task: self.timers.wake(name, 0.0))

    def training_pids(self) -> dict[str, int]:
        """Job name to the pid of its training process, for the jobs that have one now."""
        pids: dict[str, int] = {}
        for name, (_job, rt) in self.live.items():
            pid = getattr(rt.run, "pid", None)  # the synthetic image runs no process
            if isinstance(pid, int):
                pids[name] = pid
        return pids

    def _abort(self, job: Job, rt: Runtime, err: Exception, now: float) -> None:
        """End a job whose handling raised (an emulator bug), so that no follower waits forever.

        Out of the live set no deadline applies any more, so the job must end here: ``Failed``
        (InternalServerError), or ``Stopped/<reason>`` when it was Stopping (SPOT_TRANSITIONS
        allows no other ending from there). The ``bug`` event is what tests look for.

        :param job: the job.
        :param rt: its runtime.
        :param err: what its handling raised.
        :param now: epoch seconds.
        """
        log.error("job %s: emulator bug, job ended: %r", job.name, err, exc_info=err)
        self.events.record("bug", job=job.name, error=repr(err))
        if rt.run is not None:
            # Its process must not outlive the job; no notice after a bug.
            kill = asyncio.ensure_future(rt.run.terminate(0.0))
            self._kills.add(kill)
            kill.add_done_callback(self._kills.discard)
        try:
            if job.state.secondary is _S.STOPPING:
                reason = job.state.stop_reason or _S.STOPPED
                self.move(job, reason, now, TrainingJobStatus.STOPPED)
            elif not job.state.status.is_terminal:  # else it had ended before the bug: kept
                self.fail(job, rt, INTERNAL_ERROR, now)
        except IllegalTransitionError:
            # The bug left the job where no ending is legal: it must end all the same.
            job.state.failure_reason = INTERNAL_ERROR
            self.move(job, _S.FAILED, now, TrainingJobStatus.FAILED, checked=False)
            self.events.record("failed", job=job.name, reason=INTERNAL_ERROR)
        self.finish(job, rt)

    def _tick_job(self, job: Job, rt: Runtime, now: float) -> None:
        if rt.teardown is not None:
            self.phases.tearing_down(job, rt, now)
            return
        if job.state.secondary is not _S.STOPPING:
            reason = self.stop_reason(job, now)
            if reason is not None:
                self.stop(job, reason, now)
                return
        self.phases.handlers[job.state.secondary](job, rt, now)

    def stop_reason(self, job: Job, now: float) -> SecondaryStatus | None:
        """Why a live job must stop now: MaxWait passed, or MaxRuntime used up; else None.

        :param job: a live job.
        :param now: epoch seconds.
        """
        if job.max_wait is not None and now - job.created >= job.max_wait:
            return _S.MAX_WAIT_TIME_EXCEEDED
        in_run = job.state.secondary in (_S.DOWNLOADING, _S.TRAINING)
        if in_run and job.billable_seconds(now) >= job.max_runtime:
            return _S.MAX_RUNTIME_EXCEEDED
        return None

    # -- moves --------------------------------------------------------------------------------

    def move(
        self,
        job: Job,
        secondary: SecondaryStatus,
        now: float,
        status: TrainingJobStatus | None = None,
        message: str | None = None,
        *,
        checked: bool = True,
    ) -> None:
        """Make one SecondaryStatus move, refusing any that SPOT_TRANSITIONS does not allow.

        :param job: the job.
        :param secondary: the new SecondaryStatus.
        :param now: epoch seconds.
        :param status: the new TrainingJobStatus, when it changes.
        :param message: the StatusMessage (default: SageMaker's for that status).
        :param checked: check the move; False only to end a job a bug left in a dead end.
        :raises IllegalTransitionError: the move is not legal (a bug of the emulator).
        """
        previous = job.state.secondary
        if checked and secondary not in SPOT_TRANSITIONS.get(previous, frozenset()):
            raise IllegalTransitionError(f"{job.name}: {previous.value} -> {secondary.value}")
        job.record_transition(secondary, now, message or STATUS_MESSAGES.get(secondary, ""))
        if status is not None:
            job.state.status = status
        if secondary.is_terminal:
            job.state.training_end = now
        self.events.record(
            "transition",
            job=job.name,
            status=job.state.status.value,
            secondary=secondary.value,
            previous=previous.value,
        )
        self.save(job)

    def finish(self, job: Job, rt: Runtime) -> None:
        """Forget a job that ended: it leaves the live set, its tasks are cancelled.

        :param job: the job.
        :param rt: its runtime.
        """
        rt.cancel()
        if self.live.pop(job.name, None) is not None:
            self._in_use[(job.instance_type, job.spot)] -= job.instance_count
        self.market.forget(job.name)

    def fail(self, job: Job, rt: Runtime, reason: str, now: float) -> None:
        """End a job ``Failed`` with a FailureReason.

        :param job: the job.
        :param rt: its runtime.
        :param reason: ``<Kind>Error: <detail>``.
        :param now: epoch seconds.
        """
        job.state.failure_reason = clip_reason(reason)
        self.move(job, _S.FAILED, now, TrainingJobStatus.FAILED)
        self.events.record("failed", job=job.name, reason=job.state.failure_reason)
        self.finish(job, rt)

    def capacity_time(self, job: Job, now: float, attempt: int) -> float:
        """When instances can be up for an attempt starting now (launch time + market delay).

        :param job: the job.
        :param now: epoch seconds.
        :param attempt: the start number the instances are for.
        """
        delay = self.market.plan(job.name, attempt, job.instance_type).capacity_delay
        return now + self.config.durations.starting_seconds + (delay if job.spot else 0.0)

    def has_capacity(self, job: Job, rt: Runtime, now: float) -> bool:
        """Whether the job gets its instances now.

        :param job: a job waiting in Starting or Interrupted.
        :param rt: its runtime (``ready_at`` is pushed back while there is no capacity).
        :param now: epoch seconds.
        """
        if self.market.capacity_available(job.instance_type, now, spot=job.spot):
            return now >= rt.ready_at
        # Launching takes its time again once capacity is back.
        rt.ready_at = max(rt.ready_at, now + self.config.durations.starting_seconds)
        return False

    def stop(self, job: Job, reason: SecondaryStatus, now: float) -> None:
        """Move a live job to Stopping now; it ends ``Stopped/<reason>`` after the teardown.

        :param job: a job in status InProgress.
        :param reason: ``Stopped``, ``MaxWaitTimeExceeded`` or ``MaxRuntimeExceeded``.
        :param now: epoch seconds.
        """
        _job, rt = self.live[job.name]
        job.state.stop_reason = reason
        self.move(job, _S.STOPPING, now, TrainingJobStatus.STOPPING)
        self.events.record("stop", job=job.name, reason=reason.value)
        self.wake(job.name)
        # A teardown already running (interruption, failure) goes on; Stopped follows it.
        rt.start_teardown(After.STOP, self.config.durations.interruption_notice_seconds)

    async def shutdown(self) -> None:
        """Stop every process (with the notice), sync checkpoints; jobs stay as they are.

        A job that was running is found with instances by :meth:`restore`, which records the
        interruption.
        """
        notice = self.config.durations.interruption_notice_seconds
        pending = []
        for _job, rt in self.live.values():
            if rt.teardown is None and rt.work is not None:
                rt.start_teardown(After.INTERRUPTED, notice)
            if rt.teardown is not None:
                pending.append(rt.teardown)
        await asyncio.gather(*pending, *self._kills, return_exceptions=True)
        for _job, rt in self.live.values():
            rt.cancel()
        self.logs.flush()
        self.processes.update({})
        self.store.set_meta("heartbeat", repr(time.time()))
        self.store.commit()


def _dumps(value: object) -> str:
    return json.dumps(value)


def _loads(text: str) -> dict[str, object]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data
