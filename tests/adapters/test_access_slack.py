"""Who may ask, through the real Slack adapter: allowlists, DM pairing, per-person limits.

The stand is tests/support/slack_stand.py (real bolt, real core, FakeSlack, FakeOllama), with
nobody allowed unless a test says so. "Runs nothing" is checked where it shows: the fake
model received no request, no run was stored, no 👀 was added.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.cli import build_parser
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import BOT_USER_ID, FakeSlack, app_mention, message
from tests.support.slack_stand import CHANNEL, Stand, StandFactory, next_ts, stands
from tests.support.waiting import until

STRANGER = "UNEW"
DM = "DNEW"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest_asyncio.fixture
async def make(slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[StandFactory]:
    """Stands where only the approver (UADMIN) may ask unless settings say more; `data_dir`
    reuses a database (a restart)."""
    async with stands(slack, fake_ollama, tmp_path, SLACK_ALLOWED_USERS="") as factory:
        yield factory


async def dm(stand: Stand, text: str, *, user: str = STRANGER, channel: str = DM) -> str:
    """A direct message to the bot; returns its ts once everything it started is done."""
    ts = next_ts()
    seen = stand.adapter.events_handled
    await stand.send(message(user, channel, text, ts, channel_type="im"))
    await until(lambda: stand.adapter.events_handled > seen)
    await asyncio.wait_for(stand.adapter.wait_idle(), 10)
    return ts


async def said(stand: Stand, text: str, **kw: Any) -> str:
    ts = await stand.say(text, **kw)
    await asyncio.wait_for(stand.adapter.wait_idle(), 10)
    return ts


def ephemerals(stand: Stand, user: str = STRANGER) -> list[dict[str, Any]]:
    return [c.args for c in stand.slack.calls_to("chat.postEphemeral") if c.args.get("user") == user]


def cli(monkeypatch: pytest.MonkeyPatch, stand: Stand, *argv: str) -> int:
    """`orchestrator pairing …` as the operator runs it, on the stand's database."""
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(stand.settings.data_dir))
    args: argparse.Namespace = build_parser().parse_args(["pairing", *argv])
    return int(args.func(args))


async def refusals(stand: Stand) -> list[tuple[str, str, str]]:
    entries = await stand.services.store.audit_entries()
    return [(e.action, e.actor, e.decision) for e in entries if e.action in ("access_refused", "pairing_requested")]


# ---- strangers -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_strangers_mention_runs_nothing_and_gets_one_reply_an_hour(make: StandFactory) -> None:
    stand = await make()
    stand.ollama.script(Reply(content="should never be said"))
    first = await said(stand, "how full is the disk?", user=STRANGER)
    await said(stand, "hello?? answer me", user=STRANGER)

    [reply] = ephemerals(stand)  # only they see it, and only once
    assert (
        "not allowed" in reply["text"] and f"`{STRANGER}`" in reply["text"] and "SLACK_ALLOWED_USERS" in reply["text"]
    )
    assert "direct message" in reply["text"]  # how to get access: the DM pairing
    assert reply["channel"] == CHANNEL and "thread_ts" not in reply  # right under their top-level post
    assert stand.ollama.chat_requests == [] and await stand.services.store.runs() == []
    assert stand.slack.reactions(CHANNEL, first) == [] and stand.slack.calls_to("chat.postMessage") == []
    assert await refusals(stand) == [
        ("access_refused", f"slack:{STRANGER}", "told"),
        ("access_refused", f"slack:{STRANGER}", "quiet"),
    ]


@pytest.mark.asyncio
async def test_an_allowed_user_and_the_approvers_are_served(make: StandFactory) -> None:
    stand = await make(SLACK_ALLOWED_USERS="UADA", SLACK_APPROVER_GROUPS="S1")
    stand.slack.add_usergroup("S1", ["UGROUPIE"])
    stand.ollama.script(Reply(content="Disk fine."), Reply(content="Load fine."), Reply(content="Memory fine."))
    for user, question, answer in [
        ("UADA", "disk?", "Disk fine."),  # in SLACK_ALLOWED_USERS
        ("UADMIN", "load?", "Load fine."),  # an approver: may always ask
        ("UGROUPIE", "memory?", "Memory fine."),  # in an approver group
    ]:
        ts = await stand.say(question, user=user)
        await stand.answer(ts, contains=answer)
    assert ephemerals(stand, "UADA") == [] and len(stand.ollama.chat_requests) == 3


@pytest.mark.asyncio
async def test_a_stranger_replying_in_an_allowed_users_thread_runs_nothing(make: StandFactory) -> None:
    stand = await make(SLACK_ALLOWED_USERS="UADA")
    stand.ollama.script(Reply(content="nginx is up."), Reply(content="Since Monday."))
    ts = await stand.say("is nginx up?", user="UADA")
    await stand.answer(ts, contains="nginx is up.")

    await said(stand, "restart it for me", user=STRANGER, thread=ts, mention=False)
    [reply] = ephemerals(stand)
    assert reply["thread_ts"] == ts and "not allowed" in reply["text"]
    assert len(stand.ollama.chat_requests) == 1

    await stand.say("since when?", user="UADA", thread=ts, mention=False)
    await stand.answer(ts, contains="Since Monday.")
    history = [m["content"] for m in stand.ollama.chat_requests[1]["messages"] if m["role"] == "user"]
    assert history == ["is nginx up?", "since when?"]  # the stranger's words never reached the model


@pytest.mark.asyncio
async def test_star_is_the_workspace_not_people_from_another_organisation(make: StandFactory) -> None:
    stand = await make(SLACK_ALLOWED_USERS="*")
    stand.ollama.script(Reply(content="Hello member."))
    ts = await stand.say("hi", user=STRANGER)
    await stand.answer(ts, contains="Hello member.")

    outside, text = next_ts(), f"<@{BOT_USER_ID}> hi from a shared channel"
    seen = stand.adapter.events_handled
    await stand.send(app_mention("UEXT", CHANNEL, text, outside) | {"user_team": "T2"})
    await stand.send(message("UEXT", CHANNEL, text, outside) | {"user_team": "T2"})
    await until(lambda: stand.adapter.events_handled >= seen + 2)
    await stand.adapter.wait_idle()
    assert len(stand.ollama.chat_requests) == 1 and len(ephemerals(stand, "UEXT")) == 1


@pytest.mark.asyncio
async def test_a_channel_allowlist_keeps_questions_to_those_channels_and_dms(make: StandFactory) -> None:
    stand = await make(SLACK_ALLOWED_USERS="UADA", SLACK_ALLOWED_CHANNELS="COPS")
    stand.ollama.script(Reply(content="Answered in ops."), Reply(content="Answered in private."))
    await said(stand, "disk?", user="UADA", channel=CHANNEL)
    [reply] = ephemerals(stand, "UADA")
    assert "this channel" in reply["text"] and stand.ollama.chat_requests == []

    ts = await stand.say("disk?", user="UADA", channel="COPS")
    await stand.answer(ts, contains="Answered in ops.", channel="COPS")
    ts = await dm(stand, "disk?", user="UADA", channel="DADA")
    await stand.answer(ts, contains="Answered in private.", channel="DADA")


# ---- DM pairing ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_pairing_code_then_approve_then_served_also_after_a_restart(
    make: StandFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stand = await make()
    first = await dm(stand, "hello, can I use you?")
    [offer] = stand.bot_messages(first, DM)
    match = re.search(r"`([A-Z0-9]{8})`", offer.text)
    assert match is not None and "orchestrator pairing approve" in offer.text and "expires in 60 minutes" in offer.text
    code = match.group(1)
    second = await dm(stand, "hello??")
    assert stand.bot_messages(second, DM) == []  # one reply, not one per message
    assert stand.ollama.chat_requests == []
    assert await refusals(stand) == [
        ("pairing_requested", f"slack:{STRANGER}", ""),
        ("access_refused", f"slack:{STRANGER}", "quiet"),
    ]

    assert cli(monkeypatch, stand, "approve", code.lower()) == 0
    assert f"approved: slack:{STRANGER}" in capsys.readouterr().out
    assert cli(monkeypatch, stand, "approve", code) == 1  # single-use
    assert "already approved" in capsys.readouterr().err

    stand.ollama.script(Reply(content="Welcome aboard."), Reply(content="Still here."), Reply(content="In ops too."))
    ts = await dm(stand, "now?")
    await stand.answer(ts, contains="Welcome aboard.", channel=DM)

    # A restart: a new application (services, store, adapter) on the same database. The old one's
    # adapter stops here; the fixture closes its store at the end.
    await stand.adapter.close()
    restarted = await make(data_dir=stand.settings.data_dir)
    ts = await dm(restarted, "after the restart?")
    await restarted.answer(ts, contains="Still here.", channel=DM)
    ts = await restarted.say("and in a channel?", user=STRANGER)
    await restarted.answer(ts, contains="In ops too.")  # paired is as good as the allowlist
    actions = [e.action for e in await restarted.services.store.audit_entries()]
    assert "pairing_approved" in actions


@pytest.mark.asyncio
async def test_with_dm_policy_deny_a_strangers_dm_is_refused_without_a_code(make: StandFactory) -> None:
    stand = await make(ORCHESTRATOR_DM_POLICY="deny")
    ts = await dm(stand, "let me in")
    [reply] = stand.bot_messages(ts, DM)
    assert "not allowed" in reply.text and "pairing" not in reply.text
    assert stand.services.store.pairings_sync() == [] and stand.ollama.chat_requests == []


# ---- limits --------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_rate_limit_answers_then_recovers(make: StandFactory) -> None:
    stand = await make(SLACK_ALLOWED_USERS="UADA", ORCHESTRATOR_RATE_LIMIT=2)
    clock = Clock()
    stand.adapter.access.clock = clock
    stand.ollama.script(Reply(content="one"), Reply(content="two"), Reply(content="three"))
    for word in ("one", "two"):
        ts = await stand.say(f"say {word}", user="UADA")
        await stand.answer(ts, contains=word)
        clock.now += 5
    await said(stand, "say three", user="UADA")
    [reply] = ephemerals(stand, "UADA")
    assert "Send it again in 50 s" in reply["text"] and len(stand.ollama.chat_requests) == 2

    clock.now += 50
    ts = await stand.say("say three", user="UADA")
    await stand.answer(ts, contains="three")
    assert "rate_limited" in [e.action for e in await stand.services.store.audit_entries()]


@pytest.mark.asyncio
async def test_a_third_run_at_once_waits_its_turn_and_is_not_lost(make: StandFactory, tmp_path: Path) -> None:
    stand = await make(SLACK_ALLOWED_USERS="UADA")

    def touch(name: str) -> Reply:
        return Reply(tool_calls=[{"name": "run_command", "arguments": {"command": f"touch {tmp_path / name}"}}])

    stand.ollama.script(touch("a"), touch("b"), Reply(content="Not done, a."), Reply(content="Third answered."))
    first = await stand.say("make a", user="UADA")
    await until(lambda: any("Approval needed" in m.text for m in stand.bot_messages(first)))
    second = await stand.say("make b", user="UADA")
    await until(lambda: any("Approval needed" in m.text for m in stand.bot_messages(second)))
    third = await stand.say("a quick question", user="UADA")
    await stand.slack.wait_for(lambda calls: any(c.method == "chat.postEphemeral" for c in calls))
    [note] = ephemerals(stand, "UADA")
    assert "starts as soon as one of them finishes" in note["text"]
    assert len(stand.ollama.chat_requests) == 2  # the third waits

    [approval] = [m for m in stand.bot_messages(first) if "Approval needed" in m.text]
    await stand.react("UADMIN", "x", approval.ts)  # the first run ends, the third gets its turn
    await stand.slack.wait_for(lambda calls: any(c.args.get("text") == "Third answered." for c in calls), timeout=10)
    assert [m.text for m in stand.bot_messages(third)][-1] == "Third answered."

    stand.ollama.script(Reply(content="Not done, b."))
    [other] = [m for m in stand.bot_messages(second) if "Approval needed" in m.text]
    await stand.react("UADMIN", "x", other.ts)
    await stand.answer(second, contains="Not done, b.")
    assert len(await stand.services.store.runs()) == 3
