"""A trainer that is slow in the reference run only: every other run ends before any interruption.

It stands for a busy machine that made the reference slow: the plan's interruption moments, taken
from the reference, all fall after the end of the runs. The model is the same in every run.
Hyperparameters: ``total_steps`` (40), ``step_sleep`` (0.1 s, in the reference run only).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    """Train (sleeping only in the reference run), checkpointing every step; write the model."""
    given = json.loads(os.environ.get("SM_HPS") or "{}")
    steps, sleep = int(given.get("total_steps", 40)), float(given.get("step_sleep", 0.1))
    if not os.environ.get("TRAINING_JOB_NAME", "").endswith("-reference"):
        sleep = 0.0
    checkpoints = Path(os.environ.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    checkpoints.mkdir(parents=True, exist_ok=True)
    state = checkpoints / "state.json"
    saved = json.loads(state.read_text()) if state.is_file() else {"step": 0, "value": 0.0}
    step, value = int(saved["step"]), float(saved["value"])
    while step < steps:
        time.sleep(sleep)
        step += 1
        value = value * 0.5 + step
        state.write_text(json.dumps({"step": step, "value": value}))
    model = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")) / "model.json"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text(json.dumps({"steps": step, "value": value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
