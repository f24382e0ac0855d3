"""``spot-verify-resume``: check that a training script really resumes from its checkpoints.

The trainer runs on the embedded backend once uninterrupted, then in several runs interrupted at
seeded points; the report tells, per run, whether each restart restored its checkpoints, how much
work each interruption cost, whether the trainer saved on SIGTERM, and whether the final model
equals the uninterrupted one. Modules: :mod:`.spec` (inputs), :mod:`.plan` (where to interrupt),
:mod:`.backend` (running and reading), :mod:`.evidence` (what runs leave), :mod:`.analysis`
(reading it), :mod:`.artifacts` (model comparison), :mod:`.report` (verdict), :mod:`.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_spot_provider.verify.api import ReferenceRunError, verify_resume
    from airflow_spot_provider.verify.artifacts import Tolerance
    from airflow_spot_provider.verify.report import VerdictOutcome, VerifyReport
    from airflow_spot_provider.verify.spec import TrainerSpec, VerifyOptions, VerifyUsageError

__all__ = [
    "ReferenceRunError",
    "Tolerance",
    "TrainerSpec",
    "VerdictOutcome",
    "VerifyOptions",
    "VerifyReport",
    "VerifyUsageError",
    "verify_resume",
]

_WHERE = {
    "ReferenceRunError": "airflow_spot_provider.verify.api",
    "verify_resume": "airflow_spot_provider.verify.api",
    "Tolerance": "airflow_spot_provider.verify.artifacts",
    "VerdictOutcome": "airflow_spot_provider.verify.report",
    "VerifyReport": "airflow_spot_provider.verify.report",
    "TrainerSpec": "airflow_spot_provider.verify.spec",
    "VerifyOptions": "airflow_spot_provider.verify.spec",
    "VerifyUsageError": "airflow_spot_provider.verify.spec",
}


def __getattr__(name: str) -> Any:
    # Lazy: the backend (aiohttp, its S3 server) loads only when a verification runs.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
