"""Waiting in tests for what happens in another task, thread or process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    what: str = "the condition",
    log: Callable[[], str] = str,
    interval: float = 0.01,
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that.

    After ``timeout`` seconds the test fails with "timed out waiting for <what>" and what
    ``log()`` says (a process's stderr, the calls a stand-in saw)."""

    async def check() -> Any:
        return predicate()

    return await until_async(check, timeout, what=what, log=log, interval=interval)


async def until_async(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    *,
    what: str = "the condition",
    log: Callable[[], str] = str,
    interval: float = 0.1,
) -> Any:
    """:func:`until` for a check that must be awaited (a query of the store)."""

    async def poll() -> Any:
        while not (result := await check()):
            await asyncio.sleep(interval)
        return result

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}\n{log()}".rstrip()) from None
