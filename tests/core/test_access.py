"""Who may ask: the gatekeeper's decisions, on a real store (SQLite, then PostgreSQL: `store_url`), with a
clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import pytest_asyncio

from core.access import (
    AccessRules,
    Admission,
    Admit,
    Asker,
    DmPolicy,
    Gatekeeper,
    Pair,
    Refusal,
    Refuse,
    normalise_code,
)
from core.store import Store
from core.store.models import PairingStatus

ADMIN = Asker("slack", "UADMIN", channel="C1")
STRANGER = Asker("slack", "UNEW", channel="C1")
STRANGER_DM = Asker("slack", "UNEW", channel="D1", is_dm=True, user_name="Newcomer")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.init()
    yield s
    await s.close()


def keeper(store: Store, clock: Clock | None = None, **rules: Any) -> Gatekeeper:
    base: dict[str, Any] = {"platform": "slack", "approvers": frozenset({"UADMIN"})}
    return Gatekeeper(store, AccessRules(**(base | rules)), clock=clock or Clock())


async def actions(store: Store) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.decision) for e in await store.audit_entries()]


# ---- allowlists -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_by_default_only_approvers_may_ask_and_a_stranger_is_told_once_an_hour(store: Store) -> None:
    clock = Clock()
    gate = keeper(store, clock)
    assert await gate.decide(ADMIN) == Admit(Admission.APPROVER)
    first = await gate.decide(STRANGER)
    assert first == Refuse(Refusal.NOT_ALLOWED, notify=True, can_pair=True)
    clock.now += 3500
    assert await gate.decide(STRANGER) == Refuse(Refusal.NOT_ALLOWED, notify=False, can_pair=True)
    clock.now += 200  # more than an hour after the reply
    assert (await gate.decide(STRANGER)).notify is True  # type: ignore[union-attr]
    assert await actions(store) == [
        ("access_refused", "slack:UNEW", "told"),
        ("access_refused", "slack:UNEW", "quiet"),
        ("access_refused", "slack:UNEW", "told"),
    ]


@pytest.mark.asyncio
async def test_allowlisted_users_and_the_console_may_ask(store: Store) -> None:
    gate = keeper(store, users=frozenset({"UADA"}))
    assert await gate.decide(Asker("slack", "UADA", channel="C1")) == Admit(Admission.ALLOWLIST)
    assert await gate.decide(Asker("console", "ops", channel="console")) == Admit(Admission.LOCAL)
    assert isinstance(await gate.decide(STRANGER), Refuse)
    assert isinstance(await gate.decide(Asker("discord", "UADA")), Refuse)  # ids are per platform


@pytest.mark.asyncio
async def test_star_admits_every_member_but_not_people_from_another_organisation(store: Store) -> None:
    gate = keeper(store, users=frozenset({"*"}))
    assert await gate.decide(STRANGER) == Admit(Admission.EVERYONE)
    guest = Asker("slack", "UEXT", channel="C1", outsider=True)
    assert await gate.decide(guest) == Refuse(Refusal.NOT_ALLOWED, notify=True, can_pair=True)


@pytest.mark.asyncio
async def test_roles_are_looked_up_only_when_ids_do_not_decide(store: Store) -> None:
    gate = keeper(store, roles=frozenset({"ROPS"}), approver_roles=frozenset({"RADMIN"}))
    looked_up: list[str] = []

    def holding(*roles: str) -> Any:
        async def lookup() -> Iterable[str]:
            looked_up.append(",".join(roles))
            return roles

        return lookup

    assert await gate.decide(ADMIN, roles=holding("never")) == Admit(Admission.APPROVER)
    assert looked_up == []  # an approver by id: no lookup
    assert await gate.decide(STRANGER, roles=holding("ROPS")) == Admit(Admission.ROLE)
    assert await gate.decide(STRANGER, roles=["RADMIN"]) == Admit(Admission.APPROVER)
    refused = await gate.decide(STRANGER, roles=holding("RGUEST"))
    assert isinstance(refused, Refuse) and refused.reason is Refusal.NOT_ALLOWED
    assert looked_up == ["ROPS", "RGUEST"]


@pytest.mark.asyncio
async def test_a_channel_allowlist_limits_where_not_dms(store: Store) -> None:
    gate = keeper(store, users=frozenset({"UADA"}), channels=frozenset({"COPS"}))
    ada = Asker("slack", "UADA", channel="CGENERAL")
    assert await gate.decide(ada) == Refuse(Refusal.CHANNEL, notify=True)
    assert await gate.decide(ada) == Refuse(Refusal.CHANNEL, notify=False)
    assert await gate.decide(Asker("slack", "UADA", channel="COPS")) == Admit(Admission.ALLOWLIST)
    assert await gate.decide(Asker("slack", "UADA", channel="D7", is_dm=True)) == Admit(Admission.ALLOWLIST)
    # A stranger in the wrong channel is told what matters: they may not ask at all.
    refused = await gate.decide(Asker("slack", "UNEW", channel="CGENERAL"))
    assert isinstance(refused, Refuse) and refused.reason is Refusal.NOT_ALLOWED


# ---- DM pairing -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_strangers_dm_gets_one_code_which_an_approver_turns_into_a_grant(store: Store) -> None:
    clock = Clock()
    gate = keeper(store, clock)
    first = await gate.decide(STRANGER_DM)
    assert isinstance(first, Pair) and first.notify and first.expires_in == 3600
    assert len(first.code) == 8 and normalise_code(f" {first.code[:4].lower()}-{first.code[4:]} ") == first.code
    clock.now += 60
    again = await gate.decide(STRANGER_DM)
    assert again == Pair(first.code, expires_in=3540, notify=False)  # the same code, not said twice

    row, approved = await store.approve_pairing(first.code, by="console:ops", now=clock())
    assert approved and row is not None and (row.user_id, row.user_name) == ("UNEW", "Newcomer")
    assert await gate.decide(STRANGER_DM) == Admit(Admission.PAIRED)
    assert await gate.decide(STRANGER) == Admit(Admission.PAIRED)  # in channels too, like the allowlist
    used, approved_again = await store.approve_pairing(first.code, by="console:ops", now=clock())
    assert not approved_again and used is not None and used.status == PairingStatus.APPROVED  # single-use

    assert await store.revoke_pairing("slack", "UNEW", by="console:ops", now=clock()) == 1
    assert isinstance(await gate.decide(STRANGER), Refuse)
    assert [a for a, _, _ in await actions(store)] == [
        "pairing_requested", "access_refused", "pairing_approved", "pairing_revoked", "access_refused",
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_codes_expire_and_a_later_dm_gets_a_new_one(store: Store) -> None:
    clock = Clock()
    gate = keeper(store, clock)
    old = await gate.decide(STRANGER_DM)
    assert isinstance(old, Pair)
    clock.now += 3601
    row, approved = await store.approve_pairing(old.code, by="console:ops", now=clock())
    assert not approved and row is not None and row.status == PairingStatus.EXPIRED
    new = await gate.decide(STRANGER_DM)
    assert isinstance(new, Pair) and new.notify and new.code != old.code
    assert (await store.approve_pairing("NOSUCHCODE", by="console:ops", now=clock())) == (None, False)


@pytest.mark.asyncio
async def test_with_dm_policy_deny_a_strangers_dm_is_refused(store: Store) -> None:
    gate = keeper(store, dm_policy=DmPolicy.DENY)
    assert await gate.decide(STRANGER_DM) == Refuse(Refusal.NOT_ALLOWED, notify=True, can_pair=False)
    assert store.pairings_sync() == []


# ---- limits -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_rate_limit_says_when_to_come_back_and_then_lets_them_in(store: Store) -> None:
    clock = Clock()
    gate = keeper(store, clock, rate_limit=3)
    for _ in range(3):
        assert isinstance(await gate.decide(ADMIN), Admit)
        clock.now += 10
    refused = await gate.decide(ADMIN)
    assert refused == Refuse(Refusal.RATE_LIMITED, notify=True, retry_after=30.0)
    clock.now += 30
    assert isinstance(await gate.decide(ADMIN), Admit)
    assert ("rate_limited", "slack:UADMIN", "told") in await actions(store)
    unlimited = keeper(store, clock, rate_limit=0)
    assert all([isinstance(await unlimited.decide(ADMIN), Admit) for _ in range(30)])


@pytest.mark.asyncio
async def test_a_third_run_waits_for_a_turn_and_is_not_lost(store: Store) -> None:
    gate = keeper(store)
    release = asyncio.Event()
    order: list[str] = []

    async def run(name: str) -> None:
        async with gate.turn(ADMIN):
            order.append(f"start {name}")
            if name != "third":
                await release.wait()
            order.append(f"end {name}")

    first, second = asyncio.create_task(run("first")), asyncio.create_task(run("second"))
    await asyncio.sleep(0.01)
    assert gate.busy(ADMIN) and not gate.busy(STRANGER)
    third = asyncio.create_task(run("third"))
    await asyncio.sleep(0.01)
    assert order == ["start first", "start second"]
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    assert order[-2:] == ["start third", "end third"]
    assert not gate.busy(ADMIN)
