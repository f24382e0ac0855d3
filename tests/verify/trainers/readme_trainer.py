"""A trainer written only from the README's "Writing a trainer that passes" (not from the example
trainer): least squares by gradient descent on a seeded data set, numpy only.

Checkpoints: one ``latest.npz`` (weights, step, random state), replaced atomically every
``save_every`` steps and on SIGTERM. Hyperparameters from ``SM_HPS``: ``steps`` (50),
``save_every`` (10), ``sleep`` (0.05 s per step), ``seed`` (3).
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import numpy as np


def settings() -> dict[str, float]:
    """The hyperparameters with their defaults."""
    given = json.loads(os.environ.get("SM_HPS") or "{}")
    defaults = {"steps": 50, "save_every": 10, "sleep": 0.05, "seed": 3}
    return {k: float(given.get(k, v)) for k, v in defaults.items()}


def save(path: Path, step: int, weights: np.ndarray, rng: np.random.Generator) -> None:
    """Replace the checkpoint atomically.

    :param path: the checkpoint file.
    :param step: steps done.
    :param weights: the model.
    :param rng: the minibatch generator (its state goes into the checkpoint).
    """
    buffer = io.BytesIO()
    state = json.dumps(rng.bit_generator.state)
    np.savez(buffer, weights=weights, step=np.array(step), rng=np.array(state))
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def main() -> int:
    """Train, resuming from ``latest.npz`` when it is there."""
    hps = settings()
    stop: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    ckpt_dir = Path(os.environ.get("SM_CHECKPOINT_DIR") or "/opt/ml/checkpoints")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "latest.npz"
    data_rng = np.random.default_rng(int(hps["seed"]))
    x = data_rng.normal(size=(256, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * data_rng.normal(size=256)
    rng = np.random.default_rng(int(hps["seed"]) + 100)
    weights, step = np.zeros(4), 0
    if ckpt.is_file():
        with np.load(ckpt) as saved:
            weights, step = saved["weights"].copy(), int(saved["step"])
            rng.bit_generator.state = json.loads(str(saved["rng"]))
        print(f"resumed from checkpoint step={step}", flush=True)
    print(f"training from step={step} to {int(hps['steps'])}", flush=True)
    while step < hps["steps"]:
        time.sleep(hps["sleep"])
        if stop:
            save(ckpt, step, weights, rng)
            print(f"SIGTERM: saved step={step}", flush=True)
            return 143
        batch = rng.integers(0, len(x), size=32)
        residual = (x[batch] * weights).sum(axis=1) - y[batch]
        weights = weights - 0.05 * (x[batch] * residual[:, None]).sum(axis=0) / len(batch)
        step += 1
        if step % int(hps["save_every"]) == 0:
            save(ckpt, step, weights, rng)
    save(ckpt, step, weights, rng)
    model_dir = Path(os.environ.get("SM_MODEL_DIR") or "/opt/ml/model")
    model_dir.mkdir(parents=True, exist_ok=True)
    np.save(model_dir / "weights.npy", weights)
    print(f"done: step={step} weights={weights.round(4).tolist()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
