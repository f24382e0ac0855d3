"""Telling a passing AWS error (retry later) from a lasting one (give up), in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# AWS error codes that say "try again later": never a reason to fail a task.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class ApiCallError(Exception):
    """An AWS API call failed.

    :param code: the AWS error code, or the exception class name for other errors.
    :param message: the error message.
    :param transient: whether waiting and retrying is the right answer.
    """

    def __init__(self, code: str, message: str, transient: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient


def _network_errors() -> tuple[type[BaseException], ...]:
    """Errors of the connection, not of the request: waiting is the answer."""
    from aiohttp import ClientError as AiohttpClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return (
        BotoConnectionError,
        HTTPClientError,
        AiohttpClientError,
        asyncio.TimeoutError,
        ConnectionError,
    )


def classify_api_error(error: BaseException) -> ApiCallError:
    """Classify an exception raised by a (aio)botocore call, on its code and HTTP status only.

    :param error: the exception.
    """
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = str(response["Error"].get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(response["Error"].get("Message", ""))
        return ApiCallError(code, message, code in TRANSIENT_CODES or status >= 500)
    # Connection refused, timeouts, closed connections: the network, not the request. Anything
    # else (no credentials, no region, a bad parameter) will not mend by waiting.
    transient = isinstance(error, _network_errors())
    return ApiCallError(type(error).__name__, str(error), transient=transient)


def is_api_error(error: BaseException) -> bool:
    """Whether an exception comes from an AWS call (an answer or the network), not from a bug.

    :param error: the exception.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(error, (ClientError, BotoCoreError, ApiCallError, *_network_errors()))


@dataclass(frozen=True)
class ApiRetryRule:
    """When to try an AWS call again: the one rule of the worker, the sensor and the trigger.

    Transient errors (throttling, 5xx, the network) are waited out for as long as they last, with
    a doubling backoff; lasting ones (access denied, a bad request) fail after ``max_lasting``
    tries. Pure: it looks at the errors of one call so far, the adapters do the waiting.

    :param max_lasting: lasting errors after which the call fails.
    :param initial_seconds: the first wait.
    :param max_seconds: the longest wait.
    """

    max_lasting: int = 3
    initial_seconds: float = 1.0
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_lasting, bool) or not isinstance(self.max_lasting, int):
            raise ValueError(f"max_lasting={self.max_lasting!r}: must be an int >= 1")
        if self.max_lasting < 1:
            raise ValueError(f"max_lasting={self.max_lasting!r}: must be an int >= 1")
        if not 0 < self.initial_seconds <= self.max_seconds:
            raise ValueError(
                f"initial_seconds={self.initial_seconds!r}: must be > 0 and <= max_seconds"
                f" ({self.max_seconds!r})"
            )

    def wait_seconds(self, errors: Sequence[ApiCallError]) -> float | None:
        """How long to wait before the next try, or None to give up.

        :param errors: the errors of this call so far, oldest first (at least one).
        """
        if sum(1 for e in errors if not e.transient) >= self.max_lasting:
            return None
        return float(min(self.max_seconds, self.initial_seconds * 2 ** min(len(errors) - 1, 16)))

    def tries(self, job_name: str | None, *, lasting: int | None = None) -> ApiTries:
        """A counter of one call's failures under this rule.

        :param job_name: the job concerned, for the error.
        :param lasting: a lower limit of lasting errors for this call (1: a create, whose
            lasting errors will not change by trying again).
        """
        if lasting is not None and lasting < self.max_lasting:
            return ApiTries(ApiRetryRule(lasting, self.initial_seconds, self.max_seconds), job_name)
        return ApiTries(self, job_name)


class ApiTries:
    """The failures of one call: each says how long to wait, or raises :class:`SpotApiError`.

    :param rule: the rule.
    :param job_name: the job concerned.
    """

    def __init__(self, rule: ApiRetryRule, job_name: str | None) -> None:
        self.rule = rule
        self.job_name = job_name
        self.errors: list[ApiCallError] = []

    def wait_after(
        self, raw: BaseException, tolerate: frozenset[str] = frozenset(), *, any_code: bool = False
    ) -> float:
        """Record a failure; the seconds to wait before trying again.

        :param raw: the exception the call raised.
        :param tolerate: error codes the caller handles itself: raised at once as ApiCallError.
        :param any_code: every API error is the caller's (a best-effort call).
        :raises ApiCallError: for a tolerated code.
        :raises SpotApiError: when the rule gives up.
        :raises SpotConfigurationError: when the client has no region.
        """
        from botocore.exceptions import NoRegionError

        from airflow_spot_provider.exceptions import SpotApiError, no_region_error

        if isinstance(raw, NoRegionError):  # the connection's, not AWS's: no try will mend it
            raise no_region_error(None) from raw
        if not is_api_error(raw):
            raise raw  # a bug, not an AWS answer: trying again will not help
        error = raw if isinstance(raw, ApiCallError) else classify_api_error(raw)
        if any_code or error.code in tolerate:
            raise error from raw
        self.errors.append(error)
        wait = self.rule.wait_seconds(self.errors)
        if wait is None:
            raise SpotApiError(error.code, error.message, self.job_name) from raw
        log.warning("AWS call failed (%s); trying again in %.1f s.", error, wait)
        return wait
