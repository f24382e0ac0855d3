"""CloudWatch Logs for training jobs: ``DescribeLogStreams`` and ``GetLogEvents``.

Log group ``/aws/sagemaker/TrainingJobs``; one stream per host, named as SageMaker names it,
``<job>/algo-1-<epoch seconds of the first start>``. The stream is kept across spot restarts so
that a reader following it (the Amazon provider reads one stream per instance) sees every line.

Tokens follow CloudWatch's contract as botocore's users rely on it: ``nextForwardToken`` points
after the last event returned, ``nextBackwardToken`` before the first; at the end of the stream a
forward read returns the token it was given, which is how readers know to stop.

Events live on disk (the SQLite store), not in memory: a stream keeps a few figures in memory
and the events appended since the last flush. Each stream is capped (``log_cap_bytes``): past
the cap its oldest lines are dropped and the first remaining event says how many were.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_spot_provider.emulator.errors import (
    LogsInvalidParameterError,
    LogsResourceNotFoundError,
)
from airflow_spot_provider.emulator.store import EventRow, Store

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# CloudWatch's event size limit is 256 KiB including 26 bytes of overhead.
MAX_MESSAGE_BYTES = 256 * 1024 - 26
DEFAULT_EVENTS_LIMIT = 10_000
DEFAULT_STREAMS_LIMIT = 50
DEFAULT_CAP_BYTES = 8 * 1024 * 1024
# CloudWatch counts 26 bytes of overhead per event.
_EVENT_OVERHEAD = 26
DROPPED_MARKER = (
    "[spot-emulator] {count} older log lines were dropped: the log of a job's host is capped at "
    "{cap} bytes"
)


@dataclass
class _Stream:
    """What is kept in memory of a stream: its span of sequence numbers and a few figures."""

    group: str
    name: str
    created_ms: int
    loaded: bool = True
    first_seq: int = 0
    next_seq: int = 0
    size: int = 0  # bytes of the events kept, with CloudWatch's per-event overhead
    first_ts: int = 0
    last_ts: int = 0
    last_ingested: int = 0
    dropped: int = 0

    @property
    def empty(self) -> bool:
        return self.next_seq == self.first_seq


def _token(direction: str, index: int) -> str:
    return f"{direction}/{index:020d}/s"


def _parse_token(token: str) -> tuple[str, int]:
    parts = token.split("/")
    if len(parts) != 3 or parts[0] not in ("f", "b") or not parts[1].isdigit():
        raise LogsInvalidParameterError("The specified nextToken is invalid.")
    return parts[0], int(parts[1])


def _clip(message: str) -> str:
    raw = message.encode("utf-8")
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")


class LogStore:
    """Log streams in memory, persisted in the :class:`Store`; loaded lazily per stream.

    :param store: the SQLite store.
    :param region: AWS region for stream ARNs.
    :param account: AWS account for stream ARNs.
    :param cap_bytes: the largest size of one stream; older lines are dropped past it.
    """

    def __init__(
        self, store: Store, region: str, account: str, cap_bytes: int = DEFAULT_CAP_BYTES
    ) -> None:
        self._store = store
        self.cap_bytes = cap_bytes
        self._arn_prefix = f"arn:aws:logs:{region}:{account}:log-group:"
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._pending: list[EventRow] = []
        self._lock = threading.Lock()  # log sinks may be called from worker threads
        for group, name, created in store.load_streams():
            self._streams[(group, name)] = _Stream(group, name, created, loaded=False)

    def create_stream(self, name: str, group: str = LOG_GROUP) -> None:
        """Create a stream if it does not exist.

        :param name: the stream name.
        :param group: the log group.
        """
        with self._lock:
            if (group, name) not in self._streams:
                now = int(time.time() * 1000)
                self._streams[(group, name)] = _Stream(group, name, now)
                self._store.add_stream(group, name, now)

    def append(self, stream: str, message: str, group: str = LOG_GROUP) -> None:
        """Append one event stamped now (never before the stream's last event).

        :param stream: the stream name (created if missing).
        :param message: the line, without its newline.
        :param group: the log group.
        """
        self.create_stream(stream, group)
        with self._lock:
            target = self._loaded(group, stream)
            now = int(time.time() * 1000)
            stamp = max(now, target.last_ts)
            text = _clip(message)
            if target.empty:
                target.first_ts = stamp
            target.last_ts, target.last_ingested = stamp, now
            self._pending.append((group, stream, target.next_seq, stamp, now, text))
            target.next_seq += 1
            target.size += len(text) + _EVENT_OVERHEAD

    def flush(self) -> None:
        """Hand the events appended since the last flush to the store (committed with it);
        drop the oldest lines of the streams past the cap."""
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return
            self._store.add_events(pending)
            for group, name in {(row[0], row[1]) for row in pending}:
                stream = self._streams[(group, name)]
                if stream.size > self.cap_bytes:
                    self._trim(stream)

    def _trim(self, stream: _Stream) -> None:
        """Drop the oldest events until a quarter of the cap is free; a marker says so."""
        target = self.cap_bytes * 3 // 4
        freed, cut, cut_ts = 0, stream.first_seq, stream.first_ts
        for seq, ts, size in self._store.event_sizes(stream.group, stream.name, stream.first_seq):
            if stream.size - freed <= target or seq >= stream.next_seq - 1:
                break
            freed += size + _EVENT_OVERHEAD
            cut, cut_ts = seq, ts
        # The last dropped event's seq holds the marker, so that seqs stay contiguous.
        count = cut - stream.first_seq + 1 + stream.dropped - (1 if stream.dropped else 0)
        marker = DROPPED_MARKER.format(count=count, cap=self.cap_bytes)
        self._store.drop_events(stream.group, stream.name, cut)
        self._store.add_events([(stream.group, stream.name, cut, cut_ts, cut_ts, marker)])
        stream.dropped = count
        stream.first_seq, stream.first_ts = cut, cut_ts
        stream.size -= freed
        stream.size += len(marker) + _EVENT_OVERHEAD

    def _loaded(self, group: str, name: str) -> _Stream:
        stream = self._streams[(group, name)]
        if not stream.loaded:
            span = self._store.stream_span(group, name)
            if span is not None:
                first, last, size, first_ts, last_ts, ingested = span
                stream.first_seq, stream.next_seq, stream.size = first, last + 1, size
                stream.size += (last + 1 - first) * _EVENT_OVERHEAD
                stream.first_ts, stream.last_ts, stream.last_ingested = first_ts, last_ts, ingested
                stream.dropped = _dropped_count(
                    self._store.load_events(group, name, first, first + 1)
                )
            stream.loaded = True
        return stream

    def _group_name(self, params: Mapping[str, Any]) -> str:
        group = params.get("logGroupName") or params.get("logGroupIdentifier")
        if not group:
            raise LogsInvalidParameterError(
                "Either logGroupName or logGroupIdentifier is required."
            )
        group = str(group)
        if group.startswith(self._arn_prefix):
            group = group[len(self._arn_prefix) :].removesuffix(":*")
        if not any(g == group for g, _ in self._streams):
            raise LogsResourceNotFoundError("The specified log group does not exist.")
        return group

    def describe_log_streams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``DescribeLogStreams``.

        :param params: the request (logGroupName, logStreamNamePrefix, orderBy, descending,
            nextToken, limit).
        """
        with self._lock:
            group = self._group_name(params)
            prefix = str(params.get("logStreamNamePrefix") or "")
            order_by = params.get("orderBy") or "LogStreamName"
            if order_by == "LastEventTime" and prefix:
                raise LogsInvalidParameterError(
                    "Cannot order by LastEventTime with a logStreamNamePrefix."
                )
            streams = [
                self._loaded(g, n) for g, n in self._streams if g == group and n.startswith(prefix)
            ]
            if order_by == "LastEventTime":
                streams.sort(key=lambda s: (0 if s.empty else s.last_ts, s.name))
            else:
                streams.sort(key=lambda s: s.name)
            if params.get("descending"):
                streams.reverse()
            start = _decode_offset(params.get("nextToken"))
            limit = int(params.get("limit") or DEFAULT_STREAMS_LIMIT)
            page = streams[start : start + limit]
            result: dict[str, Any] = {"logStreams": [self._describe(s) for s in page]}
            if start + limit < len(streams):
                result["nextToken"] = _encode_offset(start + limit)
            return result

    def _describe(self, stream: _Stream) -> dict[str, Any]:
        item: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.created_ms,
            "arn": f"{self._arn_prefix}{stream.group}:log-stream:{stream.name}",
            "storedBytes": 0,  # deprecated by AWS, always 0
        }
        if not stream.empty:
            item["firstEventTimestamp"] = stream.first_ts
            item["lastEventTimestamp"] = stream.last_ts
            item["lastIngestionTime"] = stream.last_ingested
        return item

    def get_log_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``GetLogEvents``.

        :param params: the request (logGroupName, logStreamName, startTime, endTime, nextToken,
            limit, startFromHead).
        """
        self.flush()  # the events of this tick too
        with self._lock:
            group = self._group_name(params)
            name = str(params.get("logStreamName") or "")
            if (group, name) not in self._streams:
                raise LogsResourceNotFoundError("The specified log stream does not exist.")
            stream = self._loaded(group, name)
            low, high = self._bounds(stream, params.get("startTime"), params.get("endTime"))
            limit = int(params.get("limit") or DEFAULT_EVENTS_LIMIT)
            token = params.get("nextToken")
            if token:
                direction, index = _parse_token(str(token))
            else:
                direction, index = ("f", low) if params.get("startFromHead") else ("b", high)
            if direction == "f":
                first = min(max(index, low), high)
                last = min(first + limit, high)
            else:
                last = max(min(index, high), low)
                first = max(last - limit, low)
            events = [
                {"timestamp": ts, "message": message, "ingestionTime": ingested}
                for ts, ingested, message in self._store.load_events(group, name, first, last)
            ]
            forward = token if (token and direction == "f" and not events) else _token("f", last)
            return {
                "events": events,
                "nextForwardToken": forward,
                "nextBackwardToken": _token("b", first),
            }

    def _bounds(self, stream: _Stream, start: Any, end: Any) -> tuple[int, int]:
        """The seqs ``[low, high)`` of a stream's events in ``[startTime, endTime)``."""
        low, high = stream.first_seq, stream.next_seq
        if start:
            found = self._store.first_seq_at(stream.group, stream.name, int(start))
            low = high if found is None else max(low, found)
        if end is not None:
            found = self._store.first_seq_at(stream.group, stream.name, int(end))
            high = high if found is None else max(low, found)
        return low, max(low, high)


def _dropped_count(first_events: list[tuple[int, int, str]]) -> int:
    """How many lines a stream's first event, when it is the marker, says were dropped."""
    prefix = DROPPED_MARKER.split("{count}", 1)[0]
    for _ts, _ingested, message in first_events:
        count = message[len(prefix) :].split(" ", 1)[0]
        if message.startswith(prefix) and count.isdigit():
            return int(count)
    return 0


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"streams:{offset}".encode()).decode()


def _decode_offset(token: Any) -> int:
    if not token:
        return 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(str(token).encode()).decode().partition(":")
        if kind == "streams" and offset.isdigit():
            return int(offset)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise LogsInvalidParameterError("The specified nextToken is invalid.")
