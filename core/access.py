"""Who may ask: per-platform allowlists, DM pairing, and per-person limits.

A chat adapter asks `Gatekeeper.decide()` once per message, before anything else
happens (no model call, no tool, no memory), and judges every message by its author:
a thread someone allowed started is not open to everyone in it. The decision is data
(`Admit`, `Refuse`, `Pair`); the adapter only says it, with the sentences in
`adapters.texts`.

- Without an allowlist only the approvers may ask; approvers may always ask.
- `*` in the user allowlist admits everyone on the platform, except people from another
  organisation (a Slack Connect channel): the adapter marks them `outsider`.
- A channel allowlist limits where questions are taken; a DM is not a channel.
- A stranger who DMs the bot gets a pairing code (`DmPolicy.PAIR`); once an approver runs
  `orchestrator pairing approve CODE`, the grant in the store admits them like the allowlist.
- Refusals are audited and said at most once per `notice_interval` per person.
- Per person: `rate_limit` requests a minute (refused past it, with when to try again) and
  `max_running` runs at once (a further one waits for a free turn, it is not dropped).

The limits are counted in this process; several bot processes each keep their own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from core.store import Store

EVERYONE = "*"
LOCAL_PLATFORMS = frozenset({"console"})  # the operator at this machine's terminal
RATE_WINDOW = 60.0  # seconds: `rate_limit` counts requests per minute
PAIRING_TTL = 3600.0  # a pairing code expires after an hour
NOTICE_INTERVAL = 3600.0  # a refused person is told at most once an hour
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud and retyped
CODE_LENGTH = 8

#: The roles (Discord) or groups (Slack) a person holds, looked up only when needed.
RoleLookup = Callable[[], Awaitable[Iterable[str]]]


class DmPolicy(StrEnum):
    DENY = "deny"  # a stranger's DM gets the refusal
    PAIR = "pair"  # a stranger's DM gets a pairing code an approver can approve


class Admission(StrEnum):
    LOCAL = "local"
    APPROVER = "approver"
    ALLOWLIST = "allowlist"
    EVERYONE = "everyone"
    ROLE = "role"
    PAIRED = "paired"


class Refusal(StrEnum):
    NOT_ALLOWED = "not_allowed"
    CHANNEL = "channel_not_allowed"
    RATE_LIMITED = "rate_limited"
    PAIRING_PENDING = "pairing_pending"  # a code was sent already and is not approved yet


@dataclass(frozen=True, slots=True)
class AccessRules:
    """One platform's rules, as plain data (the adapter's config builds them)."""

    platform: str
    users: frozenset[str] = frozenset()  # user ids, or `*`
    roles: frozenset[str] = frozenset()  # role ids whose holders may ask
    channels: frozenset[str] = frozenset()  # channel ids; empty: any channel the bot is in
    approvers: frozenset[str] = frozenset()
    approver_roles: frozenset[str] = frozenset()
    dm_policy: DmPolicy = DmPolicy.PAIR
    rate_limit: int = 10  # requests per minute per person; 0: no limit
    max_running: int = 2  # runs at once per person
    notice_interval: float = NOTICE_INTERVAL
    pairing_ttl: float = PAIRING_TTL

    @property
    def approvers_only(self) -> bool:
        """Nobody but the approvers (and paired people) may ask: the default."""
        return not self.users and not self.roles


@dataclass(frozen=True, slots=True)
class Asker:
    """Who wrote a message and where, as the adapter saw it."""

    platform: str
    user_id: str
    channel: str = ""  # the channel (a Discord thread's parent channel)
    is_dm: bool = False
    user_name: str = ""
    outsider: bool = False  # from another organisation: `*` does not cover them

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Admit:
    why: Admission


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: Refusal
    notify: bool  # say it (False: the person was told recently)
    retry_after: float = 0.0  # RATE_LIMITED: seconds until a request is taken again
    can_pair: bool = False  # a DM to the bot would get a pairing code


@dataclass(frozen=True, slots=True)
class Pair:
    code: str
    expires_in: float  # seconds
    notify: bool  # False when this code was sent already


Decision = Admit | Refuse | Pair


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a person types back (`abcd-2345 `) → the stored form."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


class UserLimits:
    """Requests per minute and runs at once, per person."""

    def __init__(self, *, per_minute: int, running: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.running = max(1, running)
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._holders: dict[str, int] = {}  # running or waiting, per person

    def hit(self, key: str) -> float:
        """Count a request: 0 when taken, else the seconds until one is taken again."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - RATE_WINDOW:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(hits[0] + RATE_WINDOW - now, 0.001)
        hits.append(now)
        return 0.0

    def busy(self, key: str) -> bool:
        """True when a new run of this person's would have to wait for a turn."""
        slot = self._slots.get(key)
        return slot is not None and slot.locked()

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        slot = self._slots.setdefault(key, asyncio.Semaphore(self.running))
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with slot:
                yield
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:
                del self._holders[key], self._slots[key]


@dataclass
class Gatekeeper:
    """Decides, per message, whether its author may ask. See the module docstring."""

    store: Store
    rules: AccessRules
    clock: Callable[[], float] = time.time
    codes: Callable[[], str] = new_code
    limits: UserLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = UserLimits(
            per_minute=self.rules.rate_limit, running=self.rules.max_running, clock=lambda: self.clock()
        )

    async def decide(self, asker: Asker, *, roles: Iterable[str] | RoleLookup = ()) -> Decision:
        why = await self.admission(asker, roles=roles)
        now = self.clock()
        rules = self.rules
        where = "a DM" if asker.is_dm else asker.channel
        if why is None:
            if asker.is_dm and rules.dm_policy is DmPolicy.PAIR:
                row, new = await self.store.pairing_request(
                    asker.platform, asker.user_id, user_name=asker.user_name, now=now, ttl=rules.pairing_ttl,
                    make_code=self.codes,
                )  # fmt: skip
                if not new:
                    await self.store.record_refusal(
                        asker.key, reason=Refusal.PAIRING_PENDING, where=where, now=now, quiet_for=None
                    )
                return Pair(code=row.code, expires_in=max(row.expires_at - now, 0.0), notify=new)
            told = await self.store.record_refusal(
                asker.key, reason=Refusal.NOT_ALLOWED, where=where, now=now, quiet_for=rules.notice_interval
            )
            return Refuse(Refusal.NOT_ALLOWED, notify=told, can_pair=rules.dm_policy is DmPolicy.PAIR)
        if why is not Admission.LOCAL and not asker.is_dm and rules.channels and asker.channel not in rules.channels:
            told = await self.store.record_refusal(
                asker.key, reason=Refusal.CHANNEL, where=where, now=now, quiet_for=rules.notice_interval
            )
            return Refuse(Refusal.CHANNEL, notify=told)
        wait = self.limits.hit(asker.key)
        if wait:
            await self.store.record_rate_limited(asker.key, retry_after=wait, where=where, now=now)
            return Refuse(Refusal.RATE_LIMITED, notify=True, retry_after=wait)
        return Admit(why)

    async def admission(self, asker: Asker, *, roles: Iterable[str] | RoleLookup = ()) -> Admission | None:
        """Why this person may ask, or None. Cheapest checks first: ids, then the store, then roles."""
        rules = self.rules
        if asker.platform in LOCAL_PLATFORMS:
            return Admission.LOCAL
        if asker.platform != rules.platform:  # these ids mean nothing on another platform
            return None
        user = asker.user_id
        if user in rules.approvers:
            return Admission.APPROVER
        if user in rules.users:
            return Admission.ALLOWLIST
        if EVERYONE in rules.users and not asker.outsider:
            return Admission.EVERYONE
        if await self.store.is_paired(asker.platform, user):
            return Admission.PAIRED
        if rules.roles or rules.approver_roles:
            held = set(await roles() if callable(roles) else roles)
            if held & rules.approver_roles:
                return Admission.APPROVER
            if held & rules.roles:
                return Admission.ROLE
        return None

    def busy(self, asker: Asker) -> bool:
        return self.limits.busy(asker.key)

    def turn(self, asker: Asker) -> AbstractAsyncContextManager[None]:
        """Hold one of the person's run slots for the length of a run (waits while they are all taken)."""
        return self.limits.turn(asker.key)
