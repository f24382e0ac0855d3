"""SQLite persistence of jobs and logs (stdlib ``sqlite3``, WAL journal).

One connection, used only from the emulator's event-loop thread. Writes are grouped: a creation
is committed before the API answers; transitions and log lines are committed at the end of the
tick that made them (:meth:`Store.commit`), so at most one tick of progress is lost on a crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_streams (
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (group_name, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    group_name TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (group_name, stream, seq)
) WITHOUT ROWID;
"""

JobRow = tuple[str, float, str, str]  # name, created, request JSON, state JSON
EventRow = tuple[str, str, int, int, int, str]  # group, stream, seq, ts, ingested, message


class StoreError(RuntimeError):
    """The data dir holds a store this version cannot use."""


def unusable_message(path: Path, err: Exception) -> str:
    """The one line that names a damaged state file and how to recover.

    :param path: the file.
    :param err: what SQLite said.
    """
    return (
        f"{path} is not a usable emulator state file ({err}); move it away (with its -wal and "
        f"-shm files) to start without its contents, or restore it from a copy"
    )


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """Open (or create) an SQLite file in WAL mode with ``schema`` applied.

    :param path: the file; its parent directory is created if missing.
    :param schema: ``CREATE ... IF NOT EXISTS`` statements.
    :raises StoreError: the file is not an SQLite database (or is damaged), in one line naming
        it and how to recover.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # One thread at a time uses a connection (the owner's loop); it may be another than the opener.
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the emulator, not of the machine.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
        db.commit()
    except sqlite3.DatabaseError as err:
        db.close()
        raise StoreError(unusable_message(path, err)) from err
    return db


class Store:
    """The emulator's SQLite file.

    :param path: the database file (created with its parent directory if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_database(path, _SCHEMA)
        try:
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path} has schema {version}, this emulator uses {SCHEMA_VERSION}"
                )
            self._db.commit()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise StoreError(unusable_message(path, err)) from err
        except BaseException:
            self._db.close()
            raise
        self._dirty = False

    def close(self) -> None:
        """Commit and close."""
        self.commit()
        self._db.close()

    def commit(self) -> None:
        """Commit what was written since the last commit (cheap when nothing was)."""
        if self._dirty:
            self._db.commit()
            self._dirty = False

    def get_meta(self, key: str) -> str | None:
        """A value of the meta table.

        :param key: the key.
        """
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the meta table (committed with the next :meth:`commit`).

        :param key: the key.
        :param value: the value.
        """
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        self._dirty = True

    def save_job(self, row: JobRow) -> None:
        """Insert or update a job.

        :param row: name, creation time, request JSON, state JSON.
        """
        self._db.execute(
            "INSERT INTO jobs (name, created, request, state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET state = excluded.state",
            row,
        )
        self._dirty = True

    def load_jobs(self) -> list[JobRow]:
        """Every job, oldest first."""
        rows = self._db.execute(
            "SELECT name, created, request, state FROM jobs ORDER BY created, name"
        ).fetchall()
        return [(str(n), float(c), str(r), str(s)) for n, c, r, s in rows]

    def add_stream(self, group: str, name: str, created_ms: int) -> None:
        """Record a log stream.

        :param group: the log group.
        :param name: the stream name.
        :param created_ms: creation time, epoch milliseconds.
        """
        self._db.execute(
            "INSERT OR IGNORE INTO log_streams (group_name, name, created) VALUES (?, ?, ?)",
            (group, name, created_ms),
        )
        self._dirty = True

    def load_streams(self) -> list[tuple[str, str, int]]:
        """Every log stream: group, name, creation time in ms."""
        rows = self._db.execute("SELECT group_name, name, created FROM log_streams").fetchall()
        return [(str(g), str(n), int(c)) for g, n, c in rows]

    def add_events(self, rows: Iterable[EventRow]) -> None:
        """Append log events.

        :param rows: group, stream, sequence number, timestamp ms, ingestion ms, message.
        """
        self._db.executemany(
            "INSERT OR REPLACE INTO log_events (group_name, stream, seq, ts, ingested, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        self._dirty = True

    def load_events(
        self, group: str, stream: str, first: int, last: int
    ) -> list[tuple[int, int, str]]:
        """The events of one stream with seqs in ``[first, last)``: timestamp ms, ingestion ms,
        message.

        :param group: the log group.
        :param stream: the stream name.
        :param first: the first seq.
        :param last: the seq after the last.
        """
        rows = self._db.execute(
            "SELECT ts, ingested, message FROM log_events WHERE group_name = ? AND stream = ? "
            "AND seq >= ? AND seq < ? ORDER BY seq",
            (group, stream, first, last),
        ).fetchall()
        return [(int(t), int(i), str(m)) for t, i, m in rows]

    def stream_span(self, group: str, stream: str) -> tuple[int, int, int, int, int, int] | None:
        """First seq, last seq, message bytes, first and last timestamps, last ingestion of a
        stream; None when it has no events.

        :param group: the log group.
        :param stream: the stream name.
        """
        row = self._db.execute(
            "SELECT MIN(seq), MAX(seq), SUM(LENGTH(message)), MIN(ts), MAX(ts), MAX(ingested) "
            "FROM log_events WHERE group_name = ? AND stream = ?",
            (group, stream),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        first, last, size, first_ts, last_ts, ingested = (int(v) for v in row)
        return first, last, size, first_ts, last_ts, ingested

    def event_sizes(self, group: str, stream: str, first: int) -> Iterator[tuple[int, int, int]]:
        """Seq, timestamp and message length of a stream's events from ``first`` on, in order.

        :param group: the log group.
        :param stream: the stream name.
        :param first: the first seq.
        """
        cursor = self._db.execute(
            "SELECT seq, ts, LENGTH(message) FROM log_events WHERE group_name = ? AND stream = ? "
            "AND seq >= ? ORDER BY seq",
            (group, stream, first),
        )
        for seq, ts, size in cursor:
            yield int(seq), int(ts), int(size)

    def drop_events(self, group: str, stream: str, through: int) -> None:
        """Delete a stream's events up to seq ``through`` included.

        :param group: the log group.
        :param stream: the stream name.
        :param through: the last seq deleted.
        """
        self._db.execute(
            "DELETE FROM log_events WHERE group_name = ? AND stream = ? AND seq <= ?",
            (group, stream, through),
        )
        self._dirty = True

    def first_seq_at(self, group: str, stream: str, ts: int) -> int | None:
        """The seq of a stream's first event stamped at or after ``ts``, or None.

        :param group: the log group.
        :param stream: the stream name.
        :param ts: epoch milliseconds.
        """
        row = self._db.execute(
            "SELECT MIN(seq) FROM log_events WHERE group_name = ? AND stream = ? AND ts >= ?",
            (group, stream, ts),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])
