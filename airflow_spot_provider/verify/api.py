"""``verify_resume``: the reference run, the interrupted runs, the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from airflow_spot_provider.verify.analysis import (
    Reference,
    analyze_interruptions,
    evidence_lines,
    reference_of,
)
from airflow_spot_provider.verify.artifacts import compare_models
from airflow_spot_provider.verify.backend import VerifyBackend
from airflow_spot_provider.verify.evidence import RunEvidence
from airflow_spot_provider.verify.plan import ReferenceTiming, RunPlan, make_plan
from airflow_spot_provider.verify.report import RunReport, VerifyReport, verdict_of
from airflow_spot_provider.verify.spec import TrainerSpec, VerifyOptions

log = logging.getLogger(__name__)


class ReferenceRunError(RuntimeError):
    """The uninterrupted run did not complete: there is nothing to compare with.

    :param job_name: its job.
    :param status: its last SecondaryStatus.
    :param reason: its FailureReason.
    :param log_tail: the end of its log.
    """

    def __init__(self, job_name: str, status: str, reason: str | None, log_tail: list[str]) -> None:
        tail = "\n".join(f"  | {line}" for line in log_tail)
        super().__init__(
            f"the uninterrupted reference run {job_name} ended {status}"
            f"{': ' + reason if reason else ''}; fix the trainer first\n{tail}"
        )
        self.job_name = job_name
        self.status = status
        self.reason = reason


def verify_resume(
    spec: TrainerSpec, options: VerifyOptions | None = None, data_dir: Path | None = None
) -> VerifyReport:
    """Run the trainer uninterrupted, then interrupted, on the embedded backend; the report.

    :param spec: the trainer.
    :param options: how to verify (defaults: 4 runs, seed 0, bit-identical models).
    :param data_dir: the backend's data dir (a temporary dir, removed after, when None).
    :raises ReferenceRunError: the uninterrupted run did not complete.
    """
    options = options or VerifyOptions()
    began = time.monotonic()
    with VerifyBackend(data_dir, options) as backend:
        source = backend.upload_source(spec.source_dir) if spec.source_dir else None
        channels = {name: backend.upload_data(name, d) for name, d in sorted(spec.data.items())}
        base = spec.base_request(source, channels)
        runtime = options.max_runtime_seconds
        ref_name = backend.start(backend.request(base, "reference", runtime), [])
        described = backend.wait([ref_name], options.timeout_seconds)[ref_name]
        ref_evidence = backend.evidence(ref_name, described)
        if not ref_evidence.completed or ref_evidence.model is None:
            raise ReferenceRunError(
                ref_name,
                str(described.get("SecondaryStatus")),
                described.get("FailureReason"),
                [line.message for line in ref_evidence.log_lines[-10:]],
            )
        reference = reference_of(ref_evidence)
        timing = ReferenceTiming(
            reference.training_seconds,
            tuple(m + _startup(reference) for m in reference.checkpoint_moments),
        )
        rounds = _Rounds(backend, base, reference, ref_evidence, options)
        runs = rounds.run(make_plan(timing, options.runs, options.seed), "")
        # A run that ended before its interruption (a busy machine trains faster than the
        # reference's clock said) proves nothing: it runs once more, interrupted earlier.
        again = [run.plan.earlier() for run in runs if run.inconclusive]
        if again:
            log.info("Runs %s ended before their interruption; once more, earlier.",
                     [p.index for p in again])  # fmt: skip
            redone = {run.plan.index: run for run in rounds.run(again, "-again")}
            runs = [redone.get(run.plan.index, run) for run in runs]
    verdict = verdict_of(
        reference, runs, slack=options.slack, require_sigterm=options.require_sigterm_checkpoint
    )
    return VerifyReport(reference, tuple(runs), verdict, options.seed, time.monotonic() - began)


class _Rounds:
    """Starts interrupted runs together on the one backend and reports on them.

    :param backend: the verification's backend.
    :param base: the request every run starts from.
    :param reference: the reference run's figures.
    :param ref_evidence: what the reference run showed.
    :param options: how to verify.
    """

    def __init__(
        self,
        backend: VerifyBackend,
        base: dict[str, Any],
        reference: Reference,
        ref_evidence: RunEvidence,
        options: VerifyOptions,
    ) -> None:
        self.backend, self.base, self.options = backend, base, options
        self.reference, self.ref_evidence = reference, ref_evidence

    def run(self, plans: list[RunPlan], suffix: str) -> list[RunReport]:
        """Run these plans at once to their end; their reports.

        :param plans: the runs.
        :param suffix: added to each run's job name (a run made again needs a new one).
        """
        names = {}
        runtime = self.options.max_runtime_seconds
        for plan in plans:
            label = f"run-{plan.index}{suffix}"
            name = self.backend.job_name(label)
            names[name] = plan
            request = self.backend.request(self.base, label, runtime)
            self.backend.start(request, plan.scenario(name))
        finals = self.backend.wait(names, self.options.timeout_seconds)
        return [
            _run_report(
                plan,
                self.backend.evidence(name, finals[name]),
                self.reference,
                self.ref_evidence,
                self.options,
            )
            for name, plan in names.items()
        ]


def _startup(reference: Reference) -> float:
    """Seconds from the reference's Training start to its first output line (its set-up)."""
    return max(0.0, reference.training_seconds - reference.work_seconds)


def _run_report(
    plan: RunPlan,
    evidence: RunEvidence,
    reference: Reference,
    ref_evidence: RunEvidence,
    options: VerifyOptions,
) -> RunReport:
    model = None
    if evidence.model is not None and ref_evidence.model is not None:
        model = compare_models(evidence.model, ref_evidence.model, options.tolerance)
    allowed = options.max_lost_seconds
    if allowed is None:
        allowed = reference.checkpoint_interval + options.slack
    return RunReport(
        plan=plan,
        job_name=evidence.job_name,
        final_status=str(evidence.description.get("SecondaryStatus")),
        failure_reason=evidence.description.get("FailureReason"),
        interruptions=tuple(analyze_interruptions(evidence, reference, options.lag)),
        model=model,
        attempt_seconds=tuple(a.seconds for a in evidence.attempts if a.seconds is not None),
        log_evidence=tuple(evidence_lines(evidence)),
        max_lost_seconds=allowed,
    )
