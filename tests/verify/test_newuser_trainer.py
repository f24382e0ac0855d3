"""A new user's trainer (written from the README only) passes spot-verify-resume."""

from pathlib import Path

from airflow_spot_provider.verify import TrainerSpec, VerifyOptions, verify_resume

TRAINER_DIR = Path(__file__).parent / "trainers" / "newuser"


def test_newuser_trainer_resumes():
    report = verify_resume(
        TrainerSpec(
            source_dir=str(TRAINER_DIR),
            entry_point="train.py",
            hyperparameters={"total_steps": 60, "step_sleep": 0.05, "checkpoint_every": 10},
        ),
        VerifyOptions(runs=2, seed=1),
    )
    assert report.exit_status == 0, report.text()
    assert report.verdict.passed, report.text()
    assert report.text().rstrip().endswith("-> PASS"), report.text()
    assert len(report.runs) == 2
