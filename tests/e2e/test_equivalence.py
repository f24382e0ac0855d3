"""The real operator on the embedded backend takes the simulator's decisions on the same market.

Each case is one job of the simulator's model at a reduced scale (seconds instead of hours) and
a market timeline. The simulator runs the deadline-aware policy on it; its market events are
exported (``simulator.export.backend_scenario``) and replayed by the embedded backend while
``SageMakerSpotTrainingOperator`` runs the same policy in a DAG (``dags/e2e_spot.py``,
``dag.test()``, the worker mode). The decisions (kind, spot or on-demand, the rule that fired),
the attempts and whether the deadline was met must be the same; the times, counted back from
the deadline, agree within a tolerance (the backend's phases take real, noisy time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.simulator.engine import BASE_TIME, ChainResult, run_chain
from airflow_spot_provider.simulator.export import backend_scenario
from airflow_spot_provider.simulator.jobs import JobModel, Price
from airflow_spot_provider.simulator.markets import Availability
from tests.e2e.conftest import BUCKET, synthetic_config
from tests.e2e.dags.e2e_spot import EQUIVALENCE_JOBS, EQUIVALENCE_POLICY, EQUIVALENCE_POLL
from tests.e2e.test_spot_training_dags import run_dag, xcom

pytestmark = pytest.mark.e2e

INSTANCE = "ml.m5.4xlarge"  # no other test takes its capacity away
WORK = 6.0  # training seconds, a checkpoint each second (the policy's expected figure)
START = 0.3  # the backend's Starting + Downloading before training (default durations)
UPLOAD = 0.1
# Decision kind, on-demand, rule.
Decision = tuple[str, bool, str | None]
CREATE_SPOT: Decision = ("create", False, "slack-covers-work")
SWITCH: Decision = ("switch-to-on-demand", True, "slack-exhausted")
# name -> (deadline seconds after the start, spot capacity timeline, the decisions expected).
# The backend's windows and the deadline count from the start of the task's execute; attempt 1
# is created a moment later (up to seconds on a loaded machine): spot covers the first 7.5 s,
# and the interruption comes late in the training, so that both hold however late it comes.
CASES: dict[str, tuple[float, Callable[[], Availability], list[Decision]]] = {
    "no switch needed": (18.0, lambda: Availability(True), [CREATE_SPOT]),
    # No spot capacity at all: attempt 1 waits in Starting until the slack is gone.
    "switch while waiting": (18.0, lambda: Availability(False), [CREATE_SPOT, SWITCH]),
    # Capacity goes after 5.5 training seconds: an interruption (5 s saved), then a wait.
    "switch after an interruption": (
        18.0,
        lambda: Availability(True, [START + 5.5]),
        [CREATE_SPOT, SWITCH],
    ),
    # 6 s to the deadline, 6 s of work: on-demand from the start (and still late).
    "deadline impossible": (
        6.0,
        lambda: Availability(True),
        [("create", True, "slack-exhausted")],
    ),
}
assert len(CASES) == EQUIVALENCE_JOBS
JOBS_SHOWN = 2 * EQUIVALENCE_JOBS  # scenario loads shown on a mismatch


def request(name: str) -> dict[str, Any]:
    """Attempt 1's request, the same for the simulator and the operator."""
    config = synthetic_config(WORK, step_seconds=1.0)
    config["ResourceConfig"]["InstanceType"] = INSTANCE
    return {
        **config,
        "EnableManagedSpotTraining": True,
        # Never reached here: the deadline decides, not MaxWait.
        "StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60},
        "CheckpointConfig": {"S3Uri": f"s3://{BUCKET}/checkpoints/{name}/"},
    }


def simulate(deadline: float, capacity: Availability, job_request: dict[str, Any]) -> ChainResult:
    """The simulator's run of one case, with the policy and the backend's pace."""
    job = JobModel(
        work_hours=WORK / 3600,
        checkpoint_interval_seconds=1.0,
        checkpoint_cost_seconds=0.0,
        restart_overhead_seconds=START,
        upload_seconds=UPLOAD,
        deadline_factor=deadline / (START + WORK + UPLOAD),
    )
    policy = replace(EQUIVALENCE_POLICY, deadline=BASE_TIME + timedelta(seconds=deadline))
    price = Price(1.0, 0.7)
    return run_chain(
        policy, job_request, capacity, job, price, poll_seconds=EQUIVALENCE_POLL, stop_seconds=0.2
    )


def operator_decisions(summary: dict[str, Any], deadline: datetime) -> list[tuple[Decision, float]]:
    """The chain's decisions from its XCom, each with its seconds before the deadline.

    The runner records a switch and then the on-demand resubmission that carries it out; the
    simulator records the switch alone.
    """
    decisions: list[tuple[Decision, float]] = []
    for entry in summary["decisions"]:
        if entry["kind"] == "resubmit" and decisions and decisions[-1][0] == SWITCH:
            assert entry["on_demand"] and entry["rule"] == SWITCH[2]
            continue
        before = (deadline - datetime.fromisoformat(entry["at"])).total_seconds()
        decisions.append(((entry["kind"], entry["on_demand"], entry["rule"]), before))
    return decisions


@pytest.fixture(scope="module")
def market(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotEmulator]:
    """A backend of this module's own, so that its market is the scenarios' alone.

    Twice in a full run (never alone) a job of the session's backend met another market than
    the scenario just loaded; with a backend of its own, nothing another test did or left
    running (live jobs, overrides, scenarios) can be in force here.
    """
    with SpotEmulator(data_dir=tmp_path_factory.mktemp("equivalence")) as running:
        running.boto3_client("s3").create_bucket(Bucket=BUCKET)
        yield running


def test_operator_on_the_backend_decides_as_the_simulator(
    market: SpotEmulator, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", market.airflow_connection())
    # The backend runs in real time: on a machine loaded well beyond its cores, a task may start
    # its job seconds after its market's origin, or poll late, and meet another market than the
    # simulator's. One more run, on fresh jobs, tells that from a wrong decision, which repeats.
    try:
        compare(market, f"{name}a")
    except AssertionError as first:
        print(f"The first run disagreed ({first!r}); running once more on fresh jobs.")
        compare(market, f"{name}b")


def compare(emulator: SpotEmulator, name: str) -> None:
    """Run every case through the operator and the simulator; assert they agree.

    :param emulator: the backend.
    :param name: the base of the jobs' names.
    """
    cases, jobs = [], []
    for index, (deadline, timeline, expected) in enumerate(CASES.values()):
        job_request = request(f"{name}-{index}")
        capacity = timeline()
        result = simulate(deadline, capacity, job_request)
        scenario = backend_scenario(
            result,
            capacity,
            job_glob=f"{name}-{index}-*-a{{attempt}}",
            instance_type=INSTANCE,
            time_scale=1.0,
        )
        cases.append((deadline, result, expected))
        jobs.append({"config": job_request, "scenario": scenario, "deadline_seconds": deadline})
    admin = {"endpoint": emulator.endpoint_url, "token": emulator.admin_token}
    run = run_dag("e2e_equivalence", {"name": name, "admin": admin, "jobs": jobs})
    assert run.state == DagRunState.SUCCESS

    for index, (case, (deadline, result, expected)) in enumerate(zip(CASES, cases, strict=True)):
        summary = xcom(run, f"train_{index}")
        ends = datetime.fromisoformat(xcom(run, f"train_{index}", key="deadline"))
        backend = operator_decisions(summary, ends)
        simulated = [
            ((d.kind, d.on_demand, d.rule and str(d.rule)), deadline - d.seconds)
            for d in result.decisions
        ]
        print(f"{case}: simulator {simulated}\n{' ' * len(case)}  backend   {backend}")
        # The same decisions, exactly (and the ones the case is about). On a mismatch, what the
        # backend had in force (once seen: a spot job of "switch while waiting" got capacity).
        assert [d for d, _ in backend] == [d for d, _ in simulated] == expected, (
            case,
            emulator.admin.health()["capacity_overrides"],
            emulator.admin.events(kind="scenario")[-JOBS_SHOWN:],
            jobs[index]["scenario"],
            [emulator.admin.events(job=a["job_name"]) for a in summary["attempts"]],
        )
        # At about the same time before the deadline: a switch is due at a moment the deadline
        # sets; attempt 1 is created a moment after the market's origin (the deadline's).
        for (decision, at), (_, expected_at) in zip(backend, simulated, strict=True):
            if decision[0] == "create":
                assert -0.5 <= expected_at - at <= 6.0, (case, at, expected_at)
            else:
                assert at == pytest.approx(expected_at, abs=1.5), (case, decision)
        # The same attempts, on the same capacity, with the same interruptions.
        attempts = summary["attempts"]
        assert len(attempts) == result.attempts, case
        assert [not a["managed_spot"] for a in attempts] == [d[1] for d, _ in simulated], case
        assert sum(a["interruptions"] for a in attempts) == result.interruptions, case
        assert summary["outcome"] == "COMPLETED"
        met = datetime.fromisoformat(attempts[-1]["end_time"]) <= ends
        assert met == result.met_deadline, case
