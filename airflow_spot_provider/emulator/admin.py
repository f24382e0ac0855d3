"""A small client of the admin API (``/_emulator/``), for tests and chaos experiments.

Plain ``urllib`` so that it works against any running emulator, in-process or ``spot-emulator
serve`` on another terminal. Every call carries the run's admin token: ``SpotEmulator.admin``
passes it; for a served emulator, :meth:`AdminClient.for_data_dir` reads it from the data dir.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

TOKEN_HEADER = "X-Spot-Emulator-Token"


class AdminApiError(RuntimeError):
    """The admin API refused a request.

    :param status: the HTTP status.
    :param message: the emulator's message.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    """Calls of the admin API of one emulator.

    :param endpoint_url: the emulator's endpoint (``http://127.0.0.1:4599``).
    :param token: the run's admin token (printed by ``spot-emulator serve``).
    :param timeout: seconds per call.
    """

    def __init__(self, endpoint_url: str, token: str, timeout: float = 10.0) -> None:
        self.base = endpoint_url.rstrip("/") + "/_emulator"
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_data_dir(cls, endpoint_url: str, data_dir: Path | str) -> AdminClient:
        """A client of the emulator serving ``data_dir``, with the token it wrote there.

        :param endpoint_url: the emulator's endpoint.
        :param data_dir: its ``--data-dir``.
        """
        token = (Path(data_dir) / "admin-token").read_text(encoding="utf-8").strip()
        return cls(endpoint_url, token)

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", TOKEN_HEADER: self.token},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("message", err.reason)
            except ValueError:
                message = err.reason
            raise AdminApiError(err.code, str(message)) from err

    def health(self) -> dict[str, Any]:
        """``GET /_emulator/health``."""
        return self._call("GET", "/health")

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: API calls per operation."""
        return self._call("GET", "/stats")

    def events(
        self, since: int = 0, job: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """``GET /_emulator/events``.

        :param since: only events after this sequence number.
        :param job: only this job's events.
        :param kind: only events of this kind (``transition``, ``interrupt``...).
        """
        query = {"since": str(since)}
        query.update({k: v for k, v in (("job", job), ("kind", kind)) if v is not None})
        events: list[dict[str, Any]] = self._call(
            "GET", "/events?" + urllib.parse.urlencode(query)
        )["events"]
        return events

    def interrupt(self, job: str) -> dict[str, Any]:
        """Interrupt a spot job's instances now.

        :param job: the job name.
        """
        return self._call("POST", f"/jobs/{urllib.parse.quote(job, safe='')}/interrupt", {})

    def fail(self, job: str, start: int | None = None) -> dict[str, Any]:
        """Inject an internal error into a live job, or into its ``start``-th start.

        :param job: the job name (a glob with ``start``).
        :param start: the start number, or None for now.
        """
        body: dict[str, Any] = {"job": job}
        if start is not None:
            body["start"] = start
        return self._call("POST", "/fail", body)

    def set_capacity(
        self, instance_type: str, available: bool | None, after_interruption_of: str | None = None
    ) -> dict[str, Any]:
        """Force capacity of an instance type on or off; None hands it back to the models.

        :param instance_type: e.g. ``ml.m5.large``.
        :param available: the forced state, or None.
        :param after_interruption_of: a job glob: with ``available=False``, capacity goes only
            when a matching job is interrupted, in the same step (no watcher can be late).
        """
        body: dict[str, Any] = {"instance_type": instance_type, "available": available}
        if after_interruption_of is not None:
            body["after_interruption_of"] = after_interruption_of
        return self._call("POST", "/capacity", body)

    def load_scenario(self, spec: Any, replace: bool = False) -> int:
        """Load scenario events (times relative to now).

        :param spec: ``{"events": [...]}`` or the list of events.
        :param replace: drop the events in force first.
        """
        events = spec.get("events") if isinstance(spec, dict) else spec
        loaded: int = self._call("POST", "/scenario", {"events": events, "replace": replace})[
            "loaded"
        ]
        return loaded
