"""The embedded spot backend: a local SageMaker training-job service on a simulated spot market.

``from airflow_spot_provider.emulator import SpotEmulator`` starts it in-process; the console
script ``spot-emulator serve`` runs it standalone. Imports are lazy so that the light modules
(``images``, ``sandbox``...) can be used without loading aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_spot_provider.emulator.config import Durations, EmulatorConfig, InstanceMarket
    from airflow_spot_provider.emulator.server import SpotEmulator

__all__ = ["Durations", "EmulatorConfig", "InstanceMarket", "SpotEmulator"]

_WHERE = {
    "SpotEmulator": "airflow_spot_provider.emulator.server",
    "EmulatorConfig": "airflow_spot_provider.emulator.config",
    "Durations": "airflow_spot_provider.emulator.config",
    "InstanceMarket": "airflow_spot_provider.emulator.config",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
