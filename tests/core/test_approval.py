"""The approval gate: who may decide, until when, and what survives a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy

from core.approval import ApprovalGate, ApprovalRules, Outcome
from core.events import Request, Risk
from core.store import Store
from core.store.models import AuditEntry
from core.tools.registry import Plan

REQ = Request(platform="slack", user_id="UASK", channel="C1", thread="1.0", text="restart nginx")
PLAN = Plan(risk=Risk.EXEC, summary="run systemctl restart nginx", detail="systemctl restart nginx", detail_kind="argv")


async def make_gate(tmp_path: Path, **rules: object) -> ApprovalGate:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
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
async def test_only_approvers_decide(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path)
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
async def test_roles_count_as_approvers(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path, approver_roles={"slack": frozenset({"S-OPS"})})
    aid = await pending(gate)
    result = await gate.decide(aid, platform="slack", user_id="UNEW", roles=["S-OPS"], approve=True)
    assert result.outcome is Outcome.APPROVED


@pytest.mark.asyncio
async def test_timeout_denies_and_is_audited(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path, timeout=0.2)
    aid = await pending(gate)
    final = await asyncio.wait_for(gate.wait(aid), 10)
    assert final.status == "expired" and final.decided_by == "timeout"
    late = await gate.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED
    actions = [e.action for e in gate.store.audit_entries_sync()]
    assert actions == ["approval_requested", "expired"]


@pytest.mark.asyncio
async def test_self_approval_can_be_disabled_and_quorum_required(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path, allow_self_approval=False, quorum={Risk.EXEC: 2})
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
async def test_a_restart_expires_pending_approvals(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path)
    aid = await pending(gate)
    await gate.store.close()
    # The process that asked is gone: its lease is not renewed. A new process starts later.
    restarted = await make_gate(tmp_path)
    restarted.clock = lambda: time.time() + restarted.lease + 1
    expired = await restarted.expire_stale()
    assert [row.id for row in expired] == [aid]
    row = await restarted.store.get_approval(aid)
    assert row is not None and row.status == "expired" and row.decided_by == "restart"
    late = await restarted.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED


@pytest.mark.asyncio
async def test_a_second_live_process_does_not_expire_approvals_still_waited_on(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path)
    aid = await pending(gate)
    waiter = asyncio.create_task(gate.wait(aid))
    second = await make_gate(tmp_path)  # another bot process starting on the same database
    assert await second.expire_stale() == []
    result = await second.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert result.outcome is Outcome.APPROVED
    assert (await asyncio.wait_for(waiter, 10)).status == "approved"


@pytest.mark.asyncio
async def test_a_reaction_on_an_orphaned_approval_never_approves(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path)
    aid = await pending(gate)
    other = await make_gate(tmp_path)
    other.clock = lambda: time.time() + other.lease + 1  # nobody has renewed the lease
    result = await other.decide(aid, platform="slack", user_id="UADMIN", approve=True)
    assert result.outcome is Outcome.ALREADY_DECIDED and "restarted" in result.message
    row = await other.store.get_approval(aid)
    assert row is not None and row.status == "expired"


@pytest.mark.asyncio
async def test_a_decision_from_another_process_resolves_the_wait(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path)
    aid = await pending(gate)
    other = await make_gate(tmp_path)  # e.g. a second bot process that saw the reaction
    waiter = asyncio.create_task(gate.wait(aid))
    await asyncio.sleep(0.1)
    await other.decide(aid, platform="slack", user_id="UOPS", approve=False, reason="not now")
    final = await asyncio.wait_for(waiter, 10)
    assert final.status == "denied" and final.reason == "not now"


@pytest.mark.asyncio
async def test_the_audit_log_is_append_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.init()
    await store.audit(AuditEntry(at=1.0, action="tool_run", tool="df"))
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
        conn.execute(sqlalchemy.text("UPDATE auditentry SET tool = 'rm'"))
    with store.engine.begin() as conn, pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
        conn.execute(sqlalchemy.text("DELETE FROM auditentry"))
    assert [e.tool for e in store.audit_entries_sync()] == ["df"]


@pytest.mark.asyncio
async def test_schema_upgrade_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    await store.init()
    await store.audit(AuditEntry(at=1.0, action="request", detail="kept"))
    await store.close()
    again = Store(url)
    await again.init()
    assert [e.detail for e in again.audit_entries_sync()] == ["kept"]
