"""The outcome of a verification: per run findings, the verdict line, JSON for CI (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airflow_spot_provider.lifecycle import SecondaryStatus
from airflow_spot_provider.verify.analysis import InterruptionReport, Reference
from airflow_spot_provider.verify.artifacts import ArtifactComparison
from airflow_spot_provider.verify.plan import RunPlan

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


class VerdictOutcome(StrEnum):
    """The answer of a verification: its verdict line ends with it, ``--json`` gives it as
    ``verdict.outcome``, and it sets the exit status (:data:`EXIT_STATUS`)."""

    PASS = "PASS"  # every run was interrupted, resumed, lost no more than allowed, same model
    FAIL = "FAIL"  # a run has a problem: did not restore, started over, lost too much, ...
    INCONCLUSIVE = "INCONCLUSIVE"  # no problem, but a run was never interrupted: nothing tested


# The exit status of the command line per outcome (usage errors exit EXIT_USAGE).
EXIT_STATUS: dict[VerdictOutcome, int] = {
    VerdictOutcome.PASS: EXIT_PASS,
    VerdictOutcome.FAIL: EXIT_FAIL,
    VerdictOutcome.INCONCLUSIVE: EXIT_INCONCLUSIVE,
}


@dataclass(frozen=True)
class RunReport:
    """One interrupted run.

    :param plan: where it was to be interrupted.
    :param job_name: its training job.
    :param final_status: its last ``SecondaryStatus``.
    :param failure_reason: its ``FailureReason``, if any.
    :param interruptions: what each interruption cost.
    :param model: its model compared with the reference's (None: it has none).
    :param attempt_seconds: how long each attempt trained.
    :param log_evidence: the trainer's lines about checkpoints.
    :param max_lost_seconds: the loss allowed per interruption.
    """

    plan: RunPlan
    job_name: str
    final_status: str
    failure_reason: str | None
    interruptions: tuple[InterruptionReport, ...]
    model: ArtifactComparison | None
    attempt_seconds: tuple[float, ...]
    log_evidence: tuple[str, ...]
    max_lost_seconds: float

    @property
    def completed(self) -> bool:
        """Whether the job completed."""
        status = SecondaryStatus(self.final_status) if self.final_status else None
        return status is SecondaryStatus.COMPLETED

    @property
    def inconclusive(self) -> bool:
        """Whether the run proves nothing: it completed before its first planned interruption."""
        return self.completed and not self.interruptions

    def inconclusive_note(self) -> str:
        """Why the run proves nothing, in words (empty when it was interrupted)."""
        if not self.inconclusive:
            return ""
        planned = ", ".join(
            f"{i.at_training_second:.2f} s into attempt {i.attempt}"
            for i in self.plan.interruptions
        )
        trained = sum(self.attempt_seconds)
        return (
            f"inconclusive: the job ended before the planned interruption (planned at {planned};"
            f" it trained {trained:.2f} s)"
        )

    def problems(self) -> list[str]:
        """What makes this run fail the verification, in words; empty when it passes."""
        found: list[str] = []
        if not self.completed:
            reason = f": {self.failure_reason}" if self.failure_reason else ""
            found.append(f"the job ended {self.final_status}{reason}")
        for item in self.interruptions:
            where = f"interruption in attempt {item.attempt}"
            if item.from_scratch:
                found.append(
                    f"{where}: the next attempt started from scratch "
                    f"({item.progress_seconds:.2f} s of work lost; {item.restore_evidence})"
                )
            elif item.restored is False:
                found.append(f"{where}: the next attempt did not restore ({item.restore_evidence})")
            elif item.lost_seconds is not None and item.lost_seconds > self.max_lost_seconds:
                found.append(
                    f"{where}: {item.lost_seconds:.2f} s of work lost "
                    f"(allowed {self.max_lost_seconds:.2f} s)"
                )
        if self.model is not None and not self.model.equal:
            found.append(
                "the model differs from the reference: " + "; ".join(self.model.differences)
            )
        if self.model is None and self.completed:
            found.append("the job left no model.tar.gz")
        return found

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "run": self.plan.index,
            "kind": self.plan.kind.value,
            "planned": [i.to_json() for i in self.plan.interruptions],
            "job_name": self.job_name,
            "final_status": self.final_status,
            "failure_reason": self.failure_reason,
            "completed": self.completed,
            "inconclusive": self.inconclusive,
            "interruptions": [i.to_json() for i in self.interruptions],
            "model": None if self.model is None else self.model.to_json(),
            "attempt_training_seconds": [round(s, 3) for s in self.attempt_seconds],
            "log_evidence": list(self.log_evidence),
            "problems": self.problems(),
            "passed": not self.problems(),
        }


@dataclass(frozen=True)
class Verdict:
    """The answer to "does this trainer resume?".

    :param resumes: every restart went on from its checkpoint, none started over.
    :param max_lost_seconds: the most work one interruption cost (None: no interruption).
    :param checkpoint_interval: the reference's checkpoint interval.
    :param within_interval: every loss was within one interval (plus timing noise).
    :param sigterm: ``yes``, ``no``, ``partly`` or ``n/a`` (never had anything new to save).
    :param passed: the verification passed.
    :param problems: why it failed, run by run.
    :param inconclusive: the runs that proved nothing (never interrupted), run by run; with no
        problem, the verdict is neither pass nor fail.
    """

    resumes: bool
    max_lost_seconds: float | None
    checkpoint_interval: float
    within_interval: bool
    sigterm: str
    passed: bool
    problems: tuple[str, ...]
    inconclusive: tuple[str, ...] = ()

    @property
    def outcome(self) -> VerdictOutcome:
        """PASS, FAIL, or INCONCLUSIVE (no problem, but a run was never interrupted)."""
        if self.passed:
            return VerdictOutcome.PASS
        if self.inconclusive and not self.problems:
            return VerdictOutcome.INCONCLUSIVE
        return VerdictOutcome.FAIL

    def line(self) -> str:
        """``resumes: yes; lost per interruption: <= 1 checkpoint interval (0.5 s); ...``."""
        interval = f"{self.checkpoint_interval:.2g} s"
        if self.max_lost_seconds is None:
            lost = "n/a (no interruption)"
        elif not self.resumes:
            lost = f"everything, up to {self.max_lost_seconds:.2f} s (restarts from scratch)"
        elif self.within_interval:
            lost = f"<= 1 checkpoint interval ({interval}; at most {self.max_lost_seconds:.2f} s)"
        else:
            lost = f"up to {self.max_lost_seconds:.2f} s (checkpoint interval {interval})"
        return (
            f"resumes: {'yes' if self.resumes else 'no'}; lost per interruption: {lost}; "
            f"SIGTERM checkpoint: {self.sigterm} -> {self.outcome.value}"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "resumes": self.resumes,
            "max_lost_seconds": None
            if self.max_lost_seconds is None
            else round(self.max_lost_seconds, 3),
            "checkpoint_interval_seconds": round(self.checkpoint_interval, 3),
            "within_one_interval": self.within_interval,
            "sigterm_checkpoint": self.sigterm,
            "passed": self.passed,
            "outcome": self.outcome.value,
            "problems": list(self.problems),
            "inconclusive": list(self.inconclusive),
            "line": self.line(),
        }


def _sigterm_word(items: Sequence[InterruptionReport]) -> str:
    answers = {i.sigterm_checkpoint for i in items} - {None}
    if not answers:
        return "n/a"
    if answers == {True}:
        return "yes"
    return "no" if answers == {False} else "partly"


def verdict_of(
    reference: Reference,
    runs: Sequence[RunReport],
    *,
    slack: float,
    require_sigterm: bool = False,
) -> Verdict:
    """The verdict over all runs.

    :param reference: the reference figures.
    :param runs: the interrupted runs.
    :param slack: seconds of timing noise added to one interval.
    :param require_sigterm: fail unless every interruption that had something new to save saved.
    """
    items = [i for run in runs for i in run.interruptions]
    problems = [f"{_run_head(run)}: {p}" for run in runs for p in run.problems()]
    inconclusive = [
        f"{_run_head(run)}: {run.inconclusive_note()}" for run in runs if run.inconclusive
    ]
    resumes = not any(i.from_scratch or i.restored is False for i in items)
    losses = [i.lost_seconds for i in items if i.lost_seconds is not None]
    max_lost = max(losses) if losses else None
    interval = reference.checkpoint_interval
    within = max_lost is None or max_lost <= interval + slack
    sigterm = _sigterm_word(items)
    if require_sigterm and sigterm in ("no", "partly"):
        problems.append("SIGTERM checkpoint required, but not every interruption saved one")
    return Verdict(
        resumes=resumes,
        max_lost_seconds=max_lost,
        checkpoint_interval=interval,
        within_interval=within,
        sigterm=sigterm,
        passed=not problems and not inconclusive and resumes,
        problems=tuple(problems),
        inconclusive=tuple(inconclusive),
    )


def _run_head(run: RunReport) -> str:
    return f"run {run.plan.index} ({run.plan.kind.value})"


@dataclass(frozen=True)
class VerifyReport:
    """The whole verification.

    :param reference: the uninterrupted run's figures.
    :param runs: the interrupted runs.
    :param verdict: the verdict.
    :param seed: the seed of the plan.
    :param seconds: how long the verification took.
    :param sigterm_checkpoint_seconds: SIGTERM to checkpoint in S3, the slowest seen.
    """

    reference: Reference
    runs: tuple[RunReport, ...]
    verdict: Verdict
    seed: int
    seconds: float

    @property
    def exit_status(self) -> int:
        """0 when it passed, 1 when it failed, 3 when it was inconclusive."""
        return EXIT_STATUS[self.verdict.outcome]

    @property
    def sigterm_checkpoint_seconds(self) -> float | None:
        """SIGTERM to checkpoint seen in S3, the slowest over the interruptions."""
        seen = [
            i.sigterm_checkpoint_seconds
            for run in self.runs
            for i in run.interruptions
            if i.sigterm_checkpoint_seconds is not None
        ]
        return max(seen) if seen else None

    @property
    def warnings(self) -> list[str]:
        """What makes the figures less reliable than they should be (not a failure)."""
        ref = self.reference
        if ref.listing_gap > ref.checkpoint_interval / 2:
            return [
                f"the checkpoint prefix was listed up to {ref.listing_gap:.2f} s apart, more than "
                f"half the checkpoint interval ({ref.checkpoint_interval:.2f} s): a busy machine; "
                "times are coarse (save less often in the verification, or run it again)"
            ]
        return []

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for CI (``--json``)."""
        sigterm_seconds = self.sigterm_checkpoint_seconds
        return {
            "verdict": self.verdict.to_json(),
            "warnings": self.warnings,
            "reference": self.reference.to_json(),
            "sigterm_checkpoint_seconds": None
            if sigterm_seconds is None
            else round(sigterm_seconds, 3),
            "runs": [run.to_json() for run in self.runs],
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "exit_status": self.exit_status,
        }

    def text(self) -> str:
        """A readable report: the reference, one block per run, the verdict line last."""
        ref = self.reference
        lines = [
            f"reference {ref.job_name}: trained {ref.training_seconds:.2f} s, "
            f"{len(ref.checkpoint_moments)} checkpoint write(s), interval "
            f"{ref.checkpoint_interval:.2f} s, {ref.objects} object(s), "
            f"{ref.checkpoint_bytes} bytes; prefix listed every <= {ref.listing_gap:.2f} s"
        ]
        for run in self.runs:
            lines.append(_run_text(run))
        sigterm_seconds = self.sigterm_checkpoint_seconds
        if sigterm_seconds is not None:
            lines.append(f"SIGTERM to checkpoint in S3: at most {sigterm_seconds:.2f} s")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  problem: {p}" for p in self.verdict.problems]
        lines += [f"  {p}" for p in self.verdict.inconclusive]
        lines.append(self.verdict.line())
        return "\n".join(lines)


def _run_text(run: RunReport) -> str:
    model = (
        "no model"
        if run.model is None
        else (
            "model bit-identical"
            if run.model.bit_identical
            else ("model within tolerance" if run.model.equal else "model DIFFERS")
        )
    )
    head = (
        f"run {run.plan.index} ({run.plan.kind.value}) {run.job_name}: {run.final_status}, {model}"
    )
    parts = [head]
    if run.inconclusive:
        parts.append("    never interrupted: the run proves nothing (inconclusive)")
    for item in run.interruptions:
        restored = {True: "restored", False: "NOT restored", None: "restore n/a"}[item.restored]
        lost = "-" if item.lost_seconds is None else f"{item.lost_seconds:.2f} s"
        sigterm = {True: "yes", False: "no", None: "n/a"}[item.sigterm_checkpoint]
        parts.append(
            f"    attempt {item.attempt} at {item.at_training_second:.2f} s: {restored} "
            f"({item.checkpoints_at_restart} object(s)), lost {lost}, SIGTERM checkpoint {sigterm}"
        )
    return "\n".join(parts)
