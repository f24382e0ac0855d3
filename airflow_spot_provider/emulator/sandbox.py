"""The per-job sandbox: SageMaker's ``/opt/ml`` tree mapped under the emulator's data dir.

One :class:`Sandbox` stands for one host (``algo-1``...) of one training job. Its root maps the
container's ``/opt/ml``::

    <data_dir>/jobs/<job>/<host>/          /opt/ml
        input/config/                      /opt/ml/input/config (hyperparameters.json ...)
        input/data/<channel>/              /opt/ml/input/data/<channel>
        code/                              /opt/ml/code (script mode: the submitted source)
        model/                             /opt/ml/model (packed to model.tar.gz)
        output/, output/data/              /opt/ml/output, /opt/ml/output/data
        checkpoints/                       /opt/ml/checkpoints (CheckpointConfig.LocalPath default)
        rootfs/<path>                      any other absolute LocalPath, e.g. /ckpt -> rootfs/ckpt
        tmp/                               TMPDIR of the training process
    <data_dir>/jobs/<job>/.<host>-ns/      (empty) where the job's namespace mounts its root

Paths that come from a request (the checkpoint ``LocalPath``, channel names, the job name) are
checked so that none can point outside the root.
"""

from __future__ import annotations

import posixpath
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTAINER_ROOT = "/opt/ml"
DEFAULT_CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints/"
# A job name or host becomes a directory name: the SageMaker name pattern admits no separator.
_NAME_RE = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")
# Container directories the platform writes itself; a checkpoint dir inside or above one of them
# would mix checkpoints with inputs or code (and upload them to S3).
_RESERVED = ("input", "code", "tmp")


class SandboxError(ValueError):
    """A path given by a request would leave the job's sandbox, or is not usable there."""


def _container_parts(local_path: str) -> tuple[str, ...]:
    """Map a container path to its parts under the sandbox root, refusing any escape.

    :param local_path: an absolute container path such as ``/opt/ml/checkpoints/``.
    """
    if not local_path or "\x00" in local_path:
        raise SandboxError(f"LocalPath {local_path!r} is empty or holds a NUL character")
    if not local_path.startswith("/"):
        raise SandboxError(f"LocalPath {local_path!r} must be an absolute path")
    raw = [p for p in local_path.split("/") if p not in ("", ".")]
    if ".." in raw:
        raise SandboxError(f"LocalPath {local_path!r} must not contain '..'")
    normalized = "/" + "/".join(raw)
    if normalized == CONTAINER_ROOT or normalized.startswith(CONTAINER_ROOT + "/"):
        parts = tuple(raw[2:])
    else:
        parts = ("rootfs", *raw)
    if not parts or parts == ("rootfs",):
        raise SandboxError(f"LocalPath {local_path!r} must name a directory below {CONTAINER_ROOT}")
    if parts[0] in _RESERVED or (parts[0] == "output" and len(parts) == 1):
        raise SandboxError(
            f"LocalPath {local_path!r} overlaps a directory the platform manages "
            f"({CONTAINER_ROOT}/{parts[0]})"
        )
    return parts


def _checked_name(kind: str, value: str) -> str:
    if not _NAME_RE.match(value) or len(value) > 63:
        raise SandboxError(f"{kind} {value!r} is not a safe directory name")
    return value


def _wipe(directory: Path, keep: Path | None) -> None:
    """Remove everything under ``directory`` but ``keep`` (and the directories leading to it).

    :param directory: the directory, itself removed unless it holds ``keep``.
    :param keep: a path below it to leave as it is, or None.
    """
    if keep is None or not _is_within(keep, directory):
        # rmtree does not follow symlinks, so a link planted by the job cannot widen the wipe.
        shutil.rmtree(directory)
        return
    for child in directory.iterdir():
        if child.is_symlink() or not child.is_dir():
            child.unlink()  # a link is removed, never followed (even one planted at ``keep``)
        elif child == keep:
            continue
        elif _is_within(keep, child):
            _wipe(child, keep)
        else:
            shutil.rmtree(child)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class Sandbox:
    """The local file tree of one host of one training job.

    :param root: the directory standing for ``/opt/ml``.
    :param host: the host name (``algo-1``...).
    :param checkpoint_local_path: the container path of the checkpoint dir, as requested.
    :param checkpoint_dir: where that path lives under ``root``.
    :param checkpoint_synced: the request has a ``CheckpointConfig.S3Uri`` (the dir is synced).
    """

    root: Path
    host: str
    checkpoint_local_path: str
    checkpoint_dir: Path
    checkpoint_synced: bool = False

    @classmethod
    def create(
        cls, data_dir: Path, job_name: str, request: Mapping[str, Any], host: str = "algo-1"
    ) -> Sandbox:
        """Lay out (or reuse) the sandbox of ``host`` of ``job_name`` under ``data_dir``.

        :param data_dir: the emulator's data dir.
        :param job_name: the training job's name.
        :param request: the CreateTrainingJob request (``CheckpointConfig.LocalPath`` is read).
        :param host: the host name.
        :raises SandboxError: the job name, the host or the LocalPath is unsafe.
        """
        root = Path(data_dir).resolve() / "jobs" / _checked_name("job name", job_name)
        root = root / _checked_name("host", host)
        local_path = (request.get("CheckpointConfig") or {}).get(
            "LocalPath"
        ) or DEFAULT_CHECKPOINT_LOCAL_PATH
        sandbox = cls(
            root=root,
            host=host,
            checkpoint_local_path=str(local_path),
            checkpoint_dir=root.joinpath(*_container_parts(str(local_path))),
            checkpoint_synced=bool((request.get("CheckpointConfig") or {}).get("S3Uri")),
        )
        sandbox._make_layout()
        return sandbox

    @staticmethod
    def validate_local_path(local_path: str) -> None:
        """Refuse a ``CheckpointConfig.LocalPath`` that would escape or clash with the sandbox.

        :param local_path: the requested container path.
        :raises SandboxError: with a message naming the rule broken.
        """
        _container_parts(local_path)

    @property
    def input_config_dir(self) -> Path:
        """``/opt/ml/input/config``."""
        return self.root / "input" / "config"

    @property
    def input_data_dir(self) -> Path:
        """``/opt/ml/input/data``."""
        return self.root / "input" / "data"

    @property
    def code_dir(self) -> Path:
        """``/opt/ml/code``: script mode's copy of the submitted source."""
        return self.root / "code"

    @property
    def model_dir(self) -> Path:
        """``/opt/ml/model``."""
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        """``/opt/ml/output``."""
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        """``/opt/ml/output/data``."""
        return self.output_dir / "data"

    @property
    def namespace_stage(self) -> Path:
        """An empty dir beside the root, where the job's own mount namespace builds its file
        view (the mounts are never seen outside that namespace)."""
        return self.root.parent / f".{self.host}-ns"

    @property
    def tmp_dir(self) -> Path:
        """The training process's ``TMPDIR``."""
        return self.root / "tmp"

    def channel_dir(self, name: str) -> Path:
        """``/opt/ml/input/data/<name>``.

        :param name: the channel name; SageMaker's pattern admits ``.`` and ``..``, refused here.
        :raises SandboxError: the name is not a single safe path component.
        """
        if not re.fullmatch(r"[A-Za-z0-9.\-_]{1,64}", name) or name in (".", ".."):
            raise SandboxError(f"channel name {name!r} is not a safe directory name")
        return self.input_data_dir / name

    def contains(self, path: Path) -> bool:
        """Whether ``path``, with symlinks resolved, lies inside the sandbox root.

        :param path: any path.
        """
        return _is_within(Path(path).resolve(), self.root.resolve())

    def reset_for_restart(self) -> None:
        """Wipe everything local: a spot restart is a new instance that keeps nothing.

        Except a synced checkpoint dir: files in it may not be in S3 yet (the emulator crashed,
        or the last sync ran out of time); the checkpoint restore uploads them first.
        """
        if self.root.exists():
            keep = self.checkpoint_dir if self.checkpoint_synced else None
            _wipe(self.root, keep)
        self._make_layout()

    def _make_layout(self) -> None:
        dirs = (
            self.input_config_dir,
            self.input_data_dir,
            self.code_dir,
            self.model_dir,
            self.output_data_dir,
            self.tmp_dir,
            self.checkpoint_dir,
        )
        for directory in dirs:
            directory.mkdir(parents=True, exist_ok=True)
        # A symlink planted in a previous life of the sandbox must not redirect the checkpoints.
        if not self.contains(self.checkpoint_dir):
            raise SandboxError(
                f"checkpoint dir {self.checkpoint_dir} resolves outside the sandbox {self.root}"
            )

    def container_path(self, path: Path) -> str:
        """The ``/opt/ml/...`` path a sandbox path stands for (for messages and logs).

        :param path: a path under the root.
        """
        rel = Path(path).relative_to(self.root).as_posix()
        if rel == "rootfs" or rel.startswith("rootfs/"):
            return "/" + rel.removeprefix("rootfs").lstrip("/")
        return posixpath.join(CONTAINER_ROOT, rel) if rel != "." else CONTAINER_ROOT
