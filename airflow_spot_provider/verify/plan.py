"""The plan of a verification: where each interrupted run is interrupted (seeded, no I/O).

The plan is made after the uninterrupted reference run, from what it showed: how long it trained
and at which training seconds its checkpoints reached S3. Each run is one training job; each of
its interruptions is a scenario event of the embedded backend ("interrupt job X at training
second t of attempt n"), so the backend, not a racing client, picks the moment.

The kinds, in the order runs get them (a verification of N runs takes the first N, then random):

- ``random``: once, at a random point of the run's middle;
- ``checkpoint_write``: once, at a training second where the reference run wrote a checkpoint;
- ``twice``: twice in a row: in the first attempt, then again soon after the restart;
- ``after_start``: right after the training process started (before it has done any work).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunKind(StrEnum):
    """Where a run is interrupted (see the module docstring)."""

    RANDOM = "random"
    CHECKPOINT_WRITE = "checkpoint_write"
    TWICE = "twice"
    AFTER_START = "after_start"


KIND_ORDER = (RunKind.RANDOM, RunKind.CHECKPOINT_WRITE, RunKind.TWICE, RunKind.AFTER_START)
# "Right after start": the first tick of the Training phase (the process is being started).
AFTER_START_SECOND = 0.0


@dataclass(frozen=True)
class Interruption:
    """One planned interruption.

    :param attempt: the job's start number it happens in (1-based).
    :param at_training_second: seconds after that attempt's Training began.
    """

    attempt: int
    at_training_second: float

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"attempt": self.attempt, "at_training_second": round(self.at_training_second, 3)}


@dataclass(frozen=True)
class RunPlan:
    """One interrupted run.

    :param index: 1-based number of the run.
    :param kind: why its interruptions are where they are.
    :param interruptions: the interruptions, by attempt.
    """

    index: int
    kind: RunKind
    interruptions: tuple[Interruption, ...]

    def scenario(self, job_name: str) -> list[dict[str, Any]]:
        """The backend's scenario events that make these interruptions.

        :param job_name: the run's training job name.
        """
        return [
            {
                "interrupt": {
                    "job": job_name,
                    "at_training_second": i.at_training_second,
                    "attempt": i.attempt,
                }
            }
            for i in self.interruptions
        ]

    def earlier(self, factor: float = 0.5) -> RunPlan:
        """The same run with every interruption moved earlier (for a run that ended first).

        :param factor: the fraction of each planned training second kept.
        """
        moved = tuple(
            Interruption(i.attempt, i.at_training_second * factor) for i in self.interruptions
        )
        return RunPlan(self.index, self.kind, moved)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "index": self.index,
            "kind": self.kind.value,
            "interruptions": [i.to_json() for i in self.interruptions],
        }


@dataclass(frozen=True)
class ReferenceTiming:
    """What the reference run showed that the plan needs.

    :param training_seconds: how long its Training phase lasted.
    :param checkpoint_seconds: training seconds at which its checkpoint objects reached S3.
    """

    training_seconds: float
    checkpoint_seconds: tuple[float, ...] = ()


def make_plan(reference: ReferenceTiming, runs: int, seed: int) -> list[RunPlan]:
    """The interrupted runs of a verification; the same for the same inputs.

    :param reference: the reference run's timing.
    :param runs: how many interrupted runs (>= 1).
    :param seed: seed of the random points.
    :raises ValueError: ``runs`` < 1 or a reference that did not train.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if not reference.training_seconds > 0:
        raise ValueError(f"the reference run must have trained, got {reference.training_seconds} s")
    rng = random.Random(seed)
    plans = []
    for index in range(1, runs + 1):
        kind = KIND_ORDER[index - 1] if index <= len(KIND_ORDER) else RunKind.RANDOM
        plans.append(RunPlan(index, kind, _interruptions(kind, reference, rng)))
    return plans


def _interruptions(
    kind: RunKind, reference: ReferenceTiming, rng: random.Random
) -> tuple[Interruption, ...]:
    length = reference.training_seconds
    if kind is RunKind.AFTER_START:
        return (Interruption(1, AFTER_START_SECOND),)
    if kind is RunKind.CHECKPOINT_WRITE:
        return (Interruption(1, _checkpoint_moment(reference.checkpoint_seconds, length, rng)),)
    if kind is RunKind.TWICE:
        first = rng.uniform(0.25, 0.5) * length
        # Soon after the restart, before the restarted trainer gets far.
        second = rng.uniform(0.05, 0.2) * length
        return (Interruption(1, first), Interruption(2, second))
    return (Interruption(1, rng.uniform(0.3, 0.8) * length),)


def _checkpoint_moment(moments: Sequence[float], length: float, rng: random.Random) -> float:
    # The last moment is the end-of-training save: an interruption there would not interrupt.
    inside = [m for m in moments if 0 < m < 0.9 * length]
    if not inside:  # a trainer that saves only at the end: the nearest moment it could have
        return 0.85 * length
    return rng.choice(inside)
