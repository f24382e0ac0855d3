"""The work behind each phase of a job, run as asyncio tasks the state machine polls.

Downloading, training and uploading call the runner helper's modules (:mod:`.stages`,
:mod:`.checkpoints`, :mod:`.runner`); blocking S3 and file work goes to worker threads with
``asyncio.to_thread``. Nothing here changes a job's status: :mod:`.machine` does, when it sees a
task done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_spot_provider.emulator.checkpoints import CheckpointSync
from airflow_spot_provider.emulator.runner import TrainingRun, start_run
from airflow_spot_provider.emulator.sandbox import Sandbox
from airflow_spot_provider.emulator.stages import download_inputs, failure_reason, upload_model

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from airflow_spot_provider.emulator.jobs import Job

log = logging.getLogger(__name__)


class After(Enum):
    """What follows a teardown (the process stopped, checkpoints synced)."""

    INTERRUPTED = "interrupted"  # a spot interruption: Interrupted, then wait for capacity
    STOP = "stop"  # Stopping (user, MaxWait, MaxRuntime): then Stopped/<reason>
    RETRY = "retry"  # an internal error RetryStrategy retries: back to Starting
    FAILED = "failed"  # Failed with Runtime.failure
    UPLOAD = "upload"  # the process exited 0: Uploading


@dataclass
class Runtime:
    """What a live job holds in memory only (tasks, process, sync); rebuilt after a restart."""

    ready_at: float = 0.0  # when instances can be had (Starting, Interrupted)
    sandbox: Sandbox | None = None
    work: asyncio.Task[Any] | None = None  # the phase's work
    teardown: asyncio.Task[None] | None = None
    then: After | None = None
    run: TrainingRun | None = None
    sync: CheckpointSync | None = None
    sync_task: asyncio.Task[None] | None = None
    interrupt_requested: bool = False
    fail_requested: bool = False
    inject_failure: bool = False  # this start gets an internal error (scenario / admin)
    failure: str = ""
    # The current Starting shows that it waits for capacity (set once per Starting).
    capacity_wait_shown: bool = False

    def start_teardown(self, then: After, notice_seconds: float) -> None:
        """Stop the process and sync checkpoints in the background; ``then`` follows.

        :param then: what the state machine does once the teardown is done.
        :param notice_seconds: SIGTERM to SIGKILL.
        """
        self.then = then
        if self.teardown is None:
            self.teardown = asyncio.ensure_future(teardown(self, notice_seconds))

    def cancel(self) -> None:
        """Cancel whatever still runs (used when a job ends)."""
        for task in (self.work, self.sync_task, self.teardown):
            if task is not None and not task.done():
                task.cancel()


async def download(rt: Runtime, s3: S3Client, data_dir: Path, job: Job, restart: bool) -> int:
    """The Downloading phase: sandbox (wiped on a restart), inputs, checkpoint restore.

    :param rt: the job's runtime (gets the sandbox and the checkpoint sync).
    :param s3: the S3 client.
    :param data_dir: the emulator's data dir.
    :param job: the job.
    :param restart: whether an earlier start had instances (a restart is a new instance).
    :returns: the number of checkpoint files restored.
    """

    def prepare() -> int:
        sandbox = Sandbox.create(data_dir, job.name, job.request)
        if restart:
            sandbox.reset_for_restart()
        rt.sandbox = sandbox
        download_inputs(s3, sandbox, job.request)
        if job.checkpoint_uri is None:
            return 0
        rt.sync = CheckpointSync(s3, job.checkpoint_uri, sandbox.checkpoint_dir)
        return rt.sync.restore()

    return await asyncio.to_thread(prepare)


async def train(
    rt: Runtime, s3: S3Client, job: Job, log_sink: Callable[[str], None], sync_seconds: float
) -> int:
    """The Training phase: start the run, sync checkpoints while it runs, wait for its end.

    :param rt: the job's runtime (gets the run and the sync task).
    :param s3: the S3 client.
    :param job: the job.
    :param log_sink: receives the process's output lines.
    :param sync_seconds: interval of the checkpoint upload scan.
    :returns: the exit code.
    """
    assert rt.sandbox is not None, "Downloading prepares the sandbox"
    rt.run = await start_run(
        sandbox=rt.sandbox,
        request=job.request,
        job_name=job.name,
        s3=s3,
        log_sink=log_sink,
        job_arn=job.arn,
    )
    if rt.sync is not None:
        rt.sync_task = asyncio.ensure_future(rt.sync.run(sync_seconds))
    return await rt.run.wait()


async def upload(rt: Runtime, s3: S3Client, job: Job) -> str:
    """The Uploading phase: ``model.tar.gz`` to the output path.

    :param rt: the job's runtime.
    :param s3: the S3 client.
    :param job: the job.
    :returns: the ``s3://`` URI of the model.
    """
    assert rt.sandbox is not None, "Downloading prepares the sandbox"
    return await asyncio.to_thread(upload_model, s3, rt.sandbox, job.request, job.name)


def algorithm_failure(rt: Runtime, exit_code: int) -> str:
    """The FailureReason of a run that exited non-zero.

    SageMaker reports ``/opt/ml/output/failure`` when the job wrote it, else the end of stderr.

    :param rt: the job's runtime.
    :param exit_code: the run's exit code.
    """
    written = failure_reason(rt.sandbox) if rt.sandbox is not None else None
    tail = rt.run.stderr_tail() if rt.run is not None else ""
    detail = written or tail.strip() or f"the training process exited with code {exit_code}"
    return f"AlgorithmError: {detail}"


async def teardown(rt: Runtime, notice_seconds: float) -> None:
    """Stop the training process (SIGTERM, notice, SIGKILL), then sync checkpoints one last time.

    Also waits for a download or upload in flight, so that nothing writes to the sandbox or S3
    behind the state machine's back.

    :param rt: the job's runtime.
    :param notice_seconds: SIGTERM to SIGKILL.
    """
    work = rt.work
    if work is not None and not work.done():
        # start_run is quick: wait for the run to exist so that it can be terminated.
        while rt.run is None and not work.done():
            await asyncio.sleep(0.01)
        if rt.run is not None:
            await rt.run.terminate(notice_seconds)
        await asyncio.gather(work, return_exceptions=True)
    if rt.sync_task is not None:
        rt.sync_task.cancel()
        await asyncio.gather(rt.sync_task, return_exceptions=True)
        rt.sync_task = None
    if rt.sync is not None:
        try:
            await asyncio.to_thread(rt.sync.sync_once)
        except Exception:  # S3 gone (shutdown): the checkpoints of the last scan stay
            log.exception("final checkpoint sync failed")
