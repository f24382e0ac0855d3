"""How a training process is started: in its own namespaces where Linux allows, else plainly.

With namespaces (Linux, ``unshare(1)`` from util-linux, user namespaces enabled; as root or as
a normal user), each job runs under ``unshare --user --map-root-user --mount --pid --uts --fork
--kill-child --mount-proc`` and :mod:`.jobinit` as its PID 1, which binds the job's sandbox at
``/opt/ml`` (and an outside ``CheckpointConfig.LocalPath`` at its path) in a private file view,
sets the host name to ``algo-1``..., and execs the entry point. Every process of the job dies
with the job, ``setsid()`` or not, and with the backend (the lifeline pipe).

Without namespaces (``SPOT_EMULATOR_NAMESPACES=off``, not Linux, no ``unshare``, user
namespaces disabled) the same init runs as a plain child: the job sees its sandbox's real path
(``SAGEMAKER_BASE_DIR`` and the ``SM_`` variables point there), the host's ``/opt/ml`` is not
provided, and a process that leaves the job's session survives a SIGKILL of the job (the init
still kills its descendants when the main process ends or the backend goes). The backend says
so once in its log. This is isolation for correctness, not a security boundary: the job runs
with the backend's own user rights on the host's files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from airflow_spot_provider.emulator.sandbox import CONTAINER_ROOT, Sandbox

log = logging.getLogger(__name__)

NAMESPACES_ENV = "SPOT_EMULATOR_NAMESPACES"  # "off" forces the fallback
JOBINIT = Path(__file__).with_name("jobinit.py")
_UNSHARE_FLAGS = (
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--uts",
    "--fork",
    "--kill-child=SIGKILL",
    "--mount-proc",
)
_PROBE_SECONDS = 20.0
_PROBE_SCRIPT = (
    "import os, socket, sys; "
    "sys.exit(0 if os.getpid() == 2 and os.path.isdir('/opt/ml/probe') "
    "and socket.gethostname() == 'algo-1' else 3)"
)


def _jobinit_argv(python: str, spec: Mapping[str, object]) -> list[str]:
    # -I: no user site, no PYTHON* variables; -S: no site-packages (jobinit is stdlib only).
    return [python, "-I", "-S", str(JOBINIT), json.dumps(spec)]


def _probe(python: str) -> str | None:
    """Run a tiny job in namespaces; None if it worked, else why not."""
    if os.environ.get(NAMESPACES_ENV, "").lower() in ("0", "off", "false", "no"):
        return f"{NAMESPACES_ENV}={os.environ[NAMESPACES_ENV]}"
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare(1) (util-linux) is not installed"
    with tempfile.TemporaryDirectory(prefix="spot-emulator-probe-") as tmp:
        (Path(tmp) / "box" / "probe").mkdir(parents=True)
        (Path(tmp) / "stage").mkdir()
        spec = {
            "binds": [[str(Path(tmp) / "box"), CONTAINER_ROOT]],
            "stage": str(Path(tmp) / "stage"),
            "hostname": "algo-1",
            "cwd": "/",
            "argv": [python, "-I", "-S", "-c", _PROBE_SCRIPT],
            "namespaced": True,
        }
        try:
            done = subprocess.run(
                [unshare, *_UNSHARE_FLAGS, *_jobinit_argv(python, spec)],
                capture_output=True,
                timeout=_PROBE_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"unshare failed: {err}"
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        return f"unshare exited {done.returncode}: {detail[-1] if detail else 'no message'}"
    return None


_PROBE_LOCK = threading.Lock()


def namespaces_unavailable(python: str = sys.executable) -> str | None:
    """Why jobs cannot run in their own namespaces here (None: they can). Probed once.

    :param python: the interpreter of the jobs.
    """
    with _PROBE_LOCK:  # jobs start from worker threads: one probe, one log line
        return _probed(python)


def forget_probe() -> None:
    """Probe again at the next job (tests switch :data:`NAMESPACES_ENV`)."""
    with _PROBE_LOCK:
        _probed.cache_clear()


@functools.cache
def _probed(python: str) -> str | None:
    reason = _probe(python)
    if reason is None:
        log.info("training jobs run in their own user, mount and PID namespaces")
    else:
        log.warning(
            "training jobs run WITHOUT namespaces (%s): a job sees its sandbox path instead "
            "of /opt/ml (SAGEMAKER_BASE_DIR and the SM_ variables point there), and a process "
            "that leaves the job's session can outlive a killed job",
            reason,
        )
    return reason


def container_base(sandbox: Sandbox, namespaced: bool) -> str:
    """Where the job sees ``/opt/ml``.

    :param sandbox: the host's sandbox.
    :param namespaced: whether the job runs in its own namespaces.
    """
    return CONTAINER_ROOT if namespaced else str(sandbox.root)


def checkpoint_path(sandbox: Sandbox, namespaced: bool) -> str:
    """Where the job sees its checkpoint dir (``CheckpointConfig.LocalPath`` in namespaces).

    :param sandbox: the host's sandbox.
    :param namespaced: whether the job runs in its own namespaces.
    """
    return sandbox.checkpoint_local_path if namespaced else str(sandbox.checkpoint_dir)


def _binds(sandbox: Sandbox) -> list[list[str]]:
    binds = [[str(sandbox.root), CONTAINER_ROOT]]
    local = sandbox.container_path(sandbox.checkpoint_dir)
    if not (local == CONTAINER_ROOT or local.startswith(CONTAINER_ROOT + "/")):
        binds.append([str(sandbox.checkpoint_dir), local])
    return binds


async def start_container(
    *,
    sandbox: Sandbox,
    argv: list[str],
    cwd: str,
    env: Mapping[str, str],
    python: str,
    namespaced: bool,
) -> tuple[asyncio.subprocess.Process, int]:
    """Start the job's init (in namespaces or not), which runs ``argv``; never a shell.

    :param sandbox: the host's sandbox.
    :param argv: the entry point and its arguments.
    :param cwd: its working directory, as the job sees it.
    :param env: its whole environment.
    :param python: the interpreter that runs the init.
    :param namespaced: whether to use namespaces (see :func:`namespaces_unavailable`).
    :returns: the process (its own session) and the lifeline's write end, which the caller
        closes once the process ended.
    """
    lifeline_r, lifeline_w = os.pipe()
    spec: dict[str, object] = {
        "cwd": cwd,
        "argv": argv,
        "lifeline": lifeline_r,
        "namespaced": namespaced,
    }
    prefix: list[str] = []
    if namespaced:
        stage = sandbox.namespace_stage
        stage.mkdir(parents=True, exist_ok=True)
        spec.update(binds=_binds(sandbox), stage=str(stage), hostname=sandbox.host)
        prefix = [shutil.which("unshare") or "unshare", *_UNSHARE_FLAGS]
    try:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            *_jobinit_argv(python, spec),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(lifeline_r,),
            start_new_session=True,  # its own process group: signals reach the job's processes
        )
    except BaseException:
        os.close(lifeline_w)
        raise
    finally:
        os.close(lifeline_r)
    return process, lifeline_w
