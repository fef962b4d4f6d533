"""The Discord adapter: mentions and DMs in, a thread with the agent's steps out.

A mention in a channel gets 👀 on the message and a public thread opened on it; the run
is shown in that thread, and whatever is said there later continues the conversation
without a mention (the thread id keys the history). In a DM the bot answers inline.
Every run is a named background task, so a slow one never holds up other conversations.

Error boundaries: discord.py already runs each gateway event in its own task and sends
failures to `on_error` (logged here with the traceback); each run has its own boundary
that logs and posts one readable line; and each event of a run is rendered on its own,
so a failed post does not stop the run (every step is in the store anyway).
`CancelledError` always passes through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import discord
import discord.http

from adapters import texts
from adapters.progress import Pacer, split_message
from core.access import Admit, Asker, Gatekeeper
from core.approval import ApprovalGate
from core.events import Event, Report, Request
from core.store import Store
from core.store.models import Approval

from . import messages as m
from .api import MAX_FILES, DiscordApi, read_upload
from .approvals import ReactionDecider
from .config import DiscordConfig, DiscordSetupError, intents, invite_url
from .payloads import PLATFORM, Incoming, normalise, to_request
from .thread import ThreadRun

log = logging.getLogger(__name__)

# Message.create_thread gives a public thread whose id is the message's (the channel's own
# create_thread would make a private one); it archives itself after a day of silence.
THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440
THREAD_ALREADY_EXISTS = 160004  # Discord's error code when a message has a thread already


class AgentRunner(Protocol):
    """What the adapter needs from `core.agent.Agent`."""

    def run(self, request: Request) -> AsyncIterator[Event]: ...


class _Client(discord.Client):
    """discord.py's client with our handlers; it holds no state of its own."""

    def __init__(self, adapter: DiscordAdapter, config: DiscordConfig) -> None:
        super().__init__(
            intents=intents(),
            guild_ready_timeout=config.guild_ready_timeout,
            max_messages=config.max_messages,
            allowed_mentions=discord.AllowedMentions.none(),
            # Approvals need only the member that comes with each reaction; requesting every
            # member of every server at start-up would slow connecting on large servers.
            chunk_guilds_at_startup=False,
        )
        self.adapter = adapter

    async def on_ready(self) -> None:
        await self.adapter.on_ready()

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.on_message(message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.adapter.on_raw_reaction_add(payload)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("Discord event %s failed; the bot carries on", event_method)


class DiscordAdapter:
    platform = PLATFORM
    posts_without_serving = False  # posting needs the gateway session (`orchestrator report --post` serves briefly)

    def __init__(
        self,
        config: DiscordConfig,
        *,
        agent: AgentRunner,
        gate: ApprovalGate,
        store: Store,
        access: Gatekeeper | None = None,
    ) -> None:
        self.config = config
        self.agent = agent
        self.store = store
        #: Who may ask, judged per message before anything runs (built from the config by default).
        self.access = access or Gatekeeper(store, config.access_rules())
        self.client = _Client(self, config)
        self.pacer = Pacer(config.pace_ops, config.pace_window + config.pace_margin)
        self.api = DiscordApi(self.client, self.pacer)
        self.decider = ReactionDecider(self.api, gate, store, config)
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._expired: list[Approval] = []  # announced once connected

    # ---- ChatAdapter ---------------------------------------------------------------
    async def serve(self) -> None:
        """Connect and handle events until cancelled; discord.py reconnects by itself after a drop."""
        problems = self.config.problems()
        if problems:
            raise DiscordSetupError("; ".join(problems))
        if not self.config.approvers and not self.config.approver_roles:
            log.warning("no DISCORD_APPROVERS or DISCORD_APPROVER_ROLES: every risky action will expire unapproved")
        _use_rest_url(self.config.api_url)
        try:
            await self.client.start(self.config.token)
        except discord.PrivilegedIntentsRequired as exc:
            raise DiscordSetupError(
                "Discord refused the connection: turn on MESSAGE CONTENT INTENT and SERVER MEMBERS INTENT "
                "under Developer Portal → your application → Bot → Privileged Gateway Intents"
            ) from exc
        except discord.LoginFailure as exc:
            raise DiscordSetupError(
                "Discord rejected DISCORD_TOKEN: reset the token under Developer Portal → Bot and set it again"
            ) from exc
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the runs in flight and disconnect (safe to call twice)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.client.is_closed():
            await self.client.close()

    async def post_report(self, channel: str, report: Report) -> str:
        await self._wait_ready()
        text = f"**{report.title}**\n{report.text}" if report.title else report.text
        uploads = [await read_upload(a.path) for a in report.attachments]
        target = int(channel)
        parts = split_message(text, m.LIMIT) if text else []
        if not parts and not uploads:
            return ""  # Discord refuses an empty message
        first = await self.api.send(target, parts[0] if parts else "", files=uploads[:MAX_FILES])
        for part in parts[1:]:
            await self.api.send(target, part)
        for start in range(MAX_FILES, len(uploads), MAX_FILES):
            await self.api.send(target, "", files=uploads[start : start + MAX_FILES])
        return str(first)

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        """In Discord a thread is a channel of its own. `thread` may also be the id of a message in
        `channel` with no thread yet (a report just posted): the thread is opened on it."""
        await self._wait_ready()
        target = await self._thread_for(channel, thread, name=text)
        ids = [await self.api.send(target, part) for part in split_message(text, m.LIMIT)]
        return str(ids[0])

    async def run_request(self, request: Request) -> list[Event]:
        """A run no chat message started (an incident from a scheduled check), shown like a conversation.

        `request.thread` is a thread id, or the id of a message in `request.channel` (what
        `post_report` returns): a thread is opened on that message, and since Discord gives
        the thread the message's id, the conversation key does not change. Without a thread
        the run is shown in the channel itself.
        """
        await self._wait_ready()
        target = await self._thread_for(request.channel, request.thread, name=request.text)
        run = ThreadRun(self.api, self.store, self.config, target=target, thread=request.thread)
        events: list[Event] = []
        try:
            async with _closing(self.agent.run(request)) as stream:
                async for ev in stream:
                    events.append(ev)
                    await self._render(run, ev)
        finally:
            await run.close()
        return events

    async def announce_expired(self, approvals: Sequence[Approval]) -> None:
        """Called before `serve()` at start-up: the notices wait for the connection."""
        if not self.ready.is_set():
            self._expired.extend(approvals)
            return
        for row in approvals:
            text = texts.EXPIRED_ON_RESTART.format(id=row.id, summary=row.summary)
            try:
                await self.post_in_thread(row.channel, row.thread, text)
            except discord.HTTPException as exc:  # the thread may be gone; the row says expired anyway
                log.warning("cannot announce expired approval #%s in %s: %s", row.id, row.thread or row.channel, exc)

    # ---- gateway events --------------------------------------------------------------
    async def on_ready(self) -> None:
        me = self.client.user
        guilds = self.client.guilds
        log.info("Discord: connected as %s (id %s) to %d server(s)", me, me.id if me else "?", len(guilds))
        if not guilds and self.client.application_id is not None:
            log.warning("the bot is in no server yet; invite it with %s", invite_url(self.client.application_id))
        self.ready.set()
        expired, self._expired = self._expired, []
        if expired:
            await self.announce_expired(expired)

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None:
            return
        channel: object = message.channel
        if message.guild is not None and isinstance(channel, discord.PartialMessageable) and not message.author.bot:
            # Not cached: typically a thread that archived itself and is woken up by this very message.
            channel = await self._channel(channel.id)
        incoming = normalise(message, me, channel=channel)
        if incoming is None or not incoming.for_bot:
            return
        # A message handled once, even if the gateway delivers it again or another process sees it.
        if not await self.store.first_time(f"{PLATFORM}:message:{message.id}"):
            return
        self._spawn(self._conversation(message, incoming), name=f"discord-run-{message.channel.id}-{message.id}")

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self._from_a_bot(payload):
            return
        await self.decider.handle(payload)

    # ---- one conversation turn -----------------------------------------------------------
    async def _conversation(self, message: discord.Message, incoming: Incoming) -> None:
        target = incoming.channel_id  # where to say something went wrong, until there is a thread
        working = self.config.working_reaction
        try:
            asker = Asker(
                PLATFORM, str(incoming.user_id), channel=str(incoming.parent_id), is_dm=incoming.is_dm,
                user_name=incoming.user_name,
            )  # fmt: skip
            if not await self._admitted(message, incoming, asker):
                return
            if not incoming.text:  # just a mention: say how to ask
                me = self.client.user.id if self.client.user else ""
                await self.api.send(incoming.channel_id, m.HELP.format(bot=me))
                return
            if self.access.busy(asker):  # it waits for a turn: say so rather than look ignored
                await self._tell(incoming, texts.QUEUED)
            async with self.access.turn(asker):
                # Cosmetic: a server that forbids reactions still gets its answer.
                await self._quietly(self.api.react(incoming.channel_id, incoming.message_id, working), "adding 👀")
                target, thread_id = await self._open_thread(message, incoming)
                run = ThreadRun(self.api, self.store, self.config, target=target, thread=str(thread_id or ""))
                try:
                    # A cancelled or failed turn closes the agent's generator at once, so its clean-up
                    # (the conversation's lock) runs now, not whenever the generator is collected.
                    async with _closing(self.agent.run(to_request(incoming, thread_id=thread_id))) as events:
                        async for ev in events:
                            await self._render(run, ev)
                finally:
                    await run.close()
        except asyncio.CancelledError:
            raise  # shutting down: no more calls to Discord
        except Exception as exc:
            log.exception("Discord conversation on message %s failed", incoming.message_id)
            await self._say_failed(target, exc)
        if incoming.text:
            await self._quietly(self.api.unreact(incoming.channel_id, incoming.message_id, working), "removing 👀")

    async def _admitted(self, message: discord.Message, incoming: Incoming, asker: Asker) -> bool:
        """Every message is judged by its author, also in a thread someone allowed started. A refused
        one runs nothing and is answered at most once an hour per person."""
        # In a server the message carries the author's roles; a DM carries none, so a role held in
        # any server shared with the bot counts (looked up only when ids did not decide).
        held = [str(r.id) for r in getattr(message.author, "roles", ())]
        roles = (lambda: self._roles_anywhere(incoming.user_id)) if incoming.is_dm else held
        decision = await self.access.decide(asker, roles=roles)
        if isinstance(decision, Admit):
            return True
        log.info("Discord: %s in %s not admitted (%s)", asker.user_id, asker.channel, texts.access_outcome(decision))
        reply = texts.access_reply(decision, asker)
        if reply:
            await self._tell(incoming, reply)
        return False

    async def _tell(self, incoming: Incoming, text: str) -> None:
        """A word for the author, where they wrote (Discord has no message only they would see)."""
        line = text if incoming.is_dm else f"<@{incoming.user_id}> {text}"
        await self.api.send(incoming.channel_id, line, notify=[incoming.user_id])

    async def _roles_anywhere(self, user_id: int) -> list[str]:
        roles: list[str] = []
        for guild in self.client.guilds:
            member = guild.get_member(user_id)
            if member is None:
                try:
                    member = await guild.fetch_member(user_id)
                except discord.HTTPException:  # not a member there
                    continue
            roles.extend(str(r.id) for r in member.roles)
        return roles

    async def _open_thread(self, message: discord.Message, incoming: Incoming) -> tuple[int, int | None]:
        """(where to post, the conversation's thread id). A thread already exists in a DM (none) or a thread."""
        if incoming.is_dm:
            return incoming.channel_id, None
        if incoming.thread_id is not None:
            return incoming.thread_id, incoming.thread_id
        name = m.thread_name(incoming.text, fallback=f"question from {incoming.user_name}")
        thread = await message.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        return thread.id, thread.id

    async def _thread_for(self, channel: str, thread: str, *, name: str) -> int:
        """Where the application's posts and runs go: the thread, opened on the message `thread`
        names if it has none yet; the channel itself when there is no thread to be had."""
        if not thread:
            return int(channel)
        thread_id = int(thread)
        if isinstance(await self._channel(thread_id), discord.Thread | discord.DMChannel):
            return thread_id
        parent = await self._channel(int(channel))
        if not isinstance(parent, discord.TextChannel):
            return int(channel)  # no threads here (a DM, say): post inline
        message = parent.get_partial_message(thread_id)
        try:
            # Named after the message it hangs on (a report's title), not after the first reply.
            name = (await message.fetch()).content.splitlines()[0].strip("*_ ") or name
        except (discord.HTTPException, IndexError):
            pass
        try:
            opened = await message.create_thread(
                name=m.thread_name(name, fallback="incident"), auto_archive_duration=THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_EXISTS:  # opened meanwhile by another post; same id
                return thread_id
            raise
        return opened.id

    async def _channel(self, channel_id: int) -> object:
        """A channel from the cache, or from Discord (threads of a previous run may not be cached)."""
        channel = self.client.get_channel(channel_id)
        if channel is not None:
            return channel
        try:
            return await self.client.fetch_channel(channel_id)
        except (discord.NotFound, discord.Forbidden):
            return None  # the id of a message, or a channel the bot may not see

    async def _render(self, run: ThreadRun, ev: Event) -> None:
        try:
            await run.render(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The run goes on (an approval may still be decided); the store has the step in full.
            log.exception("showing %s in %s failed", type(ev).__name__, run.target)
            await self._say_failed(run.target, exc)

    async def _say_failed(self, channel_id: int, exc: Exception) -> None:
        kind = f"{type(exc).__name__}: {exc}" if isinstance(exc, discord.HTTPException) else type(exc).__name__
        line = m.failure_line(m.INTERNAL_ERROR.format(kind=kind))
        await self._quietly(self.api.send(channel_id, line), "posting a failure line")

    # ---- plumbing ----------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)  # a strong reference, or the task may be garbage-collected mid-run
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait for the runs in flight (tests, benchmarks and a graceful stop use it)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _from_a_bot(self, payload: discord.RawReactionActionEvent) -> bool:
        """Our own ✅ / ❌ come back as events, and other bots' reactions never decide anything."""
        if self.client.user is not None and payload.user_id == self.client.user.id:
            return True
        if payload.member is not None:
            return payload.member.bot
        user = self.client.get_user(payload.user_id)
        return user is not None and user.bot

    async def _wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), self.config.ready_timeout)
        except TimeoutError:
            raise DiscordSetupError(
                f"not connected to Discord after {self.config.ready_timeout:g} s; is `serve()` running?"
            ) from None

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, object], what: str) -> None:
        """Best effort, for calls that must never fail a run (a reaction, a failure notice)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("Discord: %s failed: %s", what, exc)


@asynccontextmanager
async def _closing(stream: AsyncIterator[Event]) -> AsyncIterator[AsyncIterator[Event]]:
    """`contextlib.aclosing` for what the agent returns (typed as an iterator, built as a generator)."""
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


def _use_rest_url(api_url: str) -> None:
    """discord.py reads the REST base from a class attribute, so it is process-wide; there is one
    Discord bot per process, and an unchanged URL (the default) leaves it alone."""
    base = api_url.rstrip("/")
    if base and base != discord.http.Route.BASE:
        log.info("Discord REST calls go to %s", base)
        discord.http.Route.BASE = base
