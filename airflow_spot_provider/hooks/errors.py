"""Telling a passing AWS error (retry later) from a lasting one (give up), in one place."""

from __future__ import annotations

import asyncio

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


class ApiErrorBudget:
    """Counts consecutive lasting errors and spaces out retries.

    :param max_errors: consecutive non-transient errors after which to give up.
    """

    def __init__(self, max_errors: int) -> None:
        self.max_errors = max_errors
        self.lasting = 0
        self.consecutive = 0

    def exhausted(self, error: ApiCallError) -> bool:
        """Record an error; True when it is time to give up.

        :param error: the classified error.
        """
        self.consecutive += 1
        if not error.transient:
            self.lasting += 1
        return self.lasting >= self.max_errors

    def backoff_seconds(self, interval: float) -> float:
        """Wait before the next try: doubling from ``interval``, at most 5 minutes.

        :param interval: the normal interval between calls.
        """
        return float(min(300.0, interval * 2 ** min(self.consecutive - 1, 8)))

    def reset(self) -> None:
        """A call succeeded."""
        self.lasting = 0
        self.consecutive = 0
