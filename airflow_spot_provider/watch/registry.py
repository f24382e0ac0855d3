"""The watches of an event loop: one per (AWS connection, region), started and ended with use.

A triggerer process runs every trigger on one asyncio loop: :func:`watching` finds (or starts)
that loop's watch of the trigger's connection and region, subscribes the trigger for the time of
an ``async with`` block, and unsubscribes it in a ``finally`` (also when the trigger is cancelled:
a user action, the triggerer shutting down). The watch that loses its last subscriber ends and
closes its clients; the next subscriber starts a fresh one. Each loop also has one
:class:`~airflow_spot_provider.watch.saver.PositionSaver`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from airflow_spot_provider.watch.book import Tuning
from airflow_spot_provider.watch.loop import Key, Watch
from airflow_spot_provider.watch.saver import PositionSaver
from airflow_spot_provider.watch.subscription import Subscription

# The tuning of the watches started from now on (a test may lower the sweep or the cadence).
TUNING = Tuning()


class Registry:
    """One event loop's watches by (connection, region), and its position saver."""

    def __init__(self) -> None:
        self.watches: dict[Key, Watch] = {}
        self.saver = PositionSaver()

    def join(self, sub: Subscription, key: Key) -> Watch:
        """Subscribe to the watch of a key, starting one if there is none (or it has ended).

        :param sub: the subscription.
        :param key: ``(aws_conn_id, region_name)``.
        """
        watch = self.watches.get(key)
        if watch is None or watch.closed:
            watch = self.watches[key] = Watch(key, TUNING, self._ended)
            watch.start()
        watch.add(sub)
        return watch

    def leave(self, watch: Watch, sub: Subscription) -> None:
        """Unsubscribe; the watch ends with its last subscriber.

        :param watch: the watch joined.
        :param sub: the subscription.
        """
        watch.remove(sub)
        if not watch.subs:
            self._ended(watch)
            watch.stop()

    def _ended(self, watch: Watch) -> None:
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]


# The loop's registry is kept on the loop itself: in a dict keyed by the loop, even a weak one,
# the registry (its saver's task and futures refer to their loop) would keep its own key alive.
_ATTRIBUTE = "_airflow_spot_provider_registry"


def registry() -> Registry:
    """The running event loop's registry."""
    loop = asyncio.get_running_loop()
    found: Registry | None = getattr(loop, _ATTRIBUTE, None)
    if found is None:
        found = Registry()
        setattr(loop, _ATTRIBUTE, found)
    return found


@asynccontextmanager
async def watching(
    sub: Subscription, *, aws_conn_id: str | None, region_name: str | None
) -> AsyncIterator[Watch]:
    """Subscribe to the loop's watch of a connection and region for the time of the block.

    :param sub: the subscription.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    """
    found = registry()
    watch = found.join(sub, (aws_conn_id, region_name))
    try:
        yield watch
    finally:
        found.leave(watch, sub)
    # The last subscriber out waits for the watch to close its clients (in the watch's own
    # task): an event loop that ends with this trigger (dag.test(), `airflow dags test`) would
    # otherwise cancel that close half-way and leave its aiohttp sessions unclosed.
    if not watch.subs and watch.task is not None:
        await asyncio.wait([watch.task])
