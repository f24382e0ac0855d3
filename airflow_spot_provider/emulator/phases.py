"""The phases of a job: what each SecondaryStatus waits for and where it goes next.

:class:`Phases` holds one handler per live SecondaryStatus; the :class:`~.machine.Machine` calls
the handler of each live job at every tick. Handlers start the phase's work as asyncio tasks
(:mod:`.work`) and move the job (through :meth:`Machine.move`, which checks the move against
``SPOT_TRANSITIONS``) when the work is done or the market, a deadline or a request says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_spot_provider.emulator import work
from airflow_spot_provider.emulator.jobs import NO_CAPACITY_MESSAGE, Job
from airflow_spot_provider.emulator.work import After, Runtime
from airflow_spot_provider.lifecycle import SecondaryStatus, TrainingJobStatus

if TYPE_CHECKING:
    from airflow_spot_provider.emulator.machine import Machine

_S = SecondaryStatus
CAPACITY_ERROR = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
INTERNAL_ERROR = "InternalServerError: We encountered an internal error. Please try again."


class Phases:
    """The per-phase handlers of the state machine.

    :param machine: the machine whose jobs these handlers move.
    """

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.handlers: dict[SecondaryStatus, Callable[[Job, Runtime, float], None]] = {
            _S.STARTING: self._starting,
            _S.INTERRUPTED: self._interrupted,
            _S.DOWNLOADING: self._downloading,
            _S.TRAINING: self._training,
            _S.UPLOADING: self._uploading,
            _S.STOPPING: self._stopping,
        }

    def _starting(self, job: Job, rt: Runtime, now: float) -> None:
        if not job.spot and not self.m.market.capacity_available(
            job.instance_type, now, spot=False
        ):
            if now - job.state.phase_since >= self.m.config.durations.starting_seconds:
                self.m.fail(job, rt, CAPACITY_ERROR, now)
            return
        if self.m.has_capacity(job, rt, now):
            self._begin_downloading(job, rt, now)
        elif not rt.capacity_wait_shown and not self.m.market.capacity_available(
            job.instance_type, now, spot=job.spot
        ):
            rt.capacity_wait_shown = True
            # A message on the current Starting, not a transition.
            job.state.transitions[-1]["StatusMessage"] = NO_CAPACITY_MESSAGE
            self.m.save(job)

    def _interrupted(self, job: Job, rt: Runtime, now: float) -> None:
        if not self.m.has_capacity(job, rt, now):
            return
        if job.state.interruptions >= 2:
            # As the developer guide shows it: after the second interruption, no Starting.
            self._begin_downloading(job, rt, now)
        else:
            self.m.move(job, _S.STARTING, now)
            rt.ready_at = self.m.capacity_time(job, now, attempt=job.state.starts + 1)

    def _begin_downloading(self, job: Job, rt: Runtime, now: float) -> None:
        state = job.state
        state.starts += 1
        if state.training_start is None:
            state.training_start = now
        if state.log_stream is None:
            state.log_stream = f"{job.name}/algo-1-{int(now)}"
            self.m.logs.create_stream(state.log_stream)
        rt.inject_failure = rt.fail_requested or self.m.market.scenario.fail_start(
            job.name, state.starts
        )
        rt.fail_requested = False
        rt.capacity_wait_shown = False  # the next Starting shows its own wait
        rt.run = rt.sync = None
        rt.work = asyncio.ensure_future(
            work.download(rt, self.m.s3, self.m.config.data_dir, job, restart=state.starts > 1)
        )
        self.m.move(job, _S.DOWNLOADING, now)

    def _downloading(self, job: Job, rt: Runtime, now: float) -> None:
        if self._pending_request(job, rt, now):
            return
        if not self._work_done(job, rt, now, self.m.config.durations.downloading_min_seconds):
            return
        assert rt.work is not None
        error = rt.work.exception()
        if error is not None:
            rt.failure = f"ClientError: Data download failed: {error}"
            rt.start_teardown(After.FAILED, 0.0)
        elif rt.inject_failure:
            self._internal_error(job, rt)
        else:
            self._begin_training(job, rt, now)

    @staticmethod
    def _work_done(job: Job, rt: Runtime, now: float, min_seconds: float) -> bool:
        done = rt.work is not None and rt.work.done()
        return done and now - job.state.phase_since >= min_seconds

    def _pending_request(self, job: Job, rt: Runtime, now: float) -> bool:
        if rt.interrupt_requested:
            self._begin_interrupt(job, rt, "admin")
            return True
        if rt.fail_requested:
            rt.fail_requested = False
            self._internal_error(job, rt)
            return True
        return False

    def _begin_training(self, job: Job, rt: Runtime, now: float) -> None:
        stream = job.state.log_stream or ""
        rt.work = asyncio.ensure_future(
            work.train(
                rt,
                self.m.s3,
                job,
                lambda line: self.m.logs.append(stream, line),
                self.m.config.checkpoint_sync_seconds,
            )
        )
        self.m.move(job, _S.TRAINING, now)

    def _training(self, job: Job, rt: Runtime, now: float) -> None:
        if self._pending_request(job, rt, now):
            return
        elapsed = now - job.state.phase_since
        if job.spot and self.m.market.should_interrupt(
            job.name, job.state.starts, job.instance_type, elapsed
        ):
            self._begin_interrupt(job, rt, "market")
            return
        assert rt.work is not None
        if not rt.work.done():
            return
        error = rt.work.exception()
        code = 1 if error is not None else int(rt.work.result())
        if code == 0:
            rt.start_teardown(After.UPLOAD, 0.0)
            return
        rt.failure = f"AlgorithmError: {error}" if error else work.algorithm_failure(rt, code)
        rt.start_teardown(After.FAILED, 0.0)

    def _uploading(self, job: Job, rt: Runtime, now: float) -> None:
        if rt.interrupt_requested:
            self._begin_interrupt(job, rt, "admin")
            return
        if not self._work_done(job, rt, now, self.m.config.durations.uploading_min_seconds):
            return
        assert rt.work is not None
        error = rt.work.exception()
        if error is not None:
            self.m.fail(job, rt, f"ClientError: Failed to upload model artifacts: {error}", now)
            return
        job.state.model_artifacts = str(rt.work.result())
        self.m.move(job, _S.COMPLETED, now, TrainingJobStatus.COMPLETED)
        self.m.finish(job, rt)

    def _stopping(self, job: Job, rt: Runtime, now: float) -> None:
        if now - job.state.phase_since < self.m.config.durations.stopping_seconds:
            return
        reason = job.state.stop_reason or _S.STOPPED
        self.m.move(job, reason, now, TrainingJobStatus.STOPPED)
        self.m.finish(job, rt)

    def next_wake(self, job: Job, rt: Runtime, now: float) -> float | None:
        """When a job's phase can next move it (its task's end wakes it too); None: poll it.

        Starting and Interrupted wait for capacity, which the market's models decide tick by
        tick: they are polled. So is Training when scripted interruptions are in force.

        :param job: a live job without a teardown in flight.
        :param rt: its runtime.
        :param now: epoch seconds.
        """
        secondary = job.state.secondary
        durations = self.m.config.durations
        if secondary is _S.STOPPING:
            return job.state.phase_since + durations.stopping_seconds
        if rt.work is None or rt.work.done():
            if secondary is _S.DOWNLOADING:
                return job.state.phase_since + durations.downloading_min_seconds
            if secondary is _S.UPLOADING:
                return job.state.phase_since + durations.uploading_min_seconds
            return None
        if secondary is _S.TRAINING and job.spot:
            if self.m.poll_training:
                return None
            self.m.watch(job.name, rt.work)
            plan = self.m.market.plan(job.name, job.state.starts, job.instance_type)
            return job.state.phase_since + plan.interrupt_after
        if secondary in (_S.DOWNLOADING, _S.TRAINING, _S.UPLOADING):
            self.m.watch(job.name, rt.work)
            return float("inf")
        return None

    def _begin_interrupt(self, job: Job, rt: Runtime, source: str) -> None:
        rt.interrupt_requested = False
        self.m.events.record("interrupt", job=job.name, source=source, start=job.state.starts)
        if self.m.market.interrupted(job.name, job.instance_type):
            self.m.events.record("capacity", instance_type=job.instance_type, available=False)
        rt.start_teardown(After.INTERRUPTED, self.m.config.durations.interruption_notice_seconds)

    def _internal_error(self, job: Job, rt: Runtime) -> None:
        rt.inject_failure = False
        retry = job.state.retries < job.max_retries
        self.m.events.record("internal_error", job=job.name, retry=retry)
        rt.failure = INTERNAL_ERROR
        rt.start_teardown(After.RETRY if retry else After.FAILED, 0.0)

    def tearing_down(self, job: Job, rt: Runtime, now: float) -> None:
        """While a teardown runs: let a stop overtake it; once done, make the move it was for.

        :param job: the job.
        :param rt: its runtime.
        :param now: epoch seconds.
        """
        assert rt.teardown is not None
        if not rt.teardown.done():
            if rt.then in (After.INTERRUPTED, After.RETRY, After.UPLOAD):
                reason = self.m.stop_reason(job, now)
                if reason is not None:
                    self.m.stop(job, reason, now)
            return
        rt.teardown = None
        then, rt.then = rt.then, None
        rt.work = None
        if then is After.INTERRUPTED:
            self.interrupt_done(job, rt, now)
        elif then is After.RETRY:
            job.state.retries += 1
            self.m.move(job, _S.STARTING, now)
            rt.ready_at = self.m.capacity_time(job, now, attempt=job.state.starts + 1)
        elif then is After.FAILED:
            self.m.fail(job, rt, rt.failure, now)
        elif then is After.UPLOAD:
            assert rt.sandbox is not None
            rt.work = asyncio.ensure_future(work.upload(rt, self.m.s3, job))
            self.m.move(job, _S.UPLOADING, now)

    def interrupt_done(self, job: Job, rt: Runtime, now: float) -> None:
        """Record the interruption; capacity comes back after the restart delay at the earliest.

        :param job: the job.
        :param rt: its runtime.
        :param now: epoch seconds (the moment the instances were lost).
        """
        job.state.interruptions += 1
        self.m.move(job, _S.INTERRUPTED, now)
        rt.ready_at = now + self.m.config.durations.restart_delay_seconds
        rt.ready_at += self.m.market.plan(
            job.name, job.state.starts + 1, job.instance_type
        ).capacity_delay
