"""Example SageMaker training script: logistic regression by minibatch SGD, numpy only.

Runs unchanged on SageMaker (a scikit-learn or PyTorch framework image, script mode) and on the
spot emulator. What it reads, under SageMaker's container contract:

- hyperparameters from ``SM_HPS`` (JSON), else ``$SM_INPUT_CONFIG_DIR/hyperparameters.json``
  (default ``/opt/ml/input/config``); command-line ``--name value`` arguments are ignored;
- the ``train`` channel ``SM_CHANNEL_TRAIN``: the first ``.npz`` (arrays ``X``, ``y``) or ``.csv``
  (label in the last column) found there; without one, a data set generated from ``seed``;
- the checkpoint dir: the hyperparameter ``checkpoint_dir`` when the job's
  ``CheckpointConfig.LocalPath`` is not the default, else ``/opt/ml/checkpoints`` (SageMaker's
  default ``LocalPath``); outside a container, ``$SAGEMAKER_BASE_DIR/checkpoints`` (the training
  toolkit's variable for where ``/opt/ml`` is).

Hyperparameters: ``epochs`` (5) x ``steps_per_epoch`` (20) steps, or ``total_steps``;
``learning_rate`` (0.1), ``batch_size`` (32), ``seed`` (0), ``checkpoint_every`` (10 steps),
``step_sleep`` (0 s: time added to each step, so that a demo run lasts a while), ``n_samples``
(1024) and ``n_features`` (8) of the generated data set, ``keep_checkpoints`` (2),
``checkpoint_dir`` (see above).

Determinism: step ``i`` draws its minibatch from a ``numpy.random.Generator`` whose state after
step ``i - 1`` is part of the checkpoint, and the arithmetic uses no BLAS (whose summation order
may vary). Checkpoints are written atomically (temporary file, then ``os.replace``) at step
boundaries only: every ``checkpoint_every`` steps, at the end, and on SIGTERM, which abandons the
step in progress, saves the last completed one and exits with 143. Any number of interruptions,
SIGKILL included, thus end with a model bit-identical to an uninterrupted run's. Only the newest
``keep_checkpoints`` checkpoints are kept (the older ones are deleted, also from S3 by the sync).

Output in ``SM_MODEL_DIR`` (default ``/opt/ml/model``): ``model.npy`` (weights, bias last) and
``metrics.json``. Progress goes to stdout as ``step=<i>/<n> loss=<minibatch log-loss>``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a container runtime reports
_CHECKPOINT_RE = re.compile(r"^ckpt-(\d{9})\.json$")


@dataclass(frozen=True)
class Config:
    """The hyperparameters (see the module docstring)."""

    epochs: int = 5
    steps_per_epoch: int = 20
    total_steps: int = 0  # 0: epochs x steps_per_epoch
    learning_rate: float = 0.1
    batch_size: int = 32
    seed: int = 0
    checkpoint_every: int = 10
    step_sleep: float = 0.0
    n_samples: int = 1024
    n_features: int = 8
    keep_checkpoints: int = 2
    checkpoint_dir: str = ""  # empty: <base>/checkpoints, see checkpoint_path()

    @classmethod
    def from_hyperparameters(cls, hps: dict[str, Any]) -> Config:
        """Build from decoded hyperparameters; unknown names (``sagemaker_*``...) are ignored.

        :param hps: name to value (numbers may still be strings).
        """
        kwargs: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in hps:
                value = hps[field.name]
                kwargs[field.name] = _typed(field.type, value)
        return cls(**kwargs)

    @property
    def steps(self) -> int:
        """The number of SGD steps of the whole run."""
        return self.total_steps or self.epochs * self.steps_per_epoch

    def fingerprint(self, data: Array) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (not the run length nor the pacing).

        :param data: the training matrix, labels included.
        """
        digest = int(np.frombuffer(data.tobytes(), dtype=np.uint64).sum(dtype=np.uint64))
        return {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "data": [list(data.shape), digest],
        }


def _typed(kind: Any, value: Any) -> Any:
    if kind == "str":
        return str(value)
    return float(value) if kind == "float" else _as_int(value)


def checkpoint_path(cfg: Config) -> Path:
    """Where checkpoints go: as on SageMaker, ``/opt/ml/checkpoints`` unless told otherwise.

    :param cfg: the configuration (``checkpoint_dir``).
    """
    if cfg.checkpoint_dir:
        return Path(cfg.checkpoint_dir)
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "checkpoints"


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except ValueError:  # "1e3", "10.0"
        return int(float(value))


def _decode(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def load_hyperparameters() -> dict[str, Any]:
    """The hyperparameters, from ``SM_HPS`` or ``hyperparameters.json``, JSON-decoded."""
    if os.environ.get("SM_HPS"):
        return dict(json.loads(os.environ["SM_HPS"]))
    config_dir = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    path = config_dir / "hyperparameters.json"
    if path.is_file():
        return {k: _decode(v) for k, v in json.loads(path.read_text()).items()}
    return {}


def load_data(cfg: Config) -> tuple[Array, Array]:
    """The training data ``(X with a bias column, y)``: the ``train`` channel or generated.

    :param cfg: the configuration.
    """
    channel = os.environ.get("SM_CHANNEL_TRAIN")
    files = sorted(Path(channel).glob("*")) if channel and Path(channel).is_dir() else []
    found = [f for f in files if f.suffix in (".npz", ".csv")]
    if found and found[0].suffix == ".npz":
        with np.load(found[0]) as arrays:
            x, y = np.asarray(arrays["X"], np.float64), np.asarray(arrays["y"], np.float64)
    elif found:
        table = np.loadtxt(found[0], delimiter=",", dtype=np.float64, ndmin=2)
        x, y = table[:, :-1], table[:, -1]
    else:
        rng = np.random.default_rng(cfg.seed)
        x = rng.standard_normal((cfg.n_samples, cfg.n_features))
        true_w = rng.standard_normal(cfg.n_features)
        y = (rng.random(cfg.n_samples) < _sigmoid(_rowdot(x, true_w) + 0.5)).astype(np.float64)
    ones = np.ones((x.shape[0], 1), dtype=np.float64)
    return np.ascontiguousarray(np.hstack([x, ones])), np.ascontiguousarray(y)


def _sigmoid(z: Array) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _rowdot(x: Array, w: Array) -> Array:
    # Elementwise product and a reduction of fixed order, instead of BLAS's x @ w.
    return np.asarray((x * w).sum(axis=1), dtype=np.float64)


def log_loss(x: Array, y: Array, theta: Array) -> float:
    """Mean logistic loss of ``theta`` on ``(x, y)``.

    :param x: features with the bias column.
    :param y: labels 0 or 1.
    :param theta: weights, bias last.
    """
    p = np.clip(_sigmoid(_rowdot(x, theta)), 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


class Trainer:
    """The SGD state and its checkpoints.

    :param cfg: the configuration.
    :param x: features with the bias column.
    :param y: labels.
    :param checkpoint_dir: where checkpoints go.
    """

    def __init__(self, cfg: Config, x: Array, y: Array, checkpoint_dir: Path) -> None:
        self.cfg, self.x, self.y = cfg, x, y
        self.checkpoint_dir = checkpoint_dir
        self.fingerprint = cfg.fingerprint(np.hstack([x, y[:, None]]))
        self.step = 0
        self.theta: Array = np.zeros(x.shape[1], dtype=np.float64)
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed + 1))
        self.saved_step = -1

    def sgd_step(self) -> float:
        """One minibatch step; the minibatch's log-loss before the update."""
        idx = self.rng.integers(0, self.x.shape[0], size=self.cfg.batch_size)
        xb, yb = self.x[idx], self.y[idx]
        p = _sigmoid(_rowdot(xb, self.theta))
        grad = (xb * (p - yb)[:, None]).sum(axis=0) / self.cfg.batch_size
        self.theta = self.theta - self.cfg.learning_rate * grad
        self.step += 1
        clipped = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-(yb * np.log(clipped) + (1 - yb) * np.log(1 - clipped)).mean())

    def checkpoints(self) -> list[tuple[int, Path]]:
        """The checkpoint files, newest first."""
        found: list[tuple[int, Path]] = []
        for path in self.checkpoint_dir.glob("ckpt-*.json"):
            match = _CHECKPOINT_RE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def save(self) -> None:
        """Write the checkpoint of the current step atomically, then prune old ones."""
        if self.saved_step == self.step:
            return
        state = {
            "step": self.step,
            "theta": base64.b64encode(self.theta.astype("<f8").tobytes()).decode(),
            "rng": self.rng.bit_generator.state,
            "fingerprint": self.fingerprint,
        }
        _atomic_write(self.checkpoint_dir / f"ckpt-{self.step:09d}.json", json.dumps(state))
        self.saved_step = self.step
        for _step, old in self.checkpoints()[self.cfg.keep_checkpoints :]:
            old.unlink(missing_ok=True)

    def resume(self) -> bool:
        """Load the newest readable checkpoint; whether there was one.

        :raises SystemExit: a checkpoint of another configuration (code 2).
        """
        for stale in self.checkpoint_dir.glob(".*.tmp"):  # left by a kill during a write
            stale.unlink(missing_ok=True)
        for _step, path in self.checkpoints():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if state["fingerprint"] != self.fingerprint:
                raise SystemExit(f"checkpoint {path.name} was written with other hyperparameters")
            raw = base64.b64decode(state["theta"])
            self.theta = np.frombuffer(raw, dtype="<f8").astype(np.float64)
            self.rng.bit_generator.state = state["rng"]
            self.step = self.saved_step = int(state["step"])
            return True
        return False


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_model(trainer: Trainer, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / ".model.npy.tmp"
    with open(tmp, "wb") as handle:
        np.save(handle, trainer.theta)
    os.replace(tmp, model_dir / "model.npy")
    x, y, theta = trainer.x, trainer.y, trainer.theta
    accuracy = float(((_rowdot(x, theta) > 0) == (y > 0.5)).mean())
    metrics = {"steps": trainer.step, "loss": log_loss(x, y, theta), "accuracy": accuracy}
    _atomic_write(model_dir / "metrics.json", json.dumps(metrics, sort_keys=True))


def main() -> int:
    """Train, checkpointing and resuming; the process exit code."""
    stop = {"requested": False}

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_sigterm)
    cfg = Config.from_hyperparameters(load_hyperparameters())
    checkpoint_dir = checkpoint_path(cfg)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    x, y = load_data(cfg)
    trainer = Trainer(cfg, x, y, checkpoint_dir)
    if trainer.resume():
        print(f"resumed from checkpoint step={trainer.step}", flush=True)
    print(f"training steps={cfg.steps} samples={x.shape[0]} features={x.shape[1] - 1}", flush=True)
    while trainer.step < cfg.steps:
        if cfg.step_sleep > 0:
            time.sleep(cfg.step_sleep)
        if stop["requested"]:  # abandon the step not yet computed; keep the last completed one
            trainer.save()
            print(f"SIGTERM: checkpoint saved at step={trainer.step}, exiting", flush=True)
            return EXIT_TERMINATED
        loss = trainer.sgd_step()
        print(f"step={trainer.step}/{cfg.steps} loss={loss:.6f}", flush=True)
        if trainer.step % max(cfg.checkpoint_every, 1) == 0:
            trainer.save()
    trainer.save()
    _write_model(trainer, Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")))
    print(f"done: step={trainer.step} loss={log_loss(x, y, trainer.theta):.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
