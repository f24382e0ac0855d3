"""AWS-shaped errors of the emulator.

Each error class carries the AWS error code as a class-level ``code`` (as moto does) and the HTTP
status. On the wire an error is JSON 1.1: ``{"__type": code, "message": message}``, which botocore
turns into a ``ClientError`` whose ``Error.Code`` is ``code`` and ``Error.Message`` is ``message``.
"""

from __future__ import annotations

import json
from typing import ClassVar

# Wording of the service (SAGEMAKER_FACTS.md), kept together so that a change is one edit.
NOT_FOUND_MESSAGE = "Requested resource not found."
DUPLICATE_NAME_MESSAGE = (
    "Training job names must be unique within an AWS account and region, and a training job "
    "with this name already exists ({arn})"
)
STOP_REJECTED_MESSAGE = "The request was rejected because the training job is in status {status}."
QUOTA_MESSAGE = (
    "The account-level service limit '{instance_type} for {usage} usage' is {limit} Instances, "
    "with current utilization of {current} Instances and a request delta of {delta} Instances. "
    "Please contact AWS support to request an increase for this limit."
)
THROTTLE_MESSAGE = "Rate exceeded"


class EmulatorError(Exception):
    """Base of the errors answered to a client.

    :param message: the ``message`` of the error response.
    :param http_status: the HTTP status, when not the class's ``status``.
    """

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 400

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = self.status if http_status is None else http_status

    def to_body(self) -> bytes:
        """The JSON 1.1 error body."""
        return json.dumps({"__type": self.code, "message": self.message}).encode()


class ValidationError(EmulatorError):
    """An invalid request; also SageMaker's answer for an unknown job."""

    code = "ValidationException"


class ResourceInUseError(EmulatorError):
    """A training job with this name exists already."""

    code = "ResourceInUse"


class ResourceLimitExceededError(EmulatorError):
    """The request would go past a per-instance-type quota."""

    code = "ResourceLimitExceeded"


class ThrottlingError(EmulatorError):
    """The operation's request rate was exceeded."""

    code = "ThrottlingException"

    def __init__(self, message: str = THROTTLE_MESSAGE) -> None:
        super().__init__(message)


class SerializationError(EmulatorError):
    """The request body is not a JSON object."""

    code = "SerializationException"


class UnknownOperationError(EmulatorError):
    """The ``X-Amz-Target`` names no operation the emulator serves."""

    code = "UnknownOperationException"


class RequestTooLargeError(EmulatorError):
    """The request body is larger than the configured limit.

    Answered with HTTP 400 as the issue asks (a clear client error the server survives).
    """

    code = "RequestEntityTooLargeException"


class AccessDeniedError(EmulatorError):
    """A request refused before it is read (foreign Host or Origin)."""

    code = "AccessDeniedException"
    status = 403


class InternalFailureError(EmulatorError):
    """A bug in the emulator; the server keeps serving."""

    code = "InternalFailure"
    status = 500


class LogsResourceNotFoundError(EmulatorError):
    """CloudWatch Logs: the log group or stream does not exist."""

    code = "ResourceNotFoundException"


class LogsInvalidParameterError(EmulatorError):
    """CloudWatch Logs: a parameter is invalid (token, ordering...)."""

    code = "InvalidParameterException"


class AdminError(EmulatorError):
    """An admin API request that cannot be honoured (404 unknown job, 409 wrong state...)."""

    code = "AdminError"
