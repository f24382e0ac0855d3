"""Typed errors of the provider. Each carries the data a caller needs, not just a message."""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport


class SpotProviderError(Exception):
    """Base of every error this provider raises."""


class _ShortRepr(reprlib.Repr):
    """``reprlib`` limits (depth, entries, characters), and huge ints told by their size.

    ``repr`` of an int past 4300 digits raises ValueError (Python 3.11's conversion limit), so an
    int that large is never converted; ``reprlib`` already bounds nesting and self-references.
    """

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 60, 60, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<int of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_SHORT_REPR: Final = _ShortRepr()
_SHOWN_FIELD_CHARS: Final = 200
_SHOWN_VIOLATIONS: Final = 50


def _printable(text: str) -> str:
    """``text`` with lone surrogates escaped, so that a log file in UTF-8 can take it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown(value: object, limit: int = 80) -> str:
    """A short, printable repr of any value: huge, deep, self-referencing or badly behaved.

    :param value: what to show.
    :param limit: the most characters to return.
    """
    text = _printable(_SHORT_REPR.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Violation:
    """One broken rule of a training job request.

    :param field: dotted path of the field, e.g. ``StoppingCondition.MaxWaitTimeInSeconds``.
    :param value: the offending value (None where the field is missing).
    :param rule: the rule, in words.
    """

    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        field = _printable(self.field)
        if len(field) > _SHOWN_FIELD_CHARS:
            field = field[: _SHOWN_FIELD_CHARS - 3] + "..."
        return f"{field}={shown(self.value)}: {_printable(self.rule)}"

    def __repr__(self) -> str:
        return (
            f"Violation({self.field!r:.{_SHOWN_FIELD_CHARS}}, {shown(self.value)}, {self.rule!r})"
        )


class SpotRequestValidationError(SpotProviderError, ValueError):
    """A CreateTrainingJob request broke one or more rules; raised before any API call.

    :param violations: every broken rule, not only the first.
    """

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        lines = [f"  - {v}" for v in self.violations[:_SHOWN_VIOLATIONS]]
        if len(self.violations) > _SHOWN_VIOLATIONS:
            lines.append(f"  - ... and {len(self.violations) - _SHOWN_VIOLATIONS} more")
        super().__init__(
            f"Invalid spot training request ({len(self.violations)} violation(s)):\n"
            + "\n".join(lines)
        )

    @property
    def fields(self) -> frozenset[str]:
        """The fields named by the violations."""
        return frozenset(v.field for v in self.violations)


class SpotTrainingError(SpotProviderError):
    """A spot training job ended without a model and will not be resubmitted.

    :param job_name: the last attempt's job name.
    :param outcome: how the last attempt ended.
    :param reason: why no further attempt is made.
    :param attempts: the report of every attempt, oldest first.
    """

    def __init__(
        self,
        job_name: str,
        outcome: JobOutcome | None,
        reason: str,
        attempts: Sequence[SpotJobReport] = (),
    ) -> None:
        self.job_name = job_name
        self.outcome = outcome
        self.reason = reason
        self.attempts: tuple[SpotJobReport, ...] = tuple(attempts)
        ended = outcome.value if outcome is not None else "unknown"
        # Why SageMaker failed the last attempt (a missing bucket, a crashed script...).
        note = self.attempts[-1].failure_note() if self.attempts else ""
        super().__init__(
            f"Training job {job_name} ended {ended} after {len(self.attempts)} attempt(s): {reason}"
            + note
        )


class SpotApiError(SpotProviderError):
    """SageMaker kept answering with an error while a job was followed.

    :param code: the AWS error code (``ThrottlingException``, ``ValidationException``...).
    :param message: the AWS error message.
    :param job_name: the job concerned.
    """

    def __init__(self, code: str, message: str, job_name: str | None = None) -> None:
        self.code = code
        self.message = message
        self.job_name = job_name
        on = f" on {job_name}" if job_name else ""
        super().__init__(f"SageMaker error{on}: {code}: {message}")


class SpotConfigurationError(SpotProviderError, ValueError):
    """The task's AWS connection cannot reach SageMaker as configured; raised before any call.

    :param field: what is missing or wrong, e.g. ``region_name``.
    :param value: the value found.
    :param rule: what it must be, and where to set it.
    """

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}={shown(value)}: {rule}")


def no_region_error(aws_conn_id: str | None) -> SpotConfigurationError:
    """The error for an AWS connection that gives no region (botocore's ``NoRegionError``).

    :param aws_conn_id: the task's AWS connection id.
    """
    connection = f"the AWS connection {aws_conn_id!r}" if aws_conn_id else "the AWS connection"
    rule = (
        "no AWS region: set region_name on the operator or sensor, or region_name in the extra"
        f" of {connection} (or AWS_DEFAULT_REGION where the task runs)"
    )
    return SpotConfigurationError("region_name", None, rule)
