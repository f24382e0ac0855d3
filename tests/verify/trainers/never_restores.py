"""A trainer that checkpoints (every few steps and on SIGTERM) but never reads its checkpoints.

Every restart begins at step 0: it ends with the right model, having redone all the work.
Hyperparameters: ``total_steps`` (40), ``step_sleep`` (0.05 s), ``checkpoint_every`` (5).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def hyperparameters() -> dict[str, float]:
    """``SM_HPS`` (JSON) with defaults."""
    given = json.loads(os.environ.get("SM_HPS") or "{}")
    defaults = {"total_steps": 40, "step_sleep": 0.05, "checkpoint_every": 5}
    return {k: float(given.get(k, v)) for k, v in defaults.items()}


def save(directory: Path, step: int, value: float) -> None:
    """Write the state atomically.

    :param directory: the checkpoint dir.
    :param step: steps done.
    :param value: the model so far.
    """
    tmp = directory / ".state.json.tmp"
    tmp.write_text(json.dumps({"step": step, "value": value}))
    os.replace(tmp, directory / "state.json")


def main() -> int:
    """Train from scratch, whatever the checkpoint dir holds."""
    stop: list[int] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    hps = hyperparameters()
    directory = Path(os.environ.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    directory.mkdir(parents=True, exist_ok=True)
    step, value = 0, 0.0  # the bug under test: the checkpoint dir is never read
    print(f"training steps={int(hps['total_steps'])} from step={step}", flush=True)
    while step < hps["total_steps"]:
        time.sleep(hps["step_sleep"])
        if stop:
            save(directory, step, value)
            print(f"SIGTERM: checkpoint saved at step={step}", flush=True)
            return 143
        step += 1
        value = value * 0.5 + step
        if step % int(hps["checkpoint_every"]) == 0:
            save(directory, step, value)
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.json").write_text(json.dumps({"steps": step, "value": value}))
    print(f"done: step={step} value={value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
