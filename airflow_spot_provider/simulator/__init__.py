"""A spot market simulator that runs the provider's own policy and lifecycle code.

``simulate(Scenario())`` runs the default scenario (1,000 jobs per Spot Instance Advisor band,
8 h of work, deadline at 1.5x the on-demand duration) for every compared policy and returns one
:class:`Row` per policy and band; ``spot-simulate`` is its command line.
"""

from airflow_spot_provider.simulator.compare import Scenario, simulate, sweep_checkpoints
from airflow_spot_provider.simulator.jobs import JobModel, Price
from airflow_spot_provider.simulator.markets import BANDS, BandMarket, TraceMarket, load_trace
from airflow_spot_provider.simulator.report import Row, format_table, to_json

__all__ = [
    "BANDS",
    "BandMarket",
    "JobModel",
    "Price",
    "Row",
    "Scenario",
    "TraceMarket",
    "format_table",
    "load_trace",
    "simulate",
    "sweep_checkpoints",
    "to_json",
]
