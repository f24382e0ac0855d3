"""What keeps a web page the developer visits away from the emulator's endpoints.

A page can send requests to ``127.0.0.1`` (a form POST, ``fetch`` in ``no-cors`` mode) or reach
it under its own name (DNS rebinding). So every endpoint (SageMaker, admin, S3) answers only
requests whose ``Host`` is a name or address it serves on loopback, and that carry no
``Origin`` of another site; no endpoint sends CORS headers, so a browser never lets a page read an
answer nor send a request that needs a preflight.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
Refusal = Callable[[web.Request, str], web.StreamResponse]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _hostname(value: str) -> str:
    """The name of a ``Host`` header value (port and IPv6 brackets removed, lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    name, _sep, _port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return name.rstrip(".")


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` names an endpoint bound to ``bound`` answers.

    :param bound: the address the server binds (its own name is always allowed).
    :param extra: more names the operator allows.
    """
    return frozenset({*LOOPBACK_NAMES, _hostname(bound), *(_hostname(e) for e in extra)})


def refusal_reason(request: web.Request, hosts: frozenset[str]) -> str | None:
    """Why a request must be refused, or None when it may be served.

    :param request: the request.
    :param hosts: the allowed ``Host`` names (:func:`allowed_hosts`).
    """
    host = _hostname(request.headers.get("Host", ""))
    if host not in hosts and not host.endswith(".localhost"):
        return f"Host {host or '(none)'!r} is not a name this endpoint serves"
    origin = request.headers.get("Origin")
    if origin is not None:
        origin_host = urlsplit(origin).hostname or ""
        if not _is_loopback(origin_host.lower()):
            return f"requests from the web origin {origin!r} are not accepted"
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "cross-site requests from a browser are not accepted"
    if request.method == "OPTIONS":
        return "CORS is off: no preflight is answered"
    return None


def guard_middleware(hosts: frozenset[str], refuse: Refusal) -> Middleware:
    """An aiohttp middleware that answers ``refuse(request, reason)`` to a refused request.

    :param hosts: the allowed ``Host`` names.
    :param refuse: builds the protocol's 403 answer.
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        reason = refusal_reason(request, hosts)
        if reason is not None:
            return refuse(request, reason)
        return await handler(request)

    return guard
