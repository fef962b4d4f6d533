"""Fact extraction: the gate, the JSON contract, and the background task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import pytest_asyncio

from core.events import Request
from core.llm import LLMError, LLMReply, OllamaLLM
from core.memory.extraction import FactExtractor, parse_extraction, statements, worth_extracting
from core.memory.service import MemoryService
from core.memory.store import MemoryStore
from tests.fakes.ollama import FakeOllama, Reply

STATEMENT = Request("slack", "U-alice", "C-ops", "Postgres on db1 listens on port 5433 now.", user_name="Alice")
VALID = '{"facts": [{"text": "postgres on db1 listens on port 5433", "about": "db1"}]}'


@pytest_asyncio.fixture
async def memory(new_store: Callable[..., MemoryStore]) -> AsyncIterator[MemoryService]:
    service = MemoryService(new_store())
    yield service
    await service.aclose()


def exchange(text: str, answer: str = "Noted.", *, tool: str = "") -> list[dict[str, Any]]:
    """The run's new messages; with ``tool``, the agent answered the turn by calling that tool first."""
    if not tool:
        return [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    return [
        {"role": "user", "content": text},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": tool, "arguments": {}}}]},
        {"role": "tool", "content": "…", "tool_name": tool},
        {"role": "assistant", "content": answer},
    ]


@pytest.mark.parametrize(
    ("text", "tool", "expected"),
    [
        ("postgres on db1 listens on port 5433", "", True),
        ("I prefer answers in French.", "", True),
        ("Never restart the billing container during office hours", "", True),
        ("no, it listens on 5433 since Monday", "", True),
        ("The disk on web1 is slow. Can you check it?", "", True),
        ("how full is the disk?", "", False),
        ("restart nginx on web1 please", "run_command", False),
        ("what do you remember about db1", "memory_recall", False),
        ("thanks, that works now!", "", False),
        ("hi", "", False),
        ("status?", "", False),
        ("format the disk", "", False),
    ],
)
def test_the_gate_asks_the_model_only_when_the_user_stated_something(text: str, tool: str, expected: bool) -> None:
    request = Request("console", "me", "console", text)
    assert worth_extracting(request, exchange(text, tool=tool)) is expected, statements(text)


def test_the_gate_skips_runs_where_the_agent_already_stored_the_fact() -> None:
    messages = [
        {"role": "user", "content": STATEMENT.text},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "memory_store", "arguments": {}}}]},
        {"role": "tool", "content": "Remembered", "tool_name": "memory_store"},
        {"role": "assistant", "content": "Noted."},
    ]
    assert not worth_extracting(STATEMENT, messages)


@pytest.mark.parametrize(
    "content",
    [
        "Sure! Postgres on db1 listens on 5433.",  # prose
        '{"facts": [{"text": "postgres on db1 listens on port 5433", "about": "db1"}, {"text": 5433}]}',  # half valid
        '{"facts": [{"text": "postgres on db1 listens on port 5433"}]}',  # "about" missing
        '{"facts": ["postgres on db1 listens on port 5433"]}',  # strings, not objects
        '{"fact": [{"text": "postgres on db1 listens on port 5433", "about": "db1"}]}',  # wrong key
        '{"facts": [{"text": "postgres on db1 listens on port 5433", "about": "db1", "confidence": 0.9}]}',
        VALID + "\nLet me know if you need more.",  # trailing prose
        '{"facts": [{"text": "postgres on db1 listens on port 5433", "about": "db1"}',  # cut off
        '{"facts": [{"text": "", "about": "db1"}]}',  # empty fact
        "",
    ],
)
@pytest.mark.asyncio
async def test_invalid_model_output_stores_nothing(
    content: str, memory: MemoryService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(content=content))
    extractor = FactExtractor(OllamaLLM(host=fake_ollama.url, model="qwen3:8b"), memory)
    assert await extractor.extract(STATEMENT, exchange(STATEMENT.text)) == []
    assert memory.store.count() == 0


@pytest.mark.parametrize(
    "content",
    [
        VALID,
        f"```json\n{VALID}\n```",  # a fenced answer is still the whole answer
        f"<think>The user states a port.</think>\n{VALID}",
    ],
)
@pytest.mark.asyncio
async def test_valid_model_output_is_remembered_with_its_source(
    content: str, memory: MemoryService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(content=content))
    extractor = FactExtractor(OllamaLLM(host=fake_ollama.url, model="qwen3:8b", think=None), memory)
    [stored] = await extractor.extract(STATEMENT, exchange(STATEMENT.text))
    assert stored.text == "postgres on db1 listens on port 5433"
    assert stored.source == {"platform": "slack", "channel": "C-ops", "user": "U-alice", "user_name": "Alice"}
    assert fake_ollama.chat_requests[0]["tools"] in (None, [])


def test_empty_fact_list_is_valid_and_a_subject_is_added_when_missing() -> None:
    assert parse_extraction('{"facts": []}') is not None
    parsed = parse_extraction('{"facts": [{"text": "listens on port 5433", "about": "pgbouncer"}]}')
    assert parsed is not None and parsed.facts[0].about == "pgbouncer"


class SlowLLM:
    """Answers the extraction only when released, or fails."""

    def __init__(self, reply: str, *, fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail
        self.release = asyncio.Event()
        self.calls: list[Sequence[dict[str, Any]]] = []

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        self.calls.append(messages)
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the model crashed")
        return LLMReply(content=self.reply)


@pytest.mark.asyncio
async def test_the_hook_returns_before_the_extraction_finishes(memory: MemoryService) -> None:
    llm = SlowLLM(VALID)
    extractor = FactExtractor(llm, memory)
    await asyncio.wait_for(extractor.after_run(STATEMENT, exchange(STATEMENT.text), "Noted."), 1)
    await asyncio.sleep(0.05)
    assert len(llm.calls) == 1 and memory.store.count() == 0  # still waiting on the model
    llm.release.set()
    await memory.drain()
    assert memory.store.count() == 1


@pytest.mark.asyncio
async def test_a_failing_extraction_is_logged_not_raised(
    memory: MemoryService, caplog: pytest.LogCaptureFixture
) -> None:
    llm = SlowLLM(VALID, fail=True)
    llm.release.set()
    await FactExtractor(llm, memory).after_run(STATEMENT, exchange(STATEMENT.text), "Noted.")
    with caplog.at_level(logging.ERROR, logger="core.memory.service"):
        await memory.drain()
    assert any("memory task memory-extract-slack" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.asyncio
async def test_an_unreachable_model_skips_the_extraction(memory: MemoryService) -> None:
    class Down:
        async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
            raise LLMError("cannot reach Ollama")

    assert await FactExtractor(Down(), memory).extract(STATEMENT, exchange(STATEMENT.text)) == []


@pytest.mark.asyncio
async def test_scheduler_runs_are_not_extracted(memory: MemoryService) -> None:
    llm = SlowLLM(VALID)
    scheduled = Request("slack", "scheduler", "C-alerts", "A scheduled health check on web1 failed. Disk is full.")
    await FactExtractor(llm, memory, skip_users={"scheduler"}).after_run(scheduled, exchange(scheduled.text), "ok")
    await memory.drain()
    assert llm.calls == []
