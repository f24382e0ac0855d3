"""The image registry: which program the emulator runs for a ``TrainingImage``.

The emulator pulls no container. It recognises an image URI and runs an equivalent locally:

- ``SCRIPT_MODE``: the AWS framework training images, any account and region
  (``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` for a repository of
  :data:`SCRIPT_MODE_REPOSITORIES`: scikit-learn, XGBoost, PyTorch, TensorFlow, Hugging Face...).
  Runs ``python <sagemaker_program>`` from ``sagemaker_submit_directory`` under the container
  contract, as those images' training toolkit does.
- ``CONTAINER_ENTRYPOINT``: the same images with ``AlgorithmSpecification.ContainerEntrypoint``
  (SageMaker SDK v3's ``ModelTrainer`` sends ``["/bin/bash"]`` and ``ContainerArguments`` running
  ``/opt/ml/input/data/sm_drivers/sm_train.sh``): that command runs instead of the toolkit, with
  the host's programs standing in for the image's (``python3`` is the backend's interpreter).
- ``SYNTHETIC``: ``spot-emulator/synthetic`` (any tag or digest, optionally behind a registry
  host). No process: an asyncio task that "trains" for ``train_seconds``, for scale tests.

A script-mode image needs the hyperparameters ``sagemaker_program`` and
``sagemaker_submit_directory`` (the SageMaker Python SDK v2 sets both) or a
``ContainerEntrypoint``: without either the image would run its built-in algorithm, which the
emulator does not have. Any other image is refused with
:class:`UnknownImageError`, which the HTTP layer answers as a ``ValidationException``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_spot_provider.emulator.sandbox import Sandbox

log = logging.getLogger(__name__)


class ImageKind(StrEnum):
    """How the emulator runs a training image."""

    SCRIPT_MODE = "script-mode"  # an OS process running the submitted entry point
    CONTAINER_ENTRYPOINT = "container-entrypoint"  # the request's ContainerEntrypoint command
    SYNTHETIC = "synthetic"  # an asyncio task writing a checkpoint per step; for scale tests


class UnknownImageError(ValueError):
    """The training image is not one the emulator can run (the message lists those it can)."""


SYNTHETIC_REPOSITORY = "spot-emulator/synthetic"

# Repositories of the AWS Deep Learning Containers and first-party framework images whose
# entry point is the SageMaker training toolkit (script mode).
SCRIPT_MODE_REPOSITORIES: frozenset[str] = frozenset(
    {
        "sagemaker-scikit-learn",
        "sagemaker-xgboost",
        "sagemaker-chainer",
        "sagemaker-rl-tensorflow",
        "sagemaker-rl-pytorch",
        "pytorch-training",
        "pytorch-training-neuronx",
        "tensorflow-training",
        "mxnet-training",
        "huggingface-pytorch-training",
        "huggingface-tensorflow-training",
        "huggingface-pytorch-training-neuronx",
        "autogluon-training",
    }
)

SCRIPT_MODE_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory")

_ECR_RE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$"
)
_SYNTHETIC_RE = re.compile(
    rf"^(?:[^/]+/)?{re.escape(SYNTHETIC_REPOSITORY)}(?::[\w.-]+)?(?:@sha256:[0-9a-f]{{64}})?$"
)


def known_images() -> str:
    """The images the emulator runs, in words (for error messages and ``--help``)."""
    repos = ", ".join(sorted(SCRIPT_MODE_REPOSITORIES))
    return (
        f"'{SYNTHETIC_REPOSITORY}[:tag]' (synthetic); AWS framework training images "
        f"'<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>' with repository one of "
        f"{repos} (script mode, with hyperparameters {' and '.join(SCRIPT_MODE_HYPERPARAMETERS)}, "
        "or with AlgorithmSpecification.ContainerEntrypoint)"
    )


def resolve_image_uri(uri: str) -> ImageKind:
    """The kind of an image URI alone.

    :param uri: the ``TrainingImage``.
    :raises UnknownImageError: an image the registry does not hold.
    """
    if _SYNTHETIC_RE.match(uri):
        return ImageKind.SYNTHETIC
    match = _ECR_RE.match(uri)
    if match and match.group("repo") in SCRIPT_MODE_REPOSITORIES:
        return ImageKind.SCRIPT_MODE
    raise UnknownImageError(
        f"TrainingImage {uri!r} is not known to the spot emulator. Known images: {known_images()}"
    )


def resolve_image(request: Mapping[str, Any]) -> ImageKind:
    """The kind of the request's ``AlgorithmSpecification.TrainingImage``, checked for use.

    :param request: the CreateTrainingJob request.
    :raises UnknownImageError: no or an unknown image (``AlgorithmName`` included), or script
        mode without its two hyperparameters.
    """
    spec = request.get("AlgorithmSpecification") or {}
    uri = spec.get("TrainingImage")
    if not uri:
        raise UnknownImageError(
            "AlgorithmSpecification.TrainingImage is required by the spot emulator "
            f"(AlgorithmName is not supported). Known images: {known_images()}"
        )
    kind = resolve_image_uri(str(uri))
    if kind is ImageKind.SCRIPT_MODE and spec.get("ContainerEntrypoint"):
        return ImageKind.CONTAINER_ENTRYPOINT
    if kind is ImageKind.SCRIPT_MODE:
        hps = request.get("HyperParameters") or {}
        missing = [name for name in SCRIPT_MODE_HYPERPARAMETERS if not hps.get(name)]
        if missing:
            raise UnknownImageError(
                f"TrainingImage {uri!r} runs in script mode here and needs the hyperparameters "
                f"{', '.join(missing)} (or AlgorithmSpecification.ContainerEntrypoint); its "
                "built-in algorithm is not emulated"
            )
    return kind


def decode_hp(value: str) -> Any:
    """A hyperparameter value as the training toolkit reads it: JSON where it parses, else the
    string (SageMaker passes strings; the SDK JSON-encodes ``sagemaker_program`` as ``"\\"x\\""``).

    :param value: the raw value.
    """
    try:
        return json.loads(value)
    except ValueError:
        return value


class SyntheticRun:
    """The program of the synthetic image: no process, one asyncio task.

    Hyperparameters: ``train_seconds`` (default 10) of training in steps of ``step_seconds``
    (default 1); ``fail_at_step`` makes the run fail (exit code 1) at that step. After each step
    it writes ``step.json`` into the checkpoint dir, and at start it resumes from it; at the end it
    writes ``model.json`` into the model dir. Cheap on purpose: 1,000 of them run at once.
    """

    def __init__(self, task: asyncio.Task[int], state: _SyntheticState) -> None:
        self._task = task
        self._state = state

    @classmethod
    def start(
        cls,
        *,
        sandbox: Sandbox,
        request: Mapping[str, Any],
        job_name: str,
        log_sink: Callable[[str], None],
    ) -> SyntheticRun:
        """Start the task.

        :param sandbox: the host's sandbox.
        :param request: the CreateTrainingJob request.
        :param job_name: the job's name.
        :param log_sink: receives a line per step.
        """
        state = _SyntheticState(sandbox, job_name, log_sink)
        hps = request.get("HyperParameters") or {}
        task = asyncio.ensure_future(state.train(hps))
        return cls(task, state)

    async def wait(self) -> int:
        """The exit code: 0 done, 1 failed, 143 terminated."""
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if self._task.cancelled():
                return 128 + signal.SIGTERM
            raise

    async def terminate(self, notice_seconds: float) -> None:
        """Stop at once: the last completed step is already checkpointed; idempotent.

        :param notice_seconds: unused (nothing to save).
        """
        if not self._task.done():
            self._state.error = "terminated (SIGTERM)"
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def stderr_tail(self, max_chars: int = 512) -> str:
        """The failure message, if any.

        :param max_chars: characters returned at most.
        """
        return self._state.error[-max_chars:] if max_chars > 0 else ""


class _SyntheticState:
    def __init__(self, sandbox: Sandbox, job_name: str, log_sink: Callable[[str], None]) -> None:
        self.sandbox = sandbox
        self.job_name = job_name
        self.log_sink = log_sink
        self.error = ""

    def _say(self, line: str) -> None:
        try:
            self.log_sink(line)
        except Exception:  # a broken sink must not end the run
            log.exception("log sink failed")

    def _fail(self, message: str) -> int:
        self.error = message
        self._say(message)
        return 1

    async def train(self, hps: Mapping[str, Any]) -> int:
        try:
            train_seconds = float(decode_hp(str(hps.get("train_seconds", "10"))))
            step_seconds = float(decode_hp(str(hps.get("step_seconds", "1"))))
            fail_raw = hps.get("fail_at_step")
            fail_at = int(decode_hp(str(fail_raw))) if fail_raw is not None else None
        except (TypeError, ValueError) as err:
            return self._fail(f"invalid hyperparameter: {err}")
        if not (step_seconds > 0 and train_seconds >= 0):
            return self._fail("invalid hyperparameter: need step_seconds > 0, train_seconds >= 0")
        steps = max(1, math.ceil(train_seconds / step_seconds))
        checkpoint = self.sandbox.checkpoint_dir / "step.json"
        step = self._restored_step(checkpoint)
        if step:
            self._say(f"resumed from checkpoint at step {step}")
        while step < steps:
            await asyncio.sleep(step_seconds)
            step += 1
            if step == fail_at:
                return self._fail(f"synthetic failure at step {step} (fail_at_step)")
            _write_json(checkpoint, {"step": step, "steps": steps})
            self._say(f"step {step}/{steps}")
        _write_json(self.sandbox.model_dir / "model.json", {"job": self.job_name, "steps": steps})
        return 0

    @staticmethod
    def _restored_step(checkpoint: Path) -> int:
        try:
            return int(json.loads(checkpoint.read_text(encoding="utf-8"))["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a checkpoint scan never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
