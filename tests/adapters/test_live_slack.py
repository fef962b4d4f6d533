"""What a Slack user sees while a run streams: Slack's agent stream (chat.*Stream through
slack_sdk against FakeSlack), its fallback to an edited message, and the assistant status.

The runs are the real adapter, outbox and store; the events come from the real agent with
FakeOllama, or, where a test must look at the thread between two events, from `EventFeed`
(tests/support/live.py). Waits have upper bounds; nothing measures time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import SlackAdapter
from core.events import Failed
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack, Stream, message
from tests.support.live import EventFeed
from tests.support.slack_stand import CHANNEL, Stand, StandFactory, echo_reply, make_stand, stands, touch_reply
from tests.support.waiting import until

WAIT = 10.0
STREAM_CALLS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(streaming=True) as fake:  # a workspace where the app may stream
        yield fake


@pytest_asyncio.fixture
async def make(slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[StandFactory]:
    async with stands(slack, fake_ollama, tmp_path, streaming=True) as factory:
        yield factory


@pytest_asyncio.fixture
async def stand(make: StandFactory) -> Stand:
    return await make()


def fed(stand: Stand) -> EventFeed:
    """The stand's adapter with `EventFeed` in the agent's place."""
    feed = EventFeed()
    stand.adapter = SlackAdapter(stand.config, agent=feed, gate=stand.services.gate, store=stand.services.store)
    return feed


def only_stream(stand: Stand, thread: str) -> Stream:
    [stream] = [s for s in stand.slack.streams(CHANNEL) if s.thread_ts == thread]
    return stream


def changes(statuses: list[str]) -> list[str]:
    """A task's statuses in order, each once per change (Slack may get the same one twice)."""
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


async def streamed(stand: Stand, thread: str, check: Callable[[Stream], object]) -> Stream:
    """Until the thread's stream exists and `check` holds for it."""

    def found() -> Stream | None:
        streams = [s for s in stand.slack.streams(CHANNEL) if s.thread_ts == thread]
        return streams[0] if streams and check(streams[0]) else None

    await until(found, WAIT)
    stream = found()
    assert stream is not None
    return stream


# ---- the stream ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_thinking_is_in_the_thread_before_the_turn_ends(stand: Stand) -> None:
    feed = fed(stand)
    ts = await stand.say("why is the disk full?")
    feed.give(*feed.thinking_pieces("The user asks about the disk, so df first"))
    stream = await streamed(stand, ts, lambda s: any("so df first" in t.title for t in s.tasks.values()))

    # The turn is not over: nothing stored has reached the adapter, yet the thinking shows.
    [live] = stream.tasks.values()
    assert live.status == "in_progress" and live.title.startswith("Thinking…")
    assert stream.streaming and stream.text == ""
    assert stream.recipient_user_id == "U1" and stream.recipient_team_id == "T1"
    assert stream.task_display_mode == "timeline"

    feed.give(feed.thought("The user asks about the disk, so df first"), feed.call(1, "df -h"))
    feed.give(feed.result(1, "/dev/sda1 91% /\ntmpfs 1% /run"), *feed.draft_pieces("The root disk is **91 %** full."))
    feed.give(feed.answer("The root disk is **91 %** full."))
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)

    assert not stream.streaming
    assert stream.lines() == [
        "[complete] 💭 The user asks about the disk, so df first",
        '[complete] 🔧 `run_command(command="df -h")`',
        "The root disk is **91 %** full.",  # Slack reads the Markdown of a stream itself
    ]
    tool = list(stream.tasks.values())[1]
    assert tool.output == "/dev/sda1 91% / (+1 lines)"
    # One message in the thread: the stream, ending with the answer.
    assert [m.text for m in stand.bot_messages(ts)] == ["The root disk is **91 %** full."]
    assert stand.slack.calls_to("chat.postMessage") == [] and stand.slack.calls_to("chat.update") == []


@pytest.mark.asyncio
async def test_tool_steps_go_pending_then_complete_and_an_approval_waits_in_between(
    stand: Stand, tmp_path: Path
) -> None:
    target = tmp_path / "approved.txt"
    stand.ollama.script(
        echo_reply("disk ok", thinking="Check first."), touch_reply(target), Reply(content="Checked and created.")
    )
    ts = await stand.say("check, then create the file")
    approval = await stand.approval_message(ts)
    stream = only_stream(stand, ts)
    assert stream.streaming  # the run waits for the approval, its stream open above it
    await stand.react("UADMIN", "white_check_mark", approval.ts)
    await stand.answer(ts, contains="Checked and created.")

    assert target.exists()
    echo, touch = [t for t in stream.tasks.values() if t.title.startswith("🔧")]
    assert changes(echo.statuses) == ["pending", "complete"] and echo.output.startswith("$ echo disk ok")
    assert changes(touch.statuses) == ["pending", "in_progress", "complete"]
    assert stream.lines()[-1] == "Checked and created."
    # The approval is its own message with its reactions, as without streaming.
    assert "Approval needed" in approval.text and stand.slack.reactions(CHANNEL, approval.ts) == [
        "white_check_mark",
        "x",
    ]
    waiting = [c for c in stand.slack.calls_to("chat.appendStream") if "waiting for approval #1" in str(c.args)]
    assert waiting  # the timeline said what it was waiting for


@pytest.mark.asyncio
async def test_a_denied_step_is_an_error_in_the_timeline(stand: Stand, tmp_path: Path) -> None:
    stand.ollama.script(touch_reply(tmp_path / "no.txt"), Reply(content="Not done."))
    ts = await stand.say("create the file")
    approval = await stand.approval_message(ts)
    await stand.react("UADMIN", "x", approval.ts)
    await stand.answer(ts, contains="Not done.")
    [touch] = only_stream(stand, ts).tasks.values()
    assert touch.statuses[-1] == "error" and "denied by slack:UADMIN" in touch.output
    assert any(m.text == ":no_entry: *Result:* Denied by <@UADMIN>." for m in stand.bot_messages(ts))


@pytest.mark.asyncio
async def test_a_direct_answer_is_just_the_answer(stand: Stand) -> None:
    stand.ollama.script(Reply(content="Hello!"))
    ts = await stand.say("hi")
    await stand.answer(ts, contains="Hello!")
    assert [m.text for m in stand.bot_messages(ts)] == ["Hello!"]
    assert stand.slack.streams() == []  # nothing to watch: no stream


@pytest.mark.asyncio
async def test_a_long_draft_is_watched_and_a_long_answer_still_splits_or_attaches(stand: Stand) -> None:
    feed = fed(stand)
    medium = "\n".join(f"line {n:04d} " + "x" * 50 for n in range(150))  # ~9,000 characters
    ts = await stand.say("medium please")
    feed.give(*feed.draft_pieces(medium[:2000]))
    stream = await streamed(stand, ts, lambda s: any(t.title.startswith("Writing…") for t in s.tasks.values()))
    feed.give(*feed.draft_pieces(medium[2000:]), feed.answer(medium))
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)

    assert stream.lines()[-1] == "The answer is long, so it follows below."
    parts = [m.text for m in stand.bot_messages(ts) if m.ts != stream.ts]
    assert len(parts) > 1 and all(len(p) <= 4000 for p in parts)
    assert "\n".join(parts).splitlines() == medium.splitlines()


@pytest.mark.asyncio
@pytest.mark.parametrize("lines", [150, 600], ids=["split", "attached"])
async def test_without_streaming_a_long_draft_is_watched_in_the_message_that_becomes_the_answer(
    slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path, lines: int
) -> None:
    stand = await make_stand(slack, fake_ollama, tmp_path / "data")  # streaming off: an edited message
    try:
        feed = fed(stand)
        answer = "\n".join(f"line {n:04d} " + "x" * 50 for n in range(lines))
        ts = await stand.say("everything please")
        feed.give(*feed.draft_pieces(answer[:1000]))
        await until(lambda: any("✍️" in m.text for m in stand.bot_messages(ts)), WAIT)
        watched = stand.bot_messages(ts)[0]
        assert watched.text.startswith("Working on it…\n✍️ ")
        feed.give(*feed.draft_pieces(answer[1000:]), feed.answer(answer))
        feed.end()
        await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
        messages = stand.bot_messages(ts)
        assert messages[0].ts == watched.ts and "Working on it" not in messages[0].text
        if lines == 150:  # split: the watched message is the first part
            assert "\n".join(m.text for m in messages).splitlines() == answer.splitlines()
        else:  # attached: it keeps the beginning and says where the rest is
            assert messages[0].text.startswith("line 0000 ") and messages[0].text.endswith("is attached below.")
            [upload] = [f for f in stand.slack.files if f.thread_ts == ts]
            assert upload.data == answer.encode() and messages[-1].files == (upload.file_id,)
    finally:
        await stand.adapter.close()
        await stand.services.close()


# ---- faults -------------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("error", ["unknown_method", "not_allowed_token_type", "missing_scope"])
async def test_where_streaming_is_refused_the_run_is_an_edited_message_and_stays_so(stand: Stand, error: str) -> None:
    stand.slack.refuse_streaming(error)
    stand.ollama.script(
        echo_reply("disk ok", thinking="Let me check the disk."),
        Reply(content="The disk is **fine**."),
        Reply(thinking="Again.", content="Still fine."),
    )
    ts = await stand.say("how is the disk?")
    await stand.answer(ts, contains="The disk is")
    progress, final = stand.bot_messages(ts)
    assert progress.text.splitlines() == [
        "Working on it…",
        "💭 Let me check the disk.",
        '🔧 `run_command(command="echo disk ok")`',
        "✅ run_command: $ echo disk ok (+2 lines)",
        "🏁 done",
    ]
    assert final.text == "The disk is *fine*."  # mrkdwn, as without streaming
    assert len(stand.slack.calls_to("chat.startStream")) == 1

    second = await stand.say("and now?", channel="C2")
    await stand.answer(second, contains="Still fine.", channel="C2")
    assert len(stand.slack.calls_to("chat.startStream")) == 1  # refused once: not asked again


@pytest.mark.asyncio
async def test_a_channel_that_refuses_streaming_does_not_stop_it_elsewhere(stand: Stand) -> None:
    stand.slack.refuse_streaming("channel_type_not_supported", channel="C2")
    stand.ollama.script(*[Reply(thinking=f"Think {n}.", content=f"Answer {n}.") for n in range(3)])
    first = await stand.say("one", channel="C2")
    await stand.answer(first, contains="Answer 0.", channel="C2")
    second = await stand.say("two", channel="C2")
    await stand.answer(second, contains="Answer 1.", channel="C2")
    third = await stand.say("three")
    await stand.answer(third, contains="Answer 2.")
    starts = [c.args["channel"] for c in stand.slack.calls_to("chat.startStream")]
    assert starts == ["C2", "C1"]
    assert only_stream(stand, third).lines()[-1] == "Answer 2."
    assert [m.text.splitlines()[-1] for m in stand.slack.thread("C2", second) if m.bot_id] == [
        "🏁 done",
        "Answer 1.",
    ]


@pytest.mark.asyncio
async def test_a_429_mid_stream_is_waited_out_and_nothing_is_lost(stand: Stand) -> None:
    feed = fed(stand)
    ts = await stand.say("two steps please")
    feed.give(feed.thought("First look."), feed.call(1, "echo one"))
    stream = await streamed(stand, ts, lambda s: len(s.tasks) == 2)
    stand.slack.storm("chat.appendStream", "chat.stopStream", retry_after=0.2, calls=4)
    feed.give(feed.result(1, "one"), feed.thought("Second look."), feed.call(2, "echo two"))
    await streamed(stand, ts, lambda s: len(s.tasks) == 4)  # once the storm is waited out
    feed.give(feed.result(2, "two"), feed.answer("Both fine."))
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)

    assert [c.status for c in stand.slack.calls_to("chat.appendStream")].count(429) == 4
    assert not stand.slack.storming and stand.slack.calls_to("chat.stopStream")[-1].ok
    assert stream.lines() == [
        "[complete] 💭 First look.",
        '[complete] 🔧 `run_command(command="echo one")`',
        "[complete] 💭 Second look.",
        '[complete] 🔧 `run_command(command="echo two")`',
        "Both fine.",
    ]
    assert [m.text for m in stand.bot_messages(ts)] == ["Both fine."]  # nothing else was needed


@pytest.mark.asyncio
async def test_a_run_with_a_model_streams_and_stores_every_step(stand: Stand) -> None:
    stand.ollama.script(
        *[echo_reply(f"step {n}", thinking=f"Step {n}.") for n in range(1, 4)], Reply(content="All three done.")
    )
    ts = await stand.say("three steps please")
    await stand.answer(ts, contains="All three done.")
    stream = only_stream(stand, ts)
    thoughts = [t.title for t in stream.tasks.values() if t.title.startswith("💭")]
    calls = [t.title for t in stream.tasks.values() if t.title.startswith("🔧")]
    assert thoughts == ["💭 Step 1.", "💭 Step 2.", "💭 Step 3."]
    assert calls == [f'🔧 `run_command(command="echo step {n}")`' for n in (1, 2, 3)]
    assert all(t.status == "complete" for t in stream.tasks.values()) and stream.text == "All three done."
    [run] = await stand.services.store.runs()
    kinds = [s.kind for s in await stand.services.store.steps(run.id or 0)]
    assert kinds == ["Thinking", "ToolCall", "ToolResult"] * 3 + ["Answer"]


@pytest.mark.asyncio
async def test_a_stream_that_ends_mid_run_goes_on_in_an_edited_message(stand: Stand) -> None:
    feed = fed(stand)
    ts = await stand.say("look twice")
    feed.give(feed.thought("First look."), feed.call(1, "echo one"), feed.result(1, "one"))
    stream = await streamed(stand, ts, lambda s: len(s.tasks) == 2 and list(s.tasks.values())[1].status == "complete")
    stand.slack.end_stream(CHANNEL, stream.ts)  # it expired under us
    feed.give(feed.thought("Second look."), feed.call(2, "echo two"), feed.result(2, "two"))
    await stand.slack.wait_for(lambda calls: any(c.method == "chat.postMessage" for c in calls))
    feed.give(feed.answer("Both fine."))
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)

    progress, answer = [m for m in stand.bot_messages(ts) if m.ts != stream.ts]
    assert progress.text.splitlines() == [
        "Working on it…",
        "💭 First look.",
        '🔧 `run_command(command="echo one")`',
        "✅ run_command: one",
        "💭 Second look.",
        '🔧 `run_command(command="echo two")`',
        "✅ run_command: two",
        "🏁 done",
    ]
    assert answer.text == "Both fine."


@pytest.mark.asyncio
async def test_an_answer_whose_stream_expired_is_posted_instead(stand: Stand) -> None:
    feed = fed(stand)
    ts = await stand.say("think, then answer")
    feed.give(*feed.thinking_pieces("Thinking it over"))
    stream = await streamed(stand, ts, lambda s: s.tasks)
    feed.give(feed.thought("Thinking it over"))
    await feed.taken()
    await stand.slack.wait_for(lambda calls: any(c.method == "chat.appendStream" for c in calls))
    stand.slack.end_stream(CHANNEL, stream.ts)
    feed.give(feed.answer("Here it is."))  # straight to the end: the stop finds the stream over
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
    assert [c.error for c in stand.slack.calls_to("chat.stopStream")] == ["message_not_in_streaming_state"]
    assert stand.bot_messages(ts)[-1].text == "Here it is."


@pytest.mark.asyncio
async def test_a_failure_ends_the_stream_and_is_one_line(stand: Stand) -> None:
    feed = fed(stand)
    ts = await stand.say("break")
    feed.give(*feed.thinking_pieces("Let me see"), feed.thought("Let me see"), feed.call(1, "echo x"))
    await streamed(stand, ts, lambda s: len(s.tasks) == 2)
    feed.give(Failed(feed.run_id, "Ollama at http://x stopped answering"))
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
    stream = only_stream(stand, ts)
    assert not stream.streaming and [t.status for t in stream.tasks.values()] == ["complete", "error"]
    assert stand.bot_messages(ts)[-1].text == "Sorry, that failed: Ollama at http://x stopped answering"


# ---- the assistant status ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_assistant_status_is_set_where_slack_allows_it_and_not_asked_again_elsewhere(
    stand: Stand,
) -> None:
    feed = fed(stand)
    dm, ts = "D1", "1700009999.000001"
    stand.slack.add_assistant_thread(dm, ts)  # the app's own thread with this person
    await stand.send(message("U1", dm, "hello?", ts, channel_type="im"))
    await until(lambda: stand.slack.status(dm, ts), WAIT)
    assert stand.slack.status(dm, ts) == "is thinking…"
    feed.give(*feed.thinking_pieces("hm"))
    await stand.slack.wait_for(lambda calls: any(c.method == "chat.startStream" for c in calls))
    assert stand.slack.status(dm, ts) == ""  # the app replied: Slack cleared it
    feed.end()
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)

    for question in ("and here?", "and again?"):  # a channel thread is no assistant thread
        feed.end()
        await stand.say(question)
        await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
    statuses = stand.slack.calls_to("assistant.threads.setStatus")
    assert [(c.args["channel_id"], c.error) for c in statuses] == [(dm, None), (CHANNEL, "invalid_thread_ts")]


# ---- the stand-in itself, through slack_sdk ------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_stand_in_streams_as_slack_shows_it_and_keeps_its_limits(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    with pytest.raises(SlackApiError, match="missing_recipient_user_id"):
        await client.chat_startStream(channel="C1", thread_ts="1.0", markdown_text="hi")
    streamer = await client.chat_stream(
        channel="C1", thread_ts="1.0", recipient_user_id="U1", recipient_team_id="T1", task_display_mode="timeline"
    )
    await streamer.append(chunks=[TaskUpdateChunk(id="a", title="Look", status="pending")])
    await streamer.append(chunks=[TaskUpdateChunk(id="a", title="Looked", status="complete", output="ok")])
    with pytest.raises(SlackApiError, match="invalid_chunks"):
        await streamer.append(chunks=[TaskUpdateChunk(id="b", title="t", status="pending", details="x" * 257)])
    with pytest.raises(SlackApiError, match="msg_too_long"):
        await streamer.append(chunks=[MarkdownTextChunk(text="x" * 12_001)])
    assert streamer.ts is not None
    await streamer.stop(markdown_text="**Done**")
    with pytest.raises(SlackApiError, match="message_not_in_streaming_state"):
        await client.chat_appendStream(channel="C1", ts=streamer.ts, markdown_text="late")

    stream = slack.stream("C1", streamer.ts)
    assert stream.lines() == ["[complete] Looked", "**Done**"]
    assert stream.tasks["a"].statuses == ["pending", "complete"] and stream.tasks["a"].output == "ok"
    assert [m.text for m in slack.thread("C1", "1.0")] == ["**Done**"]

    slack.refuse_streaming("channel_type_not_supported", channel="C9")
    with pytest.raises(SlackApiError, match="channel_type_not_supported"):
        await client.chat_startStream(channel="C9", thread_ts="2.0", recipient_user_id="U1", recipient_team_id="T1")
    async with FakeSlack() as default:  # streaming is not available unless the stand-in says so
        other = AsyncWebClient(token="xoxb-test", base_url=default.api_url)
        with pytest.raises(SlackApiError, match="unknown_method"):
            await other.chat_startStream(channel="D1", thread_ts="1.0", markdown_text="hi")
