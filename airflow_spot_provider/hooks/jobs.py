"""The jobs interface: the sync adapter (worker, sensor) and the async one (trigger).

Both carry out the generators of :mod:`~airflow_spot_provider.hooks.job_calls` over the Amazon
provider's hooks (``SageMakerHook`` and ``AwsLogsHook``, their ``conn`` or ``get_async_conn``),
each AWS call under the one :class:`~airflow_spot_provider.hooks.errors.ApiRetryRule`.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from asgiref.sync import sync_to_async
from botocore.config import Config

from airflow_spot_provider.hooks.errors import ApiCallError, ApiRetryRule
from airflow_spot_provider.hooks.job_calls import Call, Ops, Say, Sleep

T = TypeVar("T")


def _hook(service: str, aws_conn_id: str | None, region_name: str | None) -> Any:
    """The Amazon provider's hook of a service; the same connection routes both."""
    if service == "logs":
        from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

        return AwsLogsHook(aws_conn_id=aws_conn_id, region_name=region_name)
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id, region_name=region_name)  # type: ignore[no-untyped-call]


def _load_service_model(service: str) -> None:
    """Parse a service's botocore model into the loader the Amazon provider's async sessions share.

    Blocking (run in a thread): the first client of a service in a process parses its model
    (SageMaker's is about 4 MB of JSON, up to a second on a busy triggerer); parsed here, the
    client's creation on the event loop finds it in the loader's cache.

    :param service: the botocore service name.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory

    session = BaseSessionFactory(conn=None).get_async_session()  # type: ignore[no-untyped-call]
    loader = session.get_component("data_loader")
    loader.load_service_model(service, "service-2", api_version=None)  # as the client asks it


async def _async_client(hook: Any, pool: int | None) -> Any:
    """The hook's aiobotocore client (``get_async_conn``), its connection pool raised to ``pool``.

    The connection's botocore config (its ``config_kwargs``) is kept, a larger pool in it too:
    the pool is set on the hook's own (cached) connection wrapper, looked up off the loop as
    ``get_async_conn`` does (``sync_to_async``). The service's model is loaded off the loop first.
    """
    await asyncio.to_thread(_load_service_model, hook.client_type)
    if pool is not None:

        def widen() -> None:
            wrapper = hook.conn_config
            config: Any = wrapper.botocore_config or Config()  # options set at run time
            most = max(pool, config.max_pool_connections or 0)
            wrapper.botocore_config = config.merge(Config(max_pool_connections=most))

        await sync_to_async(widen)()
    return await hook.get_async_conn()


def _drop_unentered(opened: asyncio.Future[Any]) -> None:
    """Close the client-creating coroutine of a client context nobody will enter.

    Its caller was cancelled while ``get_async_conn`` ran in a thread: the context it returns
    arrives here unused, and its coroutine, never awaited, would make Python warn.
    """
    if opened.cancelled() or opened.exception() is not None:
        return
    coroutine = getattr(opened.result(), "_coro", None)  # aiobotocore's ClientCreatorContext
    if asyncio.iscoroutine(coroutine):
        coroutine.close()


class _Carried(Generic[T]):
    """One operation being carried out: iterate over the effects it wants done.

    :class:`Say` is done here (a log line is the same in both adapters); the adapter answers each
    :class:`Call` with :meth:`answer` or :meth:`fail` and sleeps on :class:`Sleep` its own way.
    The result is :attr:`result` once the iteration stops.

    :param ops: the operation's generator.
    :param log: where :class:`Say` lines go.
    """

    def __init__(self, ops: Ops[T], log: Any) -> None:
        self.ops = ops
        self.log = log
        self._reply: Any = None
        self._error: ApiCallError | None = None
        self.result: T

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Call | Sleep:
        while True:
            try:
                if self._error is not None:
                    effect = self.ops.throw(self._error)
                else:
                    effect = self.ops.send(self._reply)
            except StopIteration as done:
                self.result = done.value
                raise
            self._reply, self._error = None, None
            if not isinstance(effect, Say):
                return effect
            getattr(self.log, effect.level)(effect.line)

    def answer(self, reply: Any) -> None:
        """The response of the call just made.

        :param reply: the response.
        """
        self._reply = reply

    def fail(self, error: ApiCallError) -> None:
        """The call just made failed with an error the operation handles itself.

        :param error: the error.
        """
        self._error = error


class _Jobs:
    """What both adapters hold: the connection, the task's logger and the API-retry rule.

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    :param log: where :class:`Say` lines go (the task's or the trigger's logger).
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


class SyncJobs(_Jobs):
    """Carry out job operations in this process (the worker, a sensor's poke)."""

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
        carried = _Carried(ops, self.log)
        for effect in carried:
            if isinstance(effect, Sleep):
                time.sleep(effect.seconds)
            elif isinstance(effect, Call):
                try:
                    carried.answer(self._call(effect))
                except ApiCallError as tolerated:
                    carried.fail(tolerated)
        return carried.result


class AsyncJobs(_Jobs):
    """Carry out job operations on the triggerer's event loop (an async context manager).

    It makes no blocking Airflow call on the loop: the watch's saved positions go through
    :class:`~airflow_spot_provider.watch.saver.PositionSaver`, in a thread.
    """

    def __init__(self, *, pool: int | None = None, **kwargs: Any) -> None:
        """Hold no client yet: each opens on its first call.

        :param pool: HTTP connections per client at least (the connection's botocore config, or
            botocore's default of 10, otherwise): as many as the calls made at once.
        :param kwargs: those of :class:`_Jobs`.
        """
        super().__init__(**kwargs)
        self.pool = pool
        self._opening: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        managers = [manager for manager, _ in self._clients.values()]
        self._clients.clear()
        first: BaseException | None = None
        for manager in managers:
            try:
                await manager.__aexit__(exc_type, exc, tb)
            except BaseException as error:  # the other clients are closed all the same
                first = first or error
        if first is not None:
            raise first

    async def _client(self, service: str) -> Any:
        if service not in self._clients:  # (context manager, client)
            # One client per service even when calls start together (the shared watch's).
            async with self._opening.setdefault(service, asyncio.Lock()):
                if service not in self._clients:
                    hook = _hook(service, self.aws_conn_id, self.region_name)
                    opening = asyncio.ensure_future(_async_client(hook, self.pool))
                    try:
                        # Shielded: a cancellation here must not lose the context it opens.
                        manager = await asyncio.shield(opening)
                    except asyncio.CancelledError:
                        opening.add_done_callback(_drop_unentered)
                        raise
                    self._clients[service] = (manager, await manager.__aenter__())
        return self._clients[service][1]

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
        carried = _Carried(ops, self.log)
        for effect in carried:
            if isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
                continue
            try:
                carried.answer(await self._call(effect))
            except ApiCallError as tolerated:
                carried.fail(tolerated)
        return carried.result
