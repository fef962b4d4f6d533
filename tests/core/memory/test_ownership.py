"""Who may change a memory: through the real agent, real Chroma, the real approval gate.

Alice (U-alice) and Bob (U-bob) talk to the bot on Slack; Carol (U-carol) is the approver.
What the model "decides" is scripted (the Ollama stand-in); what is checked is what
runs, what waits for Carol, what she is shown, and what is in Chroma afterwards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot.app import Services, build_services
from bot.settings import Settings
from core.events import Answer, ApprovalRequested, ApprovalResolved, Request, ToolResult
from core.memory import texts
from core.memory.service import MemoryService
from core.memory.sources import author_of
from core.memory.store import SHARED_SCOPE, SYSTEM_AUTHOR, MemoryStore, private_scope
from core.redact import REDACTED
from core.tools.registry import TARGET_CHANGED
from tests.fakes.ollama import FakeOllama, Reply

DB1 = "postgres on db1 listens on port 5433"
DB1_AGAIN = "PostgreSQL on db1 listens on port 5433."
FRENCH = "Alice prefers answers in French"
PASSWORD = "Summer2024-staging"
WITH_SECRET = f"staging db1 admin password is {PASSWORD}"


def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def alice(text: str, *, thread: str = "t1", private: bool = False) -> Request:
    channel = "D-alice" if private else "C-ops"
    return Request("slack", "U-alice", channel, text, thread=thread, user_name="Alice", is_private=private)


def bob(text: str, *, thread: str = "t9", private: bool = False) -> Request:
    channel = "D-bob" if private else "C-ops"
    return Request("slack", "U-bob", channel, text, thread=thread, user_name="Bob", is_private=private)


@pytest_asyncio.fixture
async def services(memory_settings: Settings) -> AsyncIterator[Services]:
    svc = await build_services(memory_settings)
    yield svc
    await svc.close()


def memory_of(services: Services) -> MemoryService:
    assert services.memory is not None
    return services.memory


async def run(services: Services, request: Request, *, decide: bool | None = None, meanwhile: Any = None) -> list[Any]:
    """One run; an approval it asks for is decided by Carol (``decide``), after ``meanwhile()`` if given."""
    events: list[Any] = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            assert decide is not None, f"unexpected approval request: {ev.summary}"
            if meanwhile is not None:
                await meanwhile()
            await services.gate.decide(ev.approval_id, platform="slack", user_id="U-carol", approve=decide)
    assert isinstance(events[-1], Answer), events[-1]
    await memory_of(services).drain()
    return events


def asked(events: list[Any]) -> list[ApprovalRequested]:
    return [ev for ev in events if isinstance(ev, ApprovalRequested)]


def result_of(events: list[Any], tool: str) -> ToolResult:
    [result] = [ev for ev in events if isinstance(ev, ToolResult) and ev.tool == tool]
    return result


def everything_in_chroma(store: MemoryStore) -> str:
    """Every document and metadata value in the collection, as Chroma holds it."""
    got = store._collection.get(include=["documents", "metadatas"])  # the raw rows, not the store's reading
    return json.dumps([got["documents"], got["metadatas"]], ensure_ascii=False)


# ---- forget ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bob_forgetting_alices_memory_waits_for_approval_denied_keeps_it(
    services: Services, fake_ollama: FakeOllama
) -> None:
    stored = await memory_of(services).remember(DB1, alice("…"))
    assert stored.author == "slack:U-alice"

    fake_ollama.script(call("memory_forget", memory_id=stored.id), Reply(content="Carol said no."))
    events = await run(services, bob("please drop the db1 port memory"), decide=False)

    [request] = asked(events)
    assert request.tool == "memory_forget" and request.risk == "write"
    assert stored.id in request.detail and DB1 in request.detail
    assert "written by Alice (slack:U-alice)" in request.detail
    [resolved] = [ev for ev in events if isinstance(ev, ApprovalResolved)]
    assert not resolved.approved
    result = result_of(events, "memory_forget")
    assert not result.ok and "denied" in result.output
    assert memory_of(services).store.get(stored.id) is not None


@pytest.mark.asyncio
async def test_bob_forgetting_alices_memory_approved_deletes_it(services: Services, fake_ollama: FakeOllama) -> None:
    stored = await memory_of(services).remember(DB1, alice("…"))
    fake_ollama.script(call("memory_forget", query="the postgres port on db1"), Reply(content="Gone."))
    events = await run(services, bob("drop the db1 port memory"), decide=True)
    assert len(asked(events)) == 1
    result = result_of(events, "memory_forget")
    assert result.ok and result.output == f"Forgot 1 memory: {DB1!r} (id {stored.id})"
    assert memory_of(services).store.count() == 0
    [row] = [a for a in await services.store.audit_entries() if a.action == "tool_run" and a.tool == "memory_forget"]
    assert row.actor == "slack:U-bob" and row.decision == "approved"


@pytest.mark.asyncio
async def test_an_approval_is_bound_to_the_memory_as_it_was(services: Services, fake_ollama: FakeOllama) -> None:
    stored = await memory_of(services).remember(DB1, alice("…"))

    async def alice_restates_it() -> None:
        changed = await memory_of(services).remember(DB1_AGAIN, alice("…", thread="t2"))
        assert changed.id == stored.id and changed.revision == 2

    fake_ollama.script(call("memory_forget", memory_id=stored.id), Reply(content="It changed."))
    events = await run(services, bob("drop the db1 port memory"), decide=True, meanwhile=alice_restates_it)
    result = result_of(events, "memory_forget")
    assert not result.ok and TARGET_CHANGED in result.output
    kept = memory_of(services).store.get(stored.id)
    assert kept is not None and kept.text == DB1_AGAIN


@pytest.mark.asyncio
async def test_bob_forgets_his_own_private_memory_freely(services: Services, fake_ollama: FakeOllama) -> None:
    mine = await memory_of(services).remember("Bob is on call on Tuesdays", bob("…", private=True))
    fake_ollama.script(call("memory_forget", memory_id=mine.id), Reply(content="Forgotten."))
    events = await run(services, bob("forget my on-call day", private=True))
    assert asked(events) == []
    assert result_of(events, "memory_forget").ok
    assert memory_of(services).store.count() == 0


@pytest.mark.asyncio
async def test_bob_forgets_his_own_shared_memory_freely(services: Services, fake_ollama: FakeOllama) -> None:
    mine = await memory_of(services).remember("the backup of db1 runs at 02:00", bob("…"))
    fake_ollama.script(call("memory_forget", memory_id=mine.id), Reply(content="Forgotten."))
    events = await run(services, bob("forget the db1 backup time"), decide=False)
    assert asked(events) == []
    assert result_of(events, "memory_forget").ok
    assert memory_of(services).store.count() == 0


@pytest.mark.asyncio
async def test_a_memory_without_an_author_is_nobodys_and_its_plan_shows_no_secret(
    services: Services, fake_ollama: FakeOllama
) -> None:
    store = memory_of(services).store
    # as an older version stored it: no author in its metadata, and not yet redacted
    old = store.add(WITH_SECRET, kind="fact", scope=SHARED_SCOPE, source={"platform": "slack", "user": "U-alice"})
    assert "author" not in json.dumps(store._collection.get(ids=[old.id], include=["metadatas"])["metadatas"])
    read_back = store.get(old.id)
    assert read_back is not None and read_back.author == "" and read_back.owner == ""

    fake_ollama.script(call("memory_forget", memory_id=old.id), Reply(content="Carol said no."))
    events = await run(services, alice("forget the staging password memory"), decide=False)
    [request] = asked(events)
    assert texts.AUTHOR_UNKNOWN in request.detail
    assert f"password is {REDACTED}" in request.detail and PASSWORD not in request.detail + request.summary
    assert store.count() == 1

    # a private one of that age is its user's: nobody else could have written there
    private = store.add(FRENCH, kind="fact", scope=private_scope("slack", "U-alice"), source={})
    fake_ollama.script(call("memory_forget", memory_id=private.id), Reply(content="Forgotten."))
    events = await run(services, alice("forget my language preference", private=True, thread="t2"))
    assert asked(events) == [] and result_of(events, "memory_forget").ok


# ---- store ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_store_that_would_replace_alices_memory_asks(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(call("memory_store", fact=DB1), Reply(content="Noted."))
    events = await run(services, alice("note the postgres port on db1"))
    assert asked(events) == []  # a new memory of her own: no approval
    [original] = memory_of(services).store.list()
    assert original.author == "slack:U-alice" and original.author_name == "Alice"

    fake_ollama.script(call("memory_store", fact=DB1_AGAIN), Reply(content="Carol said no."))
    events = await run(services, bob("note: PostgreSQL on db1 listens on port 5433.", thread="t2"), decide=False)
    [request] = asked(events)
    assert request.tool == "memory_store" and request.risk == "write"
    assert original.id in request.detail and "written by Alice (slack:U-alice)" in request.detail
    assert f"now: {DB1}" in request.detail and f"new: {DB1_AGAIN}" in request.detail
    assert not result_of(events, "memory_store").ok
    [kept] = memory_of(services).store.list()
    assert kept.text == DB1 and kept.revision == 1

    fake_ollama.script(call("memory_store", fact=DB1_AGAIN), Reply(content="Updated."))
    events = await run(services, bob("note: PostgreSQL on db1 listens on port 5433.", thread="t3"), decide=True)
    assert len(asked(events)) == 1
    assert result_of(events, "memory_store").output.startswith("Updated what I remembered")
    [updated] = memory_of(services).store.list()
    assert updated.id == original.id and updated.text == DB1_AGAIN and updated.revision == 2
    assert updated.author == "slack:U-alice" and updated.source["user"] == "U-bob"  # hers, restated by Bob


@pytest.mark.asyncio
async def test_restating_ones_own_shared_memory_runs_freely(services: Services, fake_ollama: FakeOllama) -> None:
    await memory_of(services).remember(DB1, alice("…"))
    fake_ollama.script(call("memory_store", fact=DB1_AGAIN), Reply(content="Noted."))
    events = await run(services, alice("note: PostgreSQL on db1 listens on port 5433.", thread="t2"), decide=False)
    assert asked(events) == []
    assert result_of(events, "memory_store").output.startswith("Updated what I remembered")


@pytest.mark.asyncio
async def test_an_extracted_restatement_never_replaces_another_persons_memory(
    services: Services, fake_ollama: FakeOllama
) -> None:
    await memory_of(services).remember(DB1, alice("…"))
    fake_ollama.script(
        Reply(content="Yes."),
        Reply(
            content=json.dumps(
                {
                    "facts": [
                        {"text": DB1_AGAIN, "about": "db1"},
                        {"text": "the app on web1 reads its config from /etc/app.toml", "about": "web1"},
                    ]
                }
            )
        ),
    )
    await run(services, bob("PostgreSQL on db1 listens on port 5433. The app on web1 reads /etc/app.toml."))
    memories = {m.text: m for m in memory_of(services).store.list()}
    assert memories[DB1].revision == 1 and DB1_AGAIN not in memories  # Alice's, untouched
    assert memories["the app on web1 reads its config from /etc/app.toml"].author == "slack:U-bob"


# ---- secrets --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_fact_that_is_only_a_secret_is_refused_and_never_reaches_chroma(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(call("memory_store", fact=f"the password is {PASSWORD}"), Reply(content="I will not keep it."))
    events = await run(services, alice("remember the password"))
    result = result_of(events, "memory_store")
    assert not result.ok and texts.FACT_ONLY_SECRET in result.output
    assert asked(events) == []
    store = memory_of(services).store
    assert store.count() == 0 and PASSWORD not in everything_in_chroma(store)


@pytest.mark.asyncio
async def test_a_fact_with_a_secret_inside_is_stored_redacted(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(call("memory_store", fact=WITH_SECRET), Reply(content="Noted, without the password."))
    events = await run(services, alice("note the staging admin password"))
    result = result_of(events, "memory_store")
    assert result.ok and f"staging db1 admin password is {REDACTED}" in result.output
    store = memory_of(services).store
    [stored] = store.list()
    assert stored.text == f"staging db1 admin password is {REDACTED}"
    assert PASSWORD not in everything_in_chroma(store)


@pytest.mark.asyncio
async def test_extraction_redacts_and_refuses_secrets_too(services: Services, fake_ollama: FakeOllama) -> None:
    extracted = {
        "facts": [
            {"text": f"the password is {PASSWORD}", "about": "password"},
            {"text": WITH_SECRET, "about": "db1"},
        ]
    }
    fake_ollama.script(Reply(content="Noted."), Reply(content=json.dumps(extracted)))
    await run(services, alice(f"The staging db1 admin password is {PASSWORD} since Monday."))
    store = memory_of(services).store
    assert [m.text for m in store.list()] == [f"staging db1 admin password is {REDACTED}"]
    assert PASSWORD not in everything_in_chroma(store)


# ---- private memories -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_alices_private_memory_is_never_returned_to_bob(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(call("memory_store", fact=FRENCH), Reply(content="D'accord."))
    events = await run(services, alice("I prefer answers in French", private=True))
    [private] = memory_of(services).store.list()
    assert private.scope == private_scope("slack", "U-alice") and private.author == "slack:U-alice"

    for private_talk in (False, True):  # in a channel, and in his own DM
        fake_ollama.script(
            call("memory_recall", query="Alice's language preference"),
            call("memory_recall", query=""),
            call("memory_forget", memory_id=private.id),
            Reply(content="I don't know."),
        )
        start = len(fake_ollama.chat_requests)
        events = await run(services, bob("which language does Alice prefer?", private=private_talk))
        assert asked(events) == []  # nothing about it is shown to an approver either
        outputs = [ev.output for ev in events if isinstance(ev, ToolResult)]
        assert all("French" not in output for output in outputs)
        assert texts.NOTHING_FORGOTTEN_ID.format(id=private.id) in outputs
        assert all("French" not in json.dumps(sent) for sent in fake_ollama.chat_requests[start:])
    assert memory_of(services).store.count() == 1


# ---- authors --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scheduled_checks_and_incidents_write_as_the_system(services: Services) -> None:
    memory = memory_of(services)
    incident = await memory.remember_incident("disk /var on web1 above 90 %", fix="rotated the logs")
    assert incident.author == SYSTEM_AUTHOR
    scheduled = Request("slack", "scheduler", "C-alerts", "…", user_name="health check")
    assert author_of(scheduled) == SYSTEM_AUTHOR
    fact = await memory.remember("web1 keeps its logs on /var", scheduled)
    assert fact.author == SYSTEM_AUTHOR and fact.owner == SYSTEM_AUTHOR


def test_the_system_users_are_the_schedulers() -> None:
    from core.health.monitor import SCHEDULER_USER
    from core.memory.sources import SYSTEM_USERS

    assert SCHEDULER_USER in SYSTEM_USERS
