"""A trainer that checkpoints only on SIGTERM, after a known delay, and resumes from it.

Hyperparameters (``SM_HP_*``): ``train_seconds`` of work in 0.05 s steps, ``sigterm_delay``
seconds between SIGTERM and writing ``progress.json`` to the checkpoint dir (SageMaker's default
``LocalPath`` under ``SAGEMAKER_BASE_DIR``). The newest checkpoint object in S3 is therefore
written that long after the SIGTERM: the checkpoint cost the follower measures.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

total = float(os.environ.get("SM_HP_TRAIN_SECONDS", "3"))
delay = float(os.environ.get("SM_HP_SIGTERM_DELAY", "1"))
base = os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")
directory = os.environ.get("SM_CHECKPOINT_DIR") or os.path.join(base, "checkpoints")
checkpoint = Path(directory) / "progress.json"
checkpoint.parent.mkdir(parents=True, exist_ok=True)
done = json.loads(checkpoint.read_text())["done"] if checkpoint.exists() else 0.0
print(f"resumed at {done:.2f} s of {total} s" if done else "fresh start", flush=True)
stop = {"requested": False}
signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))


def save() -> None:
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps({"done": done}))
    tmp.rename(checkpoint)


while done < total:
    if stop["requested"]:
        time.sleep(delay)  # the known cost of a checkpoint
        save()
        print(f"SIGTERM: saved {done:.2f} s after a {delay} s checkpoint", flush=True)
        sys.exit(143)
    time.sleep(0.05)
    done += 0.05
save()
Path(os.environ.get("SM_MODEL_DIR", Path(base) / "model")).mkdir(parents=True, exist_ok=True)
print("done", flush=True)
