"""Taking a request in: handled once, and never lost to a store that refuses a write.

The platform was already acknowledged when a listener runs, so a request the store cannot
take (locked past its busy timeout, disk full) must not simply vanish: the claim is retried
a few times with a growing delay, and if the store still refuses, the adapter tells the
person in one line that the bot cannot save anything right now (`StoreUnavailable`).
Duplicates within this process are caught in memory first, so that line is said once even
when the platform delivers the same message twice (Slack: as `app_mention` and `message`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence

from core.store import Store
from core.store.db import is_unavailable

log = logging.getLogger(__name__)

#: Waits between attempts of a refused claim: the store's own busy timeout comes on top of each.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)


class StoreUnavailable(Exception):
    """The store refused a request's first write however often it was asked."""


class Intake:
    def __init__(self, store: Store, *, delays: Sequence[float] = RETRY_DELAYS, remember: int = 10_000) -> None:
        self.store = store
        self.delays = tuple(delays)
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_sight(self, key: str) -> bool:
        """True the first time this process sees `key` (no await: two deliveries at once cannot both pass)."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True

    async def claim(self, *keys: str) -> bool:
        """Claim every key in the store (other processes and redeliveries see it): False as soon as one
        was claimed before. Raises `StoreUnavailable` when the store keeps refusing."""
        for key in keys:
            if not await self._first_time(key):
                return False
        return True

    async def _first_time(self, key: str) -> bool:
        for attempt, delay in enumerate((*self.delays, None), start=1):
            try:
                return await self.store.first_time(key)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
                if delay is None:
                    log.error("cannot store request %s after %d tries (%s); telling the person", key, attempt, reason)
                    raise StoreUnavailable(reason) from exc
                log.warning("cannot store request %s (%s); retrying in %.1f s", key, reason, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
