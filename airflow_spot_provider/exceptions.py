"""Typed errors of the provider. Each carries the data a caller needs, not just a message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport


class SpotProviderError(Exception):
    """Base of every error this provider raises."""


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
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{self.field}={shown}: {self.rule}"


class SpotRequestValidationError(SpotProviderError, ValueError):
    """A CreateTrainingJob request broke one or more rules; raised before any API call.

    :param violations: every broken rule, not only the first.
    """

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(
            f"Invalid spot training request ({len(self.violations)} violation(s)):\n{lines}"
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
        super().__init__(
            f"Training job {job_name} ended {ended} after {len(self.attempts)} attempt(s): {reason}"
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
