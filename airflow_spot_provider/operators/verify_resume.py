"""``VerifyResumeOperator``: a gate that checks, before a spot run, that the trainer resumes.

It runs :func:`airflow_spot_provider.verify.verify_resume` in the worker, on the embedded backend
(in-process, its own temporary dir; no AWS call, whatever the connection), and fails the task
when the trainer does not resume, so that the spot training downstream does not start. It needs
the ``local`` extra on the worker and takes a few seconds for a small trainer (keep the
verification's hyperparameters small: the point is resuming, not the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_spot_provider.exceptions import SpotProviderError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_spot_provider.verify.report import VerifyReport
    from airflow_spot_provider.verify.spec import TrainerSpec, VerifyOptions


class ResumeVerificationError(SpotProviderError):
    """The trainer did not pass the resume verification.

    :param verdict: the verdict line.
    :param report: the report as JSON.
    """

    headline = "the trainer does not resume"

    def __init__(self, verdict: str, report: Mapping[str, Any]) -> None:
        problems = "\n".join(f"  - {p}" for p in report.get("verdict", {}).get("problems", []))
        super().__init__(f"{self.headline}: {verdict}\n{problems}")
        self.verdict = verdict
        self.report = dict(report)


class ResumeVerificationInconclusiveError(ResumeVerificationError):
    """The verification proved nothing: a run ended before its planned interruption (twice).

    :param verdict: the verdict line.
    :param report: the report as JSON.
    """

    headline = (
        "inconclusive: the job ended before the planned interruption; the trainer's resuming was"
        " not tested (run the gate again, or give it more training steps)"
    )

    def __init__(self, verdict: str, report: Mapping[str, Any]) -> None:
        # The runs that proved nothing are listed where the other error lists its problems.
        runs = report.get("verdict", {}).get("inconclusive", [])
        super().__init__(verdict, {**report, "verdict": {"problems": runs}})
        self.report = dict(report)


class VerifyResumeOperator(BaseOperator):
    """Run the trainer uninterrupted and interrupted on the embedded backend; fail if it does not
    resume. Returns the report (JSON, the same as ``spot-verify-resume --json``).

    :param source_dir: the trainer's directory (script mode), templated.
    :param entry_point: the script in it, templated.
    :param hyperparameters: small values for a quick run, templated.
    :param data: channel name -> a small local input directory.
    :param request: a full CreateTrainingJob request instead of script mode.
    :param runs: interrupted runs (4 covers every kind of interruption point).
    :param seed: seed of the interruption points.
    :param rtol: relative tolerance of the model comparison (0: bit-identical).
    :param atol: absolute tolerance of the model comparison.
    :param max_lost_seconds: work one interruption may cost (default: one checkpoint interval).
    :param require_sigterm_checkpoint: also fail unless the trainer saves on SIGTERM.
    :param notice_seconds: SIGTERM to SIGKILL in the verification.
    :param timeout_seconds: how long the reference run, then the interrupted runs, may take.
    :param fail_on_verdict: fail the task on a failed or inconclusive verdict (False: only
        report it).
    """

    template_fields: Sequence[str] = (
        "source_dir",
        "entry_point",
        "hyperparameters",
        "runs",
        "seed",
    )
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        source_dir: str | Path | None = None,
        entry_point: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        data: Mapping[str, str | Path] | None = None,
        request: Mapping[str, Any] | None = None,
        runs: int | str = 4,
        seed: int | str = 0,
        rtol: float = 0.0,
        atol: float = 0.0,
        max_lost_seconds: float | None = None,
        require_sigterm_checkpoint: bool = False,
        notice_seconds: float = 2.0,
        timeout_seconds: float = 600.0,
        fail_on_verdict: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_dir = None if source_dir is None else str(source_dir)
        self.entry_point = entry_point
        self.hyperparameters = dict(hyperparameters or {})
        self.data = {k: str(v) for k, v in (data or {}).items()}
        self.request = None if request is None else dict(request)
        self.runs = runs
        self.seed = seed
        self.rtol, self.atol = rtol, atol
        self.max_lost_seconds = max_lost_seconds
        self.require_sigterm_checkpoint = require_sigterm_checkpoint
        self.notice_seconds = notice_seconds
        self.timeout_seconds = timeout_seconds
        self.fail_on_verdict = fail_on_verdict
        if "{{" not in f"{runs}{seed}":  # checked at parse time where nothing is templated
            self._options()

    def _options(self) -> VerifyOptions:
        from airflow_spot_provider.verify.artifacts import Tolerance
        from airflow_spot_provider.verify.spec import VerifyOptions, VerifyUsageError

        try:
            tolerance = Tolerance(rtol=self.rtol, atol=self.atol)
            seed, runs = int(self.seed), int(self.runs)
        except ValueError as err:
            raise VerifyUsageError(f"{self.task_id}: {err}") from err
        return VerifyOptions(
            runs=runs,
            seed=seed,
            tolerance=tolerance,
            max_lost_seconds=self.max_lost_seconds,
            require_sigterm_checkpoint=self.require_sigterm_checkpoint,
            notice_seconds=self.notice_seconds,
            timeout_seconds=self.timeout_seconds,
        )

    def _spec(self) -> TrainerSpec:
        from airflow_spot_provider.verify.spec import TrainerSpec

        return TrainerSpec(
            source_dir=None if self.source_dir is None else Path(self.source_dir),
            entry_point=self.entry_point,
            hyperparameters=self.hyperparameters,
            data={k: Path(v) for k, v in self.data.items()},
            request=self.request,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Verify; the report as JSON.

        :raises ResumeVerificationError: the trainer does not resume (``fail_on_verdict``).
        """
        from airflow_spot_provider.verify.api import verify_resume
        from airflow_spot_provider.verify.report import VerdictOutcome

        report: VerifyReport = verify_resume(self._spec(), self._options())
        self.log.info("Resume verification:\n%s", report.text())
        result = report.to_json()
        if self.fail_on_verdict and not report.verdict.passed:
            if report.verdict.outcome is VerdictOutcome.INCONCLUSIVE:
                raise ResumeVerificationInconclusiveError(report.verdict.line(), result)
            raise ResumeVerificationError(report.verdict.line(), result)
        return result
