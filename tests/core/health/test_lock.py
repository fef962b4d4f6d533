"""The scheduler lease in the database, with explicit clock values; two Store instances act as two processes.

Each test runs on SQLite and on the session's PostgreSQL (`store_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.health.lock import LeaseLock, make_owner_id
from core.instance import ProcessIdentity
from core.store import Store


@pytest_asyncio.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    first, second = Store(store_url), Store(store_url)
    await first.init()
    await second.init()
    yield first, second
    await first.close()
    await second.close()


@pytest.mark.asyncio
async def test_one_holder_renewals_and_takeover_after_expiry(stores: tuple[Store, Store]) -> None:
    a, b = LeaseLock(stores[0]), LeaseLock(stores[1])
    first = await a.acquire("proc-a", now=1000, lease=60)
    assert (first.acquired, first.owner, first.expires_at) == (True, "proc-a", 1060)
    refused = await b.acquire("proc-b", now=1010, lease=60)
    assert (refused.acquired, refused.owner) == (False, "proc-a")
    renewed = await a.acquire("proc-a", now=1050, lease=60)
    assert renewed.acquired and renewed.expires_at == 1110
    assert not (await b.acquire("proc-b", now=1100, lease=60)).acquired  # renewed in time
    taken = await b.acquire("proc-b", now=1111, lease=60)  # proc-a stopped renewing
    assert (taken.acquired, taken.owner) == (True, "proc-b")
    assert not (await a.acquire("proc-a", now=1112, lease=60)).acquired
    holder = await a.holder()
    assert holder is not None and (holder.owner, holder.acquired_at) == ("proc-b", 1111)


@pytest.mark.asyncio
async def test_release_hands_over_at_once(stores: tuple[Store, Store]) -> None:
    a, b = LeaseLock(stores[0]), LeaseLock(stores[1])
    assert (await a.acquire("proc-a", now=1000, lease=60)).acquired
    assert not await b.release("proc-b")  # not the holder: nothing happens
    assert await a.release("proc-a")
    assert (await b.acquire("proc-b", now=1001, lease=60)).acquired


def test_owner_ids_name_the_process() -> None:
    host, pid, tag = make_owner_id().split(":")
    assert host and pid.isdigit() and len(tag) == 6


@pytest.mark.asyncio
async def test_a_holder_known_dead_is_taken_over_before_its_lease_ends(
    stores: tuple[Store, Store], tmp_path: Path
) -> None:
    a, b = ProcessIdentity.start(tmp_path / "data"), ProcessIdentity.start(tmp_path / "data")
    try:
        first, second = LeaseLock(stores[0], holder_gone=a.is_dead), LeaseLock(stores[1], holder_gone=b.is_dead)
        assert (await first.acquire(a.owner, now=1000, lease=3600)).acquired
        assert not (await second.acquire(b.owner, now=1001, lease=3600)).acquired  # alive: it waits
        a.close()  # the holder dies (its lock in the data directory is free)
        taken = await second.acquire(b.owner, now=1002, lease=3600)
        assert (taken.acquired, taken.owner) == (True, b.owner)
        assert not (await first.acquire(a.owner, now=1003, lease=3600)).acquired
    finally:
        a.close()
        b.close()
