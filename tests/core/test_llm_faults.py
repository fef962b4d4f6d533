"""Broken and slow model replies, injected into the fake Ollama the real `ollama` client talks to.

Each fault is checked where a person meets it: the `LLMError` core/llm.py raises, the run's
`Failed` step and final status in the store, the one line `orchestrator ask` prints, and the
line the Slack thread gets. A reply counts only once Ollama marks it `done`; a fragment is
never an answer. The three reply limits (first token, between tokens, whole reply) are each
hit by the fake stalling; no test measures time, only which limit the error names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import Services, build_services
from bot.settings import Settings
from core.events import Answer, Event, Failed, Partial, Request
from core.llm import LLMError, OllamaLLM
from tests.fakes.ollama import DEFAULT_MODEL, FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.slack_stand import make_stand

USER = [{"role": "user", "content": "why is the disk full?"}]
FULL = "The disk is full because /var/log/app holds 40 GB of old logs; rotate them."


def llm(fake: FakeOllama, **limits: float) -> OllamaLLM:
    return OllamaLLM(host=fake.url, model=DEFAULT_MODEL, think=None, **limits)


async def chat_error(client: OllamaLLM) -> str:
    with pytest.raises(LLMError) as caught:
        await client.chat(USER, [])
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------- items 1 and 2: broken replies


@pytest.mark.asyncio
async def test_a_200_that_is_not_json_names_ollama_host(fake_ollama: FakeOllama) -> None:
    fake_ollama.garbage_next("<html><body><h1>502 Bad Gateway</h1></body></html>")
    message = await chat_error(llm(fake_ollama))
    assert message.startswith(f"Ollama at {fake_ollama.url} answered with something that is not Ollama's JSON")
    assert "<html>" in message and "OLLAMA_HOST" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[1, 2, 3]\n", "not Ollama's JSON"),  # JSON, but not an object
        ('{"unexpected": true}\n', "not Ollama's JSON"),  # an object, but not a chat chunk
        ("", "sent an empty reply"),
        ('{"error": "llama runner process has terminated"}\n', "stopped qwen3:8b's reply with an error"),
    ],
)
@pytest.mark.asyncio
async def test_other_unreadable_bodies_are_one_line_errors(fake_ollama: FakeOllama, body: str, expected: str) -> None:
    fake_ollama.garbage_next(body, content_type="application/x-ndjson")
    message = await chat_error(llm(fake_ollama))
    assert expected in message and fake_ollama.url in message


@pytest.mark.asyncio
async def test_a_stream_ending_inside_a_json_line_is_a_cut_off_reply(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.cut_next(after=3, mid_line=True)
    message = await chat_error(llm(fake_ollama))
    assert message.startswith("the model's reply was cut off:") and "broken line" in message


@pytest.mark.asyncio
async def test_a_first_line_broken_off_is_a_cut_off_reply_too(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.cut_next(after=0, mid_line=True)
    message = await chat_error(llm(fake_ollama))
    assert message.startswith("the model's reply was cut off:") and "OLLAMA_HOST" not in message


@pytest.mark.asyncio
async def test_a_stream_without_done_is_not_an_answer(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.cut_next(after=3, mid_line=False)
    message = await chat_error(llm(fake_ollama))
    assert message.startswith("the model's reply was cut off:") and "before qwen3:8b finished" in message
    assert "The disk is" not in message


@pytest.mark.asyncio
async def test_a_whole_reply_after_a_fault_is_read_as_usual(fake_ollama: FakeOllama) -> None:
    client = llm(fake_ollama)
    fake_ollama.script(Reply(content=FULL), Reply(content=FULL, thinking="Look at /var/log first."))
    fake_ollama.cut_next(after=2, mid_line=False)
    await chat_error(client)
    reply = await client.chat(USER, [])
    assert reply.content == FULL and reply.thinking == "Look at /var/log first."


# ---------------------------------------------------------------- item 11: the three reply limits


@pytest.mark.asyncio
async def test_first_token_limit_when_nothing_comes(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.stall_next(120, after=0)  # released when the fake stops
    message = await chat_error(llm(fake_ollama, timeout=120, first_token_timeout=0.3, idle_timeout=60))
    assert message.startswith(f"Ollama at {fake_ollama.url} sent nothing for 0.3 s after the question")
    assert "ORCHESTRATOR_LLM_FIRST_TOKEN_TIMEOUT" in message


@pytest.mark.asyncio
async def test_idle_limit_when_the_reply_stops_half_way(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.stall_next(120, after=3)
    message = await chat_error(llm(fake_ollama, timeout=120, first_token_timeout=60, idle_timeout=0.3))
    assert message.startswith("the model's reply stalled:") and "for 0.3 s in the middle" in message
    assert "ORCHESTRATOR_LLM_IDLE_TIMEOUT" in message


@pytest.mark.asyncio
async def test_whole_reply_limit_although_every_chunk_is_on_time(fake_ollama: FakeOllama) -> None:
    # Before: the limit applied to each read, so a slow but steady reply never timed out.
    fake_ollama.script(Reply(content="word " * 2000))
    fake_ollama.chunk_delay = 0.01
    message = await chat_error(llm(fake_ollama, timeout=0.5, first_token_timeout=60, idle_timeout=60))
    assert message.startswith("qwen3:8b did not finish its reply within 0.5 s")
    assert "ORCHESTRATOR_LLM_TIMEOUT" in message


@pytest.mark.asyncio
async def test_the_whole_reply_limit_caps_the_first_token_limit(fake_ollama: FakeOllama) -> None:
    fake_ollama.stall_next(120, after=0)
    message = await chat_error(llm(fake_ollama, timeout=0.3, first_token_timeout=60, idle_timeout=60))
    assert "ORCHESTRATOR_LLM_TIMEOUT" in message and "FIRST_TOKEN" not in message


@pytest.mark.asyncio
async def test_pauses_inside_the_limits_are_waited_out(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=FULL), Reply(content=FULL))
    client = llm(fake_ollama, timeout=120, first_token_timeout=60, idle_timeout=60)
    fake_ollama.stall_next(0.2, after=0)
    assert (await client.chat(USER, [])).content == FULL
    fake_ollama.stall_next(0.2, after=2)
    assert (await client.chat(USER, [])).content == FULL


# ---------------------------------------------------------------- what the run stores and shows

Make = Callable[..., Awaitable[Services]]


@pytest_asyncio.fixture
async def make(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path) -> AsyncIterator[Make]:
    made: list[Services] = []

    async def factory(**env: Any) -> Services:
        values: dict[str, Any] = {
            "ORCHESTRATOR_DATA_DIR": str(tmp_path / f"data{len(made)}"),
            "OLLAMA_HOST": fake_ollama.url,
            "ORCHESTRATOR_FILE_ROOTS": str(workspace),
            "ORCHESTRATOR_CONSOLE_APPROVERS": "tester",
            "ORCHESTRATOR_MEMORY": "off",
        }
        services = await build_services(Settings(**(values | env)))
        made.append(services)
        return services

    yield factory
    for services in made:
        await services.close()


async def ask(services: Services, text: str = "why is the disk full?", *, thread: str = "t1") -> list[Event]:
    request = Request(platform="console", user_id="tester", channel="console", thread=thread, text=text)
    return [ev async for ev in services.agent.run(request)]


async def assert_failed_run(services: Services, events: list[Event], *, starts: str) -> str:
    """One Failed line and nothing else stored; what streamed before the fault was shown live only,
    as text in progress (`Partial`), never as an answer."""
    assert [type(e).__name__ for e in events if not isinstance(e, Partial)] == ["Failed"]
    assert isinstance(events[-1], Failed)
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.error.startswith(starts)
    [run] = await services.store.runs()
    assert run.status == "failed" and run.error == failed.error and run.answer == ""
    assert [s.kind for s in await services.store.steps(run.id or 0)] == ["Failed"]
    return failed.error


Fault = Callable[[FakeOllama], None]
FAULTS: dict[str, tuple[Fault, str]] = {
    "not json": (lambda f: f.garbage_next(), "Ollama at "),
    "cut mid-line": (lambda f: f.cut_next(after=3, mid_line=True), "the model's reply was cut off"),
    "no done": (lambda f: f.cut_next(after=3, mid_line=False), "the model's reply was cut off"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.asyncio
async def test_a_broken_reply_fails_the_run_and_stores_no_fragment(
    make: Make, fake_ollama: FakeOllama, fault: str
) -> None:
    services = await make()
    inject, starts = FAULTS[fault]
    fake_ollama.script(Reply(content=FULL), Reply(content="Rotate /var/log/app."))
    inject(fake_ollama)
    await assert_failed_run(services, await ask(services), starts=starts)

    # The conversation goes on, and the model is never shown a fragment as its own earlier answer.
    events = await ask(services, "and now?")
    assert isinstance(events[-1], Answer)
    history = fake_ollama.chat_requests[-1]["messages"]
    assert [m["role"] for m in history[1:]] == ["user"]
    assert not any("The disk is" in str(m.get("content")) for m in history)


@pytest.mark.parametrize(
    ("env", "stall_after", "setting"),
    [
        ({"ORCHESTRATOR_LLM_FIRST_TOKEN_TIMEOUT": "0.3"}, 0, "ORCHESTRATOR_LLM_FIRST_TOKEN_TIMEOUT"),
        ({"ORCHESTRATOR_LLM_IDLE_TIMEOUT": "0.3"}, 2, "ORCHESTRATOR_LLM_IDLE_TIMEOUT"),
        ({"ORCHESTRATOR_LLM_TIMEOUT": "0.3"}, 2, "ORCHESTRATOR_LLM_TIMEOUT"),
    ],
)
@pytest.mark.asyncio
async def test_each_limit_is_read_from_settings_and_fails_the_run(
    make: Make, fake_ollama: FakeOllama, env: dict[str, str], stall_after: int, setting: str
) -> None:
    services = await make(**env)
    fake_ollama.script(Reply(content=FULL))
    fake_ollama.stall_next(120, after=stall_after)
    error = await assert_failed_run(services, await ask(services), starts="")
    assert setting in error and "0.3 s" in error


# ---------------------------------------------------------------- `orchestrator ask`


def run_ask(env_extra: dict[str, str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "bot", "ask", "why is the disk full?"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=cwd,  # no stray .env or orchestrator.toml
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_ask_prints_one_line_and_exits_non_zero(tmp_path: Path, fake_ollama: FakeOllama, fault: str) -> None:
    inject, starts = FAULTS[fault]
    fake_ollama.script(Reply(content=FULL))
    inject(fake_ollama)
    proc = run_ask(
        {
            "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
            "OLLAMA_HOST": fake_ollama.url,
            "ORCHESTRATOR_FILE_ROOTS": str(tmp_path),
            "ORCHESTRATOR_MEMORY": "off",
        },
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {starts}"), proc.stderr
    assert "Traceback" not in proc.stderr and "The disk is" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- a Slack thread


@pytest.mark.asyncio
async def test_the_slack_thread_blames_the_model_not_the_adapter(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    async with FakeSlack() as slack:
        stand = await make_stand(slack, fake_ollama, tmp_path / "data", ORCHESTRATOR_MEMORY="off")
        try:
            fake_ollama.garbage_next()
            thread = await stand.say("why is the disk full?")
            line = await stand.answer(thread, contains="Sorry, that failed")
            [run] = await stand.services.store.runs()
        finally:
            await stand.adapter.close()
            await stand.services.close()
    assert line.text.startswith(f"Sorry, that failed: Ollama at {fake_ollama.url} answered with something")
    assert "\n" not in line.text and "adapter" not in line.text
    assert run.status == "failed" and run.error.startswith("Ollama at ")
