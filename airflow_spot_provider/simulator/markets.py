"""Spot markets of the simulator: capacity over virtual time, per Spot Instance Advisor band or
replayed from an availability trace.

A market is a timeline of spot capacity for one job: available or not, flipping at given times
(seconds after the job's start). A running spot instance is interrupted when capacity goes away;
a waiting job starts when it comes back. On-demand capacity is assumed always there.

**Band model (assumptions, documented in the README).** AWS's Spot Instance Advisor puts each
instance type in a band of "frequency of interruption": the rate at which Spot reclaimed
capacity during the trailing month (<5%, 5-10%, 10-15%, 15-20%, >20%). We read that rate as the
share of the month a job's capacity is reclaimed, i.e. the fraction of time spot capacity is
away: the band's midpoint (2.5%, 7.5%, 12.5%, 17.5%; 30% for >20%, halfway to the 40% at which
the "Can't Be Late" paper's low-availability traces start). The shape of the gaps follows that
paper's AWS traces: capacity leaves for hours at a time with a heavy tail, here a log-normal gap
(median 1 h, sigma 1.0: mean 1.6 h, 1 gap in 10 longer than 3.6 h); capacity periods between
gaps are exponential with the mean that gives the band's fraction. Every gap that starts while a
job runs interrupts it.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BANDS",
    "Availability",
    "BandMarket",
    "Market",
    "TraceError",
    "TraceMarket",
    "load_trace",
]


class Availability:
    """Spot capacity of one job over virtual seconds: ``initially``, flipping at each change.

    Changes may be produced lazily by ``extend`` (a band market draws as far as it is asked).

    :param initially: whether capacity is there at second 0.
    :param changes: increasing times at which capacity flips.
    """

    def __init__(self, initially: bool, changes: Sequence[float] = ()) -> None:
        self.initially = initially
        self.changes: list[float] = list(changes)

    def extend(self, until: float) -> None:
        """Make sure the changes are known up to ``until`` (nothing to do for a fixed trace).

        :param until: virtual seconds.
        """

    def available(self, t: float) -> bool:
        """Whether spot capacity is there at ``t``.

        :param t: virtual seconds.
        """
        self.extend(t)
        flips = bisect.bisect_right(self.changes, t)
        return self.initially != (flips % 2 == 1)

    def next_change(self, t: float) -> float:
        """The first flip strictly after ``t`` (inf when none).

        :param t: virtual seconds.
        """
        self.extend(t)
        index = bisect.bisect_right(self.changes, t)
        while index >= len(self.changes):
            before = len(self.changes)
            self.extend(max(t, self.changes[-1] if self.changes else 0.0) + 86_400.0)
            if len(self.changes) == before:
                return math.inf
            index = bisect.bisect_right(self.changes, t)
        return self.changes[index]


class _DrawnAvailability(Availability):
    """Alternating capacity and gap periods drawn from a seeded generator as needed."""

    def __init__(self, market: BandMarket, rng: random.Random) -> None:
        self._market, self._rng = market, rng
        super().__init__(rng.random() >= market.unavailable_fraction)
        self._drawn_to = 0.0
        self._up = self.initially

    def extend(self, until: float) -> None:
        while self._drawn_to <= until:
            if self._up:
                self._drawn_to += self._rng.expovariate(1.0 / self._market.mean_available_seconds)
            else:
                self._drawn_to += self._market.gap_seconds(self._rng)
            self._up = not self._up
            self.changes.append(self._drawn_to)


@dataclass(frozen=True)
class BandMarket:
    """A spot market of one Spot Instance Advisor band.

    :param name: the band, e.g. ``10-15%``.
    :param unavailable_fraction: share of the time spot capacity is away (0..1).
    :param gap_median_hours: median length of a capacity gap.
    :param gap_sigma: log-normal sigma of the gap length (the tail's weight).
    """

    name: str
    unavailable_fraction: float
    gap_median_hours: float = 1.0
    gap_sigma: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.unavailable_fraction < 1:
            raise ValueError(
                f"BandMarket.unavailable_fraction={self.unavailable_fraction!r}: must be in (0, 1)"
            )
        if self.gap_median_hours <= 0 or self.gap_sigma < 0:
            raise ValueError(
                f"BandMarket {self.name}: gap_median_hours must be > 0 and gap_sigma >= 0,"
                f" got {self.gap_median_hours!r} and {self.gap_sigma!r}"
            )

    @property
    def mean_gap_seconds(self) -> float:
        """Mean gap length (log-normal mean)."""
        return self.gap_median_hours * 3600.0 * math.exp(self.gap_sigma**2 / 2)

    @property
    def mean_available_seconds(self) -> float:
        """Mean capacity period, so that gaps take ``unavailable_fraction`` of the time."""
        u = self.unavailable_fraction
        return self.mean_gap_seconds * (1 - u) / u

    @property
    def interruptions_per_hour(self) -> float:
        """Rate at which a running instance is interrupted (one per capacity period)."""
        return 3600.0 / self.mean_available_seconds

    def gap_seconds(self, rng: random.Random) -> float:
        """One gap length.

        :param rng: the job's generator.
        """
        return rng.lognormvariate(math.log(self.gap_median_hours * 3600.0), self.gap_sigma)

    def availability(self, seed: int, job: int) -> Availability:
        """The capacity timeline of job ``job``; the same (seed, band, job) gives the same one.

        :param seed: the scenario's seed.
        :param job: the job's index.
        """
        return _DrawnAvailability(self, random.Random(f"{seed}/{self.name}/{job}"))


# The Spot Instance Advisor bands and the share of time capacity is away in each (see above).
BANDS: tuple[BandMarket, ...] = (
    BandMarket("<5%", 0.025),
    BandMarket("5-10%", 0.075),
    BandMarket("10-15%", 0.125),
    BandMarket("15-20%", 0.175),
    BandMarket(">20%", 0.30),
)


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, line and rule."""


@dataclass(frozen=True)
class TraceMarket:
    """A market replayed from an availability trace (one column of a trace CSV).

    Job ``i`` of ``jobs`` starts ``i / jobs`` of the way through the trace; the trace wraps
    around at its end, so any number of jobs and any horizon can be replayed.

    :param name: the column's name (shown as the band).
    :param step_seconds: seconds per row.
    :param samples: 1 (capacity) or 0 (none) per step.
    :param jobs: the number of jobs the trace is shared by (spreads their starts).
    """

    name: str
    step_seconds: float
    samples: tuple[bool, ...]
    jobs: int = 1

    def availability(self, seed: int, job: int) -> Availability:
        """The trace seen from job ``job``'s start (the seed plays no part: a trace is fixed).

        :param seed: unused, for the Market interface.
        :param job: the job's index.
        """
        del seed
        count = len(self.samples)
        offset = (job * count) // max(1, self.jobs)
        rolled = self.samples[offset:] + self.samples[:offset]
        return _TraceAvailability(rolled, self.step_seconds)


class _TraceAvailability(Availability):
    """A trace repeated for ever, starting at its first sample."""

    def __init__(self, samples: tuple[bool, ...], step: float) -> None:
        super().__init__(samples[0])
        self._samples, self._step = samples, step
        self._period = len(samples) * step
        self._base = 0.0
        self._last = samples[0]
        self._add_period()

    def _add_period(self) -> None:
        for index, up in enumerate(self._samples):
            if up != self._last:
                self.changes.append(self._base + index * self._step)
                self._last = up
        self._base += self._period

    def extend(self, until: float) -> None:
        if not any(s != self._samples[0] for s in self._samples):
            return  # constant trace: never flips
        while self._base <= until:
            self._add_period()


Market = BandMarket | TraceMarket


def _flag(path: Path, line: int, column: str, text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise TraceError(f"{path}:{line}: column {column!r} must be 0 or 1, got {text!r}")
    return text.strip() == "1"


def load_trace(path: Path | str, jobs: int = 1) -> list[TraceMarket]:
    """Read an availability trace CSV: one market per column after ``time_seconds``.

    Format: lines starting with ``#`` are comments; the header is ``time_seconds`` then one
    column per market; each row gives the time (seconds from the trace's start, equal steps,
    the first 0) and 1 (spot capacity) or 0 (none) per market, holding for one step.

    :param path: the CSV file.
    :param jobs: how many jobs will share each market (spreads their starts over the trace).
    :raises TraceError: naming the file, line and rule.
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as err:
        raise TraceError(f"cannot read trace {path}: {err}") from err
    numbered = [(n, ln) for n, ln in enumerate(lines, start=1) if not ln.lstrip().startswith("#")]
    rows = list(csv.reader(ln for _, ln in numbered))
    if len(rows) < 3 or rows[0][0].strip() != "time_seconds" or len(rows[0]) < 2:
        raise TraceError(
            f"{path}: needs a header 'time_seconds,<market>,...' and at least two rows"
        )
    header, body = [h.strip() for h in rows[0]], rows[1:]
    times: list[float] = []
    for (line, _), row in zip(numbered[1:], body, strict=True):
        if len(row) != len(header):
            raise TraceError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        try:
            times.append(float(row[0]))
        except ValueError as err:
            raise TraceError(
                f"{path}:{line}: time_seconds must be a number, got {row[0]!r}"
            ) from err
    step = times[1] - times[0]
    if (
        times[0] != 0
        or step <= 0
        or any(not math.isclose(b - a, step) for a, b in itertools.pairwise(times))
    ):
        raise TraceError(f"{path}: time_seconds must start at 0 and grow by equal steps")
    markets = []
    for col, name in enumerate(header[1:], start=1):
        samples = tuple(
            _flag(path, line, name, row[col])
            for (line, _), row in zip(numbered[1:], body, strict=True)
        )
        markets.append(TraceMarket(name, step, samples, jobs))
    return markets
