"""The approval gate: pending approvals are rows, decisions come from approvers only.

The waiting side polls the row as well as an in-process event, so a decision made by
another bot process sharing the database resolves the wait too. Timeout fails closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.events import Request, Risk
from core.store import Store
from core.store.models import Approval
from core.tools.registry import Plan, canonical_json


class Outcome(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    VOTE_RECORDED = "vote_recorded"  # counted; more approvers are needed
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    ALREADY_DECIDED = "already_decided"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DecideResult:
    outcome: Outcome
    approval: Approval | None
    message: str


@dataclass
class ApprovalRules:
    """Who may approve, on which platform, and how many are needed."""

    approvers: Mapping[str, frozenset[str]] = field(default_factory=dict)  # platform -> user ids
    approver_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)  # platform -> role/group ids
    timeout: float = 600.0
    allow_self_approval: bool = True
    quorum: Mapping[Risk, int] = field(default_factory=dict)

    def may_approve(self, platform: str, user_id: str, roles: Iterable[str] = ()) -> bool:
        if user_id in self.approvers.get(platform, frozenset()):
            return True
        allowed_roles = self.approver_roles.get(platform, frozenset())
        return any(r in allowed_roles for r in roles)

    def needed(self, risk: str) -> int:
        return max(1, self.quorum.get(Risk(risk), 1))


class ApprovalGate:
    def __init__(
        self,
        store: Store,
        rules: ApprovalRules,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 2.0,
        lease: float = 30.0,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.poll_interval = poll_interval
        self.lease = lease  # a pending approval whose waiter has not beaten for this long is orphaned
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._events: dict[int, asyncio.Event] = {}

    async def request(
        self, *, request: Request, run_id: int | None, tool: str, args: dict[str, Any], plan: Plan, fingerprint: str
    ) -> Approval:
        now = self.clock()
        row = Approval(
            run_id=run_id,
            tool=tool,
            args_json=canonical_json(args),
            risk=str(plan.risk),
            summary=plan.summary,
            detail=plan.detail,
            detail_kind=plan.detail_kind,
            host=plan.host,
            fingerprint=fingerprint,
            platform=request.platform,
            channel=request.channel,
            thread=request.thread,
            requested_by=f"{request.platform}:{request.user_id}",
            requested_at=now,
            expires_at=now + self.rules.timeout,
            owner=self.instance_id,
            heartbeat_at=now,
        )
        row = await self.store.add_approval(row)
        assert row.id is not None
        self._events[row.id] = asyncio.Event()
        return row

    async def wait(self, approval_id: int) -> Approval:
        """Wait until decided or expired. Returns the final row; never returns a pending one."""
        event = self._events.setdefault(approval_id, asyncio.Event())
        last_beat = self.clock()
        try:
            while True:
                if self.clock() - last_beat >= min(self.poll_interval, self.lease / 3):
                    last_beat = self.clock()
                    await self.store.heartbeat_approval(approval_id, last_beat)
                row = await self.store.get_approval(approval_id)
                if row is None:
                    raise KeyError(approval_id)
                if row.status != "pending":
                    return row
                remaining = row.expires_at - self.clock()
                if remaining <= 0:
                    await self.store.decide_approval(
                        approval_id,
                        status="expired",
                        decided_by="timeout",
                        reason=f"no decision within {self.rules.timeout:g} s",
                    )
                    continue
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, self.poll_interval))
                except TimeoutError:
                    pass
                event.clear()
        finally:
            self._events.pop(approval_id, None)

    async def decide(
        self,
        approval_id: int,
        *,
        platform: str,
        user_id: str,
        approve: bool,
        roles: Iterable[str] = (),
        reason: str = "",
    ) -> DecideResult:
        row = await self.store.get_approval(approval_id)
        if row is None:
            return DecideResult(Outcome.UNKNOWN, None, f"approval #{approval_id} does not exist")
        if row.status != "pending":
            return DecideResult(Outcome.ALREADY_DECIDED, row, f"approval #{approval_id} is already {row.status}")
        if row.platform != platform:
            return DecideResult(Outcome.NOT_APPROVER, row, f"approval #{approval_id} belongs to {row.platform}")
        if not self.rules.may_approve(platform, user_id, roles):
            return DecideResult(Outcome.NOT_APPROVER, row, "you are not an approver for this action")
        decider = f"{platform}:{user_id}"
        if approve and decider == row.requested_by and not self.rules.allow_self_approval and platform != "console":
            return DecideResult(Outcome.SELF_APPROVAL, row, "self-approval is disabled: another approver must decide")
        if self._orphaned(row):
            await self.store.decide_approval(
                approval_id, status="expired", decided_by="restart", reason="the run that asked for it is gone"
            )
            return DecideResult(
                Outcome.ALREADY_DECIDED, row, f"approval #{approval_id} expired: the bot that asked for it restarted"
            )
        if self.clock() >= row.expires_at:
            await self.store.decide_approval(approval_id, status="expired", decided_by="timeout", reason="expired")
            self._wake(approval_id)
            return DecideResult(Outcome.ALREADY_DECIDED, row, f"approval #{approval_id} has expired")
        if not approve:
            done = await self.store.decide_approval(
                approval_id, status="denied", decided_by=decider, reason=reason or "denied"
            )
            self._wake(approval_id)
            final = await self.store.get_approval(approval_id)
            if not done:
                return DecideResult(Outcome.ALREADY_DECIDED, final, "already decided")
            return DecideResult(Outcome.DENIED, final, f"denied by {decider}")
        votes: list[str] = json.loads(row.votes_json or "[]")
        if decider not in votes:
            votes.append(decider)
        if len(votes) < self.rules.needed(row.risk):
            await self.store.record_vote(approval_id, votes)
            need = self.rules.needed(row.risk) - len(votes)
            return DecideResult(Outcome.VOTE_RECORDED, row, f"approval noted; {need} more approver(s) needed")
        await self.store.record_vote(approval_id, votes)
        done = await self.store.decide_approval(
            approval_id, status="approved", decided_by=",".join(votes), reason=reason
        )
        self._wake(approval_id)
        final = await self.store.get_approval(approval_id)
        if not done:
            return DecideResult(Outcome.ALREADY_DECIDED, final, "already decided")
        return DecideResult(Outcome.APPROVED, final, f"approved by {', '.join(votes)}")

    def abandon(self, approval_id: int) -> None:
        """The run that asked was stopped before waiting: nobody in this process waits on it now."""
        self._events.pop(approval_id, None)

    def _wake(self, approval_id: int) -> None:
        event = self._events.get(approval_id)
        if event is not None:
            event.set()

    def _orphaned(self, row: Approval) -> bool:
        """True when no live process waits on this pending approval any more."""
        if row.owner == self.instance_id:
            return row.id not in self._events
        host, _, rest = row.owner.partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return True  # its process on this machine has exited
        beat = row.heartbeat_at or row.requested_at
        return self.clock() - beat > self.lease

    async def expire_stale(self, *, reason: str = "the bot restarted before a decision") -> list[Approval]:
        """On start-up: expire pending approvals whose run is gone. Approvals that another live
        bot process (sharing the database) is still waiting on are left alone."""
        expired: list[Approval] = []
        for row in await self.store.pending_approvals():
            assert row.id is not None
            if not self._orphaned(row):
                continue
            if await self.store.decide_approval(row.id, status="expired", decided_by="restart", reason=reason):
                expired.append(row)
        return expired


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
