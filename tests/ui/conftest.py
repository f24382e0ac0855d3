"""The end-to-end fixtures (embedded backend on Airflow's ``aws_default``) for the view's tests."""

from __future__ import annotations

from tests.e2e.conftest import emulator

__all__ = ["emulator"]
