"""Leaving :class:`AsyncJobs` closes every client, even when closing one of them fails.

A close that fails is not something the embedded backend can produce: the client managers here
are stand-ins that record their close.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_spot_provider.hooks.jobs import AsyncJobs


class _Manager:
    """A client's context manager whose ``__aexit__`` is recorded (and raises, if asked)."""

    def __init__(self, name: str, closed: list[str], fails: bool = False) -> None:
        self.name, self.closed, self.fails = name, closed, fails

    async def __aexit__(self, *exc_info: object) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise ConnectionResetError(f"closing {self.name} failed")


def test_a_client_whose_close_fails_leaves_the_others_closed() -> None:
    closed: list[str] = []
    jobs = AsyncJobs(aws_conn_id=None, region_name="us-east-1", log=logging.getLogger(__name__))

    async def use() -> None:
        async with jobs:
            for name, fails in (("sagemaker", False), ("logs", True), ("s3", False)):
                jobs._clients[name] = (_Manager(name, closed, fails), object())

    async def use_again() -> None:
        async with jobs:
            pass

    with pytest.raises(ConnectionResetError, match="closing logs failed"):
        asyncio.run(use())
    assert closed == ["sagemaker", "logs", "s3"]
    asyncio.run(use_again())
    assert closed == ["sagemaker", "logs", "s3"]  # forgotten once closed: none closed twice
