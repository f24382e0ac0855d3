"""What a follower has logged of one job: a value object whose merge takes the later of each part.

A job's position has two independent parts:

- its **transitions**: how many ``SecondaryStatusTransitions`` were logged, plus the message of
  the open (last) one as logged and how many times that message changed (SageMaker rewrites the
  open transition's message, e.g. "Insufficient capacity error from EC2 while launching
  instances, retrying!" on ``Starting``); ``ended`` says that the job's end was logged;
- its **CloudWatch streams**: for each stream, the next forward token and how many events were
  read through it. AWS tokens are opaque strings (never parsed here): of two positions of one
  stream, the later is the one that has read more events.

Two copies of a position meet after a triggerer restart (the kwargs the trigger was created with,
and what the first trigger saved as it went): :meth:`Position.merge` takes the later of each part
independently, so no line is logged twice and none is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class StreamMark:
    """Where a CloudWatch stream was read up to.

    :param token: the next forward token (opaque).
    :param events: how many events were read through this stream so far.
    """

    token: str
    events: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"token": self.token, "events": self.events}

    @classmethod
    def from_json(cls, data: Any) -> StreamMark:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        return cls(token=str(data["token"]), events=int(data.get("events", 0)))


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

    def with_stream(self, stream: str, token: str, read: int) -> Position:
        """This position with one stream moved on.

        :param stream: the stream.
        :param token: its new next forward token.
        :param read: how many events were read since the last mark.
        """
        before = self.streams.get(stream)
        events = (before.events if before else 0) + read
        return replace(self, streams={**self.streams, stream: StreamMark(token, events)})

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
