"""The Slack adapter against the stand-ins: real core, real bolt, FakeSlack and FakeOllama.

Nothing of ours is mocked: the agent, store (SQLite in tmp), gate, policy and the
`run_command` tool are the real ones. The stand (tests/support/slack_stand.py) behaves like
Slack: a mention is seeded in the fake's channel and delivered twice, as `app_mention` and as
`message`, each signed and pushed through bolt's own request handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import WSMsgType, web

import tests.support.slack_stand as slack_stand
from adapters.slack import Mode, SlackAdapter, SlackSetupError
from bot.app import Services, approval_rules
from bot.platforms import make_slack_adapter, slack_config
from bot.runner import ConfigurationError
from bot.settings import Settings
from core.approval import ApprovalGate
from core.events import Attachment, Report, Request
from core.store.models import Approval
from tests.fakes.ollama import Reply
from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    app_mention,
    deliver,
    event_callback,
    message,
    reaction_added,
    signed_headers,
    url_verification,
)
from tests.support.slack_stand import CHANNEL, SECRET, Stand, StandFactory, echo_reply, next_ts, tool_runs, touch_reply
from tests.support.waiting import until

# the stand's fixtures (tests/support/slack_stand.py)
slack = slack_stand.slack
make = slack_stand.make
stand = slack_stand.stand

# ---------------------------------------------------------------------- conversations


@pytest.mark.asyncio
async def test_mention_reacts_shows_progress_in_thread_and_answers(stand: Stand) -> None:
    stand.ollama.script(
        echo_reply("disk ok", thinking="Let me check the disk."),
        Reply(content="The disk is **fine**, see `df`."),
    )
    ts = await stand.say("how is the disk?")
    answer = await stand.answer(ts, contains="The disk is")

    assert stand.slack.reactions(CHANNEL, ts) == ["eyes"]
    progress, final = stand.bot_messages(ts)
    assert final is answer and answer.text == "The disk is *fine*, see `df`."  # Markdown → mrkdwn
    assert progress.thread_ts == ts and progress.edited
    assert progress.text.splitlines() == [
        "Working on it…",
        "💭 Let me check the disk.",
        '🔧 `run_command(command="echo disk ok")`',
        "✅ run_command: $ echo disk ok (+2 lines)",
        "🏁 done",
    ]
    # One progress message, edited (not a message per step), and its last edit landed
    # before the answer was posted.
    calls = [c for c in stand.slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert calls[0].method == "chat.postMessage"
    assert calls[-1].method == "chat.postMessage" and calls[-2].method == "chat.update"
    assert all(c.args["ts"] == progress.ts for c in calls if c.method == "chat.update")
    # The core got the question without the mention, from the right person and thread.
    [run] = await stand.services.store.runs()
    assert (run.request_text, run.user_id, run.thread, run.status) == ("how is the disk?", "U1", ts, "answered")


@pytest.mark.asyncio
async def test_direct_answer_posts_no_progress_message(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Hello!"))
    ts = await stand.say("hi")
    await stand.answer(ts, contains="Hello!")
    assert [m.text for m in stand.bot_messages(ts)] == ["Hello!"]


@pytest.mark.asyncio
async def test_thread_reply_without_mention_continues_the_conversation(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Hi Ada, the load is 0.1."), Reply(content="Still 0.1."))
    ts = await stand.say("what is the load?")
    await stand.answer(ts, contains="the load is 0.1")

    await stand.say("and now?", thread=ts, mention=False)
    await stand.answer(ts, contains="Still 0.1.")

    second = stand.ollama.chat_requests[1]["messages"]
    turns = [(msg["role"], msg["content"]) for msg in second if msg["role"] != "system"]
    assert turns == [
        ("user", "what is the load?"),
        ("assistant", "Hi Ada, the load is 0.1."),
        ("user", "and now?"),
    ]


@pytest.mark.asyncio
async def test_messages_not_for_the_bot_are_ignored(stand: Stand) -> None:
    stand.ollama.script(Reply(content="first"))
    other = stand.slack.add_message(CHANNEL, "people talking", user="U2", ts=next_ts())
    await stand.say("lunch?", mention=False)  # top level, no mention
    await stand.say("sure", thread=other.ts, mention=False)  # a thread the bot is not in
    await stand.adapter.wait_idle()
    assert stand.ollama.chat_requests == []
    assert stand.slack.calls_to("chat.postMessage") == []


@pytest.mark.asyncio
async def test_direct_message_needs_no_mention(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Hi in private."))
    ts = next_ts()
    await stand.send(message("U1", "D1", "are you there?", ts, channel_type="im"))
    await stand.answer(ts, contains="Hi in private.", channel="D1")
    [run] = await stand.services.store.runs()
    assert run.channel == "D1" and run.request_text == "are you there?"


@pytest.mark.asyncio
async def test_bare_mention_gets_help_and_the_thread_continues(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Load is fine."))
    ts = await stand.say("")
    help_msg = await stand.answer(ts, contains="Ask me about this server")
    assert f"<@{BOT_USER_ID}>" in help_msg.text and stand.ollama.chat_requests == []
    await stand.say("how is the load?", thread=ts, mention=False)
    await stand.answer(ts, contains="Load is fine.")


@pytest.mark.asyncio
async def test_own_and_other_bots_messages_are_ignored(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Hello."))
    ts = await stand.say("hi")
    await stand.answer(ts, contains="Hello.")
    before = len(stand.slack.calls)
    mention = f"<@{BOT_USER_ID}> echo this"
    events = [
        message(BOT_USER_ID, CHANNEL, "Hello.", next_ts(), thread_ts=ts, bot_id=BOT_ID),  # our own post
        message("UOTHER", CHANNEL, mention, next_ts(), thread_ts=ts, bot_id="BOTHER"),  # another app
        app_mention("UOTHER", CHANNEL, mention, next_ts()) | {"bot_id": "BOTHER"},
        message("U1", CHANNEL, mention, next_ts(), thread_ts=ts) | {"subtype": "bot_message"},
        message("U1", CHANNEL, mention, next_ts(), thread_ts=ts) | {"subtype": "message_changed"},
    ]
    for event in events:
        assert (await stand.send(event)).status == 200
    await until(lambda: stand.adapter.events_handled >= 2 + len(events) - 1)  # bolt drops our own itself
    await stand.adapter.wait_idle()
    assert len(stand.ollama.chat_requests) == 1
    assert stand.slack.calls[before:] == []


@pytest.mark.asyncio
async def test_duplicate_delivery_does_not_start_a_second_run(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Only once."), Reply(content="A second run!"))
    ts = next_ts()
    event = app_mention("U1", CHANNEL, f"<@{BOT_USER_ID}> hello", ts)
    first = await stand.send(event, event_id="EvSAME")
    retry = await stand.send(event, event_id="EvSAME", retry_num=1, retry_reason="http_timeout")
    again = await stand.send(event, event_id="EvSAME", retry_num=2)
    as_message = await stand.send(message("U1", CHANNEL, event["text"], ts))  # the same mention, other event
    assert [r.status for r in (first, retry, again, as_message)] == [200] * 4
    await until(lambda: stand.adapter.events_handled >= 4)
    await stand.answer(ts, contains="Only once.")

    assert len(stand.ollama.chat_requests) == 1
    assert len(stand.slack.calls_to("reactions.add")) == 1
    assert [m.text for m in stand.bot_messages(ts)] == ["Only once."]
    assert len(await stand.services.store.runs()) == 1


@pytest.mark.asyncio
async def test_bad_signature_is_rejected(stand: Stand) -> None:
    body = event_callback(app_mention("U1", CHANNEL, f"<@{BOT_USER_ID}> rm it", next_ts()))
    bad = await deliver(stand.adapter.app, body, signing_secret=SECRET, bad_signature=True)
    stale = await deliver(stand.adapter.app, body, signing_secret=SECRET, timestamp=int(time.time()) - 600)
    assert (bad.status, stale.status) == (401, 401)
    await asyncio.sleep(0.05)
    assert stand.adapter.events_handled == 0
    assert stand.slack.calls == [] and stand.ollama.chat_requests == []
    # Slack's own check when the request URL is saved (HTTP mode) still works.
    challenge = await deliver(stand.adapter.app, url_verification("abc123"), signing_secret=SECRET)
    assert challenge.status == 200 and "abc123" in challenge.body


@pytest.mark.asyncio
async def test_rate_limited_edit_is_retried_and_no_step_is_lost(stand: Stand) -> None:
    stand.ollama.script(
        echo_reply("one", thinking="First look."),
        echo_reply("two", thinking="Second look."),
        echo_reply("three", thinking="Third look."),
        Reply(content="All three done."),
    )
    stand.slack.rate_limit_next("chat.update", retry_after=1)
    ts = await stand.say("look three times")
    await stand.answer(ts, contains="All three done.")

    updates = stand.slack.calls_to("chat.update")
    assert updates[0].status == 429 and all(c.ok for c in updates[1:])
    progress = stand.bot_messages(ts)[0]
    for n, word in enumerate(["one", "two", "three"]):
        assert f"💭 {['First', 'Second', 'Third'][n]} look." in progress.text
        assert f'🔧 `run_command(command="echo {word}")`' in progress.text
        assert f"✅ run_command: $ echo {word} (+2 lines)" in progress.text
    assert progress.text.endswith("🏁 done")
    # The store has every step in full, whatever the thread shows.
    [run] = await stand.services.store.runs()
    kinds = [s.kind for s in await stand.services.store.steps(run.id or 0)]
    assert kinds == ["Thinking", "ToolCall", "ToolResult"] * 3 + ["Answer"]


@pytest.mark.asyncio
async def test_model_failure_is_one_line_and_other_threads_keep_working(stand: Stand) -> None:
    stand.ollama.fail_next(500, "model exploded\nwith a traceback line")
    stand.ollama.script(Reply(content="I am fine here."))
    broken = await stand.say("first question")
    line = await stand.answer(broken, contains="Sorry, that failed")
    assert "\n" not in line.text and "model exploded" in line.text
    healthy = await stand.say("second question", channel="C2")
    await stand.answer(healthy, contains="I am fine here.", channel="C2")


@pytest.mark.asyncio
async def test_long_answers_are_split_or_attached_never_cut(stand: Stand) -> None:
    medium = "\n".join(f"line {n:04d} " + "x" * 50 for n in range(150))  # ~9,000 characters
    huge = "\n".join(f"row {n:05d} " + "y" * 70 for n in range(600))  # ~48,000 characters
    stand.ollama.script(Reply(content=medium), Reply(content=huge))

    ts = await stand.say("medium please")
    await stand.answer(ts, contains="line 0149")
    parts = [m.text for m in stand.bot_messages(ts)]
    assert len(parts) > 1 and all(len(p) <= 4000 for p in parts)
    assert "\n".join(parts).splitlines() == medium.splitlines()

    ts2 = await stand.say("huge please")
    note = await stand.answer(ts2, contains="as a file")
    [upload] = [f for f in stand.slack.files if f.thread_ts == ts2]
    assert upload.completed and upload.data == huge.encode() and upload.filename == "answer.md"
    assert note.files == (upload.file_id,)


@pytest.mark.asyncio
async def test_long_tool_output_is_attached_in_full(stand: Stand, tmp_path: Path) -> None:
    listing = tmp_path / "data0" / "workspace" / "many.txt"
    listing.write_text("".join(f"entry {n}\n" for n in range(60)))
    stand.ollama.script(
        Reply(tool_calls=[{"name": "run_command", "arguments": {"command": f"cat {listing}"}}]),
        Reply(content="Sixty entries."),
    )
    ts = await stand.say("what is in many.txt?")
    await stand.answer(ts, contains="Sixty entries.")
    [upload] = [f for f in stand.slack.files if f.thread_ts == ts]
    assert upload.data is not None and b"entry 0\n" in upload.data and b"entry 59\n" in upload.data
    assert "(+61 lines)" in stand.bot_messages(ts)[0].text


# ---------------------------------------------------------------------- approvals


@pytest.mark.asyncio
@pytest.mark.parametrize("approver", ["UADMIN", "UGROUPIE"])
async def test_approver_reaction_runs_the_action_exactly_once(
    make: StandFactory, tmp_path: Path, approver: str
) -> None:
    stand = await make(SLACK_APPROVER_GROUPS="S1")
    stand.slack.add_usergroup("S1", ["UGROUPIE"])
    target = tmp_path / "approved.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Created it."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)

    assert f"$ touch {target}" in approval.text and "```" in approval.text
    assert "Approvers: <@UADMIN>, <!subteam^S1>" in approval.text and "<!date^" in approval.text
    assert stand.slack.reactions(CHANNEL, approval.ts) == ["white_check_mark", "x"]
    row = await stand.services.store.approval_for_message("slack", CHANNEL, approval.ts)
    assert row is not None and row.status == "pending" and row.thread == ts

    # Slack echoes the bot's own reactions; they decide nothing (and earn no reply).
    await stand.send(reaction_added(BOT_USER_ID, "white_check_mark", CHANNEL, approval.ts))
    await stand.send(reaction_added(BOT_USER_ID, "x", CHANNEL, approval.ts))

    await stand.react(approver, "white_check_mark", approval.ts)
    await stand.answer(ts, contains="Created it.")
    await stand.react(approver, "white_check_mark", approval.ts)  # again: already decided
    await stand.react(approver, "white_check_mark", approval.ts)

    assert target.exists()
    assert [e.tool for e in await tool_runs(stand)] == ["run_command"]
    decided = await stand.services.store.get_approval(row.id or 0)
    assert decided is not None and (decided.status, decided.decided_by) == ("approved", f"slack:{approver}")
    edited = next(m for m in stand.bot_messages(ts) if m.ts == approval.ts)
    assert edited.edited and f"Approved by <@{approver}>." in edited.text and "React" not in edited.text
    told = [m for m in stand.bot_messages(ts) if "already approved" in m.text]
    assert len(told) == 1  # told once, however many times they react
    assert not any("not an approver" in m.text for m in stand.bot_messages(ts))


@pytest.mark.asyncio
async def test_non_approver_is_ignored_told_once_and_nothing_runs(stand: Stand, tmp_path: Path) -> None:
    target = tmp_path / "not-by-you.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Understood, not done."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)

    for _ in range(3):
        await stand.react("URANDOM", "white_check_mark", approval.ts)
    row = await stand.services.store.approval_for_message("slack", CHANNEL, approval.ts)
    assert row is not None and row.status == "pending" and not target.exists()
    told = [m for m in stand.bot_messages(ts) if "not an approver" in m.text]
    assert [m.text for m in told] == [
        "<@URANDOM> you are not an approver for this action, so your reaction was ignored."
    ]

    await stand.react("UADMIN", "x", approval.ts)  # end the run
    await stand.answer(ts, contains="Understood")
    assert not target.exists() and await tool_runs(stand) == []


@pytest.mark.asyncio
async def test_deny_reaction_denies_and_says_so(stand: Stand, tmp_path: Path) -> None:
    target = tmp_path / "denied.txt"
    stand.ollama.script(touch_reply(target), Reply(content="OK, I did not create it."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)
    await stand.react("UADMIN", "x", approval.ts)
    await stand.answer(ts, contains="I did not create it")

    assert not target.exists() and await tool_runs(stand) == []
    texts_in_thread = [m.text for m in stand.bot_messages(ts)]
    assert ":no_entry: *Result:* Denied by <@UADMIN>." in texts_in_thread
    tool_msg = [m for m in stand.ollama.chat_requests[1]["messages"] if m["role"] == "tool"]
    assert "not run: the action was denied by slack:UADMIN" in tool_msg[0]["content"]
    assert not any("Do not retry" in text for text in texts_in_thread)  # that sentence is for the model


@pytest.mark.asyncio
async def test_no_decision_before_the_timeout_denies(make: StandFactory, tmp_path: Path) -> None:
    stand = await make(ORCHESTRATOR_APPROVAL_TIMEOUT=1)
    target = tmp_path / "too-late.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Nobody approved, so nothing changed."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)
    await stand.answer(ts, contains="Nobody approved")

    assert not target.exists() and await tool_runs(stand) == []
    assert any("Not approved in time: denied" in m.text for m in stand.bot_messages(ts))
    row = await stand.services.store.approval_for_message("slack", CHANNEL, approval.ts)
    assert row is not None and row.status == "expired"
    # A late click changes nothing and is answered once.
    await stand.react("UADMIN", "white_check_mark", approval.ts)
    assert not target.exists()
    assert any("already expired" in m.text for m in stand.bot_messages(ts))


@pytest.mark.asyncio
async def test_quorum_counts_votes_before_running(make: StandFactory, tmp_path: Path) -> None:
    stand = await make(SLACK_APPROVERS="UADMIN,UOPS", ORCHESTRATOR_QUORUM_EXEC=2)
    target = tmp_path / "two-keys.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Created with two approvals."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)
    await stand.react("UADMIN", "white_check_mark", approval.ts)
    assert not target.exists()
    assert any("1 more approver(s) needed" in m.text for m in stand.bot_messages(ts))
    await stand.react("UOPS", "heavy_check_mark", approval.ts)
    await stand.answer(ts, contains="two approvals")
    assert target.exists() and len(await tool_runs(stand)) == 1


@pytest.mark.asyncio
async def test_reaction_after_adapter_restart_still_decides(stand: Stand, tmp_path: Path) -> None:
    target = tmp_path / "after-restart.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Done after the restart."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)

    # A new adapter with its own gate and nothing in memory, sharing only the database
    # (what a restarted or second bot process has).
    rules = approval_rules(stand.settings)
    restarted = stand.new_adapter(gate=ApprovalGate(stand.services.store, rules))
    try:
        await stand.react("UADMIN", "white_check_mark", approval.ts, to=restarted)
        await stand.answer(ts, contains="Done after the restart.")
    finally:
        await restarted.close()
    assert target.exists() and len(await tool_runs(stand)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["same process", "new process"])
async def test_reaction_on_an_approval_whose_run_is_gone_never_runs_it(
    stand: Stand, tmp_path: Path, where: str
) -> None:
    target = tmp_path / "orphan.txt"
    stand.ollama.script(touch_reply(target))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)
    await stand.adapter.close()  # the run is stopped before anyone decides
    if where == "same process":  # a reconnected adapter on the same services
        restarted = stand.new_adapter()
    else:  # a new process on the same database, once the old run's lease has lapsed
        later = ApprovalGate(stand.services.store, approval_rules(stand.settings))
        later.clock = lambda: time.time() + later.lease + 1
        restarted = stand.new_adapter(gate=later)
    try:
        await stand.react("UADMIN", "white_check_mark", approval.ts, to=restarted)
    finally:
        await restarted.close()
    assert not target.exists() and await tool_runs(stand) == []
    told = [m.text for m in stand.bot_messages(ts) if "nothing ran" in m.text]
    assert told == [
        "<@UADMIN> approval #1 expired: the bot that asked for it restarted before it could run, so nothing ran. "
        "Ask again if it is still needed."
    ]


@pytest.mark.asyncio
async def test_long_diff_is_previewed_and_attached_in_full(stand: Stand) -> None:
    big = "".join(f"line {n} of a long new file\n" for n in range(400))
    stand.ollama.script(
        Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "big.txt", "content": big}}]),
        Reply(content="Written."),
    )
    ts = await stand.say("write a big file")
    approval = await stand.approval_message(ts)
    assert "diff" in approval.text and "attached below" in approval.text and len(approval.text) <= 3000
    await stand.slack.wait_for(lambda calls: any(c.method == "files.completeUploadExternal" for c in calls))
    [upload] = [f for f in stand.slack.files if f.thread_ts == ts]
    assert upload.filename.endswith(".diff")
    assert upload.data is not None and b"+line 399 of a long new file" in upload.data
    await stand.react("UADMIN", "white_check_mark", approval.ts)
    await stand.answer(ts, contains="Written.")
    assert (stand.services.settings.roots[0] / "big.txt").read_text() == big


# ---------------------------------------------------------------------- application posts


@pytest.mark.asyncio
async def test_post_report_and_replies_in_its_thread(stand: Stand, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG fake chart")
    report = Report(kind="daily", title="Daily analysis", text="CPU **peaked** at 93 % <!channel>", attachments=(
        Attachment(path=str(chart), title="Last 24 h", mime="image/png"),
    ))  # fmt: skip
    ref = await stand.adapter.post_report("CREPORTS", report)
    [posted] = stand.slack.messages("CREPORTS")[:1]
    assert posted.ts == ref
    assert posted.text == "*Daily analysis*\nCPU *peaked* at 93 % &lt;!channel&gt;"  # never pings
    [upload] = stand.slack.files
    assert upload.data == chart.read_bytes() and upload.title == "Last 24 h" and upload.channels == ("CREPORTS",)

    stand.ollama.script(Reply(content="It was the nightly backup."))
    await stand.say("why the peak?", channel="CREPORTS", thread=ref, mention=False)
    await stand.answer(ref, contains="nightly backup", channel="CREPORTS")


@pytest.mark.asyncio
async def test_run_request_shows_an_incident_in_the_report_thread_approvals_included(
    stand: Stand, tmp_path: Path
) -> None:
    ref = await stand.adapter.post_report("CREPORTS", Report(kind="health", title="Disk 97 % full", text="/var"))
    target = tmp_path / "cleaned.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Cleaned up; the check should pass now."))
    request = Request(
        platform="slack", channel="CREPORTS", thread=ref, user_id="scheduler", user_name="health check",
        text="The disk check failed: /var is 97 % full. Explain and propose a fix.",
    )  # fmt: skip
    running = asyncio.create_task(stand.adapter.run_request(request))
    await stand.slack.wait_for(lambda calls: any(c.args.get("name") == "x" for c in calls))
    [approval] = [m for m in stand.bot_messages(ref, "CREPORTS") if "Approval needed" in m.text]
    assert "asked by scheduler" in approval.text and "<@scheduler>" not in approval.text
    await stand.react("UADMIN", "white_check_mark", approval.ts, channel="CREPORTS")
    events = await asyncio.wait_for(running, 10)

    assert target.exists()
    assert [type(e).__name__ for e in events] == [
        "ToolCall", "ApprovalRequested", "ApprovalResolved", "ToolResult", "Answer",
    ]  # fmt: skip
    assert stand.bot_messages(ref, "CREPORTS")[-1].text == "Cleaned up; the check should pass now."


@pytest.mark.asyncio
async def test_post_in_thread_and_announce_expired(stand: Stand) -> None:
    ref = await stand.adapter.post_in_thread(CHANNEL, "1699.000001", "Disk check **failed** again")
    [msg] = stand.slack.messages(CHANNEL)
    assert (msg.ts, msg.thread_ts, msg.text) == (ref, "1699.000001", "Disk check *failed* again")
    expired = Approval(
        id=7, tool="run_command", args_json="{}", risk="exec", summary="run systemctl restart nginx",
        detail="systemctl restart nginx", fingerprint="f", platform="slack", channel=CHANNEL,
        thread="1699.000002", requested_by="slack:U1", requested_at=0, expires_at=1,
    )  # fmt: skip
    elsewhere = Approval(**(expired.model_dump() | {"id": 8, "platform": "discord"}))
    await stand.adapter.announce_expired([expired, elsewhere])
    [note] = stand.slack.thread(CHANNEL, "1699.000002")
    assert note.text.startswith("Approval #7 (run systemctl restart nginx) expired: the bot restarted")


# ---------------------------------------------------------------------- serving


@pytest.mark.asyncio
async def test_http_mode_serves_signed_events_and_logs_one_connected_line(
    stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    config = replace(stand.config, http_port=0, http_host="127.0.0.1")
    adapter = SlackAdapter(config, agent=stand.services.agent, gate=stand.services.gate, store=stand.services.store)
    assert config.mode is Mode.HTTP
    stand.ollama.script(Reply(content="Served over HTTP."))
    caplog.set_level(logging.INFO, logger="adapters.slack")
    server = asyncio.create_task(adapter.serve())
    try:
        await until(lambda: adapter.http_port is not None or server.done())
        url = f"http://127.0.0.1:{adapter.http_port}/slack/events"
        ts = next_ts()
        raw = json.dumps(event_callback(app_mention("U1", CHANNEL, f"<@{BOT_USER_ID}> hi", ts)))
        async with aiohttp.ClientSession() as http:
            bad = await http.post(url, data=raw, headers=signed_headers(raw, SECRET, bad_signature=True))
            good = await http.post(url, data=raw, headers=signed_headers(raw, SECRET))
            assert (bad.status, good.status) == (401, 200)
        await stand.slack.wait_for(lambda calls: any(c.args.get("text") == "Served over HTTP." for c in calls))
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    connected = [r.getMessage() for r in caplog.records if "connected to workspace" in r.getMessage()]
    assert connected == [
        f"Slack: connected to workspace Fake Workspace (T1) as @orchestrator (UBOT), "
        f"HTTP mode on http://127.0.0.1:{adapter.http_port}/slack/events"
    ]


@pytest.mark.asyncio
async def test_socket_mode_receives_envelopes_and_acks_them(stand: Stand, caplog: pytest.LogCaptureFixture) -> None:
    acks: list[dict[str, Any]] = []
    ts = next_ts()
    envelope = {
        "envelope_id": "env-1",
        "type": "events_api",
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": event_callback(app_mention("U1", CHANNEL, f"<@{BOT_USER_ID}> over the socket", ts)),
    }

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        await ws.send_json(envelope)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                acks.append(json.loads(msg.data))
        return ws

    app = web.Application()
    app.router.add_get("/link", socket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stand.slack.on("apps.connections.open", lambda args: {"url": f"ws://127.0.0.1:{port}/link"})

    config = replace(stand.config, app_token="xapp-1-test")
    adapter = SlackAdapter(config, agent=stand.services.agent, gate=stand.services.gate, store=stand.services.store)
    stand.ollama.script(Reply(content="Hello over Socket Mode."))
    caplog.set_level(logging.INFO, logger="adapters.slack")
    server = asyncio.create_task(adapter.serve())
    try:
        await stand.slack.wait_for(
            lambda calls: any(c.args.get("text") == "Hello over Socket Mode." for c in calls), timeout=15
        )
        await until(lambda: acks)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await runner.cleanup()
    assert acks[0]["envelope_id"] == "env-1"
    [opened] = stand.slack.calls_to("apps.connections.open")
    assert opened.token == "xapp-1-test"
    assert any("Socket Mode" in r.getMessage() and "connected to workspace" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_serve_explains_a_refused_token_or_an_unreachable_slack(stand: Stand) -> None:
    stand.slack.error_next("auth.test", "invalid_auth")
    with pytest.raises(SlackSetupError, match=r"SLACK_BOT_TOKEN was refused .*invalid_auth"):
        await stand.adapter.serve()
    unreachable = SlackAdapter(
        replace(stand.config, api_url="http://127.0.0.1:9/api/"),
        agent=stand.services.agent, gate=stand.services.gate, store=stand.services.store,
    )  # fmt: skip
    with pytest.raises(SlackSetupError, match=r"cannot reach Slack at http://127.0.0.1:9/api/"):
        await unreachable.serve()


@pytest.mark.asyncio
async def test_serving_with_nobody_able_to_approve_warns_at_start(
    make: StandFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stand = await make(SLACK_APPROVERS="")
    stand.slack.error_next("auth.test", "invalid_auth")  # stop right after the start-up checks
    caplog.set_level(logging.WARNING, logger="adapters.slack")
    with pytest.raises(SlackSetupError):
        await stand.adapter.serve()
    assert any("every risky action will expire unapproved" in r.getMessage() for r in caplog.records)


def test_make_slack_adapter_needs_tokens(tmp_path: Path) -> None:
    settings = Settings(ORCHESTRATOR_DATA_DIR=str(tmp_path), SLACK_BOT_TOKEN="xoxb-1")
    with pytest.raises(ConfigurationError, match=r"SLACK_APP_TOKEN .* or SLACK_SIGNING_SECRET"):
        make_slack_adapter(settings, cast(Services, None))
    socket = slack_config(Settings(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1", SLACK_SIGNING_SECRET="s"))
    http = slack_config(Settings(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", SLACK_HTTP_PORT=8080))
    assert (socket.mode, http.mode, http.http_port) == (Mode.SOCKET, Mode.HTTP, 8080)
