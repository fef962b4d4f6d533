"""The approval gate: pending approvals are rows, decisions come from approvers only.

The waiting side polls the row as well as an in-process event, so a decision made by
another bot process sharing the database resolves the wait too. Timeout fails closed.

An approval is recorded `approved` only by the process whose run waits on it, right before
the action runs. A ✅ handled by another process grants it (`granted`); the waiting run takes
the grant on its next poll. If that run is gone (its process died, or stopped waiting) the
approval expires instead, with a word in the thread, so "approved" never means "nothing ran".
Whether an owner is gone is `core.instance`'s business: its lock file, or its heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.events import Request, Risk
from core.instance import ProcessIdentity
from core.store import Store
from core.store.models import Approval, ApprovalStatus
from core.tools.registry import Plan, canonical_json

RESTART = "restart"  # `decided_by` of approvals expired because their run is gone
OWNER_GONE_REASON = "the bot that asked for it restarted before it could run"


class Outcome(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    VOTE_RECORDED = "vote_recorded"  # counted; more approvers are needed
    NOT_APPROVER = "not_approver"
    SELF_APPROVAL = "self_approval"
    ALREADY_DECIDED = "already_decided"
    OWNER_GONE = "owner_gone"  # the run that asked is gone: the approval expired, nothing ran
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
    """Risky calls wait here for a person. `request` stores a pending row bound to the action's
    fingerprint, `wait` returns it once decided or expired, and `decide` takes a vote from a chat
    reaction or the console, only from an approver the rules name (quorum per risk, no
    self-approval unless allowed). Rows belong to the process that asked: one restarted or gone
    cannot have its approvals run by another (`expire_stale`, `expire_for_run`)."""

    def __init__(
        self,
        store: Store,
        rules: ApprovalRules,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 2.0,
        lease: float = 30.0,
        identity: ProcessIdentity | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.poll_interval = poll_interval
        self.lease = lease  # a pending approval whose waiter has not beaten for this long is orphaned
        self.identity = identity or ProcessIdentity.ephemeral()
        self.instance_id = self.identity.owner  # what the rows this gate waits on carry as `owner`
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
                if row.status == ApprovalStatus.GRANTED and row.owner == self.instance_id:
                    # Granted by approvers in another process: take it, the action runs now.
                    await self.store.decide_approval(
                        approval_id,
                        status=ApprovalStatus.APPROVED,
                        decided_by=row.decided_by,
                        reason=row.reason,
                        from_status=(ApprovalStatus.GRANTED,),
                    )
                    continue
                if row.status not in (ApprovalStatus.PENDING, ApprovalStatus.GRANTED):
                    return row
                remaining = row.expires_at - self.clock()
                if remaining <= 0 and row.status == ApprovalStatus.PENDING:
                    await self.store.decide_approval(
                        approval_id,
                        status=ApprovalStatus.EXPIRED,
                        decided_by="timeout",
                        reason=f"no decision within {self.rules.timeout:g} s",
                    )
                    continue
                pause = min(remaining, self.poll_interval) if remaining > 0 else self.poll_interval
                try:
                    await asyncio.wait_for(event.wait(), pause)
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
        if row.status != ApprovalStatus.PENDING:
            return DecideResult(Outcome.ALREADY_DECIDED, row, f"approval #{approval_id} is already {row.status}")
        if row.platform != platform:
            return DecideResult(Outcome.NOT_APPROVER, row, f"approval #{approval_id} belongs to {row.platform}")
        if not self.rules.may_approve(platform, user_id, roles):
            return DecideResult(Outcome.NOT_APPROVER, row, "you are not an approver for this action")
        decider = f"{platform}:{user_id}"
        if approve and decider == row.requested_by and not self.rules.allow_self_approval and platform != "console":
            return DecideResult(Outcome.SELF_APPROVAL, row, "self-approval is disabled: another approver must decide")
        if self._orphaned(row):
            return await self._expire_orphan(row)
        if self.clock() >= row.expires_at:
            await self.store.decide_approval(
                approval_id, status=ApprovalStatus.EXPIRED, decided_by="timeout", reason="expired"
            )
            self._wake(approval_id)
            return DecideResult(Outcome.ALREADY_DECIDED, row, f"approval #{approval_id} has expired")
        if not approve:
            done = await self.store.decide_approval(
                approval_id, status=ApprovalStatus.DENIED, decided_by=decider, reason=reason or "denied"
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
        if row.owner != self.instance_id:
            return await self._grant(row, ",".join(votes), reason)
        done = await self.store.decide_approval(
            approval_id, status=ApprovalStatus.APPROVED, decided_by=",".join(votes), reason=reason
        )
        self._wake(approval_id)
        final = await self.store.get_approval(approval_id)
        if not done:
            return DecideResult(Outcome.ALREADY_DECIDED, final, "already decided")
        return DecideResult(Outcome.APPROVED, final, f"approved by {', '.join(votes)}")

    async def _grant(self, row: Approval, decided_by: str, reason: str) -> DecideResult:
        """Another process's run waits on it: grant, then see that run take it (or find it gone)."""
        assert row.id is not None
        if not await self.store.grant_approval(row.id, decided_by=decided_by, reason=reason):
            final = await self.store.get_approval(row.id)
            return DecideResult(Outcome.ALREADY_DECIDED, final, "already decided")
        while True:
            final = await self.store.get_approval(row.id)
            if final is None:
                return DecideResult(Outcome.UNKNOWN, None, f"approval #{row.id} does not exist")
            if final.status == ApprovalStatus.APPROVED:
                return DecideResult(Outcome.APPROVED, final, f"approved by {decided_by.replace(',', ', ')}")
            if final.status != ApprovalStatus.GRANTED:
                return DecideResult(Outcome.ALREADY_DECIDED, final, f"approval #{row.id} is already {final.status}")
            if self._orphaned(final):
                return await self._expire_orphan(final, granted_by=decided_by)
            await asyncio.sleep(self.poll_interval)

    async def _expire_orphan(self, row: Approval, *, granted_by: str = "") -> DecideResult:
        assert row.id is not None
        reason = OWNER_GONE_REASON + (f" (approved by {granted_by}; nothing ran)" if granted_by else "")
        done = await self.store.decide_approval(
            row.id, status=ApprovalStatus.EXPIRED, decided_by=RESTART, reason=reason,
            from_status=(ApprovalStatus.PENDING, ApprovalStatus.GRANTED),
        )  # fmt: skip
        final = await self.store.get_approval(row.id)
        if not done and final is not None and final.status == ApprovalStatus.APPROVED:
            return DecideResult(Outcome.APPROVED, final, "approved")  # taken at the last moment
        return DecideResult(
            Outcome.OWNER_GONE, final or row, f"approval #{row.id} expired: the bot that asked for it restarted"
        )

    async def expire_for_run(self, run_id: int, *, reason: str) -> list[Approval]:
        """The run was stopped: its open approvals expire now rather than wait for a reaction that
        could no longer run anything."""
        expired: list[Approval] = []
        for row in await self.store.open_approvals():
            if row.run_id != run_id or row.owner != self.instance_id or row.id is None:
                continue
            if await self.store.decide_approval(
                row.id, status=ApprovalStatus.EXPIRED, decided_by=RESTART, reason=reason,
                from_status=(ApprovalStatus.PENDING, ApprovalStatus.GRANTED),
            ):  # fmt: skip
                self._wake(row.id)
                expired.append(row)
        return expired

    def abandon(self, approval_id: int) -> None:
        """The run that asked was stopped before waiting: nobody in this process waits on it now."""
        self._events.pop(approval_id, None)

    def _wake(self, approval_id: int) -> None:
        event = self._events.get(approval_id)
        if event is not None:
            event.set()

    def _orphaned(self, row: Approval) -> bool:
        """True when no live process waits on this open approval any more."""
        if row.owner == self.instance_id:
            return row.id not in self._events
        beat = row.heartbeat_at or row.requested_at
        return self.identity.is_gone(row.owner, beat=beat, now=self.clock(), lease=self.lease)

    async def expire_stale(
        self, *, reason: str = "the bot restarted before a decision", platforms: Iterable[str] | None = None
    ) -> list[Approval]:
        """On start-up: expire open approvals whose run is gone (of `platforms`, all by default: only
        a process that can tell their threads should). Approvals another live bot process (sharing
        the database) still waits on are left alone."""
        wanted = set(platforms) if platforms is not None else None
        expired: list[Approval] = []
        for row in await self.store.open_approvals():
            assert row.id is not None
            if (wanted is not None and row.platform not in wanted) or not self._orphaned(row):
                continue
            why = (
                reason
                if row.status == ApprovalStatus.PENDING
                else f"{reason} (approved by {row.decided_by}; nothing ran)"
            )
            if await self.store.decide_approval(
                row.id, status=ApprovalStatus.EXPIRED, decided_by=RESTART, reason=why,
                from_status=(ApprovalStatus.PENDING, ApprovalStatus.GRANTED),
            ):  # fmt: skip
                expired.append(row)
        return expired
