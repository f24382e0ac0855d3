"""``spot-verify-resume`` on three trainers: the example trainer passes, a trainer that never
restores fails, a trainer that checkpoints only at its end fails. Each verification starts its
own embedded backend and runs the trainer for real (a few seconds per run)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.operators.verify_resume import (
    ResumeVerificationInconclusiveError,
    VerifyResumeOperator,
)
from airflow_spot_provider.verify import TrainerSpec, VerifyOptions, VerifyReport, verify_resume
from airflow_spot_provider.verify.cli import main
from airflow_spot_provider.verify.plan import ReferenceTiming, RunKind, make_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "dags" / "training"
TRAINERS = Path(__file__).parent / "trainers"
# About two seconds of training per run; a checkpoint every half second.
EXAMPLE_HPS = {"total_steps": 40, "step_sleep": 0.05, "checkpoint_every": 10}
SMALL_HPS = {"total_steps": 40, "step_sleep": 0.05}
OPTIONS = VerifyOptions(runs=4, seed=7, notice_seconds=1.0, timeout_seconds=120)


def _verify(source_dir: Path, entry_point: str, hps: dict[str, Any]) -> VerifyReport:
    spec = TrainerSpec(source_dir=source_dir, entry_point=entry_point, hyperparameters=hps)
    report = verify_resume(spec, OPTIONS)
    print(report.text())  # shown by pytest when an assertion fails
    return report


def test_example_trainer_resumes() -> None:
    report = _verify(EXAMPLE_DIR, "train.py", EXAMPLE_HPS)

    assert report.verdict.passed, report.verdict.problems
    assert report.exit_status == 0
    assert report.verdict.resumes is True
    assert report.verdict.within_interval is True
    assert report.verdict.sigterm == "yes"
    assert report.verdict.line().startswith(
        "resumes: yes; lost per interruption: <= 1 checkpoint interval ("
    )
    assert report.verdict.line().endswith("; SIGTERM checkpoint: yes -> PASS")
    assert [run.plan.kind for run in report.runs] == [
        RunKind.RANDOM,
        RunKind.CHECKPOINT_WRITE,
        RunKind.TWICE,
        RunKind.AFTER_START,
    ]
    for run in report.runs:
        assert run.completed and run.model is not None and run.model.bit_identical
        assert len(run.interruptions) == len(run.plan.interruptions)
        assert all(i.restored is not False and not i.from_scratch for i in run.interruptions)
    twice = report.runs[2]
    assert [i.attempt for i in twice.interruptions] == [1, 2]
    # Work done before a mid-run interruption was there to restore, and was restored.
    random_run = report.runs[0].interruptions[0]
    assert random_run.checkpoints_at_restart >= 1 and random_run.restored is True
    assert any(
        line.startswith("resumed from checkpoint step=") for line in report.runs[0].log_evidence
    )
    assert report.reference.checkpoint_bytes > 0 and report.reference.objects == 2
    assert report.sigterm_checkpoint_seconds is not None
    assert report.sigterm_checkpoint_seconds < OPTIONS.notice_seconds + OPTIONS.lag


def test_trainer_that_never_restores_fails() -> None:
    report = _verify(TRAINERS, "never_restores.py", {**SMALL_HPS, "checkpoint_every": 10})

    assert not report.verdict.passed and report.exit_status == 1
    assert report.verdict.resumes is False
    assert report.verdict.line().startswith("resumes: no; lost per interruption: everything")
    items = [i for run in report.runs for i in run.interruptions]
    # Checkpoints were there at the restart, and the restarted trainer rewrote early ones.
    assert any(i.restored is False and i.checkpoints_at_restart >= 1 for i in items)
    assert all(i.restored is not True for i in items)
    # It does save on SIGTERM; and the models still match (it redid all the work).
    assert report.verdict.sigterm == "yes"
    assert all(run.model is not None and run.model.bit_identical for run in report.runs)


def test_trainer_that_checkpoints_only_at_the_end_fails() -> None:
    report = _verify(TRAINERS, "checkpoints_at_end.py", SMALL_HPS)

    assert not report.verdict.passed and report.exit_status == 1
    assert report.verdict.resumes is False
    assert report.verdict.sigterm == "no"
    # One checkpoint write, at the end: the interval is the whole run.
    assert len(report.reference.checkpoint_moments) == 1
    mid_run = report.runs[0].interruptions[0]
    assert mid_run.checkpoints_at_restart == 0
    assert mid_run.from_scratch and mid_run.resumed_from_seconds == 0.0
    assert mid_run.lost_seconds == pytest.approx(mid_run.progress_seconds)
    assert any("started from scratch" in p for p in report.verdict.problems)


def test_cli_json_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "--source-dir",
            str(TRAINERS),
            "--entry-point",
            "checkpoints_at_end.py",
            "--hyperparameters",
            json.dumps({"total_steps": 30, "step_sleep": 0.05}),
            "--runs",
            "1",
            "--notice-seconds",
            "0.5",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 1 == out["exit_status"]
    assert out["verdict"]["passed"] is False and out["verdict"]["resumes"] is False
    assert set(out) == {
        "warnings",
        "verdict",
        "reference",
        "sigterm_checkpoint_seconds",
        "runs",
        "seed",
        "seconds",
        "exit_status",
    }
    (run,) = out["runs"]
    assert run["kind"] == "random" and run["completed"] is True
    assert run["interruptions"][0]["from_scratch"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--source-dir: required in script mode"),
        (
            ["--source-dir", "/nonexistent-dir"],
            "--source-dir='/nonexistent-dir': must be an existing",
        ),
        (
            ["--source-dir", str(TRAINERS), "--entry-point", "missing.py"],
            "--entry-point='missing.py'",
        ),
        (
            ["--source-dir", str(TRAINERS), "--entry-point", "../x.py"],
            "--entry-point='../x.py': a .py path inside",
        ),
        (["--hyperparameters", "[1]"], "--hyperparameters=[1]: must be a JSON object"),
        (["--hyperparameters", "{nope"], "--hyperparameters='{nope': not JSON"),
        (["--data", "train"], "--data='train': must be CHANNEL=DIR"),
        (["--rtol", "-1"], "tolerance rtol=-1.0: must be a finite number >= 0"),
        (["--runs", "0"], "--runs=0: must be an integer from 1 to 20"),
        (["--notice-seconds", "300"], "--notice-seconds=300.0: must be a number > 0 and <= 120"),
        (["--request", "/nonexistent.json"], "--request='@/nonexistent.json': cannot read"),
    ],
)
def test_cli_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    python_names = r"(?<![-\w])(source_dir|entry_point|runs|notice_seconds)="
    assert not re.search(python_names, err)


HUGE = "x" * 100_000  # past any path limit, and far too long to print
SCRIPT = ["--source-dir", str(TRAINERS), "--entry-point", "checkpoints_at_end.py"]


@pytest.mark.parametrize(
    ("argv", "named", "rule"),
    [
        (["--source-dir", "/" + HUGE], "--source-dir='/xxx", "must be an existing directory"),
        (
            ["--source-dir", str(TRAINERS), "--entry-point", HUGE + ".py"],
            "--entry-point='xxx",
            f"not found in {TRAINERS}",
        ),
        (["--data", HUGE], "--data='xxx", "must be CHANNEL=DIR"),
        ([*SCRIPT, "--data", HUGE + "=/tmp"], "--data='xxx", "a channel name is 1-64 letters"),
        ([*SCRIPT, "--data", "ab=/" + HUGE], "--data[ab]='/xxx", "must be an existing directory"),
        (["--hyperparameters", json.dumps([1] * 50_000)], "--hyperparameters=[1, 1", "JSON object"),
        (["--hyperparameters", "@/" + HUGE], "--hyperparameters='@/xxx", "cannot read the file"),
        ([*SCRIPT, "--request", "/" + HUGE], "--request='@/xxx", "cannot read the file"),
    ],
)
def test_cli_usage_errors_show_a_huge_value_clipped(
    argv: list[str], named: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One short line naming the option, the start of the value and the rule; no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spot-verify-resume: error: {named}") and rule in err, err[:500]
    assert "..." in err and len(err) < 300 and err.count("\n") == 1, err[:500]


def test_cli_usage_error_on_a_binary_file_and_a_hostile_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "hps.json"
    binary.write_bytes(b'{"a": "\xff\xfe"}')
    assert main(["--hyperparameters", f"@{binary}"]) == 2
    err = capsys.readouterr().err
    assert "the file is not UTF-8 text (invalid start byte at byte 7)" in err, err
    # Terminal escapes and newlines in a value are shown escaped, on the one line.
    assert main(["--source-dir", str(TRAINERS), "--entry-point", "a\x1b[2J\nb.py"]) == 2
    err = capsys.readouterr().err
    assert "--entry-point='a\\x1b[2J\\nb.py': not found" in err and err.count("\n") == 1


def test_cli_help_says_which_options_script_mode_requires(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--entry-point ENTRY_POINT the script, relative to --source-dir, e.g. train.py" in text
    assert text.count("(required in script mode)") == 2
    assert "(train.py)" not in text  # read as a default, which it is not


def test_trainer_written_from_the_readme_resumes() -> None:
    """``trainers/readme_trainer.py`` follows only the README's "Writing a trainer that passes":
    one ``.npz`` replaced in place, another model, another log wording."""
    spec = TrainerSpec(
        source_dir=TRAINERS,
        entry_point="readme_trainer.py",
        hyperparameters={"steps": 40, "save_every": 10, "sleep": 0.05},
    )
    report = verify_resume(spec, VerifyOptions(runs=2, seed=3, notice_seconds=1.0))
    print(report.text())
    assert report.verdict.passed, report.verdict.problems
    assert all(run.model is not None and run.model.bit_identical for run in report.runs)


def test_a_run_that_ends_before_its_interruption_is_inconclusive_not_a_failure() -> None:
    """The trainer is slow in the reference run only (a busy machine): every interrupted run ends
    before its planned moment, then once more before a moment twice as early."""
    gate = VerifyResumeOperator(
        task_id="gate",
        source_dir=TRAINERS,
        entry_point="fast_after_reference.py",
        # About 6 s of reference: the run of about 0.1 s is planned past 3 s, then past 1.5 s.
        hyperparameters={"total_steps": 40, "step_sleep": 0.15},
        runs=1,
        seed=5,
        notice_seconds=0.5,
        timeout_seconds=120,
    )
    with pytest.raises(ResumeVerificationInconclusiveError) as caught:
        gate.execute({})  # type: ignore[arg-type]  # the gate reads nothing of its context
    message = str(caught.value)
    assert message.startswith("inconclusive: the job ended before the planned interruption; ")
    assert "does not resume" not in message
    assert "-> INCONCLUSIVE" in message
    report = caught.value.report
    assert report["exit_status"] == 3
    verdict = report["verdict"]
    assert (verdict["outcome"], verdict["passed"], verdict["problems"]) == (
        "INCONCLUSIVE",
        False,
        [],
    )
    (line,) = verdict["inconclusive"]
    assert line.startswith("run 1 (random): inconclusive: the job ended before the planned")
    (run,) = report["runs"]
    assert run["inconclusive"] is True and run["interruptions"] == []
    assert run["job_name"].endswith("-run-1-again")  # made again, interrupted earlier
    first_plan = make_plan(ReferenceTiming(report["reference"]["training_seconds"]), 1, 5)[0]
    assert run["planned"][0]["at_training_second"] < first_plan.interruptions[0].at_training_second
