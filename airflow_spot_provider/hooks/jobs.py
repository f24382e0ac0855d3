"""The jobs interface: the sync adapter (worker, sensor) and the async one (trigger).

Both carry out the generators of :mod:`~airflow_spot_provider.hooks.job_calls` over the Amazon
provider's hooks (``SageMakerHook`` and ``AwsLogsHook``, their ``conn`` or ``get_async_conn``),
each AWS call under the one :class:`~airflow_spot_provider.hooks.errors.ApiRetryRule`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from airflow_spot_provider.hooks.errors import ApiCallError, ApiRetryRule
from airflow_spot_provider.hooks.job_calls import Call, Ops, Say, Sleep
from airflow_spot_provider.position import Position

T = TypeVar("T")


def _hook(service: str, aws_conn_id: str | None, region_name: str | None) -> Any:
    """The Amazon provider's hook of a service; the same connection routes both."""
    if service == "logs":
        from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

        return AwsLogsHook(aws_conn_id=aws_conn_id, region_name=region_name)
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id, region_name=region_name)  # type: ignore[no-untyped-call]


class SyncJobs:
    """Carry out job operations in this process (the worker, a sensor's poke).

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param log: where :class:`Say` lines go (the task's logger).
    :param rule: the API-retry rule.
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        log: Any,
        rule: ApiRetryRule | None = None,
    ) -> None:
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.log = log
        self.rule = rule or ApiRetryRule()
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = _hook(service, self.aws_conn_id, self.region_name).conn
        return self._clients[service]

    def _call(self, call: Call) -> Any:
        tries = self.rule.tries(call.job_name, lasting=call.lasting)
        while True:
            try:
                return getattr(self._client(call.service), call.operation)(**call.kwargs)
            except Exception as raw:  # sorted out by the rule: AWS answers only
                time.sleep(tries.wait_after(raw, call.tolerate, any_code=call.best_effort))

    def run(self, ops: Ops[T]) -> T:
        """Carry out an operation to its result.

        :param ops: the operation's generator.
        """
        reply: Any = None
        error: ApiCallError | None = None
        while True:
            try:
                effect = ops.throw(error) if error is not None else ops.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(effect, Call):
                try:
                    reply = self._call(effect)
                except ApiCallError as tolerated:
                    error = tolerated
            elif isinstance(effect, Sleep):
                time.sleep(effect.seconds)
            elif isinstance(effect, Say):
                getattr(self.log, effect.level)(effect.line)
            # Save: a worker keeps its position in memory; nothing outlives it to save for.


class AsyncJobs:
    """Carry out job operations on the triggerer's event loop (an async context manager).

    Blocking Airflow calls (the saved position) run in a thread with ``asyncio.to_thread``: a
    cancellation then reaches the trigger with its message intact (the triggerer calls
    ``on_kill`` only when the message says a user acted).

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param log: where :class:`Say` lines go (the trigger's logger).
    :param rule: the API-retry rule.
    :param save: keeps a position across triggerer restarts (blocking; run in a thread).
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        region_name: str | None,
        log: Any,
        rule: ApiRetryRule | None = None,
        save: Callable[[Position], None] | None = None,
    ) -> None:
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.log = log
        self.rule = rule or ApiRetryRule()
        self.save = save
        self._open: dict[str, tuple[Any, Any]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for manager, _ in self._open.values():
            await manager.__aexit__(exc_type, exc, tb)
        self._open.clear()

    async def _client(self, service: str) -> Any:
        if service not in self._open:
            manager = await _hook(service, self.aws_conn_id, self.region_name).get_async_conn()
            self._open[service] = (manager, await manager.__aenter__())
        return self._open[service][1]

    async def _call(self, call: Call) -> Any:
        tries = self.rule.tries(call.job_name, lasting=call.lasting)
        while True:
            try:
                client = await self._client(call.service)
                return await getattr(client, call.operation)(**call.kwargs)
            except Exception as raw:  # sorted out by the rule: AWS answers only
                await asyncio.sleep(tries.wait_after(raw, call.tolerate, any_code=call.best_effort))

    async def run(self, ops: Ops[T]) -> T:
        """Carry out an operation to its result.

        :param ops: the operation's generator.
        """
        reply: Any = None
        error: ApiCallError | None = None
        while True:
            try:
                effect = ops.throw(error) if error is not None else ops.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(effect, Call):
                try:
                    reply = await self._call(effect)
                except ApiCallError as tolerated:
                    error = tolerated
            elif isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
            elif isinstance(effect, Say):
                getattr(self.log, effect.level)(effect.line)
            elif self.save is not None:
                await asyncio.to_thread(self.save, effect.position)
