"""What the CeleryExecutor cell measures and checks on a fleet of mapped spot tasks.

The backend's call counters over a window of poll cycles, where each deferred task's trigger
runs (which triggerer process holds it), and each mapped task's jobs and log.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from airflow_spot_provider.emulator import SpotEmulator
from tests.deployment.rest import AirflowApi, Run
from tests.deployment.task_log import (
    attempt_end_problems,
    repeated_provider_lines,
    transition_problems,
)

DESCRIBE = "SageMaker.DescribeTrainingJob"
LIST = "SageMaker.ListTrainingJobs"


@dataclass(frozen=True)
class CallWindow:
    """The backend's Describe/List calls over a window of poll cycles.

    :param seconds: the window's length.
    :param cycles: poll cycles in it (its length over the poll interval).
    :param describes: DescribeTrainingJob calls in each cycle.
    :param lists: ListTrainingJobs calls in each cycle.
    """

    seconds: float
    cycles: float
    describes: tuple[int, ...]
    lists: tuple[int, ...]

    def describes_per_job_per_cycle(self, jobs: int) -> float:
        """DescribeTrainingJob calls per followed job per poll cycle.

        :param jobs: the jobs followed during the window.
        """
        return sum(self.describes) / (jobs * self.cycles)

    def lists_per_triggerer_per_cycle(self, triggerers: int) -> float:
        """ListTrainingJobs calls per triggerer per poll cycle.

        :param triggerers: the live triggerers during the window.
        """
        return sum(self.lists) / (triggerers * self.cycles)


def measure_calls(backend: SpotEmulator, cycles: int, poll_seconds: float) -> CallWindow:
    """Count the backend's Describe/List calls in each of ``cycles`` poll intervals (the
    caller's own calls must not fall in it: the admin API is not counted).

    :param backend: the embedded backend.
    :param cycles: poll intervals to wait.
    :param poll_seconds: the triggers' poll interval.
    """
    samples = [backend.admin.stats()["api_calls"]]
    start = time.monotonic()
    for cycle in range(1, cycles + 1):
        time.sleep(max(0.0, start + cycle * poll_seconds - time.monotonic()))
        samples.append(backend.admin.stats()["api_calls"])
    seconds = time.monotonic() - start

    def deltas(operation: str) -> tuple[int, ...]:
        counts = [sample.get(operation, 0) for sample in samples]
        return tuple(b - a for a, b in itertools.pairwise(counts))

    return CallWindow(seconds, seconds / poll_seconds, deltas(DESCRIBE), deltas(LIST))


def triggerer_of(ti: dict[str, Any]) -> int | None:
    """The id of the triggerer job running a task instance's trigger, or None.

    :param ti: a task instance as the REST API returns it.
    """
    triggerer: int | None = (ti.get("trigger") or {}).get("triggerer_id")
    return triggerer


def triggers_per_triggerer(instances: list[dict[str, Any]]) -> Counter[int | None]:
    """How many of these deferred task instances each triggerer job runs (None: unassigned).

    :param instances: task instances as the REST API returns them.
    """
    return Counter(triggerer_of(ti) for ti in instances if ti["state"] == "deferred")


def alive_triggerers(api: AirflowApi) -> set[int]:
    """The ids of the triggerer jobs whose heartbeat is recent (``GET /api/v2/jobs``).

    :param api: the deployment's REST API.
    """
    params = {"job_type": "TriggererJob", "is_alive": "true", "limit": 100}
    jobs = api.get("/api/v2/jobs", params)["jobs"]
    return {int(job["id"]) for job in jobs}


def described(backend: SpotEmulator, base: str) -> dict[str, dict[str, Any]]:
    """Every job whose name contains ``base`` (all pages), described, by name.

    :param backend: the embedded backend.
    :param base: the run's base job name.
    """
    sm = backend.boto3_client("sagemaker")
    names: list[str] = []
    for page in sm.get_paginator("list_training_jobs").paginate(NameContains=base):
        names += [s["TrainingJobName"] for s in page["TrainingJobSummaries"]]
    return {name: sm.describe_training_job(TrainingJobName=name) for name in names}


def jobs_of_task(jobs: dict[str, dict[str, Any]], job_name: str) -> list[dict[str, Any]]:
    """The chain of one mapped task (its attempts ``<job_name>-<hash>-a<n>``), oldest first.

    :param jobs: described jobs by name.
    :param job_name: the task's base job name.
    """
    mine = [j for name, j in jobs.items() if name.startswith(f"{job_name}-")]
    return sorted(mine, key=lambda j: j["CreationTime"])


def task_log_problems(
    api: AirflowApi, run: Run, ti: dict[str, Any], chain: list[dict[str, Any]]
) -> list[str]:
    """What is wrong with one mapped task's log: a transition or an attempt end missing or
    logged twice, or any line of the provider repeated.

    :param api: the deployment's REST API.
    :param run: the run.
    :param ti: the task instance.
    :param chain: its jobs, oldest first.
    """
    entries = api.log(run, int(ti["try_number"]), str(ti["task_id"]), int(ti["map_index"]))
    names = [j["TrainingJobName"] for j in chain]
    problems = transition_problems(entries, chain) + attempt_end_problems(entries, names)
    problems += repeated_provider_lines(entries)
    return [f"map index {ti['map_index']}: {problem}" for problem in problems]
