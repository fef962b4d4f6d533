"""The approval gate: who may decide, until when, and what survives a restart.

Each test runs on SQLite and on the session's PostgreSQL (`store_url`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy

from core.approval import ApprovalGate, ApprovalRules, Outcome
from core.events import Request, Risk
from core.instance import OwnerId, ProcessIdentity
from core.store import Store
from core.store.models import Approval, ApprovalStatus, AuditEntry
from core.tools.registry import Plan

REQ = Request(platform="slack", user_id="UASK", channel="C1", thread="1.0", text="restart nginx")
PLAN = Plan(risk=Risk.EXEC, summary="run systemctl restart nginx", detail="systemctl restart nginx", detail_kind="argv")


async def make_gate(url: str, **rules: object) -> ApprovalGate:
    store = Store(url)
    await store.init()
    base = {"approvers": {"slack": frozenset({"UADMIN", "UASK", "UOPS"})}, "timeout": 30.0}
    base.update(rules)
    return ApprovalGate(store, ApprovalRules(**base), poll_interval=0.05)  # type: ignore[arg-type]


async def pending(gate: ApprovalGate) -> int:
    row = await gate.request(request=REQ, run_id=None, tool="run_command", args={"command": "x"}, plan=PLAN,
                             fingerprint="fp")  # fmt: skip
    assert row.id is not None
    return row.id


@pytest.mark.asyncio
async def test_only_approvers_decide(store_url: str) -> None:
    gate = await make_gate(store_url)
    aid = await pending(gate)
    stranger = await gate.decide(aid, platform="slack", user_id="USTRANGER", approve=True)
    assert stranger.outcome is Outcome.NOT_APPROVER
    assert (await gate.store.get_approval(aid)).status == "pending"  # type: ignore[union-attr]
    wrong_platform = await gate.decide(aid, platform="discord", user_id="UADMIN", approve=True)
    assert wrong_platform.outcome is Outcome.NOT_APPROVER
    ok = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert ok.outcome is Outcome.APPROVED
    again = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=False)
    assert again.outcome is Outcome.ALREADY_DECIDED
    final = await gate.wait(aid)
    assert final.status == "approved" and final.decided_by == "slack:UADMIN"


@pytest.mark.asyncio
async def test_roles_count_as_approvers(store_url: str) -> None:
    gate = await make_gate(store_url, approver_roles={"slack": frozenset({"S-OPS"})})
    aid = await pending(gate)
    result = await gate.decide(aid, platform="slack", user_id="UNEW", roles=["S-OPS"], approve=True)
    assert result.outcome is Outcome.APPROVED


@pytest.mark.asyncio
async def test_timeout_denies_and_is_audited(store_url: str) -> None:
    gate = await make_gate(store_url, timeout=0.2)
    aid = await pending(gate)
    final = await asyncio.wait_for(gate.wait(aid), 10)
    assert final.status == "expired" and final.decided_by == "timeout"
    late = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED
    actions = [e.action for e in gate.store.audit_entries_sync()]
    assert actions == ["approval_requested", "expired"]


@pytest.mark.asyncio
async def test_self_approval_can_be_disabled_and_quorum_required(store_url: str) -> None:
    gate = await make_gate(store_url, allow_self_approval=False, quorum={Risk.EXEC: 2})
    aid = await pending(gate)
    own = await gate.decide(aid, platform="slack", user_id="UASK", approve=True)
    assert own.outcome is Outcome.SELF_APPROVAL
    first = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert first.outcome is Outcome.VOTE_RECORDED
    dup = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert dup.outcome is Outcome.VOTE_RECORDED  # the same person twice is still one vote
    second = await gate.decide(aid, platform="slack", user_id="UOPS", approve=True)
    assert second.outcome is Outcome.APPROVED
    assert second.approval is not None and second.approval.decided_by == "slack:UADMIN,slack:UOPS"


@pytest.mark.asyncio
async def test_a_restart_expires_pending_approvals(store_url: str) -> None:
    gate = await make_gate(store_url)
    aid = await pending(gate)
    await gate.store.close()
    # The process that asked is gone: its lease is not renewed. A new process starts later.
    restarted = await make_gate(store_url)
    restarted.clock = lambda: time.time() + restarted.lease + 1
    expired = await restarted.expire_stale()
    assert [row.id for row in expired] == [aid]
    row = await restarted.store.get_approval(aid)
    assert row is not None and row.status == "expired" and row.decided_by == "restart"
    late = await restarted.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED


@pytest.mark.asyncio
async def test_a_second_live_process_does_not_expire_approvals_still_waited_on(store_url: str) -> None:
    gate = await make_gate(store_url)
    aid = await pending(gate)
    waiter = asyncio.create_task(gate.wait(aid))
    second = await make_gate(store_url)  # another bot process starting on the same database
    assert await second.expire_stale() == []
    result = await second.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert result.outcome is Outcome.APPROVED
    assert (await asyncio.wait_for(waiter, 10)).status == "approved"


@pytest.mark.asyncio
async def test_a_reaction_on_an_orphaned_approval_never_approves(store_url: str) -> None:
    gate = await make_gate(store_url)
    aid = await pending(gate)
    other = await make_gate(store_url)
    other.clock = lambda: time.time() + other.lease + 1  # nobody has renewed the lease
    result = await other.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert result.outcome is Outcome.OWNER_GONE and "restarted" in result.message
    row = await other.store.get_approval(aid)
    assert row is not None and row.status == "expired"


@pytest.mark.asyncio
async def test_a_decision_from_another_process_resolves_the_wait(store_url: str) -> None:
    gate = await make_gate(store_url)
    aid = await pending(gate)
    other = await make_gate(store_url)  # e.g. a second bot process that saw the reaction
    waiter = asyncio.create_task(gate.wait(aid))
    await asyncio.sleep(0.1)
    await other.decide(aid, platform="slack", user_id="UOPS", approve=False, reason="not now")
    final = await asyncio.wait_for(waiter, 10)
    assert final.status == "denied" and final.reason == "not now"


@pytest.mark.asyncio
async def test_the_audit_log_is_append_only(store_url: str) -> None:
    store = Store(store_url)
    await store.init()
    await store.audit(AuditEntry(at=1.0, action="tool_run", tool="df"))
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
        conn.execute(sqlalchemy.text("UPDATE auditentry SET tool = 'rm'"))
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
        conn.execute(sqlalchemy.text("DELETE FROM auditentry"))
    assert [e.tool for e in store.audit_entries_sync()] == ["df"]


@pytest.mark.asyncio
async def test_schema_upgrade_is_idempotent_and_keeps_data(store_url: str) -> None:
    store = Store(store_url)
    await store.init()
    await store.audit(AuditEntry(at=1.0, action="request", detail="kept"))
    await store.close()
    again = Store(store_url)
    await again.init()
    assert [e.detail for e in again.audit_entries_sync()] == ["kept"]


# ---- who waits: the instance id in the data directory, not the hostname (a recreated container) ----
async def gate_in(data_dir: Path, url: str, **kw: object) -> ApprovalGate:
    """A bot process: its own identity in `data_dir`, the shared database at `url`."""
    store = Store(url)
    await store.init()
    rules = ApprovalRules(approvers={"slack": frozenset({"UADMIN"})}, timeout=30.0)
    return ApprovalGate(store, rules, poll_interval=0.05, identity=ProcessIdentity.start(data_dir), **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_reaction_after_a_restart_under_another_hostname_expires_the_approval(
    tmp_path: Path, store_url: str
) -> None:
    old = await gate_in(tmp_path / "data", store_url)
    aid = await pending(old)
    old.identity.close()  # the old container is gone (its process died: the kernel freed its lock)
    # Its row was written under the old container's hostname; the new one has another.
    row = await old.store.get_approval(aid)
    assert row is not None
    renamed = OwnerId.parse(row.owner)
    assert renamed is not None

    def rewrite(s: object) -> None:
        stored = s.get(Approval, aid)  # type: ignore[attr-defined]
        stored.owner = str(OwnerId("old-container", renamed.pid, renamed.nonce, renamed.instance))
        s.add(stored)  # type: ignore[attr-defined]
        s.commit()  # type: ignore[attr-defined]

    await old.store.run(rewrite)
    new = await gate_in(tmp_path / "data", store_url)  # well within the 30 s lease
    try:
        result = await new.decide(aid, platform="slack", user_id="UADMIN", approve=True)
        assert result.outcome is Outcome.OWNER_GONE
        final = await new.store.get_approval(aid)
        assert final is not None and final.status == ApprovalStatus.EXPIRED and final.decided_by == "restart"
        assert [e.action for e in new.store.audit_entries_sync()] == ["approval_requested", "expired"]
    finally:
        new.identity.close()


@pytest.mark.asyncio
async def test_a_grant_from_another_process_is_approved_by_the_run_that_takes_it(
    tmp_path: Path, store_url: str
) -> None:
    waiting = await gate_in(tmp_path / "a", store_url)
    other = await gate_in(tmp_path / "b", store_url)
    try:
        aid = await pending(waiting)
        waiter = asyncio.create_task(waiting.wait(aid))
        result = await other.decide(aid, platform="slack", user_id="UADMIN", approve=True)
        assert result.outcome is Outcome.APPROVED
        final = await asyncio.wait_for(waiter, 10)
        assert final.status == ApprovalStatus.APPROVED and final.decided_by == "slack:UADMIN"
        approved = [e for e in waiting.store.audit_entries_sync() if e.action == "approved"]
        assert [e.decider for e in approved] == ["slack:UADMIN"]  # audited once, when it was taken
    finally:
        waiting.identity.close()
        other.identity.close()


@pytest.mark.asyncio
async def test_a_grant_nobody_takes_expires_and_is_never_recorded_approved(tmp_path: Path, store_url: str) -> None:
    waiting = await gate_in(tmp_path / "a", store_url)  # alive, but its run stopped waiting
    other = await gate_in(tmp_path / "b", store_url, lease=0.3)
    try:
        aid = await pending(waiting)
        result = await other.decide(aid, platform="slack", user_id="UADMIN", approve=True)
        assert result.outcome is Outcome.OWNER_GONE
        final = await other.store.get_approval(aid)
        assert final is not None and final.status == ApprovalStatus.EXPIRED
        assert "approved by slack:UADMIN; nothing ran" in final.reason
        assert "approved" not in [e.action for e in other.store.audit_entries_sync()]
    finally:
        waiting.identity.close()
        other.identity.close()
