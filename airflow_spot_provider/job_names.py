"""Deterministic TrainingJobNames for the attempts of a task instance.

The same task instance and attempt give the same name on every Airflow retry, so a retry finds
its job again; every name is valid for SageMaker whatever the ids it is made of.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation

JOB_NAME_MAX_CHARS: Final = 63
_NAME_HASH_CHARS: Final = 8
_BASE_PREFIX_CHARS: Final = 40
# A user's job_name starts every name of the chain as it is: <job_name>-<12 hex>-a<attempt>.
JOB_NAME_PREFIX_MAX_CHARS: Final = _BASE_PREFIX_CHARS
JOB_NAME_PREFIX_PATTERN: Final = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_BASE_HASH_CHARS: Final = 12
_MAX_ATTEMPT: Final = 10**40  # so that prefix, hash and suffix always fit in 63 characters


def _name_part(text: str) -> str:
    """Letters and digits of ``text``, every other run of characters as one hyphen."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:chars]


def attempt_job_name(base: str, attempt: int) -> str:
    """The TrainingJobName of one attempt: ``<base>-a<attempt>``, always valid for SageMaker.

    A base that is not already a clean name (other characters, too long, empty) becomes a
    readable prefix plus a short hash of the whole base, so distinct bases keep distinct names.

    :param base: any text, e.g. from :func:`task_job_base_name`.
    :param attempt: the attempt number, from 1.
    :raises ValueError: if ``attempt`` is not an int in 1..10**40 - 1.
    """
    is_int = isinstance(attempt, int) and not isinstance(attempt, bool)  # True is no attempt 1
    if not is_int or not 1 <= attempt < _MAX_ATTEMPT:
        raise ValueError(f"attempt must be an int in 1..10**40 - 1, not {attempt!r}")
    suffix = f"-a{attempt}"
    clean = _name_part(base)
    if clean and clean == base and len(clean) + len(suffix) <= JOB_NAME_MAX_CHARS:
        return clean + suffix
    keep = JOB_NAME_MAX_CHARS - len(suffix) - _NAME_HASH_CHARS - 1
    prefix = (clean or "job")[:keep].rstrip("-")
    return f"{prefix}-{_digest(base, _NAME_HASH_CHARS)}{suffix}"


def task_job_base_name(
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int = -1,
    prefix: str | None = None,
    clear_number: int = 0,
) -> str:
    """The base job name of one task instance: the same on every retry, distinct between runs.

    :param dag_id: the DAG id.
    :param task_id: the task id.
    :param run_id: the DAG run id.
    :param map_index: the map index of a mapped task (-1 when not mapped).
    :param prefix: a readable prefix instead of the task id.
    :param clear_number: the DAG run's ``clear_number``: a retry keeps it, a clear (a user asking
        for a new run of the task) increments it and so starts a new chain of jobs.
    """
    readable = _name_part(prefix or task_id)[:_BASE_PREFIX_CHARS].rstrip("-") or "job"
    key: list[object] = [dag_id, task_id, run_id, map_index]
    if clear_number:  # names of never-cleared runs stay what they always were
        key.append(clear_number)
    identity = json.dumps(key)
    return f"{readable}-{_digest(identity, _BASE_HASH_CHARS)}"


def check_job_name_prefix(job_name: object) -> None:
    """Refuse a ``job_name`` (the readable start of a chain's names) that would be rewritten.

    A task id may hold characters no job name takes and is rewritten; a ``job_name`` the user
    chose is used as given (a run of hyphens becomes one), or refused.

    :param job_name: the operator's ``job_name``; None (the task id is used) passes.
    :raises SpotRequestValidationError: naming ``job_name``, its value and the rule.
    """
    if job_name is None:
        return
    if not isinstance(job_name, str):
        rule = "must be a string: the readable start of the job names"
    elif len(job_name) > JOB_NAME_PREFIX_MAX_CHARS:
        rule = (
            f"must be at most {JOB_NAME_PREFIX_MAX_CHARS} characters, not {len(job_name)}: job"
            f" names are <job_name>-<{_BASE_HASH_CHARS}-character hash>-a<attempt>, at most"
            f" {JOB_NAME_MAX_CHARS}"
        )
    elif not JOB_NAME_PREFIX_PATTERN.fullmatch(job_name):
        pattern = JOB_NAME_PREFIX_PATTERN.pattern
        rule = f"must match the pattern {pattern} (letters, digits and inner hyphens)"
    else:
        return
    raise SpotRequestValidationError([Violation("job_name", job_name, rule)])
