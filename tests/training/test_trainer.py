"""The example trainer, run as a real process: interrupted runs end with the same model bytes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TRAIN = Path(__file__).resolve().parents[2] / "dags" / "training" / "train.py"
HPS = {"total_steps": 60, "seed": 11, "checkpoint_every": 7, "step_sleep": 0.01, "batch_size": 16}


def _env(root: Path, hps: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SM_MODEL_DIR": str(root / "model"),
        "SAGEMAKER_BASE_DIR": str(root),  # where /opt/ml is, outside a container
        **extra,
    }
    if hps is not None:
        env["SM_HPS"] = json.dumps(hps)
    return env


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TRAIN), "--ignored", "arg"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _model(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "model").iterdir())}


def _new_instance(previous: Path, root: Path) -> None:
    """What a spot restart sees: only the checkpoints, restored into a fresh instance."""
    shutil.copytree(previous / "checkpoints", root / "checkpoints")


def _interrupted_run(env: dict[str, str], after_steps: int, sig: signal.Signals) -> list[str]:
    """Start the trainer, signal it once it printed ``after_steps`` step lines; its output.

    The trainer may run a step or two further before the signal lands: the tests read the step
    it saved from its output rather than assume it.
    """
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN)], env=env, stdout=subprocess.PIPE, bufsize=0
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while raw := proc.stdout.readline():  # unbuffered: no read-ahead past the line
        lines.append(raw.decode().rstrip("\n"))
        if sum(line.startswith("step=") for line in lines) == after_steps:
            proc.send_signal(sig)
            break
    lines += proc.stdout.read().decode().splitlines()
    lines.append(f"exit={proc.wait(timeout=30)}")
    return lines


def _saved_step(lines: list[str]) -> int:
    """The step of the SIGTERM checkpoint, from the trainer's last words."""
    assert lines[-1] == "exit=143", lines[-3:]
    assert lines[-2].startswith("SIGTERM: checkpoint saved at step=")
    return int(lines[-2].split("step=")[1].split(",")[0])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("reference")
    result = _run(_env(root, HPS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "training steps=60 samples=1024 features=8"
    assert sum(line.startswith("step=") for line in lines) == 60
    assert lines[-1].startswith("done: step=60 loss=")
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 60
    assert 0.5 < metrics["accuracy"] <= 1.0
    assert np.load(root / "model" / "model.npy").shape == (9,)
    return _model(root)


def test_same_hyperparameters_give_the_same_model(
    reference: dict[str, bytes], tmp_path: Path
) -> None:
    assert _run(_env(tmp_path / "a", HPS)).returncode == 0
    assert _model(tmp_path / "a") == reference
    assert _run(_env(tmp_path / "b", HPS | {"seed": 12})).returncode == 0
    assert _model(tmp_path / "b")["model.npy"] != reference["model.npy"]


@pytest.mark.parametrize("seed", [1, 2])
def test_sigterm_interrupted_runs_end_bit_identical(
    reference: dict[str, bytes], tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    previous: Path | None = None
    saved = 0
    for attempt in range(3):
        root = tmp_path / f"attempt-{attempt}"
        if previous is not None:
            _new_instance(previous, root)
        seen = rng.randint(1, 15)
        lines = _interrupted_run(_env(root, HPS), seen, signal.SIGTERM)
        step = _saved_step(lines)
        assert step >= saved + seen  # the last completed step, not an older checkpoint
        saved = step
        checkpoints = sorted(p.name for p in (root / "checkpoints").iterdir())
        assert checkpoints[-1] == f"ckpt-{saved:09d}.json"
        assert len(checkpoints) <= 2  # pruned to the newest two
        assert not (root / "model").exists()
        previous = root
    assert previous is not None
    final = tmp_path / "final"
    _new_instance(previous, final)
    result = _run(_env(final, HPS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"resumed from checkpoint step={saved}\n")
    assert sum(line.startswith("step=") for line in result.stdout.splitlines()) == 60 - saved
    assert _model(final) == reference


def test_sigkill_and_early_sigterm_also_end_bit_identical(
    reference: dict[str, bytes], tmp_path: Path
) -> None:
    first = tmp_path / "first"
    lines = _interrupted_run(_env(first, HPS), 17, signal.SIGKILL)
    assert lines[-1] == f"exit={-signal.SIGKILL}"
    # SIGKILL saves nothing: only the periodic checkpoints (every 7 steps) are there.
    steps = [int(p.name[5:14]) for p in sorted((first / "checkpoints").glob("ckpt-*"))]
    assert len(steps) == 2
    assert all(step % 7 == 0 for step in steps)
    assert steps[-1] >= 14
    second = tmp_path / "second"
    _new_instance(first, second)
    proc = subprocess.Popen([sys.executable, str(TRAIN)], env=_env(second, HPS))
    time.sleep(0.01)  # probably before the handler is installed: default action, no checkpoint
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (143, -signal.SIGTERM)
    final = tmp_path / "final"
    _new_instance(second, final)
    assert _run(_env(final, HPS)).returncode == 0
    assert _model(final) == reference


def test_completed_checkpoint_just_rewrites_the_model(
    reference: dict[str, bytes], tmp_path: Path
) -> None:
    first = tmp_path / "first"
    assert _run(_env(first, HPS)).returncode == 0
    second = tmp_path / "second"
    _new_instance(first, second)
    result = _run(_env(second, HPS))
    assert result.returncode == 0
    assert result.stdout.startswith("resumed from checkpoint step=60\n")
    assert not [line for line in result.stdout.splitlines() if line.startswith("step=")]
    assert _model(second) == reference


def test_hyperparameters_file_and_csv_channel(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    hps = {"total_steps": "5", "seed": '"3"', "batch_size": "4", "sagemaker_program": '"train.py"'}
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    channel = tmp_path / "train"
    channel.mkdir()
    rows = [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.5, 0.5, 1.0], [-1.0, 0.2, 0.0]]
    (channel / "data.csv").write_text("\n".join(",".join(map(str, r)) for r in rows))
    env = _env(tmp_path, SM_INPUT_CONFIG_DIR=str(config), SM_CHANNEL_TRAIN=str(channel))
    result = _run(env)
    assert result.returncode == 0, result.stderr
    assert "training steps=5 samples=4 features=2" in result.stdout
    assert np.load(tmp_path / "model" / "model.npy").shape == (3,)


def test_checkpoint_of_other_hyperparameters_is_refused(tmp_path: Path) -> None:
    assert _run(_env(tmp_path, HPS | {"total_steps": 7})).returncode == 0
    result = _run(_env(tmp_path, HPS | {"learning_rate": 0.5}))
    assert result.returncode == 1
    assert "written with other hyperparameters" in result.stderr


def test_checkpoint_dir_hyperparameter_overrides_the_default(tmp_path: Path) -> None:
    elsewhere = tmp_path / "ckpt" / "here"
    hps = HPS | {"total_steps": 7, "checkpoint_dir": str(elsewhere)}
    assert _run(_env(tmp_path / "box", hps)).returncode == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == ["ckpt-000000007.json"]
    assert not (tmp_path / "box" / "checkpoints").exists()
    # The same run with the checkpoint dir moved is the same run: it resumes at the end.
    result = _run(_env(tmp_path / "other", hps))
    assert result.stdout.startswith("resumed from checkpoint step=7\n")
