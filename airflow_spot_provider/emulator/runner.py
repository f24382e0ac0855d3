"""Runs the training of one host of a job: a real OS process or a synthetic task.

A framework image runs in one of two forms, both inside the job's container (:mod:`.container`:
its own namespaces with the sandbox at ``/opt/ml`` where Linux allows, else the sandbox path):

- script mode, as the SageMaker training toolkit does: the entry point ``sagemaker_program`` from
  ``sagemaker_submit_directory``, copied to ``/opt/ml/code``, runs as
  ``python <program> --<hp> <value>...`` there;
- ``AlgorithmSpecification.ContainerEntrypoint`` + ``ContainerArguments`` (SageMaker SDK v3's
  ``ModelTrainer``): that command, exec'd as given, in ``/opt/ml/code``.

The environment is the container contract (:mod:`.contract`). The process is started with
``asyncio.create_subprocess_exec`` (never a shell) in a new session, so that the whole process
group can be signalled; its stdout and stderr are read by two asyncio tasks, not threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import signal
import sys
import tarfile
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from airflow_spot_provider.emulator.container import (
    checkpoint_path,
    container_base,
    namespaces_unavailable,
    start_container,
)
from airflow_spot_provider.emulator.contract import command_args, process_environment
from airflow_spot_provider.emulator.images import ImageKind, SyntheticRun, decode_hp, resolve_image
from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError
from airflow_spot_provider.emulator.stages import StageError, fetch_source

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

LogSink = Callable[[str], None]
_MAX_LINE_BYTES = 64 * 1024  # a longer line is cut into pieces rather than held whole
_DRAIN_SECONDS = 2.0  # how long output is read after the process ended (a child may hold it)
_EXIT_POLL_SECONDS = 0.05


class TrainingRun(Protocol):
    """One run of the training of one host; a restart after an interruption is a new run."""

    async def wait(self) -> int:
        """Wait for the end; the exit code (0 success; 128+N after signal N)."""
        ...

    async def terminate(self, notice_seconds: float) -> None:
        """SIGTERM, up to ``notice_seconds`` of grace, then SIGKILL; idempotent."""
        ...

    def stderr_tail(self, max_chars: int = 512) -> str:
        """The end of what the run wrote to stderr (for ``FailureReason``)."""
        ...


class OutputTail:
    """The last lines of a stream, bounded in characters.

    :param max_chars: characters kept.
    """

    def __init__(self, max_chars: int = 8192) -> None:
        self._lines: deque[str] = deque()
        self._chars = 0
        self._max_chars = max_chars

    def append(self, line: str) -> None:
        """Keep ``line``, dropping the oldest lines past the bound.

        :param line: a line without its newline.
        """
        self._lines.append(line)
        self._chars += len(line) + 1
        while self._chars > self._max_chars and len(self._lines) > 1:
            self._chars -= len(self._lines.popleft()) + 1

    def text(self, max_chars: int) -> str:
        """The last ``max_chars`` characters of the kept lines.

        :param max_chars: characters returned at most.
        """
        joined = "\n".join(self._lines)
        return joined[-max_chars:] if max_chars > 0 else ""


class FinishedRun:
    """A run that could not start (missing program...): it ended at once with an error.

    :param exit_code: the code :meth:`wait` returns.
    :param message: what :meth:`stderr_tail` returns.
    """

    def __init__(self, exit_code: int, message: str) -> None:
        self._exit_code = exit_code
        self._message = message

    async def wait(self) -> int:
        """The exit code given at construction."""
        return self._exit_code

    async def terminate(self, notice_seconds: float) -> None:
        """Nothing runs: nothing to do.

        :param notice_seconds: unused.
        """

    def stderr_tail(self, max_chars: int = 512) -> str:
        """The message given at construction, cut to ``max_chars``.

        :param max_chars: characters returned at most.
        """
        return self._message[-max_chars:]


def _exit_code(returncode: int) -> int:
    # asyncio reports death by signal N as -N; a container runtime reports 128+N.
    return 128 - returncode if returncode < 0 else returncode


class ProcessRun:
    """A training OS process and the tasks reading its output.

    :param process: the started process (its own session and process group).
    :param log_sink: receives every stdout and stderr line as it comes.
    :param lifeline: the write end of the job's lifeline pipe, closed once the process ended.
    """

    def __init__(
        self, process: asyncio.subprocess.Process, log_sink: LogSink, lifeline: int | None = None
    ) -> None:
        self._process = process
        self._lifeline = lifeline
        self._log_sink = log_sink
        self._tail = OutputTail()
        self._terminating: asyncio.Future[None] | None = None
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._pump(process.stdout, is_stderr=False)),
            asyncio.ensure_future(self._pump(process.stderr, is_stderr=True)),
        ]

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self._process.pid

    async def wait(self) -> int:
        """Wait for the process, then for the rest of its output (up to a short drain time)."""
        returncode = await self._exited()
        # A container ends with its main process: children left behind go too (they would
        # otherwise hold the output pipes open).
        self._signal_group(signal.SIGKILL)
        _done, pending = await asyncio.wait(self._readers, timeout=_DRAIN_SECONDS)
        for reader in pending:  # a child that left the process group still holds a pipe
            reader.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), timeout=_DRAIN_SECONDS)
        self._cut_lifeline()
        return _exit_code(returncode)

    async def terminate(self, notice_seconds: float) -> None:
        """SIGTERM to the process group, SIGKILL after ``notice_seconds``; idempotent.

        :param notice_seconds: the grace period (EC2's interruption notice is 120 s).
        """
        if self._terminating is None:
            self._terminating = asyncio.ensure_future(self._terminate(notice_seconds))
        await asyncio.shield(self._terminating)

    def stderr_tail(self, max_chars: int = 512) -> str:
        """The last ``max_chars`` characters of stderr.

        :param max_chars: characters returned at most.
        """
        return self._tail.text(max_chars)

    async def _exited(self) -> int:
        """The return code, as soon as the process ended.

        ``Process.wait()`` also waits for the output pipes to close, which a leftover child can
        delay for ever; the return code is set by the child watcher when the process itself ends.
        """
        while self._process.returncode is None:
            await asyncio.sleep(_EXIT_POLL_SECONDS)
        return self._process.returncode

    async def _terminate(self, notice_seconds: float) -> None:
        if self._process.returncode is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exited(), timeout=max(notice_seconds, 0.0))
        self._signal_group(signal.SIGKILL)
        await self._exited()
        self._cut_lifeline()

    def _cut_lifeline(self) -> None:
        # The job's init reads EOF and ends whatever is left of the job.
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self._process.pid, sig)

    async def _pump(self, stream: asyncio.StreamReader, *, is_stderr: bool) -> None:
        pending = b""
        while chunk := await stream.read(_MAX_LINE_BYTES):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) >= _MAX_LINE_BYTES:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._emit(line, is_stderr)
        if pending:
            self._emit(pending, is_stderr)

    def _emit(self, raw: bytes, is_stderr: bool) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if is_stderr:
            self._tail.append(line)
        try:
            self._log_sink(line)
        except Exception:  # a broken sink must not stop the reading (the pipe would fill up)
            log.exception("log sink failed")


def _entry_point(code_dir: Path, program: str) -> Path:
    rel = PurePosixPath(program)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise SandboxError(f"sagemaker_program {program!r} must be a path inside the source")
    if rel.suffix != ".py":
        raise StageError(f"sagemaker_program {program!r}: only Python entry points are run")
    path = code_dir.joinpath(*rel.parts)
    if not path.is_file() or not path.resolve().is_relative_to(code_dir.resolve()):
        raise StageError(f"sagemaker_program {program!r} not found in sagemaker_submit_directory")
    return path


def _argv(
    kind: ImageKind, request: Mapping[str, Any], code_dir: Path, base: str, python: str
) -> list[str]:
    """The command of the container: the request's entry point, or the toolkit's script call."""
    spec = request.get("AlgorithmSpecification") or {}
    if kind is ImageKind.CONTAINER_ENTRYPOINT:
        # As on SageMaker, the entry point IS the user's command: exec'd as given, no shell
        # added; it runs inside the job's namespaces and sandbox.
        return [str(a) for a in [*spec["ContainerEntrypoint"], *spec.get("ContainerArguments", [])]]
    hps = request.get("HyperParameters") or {}
    program = str(decode_hp(str(hps.get("sagemaker_program", ""))))
    rel = _entry_point(code_dir, program).relative_to(code_dir).as_posix()
    return [python, posixpath.join(base, "code", rel), *command_args(request)]


async def _start_process(
    kind: ImageKind,
    sandbox: Sandbox,
    request: Mapping[str, Any],
    job: tuple[str, str],
    s3: S3Client,
    log_sink: LogSink,
    python: str,
) -> TrainingRun:
    namespaced = await asyncio.to_thread(namespaces_unavailable) is None
    base = container_base(sandbox, namespaced)
    try:
        if kind is ImageKind.SCRIPT_MODE:
            hps = request.get("HyperParameters") or {}
            submit = str(decode_hp(str(hps.get("sagemaker_submit_directory", ""))))
            await asyncio.to_thread(fetch_source, s3, sandbox, submit)
        env = process_environment(
            request=request,
            job_name=job[0],
            arn=job[1],
            host=sandbox.host,
            base=base,
            checkpoint_dir=checkpoint_path(sandbox, namespaced),
            python=python,
            namespaced=namespaced,
        )
        process, lifeline = await start_container(
            sandbox=sandbox,
            argv=_argv(kind, request, sandbox.code_dir, base, python),
            cwd=posixpath.join(base, "code"),
            env=env,
            python=sys.executable,
            namespaced=namespaced,
        )
    except (StageError, SandboxError, tarfile.TarError, ClientError, BotoCoreError, OSError) as err:
        message = f"Cannot start the training script: {err}"
        log_sink(message)
        return FinishedRun(1, message)
    return ProcessRun(process, log_sink, lifeline)


async def start_run(
    *,
    sandbox: Sandbox,
    request: Mapping[str, Any],
    job_name: str,
    s3: S3Client,
    log_sink: Callable[[str], None],
    python: str = sys.executable,
    job_arn: str = "",
) -> TrainingRun:
    """Start the training of ``sandbox``'s host, as the request's image says.

    A problem of the job's own making (program missing, bad source archive, bad synthetic
    hyperparameter) does not raise: the run ends at once with exit code 1 and the reason in
    :meth:`TrainingRun.stderr_tail`, as an algorithm error would on SageMaker.

    :param sandbox: the host's sandbox, inputs downloaded and checkpoints restored.
    :param request: the CreateTrainingJob request.
    :param job_name: the job's name.
    :param s3: the S3 client (script mode fetches ``sourcedir.tar.gz`` with it).
    :param log_sink: receives each output line, as it comes, without its newline.
    :param python: the interpreter of script mode (``python3`` on the job's ``PATH``).
    :param job_arn: the job's ARN (``TRAINING_JOB_ARN``).
    :raises UnknownImageError: an image the registry does not know (checked at creation).
    """
    kind = resolve_image(request)
    if kind is ImageKind.SYNTHETIC:
        return SyntheticRun.start(
            sandbox=sandbox, request=request, job_name=job_name, log_sink=log_sink
        )
    return await _start_process(kind, sandbox, request, (job_name, job_arn), s3, log_sink, python)
