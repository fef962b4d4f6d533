"""Who a tool call is for.

Tool schemas come from their signatures, so the requester cannot be a parameter the
model fills in (it could claim to be anyone).  The agent binds the run's `Request`
around each tool call instead; tools that depend on the requester (memory scopes)
read it with `current_request.get()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from core.events import Request

current_request: ContextVar[Request | None] = ContextVar("current_request", default=None)


@contextmanager
def acting_for(request: Request) -> Iterator[None]:
    """Bind `request` as the current requester for the duration of the block."""
    token = current_request.set(request)
    try:
        yield
    finally:
        current_request.reset(token)
