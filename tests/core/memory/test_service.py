"""MemoryService: the prompt section and its budget, incidents for the health code, tool edge cases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from core.errors import ToolError
from core.events import Answer, ApprovalRequested, ApprovalResolved, Request, Risk, Thinking
from core.memory import texts
from core.memory.incidents import format_incidents, summarize_run
from core.memory.service import CHARS_PER_TOKEN, MemoryService
from core.memory.store import SHARED_SCOPE, Memory, MemoryStore
from core.memory.tools import memory_tools
from core.tools.registry import ToolContext

ALICE = Request("slack", "U-alice", "C-ops", "…", user_name="Alice")
INCIDENT_SOURCE = {"platform": "slack", "channel": "C-alerts", "thread": "171.5", "host": "web1", "check": "nginx"}


@pytest_asyncio.fixture
async def memory(new_store: Callable[..., MemoryStore]) -> AsyncIterator[MemoryService]:
    service = MemoryService(new_store(), token_budget=60)
    yield service
    await service.aclose()


def fact(n: int, text: str) -> Memory:
    stamp = f"2025-01-0{n % 9 + 1}T10:00:00.000+00:00"
    source = {"platform": "slack", "channel": "C-ops", "user": "U1", "user_name": "Ann"}
    return Memory(f"id{n}", text, "fact", SHARED_SCOPE, source, stamp, stamp)


def test_the_prompt_section_stays_within_the_token_budget(memory: MemoryService) -> None:
    memories = [fact(n, f"web{n} runs nginx behind haproxy on port {8000 + n}") for n in range(1, 8)]
    section = memory.format_context(memories, ALICE)
    lines = section.splitlines()
    assert lines[0] == texts.GUIDE and lines[1] == texts.REMEMBERED_HEADER
    remembered = lines[2:]
    assert remembered[0] == "- web1 runs nginx behind haproxy on port 8001 (Ann, in channel C-ops on slack, 2025-01-02)"
    assert 1 <= len(remembered) < len(memories)  # the budget cut the list, best first
    assert sum(len(line) + 1 for line in remembered) <= memory.token_budget * CHARS_PER_TOKEN

    memory.token_budget = 12  # smaller than one line: that line is cut rather than dropped
    [cut] = memory.format_context(memories, ALICE).splitlines()[2:]
    assert cut.endswith("…") and len(cut) == 12 * CHARS_PER_TOKEN
    assert memory.format_context([], ALICE) == texts.GUIDE  # the guidance is always there


@pytest.mark.asyncio
async def test_no_budget_means_no_recall(memory: MemoryService) -> None:
    await memory.remember("postgres on db1 listens on port 5433", ALICE)
    memory.token_budget = 0
    assert await memory.context(Request("slack", "U-alice", "C-ops", "postgres port on db1?")) == texts.GUIDE


@pytest.mark.asyncio
async def test_an_incident_and_its_outcome_are_recalled_for_a_similar_failure(memory: MemoryService) -> None:
    await memory.remember_incident(
        "nginx on web1 returned 502 Bad Gateway for every request",
        cause="the php-fpm pool was exhausted",
        fix="raised pm.max_children to 40 and reloaded php-fpm",
        outcome="502s stopped within a minute",
        audit_ids=[41, 42],
        source=INCIDENT_SOURCE,
        held=True,
    )
    await memory.remember_incident(
        "disk /var on db1 was 97% full",
        cause="WAL archiving had stalled",
        fix="restarted the archiver",
        source={"host": "db1"},
        held=False,
    )
    await memory.remember("postgres on db1 listens on port 5433", ALICE)

    [similar] = await memory.similar_incidents("web1 answers bad gateway errors again, the site is down", k=3)
    assert similar.fix == "raised pm.max_children to 40 and reloaded php-fpm"
    assert similar.held is True and similar.audit_ids == ("41", "42") and similar.times == 1
    assert similar.memory.source["thread"] == "171.5"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert format_incidents([similar]) == (
        f"Similar past incidents:\n- {today}: nginx on web1 returned 502 Bad Gateway for every request; "
        "cause: the php-fpm pool was exhausted; fixed by raised pm.max_children to 40 and reloaded php-fpm; "
        "the fix held (502s stopped within a minute)"
    )

    [disk] = await memory.similar_incidents("the /var filesystem on db1 is almost full")
    assert "the fix did not hold" in disk.line
    assert await memory.similar_incidents("the TLS certificate of mail.example.com expires in 3 days") == []
    assert format_incidents([]) == ""


@pytest.mark.asyncio
async def test_incidents_seen_again_count_as_recurring(memory: MemoryService) -> None:
    for _ in range(2):  # restated exactly: merged into one memory, revision 2
        await memory.remember_incident("nginx on web1 returned 502 Bad Gateway", fix="reloaded php-fpm")
    for percent in (91.5, 94.2, 97.0):  # other figures each time: grouped by host and check
        await memory.remember_incident(
            f"disk / on web2 is {percent}% full", fix="pruned old docker images", held=True,
            source={"host": "web2", "check": "disk:/"},
        )  # fmt: skip
    await memory.remember_incident("mail queue on mail1 above 500", source={"host": "mail1", "check": "mailq"})
    disk, nginx = await memory.recurring_incidents(since=datetime.now(UTC) - timedelta(days=1))
    assert disk.times == 3 and disk.symptom == "disk / on web2 is 97.0% full" and "(seen 3 times)" in disk.line
    assert nginx.times == 2
    assert await memory.recurring_incidents(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_an_incident_run_is_summarized_for_remember_incident() -> None:
    events = [
        Thinking(7, "Looking at the disk."),
        ApprovalRequested(7, 3, "docker_restart", Risk.EXEC, "restart container web on web1", "", "text", "web1",
                          0.0, "slack:scheduler"),
        ApprovalResolved(7, 3, True, "slack:U-alice"),
        ApprovalRequested(7, 4, "run_command", Risk.EXEC, "rm -rf /tmp/cache", "", "argv", "local", 0.0, "x"),
        ApprovalResolved(7, 4, False, "slack:U-alice", "no"),
        Answer(7, "The container web leaked memory until the OOM killer stopped it. " + "Details follow. " * 40),
    ]  # fmt: skip
    summary = summarize_run(events)
    assert summary.fix == "restart container web on web1"
    assert summary.audit_ids == ("run:7", "approval:3")
    assert summary.cause.startswith("The container web leaked memory") and len(summary.cause) <= 300
    assert summary.cause.endswith(".")


@pytest.mark.asyncio
async def test_secrets_are_redacted_before_they_are_stored(new_store: Callable[..., MemoryStore]) -> None:
    memory = MemoryService(new_store(), redact=lambda t: t.replace("hunter2", "[redacted]"))
    try:
        stored = await memory.remember("the staging admin password is hunter2", ALICE)
        assert stored.text == "the staging admin password is [redacted]"
    finally:
        await memory.aclose()


@pytest.mark.asyncio
async def test_memory_tools_need_a_requester_and_a_sane_fact(memory: MemoryService) -> None:
    specs = {spec.name: spec for spec in memory_tools(memory)}
    # the requester is the call's context, which the agent fills in: never a parameter the model sees
    assert all(spec.context_param == "ctx" for spec in specs.values())
    assert all("ctx" not in spec.schema["function"]["parameters"]["properties"] for spec in specs.values())
    ctx = ToolContext(request=ALICE)
    with pytest.raises(ToolError, match="at most"):
        await specs["memory_store"].fn(fact="x" * 1001, ctx=ctx)
    with pytest.raises(ToolError, match="nothing to remember"):
        await specs["memory_store"].fn(fact="   ", ctx=ctx)
    assert await specs["memory_recall"].fn(query="", ctx=ctx) == texts.NOTHING_AT_ALL
    await specs["memory_store"].fn(fact="web1 has 16 GB of RAM", ctx=ctx)
    listing = await specs["memory_recall"].fn(query="", ctx=ctx)
    assert listing.startswith(texts.RECENT_HEADER) and "web1 has 16 GB of RAM" in listing
    joke = await specs["memory_recall"].fn(query="tell me a joke", ctx=ctx)
    assert joke == "I remember nothing about 'tell me a joke'."
    assert "Nothing forgotten" in await specs["memory_forget"].fn(memory_id="no-such-id", ctx=ctx)
    # declared with the risk they carry; the plan lowers it when the memory is the requester's own
    assert {name: spec.risk.value for name, spec in specs.items()} == {
        "memory_store": "write",
        "memory_recall": "read",
        "memory_forget": "write",
    }
