"""Chain metrics through Airflow's own StatsD client, received by a real UDP listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from airflow_spot_provider import metrics
from airflow_spot_provider.lifecycle import SpotJobReport
from airflow_spot_provider.summary import summarize_attempts
from tests.seed_lifecycles import describe_response


class StatsdListener:
    """A UDP socket on a free port that collects StatsD lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]

    def lines(self) -> list[str]:
        """Every line received until the socket stays quiet for half a second."""
        received: list[str] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return received
            received.extend(data.decode().splitlines())


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """Airflow's Stats configured ([metrics] statsd_*) to send to a listener of the test."""
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()
    for key, value in {
        "STATSD_ON": "True",
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(listener.port),
        "STATSD_PREFIX": "airflow",
        "STATSD_INFLUXDB_ENABLED": "True",  # keeps the tags in the line
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
    yield listener
    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)
    listener.sock.close()


def _parse(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``name,tags`` -> (value, type) from ``airflow.name,tag=v:value|type`` lines."""
    parsed = {}
    for line in lines:
        head, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        parsed[head.removeprefix("airflow.")] = (value, kind.split("|")[0])
    return parsed


def test_a_resubmitted_chain_sends_its_figures(statsd: StatsdListener) -> None:
    # Attempt 1: interrupted twice, stopped at MaxWait; attempt 2: interrupted once, completed.
    reports = [
        SpotJobReport.from_describe(describe_response("two-interruptions-max-wait")),
        SpotJobReport.from_describe(describe_response("one-interruption")),
    ]
    result = summarize_attempts(reports)
    metrics.emit_chain_metrics(result, dag_id="churn", task_id="train")
    got = _parse(statsd.lines())
    tags = ",dag_id=churn,task_id=train"
    assert got == {
        f"spot_training.chains{tags},outcome=COMPLETED": ("1", "c"),
        f"spot_training.attempts{tags}": ("2", "c"),
        f"spot_training.resubmissions{tags},reason=MAX_WAIT_EXCEEDED": ("1", "c"),
        f"spot_training.interruptions{tags}": ("3", "c"),
        f"spot_training.max_wait_exceeded{tags}": ("1", "c"),
        f"spot_training.training_seconds{tags}": ("1030", "c"),
        f"spot_training.billable_seconds{tags}": ("315", "c"),
        f"spot_training.savings_percent{tags}": (
            str(result["totals"]["effective_savings_percent"]),
            "g",
        ),
    }


def test_a_chain_that_never_launched_sends_no_seconds(statsd: StatsdListener) -> None:
    report = SpotJobReport.from_describe(describe_response("never-launched"))
    metrics.emit_chain_metrics(summarize_attempts([report]), dag_id="d", task_id="t")
    names = {name.split(",")[0] for name in _parse(statsd.lines())}
    assert names == {metrics.CHAINS, metrics.ATTEMPTS, metrics.MAX_WAIT_EXCEEDED}


def test_a_chain_given_up_sends_its_outcome_and_reason_for_the_view(
    statsd: StatsdListener,
) -> None:
    from airflow_spot_provider.chain_end import given_up_result
    from airflow_spot_provider.exceptions import SpotTrainingError
    from airflow_spot_provider.lifecycle import JobOutcome

    report = SpotJobReport.from_describe(describe_response("two-interruptions-max-wait"))
    outcome = JobOutcome.MAX_WAIT_EXCEEDED
    error = SpotTrainingError(report.job_name, outcome, "budget spent", [report])
    result = given_up_result(error)
    assert result["given_up_reason"] == "budget spent"
    assert result["checkpoint_s3_uri"] == report.checkpoint_s3_uri
    assert result["totals"] == summarize_attempts([report])["totals"]
    metrics.emit_chain_metrics(result, dag_id="d", task_id="t")
    got = _parse(statsd.lines())
    assert got["spot_training.chains,dag_id=d,task_id=t,outcome=MAX_WAIT_EXCEEDED"] == ("1", "c")
    assert got["spot_training.interruptions,dag_id=d,task_id=t"] == ("2", "c")
