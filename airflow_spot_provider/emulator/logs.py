"""CloudWatch Logs for training jobs: ``DescribeLogStreams``, ``GetLogEvents``, ``FilterLogEvents``.

Log group ``/aws/sagemaker/TrainingJobs``; one stream per host, named as SageMaker names it,
``<job>/algo-1-<epoch seconds of the first start>``. The stream is kept across spot restarts so
that a reader following it (the Amazon provider reads one stream per instance) sees every line.

Tokens follow CloudWatch's contract as botocore's users rely on it: ``nextForwardToken`` points
after the last event returned, ``nextBackwardToken`` before the first; at the end of the stream a
forward read returns the token it was given, which is how readers know to stop.

Events live on disk (the SQLite store), not in memory: a stream keeps a few figures in memory
and the events appended since the last flush. Each stream is capped (``log_cap_bytes``): past
the cap its oldest lines are dropped and the first remaining event says how many were.

Each group keeps its stream names sorted and its streams sorted by last event time
(:class:`_Group`), so that a ``DescribeLogStreams`` page costs its size, not the number of streams;
its ``nextToken`` holds the sort key of the last stream returned. ``FilterLogEvents`` reads the
events of up to 100 named streams (or of a prefix) in one SQL query by time.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
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
MAX_STREAMS_LIMIT = 50  # DescribeLogStreams' limit, 1-50 (botocore's logs model)
MAX_FILTER_LIMIT = 10_000  # FilterLogEvents' limit, 1-10,000
MAX_FILTER_STREAMS = 100  # FilterLogEvents' logStreamNames, 1-100 names
_LAST = "\U0010ffff"  # sorts after any stream name
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


@dataclass
class _Group:
    """A log group's streams, sorted by name and by last event time (0 when empty)."""

    names: list[str] = field(default_factory=list)
    by_last: list[tuple[int, str]] = field(default_factory=list)
    last: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, last_ts: int = 0) -> None:
        bisect.insort(self.names, name)
        bisect.insort(self.by_last, (last_ts, name))
        self.last[name] = last_ts

    def touch(self, name: str, last_ts: int) -> None:
        old = self.last[name]
        if old == last_ts:
            return
        index = bisect.bisect_left(self.by_last, (old, name))
        del self.by_last[index]
        bisect.insort(self.by_last, (last_ts, name))
        self.last[name] = last_ts

    def prefixed(self, prefix: str) -> tuple[int, int]:
        """The span of ``names`` that start with ``prefix``."""
        low = bisect.bisect_left(self.names, prefix)
        return low, bisect.bisect_left(self.names, prefix + _LAST) if prefix else len(self.names)


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
        self._groups: dict[str, _Group] = {}
        self._pending: list[EventRow] = []
        self._lock = threading.Lock()  # log sinks may be called from worker threads
        last_ts = store.last_event_times()
        for group, name, created in store.load_streams():
            self._streams[(group, name)] = _Stream(group, name, created, loaded=False)
            self._groups.setdefault(group, _Group()).add(name, last_ts.get((group, name), 0))

    def create_stream(self, name: str, group: str = LOG_GROUP) -> None:
        """Create a stream if it does not exist.

        :param name: the stream name.
        :param group: the log group.
        """
        with self._lock:
            if (group, name) not in self._streams:
                now = int(time.time() * 1000)
                self._streams[(group, name)] = _Stream(group, name, now)
                self._groups.setdefault(group, _Group()).add(name)
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
                self._groups[group].touch(name, stream.last_ts)
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
        if group not in self._groups:
            raise LogsResourceNotFoundError("The specified log group does not exist.")
        return group

    def describe_log_streams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``DescribeLogStreams``: a page of the group's streams by name or last event time.

        :param params: the request (logGroupName, logStreamNamePrefix, orderBy, descending,
            nextToken, limit).
        """
        self.flush()  # the last event times of this tick too
        with self._lock:
            group_name = self._group_name(params)
            group = self._groups[group_name]
            prefix = str(params.get("logStreamNamePrefix") or "")
            order_by = params.get("orderBy") or "LogStreamName"
            if order_by == "LastEventTime" and prefix:
                raise LogsInvalidParameterError(
                    "Cannot order by LastEventTime with a logStreamNamePrefix."
                )
            limit = _limit(params, DEFAULT_STREAMS_LIMIT, MAX_STREAMS_LIMIT)
            descending = bool(params.get("descending"))
            cursor = _decode_cursor(params.get("nextToken"), f"streams:{order_by}")
            keys: list[Any]
            if order_by == "LastEventTime":
                keys, low, high = group.by_last, 0, len(group.by_last)
            else:
                keys, (low, high) = group.names, group.prefixed(prefix)
            if cursor is not None:
                at = tuple(cursor) if order_by == "LastEventTime" else cursor[0]
                if descending:
                    high = max(low, min(high, bisect.bisect_left(keys, at)))
                else:
                    low = min(high, max(low, bisect.bisect_right(keys, at)))
            if descending:
                span = keys[max(low, high - limit) : high][::-1]
            else:
                span = keys[low : min(high, low + limit)]
            names = [key[1] if isinstance(key, tuple) else key for key in span]
            result: dict[str, Any] = {
                "logStreams": [self._describe(self._loaded(group_name, n)) for n in names]
            }
            if names and high - low > limit:
                last = span[-1]
                result["nextToken"] = _encode_cursor(
                    f"streams:{order_by}", list(last) if isinstance(last, tuple) else [last]
                )
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

    def filter_log_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``FilterLogEvents``: the events of several streams, interleaved by time.

        Events are ordered by (timestamp, stream, sequence); ``nextToken`` holds the last one
        returned. ``interleaved`` is deprecated by AWS (results are always interleaved) and is
        ignored; so is ``startFromHead``'s absence (always from the head). A ``filterPattern`` is
        refused: the emulator does not implement CloudWatch's pattern syntax.

        :param params: the request (logGroupName, logStreamNames, logStreamNamePrefix,
            startTime, endTime, limit, nextToken, interleaved).
        """
        self.flush()
        with self._lock:
            group = self._group_name(params)
            names = params.get("logStreamNames")
            prefix = params.get("logStreamNamePrefix")
            if names is not None and prefix is not None:
                raise LogsInvalidParameterError(
                    "logStreamNames and logStreamNamePrefix are mutually exclusive."
                )
            if names is not None and not 1 <= len(names) <= MAX_FILTER_STREAMS:
                raise LogsInvalidParameterError(
                    f"1 validation error detected: Value with {len(names)} names at "
                    "'logStreamNames' failed to satisfy constraint: Member must have length "
                    f"less than or equal to {MAX_FILTER_STREAMS}"
                )
            if params.get("filterPattern"):
                raise LogsInvalidParameterError(
                    f"filterPattern {params['filterPattern']!r} is not supported by the emulator"
                    " (give no pattern to read every event)."
                )
            limit = _limit(params, MAX_FILTER_LIMIT, MAX_FILTER_LIMIT)
            cursor = _decode_cursor(params.get("nextToken"), "events")
            rows = self._store.filter_events(
                group,
                streams=None if names is None else [str(n) for n in names],
                prefix=None if prefix is None else str(prefix),
                start=None if params.get("startTime") is None else int(params["startTime"]),
                end=None if params.get("endTime") is None else int(params["endTime"]),
                after=None if cursor is None else (int(cursor[0]), str(cursor[1]), int(cursor[2])),
                limit=limit + 1,
            )
            events = [
                {
                    "logStreamName": stream,
                    "timestamp": ts,
                    "message": message,
                    "ingestionTime": ingested,
                    "eventId": f"{ts:013d}{zlib.crc32(stream.encode()):010d}{seq:012d}",
                }
                for stream, seq, ts, ingested, message in rows[:limit]
            ]
            result: dict[str, Any] = {"events": events, "searchedLogStreams": []}
            if len(rows) > limit:
                stream, seq, ts, _ingested, _message = rows[limit - 1]
                result["nextToken"] = _encode_cursor("events", [ts, stream, seq])
            return result

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


def _limit(params: Mapping[str, Any], default: int, most: int) -> int:
    """A request's ``limit``, checked against AWS's range."""
    limit = params.get("limit")
    if limit is None:
        return default
    if not isinstance(limit, int) or not 1 <= limit <= most:
        rule = (
            f"less than or equal to {most}"
            if isinstance(limit, int) and limit > most
            else ("greater than or equal to 1")
        )
        raise LogsInvalidParameterError(
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
            f"constraint: Member must have value {rule}"
        )
    return limit


def _encode_cursor(kind: str, key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"t": kind, "k": key}).encode()).decode()


def _decode_cursor(token: Any, kind: str) -> list[Any] | None:
    """The sort key a nextToken holds (the last item returned), or None without a token."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if data["t"] == kind and isinstance(data["k"], list) and data["k"]:
            return list(data["k"])
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError):
        pass
    raise LogsInvalidParameterError("The specified nextToken is invalid.")
