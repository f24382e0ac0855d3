"""Runs the training of one host of a job: a real OS process (script mode) or a synthetic task.

Script mode follows the SageMaker training toolkit: the entry point ``sagemaker_program`` from
``sagemaker_submit_directory`` runs as ``python <program> --<hp> <value>...`` in ``/opt/ml/code``,
with the container contract in its environment (see :func:`training_env`). It is started with
``asyncio.create_subprocess_exec`` (never a shell) in a new session, so that the whole process
group can be signalled; its stdout and stderr are read by two asyncio tasks, not threads.

Besides SageMaker's variables the process gets ``SM_CHECKPOINT_DIR``, an emulator addition: the
sandbox path of ``CheckpointConfig.LocalPath`` (``/opt/ml/checkpoints`` on SageMaker), since the
sandbox cannot live at that absolute path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tarfile
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from airflow_spot_provider.emulator.images import ImageKind, SyntheticRun, decode_hp, resolve_image
from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError
from airflow_spot_provider.emulator.stages import (
    StageError,
    fetch_source,
    hosts_of,
    input_data_config,
    resource_config,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

LogSink = Callable[[str], None]
# Variables of the emulator's own environment a training process may see; nothing else leaks
# (no AWS credentials, no Airflow connections).
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
_ALLOWED_AWS_ENV = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})
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
    """

    def __init__(self, process: asyncio.subprocess.Process, log_sink: LogSink) -> None:
        self._process = process
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


def _user_hyperparameters(request: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded hyperparameters, without the toolkit's own ``sagemaker_*`` ones."""
    hps = request.get("HyperParameters") or {}
    return {k: decode_hp(str(v)) for k, v in hps.items() if not k.startswith("sagemaker_")}


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def command_args(request: Mapping[str, Any]) -> list[str]:
    """``--<name> <value>`` for each user hyperparameter, sorted, as the training toolkit passes.

    :param request: the CreateTrainingJob request.
    """
    args: list[str] = []
    for name, value in sorted(_user_hyperparameters(request).items()):
        args += [f"--{name}", _cli_value(value)]
    return args


def training_env(
    sandbox: Sandbox, request: Mapping[str, Any], job_name: str, program: str, python: str
) -> dict[str, str]:
    """The environment of a script-mode training process: SageMaker's container contract.

    :param sandbox: the host's sandbox.
    :param request: the CreateTrainingJob request (``Environment`` is applied first).
    :param job_name: the job's name.
    :param program: the entry point, relative to the code dir.
    :param python: the interpreter; its directory leads ``PATH``.
    """
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join(p for p in (str(Path(python).parent), env.get("PATH")) if p)
    for key, value in (request.get("Environment") or {}).items():
        if not key.startswith("AWS_") or key in _ALLOWED_AWS_ENV:  # never credentials
            env[str(key)] = str(value)
    hps = _user_hyperparameters(request)
    channels = sorted(input_data_config(request))
    hosts = hosts_of(request)
    contract: dict[str, str] = {
        "SM_MODEL_DIR": str(sandbox.model_dir),
        "SM_OUTPUT_DIR": str(sandbox.output_dir),
        "SM_OUTPUT_DATA_DIR": str(sandbox.output_data_dir),
        "SM_INPUT_DIR": str(sandbox.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(sandbox.input_config_dir),
        "SM_CHECKPOINT_DIR": str(sandbox.checkpoint_dir),
        "SM_MODULE_DIR": str(sandbox.code_dir),
        "SM_USER_ENTRY_POINT": program,
        "SM_USER_ARGS": json.dumps(command_args(request)),
        "SM_HPS": json.dumps(hps, sort_keys=True),
        "SM_CHANNELS": json.dumps(channels),
        "SM_CURRENT_HOST": sandbox.host,
        "SM_HOSTS": json.dumps(hosts),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_RESOURCE_CONFIG": json.dumps(resource_config(request, sandbox.host)),
        "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(request)),
        "TRAINING_JOB_NAME": job_name,
        "HOME": str(sandbox.root),
        "TMPDIR": str(sandbox.tmp_dir),
        "PYTHONPATH": str(sandbox.code_dir),
        "PYTHONUNBUFFERED": "1",  # lines reach the log as they are printed
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in channels:
        contract[f"SM_CHANNEL_{name.upper()}"] = str(sandbox.channel_dir(name))
    for name, value in hps.items():
        contract[f"SM_HP_{name.upper()}"] = _cli_value(value)
    env.update(contract)
    return env


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


async def _start_script(
    sandbox: Sandbox,
    request: Mapping[str, Any],
    job_name: str,
    s3: S3Client,
    log_sink: LogSink,
    python: str,
) -> TrainingRun:
    hps = request.get("HyperParameters") or {}
    try:
        program = str(decode_hp(str(hps.get("sagemaker_program", ""))))
        submit = str(decode_hp(str(hps.get("sagemaker_submit_directory", ""))))
        code_dir = await asyncio.to_thread(fetch_source, s3, sandbox, submit)
        entry = _entry_point(code_dir, program)
        process = await asyncio.create_subprocess_exec(
            python,
            str(entry),
            *command_args(request),
            cwd=code_dir,
            env=training_env(sandbox, request, job_name, program, python),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: signals reach its children too
        )
    except (StageError, SandboxError, tarfile.TarError, ClientError, BotoCoreError, OSError) as err:
        message = f"Cannot start the training script: {err}"
        log_sink(message)
        return FinishedRun(1, message)
    return ProcessRun(process, log_sink)


async def start_run(
    *,
    sandbox: Sandbox,
    request: Mapping[str, Any],
    job_name: str,
    s3: S3Client,
    log_sink: Callable[[str], None],
    python: str = sys.executable,
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
    :param python: the interpreter of script mode.
    :raises UnknownImageError: an image the registry does not know (checked at creation).
    """
    kind = resolve_image(request)
    if kind is ImageKind.SYNTHETIC:
        return SyntheticRun.start(
            sandbox=sandbox, request=request, job_name=job_name, log_sink=log_sink
        )
    return await _start_script(sandbox, request, job_name, s3, log_sink, python)
