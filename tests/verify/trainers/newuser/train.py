"""A new user's SageMaker script: a numpy linear model that checkpoints and resumes."""

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--total_steps", type=int, default=60)
parser.add_argument("--step_sleep", type=float, default=0.05)
parser.add_argument("--checkpoint_every", type=int, default=10)
parser.add_argument("--lr", type=float, default=0.1)
# SageMaker sets no variable for it: hard-code the default path, allow an override.
parser.add_argument("--checkpoint_dir", default="/opt/ml/checkpoints")
args, _ = parser.parse_known_args()

model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
ckpt_path = os.path.join(args.checkpoint_dir, "checkpoint.json")

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 3))
y = x @ np.array([1.5, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.1, size=256)

step, w, b = 0, np.zeros(3), 0.0
if os.path.exists(ckpt_path):
    with open(ckpt_path) as f:
        state = json.load(f)
    step, w, b = state["step"], np.array(state["w"]), state["b"]
    print(f"resumed from checkpoint step={step}", flush=True)
else:
    print("no checkpoint: starting from scratch", flush=True)


def save(step, w, b):
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    tmp = ckpt_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"step": step, "w": [float(v) for v in w], "b": float(b)}, f)
    os.replace(tmp, ckpt_path)
    print(f"saved checkpoint step={step}", flush=True)


stop = []  # set by the SIGTERM handler; checked after each completed step
signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))

while step < args.total_steps:
    err = x @ w + b - y
    w = w - args.lr * (x.T @ err) / len(y)
    b = b - args.lr * float(err.mean())
    step += 1
    time.sleep(args.step_sleep)
    if stop:
        save(step, w, b)
        print("SIGTERM: checkpoint saved, exiting", flush=True)
        sys.exit(0)
    if step % args.checkpoint_every == 0:
        save(step, w, b)

os.makedirs(model_dir, exist_ok=True)
np.save(os.path.join(model_dir, "model.npy"), np.append(w, b))
print(f"done step={step} loss={float(np.mean((x @ w + b - y) ** 2)):.6f}", flush=True)
