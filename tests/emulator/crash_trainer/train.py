"""A trainer for the crash test: one checkpoint file per step (all kept), resumes from the newest.

It also starts a child that leaves its process group and session (``setsid``) and sleeps, and
writes both pids to ``--pid-dir``, so that the test can see that nothing outlives the backend.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--step_seconds", type=float, default=0.1)
parser.add_argument("--pid_dir", required=True)
args, _ = parser.parse_known_args()

base = os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")
checkpoints = Path(os.environ.get("SM_CHECKPOINT_DIR") or os.path.join(base, "checkpoints"))
checkpoints.mkdir(parents=True, exist_ok=True)
done = sorted(int(p.stem.split("-")[1]) for p in checkpoints.glob("step-*.ckpt"))
step = done[-1] if done else 0
print(f"resumed from step={step}" if done else "fresh start", flush=True)

child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)", args.pid_dir], start_new_session=True
)
pid_dir = Path(args.pid_dir)
pid_dir.mkdir(parents=True, exist_ok=True)
(pid_dir / f"{os.getpid()}.pids").write_text(f"{os.getpid()} {child.pid}\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # checkpoints are written every step

while step < args.steps:
    time.sleep(args.step_seconds)
    step += 1
    path = checkpoints / f"step-{step:04d}.ckpt"
    path.with_suffix(".tmp").write_bytes(os.urandom(64 * 1024))
    path.with_suffix(".tmp").rename(path)
    print(f"step {step}/{args.steps}", flush=True)
child.kill()
print("done", flush=True)
