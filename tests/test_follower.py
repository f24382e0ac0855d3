"""The follower's pure step, and its operations as generators (run here on scripted answers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from airflow_spot_provider.follower import (
    follow_job,
    follow_step,
    live_line,
    transition_line,
)
from airflow_spot_provider.hooks.errors import ApiCallError
from airflow_spot_provider.hooks.job_calls import (
    Call,
    Ops,
    Say,
    Sleep,
    create_job,
    moved_starts,
    new_log_lines,
    read_marked,
    stream_batches,
)
from airflow_spot_provider.lifecycle import (
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
    Transition,
)
from airflow_spot_provider.position import Position, StreamMark

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _report(
    *messages: str, status: TrainingJobStatus = TrainingJobStatus.IN_PROGRESS
) -> SpotJobReport:
    transitions = tuple(Transition(SecondaryStatus.STARTING, T0, None, m) for m in messages)
    return SpotJobReport(
        job_name="j", status=status, secondary_status=None, outcome=None, transitions=transitions
    )


def test_step_logs_new_transitions_and_a_changed_message_of_the_open_one_once() -> None:
    position = Position("j")
    step = follow_step(_report("Preparing"), position)
    assert [t.message for t in step.transitions] == ["Preparing"]
    assert step.outcome is None
    assert follow_step(_report("Preparing"), step.position).transitions == ()
    retrying = "Insufficient capacity error from EC2 while launching instances, retrying!"
    changed = follow_step(_report(retrying), step.position)
    assert [t.message for t in changed.transitions] == [retrying]
    assert changed.position.revision == 1
    assert follow_step(_report(retrying), changed.position).transitions == ()
    again = Position.from_json(changed.position.to_json())
    assert follow_step(_report(retrying), again).transitions == ()
    moved = follow_step(_report(retrying, "Downloading"), changed.position)
    assert [t.message for t in moved.transitions] == ["Downloading"]
    assert (moved.position.transitions, moved.position.revision) == (2, 0)


def test_step_never_goes_back_on_a_stale_description() -> None:
    position = Position("j", transitions=3, message="x")
    step = follow_step(_report("a"), position)
    assert step.transitions == () and step.position.transitions == 3


def test_task_log_and_live_lines_differ() -> None:
    transition = Transition(SecondaryStatus.TRAINING, T0, None, "Training in progress")
    assert transition_line("j-a1", transition) == (
        "j-a1: Training at 2026-01-01T00:00:00+00:00 - Training in progress"
    )
    live = live_line("j-a1", transition)
    assert live.startswith("[live] j-a1 is Training")
    assert "j-a1: " not in live  # never counted as the task log's line


def run(ops: Ops[Any], answer: Callable[[Call], Any]) -> tuple[Any, list[Any]]:
    """Carry out an operation with scripted answers; its result and every effect."""
    effects: list[Any] = []
    reply: Any = None
    error: ApiCallError | None = None
    while True:
        try:
            effect = ops.throw(error) if error else ops.send(reply)
        except StopIteration as done:
            return done.value, effects
        effects.append(effect)
        reply, error = None, None
        if isinstance(effect, Call):
            try:
                reply = answer(effect)
            except ApiCallError as raised:
                error = raised


def _event(stream: str, stamp: int, seq: int, message: str) -> dict[str, Any]:
    return {
        "logStreamName": stream,
        "timestamp": stamp,
        "eventId": f"{stamp}-{seq}",
        "message": message,
    }


def test_log_lines_are_read_from_the_mark_and_the_boundary_is_not_repeated() -> None:
    stream = "j/algo-1-1"
    events = [_event(stream, 10, 0, "1\n"), _event(stream, 20, 1, "2"), _event(stream, 20, 2, "3")]
    calls: list[Call] = []

    def answer(call: Call) -> Any:
        calls.append(call)
        if call.operation == "describe_log_streams":
            return {
                "logStreams": [
                    {"logStreamName": stream, "lastEventTimestamp": events[-1]["timestamp"]}
                ]
            }
        assert call.operation == "filter_log_events" and call.kwargs["logStreamNames"] == [stream]
        return {"events": [e for e in events if e["timestamp"] >= call.kwargs["startTime"]]}

    (lines, position), _ = run(new_log_lines(Position("j")), answer)
    assert lines == [(stream, "1"), (stream, "2"), (stream, "3")]
    assert position.streams[stream] == StreamMark("", 3, 20, ("20-1", "20-2"))
    calls.clear()
    (again, same), _ = run(new_log_lines(position), answer)
    assert again == [] and same == position
    assert [c.operation for c in calls] == ["describe_log_streams"]  # nothing moved: no read
    events.append(_event(stream, 20, 3, "4"))  # same millisecond, after the mark
    events.append(_event(stream, 21, 4, "5"))
    (more, after), _ = run(new_log_lines(position), answer)
    assert more == [(stream, "4"), (stream, "5")]
    assert calls[-1].kwargs["startTime"] == 20  # from the mark: the boundary is read again
    assert after.streams[stream] == StreamMark("", 5, 21, ("21-4",))


def test_a_token_mark_of_an_older_position_is_read_through_then_becomes_a_time_mark() -> None:
    stream = "j/algo-1-1"
    pages = {
        "t1": {"events": [{"message": "2", "timestamp": 7}], "nextForwardToken": "t2"},
        "t2": {"events": [], "nextForwardToken": "t2"},
    }
    old = Position.from_json({"job_name": "j", "streams": {stream: {"token": "t1", "events": 1}}})

    def answer(call: Call) -> Any:
        if call.operation == "describe_log_streams":
            return {"logStreams": [{"logStreamName": stream, "lastEventTimestamp": 7}]}
        if call.operation == "get_log_events":
            return pages[call.kwargs["nextToken"]]
        raise AssertionError(f"nothing moved past the time mark, yet {call.operation}")

    (lines, position), _ = run(new_log_lines(old), answer)
    assert lines == [(stream, "2")]
    mark = position.streams[stream]
    assert (mark.events, mark.timestamp) == (2, 8)  # every event up to 7 ms was read
    assert Position.from_json(position.to_json()) == position


def test_a_failed_log_read_is_said_not_raised() -> None:
    def answer(call: Call) -> Any:
        raise ApiCallError("AccessDeniedException", "no", transient=False)

    (lines, position), effects = run(new_log_lines(Position("j")), answer)
    assert lines == [] and position == Position("j")
    assert [e.level for e in effects if isinstance(e, Say)] == ["warning"]


def test_create_attaches_when_the_name_is_taken() -> None:
    def taken(call: Call) -> Any:
        raise ApiCallError("ResourceInUse", "exists", transient=False)

    assert run(create_job({"TrainingJobName": "j"}), taken)[0] is False
    assert run(create_job({"TrainingJobName": "j"}), lambda call: {})[0] is True


def test_follow_job_polls_to_the_end_logging_each_transition_once() -> None:
    statuses = [
        ("InProgress", ["Starting"]),
        ("InProgress", ["Starting", "Downloading"]),
        ("InProgress", ["Starting", "Downloading"]),
        ("Completed", ["Starting", "Downloading", "Training", "Uploading", "Completed"]),
    ]
    answers = iter(statuses)

    def answer(call: Call) -> Any:
        status, secondaries = next(answers)
        return {
            "TrainingJobName": "j",
            "TrainingJobStatus": status,
            "SecondaryStatus": secondaries[-1],
            "SecondaryStatusTransitions": [{"Status": s, "StartTime": T0} for s in secondaries],
        }

    flow = follow_job(Position("j"), poll_interval=5, print_log=False, wait_first=True)
    (describe, position), effects = run(flow, answer)
    said = [e.line.split(" ")[1] for e in effects if isinstance(e, Say)]
    assert said == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert effects[0] == Sleep(5)  # a job just created: one describe per poll interval
    assert SpotJobReport.from_describe(describe).outcome is JobOutcome.COMPLETED
    assert position.transitions == 5


def test_streams_are_read_100_per_call_from_the_earliest_mark_of_each_batch() -> None:
    starts = {f"j{i:03d}/algo-1-1": 1000 - i for i in range(250)}
    batches = stream_batches(starts)
    assert [len(names) for names, _ in batches] == [100, 100, 50]
    for names, start in batches:
        assert start == min(starts[n] for n in names)  # no stream read from past its mark
    assert sorted(n for names, _ in batches for n in names) == sorted(starts)
    assert stream_batches({}) == []


def test_a_stream_moved_when_its_last_event_is_past_its_mark() -> None:
    position = Position(
        "j",
        streams={
            "j/algo-1-1": StreamMark("", 3, 50),  # moved: last event at 60
            "j/algo-2-1": StreamMark("", 3, 60),  # not moved
            "j/algo-3-1": StreamMark("t", 3),  # a token mark: read through its token instead
        },
    )
    last = {"j/algo-1-1": 60, "j/algo-2-1": 60, "j/algo-3-1": 60, "j/algo-4-1": 5, "k/a": 9}
    last["j/algo-5-1"] = None  # no event yet
    assert moved_starts(position, last) == {"j/algo-1-1": 50, "j/algo-4-1": 0}


def test_every_stream_is_read_from_its_mark_when_asked_whatever_its_last_event_time() -> None:
    position = Position(
        "j",
        streams={
            "j/algo-1-1": StreamMark("", 3, 50),  # its last event time is stale: not moved
            "j/algo-2-1": StreamMark("t1", 1),  # a token mark: read through its token only
            "j/algo-3-1": StreamMark("", 2, 40),  # not listed (yet)
        },
    )
    last = {"j/algo-1-1": 50, "j/algo-2-1": 7, "j/algo-4-1": None}  # 4: no event time yet
    reads: list[Call] = []

    def answer(call: Call) -> Any:
        if call.operation == "get_log_events":
            return {"events": [], "nextForwardToken": call.kwargs["nextToken"]}
        reads.append(call)
        names = call.kwargs["logStreamNames"]
        return {"events": [_event(s, 60, i, s) for i, s in enumerate(names)]}

    [(lines, _)], _ = run(read_marked([position], last, every_stream=True), answer)
    assert [(c.kwargs["logStreamNames"], c.kwargs["startTime"]) for c in reads] == [
        (["j/algo-4-1", "j/algo-3-1", "j/algo-1-1"], 0)
    ]
    assert sorted(lines) == [(s, s) for s in ("j/algo-1-1", "j/algo-3-1", "j/algo-4-1")]
    reads.clear()
    [(lines, _)], _ = run(read_marked([position], last), answer)
    assert reads == [] and lines == []  # by last event time alone, nothing moved
