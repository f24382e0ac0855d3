"""``spot-emulator serve``: run the emulator until SIGINT or SIGTERM.

    spot-emulator serve --host 127.0.0.1 --port 4599 [--s3-port 4600] --data-dir DIR [--seed N]
                        [--scenario FILE]

On start it prints the admin token and the Airflow connection (``export
AIRFLOW_CONN_AWS_DEFAULT=...``) to paste; both ports stay the same across restarts, so the
connection does too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from airflow_spot_provider.emulator.config import Durations, EmulatorConfig, InstanceMarket


def _pairs(values: Sequence[str], kind: type[float] | type[int], flag: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for value in values:
        key, sep, number = value.partition("=")
        try:
            if not sep or not key:
                raise ValueError(value)
            result[key] = kind(number)
        except ValueError:
            raise SystemExit(f"{flag} expects NAME=NUMBER, got {value!r}") from None
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``spot-emulator``."""
    parser = argparse.ArgumentParser(
        prog="spot-emulator",
        description="A local SageMaker training-job service on a simulated spot market.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=4599, help="port (0: any free port)")
    serve.add_argument(
        "--s3-port", type=int, help="port of S3 (default: --port + 1; any free port with --port 0)"
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides loopback ones (e.g. a proxy's)",
    )
    serve.add_argument("--data-dir", type=Path, required=True, help="jobs, logs, sandboxes, S3")
    serve.add_argument("--seed", type=int, default=0, help="seed of the random market model")
    serve.add_argument("--scenario", type=Path, help="scenario file (JSON, or YAML)")
    serve.add_argument("--tick", type=float, default=0.05, help="job clock period, seconds")
    serve.add_argument(
        "--notice", type=float, default=2.0, help="interruption notice (SIGTERM to SIGKILL), s"
    )
    serve.add_argument(
        "--interruption-rate",
        type=float,
        default=0.0,
        help="random spot interruptions per hour of training, every instance type",
    )
    serve.add_argument("--quota", action="append", default=[], metavar="TYPE=N")
    serve.add_argument("--throttle", action="append", default=[], metavar="OPERATION=RATE")
    serve.add_argument("--log-level", default="WARNING")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The configuration a ``serve`` command line asks for.

    :param args: the parsed arguments.
    """
    quotas = {k: int(v) for k, v in _pairs(args.quota, int, "--quota").items()}
    return EmulatorConfig(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        s3_port=args.s3_port,
        allowed_hosts=tuple(args.allow_host),
        seed=args.seed,
        tick_seconds=args.tick,
        durations=Durations(interruption_notice_seconds=args.notice),
        market_default=InstanceMarket(interruption_rate_per_hour=args.interruption_rate),
        quotas=quotas,
        throttle_rates=_pairs(args.throttle, float, "--throttle"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as err:
        raise SystemExit(f"spot-emulator: {err}") from None
    from airflow_spot_provider.emulator.leftovers import DataDirInUseError
    from airflow_spot_provider.emulator.server import SpotEmulator  # heavy: aiohttp, boto3
    from airflow_spot_provider.emulator.store import StoreError

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator = SpotEmulator(scenario=args.scenario, config=config)
    try:
        emulator.start()
    except (StoreError, DataDirInUseError, OSError) as err:
        raise SystemExit(f"spot-emulator: {err}") from None
    try:
        while not done.wait(3600):
            pass
    finally:
        print("spot-emulator: stopping (jobs are kept in the data dir)", flush=True)
        emulator.stop()
    return 0
