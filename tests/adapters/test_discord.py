"""The Discord adapter end to end: an unmodified discord.py client against FakeDiscord, the real
core (agent, store on a temp SQLite, approval gate, run_command) and the real Ollama client
against FakeOllama. Assertions are on what Discord was asked to do (the fake's REST record)
and on what ran (files, the audit log); never on wall-clock durations."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import pytest

import tests.support.discord_stand as discord_stand
from adapters.discord import DiscordAdapter, DiscordSetupError
from bot.app import Services
from bot.platforms import discord_config
from bot.settings import Settings
from core.events import Answer, Attachment, Report, Request
from tests.fakes.discord import (
    APPROVER_ID,
    BOT_USER_ID,
    OPS_ROLE_ID,
    OTHER_BOT_ID,
    OWNER_ID,
    STRANGER_ID,
    TEXT_CHANNEL_ID,
    FakeDiscord,
)
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.discord_stand import (
    MENTION,
    TOKEN,
    WAIT,
    approval_posted,
    ask,
    call,
    content,
    posted,
    running,
    said,
    services_for,
    tool_runs,
    touch_script,
)

# the stand's fixtures (tests/support/discord_stand.py)
fake = discord_stand.fake
settings = discord_stand.settings


# ---- conversations ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_mention_opens_a_thread_shows_progress_and_answers(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(
        Reply(thinking="Check the disks first.", tool_calls=[{"name": "disk_usage", "arguments": {}}]),
        Reply(content="The root filesystem has room to spare."),
    )
    async with running(services) as adapter:
        mid = await ask(fake, "how full is the disk?")
        await posted(fake, mid, "room to spare")
        await adapter.wait_idle()

    [thread] = fake.threads()
    assert int(thread["id"]) == mid and thread["parent_id"] == str(TEXT_CHANNEL_ID) and thread["type"] == 11
    assert thread["name"] == "how full is the disk?"
    progress, answer = fake.messages(mid)
    assert progress.splitlines() == [
        "Working on it…",
        "💭 Check the disks first.",
        "🔧 `disk_usage()`",
        progress.splitlines()[3],
        "🏁 done",
    ]
    assert progress.splitlines()[3].startswith("✅ disk_usage: ")
    assert answer == "The root filesystem has room to spare."
    # 👀 while working, taken off when done; the question reached the model without the mention
    assert fake.calls_matching("PUT", rf"/channels/{TEXT_CHANNEL_ID}/messages/{mid}/reactions/👀/@me", status=204)
    assert fake.reactions(mid) == {}
    assert fake_ollama.chat_requests[0]["messages"][-1] == {"role": "user", "content": "how full is the disk?"}
    run = (await services.store.runs())[0]
    assert (run.platform, run.channel, run.thread, run.user_id) == ("discord", str(TEXT_CHANNEL_ID), str(mid), "4001")


@pytest.mark.asyncio
async def test_follow_up_in_the_thread_continues_the_conversation_without_a_mention(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(Reply(content="nginx is running."), Reply(content="It has been up for 3 days."))
    async with running(services) as adapter:
        mid = await ask(fake, "is nginx running?")
        await posted(fake, mid, "nginx is running.")
        await fake.push_message(TEXT_CHANNEL_ID, STRANGER_ID, "chatter in the channel, not for the bot")
        await fake.push_message(mid, APPROVER_ID, "since when?")
        await posted(fake, mid, "3 days")
        await adapter.wait_idle()

    assert len(fake_ollama.chat_requests) == 2  # the channel chatter never reached the model
    second = [(m["role"], m["content"]) for m in fake_ollama.chat_requests[1]["messages"][1:]]
    assert second == [
        ("user", "is nginx running?"),
        ("assistant", "nginx is running."),
        ("user", "since when?"),
    ]
    assert len(fake.threads()) == 1  # the follow-up stayed in the thread


@pytest.mark.asyncio
async def test_a_follow_up_in_an_archived_thread_the_client_forgot_still_continues(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(Reply(content="Backups ran at 02:00."), Reply(content="Yes, all of them."))
    async with running(services) as adapter:
        mid = await ask(fake, "did the backups run?")
        await posted(fake, mid, "02:00")
        thread = adapter.client.get_channel(mid)
        assert isinstance(thread, discord.Thread)
        await thread.edit(archived=True)  # a day of silence; discord.py drops archived threads
        while adapter.client.get_channel(mid) is not None:
            await asyncio.sleep(0.01)
        await fake.push_message(mid, APPROVER_ID, "all of them?")
        await posted(fake, mid, "Yes, all of them.")
        await adapter.wait_idle()

    assert fake.calls_matching("GET", rf"/channels/{mid}", status=200)  # looked up: is it our thread?
    assert [m["content"] for m in fake_ollama.chat_requests[1]["messages"][1:]] == [
        "did the backups run?",
        "Backups ran at 02:00.",
        "all of them?",
    ]


@pytest.mark.asyncio
async def test_direct_messages_are_answered_inline(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(Reply(content="All green."), Reply(content="Still green."))
    async with running(services) as adapter:
        await fake.push_message(None, APPROVER_ID, "status?", guild=False)
        dm = fake.dm_channel_id(APPROVER_ID)
        await posted(fake, dm, "All green.")
        await fake.push_message(None, APPROVER_ID, "and now?", guild=False)
        await posted(fake, dm, "Still green.")
        await adapter.wait_idle()

    assert fake.messages(dm) == ["status?", "All green.", "and now?", "Still green."]
    assert fake.threads() == []
    assert [m["content"] for m in fake_ollama.chat_requests[1]["messages"][1:]] == ["status?", "All green.", "and now?"]
    assert (await services.store.runs())[0].thread == ""  # the whole DM is one conversation


@pytest.mark.asyncio
async def test_ignores_itself_and_other_bots(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(Reply(content="pong"))
    async with running(services) as adapter:
        from_bot = await fake.push_message(TEXT_CHANNEL_ID, OTHER_BOT_ID, f"{MENTION} hello fellow bot")
        from_me = await fake.push_message(TEXT_CHANNEL_ID, BOT_USER_ID, f"{MENTION} talking to myself")
        mid = await ask(fake, "ping", user=STRANGER_ID)
        await posted(fake, mid, "pong")
        await adapter.wait_idle()

    assert [int(t["id"]) for t in fake.threads()] == [mid]
    assert len(fake_ollama.chat_requests) == 1
    for ignored in (from_bot, from_me):
        assert not fake.calls_matching("PUT", rf"/channels/\d+/messages/{ignored}/reactions/.+")


@pytest.mark.asyncio
async def test_a_bare_mention_gets_help_not_a_run(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    async with running(services) as adapter:
        await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, MENTION)
        await posted(fake, TEXT_CHANNEL_ID, "Ask me about this server")
        await adapter.wait_idle()
    assert fake_ollama.chat_requests == [] and fake.threads() == []


# ---- approvals -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_approver_check_runs_the_exact_command_once(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    marker = workspace / "approved"
    fake_ollama.script(*touch_script(marker, "Created it."))
    async with running(services) as adapter:
        mid = await ask(fake, "create the marker file")
        approval_mid = await approval_posted(fake, mid)
        assert not marker.exists()
        text = fake.message(approval_mid).content
        assert f"```\n$ touch {marker}\n```" in text
        assert "exec on local" in text and "Approval #1" in text and "<t:" in text
        assert f"Approvers: <@{APPROVER_ID}>" in text and "React ✅ to approve or ❌ to deny" in text
        row = await services.store.get_approval(1)
        assert row is not None and (row.channel, row.message_ref) == (str(mid), str(approval_mid))

        await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")
        await posted(fake, mid, "Created it.")
        await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")  # again: changes nothing
        await posted(fake, mid, "is already approved")
        await adapter.wait_idle()

    assert marker.exists()
    assert tool_runs(services) == [f'{{"command":"touch {marker}"}}']
    assert fake.reactions(approval_mid) == {"✅": [BOT_USER_ID, APPROVER_ID], "❌": [BOT_USER_ID]}
    assert fake.message(approval_mid).content.endswith(f"▶️ **Result:** Approved by <@{APPROVER_ID}>.")
    assert "▶️ approval #1: Approved by" in fake.messages(mid)[0]  # the progress message
    decided = [e for e in services.store.audit_entries_sync() if e.action == "approved"]
    assert [e.decider for e in decided] == [f"discord:{APPROVER_ID}"]


@pytest.mark.asyncio
async def test_a_file_change_is_shown_as_a_diff_and_applied_once_approved(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    target = workspace / "app.conf"
    target.write_text("port=80\n")
    fake_ollama.script(call("write_file", path="app.conf", content="port=8080\n"), Reply(content="Port changed."))
    async with running(services) as adapter:
        mid = await ask(fake, "move the app to port 8080")
        approval_mid = await approval_posted(fake, mid)
        text = fake.message(approval_mid).content
        assert "```diff\n" in text and "\n-port=80\n+port=8080\n" in text and "file change" in text
        await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")
        await posted(fake, mid, "Port changed.")
        await adapter.wait_idle()
    assert target.read_text() == "port=8080\n"


@pytest.mark.asyncio
async def test_a_strangers_check_is_ignored_and_explained_once_and_a_cross_denies(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    marker = workspace / "denied"
    fake_ollama.script(*touch_script(marker, "Understood, I left it alone."))
    async with running(services) as adapter:
        mid = await ask(fake, "create the marker file", user=STRANGER_ID)
        approval_mid = await approval_posted(fake, mid)
        await fake.push_reaction(mid, approval_mid, STRANGER_ID, "✅")
        await posted(fake, mid, "not an approver")
        await fake.push_reaction(mid, approval_mid, STRANGER_ID, "✔️")
        await fake.push_reaction(mid, approval_mid, OTHER_BOT_ID, "✅")
        assert not marker.exists()
        assert (await services.store.get_approval(1)).status == "pending"  # type: ignore[union-attr]

        await fake.push_reaction(mid, approval_mid, APPROVER_ID, "❌")
        await posted(fake, mid, "I left it alone")
        await adapter.wait_idle()

    assert not marker.exists() and tool_runs(services) == []
    assert len(said(fake, mid, "not an approver")) == 1
    assert said(fake, mid, f"<@{STRANGER_ID}> you are not an approver")
    assert not said(fake, mid, f"<@{OTHER_BOT_ID}>")  # another bot's reaction is not even answered
    assert said(fake, mid, f"⛔ **Result:** Denied by <@{APPROVER_ID}>.")
    tool_msg = fake_ollama.chat_requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "denied" in tool_msg["content"]


@pytest.mark.asyncio
async def test_a_role_holder_approves(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, workspace: Path
) -> None:
    marker = workspace / "by-role"
    fake_ollama.script(*touch_script(marker, "Done."))
    async with (
        services_for(settings, discord_approvers=[], discord_approver_roles=[str(OPS_ROLE_ID)]) as services,
        running(services) as adapter,
    ):
        mid = await ask(fake, "create the marker file")
        approval_mid = await approval_posted(fake, mid)
        assert f"Approvers: <@&{OPS_ROLE_ID}>" in fake.message(approval_mid).content
        # the stranger is nobody by id; the ops role carried in the reaction event is what counts
        await fake.push_reaction(mid, approval_mid, STRANGER_ID, "✅", member_roles=[OPS_ROLE_ID])
        await posted(fake, mid, "Done.")
        await adapter.wait_idle()
        assert marker.exists() and len(tool_runs(services)) == 1
        approval = await services.store.get_approval(1)
        assert approval is not None and approval.decided_by == f"discord:{STRANGER_ID}"


@pytest.mark.asyncio
async def test_no_decision_in_time_denies_and_says_so(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, workspace: Path
) -> None:
    marker = workspace / "late"
    fake_ollama.script(*touch_script(marker, "Nobody approved, so I did nothing."))
    async with services_for(settings, approval_timeout=1.0) as services, running(services) as adapter:
        mid = await ask(fake, "create the marker file")
        approval_mid = await approval_posted(fake, mid)
        await posted(fake, mid, "Nobody approved")
        await adapter.wait_idle()
        assert not marker.exists() and tool_runs(services) == []
        approval = await services.store.get_approval(1)
        assert approval is not None and approval.status == "expired"

    assert said(fake, mid, "⛔ **Result:** Not approved in time: denied (no decision within 1 s).")
    assert fake.message(approval_mid).content.endswith("Not approved in time: denied (no decision within 1 s).")


@pytest.mark.asyncio
async def test_a_reaction_on_a_message_the_client_never_saw_still_decides(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    """Another bot process on the same database (or this one after reconnecting) receives the
    reaction: the approval is found in the store, not in discord.py's message cache."""
    marker = workspace / "elsewhere"
    fake_ollama.script(*touch_script(marker, "Created it."))
    async with running(services) as first:
        mid = await ask(fake, "create the marker file")
        approval_mid = await approval_posted(fake, mid)
        # A second process: its own services on the same database, its own client. The fake
        # now sends gateway events to it alone.
        async with services_for(settings) as other, running(other) as second:
            assert discord.utils.get(second.client.cached_messages, id=approval_mid) is None
            await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")
            await posted(fake, mid, "Created it.")  # rendered by the first process, whose run it is
            await first.wait_idle()
            row = await other.store.get_approval(1)
            assert row is not None and row.status == "approved"

    assert marker.exists() and len(tool_runs(services)) == 1


@pytest.mark.asyncio
async def test_after_a_restart_a_pending_approval_is_expired_announced_and_cannot_be_approved(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    marker = workspace / "never"
    fake_ollama.script(*touch_script(marker, "unused"))
    async with running(services):
        mid = await ask(fake, "create the marker file")
        approval_mid = await approval_posted(fake, mid)
    # The old process is gone with its run. The new one finds the approval without a live
    # waiter (its heartbeat has stopped) and expires it at start-up.
    async with services_for(settings) as restarted:
        restarted.gate.lease = 0.01
        await asyncio.sleep(0.05)
        expired = await restarted.gate.expire_stale()
        assert [a.id for a in expired] == [1]
        adapter = DiscordAdapter(
            replace(discord_config(settings), guild_ready_timeout=0.1),
            agent=restarted.agent, gate=restarted.gate, store=restarted.store,
        )  # fmt: skip
        await adapter.announce_expired(expired)  # before serve(), as the runner does: said once connected
        task = asyncio.create_task(adapter.serve())
        try:
            await posted(fake, mid, "expired: the bot restarted")
            await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")
            await posted(fake, mid, "is already expired")
            await adapter.wait_idle()
        finally:
            await adapter.close()
            await task

    assert not marker.exists() and tool_runs(services) == []


# ---- limits, failures, reconnection --------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_rate_limited_edit_loses_no_step(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    fake_ollama.script(
        *[Reply(thinking=f"step {i}", tool_calls=[{"name": "disk_usage", "arguments": {}}]) for i in range(1, 4)],
        Reply(content="All three checks are fine."),
    )
    fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.3)
    async with running(services) as adapter:
        mid = await ask(fake, "check three times")
        await posted(fake, mid, "All three checks are fine.")
        await adapter.wait_idle()

    statuses = [c.status for c in fake.calls_matching("PATCH", rf"/channels/{mid}/messages/\d+")]
    assert statuses[0] == 429 and statuses[-1] == 200
    lines = fake.messages(mid)[0].splitlines()[1:]
    assert [line[:1] for line in lines] == ["💭", "🔧", "✅"] * 3 + ["🏁"]
    assert [line for line in lines if line.startswith("💭")] == ["💭 step 1", "💭 step 2", "💭 step 3"]
    steps = await services.store.steps((await services.store.runs())[0].id or 0)
    assert len(steps) == 10  # every step is in the store too


def fences_balanced(part: str) -> bool:
    return sum(1 for line in part.splitlines() if line.strip().startswith("```")) % 2 == 0


def without_fences(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.strip().startswith("```")]


@pytest.mark.asyncio
async def test_a_long_answer_is_split_without_breaking_code_blocks(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    log_lines = "\n".join(f"Jan 01 00:00:{i % 60:02d} web[{i}]: request {i} took {i * 7} ms" for i in range(90))
    answer = "Here is what the log says:\n\n```log\n" + log_lines + "\n```\n\n" + "Summary: " + "ok. " * 200 + "end."
    assert 2000 < len(answer) <= 6000
    fake_ollama.script(Reply(content=answer))
    async with running(services) as adapter:
        mid = await ask(fake, "show me the log")
        await posted(fake, mid, "Summary:")
        await adapter.wait_idle()

    parts = fake.messages(mid)  # no steps, so no progress message: only the answer
    assert len(parts) >= 3
    assert all(len(p) <= 2000 for p in parts)
    assert all(fences_balanced(p) for p in parts)
    assert without_fences("\n".join(parts)) == without_fences(answer)


@pytest.mark.asyncio
async def test_a_very_long_answer_is_attached_as_a_file(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services
) -> None:
    answer = "\n".join(f"line {i}: " + "x" * 60 for i in range(200))
    fake_ollama.script(Reply(content=answer))
    async with running(services) as adapter:
        mid = await ask(fake, "dump everything")
        sent = await posted(fake, mid, "as a file")
        await adapter.wait_idle()

    assert sent.filenames == ["answer.md"] and sent.files[0].data.decode() == answer
    # Besides the file, at most the message the answer was watched in while the model wrote it,
    # which ends as its beginning and a pointer to the file.
    *others, last = fake.message_objects(mid)
    assert last.attachments and len(others) <= 1
    assert all(m.content.startswith("line 0: ") and m.content.endswith("is attached below.") for m in others)


@pytest.mark.asyncio
async def test_errors_are_one_readable_line_and_other_conversations_carry_on(
    fake: FakeDiscord,
    fake_ollama: FakeOllama,
    settings: Settings,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.discord")
    async with running(services) as adapter:
        fake_ollama.fail_next(500, "model crashed\nwith a multi-line error")
        failed = await ask(fake, "first question")
        line = (await posted(fake, failed, "Sorry, that failed")).json["content"]
        assert "\n" not in line and "model crashed with a multi-line error" in line

        fake.fail_next(
            "POST", r"/channels/\d+/messages/\d+/threads", status=403, code=50013, message="Missing Permissions"
        )
        await ask(fake, "second question")
        line = (await posted(fake, TEXT_CHANNEL_ID, "internal error")).json["content"]
        assert "\n" not in line and "Missing Permissions" in line

        fake_ollama.script(Reply(content="Third time lucky."))
        ok = await ask(fake, "third question")
        await posted(fake, ok, "Third time lucky.")
        await adapter.wait_idle()

    assert any("failed" in r.message and r.exc_info for r in caplog.records)  # the traceback is logged


@pytest.mark.asyncio
async def test_reconnects_after_a_gateway_drop(
    fake: FakeDiscord,
    fake_ollama: FakeOllama,
    settings: Settings,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.discord")
    fake_ollama.script(Reply(content="Still here."))
    async with running(services) as adapter:
        await fake.drop_gateway(abrupt=True)
        mid = await ask(fake, "are you there?")  # sent while the socket is down: replayed on RESUME
        await fake.wait_ready(WAIT)
        await posted(fake, mid, "Still here.")
        await adapter.wait_idle()

    connected = [r.message for r in caplog.records if r.message.startswith("Discord: connected")]
    assert connected == ["Discord: connected as orchestrator (id 1000) to 1 server(s)"]


# ---- what the application posts -------------------------------------------------------------------
@pytest.mark.asyncio
async def test_reports_notices_and_runs_started_by_the_application(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, tmp_path: Path
) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG fake")
    fake_ollama.script(Reply(content="The disk filled with old logs; rotate them."))
    async with running(services) as adapter:
        ref = await adapter.post_report(
            str(TEXT_CHANNEL_ID), Report(kind="health", title="Health", text="disk 95%", attachments=(
                Attachment(path=str(chart), title="Disk", mime="image/png"),))
        )  # fmt: skip
        report = fake.message(int(ref))
        assert report.content == "**Health**\ndisk 95%" and report.attachments[0]["filename"] == "chart.png"

        # as the health monitor does: a word in the report's thread first, then the run
        early = await adapter.post_in_thread(str(TEXT_CHANNEL_ID), ref, "Looking into it.")
        assert fake.message(int(early)).channel_id == int(ref)
        request = Request(platform="discord", user_id="scheduler", channel=str(TEXT_CHANNEL_ID), thread=ref,
                          text="disk above 90 %: explain")  # fmt: skip
        events = await adapter.run_request(request)
        assert isinstance(events[-1], Answer)
        [thread] = fake.threads()
        assert (int(thread["id"]), thread["name"]) == (int(ref), "Health")  # opened on the report
        assert said(fake, int(ref), "rotate them")

        notice = await adapter.post_in_thread(str(TEXT_CHANNEL_ID), ref, "The check passes again.")
        assert fake.message(int(notice)).channel_id == int(ref)


@pytest.mark.asyncio
async def test_make_discord_adapter_reads_the_settings(settings: Settings, services: Services) -> None:
    from bot.platforms import make_discord_adapter
    from bot.runner import ConfigurationError

    config = discord_config(settings.model_copy(update={"discord_approver_roles": ["2001"]}))
    assert config.token == TOKEN and config.approvers == frozenset({"4001"})
    assert config.approver_roles == frozenset({"2001"}) and config.api_url == settings.discord_api_url
    assert (config.pace_ops, config.pace_window) == (5, 5.0)  # Discord: 5 creates or edits per 5 s

    adapter = make_discord_adapter(settings, services)
    assert adapter.platform == "discord" and adapter.config == discord_config(settings)
    await adapter.close()  # never served: only the client's session to drop
    with pytest.raises(ConfigurationError, match="DISCORD_TOKEN is not set"):
        make_discord_adapter(settings.model_copy(update={"discord_token": None}), services)


# ---- more of the approval rules, and failures on the way ---------------------------------------------
@pytest.mark.asyncio
async def test_quorum_and_no_self_approval_are_explained_in_the_thread(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, workspace: Path
) -> None:
    marker = workspace / "two-keys"
    fake_ollama.script(*touch_script(marker, "Done, with two approvals."))
    rules = {
        "quorum_exec": 2,
        "allow_self_approval": False,
        "discord_approvers": [str(OWNER_ID), str(APPROVER_ID)],
        "discord_approver_roles": [str(OPS_ROLE_ID)],
    }
    async with services_for(settings, **rules) as services, running(services) as adapter:
        mid = await ask(fake, "create the marker file")  # asked by APPROVER_ID
        approval_mid = await approval_posted(fake, mid)
        await fake.push_reaction(mid, approval_mid, APPROVER_ID, "✅")
        await posted(fake, mid, f"<@{APPROVER_ID}> self-approval is disabled here")
        await fake.push_reaction(mid, approval_mid, OWNER_ID, "✅")
        await posted(fake, mid, f"Approval from <@{OWNER_ID}> noted; 1 more approver(s) needed.")
        assert not marker.exists()
        await fake.push_reaction(mid, approval_mid, STRANGER_ID, "✅", member_roles=[OPS_ROLE_ID])
        await posted(fake, mid, "Done, with two approvals.")
        await adapter.wait_idle()
        assert marker.exists() and len(tool_runs(services)) == 1

    assert fake.message(approval_mid).content.endswith(f"Approved by <@{OWNER_ID}>, <@{STRANGER_ID}>.")


@pytest.mark.asyncio
async def test_in_a_dm_a_role_held_in_a_shared_server_counts(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, workspace: Path
) -> None:
    marker = workspace / "from-dm"
    fake_ollama.script(*touch_script(marker, "Created it."))
    roles_only = {"discord_approvers": [], "discord_approver_roles": [str(OPS_ROLE_ID)]}
    async with services_for(settings, **roles_only) as services, running(services) as adapter:
        await fake.push_message(None, APPROVER_ID, "create the marker file", guild=False)
        dm = fake.dm_channel_id(APPROVER_ID)
        approval_mid = await approval_posted(fake, dm)
        await fake.push_reaction(dm, approval_mid, APPROVER_ID, "✅")  # a DM reaction carries no member
        await posted(fake, dm, "Created it.")
        await adapter.wait_idle()
        assert marker.exists()


@pytest.mark.asyncio
async def test_a_failed_post_does_not_stop_the_run(
    fake: FakeDiscord, fake_ollama: FakeOllama, settings: Settings, services: Services, workspace: Path
) -> None:
    marker = workspace / "despite"
    fake_ollama.script(*touch_script(marker, "Created it anyway."))
    fake.fail_next("PUT", r"/channels/\d+/messages/\d+/reactions/✅/@me", status=403, code=50013, message="Nope")
    async with running(services) as adapter:
        mid = await ask(fake, "create the marker file")
        line = content(await posted(fake, mid, "internal error"))
        assert "Forbidden" in line and "Nope" in line
        await posted(fake, mid, "Approval needed")  # posted and stored: only the bot's ✅ failed
        await fake.push_reaction(mid, _id_of(fake, mid), APPROVER_ID, "✅")
        await posted(fake, mid, "Created it anyway.")
        await adapter.wait_idle()
    assert marker.exists()


def _id_of(fake: FakeDiscord, channel_id: int, contains: str = "Approval needed") -> int:
    return next(m.id for m in fake.message_objects(channel_id) if contains in m.content)


@pytest.mark.asyncio
async def test_setup_problems_are_said_in_the_operators_words(
    fake: FakeDiscord, settings: Settings, services: Services
) -> None:
    def adapter(**config: Any) -> DiscordAdapter:
        cfg = replace(discord_config(settings), guild_ready_timeout=0.1, **config)
        return DiscordAdapter(cfg, agent=services.agent, gate=services.gate, store=services.store)

    with pytest.raises(DiscordSetupError, match="DISCORD_TOKEN is not set"):
        await adapter(token="").serve()
    with pytest.raises(DiscordSetupError, match="rejected DISCORD_TOKEN"):
        await adapter(token="wrong").serve()

    bot = adapter()
    serving = asyncio.create_task(bot.serve())
    await asyncio.wait_for(bot.ready.wait(), WAIT)
    await fake.drop_gateway(code=4014)  # what Discord does when a privileged intent is not enabled
    with pytest.raises(DiscordSetupError, match="MESSAGE CONTENT INTENT and SERVER MEMBERS INTENT"):
        await asyncio.wait_for(serving, WAIT)
    assert bot.client.is_closed()


@pytest.mark.asyncio
async def test_report_post_from_the_command_line_reaches_discord(
    fake: FakeDiscord, settings: Settings, tmp_path: Path
) -> None:
    """`orchestrator report daily --post` has no running bot: the adapter serves just long enough to post."""
    import io

    from bot.reports import post_to_channels

    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    configured = settings.model_copy(
        update={"reports": settings.reports.model_copy(update={"discord_channel": str(TEXT_CHANNEL_ID)})}
    )
    report = Report(kind="daily", title="Daily report", text="all quiet", attachments=(Attachment(str(chart)),))
    out = io.StringIO()
    assert await post_to_channels(configured, report, out) == 0, out.getvalue()
    assert f"discord: posted to {TEXT_CHANNEL_ID}" in out.getvalue()
    call = await posted(fake, TEXT_CHANNEL_ID, "Daily report")
    assert "chart.png" in call.filenames or any("Daily report" in m for m in fake.messages(TEXT_CHANNEL_ID))
