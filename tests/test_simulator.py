"""Tests of the spot market simulator: exact chains on replayed traces, determinism, JSON, CLI."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_spot_provider.emulator.scenario import InterruptAt, NoCapacity, parse_events
from airflow_spot_provider.simulator import BANDS, JobModel, Scenario, load_trace, simulate
from airflow_spot_provider.simulator.cli import main
from airflow_spot_provider.simulator.compare import run_job, sweep_checkpoints
from airflow_spot_provider.simulator.engine import BASE_TIME, run_chain
from airflow_spot_provider.simulator.jobs import Price, load_prices, price_of
from airflow_spot_provider.simulator.markets import BandMarket, TraceError
from airflow_spot_provider.simulator.policies import POLICIES

SAMPLE = Path(__file__).parent.parent / "airflow_spot_provider/simulator/data/sample_trace.csv"
JOB = JobModel()
PRICE = Price(on_demand_per_hour=3.0, spot_discount=0.7)
POLICY = {p.name: p for p in POLICIES}
# The default job: 8 h of work, a 60 s checkpoint every 30 min, 300 s start, 60 s upload.
TRAINING = 8 * 3600 * 1860 / 1800
ON_DEMAND = 300 + TRAINING + 60


def trace(tmp_path: Path, *samples: tuple[int, int]) -> Path:
    """A one-market trace of 10-minute steps: (available, steps) runs."""
    lines = ["# test trace", "time_seconds,zone"]
    step = 0
    for up, count in samples:
        for _ in range(count):
            lines.append(f"{step * 600},{up}")
            step += 1
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chain(policy: str, path: Path):  # type: ignore[no-untyped-def]
    market = load_trace(path)[0]
    deadline = BASE_TIME + timedelta(seconds=JOB.deadline_seconds)
    compared = POLICY[policy]
    return run_chain(
        compared.make(JOB, deadline),
        JOB.request(spot=compared.spot),
        market.availability(1, 0),
        JOB,
        PRICE,
    )


def test_job_model_figures() -> None:
    assert JOB.training_seconds == TRAINING
    assert JOB.on_demand_seconds == ON_DEMAND
    assert JOB.deadline_seconds == 1.5 * ON_DEMAND
    request = JOB.request(spot=True)["StoppingCondition"]
    assert request["MaxWaitTimeInSeconds"] >= request["MaxRuntimeInSeconds"]
    with pytest.raises(ValueError, match="max_wait_factor"):
        JobModel(max_wait_factor=1.1)


def test_a_capacity_gap_at_the_start_delays_the_job(tmp_path: Path) -> None:
    path = trace(tmp_path, (0, 12), (1, 240))  # no capacity for 2 h, then for 40 h
    result = chain("no-resubmission", path)
    assert result.finished_seconds == pytest.approx(7200 + ON_DEMAND)
    assert result.met_deadline
    assert (result.interruptions, result.attempts, result.lost_seconds) == (0, 1, 0)
    held = ON_DEMAND  # billed from Downloading to the end of Uploading
    assert result.cost == pytest.approx(held / 3600 * PRICE.spot_per_hour)


def test_an_interruption_loses_the_work_since_the_last_checkpoint(tmp_path: Path) -> None:
    path = trace(tmp_path, (1, 18), (0, 6), (1, 300))  # capacity gone from 3 h to 4 h
    result = chain("no-resubmission", path)
    trained = 3 * 3600 - 300
    kept = math.floor(trained / 1860) * 1860
    assert result.interruptions == 1
    assert result.lost_seconds == pytest.approx(trained - kept)
    finished = 4 * 3600 + 300 + (TRAINING - kept) + 60
    assert result.finished_seconds == pytest.approx(finished)
    held = 3 * 3600 + (finished - 4 * 3600)
    assert result.cost == pytest.approx(held / 3600 * PRICE.spot_per_hour)


def test_deadline_aware_switches_to_on_demand_on_time(tmp_path: Path) -> None:
    path = trace(tmp_path, (1, 18), (0, 1000))  # capacity gone at 3 h for a week
    trained = 3 * 3600 - 300
    kept = math.floor(trained / 1860) * 1860
    remaining = TRAINING - kept
    # Latest on-demand start: deadline - work left - (start + margin + one more interruption).
    latest = JOB.deadline_seconds - remaining - (300 + 900 + 300 + 1860)
    switch_at = math.ceil(latest / 60) * 60  # the next poll tick
    result = chain("deadline-aware", path)
    kinds = [(d.kind, d.on_demand, d.rule) for d in result.decisions]
    assert kinds == [
        ("create", False, "slack-covers-work"),
        ("switch-to-on-demand", True, "slack-exhausted"),
    ]
    assert result.decisions[1].seconds == switch_at
    assert result.finished_seconds == pytest.approx(switch_at + 30 + 300 + remaining + 60)
    assert result.met_deadline
    assert result.on_demand_seconds == pytest.approx(300 + remaining + 60)
    # The same market without the deadline rule: waits until MaxWait and misses.
    assert not chain("fixed-attempts", path).met_deadline


def test_trace_wraps_around_and_spreads_jobs(tmp_path: Path) -> None:
    market = load_trace(trace(tmp_path, (1, 2), (0, 2)), jobs=2)[0]
    first, second = market.availability(0, 0), market.availability(0, 1)
    assert [first.available(t) for t in (0, 1200, 2400, 3600)] == [True, False, True, False]
    assert [second.available(t) for t in (0, 1200)] == [False, True]
    assert first.next_change(0) == 1200 and first.next_change(100_000) == 100_800


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,zone\n0,1\n600,1\n", "header 'time_seconds"),
        ("time_seconds,zone\n0,1\n600,2\n", ":3: column 'zone' must be 0 or 1"),
        ("time_seconds,zone\n0,1\n600,1\n1000,1\n", "equal steps"),
        ("time_seconds,zone\n0,1\n600\n", ":3: 1 fields"),
        ("time_seconds,zone\n0,1\nsoon,1\n", "time_seconds must be a number"),
    ],
)
def test_bad_traces_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_sample_trace_replays() -> None:
    markets = load_trace(SAMPLE, jobs=40)
    assert [m.name for m in markets] == ["zone-a", "zone-b"]
    rows = simulate(Scenario(jobs=40, markets=tuple(markets)))
    assert {(r.band, r.policy) for r in rows} == {
        (m.name, p.name) for m in markets for p in POLICIES
    }
    assert rows == simulate(Scenario(jobs=40, markets=tuple(markets), seed=99))  # a trace is fixed


def test_simulation_is_deterministic_per_seed() -> None:
    scenario = Scenario(jobs=60, markets=(BANDS[4],))
    assert simulate(scenario) == simulate(scenario)
    other = simulate(Scenario(jobs=60, markets=(BANDS[4],), seed=2))
    assert other != simulate(scenario)


def test_band_market_matches_its_band() -> None:
    market = BandMarket("test", 0.125)
    capacity = market.availability(1, 0)
    horizon = 2000 * 3600.0
    capacity.extend(horizon)
    edges = [0.0, *[c for c in capacity.changes if c < horizon], horizon]
    up = capacity.initially
    away = 0.0
    for a, b in itertools.pairwise(edges):
        away += 0 if up else b - a
        up = not up
    assert away / horizon == pytest.approx(0.125, abs=0.03)
    with pytest.raises(ValueError, match="unavailable_fraction"):
        BandMarket("bad", 1.0)


def test_goal_on_a_reduced_scenario() -> None:
    # The goal, on 300 jobs per band instead of 1,000 (README has the full run).
    rows = simulate(Scenario(jobs=300))
    by = {(r.band, r.policy): r for r in rows}
    for band in BANDS:
        ours = by[(band.name, "deadline-aware")]
        assert ours.deadlines_met >= 0.99, ours
        for other in POLICIES:
            if other.name not in ("deadline-aware", "on-demand"):
                assert ours.deadlines_met >= by[(band.name, other.name)].deadlines_met
        reference = by[(band.name, "on-demand")]
        assert (reference.cost_vs_on_demand, reference.deadlines_met) == (1.0, 1.0)
        assert reference.interruptions_per_job == 0
    for band in BANDS[:3]:
        assert by[(band.name, "deadline-aware")].cost_vs_on_demand <= 0.45


def test_cli_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--jobs", "20", "--bands", "10-15%,>20%", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 * len(POLICIES)
    types = {
        "policy": str,
        "band": str,
        "jobs": int,
        "deadlines_met": float,
        "cost_vs_on_demand": float,
        "p50_hours": (float, type(None)),
        "p95_hours": (float, type(None)),
        "interruptions_per_job": float,
        "work_lost_hours_per_job": float,
        "on_demand_hours_per_job": float,
    }
    for row in rows:
        assert set(row) == set(types)
        for key, kind in types.items():
            assert isinstance(row[key], kind), (key, row)
        assert 0 <= row["deadlines_met"] <= 1 and row["cost_vs_on_demand"] > 0
        assert row["jobs"] == 20
    assert any("deadline" in row["policy"] for row in rows)


def test_cli_table_plot_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "plot.png"
    assert main(["--jobs", "10", "--bands", "<5%", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| band" in out and "deadline-aware" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--bands", "30%"]) == 2
    assert "--bands: unknown 30%" in capsys.readouterr().err
    assert main(["--policies", "greedy"]) == 2
    assert "unknown greedy" in capsys.readouterr().err


def test_cli_says_when_matplotlib_is_missing(tmp_path: Path) -> None:
    # A narrow case the environment cannot produce otherwise: matplotlib made unimportable.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from airflow_spot_provider.simulator.cli import main\n"
        f"sys.exit(main(['--jobs', '2', '--bands', '<5%', '--plot', r'{tmp_path / 'x.png'}']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stderr
    assert "pip install 'airflow-spot-provider[plot]'" in done.stderr


def test_checkpoint_sweep_shows_the_interval_effect(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = Scenario(jobs=100, markets=(BANDS[4],), policies=("deadline-aware",))
    pairs = sweep_checkpoints(scenario, [600.0, 7200.0])
    lost = {interval: row.work_lost_hours_per_job for interval, row in pairs}
    assert lost[7200.0] > lost[600.0]
    assert main(["--jobs", "20", "--bands", ">20%", "--sweep-checkpoint-minutes", "10,60"]) == 0
    out = capsys.readouterr().out
    assert "| 10 min | >20%" in out and "Young/Daly" in out


def test_prices_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("instance_type,on_demand_per_hour,spot_discount\nml.x.big,10,0.5\n")
    table = load_prices(path)
    assert price_of("ml.x.big", table) == Price(10.0, 0.5)
    assert price_of("ml.p3.2xlarge", table).on_demand_per_hour > 0
    with pytest.raises(ValueError, match=r"no price for instance type 'ml\.nope'"):
        price_of("ml.nope", table)
    path.write_text("instance_type,on_demand_per_hour,spot_discount\nml.x.big,10,1.5\n")
    with pytest.raises(ValueError, match=":2: on_demand_per_hour must be > 0"):
        load_prices(path)


def test_export_as_a_backend_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scenario.json"
    args = ["--bands", ">20%", "--export-scenario", str(out), "--export-job", "2"]
    assert main([*args, "--time-scale", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "create" in printed and "rule=slack-covers-work" in printed
    spec = json.loads(out.read_text())
    events = parse_events(spec, loaded_at=0.0)  # the embedded backend's own parser
    result, capacity = run_job(Scenario(markets=(BANDS[4],)), BANDS[4], "deadline-aware", 2)
    interrupts = [e for e in events if isinstance(e, InterruptAt)]
    assert len(interrupts) == 3 and "switch-to-on-demand" in printed
    assert [(e.job, e.attempt) for e in interrupts] == [
        (f"*-a{attempt}", start) for attempt, start, _ in result.interrupted_runs
    ]
    # The windows go on past the switch: the backend's no_capacity takes spot capacity only.
    switch = next((d.seconds for d in result.decisions if d.on_demand), math.inf)
    windows = [e for e in events if isinstance(e, NoCapacity)]
    assert windows and all(w.until is not None and not w.on_demand for w in windows)
    assert any(w.until > switch * 0.01 for w in windows)  # type: ignore[operator]
    for window in windows:  # the windows are the market's gaps, scaled
        middle = (window.start + window.until) / 2 / 0.01  # type: ignore[operator]
        assert not capacity.available(middle)


def test_help_names_the_bands(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse formats help with %: a band's "%" once broke --help.
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "<5%, 5-10%" in capsys.readouterr().out
