"""A trainer that reads its checkpoint at start but writes one only when training is done.

An interruption before the end leaves nothing to restore: every restart begins at step 0. It
ignores SIGTERM (the backend kills it at the end of the notice).
Hyperparameters: ``total_steps`` (40), ``step_sleep`` (0.05 s).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def hyperparameters() -> dict[str, float]:
    """``SM_HPS`` (JSON) with defaults."""
    given = json.loads(os.environ.get("SM_HPS") or "{}")
    defaults = {"total_steps": 40, "step_sleep": 0.05}
    return {k: float(given.get(k, v)) for k, v in defaults.items()}


def main() -> int:
    """Train, resuming from a checkpoint if one is there; save only at the end."""
    hps = hyperparameters()
    directory = Path(os.environ.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "state.json"
    step, value = 0, 0.0
    if state.is_file():
        saved = json.loads(state.read_text())
        step, value = int(saved["step"]), float(saved["value"])
        print(f"resumed from checkpoint step={step}", flush=True)
    print(f"training steps={int(hps['total_steps'])} from step={step}", flush=True)
    while step < hps["total_steps"]:
        time.sleep(hps["step_sleep"])
        step += 1
        value = value * 0.5 + step
    state.write_text(json.dumps({"step": step, "value": value}))  # the bug: only here
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.json").write_text(json.dumps({"steps": step, "value": value}))
    print(f"done: step={step} value={value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
