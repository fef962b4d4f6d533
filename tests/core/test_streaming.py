"""The model's turn as it streams: its thinking and text reach renderers while the model is
still writing, masked, never stored piece by piece; the stored steps stay the record."""

from __future__ import annotations

import asyncio
import io

import pytest

from adapters.console import ConsoleAdapter
from bot.app import Services
from core.events import Answer, Event, Failed, Partial, Request, Thinking, ToolCall
from tests.fakes.ollama import FakeOllama, Reply

THOUGHT = "The user wants the uptime of this host, so I will look at it and answer in one line."


def request(text: str, thread: str = "t1") -> Request:
    return Request(platform="console", user_id="tester", channel="console", thread=thread, text=text)


async def events_of(services: Services, text: str) -> list[Event]:
    return [ev async for ev in services.agent.run(request(text))]


def joined(events: list[Event], kind: str) -> str:
    return "".join(ev.text for ev in events if isinstance(ev, Partial) and ev.kind == kind)


@pytest.mark.asyncio
async def test_thinking_reaches_the_renderer_while_the_model_is_still_thinking(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(thinking=THOUGHT, content="Up 3 days."))
    fake_ollama.stall_next(60, after=4)  # the model pauses in the middle of its thought
    seen: list[Event] = []
    run = asyncio.create_task(_consume(services, "uptime?", seen))
    try:
        # everything the model wrote before its pause is on screen during the pause
        await asyncio.wait_for(_until(lambda: joined(seen, "thinking") == "The user wants the "), 20)
        assert not run.done() and not any(isinstance(e, Thinking | Answer) for e in seen)
    finally:
        fake_ollama.release()
    await asyncio.wait_for(run, 20)
    stored = [e for e in seen if not isinstance(e, Partial)]
    assert [type(e).__name__ for e in stored] == ["Thinking", "Answer"]
    assert " ".join(joined(seen, "thinking").split()) == THOUGHT and stored[0].text == THOUGHT  # type: ignore[union-attr]
    assert joined(seen, "text").strip() == "Up 3 days."


@pytest.mark.asyncio
async def test_pieces_are_never_stored_and_every_completed_step_is(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(thinking=THOUGHT, tool_calls=[{"name": "system_info", "arguments": {}}]), "Fine.")
    events = await events_of(services, "status?")
    stored = [e for e in events if not isinstance(e, Partial)]
    steps = await services.store.steps(stored[0].run_id)  # type: ignore[attr-defined]
    assert (
        [s.kind for s in steps]
        == [type(e).__name__ for e in stored]
        == ["Thinking", "ToolCall", "ToolResult", "Answer"]
    )
    first_stored = events.index(stored[0])
    assert all(isinstance(e, Partial) for e in events[:first_stored]) and first_stored >= 1


@pytest.mark.asyncio
async def test_a_secret_in_the_streamed_thinking_is_masked_in_every_piece(
    services: Services, fake_ollama: FakeOllama
) -> None:
    thought = "The env file has:\nDB_PASSWORD=hunter2\nand the key sk_live_4eC39HqLyjWDarjtT1zdp7dc, so it is set."
    fake_ollama.script(
        Reply(
            thinking=thought,
            thinking_pieces=[thought[i : i + 3] for i in range(0, len(thought), 3)],
            content="It is set.",
        )
    )
    events = await events_of(services, "is the db password set?")
    live = joined(events, "thinking")
    assert "hunter2" not in live and "sk_live" not in live and "[REDACTED]" in live
    assert all("hunter2" not in e.text for e in events if isinstance(e, Partial))


@pytest.mark.asyncio
async def test_a_stream_cut_after_some_text_fails_with_one_line_and_no_answer(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(thinking=THOUGHT, content="The disk is almost full and"))
    fake_ollama.cut_next(after=12, mid_line=False)
    events = await events_of(services, "disk?")
    stored = [e for e in events if not isinstance(e, Partial)]
    assert len(stored) == 1 and isinstance(stored[0], Failed) and "Ollama" in stored[0].error
    assert joined(events, "thinking"), "what streamed before the cut was shown live"
    assert not any(isinstance(e, Answer | ToolCall) for e in events)


@pytest.mark.asyncio
async def test_the_console_prints_thinking_and_answer_once_as_they_stream(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(thinking=THOUGHT, content="Up 3 days."))
    out = io.StringIO()
    console = ConsoleAdapter(services.agent, services.gate, out=out, err=out, inp=io.StringIO(), user="tester")
    assert await console.ask("uptime?") == 0
    printed = out.getvalue()
    assert printed.count("The user wants the uptime") == 1 and printed.count("Up 3 days.") == 1
    assert printed.index("… The user wants") < printed.index("Up 3 days.")
    assert "\x1b[" not in printed  # a pipe gets no colour codes


@pytest.mark.asyncio
async def test_the_console_shows_each_piece_as_it_arrives(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(thinking=THOUGHT, content="Up 3 days."))
    fake_ollama.stall_next(60, after=4)
    out = io.StringIO()
    console = ConsoleAdapter(services.agent, services.gate, out=out, err=out, inp=io.StringIO(), user="tester")
    asked = asyncio.create_task(console.ask("uptime?"))
    try:
        await asyncio.wait_for(_until(lambda: "The user wants the" in out.getvalue()), 20)
        assert not asked.done() and "Up 3 days" not in out.getvalue()
    finally:
        fake_ollama.release()
    assert await asyncio.wait_for(asked, 20) == 0


async def _consume(services: Services, text: str, seen: list[Event]) -> None:
    async for ev in services.agent.run(request(text)):
        seen.append(ev)


async def _until(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.02)
