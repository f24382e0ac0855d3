"""The shared watch's pure bookkeeping: what changed, the watermark, the sweep, the group read."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_spot_provider.hooks.job_calls import LOG_GROUP
from airflow_spot_provider.watch.book import Book, Changed, GroupRead, Tuning, served_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def summary(name: str, second: float, secondary: str = "Training") -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": secondary,
        "LastModifiedTime": T0 + timedelta(seconds=second),
    }


def test_only_watched_jobs_that_differ_from_what_was_seen_are_described() -> None:
    book = Book(Tuning())
    assert book.list_args() is None  # nothing seen: no watermark to list from
    for name in ("a", "b"):
        book.watch(name)
    book.described(summary("a", 1))
    assert book.watermark == T0 + timedelta(seconds=1)
    changed = book.changed([summary("a", 1), summary("b", 2), summary("other", 9)])
    assert changed == Changed(others=["b"])  # "a" is as seen; "other" is nobody's
    assert book.watermark == T0 + timedelta(seconds=9)  # what the service returned, any job
    book.described(summary("b", 2))
    assert book.changed([summary("b", 2)]) == Changed()
    uploading = summary("b", 2, "Uploading")  # same time, new status
    assert book.changed([uploading]) == Changed(others=["b"])


def test_the_list_starts_a_margin_before_the_watermark() -> None:
    book = Book(Tuning(margin=timedelta(seconds=30)))
    book.watch("a")
    book.described(summary("a", 100))
    args = book.list_args()
    assert args is not None
    # LastModifiedTimeAfter is strict: a job changed at the watermark itself is still listed.
    assert args["LastModifiedTimeAfter"] == T0 + timedelta(seconds=70)
    assert (args["SortBy"], args["MaxResults"]) == ("CreationTime", 100)
    book.changed([summary("a", 50)])  # an older time never moves the watermark back
    assert book.watermark == T0 + timedelta(seconds=100)


def test_the_service_time_of_the_answer_moves_the_watermark_when_nothing_changes() -> None:
    book = Book(Tuning(margin=timedelta(seconds=30)))
    book.watch("a")
    book.described(summary("a", 100))
    burst = [summary("a", 100)] + [summary(f"idle{i}", 95 + i / 100) for i in range(500)]
    assert book.changed(burst, served=None) == Changed()
    args = book.list_args()
    assert args is not None and args["LastModifiedTimeAfter"] == T0 + timedelta(seconds=70)
    # The service answered at 200: everything stamped up to 170 is in that answer; the burst
    # (stamped 95-100) is not listed again.
    assert book.changed(burst, served=T0 + timedelta(seconds=200)) == Changed()
    args = book.list_args()
    assert args is not None and args["LastModifiedTimeAfter"] == T0 + timedelta(seconds=170)
    book.changed([], served=T0 + timedelta(seconds=150))  # an earlier answer: never back
    assert book.watermark == T0 + timedelta(seconds=200)
    # A job stamped after the answer (another host's clock ahead) does not move it further.
    book.changed([summary("x", 205)], served=T0 + timedelta(seconds=201))
    assert book.watermark == T0 + timedelta(seconds=201)


def test_a_change_after_a_walk_is_listed_next_whatever_was_described_meanwhile() -> None:
    book = Book(Tuning(margin=timedelta(seconds=30)))
    for name in ("a", "b"):
        book.watch(name)
    book.described(summary("a", 90))
    book.described(summary("b", 90))
    book.changed([], served=T0 + timedelta(seconds=100))  # a walk answered at 100
    # a changes at 110; b, described (swept, or new) between the walks, was stamped at 149;
    # so was a job on the walk's last page.
    book.described(summary("b", 149))
    book.changed([summary("late-page", 149)], served=T0 + timedelta(seconds=100))
    args = book.list_args()
    assert args is not None and args["LastModifiedTimeAfter"] <= T0 + timedelta(seconds=110)
    changed = book.changed([summary("a", 110)], served=T0 + timedelta(seconds=150))
    assert changed == Changed(others=["a"])


def test_the_service_time_is_read_from_the_date_header_or_not_at_all() -> None:
    def response(date: object) -> dict[str, Any]:
        return {"ResponseMetadata": {"HTTPHeaders": {"date": date}}}

    served = served_at(response("Sun, 29 Nov 2026 15:10:07 GMT"))
    assert served == datetime(2026, 11, 29, 15, 10, 7, tzinfo=UTC)
    assert served_at({}) is None  # no header: the watermark moves with LastModifiedTime only
    assert served_at(response("yesterday")) is None
    assert served_at(response(None)) is None
    assert served_at(response("Sun, 29 Nov 2026 15:10:07 -0000")) is None  # no zone: unusable


def test_ended_jobs_come_first_among_the_changed() -> None:
    book = Book(Tuning())
    for name in ("a", "b", "c", "d"):
        book.watch(name)
    ended = {**summary("c", 3), "TrainingJobStatus": "Completed"}
    stopped = {**summary("d", 4), "TrainingJobStatus": "Stopped"}
    changed = book.changed([summary("a", 1), summary("b", 2), ended, stopped])
    assert changed == Changed(ended=["c", "d"], others=["a", "b"])
    assert changed.order == ["c", "d", "a", "b"]


def test_the_sweep_describes_each_job_once_per_sweep_every_intervals() -> None:
    book = Book(Tuning(sweep_every=10, sweep_per_interval=3))
    for index in range(5):
        book.watch(f"j{index}")
    swept = Counter(name for _ in range(20) for name in book.sweep())
    assert swept == Counter({f"j{i}": 2 for i in range(5)})  # each twice in 20 intervals
    book.unwatch("j0")
    assert "j0" not in {name for _ in range(20) for name in book.sweep()}


def test_the_sweep_spends_a_bounded_number_of_describes_per_interval() -> None:
    book = Book(Tuning(sweep_every=10, sweep_per_interval=3))
    for index in range(1000):
        book.watch(f"j{index:04d}")
    per_interval = [len(book.sweep()) for _ in range(50)]
    assert max(per_interval) == 3 and min(per_interval) == 3
    assert not Book(Tuning(sweep_per_interval=0)).sweep()


def event(stream: str, stamp: int) -> dict[str, Any]:
    return {"logStreamName": stream, "timestamp": stamp, "eventId": f"{stamp}-{stream}"}


def test_the_group_read_starts_at_the_service_time_then_below_the_newest_event() -> None:
    group = GroupRead(Tuning(log_margin_ms=10))
    assert group.start() is None  # no time known: no read
    group.clock(datetime(2026, 1, 1, tzinfo=UTC))
    served = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert group.start() == served - 10
    group.clock(datetime(2027, 1, 1, tzinfo=UTC))  # the service's time starts it only once
    assert group.start() == served - 10
    group.took([event("a/1", served + 500), event("b/1", served + 700), {"message": "no time"}])
    assert group.start() == served + 690
    group.took([event("a/1", served + 100)])  # a late line does not move the start back
    assert group.start() == served + 690
    assert group.args(5) == {"logGroupName": LOG_GROUP, "startTime": 5}
    group.reset()
    assert group.start() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lists_per_interval": 0},
        {"page_size": 101},
        {"sweep_per_interval": -1},
        {"margin": timedelta(seconds=-1)},
        {"concurrency": 0},
        {"log_margin_ms": -1},
        {"group_read_pages": 0},
    ],
)
def test_bad_tuning_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Tuning(**kwargs)
