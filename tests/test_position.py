"""The position value object: JSON round trip, and a merge that takes the later of each part."""

from __future__ import annotations

import json

import pytest

from airflow_spot_provider.position import Position, StreamMark

STREAM = "train-a1/algo-1-1700000000"


def test_json_round_trip() -> None:
    position = Position(
        job_name="train-a1",
        transitions=4,
        revision=2,
        message="Training image download completed.",
        streams={STREAM: StreamMark("f/3855434", 120), "train-a1/algo-2": StreamMark("f/1", 1)},
        ended=True,
    )
    again = Position.from_json(json.loads(json.dumps(position.to_json())))
    assert again == position
    assert Position.from_json({"job_name": "j"}) == Position("j")


def test_merge_takes_each_streams_further_token_not_the_first_of_equal_transitions() -> None:
    # Bug 4: the trigger's kwargs at (3 transitions, f/0001) and its saved Variable at
    # (3, f/0950). Tokens are opaque: "further" is the mark that has read more events.
    kwargs = Position("j", transitions=3, streams={STREAM: StreamMark("f/0001", 1)})
    saved = Position("j", transitions=3, streams={STREAM: StreamMark("f/0950", 950)})
    assert kwargs.merge(saved).streams[STREAM].token == "f/0950"
    assert saved.merge(kwargs).streams[STREAM].token == "f/0950"
    # Tokens that do not sort as their order: only the event count decides.
    later = Position("j", streams={STREAM: StreamMark("AAAA", 10)})
    earlier = Position("j", streams={STREAM: StreamMark("ZZZZ", 3)})
    assert earlier.merge(later).streams[STREAM].token == "AAAA"


def test_merge_takes_every_stream_independently() -> None:
    one = Position("j", transitions=5, streams={"a": StreamMark("a9", 9), "b": StreamMark("b1", 1)})
    two = Position("j", transitions=2, streams={"a": StreamMark("a2", 2), "b": StreamMark("b7", 7)})
    merged = one.merge(two)
    assert merged.streams == {"a": StreamMark("a9", 9), "b": StreamMark("b7", 7)}
    assert merged.transitions == 5
    assert two.merge(one) == merged
    assert one.merge(Position("j", streams={"c": StreamMark("c1", 1)})).streams["c"].token == "c1"


def test_merge_takes_the_later_transition_part_with_its_message() -> None:
    first = Position("j", transitions=1, message="Preparing")
    retried = Position("j", transitions=1, revision=1, message="Insufficient capacity, retrying!")
    assert first.merge(retried) == retried
    assert retried.merge(first) == retried
    moved_on = Position("j", transitions=2, message="Downloading")
    assert retried.merge(moved_on) == moved_on
    ended = Position("j", transitions=2, message="Downloading", ended=True)
    assert moved_on.merge(ended).ended


def test_merge_with_nothing_and_with_another_job() -> None:
    position = Position("j", transitions=1)
    assert position.merge(None) is position
    with pytest.raises(ValueError, match="cannot merge positions of j and k"):
        position.merge(Position("k"))


def test_with_stream_counts_events_read() -> None:
    position = Position("j").with_stream("s", "t1", 3).with_stream("s", "t2", 4)
    assert position.streams["s"] == StreamMark("t2", 7)


def test_a_position_saved_before_time_marks_loads_and_merges() -> None:
    old = {"job_name": "j", "transitions": 2, "streams": {STREAM: {"token": "f/9", "events": 9}}}
    position = Position.from_json(old)
    assert position.streams[STREAM] == StreamMark("f/9", 9)  # a token mark: no time yet
    assert position.to_json() == {**old, "revision": 0, "message": "", "ended": False}
    timed = Position("j", streams={STREAM: StreamMark("", 12, 1700, ("a",))})
    assert position.merge(timed).streams[STREAM] == timed.streams[STREAM]
    assert timed.merge(position).streams[STREAM] == timed.streams[STREAM]
    again = Position.from_json(json.loads(json.dumps(timed.to_json())))
    assert again == timed


def test_take_events_relays_each_event_once_and_only_its_jobs() -> None:
    def event(stream: str, stamp: int, event_id: str) -> dict[str, object]:
        return {
            "logStreamName": stream,
            "timestamp": stamp,
            "eventId": event_id,
            "message": event_id,
        }

    position = Position("train-a1", streams={STREAM: StreamMark("", 1, 5, ("e5a",))})
    events = [
        event(STREAM, 5, "e5a"),  # the boundary, read already
        event(STREAM, 5, "e5b"),  # same millisecond, not read yet
        event("train-a10/algo-1-1", 6, "other"),  # another job whose name starts alike
        event(STREAM, 7, "e7"),
    ]
    lines, after = position.take_events(events)
    assert [line[0] for line in lines] == [STREAM, STREAM]
    assert after.streams[STREAM] == StreamMark("", 3, 7, ("e7",))
    assert after.take_events(events) == ([], after)
