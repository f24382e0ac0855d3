"""Reading run evidence without a backend: restores, losses, SIGTERM saves, the verdict.

The evidence is built by hand as the backend would leave it: listings of the checkpoint prefix
every 0.1 s, attempts from the transitions, SIGTERM times, the trainer's lines. The reference
works from t=100.2 (its first line) and writes contents c1..c4 at 1, 2, 3 and 4 s of work.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from airflow_spot_provider.lifecycle import SecondaryStatus
from airflow_spot_provider.verify.analysis import (
    Reference,
    analyze_interruptions,
    evidence_lines,
    reference_of,
)
from airflow_spot_provider.verify.evidence import (
    Attempt,
    CheckpointTimeline,
    Listing,
    LogLine,
    RunEvidence,
    Stored,
    interrupt_times,
)
from airflow_spot_provider.verify.plan import Interruption, RunKind, RunPlan
from airflow_spot_provider.verify.report import (
    EXIT_STATUS,
    RunReport,
    Verdict,
    VerdictOutcome,
    verdict_of,
)

_S = SecondaryStatus
SLACK, LAG = 0.8, 0.3
Writes = Sequence[tuple[float, str, str | None]]  # (time, key, content or None: deleted)


def _timeline(writes: Writes, start: float, end: float) -> CheckpointTimeline:
    listings, objects = [], {}
    pending = sorted(writes)
    moment = start
    while moment <= end + 1e-9:
        while pending and pending[0][0] <= moment:
            written, key, content = pending.pop(0)
            if content is None:
                objects.pop(key, None)
            else:
                objects[key] = Stored(content, 10, float(int(written)))
        listings.append(Listing(round(moment, 3), dict(objects)))
        moment += 0.1
    return CheckpointTimeline(tuple(listings))


def _evidence(
    attempts: Sequence[Attempt],
    writes: Writes,
    lines: Sequence[tuple[float, str]],
    interrupts: dict[int, float] | None = None,
) -> RunEvidence:
    end = max(a.training_end or a.training_start for a in attempts) + 0.5
    return RunEvidence(
        job_name="run",
        description={"SecondaryStatus": "Completed"},
        attempts=tuple(attempts),
        interrupts=interrupts or {},
        timeline=_timeline(writes, 99.0, end),
        log_lines=tuple(LogLine(t, m) for t, m in lines),
        model=b"",
    )


REF_WRITES = [(100.2 + s + 0.05, "ckpt", f"c{s}") for s in (1, 2, 3, 4)]
REFERENCE: Reference = reference_of(
    _evidence(
        [Attempt(1, 100.0, 104.5, _S.UPLOADING)],
        REF_WRITES,
        [(100.2, "training steps=40"), (104.3, "done")],
    )
)


def test_reference_positions_and_interval() -> None:
    # Written at s + 0.05 s of work, listed at the next tenth.
    assert sorted(REFERENCE.positions) == ["c1", "c2", "c3", "c4"]
    assert all(abs(REFERENCE.positions[f"c{s}"] - (s + 0.1)) < 1e-6 for s in (1, 2, 3, 4))
    assert abs(REFERENCE.checkpoint_interval - 1.0) < 1e-6
    assert REFERENCE.objects == 1 and REFERENCE.checkpoint_bytes == 10
    assert abs(REFERENCE.listing_gap - 0.1) < 1e-6
    assert abs(REFERENCE.work_seconds - 4.3) < 1e-6 and REFERENCE.prints


def _interrupted_run(
    restart_writes: Writes, restart_lines: Sequence[tuple[float, str]]
) -> RunEvidence:
    """Interrupted at 102.8 (2.6 s of work, c2 written); notice until 103.2; back at 104.0."""
    writes = [(101.25, "ckpt", "c1"), (102.25, "ckpt", "c2"), *restart_writes]
    lines = [(100.2, "training steps=40"), *restart_lines]
    attempts = [Attempt(1, 100.0, 103.2, _S.INTERRUPTED), Attempt(2, 104.0, 107.0, _S.UPLOADING)]
    return _evidence(attempts, writes, lines, {1: 102.8})


def test_a_trainer_that_goes_on_restores_and_loses_less_than_an_interval() -> None:
    run = _interrupted_run([(105.35, "ckpt", "c3")], [(104.2, "resumed from step=20")])
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    assert item.restored is True and not item.from_scratch
    assert item.checkpoints_at_restart == 1
    assert item.sigterm_checkpoint is False  # worked 0.5 s past c2, saved nothing new
    assert item.resumed_from_seconds is not None and abs(item.resumed_from_seconds - 2.1) < 0.06
    assert item.lost_seconds is not None and 0.4 < item.lost_seconds < 0.6
    assert "is one the run had not reached" in item.restore_evidence


def test_a_trainer_that_starts_over_is_caught_by_the_content_it_rewrites() -> None:
    run = _interrupted_run([(105.25, "ckpt", "c1")], [(104.2, "training steps=40")])
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    assert item.restored is False and item.from_scratch
    assert item.resumed_from_seconds == 0.0 and item.lost_seconds == item.progress_seconds
    assert "started over" in item.restore_evidence


def test_a_save_on_sigterm_is_seen_and_timed() -> None:
    run = _interrupted_run(
        [(102.95, "ckpt", "sigterm-state"), (105.05, "ckpt", "c3")],
        [(102.9, "SIGTERM: checkpoint saved"), (104.2, "resumed")],
    )
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    assert item.sigterm_checkpoint is True
    assert (
        item.sigterm_checkpoint_seconds is not None and 0 < item.sigterm_checkpoint_seconds <= 0.25
    )
    # Its position lies between c2 and c3: the restored work is what it had done.
    assert item.restored is True and item.lost_seconds is not None and item.lost_seconds < 0.1
    assert evidence_lines(run) == ["SIGTERM: checkpoint saved", "resumed"]


def test_nothing_to_restore_after_an_interruption_right_after_start() -> None:
    attempts = [Attempt(1, 100.0, 100.5, _S.INTERRUPTED), Attempt(2, 101.5, 106.0, _S.UPLOADING)]
    run = _evidence(attempts, [], [(101.7, "training")], {1: 100.05})
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    assert item.restored is None and item.checkpoints_at_restart == 0
    assert item.progress_seconds == 0.0 and not item.from_scratch
    assert item.sigterm_checkpoint is None  # the trainer had not started to work


def test_saved_before_the_first_checkpoint_only_the_log_can_tell() -> None:
    attempts = [Attempt(1, 100.0, 101.2, _S.INTERRUPTED), Attempt(2, 102.0, 106.0, _S.UPLOADING)]
    writes = [(100.95, "ckpt", "early"), (102.55, "ckpt", "c1")]
    silent = _evidence(attempts, writes, [(100.2, "go"), (102.1, "go")], {1: 100.9})
    says = _evidence(attempts, writes, [(100.2, "go"), (102.1, "Resumed at step 7")], {1: 100.9})
    (unknown,) = analyze_interruptions(silent, REFERENCE, LAG)
    (known,) = analyze_interruptions(says, REFERENCE, LAG)
    assert unknown.restored is None and unknown.restore_evidence.startswith("could not tell")
    assert known.restored is True and "Resumed at step 7" in known.restore_evidence


def test_contents_the_reference_never_wrote_fall_back_on_the_time_to_the_end() -> None:
    # A trainer that stamps times into its checkpoints: nothing matches the reference.
    attempts = [Attempt(1, 100.0, 103.0, _S.INTERRUPTED), Attempt(2, 104.0, 106.4, _S.UPLOADING)]
    writes = [(101.25, "ckpt", "x1"), (102.25, "ckpt", "x2"), (105.3, "ckpt", "x3")]
    run = _evidence(attempts, writes, [(100.2, "go"), (104.2, "go")], {1: 102.6})
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    # 2.2 s to the end; from x2 (about 2.05 s of work) 2.25 s were left, from scratch 4.3 s.
    assert item.restored is True and "worked 2.20 s to the end" in item.restore_evidence


def test_the_same_content_written_again_under_the_same_name_is_seen() -> None:
    # Two files kept (like the example trainer): c1 is still there at the restart; a trainer
    # that starts over writes c1 again under the same name (same ETag, later LastModified).
    attempts = [Attempt(1, 100.0, 103.2, _S.INTERRUPTED), Attempt(2, 104.0, 107.0, _S.UPLOADING)]
    writes = [
        (101.25, "ckpt-1", "c1"),
        (102.25, "ckpt-2", "c2"),
        (102.3, "ckpt-1", None),
        (102.95, "ckpt-s", "sigterm-state"),
        (105.25, "ckpt-1", "c1"),
        (106.25, "ckpt-3", "c3"),
    ]
    run = _evidence(attempts, writes, [(100.2, "go"), (104.2, "go")], {1: 102.8})
    (item,) = analyze_interruptions(run, REFERENCE, LAG)
    assert item.restored is False and "wrote 'ckpt-1' again" in item.restore_evidence


def test_the_restored_content_written_again_after_work_was_redone() -> None:
    # Interrupted just after c1 (nothing new to save on SIGTERM): c1 is what is restored.
    attempts = [Attempt(1, 100.0, 101.8, _S.INTERRUPTED), Attempt(2, 103.0, 107.0, _S.UPLOADING)]
    lines = [(100.2, "go"), (103.2, "go")]
    # Saved again at once after loading, then c2: it went on.
    resaved = [(101.25, "ckpt", "c1"), (103.25, "ckpt", "c1"), (104.25, "ckpt", "c2")]
    # Saved again after a second of work: it had started over.
    redone = [(101.25, "ckpt", "c1"), (104.25, "ckpt", "c1"), (105.25, "ckpt", "c2")]
    (kept,) = analyze_interruptions(_evidence(attempts, resaved, lines, {1: 101.4}), REFERENCE, LAG)
    (lost,) = analyze_interruptions(_evidence(attempts, redone, lines, {1: 101.4}), REFERENCE, LAG)
    assert kept.restored is True, kept.restore_evidence
    assert lost.restored is False, lost.restore_evidence


def test_a_slow_reference_listing_does_not_make_going_on_look_like_starting_over() -> None:
    # The reference's prefix was listed 2 s apart once: c2 and c3 share a position.
    listings = [
        (100.0, {}),
        (101.3, {"k1": "c1"}),
        (103.3, {"k1": "c1", "k2": "c2", "k3": "c3"}),
        (104.5, {"k1": "c1", "k2": "c2", "k3": "c3", "k4": "c4"}),
    ]
    coarse = reference_of(
        RunEvidence(
            job_name="ref",
            description={},
            attempts=(Attempt(1, 100.0, 104.5, _S.UPLOADING),),
            interrupts={},
            timeline=CheckpointTimeline(
                tuple(Listing(t, {k: Stored(c, 10) for k, c in o.items()}) for t, o in listings)
            ),
            log_lines=(LogLine(100.2, "training"),),
        )
    )
    assert coarse.positions["c2"] == coarse.positions["c3"]
    # Saved c1, c2, then its state on SIGTERM; went on after the restart: c3 comes first.
    attempts = [Attempt(1, 100.0, 103.2, _S.INTERRUPTED), Attempt(2, 104.0, 107.0, _S.UPLOADING)]
    writes = [
        (101.25, "k1", "c1"),
        (102.25, "k2", "c2"),
        (102.95, "k5", "sigterm-state"),
        (104.35, "k3", "c3"),
    ]
    run = _evidence(attempts, writes, [(100.2, "go"), (104.2, "go")], {1: 102.8})
    (item,) = analyze_interruptions(run, coarse, LAG)
    assert item.restored is True, item.restore_evidence


def _report(items: Sequence[object], kind: RunKind = RunKind.RANDOM) -> RunReport:
    return RunReport(
        plan=RunPlan(1, kind, (Interruption(1, 1.0),)),
        job_name="run",
        final_status="Completed",
        failure_reason=None,
        interruptions=tuple(items),  # type: ignore[arg-type]
        model=None,
        attempt_seconds=(),
        log_evidence=(),
        max_lost_seconds=REFERENCE.checkpoint_interval + SLACK,
    )


def test_the_verdict_line() -> None:
    good = analyze_interruptions(
        _interrupted_run([(105.35, "ckpt", "c3")], [(104.2, "resumed")]), REFERENCE, LAG
    )
    bad = analyze_interruptions(
        _interrupted_run([(105.25, "ckpt", "c1")], [(104.2, "go")]), REFERENCE, LAG
    )
    passed = verdict_of(REFERENCE, [_report(good)], slack=SLACK)
    assert passed.line().startswith("resumes: yes; lost per interruption: <= 1 checkpoint interval")
    # No model in these hand-made runs: that alone is a problem of a completed run.
    assert passed.problems == ("run 1 (random): the job left no model.tar.gz",)
    failed = verdict_of(REFERENCE, [_report(bad)], slack=SLACK, require_sigterm=True)
    assert failed.line().startswith("resumes: no; lost per interruption: everything")
    assert failed.line().endswith("SIGTERM checkpoint: no -> FAIL")
    assert any("SIGTERM checkpoint required" in p for p in failed.problems)


@pytest.mark.parametrize(
    ("passed", "problems", "inconclusive", "outcome", "status"),
    [
        (True, (), (), VerdictOutcome.PASS, 0),
        (False, ("run 1 (random): lost",), (), VerdictOutcome.FAIL, 1),
        # A problem outweighs a run that proved nothing.
        (False, ("run 1 (random): lost",), ("run 2 (random): never",), VerdictOutcome.FAIL, 1),
        (False, (), ("run 1 (random): never",), VerdictOutcome.INCONCLUSIVE, 3),
    ],
)
def test_the_outcome_is_one_word_of_one_vocabulary(
    passed: bool,
    problems: tuple[str, ...],
    inconclusive: tuple[str, ...],
    outcome: VerdictOutcome,
    status: int,
) -> None:
    verdict = Verdict(
        resumes=True,
        max_lost_seconds=None,
        checkpoint_interval=1.0,
        within_interval=True,
        sigterm="n/a",
        passed=passed,
        problems=problems,
        inconclusive=inconclusive,
    )
    assert verdict.outcome is outcome and EXIT_STATUS[outcome] == status
    assert verdict.line().endswith(f" -> {outcome.value}")
    assert verdict.to_json()["outcome"] == outcome.value == outcome.name


def test_interrupt_times_read_the_backend_events() -> None:
    events = [{"start": 1, "time": 5.0, "source": "market"}, {"start": 2, "time": 9.5}, {"x": 1}]
    assert interrupt_times(events) == {1: 5.0, 2: 9.5}
