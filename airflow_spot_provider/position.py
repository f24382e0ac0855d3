"""What a follower has logged of one job: a value object whose merge takes the later of each part.

A job's position has two independent parts:

- its **transitions**: how many ``SecondaryStatusTransitions`` were logged, plus the message of
  the open (last) one as logged and how many times that message changed (SageMaker rewrites the
  open transition's message, e.g. "Insufficient capacity error from EC2 while launching
  instances, retrying!" on ``Starting``); ``ended`` says that the job's end was logged;
- its **CloudWatch streams**: for each stream, the time of the last event read (milliseconds)
  with the ``eventId`` s read at that very time, and how many events were read through it. Lines are
  read with ``FilterLogEvents`` from that time on (``startTime``), by the worker and by the
  triggerer's shared watch alike, so both write the same mark; the events at the boundary that
  carry a known ``eventId`` are dropped (:meth:`Position.take_events`). Of two marks of one stream,
  the later is the one that has read more events.

  Positions saved before this mark existed hold a ``GetLogEvents`` forward token instead (opaque,
  never parsed): such a stream is read once more through its token, and its mark then becomes a
  time mark (:func:`~airflow_spot_provider.hooks.job_calls.new_log_lines`).

Two copies of a position meet after a triggerer restart (the kwargs the trigger was created with,
and what the first trigger saved as it went): :meth:`Position.merge` takes the later of each part
independently, so no line is logged twice and none is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class StreamMark:
    """Where a CloudWatch stream was read up to.

    :param token: a ``GetLogEvents`` forward token (opaque; the mark of positions saved before
        time marks existed, "" otherwise).
    :param events: how many events were read through this stream so far.
    :param timestamp: the time of the last event read (ms since the epoch); None: a token mark.
    :param ids: the ``eventId`` s of the events read at exactly ``timestamp``.
    """

    token: str = ""
    events: int = 0
    timestamp: int | None = None
    ids: tuple[str, ...] = ()

    def is_new(self, event: Mapping[str, Any]) -> bool:
        """Whether a ``FilterLogEvents`` event of this stream was not read yet.

        :param event: the event (``timestamp``, ``eventId``).
        """
        if self.timestamp is None:
            return True
        stamp = int(event["timestamp"])
        return stamp > self.timestamp or (
            stamp == self.timestamp and str(event.get("eventId")) not in self.ids
        )

    def after(self, event: Mapping[str, Any]) -> StreamMark:
        """This mark once a new event is read.

        :param event: the event (``timestamp``, ``eventId``).
        """
        stamp, event_id = int(event["timestamp"]), str(event.get("eventId"))
        ids = (*self.ids, event_id) if stamp == self.timestamp else (event_id,)
        return StreamMark(token="", events=self.events + 1, timestamp=stamp, ids=ids)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        data: dict[str, Any] = {"token": self.token, "events": self.events}
        if self.timestamp is not None:
            data.update(timestamp=self.timestamp, ids=list(self.ids))
        return data

    @classmethod
    def from_json(cls, data: Any) -> StreamMark:
        """Inverse of :meth:`to_json` (also reads token-only marks of older positions).

        :param data: a dict made by :meth:`to_json`.
        """
        stamp = data.get("timestamp")
        return cls(
            token=str(data.get("token") or ""),
            events=int(data.get("events", 0)),
            timestamp=None if stamp is None else int(stamp),
            ids=tuple(str(i) for i in data.get("ids") or ()),
        )


@dataclass(frozen=True)
class Position:
    """What has been logged of one job.

    :param job_name: the job.
    :param transitions: how many transitions were logged.
    :param revision: how many changed messages of the open transition were logged since it opened.
    :param message: the open transition's message as last logged.
    :param streams: CloudWatch stream -> where it was read up to.
    :param ended: the job's end was logged.
    """

    job_name: str
    transitions: int = 0
    revision: int = 0
    message: str = ""
    streams: Mapping[str, StreamMark] = field(default_factory=dict)
    ended: bool = False

    def _transition_key(self) -> tuple[bool, int, int]:
        return (self.ended, self.transitions, self.revision)

    def merge(self, other: Position | None) -> Position:
        """The later of each part of two positions of the same job.

        :param other: another position of the job (e.g. saved by an earlier trigger), or None.
        :raises ValueError: if ``other`` is of another job.
        """
        if other is None:
            return self
        if other.job_name != self.job_name:
            raise ValueError(f"cannot merge positions of {self.job_name} and {other.job_name}")
        later = other if other._transition_key() > self._transition_key() else self
        streams = dict(self.streams)
        for stream, mark in other.streams.items():
            mine = streams.get(stream)
            if mine is None or mark.events > mine.events:
                streams[stream] = mark
        return replace(later, streams=streams)

    def with_stream(
        self, stream: str, token: str, read: int, timestamp: int | None = None
    ) -> Position:
        """This position with one stream moved on through a ``GetLogEvents`` token.

        :param stream: the stream.
        :param token: its new next forward token.
        :param read: how many events were read since the last mark.
        :param timestamp: the time of the last event read, if known.
        """
        before = self.streams.get(stream)
        events = (before.events if before else 0) + read
        mark = StreamMark(token, events, timestamp)
        return replace(self, streams={**self.streams, stream: mark})

    def with_marks(self, marks: Mapping[str, StreamMark]) -> Position:
        """This position with the streams of ``marks`` moved to them (the others kept).

        :param marks: stream -> mark.
        """
        return replace(self, streams={**self.streams, **marks}) if marks else self

    def take_events(
        self, events: Iterable[Mapping[str, Any]]
    ) -> tuple[list[tuple[str, str]], Position]:
        """The lines of the ``FilterLogEvents`` events not read yet, and the position after them.

        Events of streams of other jobs are ignored; so are those at or before a stream's mark
        whose ``eventId`` was read (a read starts at the mark's time: the boundary repeats).

        :param events: events in the order the service returned them (``logStreamName``,
            ``timestamp``, ``eventId``, ``message``).
        """
        prefix = f"{self.job_name}/"
        marks = dict(self.streams)
        lines: list[tuple[str, str]] = []
        for event in events:
            stream = str(event.get("logStreamName", ""))
            if not stream.startswith(prefix):
                continue
            mark = marks.get(stream) or StreamMark()
            if mark.is_new(event):
                marks[stream] = mark.after(event)
                lines.append((stream, str(event.get("message", "")).rstrip("\n")))
        return lines, (replace(self, streams=marks) if lines else self)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "job_name": self.job_name,
            "transitions": self.transitions,
            "revision": self.revision,
            "message": self.message,
            "streams": {name: mark.to_json() for name, mark in self.streams.items()},
            "ended": self.ended,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Position:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        streams = data.get("streams") or {}
        return cls(
            job_name=str(data["job_name"]),
            transitions=int(data.get("transitions", 0)),
            revision=int(data.get("revision", 0)),
            message=str(data.get("message") or ""),
            streams={str(k): StreamMark.from_json(v) for k, v in streams.items()},
            ended=bool(data.get("ended", False)),
        )
