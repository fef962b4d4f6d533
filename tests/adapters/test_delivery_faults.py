"""Nothing lost under faults (issue 12, items 3 and 4), on both chat adapters.

- A sustained 429 storm on every post and edit: the answer, the progress message and the
  approval request still reach the thread, each once, however many 429s it takes; what was
  left undelivered when the bot stopped is delivered by the next one on the same database.
- A request that arrives while the store cannot take it (locked past its busy timeout by
  another connection, or a disk that is full for real through SQLite's `max_page_count`):
  retried while the fault lasts a moment, answered with one line when it persists; never
  silently dropped after the platform was acknowledged.

Everything is real except the platforms, which are the local stand-ins of tests/fakes with
their fault injection. Retry-After values and backoffs are short so the storms pass quickly;
nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from adapters import texts
from adapters.discord import DiscordAdapter
from adapters.outbox import Backoff, Delivery, Outbox, Payload
from adapters.progress import ProgressView
from adapters.slack import SlackAdapter
from bot.app import Services, build_services
from core.events import Answer, ToolCall
from core.store import Store
from core.store.models import OutboxStatus
from tests.fakes.discord import APPROVER_ID, BOT_USER_ID, TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import BOT_ID, FakeSlack
from tests.support.discord_stand import discord_settings, running
from tests.support.slack_stand import CHANNEL, Stand, echo_reply, make_stand, touch_reply
from tests.support.waiting import until

WAIT = 20.0  # upper bounds for waits, never measured
QUICK = Backoff(first=0.02, cap=0.1)  # for failures that come without a Retry-After
STORE_RETRIES = (0.05, 0.1, 0.2)  # the request's store write: tried four times in all
SLACK_POSTS = ("chat.postMessage", "chat.update")
DISCORD_WRITES = ("POST", "PATCH")
DISCORD_MESSAGES = r"/channels/\d+/messages(/\d+)?"  # creates and edits (not reactions, not threads)
TOKEN = "fake-token"


# ---- faults of the store, injected for real -----------------------------------------------------------
def db_path(store: Store) -> str:
    path = store.engine.url.database
    assert path
    return path


@contextlib.contextmanager
def locked(store: Store) -> Iterator[sqlite3.Connection]:
    """Another program holds the database's write lock (BEGIN EXCLUSIVE) until the block ends.

    It waits for a write the bot has in flight (its store works in a worker thread) to take the lock."""
    other = sqlite3.connect(db_path(store), isolation_level=None, timeout=10)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextlib.asynccontextmanager
async def disk_full(store: Store) -> AsyncIterator[None]:
    """The database's disk is full, for real: every connection of the store may not grow the file
    past its current size (SQLite's `max_page_count`), and the free room is filled up first."""

    def no_growth(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(store.engine, "connect", no_growth)
    await store.run(lambda s: store.engine.dispose())  # new connections, with the limit
    await _fill(store)
    try:
        yield
    finally:
        event.remove(store.engine, "connect", no_growth)
        await store.run(lambda s: store.engine.dispose())


async def _fill(store: Store) -> None:
    """Insert rows until no key of the shapes the adapters claim fits any more."""
    probes = ["slack:Ev{}", "slack:slack:msg:C1:{}", "discord:message:{}"]
    for _ in range(50):
        for size in (3000, 800, 200, 50, 10, 1):
            while True:
                try:
                    key = probes[len(size * "x") % 3].format(uuid.uuid4().hex.upper() + "x" * size)
                    await store.first_time(key)
                except OperationalError as exc:
                    assert "full" in str(exc)
                    break
        still_room = False
        for probe in probes:
            try:
                await store.first_time(probe.format(uuid.uuid4().hex.upper()))
                still_room = True
            except OperationalError:
                pass
        if not still_room:
            return
    raise AssertionError("could not fill the database")


FAULTS = ["locked", "disk full"]


@contextlib.asynccontextmanager
async def store_fault(kind: str, store: Store) -> AsyncIterator[None]:
    if kind == "locked":
        with locked(store):
            yield
    else:
        async with disk_full(store):
            yield


# ---- Slack ----------------------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest_asyncio.fixture
async def stands(slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[list[Stand]]:
    made: list[Stand] = []
    yield made
    for stand in made:
        await stand.adapter.close()
        await stand.services.close()


def slack_adapter(stand: Stand, *, store: Store | None = None, **config: Any) -> SlackAdapter:
    """An adapter on the stand's services with quick retries (another process, when given its own store)."""
    cfg = replace(stand.config, delivery_backoff=QUICK, store_retry_delays=STORE_RETRIES, **config)
    deps = {"agent": stand.services.agent, "gate": stand.services.gate, "store": store or stand.services.store}
    return SlackAdapter(cfg, **deps)


@pytest_asyncio.fixture
async def stand(slack: FakeSlack, fake_ollama: FakeOllama, tmp_path: Path, stands: list[Stand]) -> Stand:
    made = await make_stand(slack, fake_ollama, tmp_path / "data")
    await made.adapter.close()
    made.adapter = slack_adapter(made)
    stands.append(made)
    return made


def posts_in(stand: Stand, thread: str) -> list[str]:
    return [m.text for m in stand.slack.thread(CHANNEL, thread) if m.bot_id == BOT_ID]


async def queued(store: Store, text: str) -> None:
    """Until a post with `text` waits in the outbox (the answer is queued, not delivered)."""

    async def waiting() -> bool:
        entries = await store.outbox_entries()
        return any(text in e.payload_json and e.status == OutboxStatus.PENDING for e in entries)

    async def poll() -> None:
        while not await waiting():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), WAIT)


async def outbox_statuses(store: Store, platform: str) -> list[str]:
    return [e.status for e in await store.outbox_entries(platform=platform)]


@pytest.mark.asyncio
@pytest.mark.parametrize("storm", [{"calls": 14}, {"seconds": 0.6}], ids=["14 answers", "for a while"])
async def test_slack_a_429_storm_delays_the_answer_but_loses_nothing(stand: Stand, storm: dict[str, Any]) -> None:
    stand.ollama.script(echo_reply("disk ok", thinking="Check the disk."), Reply(content="The disk is fine."))
    stand.slack.storm(*SLACK_POSTS, retry_after=0.05, **storm)
    ts = await stand.say("how is the disk?")
    await stand.answer(ts, contains="The disk is fine.")

    progress, answer = posts_in(stand, ts)  # one progress message, one answer: nothing twice
    assert progress.splitlines()[0] == "Working on it…" and progress.endswith("🏁 done")
    assert answer == "The disk is fine."
    refused = stand.slack.calls_to("chat.postMessage", ok=False) + stand.slack.calls_to("chat.update", ok=False)
    assert refused and {c.status for c in refused} == {429}
    if "calls" in storm:
        assert len(refused) == 14  # well past slack_sdk's six retries
    [run] = await stand.services.store.runs()
    assert run.status == "answered"
    entries = await stand.services.store.outbox_entries(platform="slack")
    assert {e.status for e in entries} <= {OutboxStatus.SENT, OutboxStatus.SUPERSEDED}
    assert max(e.attempts for e in entries) > 1  # the first post went through 429s
    sent_posts = [e for e in entries if e.kind == "post" and e.status == OutboxStatus.SENT]
    assert len(stand.slack.calls_to("chat.postMessage", ok=True)) == len(sent_posts) == 2


@pytest.mark.asyncio
async def test_slack_an_approval_request_survives_the_storm_and_still_decides(stand: Stand, tmp_path: Path) -> None:
    target = tmp_path / "approved.txt"
    stand.ollama.script(touch_reply(target), Reply(content="Created it."))
    stand.slack.storm(*SLACK_POSTS, "reactions.add", retry_after=0.05, calls=12)
    ts = await stand.say("create the file")
    await stand.slack.wait_for(
        lambda calls: any(c.method == "reactions.add" and c.ok and c.args.get("name") == "x" for c in calls), WAIT
    )
    [approval] = [m for m in stand.slack.thread(CHANNEL, ts) if "Approval needed" in m.text]
    row = await stand.services.store.approval_for_message("slack", CHANNEL, approval.ts)
    assert row is not None and row.status == "pending"  # the late message still points at its approval
    assert stand.slack.reactions(CHANNEL, approval.ts) == ["white_check_mark", "x"]
    await stand.react("UADMIN", "white_check_mark", approval.ts)
    await stand.answer(ts, contains="Created it.")
    assert target.exists()
    [shown] = [m for m in posts_in(stand, ts) if "Approval needed" in m]  # posted once, then edited
    assert "Approved by <@UADMIN>." in shown


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["restart", "second process"])
async def test_slack_what_one_bot_left_undelivered_the_next_delivers_once(stand: Stand, how: str) -> None:
    stand.ollama.script(echo_reply("up", thinking="Look."), Reply(content="All is well."))
    stand.slack.storm(*SLACK_POSTS, retry_after=0.05)  # until ended
    ts = await stand.say("status?")

    await queued(stand.services.store, "All is well.")
    assert posts_in(stand, ts) == []
    first = stand.adapter
    if how == "restart":
        await first.close()  # stopped: the posts stay in the store

    second = slack_adapter(stand, http_port=0, http_host="127.0.0.1")  # a new process on the same database
    serving = asyncio.create_task(second.serve())
    try:
        stand.slack.end_storms()
        await until(lambda: any("All is well." in t for t in posts_in(stand, ts)), WAIT)
        await asyncio.wait_for(second.wait_idle(), WAIT)
        if how == "second process":
            await asyncio.wait_for(first.wait_idle(), WAIT)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    progress, answer = posts_in(stand, ts)
    assert progress.endswith("🏁 done") and answer == "All is well."
    assert len(stand.slack.calls_to("chat.postMessage", ok=True)) == 2  # never sent twice
    assert set(await outbox_statuses(stand.services.store, "slack")) <= {OutboxStatus.SENT, OutboxStatus.SUPERSEDED}


@pytest.mark.asyncio
async def test_slack_a_post_refused_for_good_is_said_once_and_the_rest_goes_on(stand: Stand) -> None:
    stand.ollama.script(echo_reply("x", thinking="Look."), Reply(content="Done anyway."))
    stand.slack.error_next("chat.update", "msg_too_long", times=50)  # every edit of the progress message
    ts = await stand.say("go")
    await stand.answer(ts, contains="Done anyway.")
    await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
    said = posts_in(stand, ts)
    assert "Done anyway." in said  # the answer still came
    [notice] = [t for t in said if "refused" in t]  # said once, however many edits failed
    assert notice.startswith("Sorry, that failed: Slack refused one of my messages here (msg_too_long)")
    assert "\n" not in notice
    entries = await stand.services.store.outbox_entries(platform="slack")
    failed = [e for e in entries if e.status == OutboxStatus.FAILED]
    assert failed and {(e.kind, e.error) for e in failed} == {("update", "msg_too_long")}
    assert OutboxStatus.PENDING not in {e.status for e in entries}


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", FAULTS)
async def test_slack_a_request_the_store_cannot_take_is_answered_in_one_line(
    stand: Stand, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    stand.ollama.script(Reply(content="Stored and answered."))
    # Locked means "past the busy timeout": the adapter's store gives up after 0.1 s. A full disk
    # is made full for the connections of the store that has it (everything here shares it).
    impatient = Store(stand.services.store.url, busy_timeout=0.1)
    store = impatient if fault == "locked" else stand.services.store
    stand.adapter = slack_adapter(stand, store=store)
    try:
        async with store_fault(fault, store):
            ts = await stand.say("how is the disk?")  # delivered twice: as app_mention and as message
            await until(lambda: any(texts.CANNOT_SAVE[:40] in t for t in posts_in(stand, ts)), WAIT)
            await asyncio.wait_for(stand.adapter.wait_idle(), WAIT)
        [line] = posts_in(stand, ts)  # said once, in the thread of the question
        assert "cannot save anything right now" in line and "\n" not in line
        assert stand.ollama.chat_requests == [] and await stand.services.store.runs() == []
        assert sum("cannot store request" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records)

        # The fault is gone: the next question is served as usual.
        again = await stand.say("how is the disk now?")
        await stand.answer(again, contains="Stored and answered.")
    finally:
        await stand.adapter.close()
        await impatient.close()


@pytest.mark.asyncio
async def test_slack_a_lock_held_a_moment_is_waited_out(stand: Stand, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.intake")
    stand.ollama.script(Reply(content="Served after the lock."))
    impatient = Store(stand.services.store.url, busy_timeout=0.1)
    stand.adapter = slack_adapter(stand, store=impatient)
    try:
        with locked(stand.services.store):
            ts = await stand.say("are you there?")
            await until(lambda: any("retrying" in r.getMessage() for r in caplog.records), WAIT)
        await stand.answer(ts, contains="Served after the lock.")
        assert posts_in(stand, ts) == ["Served after the lock."]  # no "cannot save" line
        [run] = await stand.services.store.runs()
        assert run.thread == ts and run.status == "answered"
    finally:
        await stand.adapter.close()
        await impatient.close()


# ---- Discord ---------------------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as fake:
        yield fake


@pytest_asyncio.fixture
async def dservices(
    tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, discord_fake: FakeDiscord
) -> AsyncIterator[Services]:
    settings = discord_settings(
        tmp_path / "ddata", fake_ollama, workspace, discord_fake,
        ORCHESTRATOR_APPROVAL_TIMEOUT=30, DISCORD_ALLOWED_USERS=str(APPROVER_ID),
    )  # fmt: skip
    svc = await build_services(settings)
    svc.gate.poll_interval = 0.05
    yield svc
    await svc.close()


def discord_running(services: Services, *, store: Store | None = None) -> AbstractAsyncContextManager[DiscordAdapter]:
    """The Discord stand's adapter with quick delivery retries and a short store-retry schedule."""
    return running(services, store=store, delivery_backoff=QUICK, store_retry_delays=STORE_RETRIES)


def bot_says(fake: FakeDiscord, channel_id: int) -> list[str]:
    return [m.content for m in fake.message_objects(channel_id) if m.author_id == BOT_USER_ID]


async def ask(fake: FakeDiscord, text: str) -> int:
    return await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> {text}")


async def until_said(fake: FakeDiscord, channel_id: int, text: str) -> None:
    await until(lambda: any(text in m for m in bot_says(fake, channel_id)), WAIT)


@pytest.mark.asyncio
async def test_discord_a_429_storm_outlasting_discord_py_still_shows_the_run(
    discord_fake: FakeDiscord, fake_ollama: FakeOllama, dservices: Services, workspace: Path
) -> None:
    marker = workspace / "stormy"
    fake_ollama.script(
        Reply(thinking="Make the file.", tool_calls=[{"name": "run_command", "arguments": {
            "command": f"touch {marker}"}}]),
        Reply(content="Created it through the storm."),
    )  # fmt: skip
    # discord.py tries each call five times itself, then gives up: each storm outlasts it.
    discord_fake.storm(["POST"], r"/channels/\d+/messages/\d+/threads", retry_after=0.02, calls=7)
    discord_fake.storm(["POST", "PATCH"], DISCORD_MESSAGES, retry_after=0.02, calls=12)
    discord_fake.storm(["PUT"], r"/channels/\d+/messages/\d+/reactions/.*", retry_after=0.02, calls=6)
    async with discord_running(dservices) as adapter:
        mid = await ask(discord_fake, "create the stormy file")
        await until_said(discord_fake, mid, "Approval needed")
        [approval] = [m for m in discord_fake.message_objects(mid) if "Approval needed" in m.content]
        await until(lambda: len(discord_fake.reactions(approval.id)) == 2, WAIT)
        await discord_fake.push_reaction(mid, approval.id, APPROVER_ID, "✅")
        await until_said(discord_fake, mid, "Created it through the storm.")
        await adapter.wait_idle()

    assert marker.exists()
    said = bot_says(discord_fake, mid)
    assert len(discord_fake.threads()) == 1  # the thread was opened once, through the storm
    [shown] = [s for s in said if "Approval needed" in s]  # posted once, then edited
    assert f"Approved by <@{APPROVER_ID}>." in shown
    assert said[0].startswith("Working on it…") and said[0].endswith("🏁 done")
    assert said[-1] == "Created it through the storm."
    assert not discord_fake.storming
    assert len([c for c in discord_fake.rest_calls if c.status == 429]) == 7 + 12 + 6  # all of the storms were met
    entries = await dservices.store.outbox_entries(platform="discord")
    assert {e.status for e in entries} <= {OutboxStatus.SENT, OutboxStatus.SUPERSEDED}
    assert max(e.attempts for e in entries) > 1  # where discord.py gave up, the outbox went on
    [run] = await dservices.store.runs()
    assert run.status == "answered"


@pytest.mark.asyncio
async def test_discord_what_one_bot_left_undelivered_the_next_delivers_once(
    discord_fake: FakeDiscord, fake_ollama: FakeOllama, dservices: Services
) -> None:
    fake_ollama.script(Reply(content="Delivered by the next bot."))
    discord_fake.storm(DISCORD_WRITES, DISCORD_MESSAGES, retry_after=0.02)
    async with discord_running(dservices):
        mid = await ask(discord_fake, "status?")
        await queued(dservices.store, "Delivered by the next bot.")
    assert bot_says(discord_fake, mid) == []  # stopped with the answer still queued
    discord_fake.end_storms()
    async with discord_running(dservices) as restarted:
        await until_said(discord_fake, mid, "Delivered by the next bot.")
        await restarted.wait_idle()
    assert bot_says(discord_fake, mid) == ["Delivered by the next bot."]
    assert len(discord_fake.calls_matching("POST", rf"/channels/{mid}/messages", status=200)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", FAULTS)
async def test_discord_a_request_the_store_cannot_take_is_answered_in_one_line(
    discord_fake: FakeDiscord, fake_ollama: FakeOllama, dservices: Services, fault: str
) -> None:
    fake_ollama.script(Reply(content="Now it works."))
    impatient = Store(dservices.store.url, busy_timeout=0.1)
    store = impatient if fault == "locked" else dservices.store
    try:
        async with discord_running(dservices, store=store) as adapter:
            async with store_fault(fault, store):
                await ask(discord_fake, "how full is the disk?")
                await until_said(discord_fake, TEXT_CHANNEL_ID, "cannot save anything right now")
                await adapter.wait_idle()
            [line] = bot_says(discord_fake, TEXT_CHANNEL_ID)
            assert line.startswith(f"<@{APPROVER_ID}> I cannot save anything right now") and "\n" not in line
            assert fake_ollama.chat_requests == [] and await dservices.store.runs() == []
            assert discord_fake.threads() == []  # nothing was started

            mid = await ask(discord_fake, "and now?")
            await until_said(discord_fake, mid, "Now it works.")
            await adapter.wait_idle()
    finally:
        await impatient.close()


# ---- the pieces ------------------------------------------------------------------------------------------
class FlakySink:
    """A platform that refuses the first `failures` posts and edits (a stand-in, as the fakes are)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.shown: list[str] = []

    async def post(self, text: str) -> str:
        self._maybe_fail()
        self.shown.append(text)
        return "m1"

    async def edit(self, message_id: str, text: str) -> None:
        self._maybe_fail()
        self.shown.append(text)

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("refused")


@pytest.mark.asyncio
async def test_the_progress_view_survives_errors_and_shows_the_newest_text() -> None:
    sink = FlakySink(failures=3)
    view = ProgressView(sink, "C1", retry_delay=0.01)
    view.add(ToolCall(run_id=1, call_id="a", tool="disk_usage", args={}))
    await until(lambda: sink.shown, WAIT)  # it failed three times, then posted
    view.add(Answer(run_id=1, text="done"))
    await asyncio.wait_for(view.finish(), WAIT)
    assert sink.shown[-1].endswith("🏁 done") and sink.failures == 0


class NoPlatform:
    """A transport that records deliveries (the outbox's own behaviour, without a network)."""

    platform = "test"

    def __init__(self) -> None:
        self.delivered: list[Delivery] = []

    async def deliver(self, item: Delivery) -> str:
        self.delivered.append(item)
        return f"ref{len(self.delivered)}"

    def notice(self, item: Delivery, reason: str) -> Payload | None:
        return None


@pytest.mark.asyncio
async def test_the_outbox_queues_a_key_once_and_coalesces_edits(services: Services) -> None:
    transport = NoPlatform()
    outbox = Outbox(services.store, transport, backoff=QUICK, ready=asyncio.Event())  # not ready: it queues
    first = await outbox.post("C", "T", {"text": "v0"}, key="k")
    assert await outbox.post("C", "T", {"text": "again"}, key="k") == first  # the same key: queued once
    for n in range(1, 5):
        await outbox.edit("C", "T", first, {"text": f"v{n}"})
    assert outbox.ready is not None
    outbox.ready.set()
    [ref] = await asyncio.wait_for(outbox.sent([first]), WAIT)
    await asyncio.wait_for(outbox.drained("C", "T"), WAIT)
    assert [(d.kind, d.payload["text"]) for d in transport.delivered] == [("post", "v0"), ("update", "v4")]
    assert transport.delivered[1].target_ref == ref == "ref1"
    statuses = [e.status for e in await services.store.outbox_entries(platform="test")]
    assert statuses == ["sent", "superseded", "superseded", "superseded", "sent"]
    await outbox.close()
