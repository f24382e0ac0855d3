"""``python -m airflow_spot_provider.emulator serve ...``: same as ``spot-emulator``."""

from __future__ import annotations

from airflow_spot_provider.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
