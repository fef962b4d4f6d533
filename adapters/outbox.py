"""What the bot must post, kept in the store until the platform has it.

Every post, edit and reaction a chat adapter makes for a conversation is queued here first
(a row of the store's `outbox` table), then delivered by one drain task per lane — a
channel and thread — oldest first. Both adapters use this one loop over a small
`Transport`: the platform packages only say how to send an entry and which failures pass.

- A failure that may pass (HTTP 429, a 5xx, a dropped connection) is retried after the
  platform's Retry-After, or after a backoff, for as long as it takes; nothing behind it
  in its lane jumps ahead.
- A refusal for good (no such channel, no permission) fails that entry only, and the thread
  gets one line saying so when the transport has one to say.
- Idempotent: an entry is queued once per dedupe key and, once recorded as sent, never sent
  again; an edit that a newer edit of the same message supersedes is skipped (coalesced).
- Durable: a restarted bot (a new adapter on the same database) drains what the last one
  left, and several bot processes may drain one database (an entry is claimed, with a lease,
  before it is sent).
- When the store itself refuses to queue (locked, disk full) the entry is kept in memory and
  delivered all the same: the store going wrong must not silence the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

from core.store import Store
from core.store.db import OutboxClaim, is_unavailable
from core.store.models import Outbox as OutboxRow
from core.store.models import OutboxStatus

log = logging.getLogger(__name__)

Kind = Literal["post", "update", "reaction"]
Lane = tuple[str, str]  # (channel, thread)
Payload = dict[str, Any]
T = TypeVar("T")


class RetryLater(Exception):
    """Not delivered, but it may work later. `after`: the platform's delay (Retry-After); None: back off."""

    def __init__(self, reason: str, *, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Undeliverable(Exception):
    """The platform refused for good; retrying cannot help. `reason` is one line for the log and thread."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeliveryFailed(Exception):
    """A caller waited for an entry that was refused for good."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry as a transport sees it."""

    key: str
    channel: str
    thread: str
    kind: Kind
    payload: Payload
    target: str = ""  # an update's or reaction's post (its key)
    target_ref: str = ""  # that post's platform reference, resolved before `deliver`
    attempts: int = 0
    row_id: int | None = None  # None: kept in memory only (the store refused it)


class Transport(Protocol):
    platform: str

    async def deliver(self, item: Delivery) -> str:
        """Send one entry; the platform's reference of what was posted ("" when there is none).
        Raises `RetryLater` or `Undeliverable`; anything else is a bug and fails the entry."""
        ...

    def notice(self, item: Delivery, reason: str) -> Payload | None:
        """The post (in the same lane) telling the thread that `item` could not be delivered;
        None to say nothing (the channel is gone, say)."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays for failures the platform gives no delay for: first, doubling, capped."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempts: int) -> float:
        return float(min(self.cap, self.first * 2.0 ** max(0, attempts - 1)))


DEFAULT_BACKOFF = Backoff()


class _Recent(OrderedDict[str, tuple[str, str]]):
    """key → (status, ref or error), for the last entries this process delivered."""

    def remember(self, key: str, status: str, detail: str, *, size: int = 10_000) -> None:
        self[key] = (status, detail)
        self.move_to_end(key)
        while len(self) > size:
            self.popitem(last=False)


class Outbox:
    """Queue and deliver a platform's posts, edits and reactions; see the module docstring."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        lease: float = 120.0,
        sweep_every: float = 30.0,
        poll: float = 1.0,
        keep_for: float = 7 * 86400.0,
        ready: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.transport = transport
        self.platform = transport.platform
        self.backoff = backoff
        self.lease = lease  # how long a claimed entry is ours before another process may take it
        self.sweep_every = sweep_every  # how often lanes other processes left are looked for
        self.poll = poll  # how often a lane waiting on another process's claim looks again
        self.keep_for = keep_for  # delivered entries are forgotten after this long
        self.ready = ready  # deliveries wait for it (Discord: the connection)
        self.clock = clock
        self._lanes: dict[Lane, asyncio.Task[None]] = {}
        self._wake: dict[Lane, asyncio.Event] = {}
        self._unstored: dict[Lane, deque[Delivery]] = {}
        self._recent = _Recent()
        self._tried: set[str] = set()
        self._progress = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # ---- queuing ---------------------------------------------------------------------
    async def post(self, channel: str, thread: str, payload: Payload, *, key: str = "") -> str:
        """Queue a new message; returns its key (what edits and reactions of it refer to)."""
        return await self._queue("post", channel, thread, payload, key=key)

    async def edit(self, channel: str, thread: str, target: str, payload: Payload, *, key: str = "") -> str:
        """Queue an edit of the message queued under `target`."""
        return await self._queue("update", channel, thread, payload, key=key, target=target)

    async def react(self, channel: str, thread: str, target: str, payload: Payload, *, key: str = "") -> str:
        """Queue a reaction of the bot's on the message queued under `target`."""
        return await self._queue("reaction", channel, thread, payload, key=key, target=target)

    async def _queue(
        self, kind: Kind, channel: str, thread: str, payload: Payload, *, key: str, target: str = ""
    ) -> str:
        key = key or f"{self.platform}:{uuid.uuid4().hex}"
        now = self.clock()
        row = OutboxRow(
            platform=self.platform, channel=channel, thread=thread, kind=kind, payload_json=json.dumps(payload),
            dedupe_key=key, target_key=target, next_attempt_at=now, created_at=now,
        )  # fmt: skip
        try:
            await self.store.outbox_add(row)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning(
                "%s: the store refused to queue a %s for %s/%s (%s); delivering it from memory",
                self.platform, kind, channel, thread, _one_line(exc),
            )  # fmt: skip
            item = Delivery(key, channel, thread, kind, payload, target=target)
            self._unstored.setdefault((channel, thread), deque()).append(item)
        self._kick((channel, thread))
        return key

    # ---- waiting ----------------------------------------------------------------------
    async def sent(self, keys: Sequence[str]) -> list[str]:
        """Wait until each entry is delivered; their platform references. `DeliveryFailed` when one
        was refused for good. (Under a 429 storm this waits as long as the storm lasts.)"""
        return [await self._outcome(key, patient=True) for key in keys]

    async def attempted(self, keys: Sequence[str]) -> None:
        """Wait until each entry was tried once (delivered, or waiting for a retry): what a caller that
        must not wait out a storm (start-up notices) waits for."""
        for key in keys:
            try:
                await self._outcome(key, patient=False)
            except DeliveryFailed:
                pass  # logged by the drain loop

    async def drained(self, channel: str, thread: str) -> None:
        """Until everything queued so far in this lane has been delivered (or refused)."""
        lane = (channel, thread)
        while (task := self._lanes.get(lane)) is not None and not task.done():
            await asyncio.wait({task})

    async def wait_idle(self) -> None:
        """Until no lane of this process has anything left to deliver."""
        while running := {t for t in self._lanes.values() if not t.done()}:
            await asyncio.wait(running)

    async def _outcome(self, key: str, *, patient: bool) -> str:
        while True:
            progress = self._progress
            known = self._recent.get(key)
            if known is None:
                row: OutboxRow | None = None
                try:
                    rows = await self.store.outbox_entries(keys=[key])
                    row = rows[0] if rows else None
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                if row is not None and row.status != OutboxStatus.PENDING:
                    known = (row.status, row.ref if row.status == OutboxStatus.SENT else row.error)
                elif row is not None and row.attempts and not patient:
                    return ""
            if known is not None:
                status, detail = known
                if status == OutboxStatus.FAILED:
                    raise DeliveryFailed(f"not delivered: {detail}")
                return detail if status == OutboxStatus.SENT else ""
            if not patient and key in self._tried:
                return ""
            if self._closed:
                raise DeliveryFailed("not delivered yet: the bot is stopping (it stays queued for the next start)")
            try:  # woken by this process's deliveries; another process's are seen by polling
                await asyncio.wait_for(progress.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    def _note(self, keys: Sequence[str], status: str | None = None, detail: str = "") -> None:
        for key in keys:
            self._tried.add(key)
            if status is not None:
                self._recent.remember(key, status, detail)
        if len(self._tried) > 10_000:
            self._tried.clear()
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    # ---- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Drain what an earlier process left (a restart), then keep looking every `sweep_every`
        seconds for lanes another process left behind."""
        self._closed = False
        try:
            pruned = await self.store.outbox_prune(before=self.clock() - self.keep_for)
            if pruned:
                log.debug("%s: forgot %d delivered outbox entries", self.platform, pruned)
        except Exception as exc:
            log.warning("%s: could not prune the outbox (%s)", self.platform, _one_line(exc))
        await self.resume()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name=f"outbox-{self.platform}-sweep")

    async def resume(self) -> int:
        """Start draining every lane with pending entries; how many there were."""
        lanes = await self.store.outbox_lanes(self.platform)
        fresh = [lane for lane in lanes if lane not in self._lanes]
        if fresh:
            log.info("%s: delivering what is left in %d conversation(s)", self.platform, len(fresh))
        for lane in lanes:
            self._kick(lane)
        return len(lanes)

    async def close(self) -> None:
        """Stop delivering (safe to call twice). What is left stays in the store for the next start."""
        self._closed = True
        tasks = [t for t in [self._sweeper, *self._lanes.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await self.resume()
            except Exception as exc:
                log.warning("%s: could not look for undelivered posts (%s)", self.platform, _one_line(exc))

    # ---- draining -------------------------------------------------------------------------
    def _kick(self, lane: Lane) -> None:
        if self._closed:
            return
        wake = self._wake.setdefault(lane, asyncio.Event())
        wake.set()
        task = self._lanes.get(lane)
        if task is None or task.done():
            task = asyncio.create_task(self._drain(lane), name=f"outbox-{self.platform}-{lane[0]}-{lane[1]}")
            self._lanes[lane] = task
            task.add_done_callback(functools.partial(self._lane_done, lane))

    def _lane_done(self, lane: Lane, task: asyncio.Task[None]) -> None:
        if self._lanes.get(lane) is task:
            del self._lanes[lane]
            if not self._unstored.get(lane):
                self._unstored.pop(lane, None)
                self._wake.pop(lane, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the delivery loop of %s/%s stopped", self.platform, *lane, exc_info=task.exception())

    async def _drain(self, lane: Lane) -> None:
        wake = self._wake[lane]
        store_failures = 0
        while True:
            wake.clear()
            if self.ready is not None and not self.ready.is_set():
                await self.ready.wait()  # claim nothing before the platform can take it
            try:
                claim = await self._claim(lane)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                store_failures += 1
                if store_failures == 1:
                    log.warning("%s: cannot read the outbox (%s); retrying", self.platform, _one_line(exc))
                if not await self._deliver_unstored(lane):
                    await self._pause(wake, self.backoff.delay(store_failures))
                continue
            store_failures = 0
            if claim.entry is not None:
                await self._attempt(claim)
            elif claim.due is not None:  # the head waits for its Retry-After, or another process has it
                await self._pause(wake, min(claim.due - self.clock(), self.poll))
            elif not await self._deliver_unstored(lane) and not wake.is_set():
                return  # nothing left; the next `_kick` starts a new loop

    async def _claim(self, lane: Lane) -> OutboxClaim:
        """Claim the head of a lane. Stopped while the store works on it, the claim is given back
        at once: otherwise it would stay ours for the whole lease and the next process would wait."""
        task = asyncio.ensure_future(self.store.outbox_claim(self.platform, *lane, now=self.clock(), lease=self.lease))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                claim = await task
                if claim.entry is not None and claim.entry.id is not None:
                    await self.store.outbox_retry(claim.entry.id, at=self.clock(), error="interrupted")
            raise

    async def _pause(self, wake: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def _attempt(self, claim: OutboxClaim) -> None:
        entry = claim.entry
        assert entry is not None and entry.id is not None
        source = claim.latest or entry
        item = Delivery(
            key=source.dedupe_key, channel=entry.channel, thread=entry.thread, kind=entry.kind,  # type: ignore[arg-type]
            payload=json.loads(source.payload_json), target=entry.target_key, attempts=entry.attempts,
            row_id=source.id,
        )  # fmt: skip
        covered = [entry.dedupe_key] if source is entry else [entry.dedupe_key, source.dedupe_key]
        ids = sorted({entry.id, source.id or entry.id, *claim.covers})
        try:
            ref = await self._send(item, claim.target)
        except asyncio.CancelledError:
            # Stopping: give the entry back at once rather than after the lease. (Had the platform
            # already taken it, it is sent again: the one case where a post can be duplicated.)
            await self._quietly(self.store.outbox_retry(entry.id, at=self.clock(), error="interrupted"))
            raise
        except RetryLater as exc:
            after = exc.after if exc.after is not None else self.backoff.delay(entry.attempts)
            # Said once, then every 20 tries: a long storm should not flood the log.
            tries = entry.attempts
            level = logging.INFO if tries == 1 else logging.WARNING if tries % 20 == 0 else logging.DEBUG
            log.log(level, "%s: %s in %s/%s not delivered after %d tries (%s); retrying in %.1f s",
                    self.platform, entry.kind, entry.channel, entry.thread, tries, exc.reason, after)  # fmt: skip
            await self._quietly(self.store.outbox_retry(entry.id, at=self.clock() + after, error=exc.reason))
            self._note(covered)
            return
        except _Orphan as exc:
            log.warning("%s: %s in %s/%s dropped: %s", self.platform, entry.kind, entry.channel, entry.thread, exc)
            await self._quietly(self.store.outbox_failed(ids, error=str(exc)))
            self._note(covered, OutboxStatus.FAILED, str(exc))
            return
        except Undeliverable as exc:
            await self._refused(item, exc.reason, ids=ids, keys=covered)
            return
        except Exception as exc:  # a bug in the transport: fail this entry, loudly, and go on
            log.exception("%s: delivering %s %s failed", self.platform, entry.kind, item.key)
            await self._refused(item, f"{type(exc).__name__}: {exc}", ids=ids, keys=covered)
            return
        approval = _approval_of(item)

        def record() -> Awaitable[None]:
            return self.store.outbox_sent(
                source.id or entry.id or 0, ref=ref, now=self.clock(), covers=ids,
                approval=(approval[0], entry.channel, approval[1]) if approval else None,
            )  # fmt: skip

        try:
            await self._until_recorded(record)
        except asyncio.CancelledError:
            await self._quietly(record())  # stopping: the platform has it, so the store must say so
            raise
        self._note(covered, OutboxStatus.SENT, ref)

    async def _send(self, item: Delivery, target: OutboxRow | None) -> str:
        if item.kind != "post":
            ref = self._sent_ref(item.target, target)
            item = replace(item, target_ref=ref)
        return await self.transport.deliver(item)

    def _sent_ref(self, key: str, target: OutboxRow | None) -> str:
        known = self._recent.get(key)
        if known is not None and known[0] == OutboxStatus.SENT and known[1]:
            return known[1]
        if target is not None and target.status == OutboxStatus.SENT and target.ref:
            return target.ref
        if (target is not None and target.status == OutboxStatus.PENDING) or key in self._pending_in_memory():
            raise RetryLater("its message is not posted yet")
        raise _Orphan(f"the message it applies to ({key or 'none'}) was never posted")

    def _pending_in_memory(self) -> set[str]:
        return {item.key for queue in self._unstored.values() for item in queue}

    async def _refused(self, item: Delivery, reason: str, *, ids: Sequence[int], keys: Sequence[str]) -> None:
        log.warning("%s: %s in %s/%s refused for good: %s", self.platform, item.kind, item.channel, item.thread, reason)
        if ids:
            await self._quietly(self.store.outbox_failed(ids, error=reason))
        self._note(keys, OutboxStatus.FAILED, reason)
        if item.payload.get("notice"):
            return  # the notice itself failed: say nothing more
        notice = self.transport.notice(item, reason)
        if notice is not None:
            # Once per message: the edits of a message that keep failing are said once.
            await self.post(
                item.channel, item.thread, {**notice, "notice": True}, key=f"{item.target or item.key}:refused"
            )

    async def _deliver_unstored(self, lane: Lane) -> bool:
        """Deliver one entry the store would not take; False when there is none."""
        queue = self._unstored.get(lane)
        if not queue:
            return False
        item = queue[0]
        keys = [item.key]
        try:
            ref = await self._send(item, None)
        except RetryLater as exc:
            item = replace(item, attempts=item.attempts + 1)
            queue[0] = item
            self._note(keys)
            await asyncio.sleep(exc.after if exc.after is not None else self.backoff.delay(item.attempts))
            return True
        except _Orphan as exc:
            queue.popleft()
            self._note(keys, OutboxStatus.FAILED, str(exc))
            return True
        except Undeliverable as exc:
            queue.popleft()
            await self._refused(item, exc.reason, ids=(), keys=keys)
            return True
        except Exception as exc:
            queue.popleft()
            log.exception("%s: delivering %s %s failed", self.platform, item.kind, item.key)
            await self._refused(item, f"{type(exc).__name__}: {exc}", ids=(), keys=keys)
            return True
        queue.popleft()
        self._note(keys, OutboxStatus.SENT, ref)
        return True

    async def _until_recorded(self, write: Callable[[], Awaitable[None]]) -> None:
        """The platform has it: the store must say so before anything else, or it would be sent again."""
        failures = 0
        while True:
            try:
                await write()
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                failures += 1
                log.warning("%s: delivered, but the store cannot record it yet (%s)", self.platform, _one_line(exc))
                await asyncio.sleep(self.backoff.delay(failures))

    @staticmethod
    async def _quietly(write: Any) -> None:
        """A bookkeeping write that may fail (the lease then makes the entry due again)."""
        try:
            await write
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("outbox: the store refused a bookkeeping write (%s)", _one_line(exc))


async def until_done(
    call: Callable[[], Awaitable[T]],
    *,
    sort: Callable[[Exception], Exception | None],
    backoff: Backoff = DEFAULT_BACKOFF,
    what: str,
) -> T:
    """Call until it works, for the few calls a run cannot go on without (Discord: opening its
    thread). `sort` says whether a failure may pass (`RetryLater`: wait the platform's delay, or
    back off); any other failure is raised as it is."""
    attempts = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            sorted_ = sort(exc)
            if not isinstance(sorted_, RetryLater):
                raise
            attempts += 1
            delay = sorted_.after if sorted_.after is not None else backoff.delay(attempts)
            log.info("%s failed (%s); trying again in %.1f s", what, sorted_.reason, delay)
            await asyncio.sleep(delay)


class _Orphan(Exception):
    """An edit or reaction whose message was never posted: there is nothing to apply it to."""


def _approval_of(item: Delivery) -> tuple[int, str] | None:
    """(approval id, conversation thread) when the post is an approval request."""
    approval = item.payload.get("approval")
    if item.kind != "post" or not isinstance(approval, dict):
        return None
    return int(approval["id"]), str(approval.get("thread", item.thread))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return text[:200] or type(exc).__name__
