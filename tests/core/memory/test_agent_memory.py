"""The memory through the real agent: real Chroma, the real offline model, the Ollama stand-in.

What the model "decides" is scripted; what is checked is what the agent sends it (the
system prompt of each request) and what the memory tools answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from bot.app import Services, build_services
from bot.settings import Settings
from core.events import Answer, Request, ToolResult
from core.memory import texts
from core.memory.embeddings import offline_model_name
from core.memory.service import MemoryService
from core.memory.store import SHARED_SCOPE, private_scope
from tests.fakes.ollama import FakeOllama, Reply

DB1 = "postgres on db1 listens on port 5433"
FRENCH = "Alice prefers answers in French"


def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def alice(text: str, *, thread: str = "t1", private: bool = False) -> Request:
    channel = "D-alice" if private else "C-ops"
    return Request("slack", "U-alice", channel, text, thread=thread, user_name="Alice", is_private=private)


def bob(text: str, *, thread: str = "t9", private: bool = False) -> Request:
    channel = "D-bob" if private else "C-ops"
    return Request("slack", "U-bob", channel, text, thread=thread, user_name="Bob", is_private=private)


async def run(services: Services, request: Request) -> list[Any]:
    events = [ev async for ev in services.agent.run(request)]
    assert isinstance(events[-1], Answer), events[-1]
    assert services.memory is not None
    await services.memory.drain()  # background extraction, if any, is finished before the next step
    return events


def system_prompt(fake: FakeOllama, index: int = -1) -> str:
    content = fake.chat_requests[index]["messages"][0]["content"]
    assert isinstance(content, str)
    return content


def tool_output(events: list[Any], tool: str) -> str:
    [result] = [ev for ev in events if isinstance(ev, ToolResult) and ev.tool == tool]
    assert result.ok, result.output
    return str(result.output)


def memory_of(services: Services) -> MemoryService:
    assert services.memory is not None
    return services.memory


@pytest_asyncio.fixture
async def services(memory_settings: Settings) -> AsyncIterator[Services]:
    svc = await build_services(memory_settings)
    yield svc
    await svc.close()


@pytest.mark.asyncio
async def test_a_fact_told_once_is_used_in_another_thread_and_after_a_restart(
    memory_settings: Settings, fake_ollama: FakeOllama
) -> None:
    first = await build_services(memory_settings)
    try:
        fake_ollama.script(call("memory_store", fact=DB1), Reply(content="Noted."))
        events = await run(first, alice("by the way, postgres on db1 listens on port 5433 now"))
        assert "Remembered (shared with everyone" in tool_output(events, "memory_store")
        assert len(fake_ollama.chat_requests) == 2  # memory_store was called: no extraction request

        fake_ollama.script(Reply(content="Use 5433."))
        await run(first, bob("which port should I use to connect to the database on db1?", thread="t2"))
        prompt = system_prompt(fake_ollama)
        assert texts.REMEMBERED_HEADER in prompt
        assert f"- {DB1} (Alice, in channel C-ops on slack, " in prompt
        assert "memory_store" in prompt and "memory_recall" in prompt and "memory_forget" in prompt
    finally:
        await first.close()

    restarted = await build_services(memory_settings)  # a new process would see the same: the data dir is reopened
    try:
        fake_ollama.script(Reply(content="5433."))
        await run(restarted, bob("what port does postgres on db1 use?", thread="t3"))
        assert DB1 in system_prompt(fake_ollama)
        fake_ollama.script(Reply(content="No idea."))
        await run(restarted, bob("what is the weather like in Paris?", thread="t4"))
        assert DB1 not in system_prompt(fake_ollama)  # an unrelated question does not recall it
    finally:
        await restarted.close()


@pytest.mark.asyncio
async def test_what_do_you_remember_returns_facts_with_their_source(
    services: Services, fake_ollama: FakeOllama
) -> None:
    await memory_of(services).remember(DB1, alice("…"))
    await memory_of(services).remember("the on-call engineer this week is Bob", alice("…"))

    fake_ollama.script(call("memory_recall", query="db1"), Reply(content="Postgres on db1 listens on 5433."))
    events = await run(services, bob("what do you remember about db1?"))

    assert DB1 in system_prompt(fake_ollama, 0)  # the question alone already brings it into the prompt
    output = tool_output(events, "memory_recall")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert DB1 in output and "on-call" not in output
    assert f"said by Alice (slack user U-alice) in channel C-ops on slack, {today}" in output
    assert "fact, shared" in output
    assert len(fake_ollama.chat_requests) == 2  # a question: nothing to extract


@pytest.mark.asyncio
async def test_dm_private_facts_do_not_reach_another_user(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(call("memory_store", fact=FRENCH), Reply(content="D'accord."))
    events = await run(services, alice("I prefer answers in French from now on", private=True))
    assert texts.VISIBLE_PRIVATE in tool_output(events, "memory_store")
    memory = memory_of(services)
    assert memory.store.count(scope=private_scope("slack", "U-alice")) == 1
    assert memory.store.count(scope=SHARED_SCOPE) == 0

    question = "which language should I answer Alice in?"
    # Bob, in a channel and in his own DM: not in his prompt, not in his recall, not his to forget.
    fake_ollama.script(
        call("memory_recall", query="Alice's language preference"),
        call("memory_forget", query=FRENCH),
        Reply(content="I don't know."),
    )
    events = await run(services, bob(question))
    for request in fake_ollama.chat_requests[-3:]:
        assert "French" not in request["messages"][0]["content"]
    assert "French" not in tool_output(events, "memory_recall")
    assert "Nothing forgotten" in tool_output(events, "memory_forget")
    fake_ollama.script(Reply(content="I don't know."))
    await run(services, bob(question, private=True, thread="t10"))
    assert "French" not in system_prompt(fake_ollama)

    # Alice sees it in her DM; in a channel, where everyone reads the answer, it stays out.
    fake_ollama.script(Reply(content="En français."))
    await run(services, alice(question, private=True, thread="t2"))
    assert f"- {FRENCH} (Alice, in a direct message on slack, " in system_prompt(fake_ollama)
    fake_ollama.script(call("memory_recall", query="answer language"), Reply(content="I don't know."))
    events = await run(services, alice(question, thread="t3"))
    assert FRENCH not in system_prompt(fake_ollama)
    assert FRENCH not in tool_output(events, "memory_recall")
    assert memory.store.count() == 1


@pytest.mark.asyncio
async def test_a_fact_stated_in_passing_is_extracted_after_the_answer(
    services: Services, fake_ollama: FakeOllama
) -> None:
    billing = "never restart the billing container during office hours"
    fake_ollama.script(
        Reply(content="Understood."),
        Reply(content=f'{{"facts": [{{"text": "{billing.capitalize()}", "about": "billing"}}]}}'),
    )
    await run(services, alice("Never restart the billing container during office hours. It drops payments."))

    extraction = fake_ollama.chat_requests[1]
    assert extraction["messages"][0]["content"] == texts.EXTRACTION_SYSTEM
    assert "User (Alice): Never restart the billing container" in extraction["messages"][1]["content"]
    assert "Assistant: Understood." in extraction["messages"][1]["content"]
    assert not extraction.get("tools")  # no tools for the extraction
    [stored] = memory_of(services).store.list()
    assert stored.text == billing.capitalize() and stored.scope == SHARED_SCOPE
    assert stored.extra == {"about": "billing", "via": "extracted"}
    assert stored.source["user"] == "U-alice" and stored.source["channel"] == "C-ops"

    fake_ollama.script(Reply(content="Not now: it is office hours."))
    await run(services, bob("can I restart the billing container right now?", thread="t2"))
    assert billing.capitalize() in system_prompt(fake_ollama)


@pytest.mark.asyncio
async def test_invalid_extraction_output_stores_nothing(services: Services, fake_ollama: FakeOllama) -> None:
    half_valid = '{"facts": [{"text": "postgres on db1 listens on port 5433", "about": "db1"}, {"text": 5433}]}'
    fake_ollama.script(Reply(content="Noted."), Reply(content=half_valid))
    await run(services, alice("postgres on db1 listens on port 5433 since the upgrade"))
    assert len(fake_ollama.chat_requests) == 2  # the extraction was asked ...
    assert memory_of(services).store.count() == 0  # ... and its answer discarded as a whole


@pytest.mark.asyncio
async def test_restatements_collapse_into_one_memory(services: Services, fake_ollama: FakeOllama) -> None:
    # Alice restates her own memory (another person's restatement asks first: test_ownership.py).
    fake_ollama.script(call("memory_store", fact=DB1), Reply(content="Noted."))
    await run(services, alice("postgres on db1 listens on port 5433", private=True))
    fake_ollama.script(call("memory_store", fact="PostgreSQL on db1 listens on port 5433."), Reply(content="Noted."))
    events = await run(services, alice("remember: PostgreSQL on db1 listens on port 5433.", thread="t2", private=True))
    assert tool_output(events, "memory_store").startswith("Updated what I remembered")
    # The same fact extracted from a third conversation does not pile up either.
    fake_ollama.script(
        Reply(content="Yes."),
        Reply(content='{"facts": [{"text": "The postgres server on db1 is listening on port 5433", "about": "db1"}]}'),
    )
    await run(
        services, alice("The postgres server on db1 is listening on port 5433, as before.", thread="t3", private=True)
    )
    [kept] = memory_of(services).store.list()
    assert kept.revision == 3 and kept.text == "The postgres server on db1 is listening on port 5433"


@pytest.mark.asyncio
async def test_forget_by_id_after_recall(services: Services, fake_ollama: FakeOllama) -> None:
    # Alice's own memory (another person's asks first: test_ownership.py).
    stored = await memory_of(services).remember(DB1, alice("…", private=True))
    fake_ollama.script(call("memory_forget", memory_id=stored.id), Reply(content="Forgotten."))
    events = await run(services, alice("forget what you know about the db1 port", private=True))
    assert tool_output(events, "memory_forget") == f"Forgot 1 memory: {DB1!r} (id {stored.id})"
    assert memory_of(services).store.count() == 0
    fake_ollama.script(call("memory_forget", memory_id=stored.id, query="db1"), Reply(content="?"))
    events = await run(services, alice("forget it again", thread="t2", private=True))
    [result] = [ev for ev in events if isinstance(ev, ToolResult)]
    assert not result.ok and texts.FORGET_NEEDS_ONE in result.output


@pytest.mark.asyncio
async def test_the_model_cannot_claim_another_requester(services: Services, fake_ollama: FakeOllama) -> None:
    await memory_of(services).remember(FRENCH, alice("…", private=True))
    alice_ctx = {"request": {"platform": "slack", "user_id": "U-alice", "channel": "D-alice", "is_private": True}}
    fake_ollama.script(
        call("memory_recall", query="French", ctx=alice_ctx),
        call("memory_forget", query=FRENCH, ctx=alice_ctx),
        Reply(content="No."),
    )
    events = await run(services, bob("what does Alice prefer?", private=True))
    results = [ev for ev in events if isinstance(ev, ToolResult)]
    assert [r.ok for r in results] == [False, False]
    assert all("invalid arguments" in r.output and "ctx" in r.output and "French" not in r.output for r in results)
    assert memory_of(services).store.count(scope=private_scope("slack", "U-alice")) == 1
    for schema in fake_ollama.chat_requests[0]["tools"]:
        assert "ctx" not in schema["function"]["parameters"].get("properties", {})


@pytest.mark.asyncio
async def test_a_store_of_the_english_model_is_reembedded_at_start_up(
    memory_settings: Settings, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    """The upgrade: a memory built with all-MiniLM-L6-v2 (the earlier builds' default) is re-embedded with the
    multilingual model when the bot starts, the log says so, nothing is lost, and French now finds it."""
    before = memory_settings.model_copy(update={"embedding": "minilm"})
    first = await build_services(before)
    await memory_of(first).remember(DB1, alice("…"))
    stored = await memory_of(first).remember("Bob is on call for production incidents this week.", alice("…"))
    french = "qui est d'astreinte cette semaine ?"
    assert memory_of(first).store.recall(french, scopes=[SHARED_SCOPE]) == []  # MiniLM does not read French
    await first.close()

    with caplog.at_level(logging.INFO, logger="bot.memory"):
        services = await build_services(memory_settings)
    try:
        store = memory_of(services).store
        assert store.embedding.model_name == offline_model_name() and store.reindexed == 2
        lines = [r.getMessage() for r in caplog.records if r.name == "bot.memory"]
        assert any("re-embedding 2 memories" in line and "built with all-MiniLM-L6-v2" in line for line in lines)
        assert any(line.startswith("re-embedded 2 memories") for line in lines)
        assert all(r.exc_info is None for r in caplog.records)
        assert store.count() == 2
        assert store.recall(french, scopes=[SHARED_SCOPE])[0].id == stored.id
    finally:
        await services.close()


@pytest.mark.asyncio
async def test_a_memory_that_cannot_be_reembedded_is_off_with_a_clear_line(
    memory_settings: Settings, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    first = await build_services(memory_settings)
    await memory_of(first).remember(DB1, alice("…"))
    await first.close()

    switched = memory_settings.model_copy(update={"embedding": "ollama"})  # the stand-in has no embedding model
    with caplog.at_level(logging.ERROR, logger="bot.memory"):
        services = await build_services(switched)
    try:
        assert services.memory is None and "memory_store" not in services.tools
        [record] = [r for r in caplog.records if r.name == "bot.memory"]
        assert "ollama pull nomic-embed-text" in record.getMessage()
        assert record.exc_info is None  # a clear message, not a traceback
        fake_ollama.script(Reply(content="Still here."))
        events = [ev async for ev in services.agent.run(alice("hello there, are you up?"))]
        assert isinstance(events[-1], Answer)  # the bot runs on without memory
    finally:
        await services.close()

    again = await build_services(memory_settings)  # the original model still opens it, nothing lost
    try:
        assert memory_of(again).store.count() == 1
    finally:
        await again.close()


@pytest.mark.asyncio
async def test_memory_off_registers_nothing(memory_settings: Settings, fake_ollama: FakeOllama) -> None:
    services = await build_services(memory_settings.model_copy(update={"memory": False}))
    try:
        assert services.memory is None
        assert not {"memory_store", "memory_recall", "memory_forget"} & set(services.tools.names())
        fake_ollama.script(Reply(content="Hi."))
        [ev async for ev in services.agent.run(alice("postgres on db1 listens on port 5433"))]
        assert "memory_store" not in system_prompt(fake_ollama)
        assert len(fake_ollama.chat_requests) == 1
    finally:
        await services.close()
