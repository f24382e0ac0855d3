"""Keeping the triggerer's long-lived heap out of the garbage collector's full collections.

A triggerer that follows many jobs holds a large heap that lives as long as it does (Airflow,
botocore's service models, the watch's clients and subscriptions: about 220 MB at 1,000 jobs).
CPython's cyclic collector walks all of it on every full (generation 2) collection, which stalls
the event loop for a few hundred milliseconds, every trigger with it. :func:`gc.freeze` moves the
objects alive now into a permanent generation that collections skip: the watch freezes once its
clients are built and its first cycle is done, and again when its subscribers have doubled
since the last freeze (at most about ``log2(triggers)`` freezes in a process's life).

The trade-off: frozen objects are never collected by the cyclic collector. Those freed by
reference counting (almost all) are still freed when unused; a reference cycle that was
already garbage at a freeze, or that becomes garbage later among frozen objects, stays in memory.
``Tuning.freeze_heap`` turns it off.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# The subscribers at this process's last freeze (0: none yet); the heap is process-wide.
_frozen_for = 0


def freeze_if_grown(subscribers: int) -> bool:
    """Freeze the heap alive now, the first time or once subscribers doubled since; whether it did.

    :param subscribers: the watch's subscribers now.
    """
    global _frozen_for  # noqa: PLW0603  (the heap, and so its freezes, are the process's)
    if _frozen_for and subscribers < 2 * _frozen_for:
        return False
    _frozen_for = max(subscribers, 1)
    gc.freeze()
    log.debug("Froze %d heap objects (%d subscribers).", gc.get_freeze_count(), subscribers)
    return True
