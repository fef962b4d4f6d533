"""Every run ends in a final state: answered, failed (with a Failed event) or interrupted.

Real store, agent, gate and tools against the Ollama stand-in. A crashed process is one
whose services were closed (its lock in the data directory released, as the kernel does when a
process dies); tests/bot/test_restarts.py does the same with real SIGKILL and SIGTERM.
The tests on the bot's services run on SQLite and on the session's PostgreSQL (`store_url`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.app import Services, build_services
from bot.settings import Settings
from core.events import Answer, ApprovalRequested, Event, Failed, Request
from core.instance import OwnerId, ProcessIdentity
from core.runs import RESTARTED, STOPPED, interrupt_orphaned_runs
from core.store.models import ApprovalStatus, Message, Run, RunStatus
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.waiting import until

WAIT = 10.0


def request(text: str = "how full is the disk?", thread: str = "t1") -> Request:
    return Request(platform="console", user_id="tester", channel="console", thread=thread, text=text)


async def the_run(services: Services, run_id: int = 1) -> Run:
    run = await services.store.get_run(run_id)
    assert run is not None
    return run


async def consume(services: Services, req: Request, into: list[Event]) -> None:
    async for ev in services.agent.run(req):
        into.append(ev)


@pytest.fixture
def database_url(store_url: str) -> str:
    """The bot's DATABASE_URL (see `settings`): each test here runs on SQLite, then PostgreSQL."""
    return store_url


@pytest.mark.asyncio
async def test_an_answered_run_ends_answered(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content="Plenty of room."))
    events = [ev async for ev in services.agent.run(request())]
    assert isinstance(events[-1], Answer)
    run = await the_run(services)
    assert run.status == RunStatus.ANSWERED and run.finished_at is not None
    assert run.owner == services.gate.identity.owner


@pytest.mark.asyncio
async def test_an_internal_error_fails_the_run_with_a_failed_event(services: Services, fake_ollama: FakeOllama) -> None:
    # The fault: a history row whose stored tool calls are not JSON (a hand edit, a half-written disk).
    conv = await services.store.open_conversation("console", "console", "t1")
    await services.store.add_messages(conv, [{"role": "user", "content": "earlier"}])

    def corrupt(s: object) -> None:
        row = s.get(Message, 1)  # type: ignore[attr-defined]
        row.tool_calls_json = "{not json"
        s.add(row)  # type: ignore[attr-defined]
        s.commit()  # type: ignore[attr-defined]

    await services.store.run(corrupt)
    events = [ev async for ev in services.agent.run(request())]

    [failed] = events
    assert isinstance(failed, Failed)
    assert (
        failed.error.startswith("internal error (JSONDecodeError") and "the bot's log has the details" in failed.error
    )
    run = await the_run(services)
    assert run.status == RunStatus.FAILED and run.error == failed.error
    assert [s.kind for s in await services.store.steps(1)] == ["Failed"]
    assert fake_ollama.chat_requests == []  # it failed before asking the model anything


@pytest.mark.asyncio
async def test_stop_runs_ends_a_run_waiting_for_the_model_with_its_line(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.stall_next(600)  # the model takes its time: the run is in flight
    fake_ollama.script(Reply(content="never seen"))
    events: list[Event] = []
    task = asyncio.create_task(consume(services, request(), events))
    await until(lambda: fake_ollama.chat_requests)

    assert services.agent.stop_runs() == 1
    await asyncio.wait_for(task, WAIT)
    await asyncio.wait_for(services.agent.wait_stopped(), WAIT)

    assert events == [Failed(1, STOPPED)]
    run = await the_run(services)
    assert run.status == RunStatus.INTERRUPTED and run.error == STOPPED
    assert [s.kind for s in await services.store.steps(1)] == ["Failed"]
    # and a question asked after the stop is not started behind its back
    late = [ev async for ev in services.agent.run(request("and now?", thread="t2"))]
    assert late == [Failed(2, STOPPED)] and (await the_run(services, 2)).status == RunStatus.INTERRUPTED


@pytest.mark.asyncio
async def test_stop_runs_while_an_approval_waits_expires_it_and_nothing_runs(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    fake_ollama.script(Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "hi\n"}}]))
    events: list[Event] = []
    task = asyncio.create_task(consume(services, request("write a motd"), events))
    await until(lambda: any(isinstance(e, ApprovalRequested) for e in events))
    [asked] = [e for e in events if isinstance(e, ApprovalRequested)]

    services.agent.stop_runs()
    await asyncio.wait_for(task, WAIT)

    assert events[-1] == Failed(1, STOPPED)
    approval = await services.store.get_approval(asked.approval_id)
    assert approval is not None and approval.status == ApprovalStatus.EXPIRED
    late = await services.gate.decide(asked.approval_id, platform="console", user_id="tester", approve=True)
    assert late.outcome == "already_decided"
    assert not (workspace / "motd").exists()
    assert "approved" not in [e.action for e in services.store.audit_entries_sync()]
    assert (await the_run(services)).status == RunStatus.INTERRUPTED


@pytest.mark.asyncio
async def test_a_run_whose_process_is_gone_is_interrupted_at_the_next_start(
    settings: Settings, fake_ollama: FakeOllama
) -> None:
    crashed = await build_services(settings)
    fake_ollama.stall_next(600)
    task = asyncio.create_task(consume(crashed, request(), []))
    await until(lambda: fake_ollama.chat_requests)
    task.cancel()  # the process dies with its run: nothing more of it runs...
    await asyncio.gather(task, return_exceptions=True)
    assert (await the_run(crashed)).status == RunStatus.RUNNING  # ...and nothing finished it
    await crashed.close()  # ...and its lock in the data directory is free

    restarted = await build_services(settings)
    try:
        assert [r.id for r in restarted.interrupted_on_start] == [1]
        run = await the_run(restarted)
        assert run.status == RunStatus.INTERRUPTED and run.error == RESTARTED
        assert (await restarted.store.steps(1))[-1].kind == "Failed"
    finally:
        await restarted.close()


@pytest.mark.asyncio
async def test_runs_of_a_live_process_on_the_same_database_are_left_alone(
    settings: Settings, services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.stall_next(600)
    fake_ollama.script(Reply(content="Done at last."))
    events: list[Event] = []
    task = asyncio.create_task(consume(services, request(), events))
    await until(lambda: fake_ollama.chat_requests)

    second = await build_services(settings)  # another bot process starting on the same data
    try:
        assert second.interrupted_on_start == []
        assert (await the_run(second)).status == RunStatus.RUNNING
    finally:
        await second.close()
    fake_ollama.release()
    await asyncio.wait_for(task, WAIT)
    assert isinstance(events[-1], Answer) and (await the_run(services)).status == RunStatus.ANSWERED


@pytest.mark.asyncio
async def test_a_run_of_another_machine_is_judged_by_its_heartbeat(services: Services) -> None:
    store = services.store
    conv = await store.open_conversation("slack", "C1", "1.0")
    elsewhere = str(OwnerId("web-2", 4242, "abc123", "feedfacecafe"))  # another data directory: no lock to probe
    run_id = await store.start_run(
        Request(platform="slack", user_id="U1", channel="C1", thread="1.0", text="q"), conv, owner=elsewhere
    )
    here = services.gate.identity
    now = time.time()
    assert await interrupt_orphaned_runs(store, here, now=now + 5) == []  # beating recently: alive
    assert [r.id for r in await interrupt_orphaned_runs(store, here, platforms=["discord"], now=now + 60)] == []
    assert [r.id for r in await interrupt_orphaned_runs(store, here, now=now + 60)] == [run_id]


def test_the_instance_id_is_kept_in_the_data_directory_not_the_hostname(tmp_path: Path) -> None:
    first = ProcessIdentity.start(tmp_path)
    second = ProcessIdentity.start(tmp_path)
    try:
        assert first.id.instance == second.id.instance == (tmp_path / "instance-id").read_text().strip()
        assert first.owner != second.owner  # two live processes told apart
        assert not second.is_dead(first.owner)
        # The same process as written by a container of another name: judged alike.
        renamed = str(OwnerId("old-container", first.id.pid, first.id.nonce, first.id.instance))
        assert not second.is_dead(renamed)
        first.close()
        assert second.is_dead(first.owner) and second.is_dead(renamed)
        assert not second.is_dead("old-host:123:abcdef")  # an id of an older version: heartbeats decide
    finally:
        first.close()
        second.close()
    again = ProcessIdentity.start(tmp_path)
    assert again.id.instance == first.id.instance  # created once
    again.close()
