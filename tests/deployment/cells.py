"""What every deployment cell checks: the run's end, the backend's jobs and calls, the task log.

A cell is one DAG run of its own, with job names of its own (``conf["name"]``), so that cells
can share one deployment and one backend and still assert on exactly their jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.config import Config

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.lifecycle import SecondaryStatus, TrainingJobStatus
from tests.deployment.deployment import AirflowDeployment, wait_for
from tests.deployment.rest import AirflowApi, Run
from tests.deployment.task_log import attempt_end_problems, transition_problems
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import jobs_named

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STOPPED_WITHIN_SECONDS = 20
# A job that trains until the cell stops it (or for ten minutes).
LONG_JOB = synthetic_config(train_seconds=600, step_seconds=1.0)
_RESUMED = re.compile(r"resumed from checkpoint at step (\d+)")


# Airflow 3.3's scheduler, when a deferral ends before the executor has reported the exit of the
# task's previous process, fails the task with this line (README "Real deployment").
AIRFLOW_RACE = "finished with state success, but the task instance's state attribute is queued"


def assert_no_problems(problems: list[str]) -> None:
    """Fail with every problem found, one a line (pytest's diff would show only the first).

    :param problems: what a check found wrong.
    """
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@dataclass
class Cell:
    """One cell's DAG run and what it needs to check it.

    :param name: the base of its job names.
    :param run: its DAG run.
    :param task_id: the task that follows the chain (and logs its transitions).
    :param notes: what happened during the run (for failure messages).
    """

    name: str
    run: Run
    task_id: str = "train"
    notes: list[str] = field(default_factory=list)


class Checks:
    """The checks every cell makes, on one deployment and one backend.

    :param api: the deployment's REST API.
    :param backend: the embedded backend.
    :param deployment: the deployment, whose scheduler's errors explain a failed check.
    """

    def __init__(
        self, api: AirflowApi, backend: SpotEmulator, deployment: AirflowDeployment | None = None
    ) -> None:
        self.api = api
        self.backend = backend
        self.deployment = deployment
        # The cells throttle the backend: the test's own calls must ride the bursts out.
        patient = Config(retries={"mode": "standard", "max_attempts": 30})
        self.sm = backend.boto3_client("sagemaker", config=patient)
        self.logs = backend.boto3_client("logs", config=patient)

    def jobs(self, cell: Cell) -> list[dict[str, Any]]:
        """The cell's jobs, described, oldest first.

        :param cell: the cell.
        """
        return jobs_named(self.sm, cell.name)

    def created(self, cell: Cell) -> list[str]:
        """The jobs the backend created for the cell, one entry per successful CreateTrainingJob.

        :param cell: the cell.
        """
        return [
            str(e["job"])
            for e in self.backend.admin.events(kind="created")
            if cell.name in str(e.get("job"))
        ]

    def resumed_step(self, job_name: str) -> int | None:
        """The checkpoint step the job's training resumed from (its own log), or None.

        :param job_name: the job.
        """
        streams = self.logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
        )["logStreams"]
        steps = []
        for stream in streams:
            found = self.logs.get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True
            )["events"]
            steps += [int(m.group(1)) for e in found if (m := _RESUMED.search(e["message"]))]
        return max(steps) if steps else None

    def chain(self, cell: Cell, attempts: int) -> list[dict[str, Any]]:
        """Assert the cell made exactly ``attempts`` jobs, each created once, none left running.

        :param cell: the cell.
        :param attempts: the number of jobs the chain must have.
        """
        # A job whose task ended may still be on its way to Stopped: give it a few seconds.
        jobs = wait_for(
            lambda: (
                (js := self.jobs(cell))
                and all(TrainingJobStatus(j["TrainingJobStatus"]).is_terminal for j in js)
                and js
            ),
            30,
            f"every job of {cell.name} to end",
        )
        names = [j["TrainingJobName"] for j in jobs]
        assert len(jobs) == attempts, f"{names}: expected {attempts} job(s)"
        assert sorted(self.created(cell)) == sorted(names), "a job created twice or not by us"
        return list(jobs)

    def log_problems(self, cell: Cell, jobs: list[dict[str, Any]], try_number: int) -> list[str]:
        """Transition and attempt-end problems of a try's log, as the REST API returns it.

        :param cell: the cell.
        :param jobs: the chain's jobs (final descriptions), oldest first.
        :param try_number: the try whose log is read.
        """
        entries = self.api.log(cell.run, try_number, cell.task_id)
        names = [j["TrainingJobName"] for j in jobs]
        problems = transition_problems(entries, jobs) + attempt_end_problems(entries, names)
        if problems and self.deployment is not None:
            # What Airflow itself said about the task (a scheduler race fails a task too).
            ti_id = str(self.api.task_instance(cell.run, cell.task_id)["id"])
            problems += [f"scheduler: {line}" for line in self.deployment.errors_about(ti_id)]
        return problems

    def airflow_race(self, cell: Cell) -> list[str]:
        """The scheduler's lines saying Airflow's own race failed the cell's task, if it did.

        :param cell: the cell.
        """
        if self.deployment is None:
            return []
        ti_id = str(self.api.task_instance(cell.run, cell.task_id)["id"])
        return [line for line in self.deployment.errors_about(ti_id) if AIRFLOW_RACE in line]

    def job_in(self, cell: Cell, status: SecondaryStatus) -> dict[str, Any]:
        """Wait until the cell's latest job is in ``status`` and return its description.

        :param cell: the cell.
        :param status: the SecondaryStatus awaited.
        """

        def reached() -> dict[str, Any] | None:
            jobs = self.jobs(cell)
            return jobs[-1] if jobs and jobs[-1]["SecondaryStatus"] == status else None

        job: dict[str, Any] = wait_for(reached, 180, f"a job of {cell.name} in {status}", every=0.2)
        return job

    def assert_stopped_soon(self, cell: Cell) -> None:
        """Assert the cell's job is stopped within seconds of its task being killed.

        :param cell: the cell (one job).
        """
        stopping = {TrainingJobStatus.STOPPING, TrainingJobStatus.STOPPED}
        try:
            wait_for(
                lambda: self.jobs(cell)[-1]["TrainingJobStatus"] in stopping,
                STOPPED_WITHIN_SECONDS,
                "the job to be stopped",
            )
        except TimeoutError:
            job = self.jobs(cell)[-1]
            pytest.fail(
                f"{job['TrainingJobName']} still {job['TrainingJobStatus']}/"
                f"{job['SecondaryStatus']} {STOPPED_WITHIN_SECONDS} s after its task was "
                "marked failed: the job is left billing"
            )
        (job,) = self.chain(cell, attempts=1)
        assert job["SecondaryStatus"] == SecondaryStatus.STOPPED
