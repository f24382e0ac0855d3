"""Configuration of the spot emulator: durations, market model, quotas, throttles, limits.

Every duration is real time in seconds. The defaults are small so that a lifecycle with two
interruptions fits in a few seconds; a demo that wants to be watched can lengthen them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")


def _check_non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Durations:
    """How long each phase of a job takes at least (the work itself may take longer).

    :param starting_seconds: Starting: time to acquire instances when capacity is available.
    :param downloading_min_seconds: Downloading lasts at least this long.
    :param uploading_min_seconds: Uploading lasts at least this long.
    :param stopping_seconds: Stopping lasts at least this long.
    :param interruption_notice_seconds: SIGTERM to SIGKILL on an interruption or a stop (EC2
        gives 120 s; short here so tests stay fast).
    :param restart_delay_seconds: after an interruption, time before capacity can come back.
    """

    starting_seconds: float = 0.2
    downloading_min_seconds: float = 0.1
    uploading_min_seconds: float = 0.1
    stopping_seconds: float = 0.1
    interruption_notice_seconds: float = 2.0
    restart_delay_seconds: float = 0.3

    def __post_init__(self) -> None:
        _check_non_negative("Durations", **{k: float(v) for k, v in vars(self).items()})


@dataclass(frozen=True)
class InstanceMarket:
    """The market of one instance type.

    :param on_demand_price: USD per instance-hour on demand.
    :param spot_discount: fraction saved on spot (0.7: spot costs 30 % of on-demand).
    :param interruption_rate_per_hour: mean spot interruptions per hour of training (random model).
    :param capacity_availability: probability that capacity is there when a job asks for it; when
        it is not, the job waits an exponential time of mean ``mean_capacity_wait_seconds``.
    :param mean_capacity_wait_seconds: see ``capacity_availability``.
    """

    on_demand_price: float = 1.0
    spot_discount: float = 0.7
    interruption_rate_per_hour: float = 0.0
    capacity_availability: float = 1.0
    mean_capacity_wait_seconds: float = 1.0

    def __post_init__(self) -> None:
        _check_non_negative("InstanceMarket", **{k: float(v) for k, v in vars(self).items()})
        if self.on_demand_price <= 0:
            raise ValueError(f"on_demand_price must be > 0, got {self.on_demand_price!r}")
        if not 0 <= self.spot_discount < 1:
            raise ValueError(f"spot_discount must be in [0, 1), got {self.spot_discount!r}")
        if not 0 <= self.capacity_availability <= 1:
            raise ValueError(
                f"capacity_availability must be in [0, 1], got {self.capacity_availability!r}"
            )

    @property
    def spot_price(self) -> float:
        """USD per instance-hour on spot."""
        return self.on_demand_price * (1 - self.spot_discount)


def _frozen(mapping: Mapping[str, object] | None) -> MappingProxyType[str, object]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator can be told.

    :param data_dir: where the SQLite store, the sandboxes and the S3 snapshot live.
    :param host: address to bind (loopback unless told otherwise).
    :param port: port to bind (0: any free port).
    :param s3_port: port of S3; None: ``port + 1`` (any free port when ``port`` is 0), so that a
        restarted emulator keeps the endpoints of the connection pasted before.
    :param admin_token: the token the admin API asks for; None: a new random one per run.
    :param allowed_hosts: ``Host`` names to answer besides loopback ones and ``host`` (a proxy's).
    :param seed: seed of the random market model (same seed, same events).
    :param durations: phase durations.
    :param tick_seconds: granularity of the job clock.
    :param market_default: market of instance types not in ``markets`` nor in the built-in table.
    :param markets: per instance type overrides of the market.
    :param quotas: per instance type limit of live instances (spot and on-demand counted apart);
        types without an entry get ``default_quota``.
    :param default_quota: the limit of instance types not in ``quotas``: generous, but a bound,
        checked before anything of a job is allocated.
    :param throttle_rates: per operation (``DescribeTrainingJob``...) requests per second; off when
        absent.
    :param max_body_bytes: largest request body accepted.
    :param log_cap_bytes: largest log of one host of a job; its oldest lines are dropped past it.
    :param checkpoint_sync_seconds: interval of the checkpoint upload scan during training.
    :param region: AWS region in ARNs and in the printed connection.
    :param account: AWS account id in ARNs.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    s3_port: int | None = None
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    seed: int = 0
    durations: Durations = field(default_factory=Durations)
    tick_seconds: float = 0.05
    market_default: InstanceMarket = field(default_factory=InstanceMarket)
    markets: Mapping[str, InstanceMarket] = field(default_factory=dict)
    quotas: Mapping[str, int] = field(default_factory=dict)
    default_quota: int = 10_000
    throttle_rates: Mapping[str, float] = field(default_factory=dict)
    max_body_bytes: int = 2 * 1024 * 1024
    log_cap_bytes: int = 8 * 1024 * 1024
    checkpoint_sync_seconds: float = 0.5
    region: str = "us-east-1"
    account: str = "123456789012"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "markets", _frozen(self.markets))
        object.__setattr__(self, "quotas", _frozen(self.quotas))
        object.__setattr__(self, "throttle_rates", _frozen(self.throttle_rates))
        self._check_endpoints()
        if not 0.001 <= self.tick_seconds <= 5:
            raise ValueError(f"tick_seconds must be in [0.001, 5], got {self.tick_seconds}")
        if not 0.01 <= self.checkpoint_sync_seconds <= 60:
            raise ValueError(
                f"checkpoint_sync_seconds must be in [0.01, 60], got {self.checkpoint_sync_seconds}"
            )
        if not 0 <= self.default_quota <= 2**31 - 1:
            raise ValueError(f"default_quota must be in 0..2147483647, got {self.default_quota}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if not _REGION_RE.match(self.region):
            raise ValueError(f"region {self.region!r} is not an AWS region name")
        if not _ACCOUNT_RE.match(self.account):
            raise ValueError(f"account {self.account!r} must be 12 digits")
        self._check_tables()

    def _check_endpoints(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.s3_port is not None and not 0 <= self.s3_port <= 65535:
            raise ValueError(f"s3_port must be in 0..65535, got {self.s3_port}")
        if self.port == 65535 and self.s3_port is None:
            raise ValueError("port 65535 leaves no port + 1 for S3: give s3_port")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("admin_token must be at least 16 characters")
        if self.log_cap_bytes < 64 * 1024:
            raise ValueError(f"log_cap_bytes must be >= 65536, got {self.log_cap_bytes}")

    def _check_tables(self) -> None:
        if not isinstance(self.durations, Durations):
            raise ValueError(f"durations must be a Durations, got {self.durations!r}")
        if not isinstance(self.market_default, InstanceMarket):
            raise ValueError(
                f"market_default must be an InstanceMarket, got {self.market_default!r}"
            )
        for name, limit in self.quotas.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"quotas[{name!r}] must be an int >= 0, got {limit!r}")
        for name, rate in self.throttle_rates.items():
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
                raise ValueError(f"throttle_rates[{name!r}] must be > 0, got {rate!r}")
        for name, market in self.markets.items():
            if not isinstance(market, InstanceMarket):
                raise ValueError(f"markets[{name!r}] must be an InstanceMarket")

    @property
    def db_path(self) -> Path:
        """The SQLite store."""
        return self.data_dir / "emulator.sqlite3"

    @property
    def s3_bind_port(self) -> int:
        """The port S3 binds: ``s3_port``, else ``port + 1`` (0 when ``port`` is 0)."""
        if self.s3_port is not None:
            return self.s3_port
        return self.port + 1 if self.port else 0

    @property
    def s3_dir(self) -> Path:
        """S3's buckets and objects (files plus an SQLite index)."""
        return self.data_dir / "s3-store"

    @property
    def legacy_s3_snapshot_dir(self) -> Path:
        """Where emulators of the moto days saved S3 on stop (imported once on start)."""
        return self.data_dir / "s3"

    @property
    def token_path(self) -> Path:
        """The file holding the admin token of the running emulator (mode 0600), for local tools."""
        return self.data_dir / "admin-token"

    @property
    def pid_path(self) -> Path:
        """The backend's pid and start time; a second backend on the same data dir is refused."""
        return self.data_dir / "backend.pid"

    @property
    def processes_path(self) -> Path:
        """Pids of the jobs' training processes, killed by the next start if still alive."""
        return self.data_dir / "processes.json"
