"""Timeline segments drawn from an attempt's transitions, and the summary that carries them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from airflow_spot_provider.lifecycle import SecondaryStatus, SpotJobReport, Transition
from airflow_spot_provider.summary import summarize_attempts
from airflow_spot_provider.timeline import (
    Phase,
    attempt_timeline,
    phase_of,
    phase_seconds,
    segments,
    summary_timelines,
)
from tests.seed_lifecycles import SEED_SCENARIOS, describe_response

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_known_status_has_a_phase_or_is_an_end() -> None:
    for status in SecondaryStatus:
        phase = phase_of(status)
        assert (phase is None) == status.is_terminal, status
        assert phase is not Phase.OTHER, status


def test_one_interruption_gives_the_guide_sequence_of_phases() -> None:
    report = SpotJobReport.from_describe(describe_response("one-interruption"))
    timeline = attempt_timeline(report)
    assert [s["phase"] for s in timeline] == [
        "waiting", "downloading", "training", "interrupted",
        "waiting", "downloading", "training", "uploading",
    ]  # fmt: skip
    # Each transition lasted one minute in the seed; Completed is the end, not a segment.
    assert all(s["seconds"] == 60 for s in timeline)
    assert [s["billable"] for s in timeline].count(True) == 5
    assert not any(s["open"] for s in timeline)


def test_never_launched_attempt_waits_then_stops() -> None:
    report = SpotJobReport.from_describe(describe_response("never-launched"))
    assert [s["phase"] for s in attempt_timeline(report)] == ["waiting", "stopping"]


def test_open_last_transition_ends_now_and_is_marked_open() -> None:
    transitions = (
        Transition(SecondaryStatus.STARTING, T0, T0 + timedelta(seconds=30)),
        Transition(SecondaryStatus.TRAINING, T0 + timedelta(seconds=30)),
    )
    now = T0 + timedelta(seconds=100)
    timeline = segments(transitions, until=now)
    assert [(s.phase, s.seconds, s.is_open) for s in timeline] == [
        (Phase.WAITING, 30.0, False),
        (Phase.TRAINING, 70.0, True),
    ]
    assert phase_seconds(timeline) == {"waiting": 30.0, "training": 70.0}
    # Without a time to end it at, an open transition cannot be drawn.
    assert len(segments(transitions)) == 1


def test_missing_end_time_ends_where_the_next_transition_starts() -> None:
    transitions = (
        Transition(SecondaryStatus.STARTING, T0),
        Transition(SecondaryStatus.DOWNLOADING, T0 + timedelta(seconds=12)),
        Transition(SecondaryStatus.COMPLETED, T0 + timedelta(seconds=20)),
    )
    timeline = segments(transitions)
    assert [(s.phase, s.seconds) for s in timeline] == [
        (Phase.WAITING, 12.0),
        (Phase.DOWNLOADING, 8.0),
    ]


def test_summary_carries_transitions_and_times_through_json() -> None:
    names = list(SEED_SCENARIOS)[1:3]
    reports = [SpotJobReport.from_describe(describe_response(n)) for n in names]
    summary = json.loads(json.dumps(summarize_attempts(reports)))
    first = summary["attempts"][0]
    assert first["creation_time"] == "2026-01-01T00:00:00+00:00"
    assert [t["status"] for t in first["transitions"]] == [
        t.status.value for t in reports[0].transitions
    ]
    timelines = summary_timelines(summary)
    assert [t["job_name"] for t in timelines] == [r.job_name for r in reports]
    for timeline, report in zip(timelines, reports, strict=True):
        assert timeline["segments"] == attempt_timeline(report)
        assert timeline["phase_seconds"]["interrupted"] == 60 * report.interruptions


def test_summary_without_attempt_transitions_reads_the_reports() -> None:
    report = SpotJobReport.from_describe(describe_response("no-interruption"))
    attempt = {"attempt": 1, "job_name": report.job_name}
    summary = {"attempts": [attempt], "reports": [report.to_json()]}
    assert summary_timelines(summary)[0]["segments"] == attempt_timeline(report)
