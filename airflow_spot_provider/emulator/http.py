"""The HTTP layer (aiohttp): AWS JSON 1.1 on ``POST /``, the admin API under ``/_emulator/``.

``X-Amz-Target: SageMaker.<Operation>`` and ``Logs_20140328.<Operation>`` select the operation.
Requests may be signed or not: the ``Authorization`` header is never read, logged nor stored.
Every error is answered in the protocol's shape (unknown paths and methods too) and the server
keeps serving. Every request passes :mod:`.guard` (loopback ``Host``, no foreign ``Origin``);
admin calls also need this run's token (``X-Spot-Emulator-Token``) and, with a body, JSON.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web

from airflow_spot_provider.emulator.admin import TOKEN_HEADER
from airflow_spot_provider.emulator.backend import Backend
from airflow_spot_provider.emulator.errors import (
    AccessDeniedError,
    AdminError,
    EmulatorError,
    InternalFailureError,
    RequestTooLargeError,
    SerializationError,
    ThrottlingError,
    UnknownOperationError,
)
from airflow_spot_provider.emulator.guard import allowed_hosts, guard_middleware
from airflow_spot_provider.emulator.jobs import wall_clock
from airflow_spot_provider.emulator.scenario import ScenarioError

log = logging.getLogger(__name__)

JSON_11 = "application/x-amz-json-1.1"
Operation = Callable[[dict[str, Any]], dict[str, Any]]
BACKEND_KEY: web.AppKey[Backend] = web.AppKey("backend", Backend)
TOKEN_KEY: web.AppKey[str] = web.AppKey("admin_token", str)
# Deeper than any request shape of botocore's models; json.loads would recurse ~1,000 deep.
MAX_NESTING = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _operations(backend: Backend) -> dict[str, Operation]:
    api, logs = backend.api, backend.logs
    return {
        "SageMaker.CreateTrainingJob": api.create_training_job,
        "SageMaker.DescribeTrainingJob": api.describe_training_job,
        "SageMaker.StopTrainingJob": api.stop_training_job,
        "SageMaker.ListTrainingJobs": api.list_training_jobs,
        "Logs_20140328.DescribeLogStreams": logs.describe_log_streams,
        "Logs_20140328.GetLogEvents": logs.get_log_events,
        "Logs_20140328.FilterLogEvents": logs.filter_log_events,
    }


def _aws_response(body: bytes, status: int = 200) -> web.Response:
    # Date as AWS sends it (RFC 7231, to the second), from the clock that stamps the jobs' times:
    # the shared watch lists from it.
    return web.Response(
        body=body,
        status=status,
        headers={
            "Content-Type": JSON_11,
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Date": formatdate(wall_clock(), usegmt=True),
        },
    )


def _error(err: EmulatorError) -> web.Response:
    return _aws_response(err.to_body(), err.http_status)


async def _read_params(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError(
            f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes"
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes") from err
    check_nesting(body)
    try:
        params = json.loads(body or b"{}")
    except ValueError as err:
        raise SerializationError(f"Request body is not valid JSON: {err}") from err
    if not isinstance(params, dict):
        raise SerializationError("Request body must be a JSON object")
    return params


def check_nesting(body: bytes) -> None:
    """Refuse a JSON body nested deeper than :data:`MAX_NESTING` before it is parsed.

    :param body: the request body.
    :raises SerializationError: too deep.
    """
    depth = deepest = 0
    for bracket in _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise SerializationError(
            f"Request body nests {deepest} levels deep; at most {MAX_NESTING} are accepted"
        )


class AwsHandler:
    """``POST /``: dispatch on ``X-Amz-Target``, throttle, count, answer.

    :param backend: the emulator backend.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.operations = _operations(backend)

    async def __call__(self, request: web.Request) -> web.Response:
        """Serve one AWS call.

        :param request: the HTTP request.
        """
        target = request.headers.get("X-Amz-Target", "")
        operation = self.operations.get(target)
        name = target.rpartition(".")[2] or "<none>"
        try:
            params = await _read_params(request, self.backend.config.max_body_bytes)
            if operation is None:
                raise UnknownOperationError(
                    f"Operation {target or '(no X-Amz-Target header)'} is not supported by the "
                    f"spot emulator; supported: {', '.join(sorted(self.operations))}"
                )
            if not self.backend.throttler.allow(name, time.monotonic()):
                self.backend.events.record("throttle", operation=name)
                raise ThrottlingError()
            result = operation(params)
        except EmulatorError as err:
            self.backend.events.count_call(target or "<none>", err.code)
            return _error(err)
        except Exception:
            log.exception("%s failed", target)
            self.backend.events.count_call(target, InternalFailureError.code)
            return _error(InternalFailureError("The spot emulator failed on this request"))
        self.backend.events.count_call(target)
        return _aws_response(json.dumps(result).encode())


def _admin(
    handler: Callable[[Backend, web.Request], Awaitable[dict[str, Any]]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        backend = request.app[BACKEND_KEY]
        try:
            _check_admin(request)
            result = await handler(backend, request)
        except EmulatorError as err:
            status = err.http_status
            return web.json_response({"error": err.code, "message": err.message}, status=status)
        return web.json_response(result)

    return wrapped


def _check_admin(request: web.Request) -> None:
    """Refuse an admin call without this run's token, or whose body is not declared JSON.

    :param request: the admin request.
    :raises AdminError: 403 (token) or 415 (content type).
    """
    if request.path == "/_emulator/health":
        return  # liveness only: no token, so that scripts can wait for the server
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), request.app[TOKEN_KEY].encode()):
        raise AdminError(
            f"the admin API needs this run's token in the {TOKEN_HEADER} header "
            "(printed by spot-emulator serve, written to <data-dir>/admin-token; "
            "SpotEmulator.admin sends it)",
            403,
        )
    if request.method == "POST" and request.content_type != "application/json":
        raise AdminError(
            f"admin calls take a JSON body (Content-Type: application/json), "
            f"got {request.content_type!r}",
            415,
        )


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read() if request.can_read_body else b""
    try:
        check_nesting(raw)
    except SerializationError as err:
        raise AdminError(err.message, 400) from err
    try:
        body = json.loads(raw) if raw else {}
    except ValueError as err:
        raise AdminError(f"body is not valid JSON: {err}", 400) from err
    if not isinstance(body, dict):
        raise AdminError("body must be a JSON object", 400)
    return body


async def _health(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.health()


async def _events(backend: Backend, request: web.Request) -> dict[str, Any]:
    query = request.query
    try:
        since = int(query.get("since", "0"))
    except ValueError as err:
        raise AdminError("since must be an integer", 400) from err
    events = backend.events.events(since=since, job=query.get("job"), kind=query.get("kind"))
    return {"events": events, **backend.events.stats()}


async def _stats(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.events.stats()


async def _interrupt(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.interrupt(request.match_info["name"])


async def _fail_job(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.fail({"job": request.match_info["name"]})


async def _fail(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.fail(await _json_body(request))


async def _capacity(backend: Backend, request: web.Request) -> dict[str, Any]:
    return backend.set_capacity(await _json_body(request))


async def _scenario(backend: Backend, request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    try:
        loaded = backend.load_scenario(body, replace=bool(body.get("replace")))
    except ScenarioError as err:
        raise AdminError(str(err), 400) from err
    return {"loaded": loaded}


def _refuse(request: web.Request, reason: str) -> web.Response:
    err = AccessDeniedError(f"Access denied: {reason}")
    if request.path.startswith("/_emulator/"):
        return web.json_response({"error": err.code, "message": err.message}, status=403)
    return _error(err)


@web.middleware
async def _aws_shaped(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and methods answer in the protocol's shape, not aiohttp's plain text."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        err: EmulatorError = UnknownOperationError(
            f"No operation at {request.method} {request.path}; the SageMaker and CloudWatch "
            "Logs operations are POST / with X-Amz-Target",
            404,
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        err = UnknownOperationError(
            f"Method {request.method} is not allowed on {request.path} (allowed: {allowed})",
            405,
        )
    else:
        return response
    if request.path.startswith("/_emulator/"):
        return web.json_response(
            {"error": err.code, "message": err.message}, status=err.http_status
        )
    return _error(err)


def build_app(backend: Backend, admin_token: str) -> web.Application:
    """The aiohttp application of the emulator.

    :param backend: the emulator backend.
    :param admin_token: the token admin calls must carry.
    """
    hosts = allowed_hosts(backend.config.host, backend.config.allowed_hosts)
    app = web.Application(
        client_max_size=backend.config.max_body_bytes,
        middlewares=[guard_middleware(hosts, _refuse), _aws_shaped],
    )
    app[BACKEND_KEY] = backend
    app[TOKEN_KEY] = admin_token
    app.router.add_get("/_emulator/health", _admin(_health))
    app.router.add_get("/_emulator/events", _admin(_events))
    app.router.add_get("/_emulator/stats", _admin(_stats))
    app.router.add_post("/_emulator/jobs/{name}/interrupt", _admin(_interrupt))
    app.router.add_post("/_emulator/jobs/{name}/fail", _admin(_fail_job))
    app.router.add_post("/_emulator/fail", _admin(_fail))
    app.router.add_post("/_emulator/capacity", _admin(_capacity))
    app.router.add_post("/_emulator/scenario", _admin(_scenario))
    app.router.add_post("/", AwsHandler(backend))
    return app
