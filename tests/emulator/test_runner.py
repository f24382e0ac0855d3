"""The training runner: real script-mode processes and synthetic tasks."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_spot_provider.emulator.checkpoints import CheckpointSync
from airflow_spot_provider.emulator.container import (
    NAMESPACES_ENV,
    forget_probe,
    namespaces_unavailable,
)
from airflow_spot_provider.emulator.contract import command_args
from airflow_spot_provider.emulator.images import UnknownImageError
from airflow_spot_provider.emulator.runner import TrainingRun, start_run
from airflow_spot_provider.emulator.sandbox import Sandbox

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SYNTHETIC = "spot-emulator/synthetic:latest"
TRAINER_DIR = Path(__file__).resolve().parents[2] / "dags" / "training"
# Bound of a wait for what takes well under a second: load alone cannot use it up.
SLACK_SECONDS = 20.0

REPORT_SCRIPT = """
    import json, os, sys
    from helper import GREETING
    print(GREETING)
    print("a warning", file=sys.stderr)
    report = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "report.json"), "w") as handle:
        json.dump(report, handle)
    print("done")
"""
FAIL_SCRIPT = """
    import sys
    for i in range(200):
        print(f"noise line {i}", file=sys.stderr)
    print("ValueError: the real reason", file=sys.stderr)
    sys.exit(3)
"""
TERM_SCRIPT = """
    import os, signal, subprocess, sys, time
    marker = os.environ["SM_HP_MARKER"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    def on_term(signum, frame):
        print("got SIGTERM", flush=True)
        sys.exit(143)
    graceful = os.environ["SM_HP_MODE"] == "graceful"
    signal.signal(signal.SIGTERM, on_term if graceful else signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture(params=["namespaces", "fallback"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with jobs in their own namespaces, then without (the fallback)."""
    forget_probe()
    if request.param == "fallback":
        monkeypatch.setenv(NAMESPACES_ENV, "off")
    else:
        monkeypatch.delenv(NAMESPACES_ENV, raising=False)
        reason = namespaces_unavailable()
        if reason is not None:
            pytest.skip(f"namespaces are not available here: {reason}")
    yield request.param
    forget_probe()


def _marker() -> str:
    return f"spot-emulator-test-{uuid.uuid4().hex}"


def _pids_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if marker.encode() in cmdline and "\nState:\tZ" not in status:
                found.append(int(entry.name))
    return found


def _assert_gone(marker: str) -> None:
    """No process of the marker is left, within a slack that load cannot use up."""
    deadline = time.monotonic() + SLACK_SECONDS
    while _pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pids_with(marker) == []


@pytest.fixture(scope="module")
def s3(standalone_s3: S3Client) -> S3Client:
    """S3 without the emulator: these modules test its parts on their own."""
    standalone_s3.create_bucket(Bucket="runner")
    return standalone_s3


def _source(tmp_path: Path, script: str) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent(script))
    (source / "helper.py").write_text('GREETING = "hello from the helper"\n')
    return source


def _script_request(submit: str, **hps: str) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {"TrainingImage": SKLEARN, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(submit),
            **hps,
        },
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t"}},
            }
        ],
        "Environment": {"MY_SETTING": "on", "AWS_SECRET_ACCESS_KEY": "leak", "AWS_REGION": "r"},
    }


class Lines:
    """A log sink that remembers lines and wakes waiters when enough lines start with a prefix."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._waiters: list[tuple[str, int, asyncio.Event]] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        for prefix, count, event in self._waiters:
            if self.count(prefix) >= count:
                event.set()

    def count(self, prefix: str) -> int:
        return sum(line.startswith(prefix) for line in self.lines)

    async def wait_for(self, prefix: str, count: int = 1, timeout: float = 10.0) -> None:
        if self.count(prefix) >= count:
            return
        event = asyncio.Event()
        self._waiters.append((prefix, count, event))
        await asyncio.wait_for(event.wait(), timeout)


async def _start(box: Sandbox, request: dict[str, Any], s3: S3Client, sink: Lines) -> TrainingRun:
    return await start_run(sandbox=box, request=request, job_name="job-1", s3=s3, log_sink=sink)


def test_script_mode_runs_under_the_container_contract(
    s3: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolation: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "parent-key")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", "secret")
    source = _source(tmp_path, REPORT_SCRIPT)
    request = _script_request(str(source), epochs="3", lr="0.5", name='"abc"')
    request["CheckpointConfig"] = {"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/ckpt"}
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        run = await _start(box, request, s3, sink)
        return await run.wait()

    assert asyncio.run(scenario()) == 0
    assert sink.lines[0] == "hello from the helper"
    assert set(sink.lines) == {"hello from the helper", "a warning", "done"}
    report = json.loads((box.model_dir / "report.json").read_text())
    assert report["argv"] == ["--epochs", "3", "--lr", "0.5", "--name", "abc"]
    # In namespaces the job sees SageMaker's paths; without, its sandbox's.
    base = "/opt/ml" if isolation == "namespaces" else str(box.root)
    assert report["cwd"] == f"{base}/code"
    env = report["env"]
    assert env["SM_MODEL_DIR"] == f"{base}/model"
    assert env["SM_OUTPUT_DATA_DIR"] == f"{base}/output/data"
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == f"{base}/output/intermediate"
    assert env["SM_INPUT_CONFIG_DIR"] == f"{base}/input/config"
    assert env["SM_CHANNEL_TRAIN"] == f"{base}/input/data/train"
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_HPS"] == '{"epochs":3,"lr":0.5,"name":"abc"}'  # the toolkit's compact JSON
    assert env["SM_HP_EPOCHS"] == "3"
    assert env["SM_HP_NAME"] == "abc"
    assert "SM_HP_SAGEMAKER_PROGRAM" not in env
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_CURRENT_INSTANCE_TYPE"] == "ml.m5.large"
    assert env["SM_MODULE_NAME"] == "train"
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert env["SM_MODULE_DIR"] == str(source)  # sagemaker_submit_directory, as the toolkit
    assert env["SM_LOG_LEVEL"] == "20"
    assert env["SM_IS_HETERO"] == "false"
    assert json.loads(env["SM_TRAINING_ENV"])["channel_input_dirs"] == {
        "train": f"{base}/input/data/train"
    }
    assert env["TRAINING_JOB_NAME"] == "job-1"
    assert env["HOME"] == base
    assert env["MY_SETTING"] == "on"
    assert env["AWS_REGION"] == "r"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_AWS_DEFAULT"} & set(env)
    if isolation == "namespaces":
        assert env["SM_CHECKPOINT_DIR"] == "/opt/ml/ckpt"
        assert "SAGEMAKER_BASE_DIR" not in env
    else:
        assert env["SM_CHECKPOINT_DIR"] == str(box.root / "ckpt")
        assert env["SAGEMAKER_BASE_DIR"] == str(box.root)
    # The job got a copy: the source is untouched.
    assert sorted(p.name for p in source.iterdir()) == ["helper.py", "train.py"]


def test_script_mode_from_an_s3_sourcedir_tarball(s3: S3Client, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(_source(tmp_path, REPORT_SCRIPT), arcname=".")
    s3.put_object(Bucket="runner", Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    request = _script_request("s3://runner/code/sourcedir.tar.gz")
    request["HyperParameters"]["sagemaker_program"] = "train.py"  # plain, not JSON-encoded
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        return await (await _start(box, request, s3, sink)).wait()

    assert asyncio.run(scenario()) == 0
    assert "done" in sink.lines
    assert (box.code_dir / "helper.py").is_file()


def test_failing_script_reports_exit_code_and_stderr_tail(s3: S3Client, tmp_path: Path) -> None:
    request = _script_request(str(_source(tmp_path, FAIL_SCRIPT)))
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> tuple[int, TrainingRun]:
        run = await _start(box, request, s3, sink)
        return await run.wait(), run

    code, run = asyncio.run(scenario())
    assert code == 3
    tail = run.stderr_tail()
    assert tail.endswith("noise line 199\nValueError: the real reason")
    assert len(tail) == 512
    assert run.stderr_tail(22) == "Error: the real reason"
    assert len(sink.lines) == 201


@pytest.mark.parametrize(
    ("submit", "program", "reason"),
    [
        ("/no/such/source", "train.py", "not a directory"),
        ("SRC", "missing.py", "not found"),
        ("SRC", "../train.py", "must be a path inside"),
        ("SRC", "run.sh", "only Python entry points"),
        ("s3://runner/none.tar.gz", "train.py", "Not Found"),
    ],
)
def test_unstartable_script_ends_at_once_with_exit_1(
    s3: S3Client, tmp_path: Path, submit: str, program: str, reason: str
) -> None:
    source = _source(tmp_path, REPORT_SCRIPT)
    request = _script_request(submit.replace("SRC", str(source)))
    request["HyperParameters"]["sagemaker_program"] = program
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> tuple[int, TrainingRun]:
        run = await _start(box, request, s3, sink)
        await run.terminate(1.0)  # nothing runs: a no-op
        return await run.wait(), run

    code, run = asyncio.run(scenario())
    assert code == 1
    assert reason in run.stderr_tail()
    assert sink.lines == [run.stderr_tail(10_000)]


def test_unknown_image_raises(s3: S3Client, tmp_path: Path) -> None:
    request = {"AlgorithmSpecification": {"TrainingImage": "python:3.11"}}
    box = Sandbox.create(tmp_path, "job-1", request)
    with pytest.raises(UnknownImageError):
        asyncio.run(_start(box, request, s3, Lines()))


@pytest.mark.parametrize(
    ("mode", "notice", "expected"),
    # A long notice for the graceful run: ending well before it shows no SIGKILL was waited for.
    [("graceful", 20.0, 143), ("stubborn", 0.5, 137)],
)
def test_terminate_sigterm_then_sigkill_of_the_whole_group(
    s3: S3Client, tmp_path: Path, mode: str, notice: float, expected: int, isolation: str
) -> None:
    marker = _marker()
    request = _script_request(str(_source(tmp_path, TERM_SCRIPT)), mode=mode, marker=marker)
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> tuple[int, float]:
        run = await _start(box, request, s3, sink)
        await sink.wait_for("ready")
        started = time.monotonic()
        await asyncio.gather(run.terminate(notice), run.terminate(notice))  # idempotent
        elapsed = time.monotonic() - started
        await run.terminate(notice)  # after the end: a no-op
        return await run.wait(), elapsed

    code, elapsed = asyncio.run(scenario())
    assert code == expected
    if mode == "graceful":
        assert "got SIGTERM" in sink.lines
        assert elapsed < notice / 2
    else:
        assert notice <= elapsed < notice + SLACK_SECONDS
    _assert_gone(marker)


def test_children_left_behind_do_not_hold_the_run(
    s3: S3Client, tmp_path: Path, isolation: str
) -> None:
    script = """
        import os, subprocess, sys
        sleep = [sys.executable, "-c", "import time; time.sleep(60)", os.environ["SM_HP_MARKER"]]
        child = subprocess.Popen(sleep)
        print("main done", flush=True)
    """
    marker = _marker()
    request = _script_request(str(_source(tmp_path, script)), marker=marker)
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        return await (await _start(box, request, s3, sink)).wait()

    started = time.monotonic()
    assert asyncio.run(scenario()) == 0
    assert time.monotonic() - started < 60 / 2  # the child would hold it 60 s
    assert sink.lines == ["main done"]
    _assert_gone(marker)


def test_missing_interpreter_ends_at_once(s3: S3Client, tmp_path: Path) -> None:
    request = _script_request(str(_source(tmp_path, REPORT_SCRIPT)))
    box = Sandbox.create(tmp_path / "data", "job-1", request)

    async def scenario() -> tuple[int, TrainingRun]:
        run = await start_run(
            sandbox=box,
            request=request,
            job_name="job-1",
            s3=s3,
            log_sink=_discard,
            python=str(tmp_path / "no-python"),
        )
        return await run.wait(), run

    code, run = asyncio.run(scenario())
    assert code == 127  # what a shell or a container runtime reports for a missing program
    assert "no-python" in run.stderr_tail()


def test_a_very_long_line_is_cut_not_fatal(s3: S3Client, tmp_path: Path) -> None:
    script = "import sys\nsys.stdout.write('x' * 200_000 + '\\nend\\n')\n"
    request = _script_request(str(_source(tmp_path, script)))
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        return await (await _start(box, request, s3, sink)).wait()

    assert asyncio.run(scenario()) == 0
    assert "".join(sink.lines[:-1]) == "x" * 200_000
    assert all(len(line) <= 64 * 1024 for line in sink.lines)
    assert sink.lines[-1] == "end"


def test_command_args_follow_the_training_toolkit() -> None:
    hps = {"bb": "2", "a": '"x"', "c": '{"k": 1, "j": "v"}', "d": "true", "sagemaker_region": "r"}
    # sagemaker_training.mapping.to_cmd_args: one dash for one letter, objects as k=v, str().
    assert command_args({"HyperParameters": hps}) == [
        "-a",
        "x",
        "--bb",
        "2",
        "-c",
        "j=v,k=1",
        "-d",
        "True",
    ]


def _discard(line: str) -> None:
    del line


def _synthetic(**hps: str) -> dict[str, Any]:
    return {"AlgorithmSpecification": {"TrainingImage": SYNTHETIC}, "HyperParameters": hps}


def test_synthetic_trains_checkpoints_and_resumes(s3: S3Client, tmp_path: Path) -> None:
    request = _synthetic(train_seconds="10", step_seconds="0.1")
    box = Sandbox.create(tmp_path, "job-1", request)
    (box.checkpoint_dir / "step.json").write_text('{"step": 98, "steps": 100}')
    sink = Lines()

    async def scenario() -> int:
        return await (await _start(box, request, s3, sink)).wait()

    started = time.monotonic()
    assert asyncio.run(scenario()) == 0
    # The two steps left take 0.2 s; the whole run from step 0 would take 10 s.
    assert 0.2 <= time.monotonic() - started < 10 / 2
    assert sink.lines == ["resumed from checkpoint at step 98", "step 99/100", "step 100/100"]
    assert json.loads((box.checkpoint_dir / "step.json").read_text()) == {
        "step": 100,
        "steps": 100,
    }
    assert json.loads((box.model_dir / "model.json").read_text()) == {"job": "job-1", "steps": 100}


def test_synthetic_terminate_keeps_the_last_step(s3: S3Client, tmp_path: Path) -> None:
    request = _synthetic(train_seconds="10", step_seconds="0.05")
    box = Sandbox.create(tmp_path, "job-1", request)
    sink = Lines()

    async def scenario() -> tuple[int, TrainingRun]:
        run = await _start(box, request, s3, sink)
        await sink.wait_for("step 3/")
        await asyncio.gather(run.terminate(2.0), run.terminate(2.0))
        return await run.wait(), run

    code, run = asyncio.run(scenario())
    assert code == 143
    assert json.loads((box.checkpoint_dir / "step.json").read_text())["step"] == 3
    assert not (box.model_dir / "model.json").exists()
    assert "SIGTERM" in run.stderr_tail()


@pytest.mark.parametrize(
    ("hps", "reason"),
    [
        ({"train_seconds": "1", "step_seconds": "0.05", "fail_at_step": "2"}, "at step 2"),
        ({"train_seconds": "abc"}, "invalid hyperparameter"),
        ({"step_seconds": "0"}, "step_seconds > 0"),
    ],
)
def test_synthetic_failures(s3: S3Client, tmp_path: Path, hps: dict[str, str], reason: str) -> None:
    request = _synthetic(**hps)
    box = Sandbox.create(tmp_path, "job-1", request)

    async def scenario() -> tuple[int, TrainingRun]:
        run = await _start(box, request, s3, Lines())
        return await run.wait(), run

    code, run = asyncio.run(scenario())
    assert code == 1
    assert reason in run.stderr_tail()


def test_a_thousand_synthetic_runs_need_no_thread(s3: S3Client, tmp_path: Path) -> None:
    request = _synthetic(train_seconds="0.3", step_seconds="0.1")
    boxes = [Sandbox.create(tmp_path, f"job-{i}", request) for i in range(1000)]
    threads_before = threading.active_count()

    async def scenario() -> tuple[list[int], int]:
        runs = [
            await start_run(sandbox=b, request=request, job_name="j", s3=s3, log_sink=_discard)
            for b in boxes
        ]
        await asyncio.sleep(0.15)
        during = threading.active_count()
        return list(await asyncio.gather(*(r.wait() for r in runs))), during

    started = time.monotonic()
    codes, threads_during = asyncio.run(scenario())
    assert codes == [0] * 1000
    assert threads_during == threads_before
    # Concurrent: one after the other they would take 300 s (speed is the benchmarks' job).
    assert time.monotonic() - started < 300 / 5
    assert all((b.model_dir / "model.json").is_file() for b in boxes)


def test_interrupted_trainer_resumes_from_synced_checkpoints_to_the_same_model(
    s3: S3Client, tmp_path: Path
) -> None:
    hps = {"total_steps": "40", "step_sleep": "0.01", "checkpoint_every": "7", "seed": "5"}
    request = _script_request(str(TRAINER_DIR), **hps)
    request["CheckpointConfig"] = {"S3Uri": "s3://runner/trainer-ckpt"}

    async def run_once(box: Sandbox, interrupt_after: int | None) -> int:
        sync = CheckpointSync(s3, request["CheckpointConfig"]["S3Uri"], box.checkpoint_dir)
        await asyncio.to_thread(sync.restore)
        syncing = asyncio.create_task(sync.run(interval=0.05))
        sink = Lines()
        run = await _start(box, request, s3, sink)
        if interrupt_after:
            await sink.wait_for("step=", interrupt_after)
            await run.terminate(5.0)
        code = await run.wait()
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)
        await asyncio.to_thread(sync.sync_once)
        return code

    reference = Sandbox.create(tmp_path / "ref", "job-1", _script_request(str(TRAINER_DIR)))
    box = Sandbox.create(tmp_path / "data", "job-1", request)

    async def scenario() -> list[int]:
        reference_request = dict(request, CheckpointConfig={"S3Uri": "s3://runner/ref-ckpt"})
        ref_run = await _start(reference, reference_request, s3, Lines())
        codes = [await ref_run.wait()]
        for interrupt_after in (9, 12, None):  # step lines seen before the SIGTERM
            codes.append(await run_once(box, interrupt_after))
            if interrupt_after:
                box.reset_for_restart()  # a new instance: only S3 keeps the checkpoints
        return codes

    assert asyncio.run(scenario()) == [0, 143, 143, 0]
    for name in ("model.npy", "metrics.json"):
        assert (box.model_dir / name).read_bytes() == (reference.model_dir / name).read_bytes()
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket="runner", Prefix="trainer-ckpt/")["Contents"]
    ]
    assert len(keys) <= 2  # the trainer prunes, and the deletions reached S3
    assert "trainer-ckpt/ckpt-000000040.json" in keys


ESCAPE_SCRIPT = """
    import os, signal, subprocess, sys, time
    marker = "escaper-" + os.environ["SM_HP_MARKER"]
    sleep = "import time; time.sleep(60)"
    # A child in its own session, and a daemon: double fork, setsid, orphaned.
    subprocess.Popen([sys.executable, "-c", sleep, marker], start_new_session=True)
    daemon = "import os, sys, time\\nif os.fork(): sys.exit(0)\\nos.setsid()\\ntime.sleep(60)"
    subprocess.run([sys.executable, "-c", daemon, marker], check=True)
    if os.environ["SM_HP_MODE"] == "stay":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    print("ready", flush=True)
    go = os.path.join(os.environ["SM_MODEL_DIR"], "go")  # the test saw the children started
    while not os.path.exists(go):
        time.sleep(0.02)
"""


def _escapers_started(marker: str) -> None:
    """Both processes that left the job's session run (as their marker says)."""
    escaper = f"escaper-{marker}"
    deadline = time.monotonic() + SLACK_SECONDS
    while len(_pids_with(escaper)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_pids_with(escaper)) == 2


@pytest.mark.parametrize(("ending", "expected"), [("end", 0), ("killed", 137)])
def test_setsid_children_die_with_their_job(
    s3: S3Client, tmp_path: Path, isolation: str, ending: str, expected: int
) -> None:
    if ending == "killed" and isolation == "fallback":
        pytest.skip("without namespaces a process that left the job's session survives a SIGKILL")
    marker = _marker()
    mode = "end" if ending == "end" else "stay"  # "stay": ignores SIGTERM, runs on
    request = _script_request(str(_source(tmp_path, ESCAPE_SCRIPT)), marker=marker, mode=mode)
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        run = await _start(box, request, s3, sink)
        await sink.wait_for("ready")
        _escapers_started(marker)
        if ending == "end":
            (box.model_dir / "go").touch()  # the main process ends by itself
        else:
            await run.terminate(0.2)  # SIGTERM is ignored: SIGKILL after the notice
        return await run.wait()

    assert asyncio.run(scenario()) == expected
    _assert_gone(marker)


BACKEND_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from airflow_spot_provider.emulator.runner import start_run
from airflow_spot_provider.emulator.sandbox import Sandbox

async def main() -> None:
    request = json.loads(sys.argv[1])
    box = Sandbox.create(Path(sys.argv[2]), "job-1", request)
    run = await start_run(
        sandbox=box, request=request, job_name="job-1", s3=None,
        log_sink=lambda line: print(line, flush=True),
    )
    await run.wait()

asyncio.run(main())
"""


def test_job_processes_die_with_the_backend(tmp_path: Path, isolation: str) -> None:
    marker = _marker()
    request = _script_request(str(_source(tmp_path, ESCAPE_SCRIPT)), marker=marker, mode="stay")
    backend_py = tmp_path / "backend.py"
    backend_py.write_text(BACKEND_SCRIPT)
    env = dict(os.environ)
    if isolation == "fallback":
        env[NAMESPACES_ENV] = "off"
    backend = subprocess.Popen(
        [sys.executable, str(backend_py), json.dumps(request), str(tmp_path / "data")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert backend.stdout is not None
        assert backend.stdout.readline().strip() == "ready"
        _escapers_started(marker)
    finally:
        backend.kill()  # SIGKILL: no clean-up code of the backend runs
        backend.wait()
    _assert_gone(marker)


def test_the_fallback_is_said_once_in_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(NAMESPACES_ENV, "off")
    forget_probe()
    try:
        with caplog.at_level("WARNING"), ThreadPoolExecutor(4) as pool:
            reasons = list(pool.map(lambda _i: namespaces_unavailable(), range(8)))
    finally:
        forget_probe()
    assert reasons == [f"{NAMESPACES_ENV}=off"] * 8
    said = [r.getMessage() for r in caplog.records if "WITHOUT namespaces" in r.getMessage()]
    assert len(said) == 1, said
    assert "SAGEMAKER_BASE_DIR" in said[0]


def test_a_local_path_outside_opt_ml_is_bound_at_its_path(s3: S3Client, tmp_path: Path) -> None:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"needs namespaces, not available here: {reason}")
    script = """
        import os
        os.makedirs("/spot-emulator-ckpt/run", exist_ok=True)
        with open("/spot-emulator-ckpt/run/state.txt", "w") as handle:
            handle.write(os.uname().nodename)
        print(sorted(os.listdir("/opt/ml")))
    """
    request = _script_request(str(_source(tmp_path, script)))
    request["CheckpointConfig"] = {"S3Uri": "s3://b/c", "LocalPath": "/spot-emulator-ckpt/run"}
    box = Sandbox.create(tmp_path / "data", "job-1", request)
    sink = Lines()

    async def scenario() -> int:
        return await (await _start(box, request, s3, sink)).wait()

    assert asyncio.run(scenario()) == 0, sink.lines
    assert (box.checkpoint_dir / "state.txt").read_text() == "algo-1"
    assert not Path("/spot-emulator-ckpt").exists()  # only inside the job's own view
