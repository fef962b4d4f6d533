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

Nothing is lost on the way: a message the store cannot take (locked, disk full) is retried
a few times (`adapters.intake`), then answered with one line saying so; everything the bot
posts goes through the outbox (`adapters.outbox`), so a 429 storm that outlasts
discord.py's own five tries delays a post but never drops it, also across a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import aiohttp
import discord
import discord.http

from adapters import texts
from adapters.intake import Intake, StoreUnavailable
from adapters.outbox import Outbox, until_done
from adapters.progress import Pacer, split_message
from adapters.thread_run import ThreadRun
from core.access import Admit, Asker, Gatekeeper
from core.approval import ApprovalGate
from core.errors import ServiceUnavailable
from core.events import Event, Partial, Report, Request
from core.store import Store
from core.store.db import is_unavailable
from core.store.models import Approval
from core.vision import MAX_IMAGE_BYTES

from . import messages as m
from .api import MAX_FILES, DiscordApi, DiscordDelivery, as_files, read_upload
from .approvals import ApprovalReactions
from .config import DiscordConfig, DiscordSetupError, intents, invite_url
from .payloads import PLATFORM, Incoming, normalise, to_request
from .thread import DiscordThread

log = logging.getLogger(__name__)

# Message.create_thread gives a public thread whose id is the message's (the channel's own
# create_thread would make a private one); it archives itself after a day of silence.
THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440
THREAD_ALREADY_EXISTS = 160004  # Discord's error code when a message has a thread already
#: How long a claimed outbox entry is this process's: discord.py's own five 429 retries fit in it.
DELIVERY_LEASE = 300.0


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
    """Discord for the agent: discord.py's gateway in, a thread opened on each mention (DMs
    answered inline), the run shown in it, and approvals by reaction.

    `serve()` until `close()`; the client reconnects by itself after a gateway drop. Each message's
    author is judged by the `Gatekeeper`, the run is shown through `ThreadRun` over
    `DiscordThread`, and every post goes through the `Outbox`, paced per channel. The application
    posts reports and incident lines with `post_report` and `post_in_thread`.
    """

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
        self.ready = asyncio.Event()
        self.delivery = DiscordDelivery(self.api)
        #: Every post, edit and reaction: kept in the store until Discord has it (sent once connected).
        self.outbox = Outbox(
            store, self.delivery, backoff=config.delivery_backoff, lease=DELIVERY_LEASE, ready=self.ready
        )
        self.intake = Intake(store, delays=config.store_retry_delays)
        self.decider = ApprovalReactions(self.api, gate, store, config, outbox=self.outbox)
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
        except (aiohttp.ClientError, OSError) as exc:  # the login; after it discord.py reconnects by itself
            raise ServiceUnavailable(
                f"cannot reach Discord at {discord.http.Route.BASE} ({exc}); check the network or proxy, "
                "and DISCORD_API_URL"
            ) from exc
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the runs in flight and the deliveries (what is left stays in the outbox for the next
        start), and disconnect (safe to call twice)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbox.close()
        if not self.client.is_closed():
            await self.client.close()

    async def post_report(self, channel: str, report: Report) -> str:
        """Queue the report and wait until Discord has all of it (through a 429 storm, however long);
        returns the id of its first message. `DeliveryFailed` when Discord refused it for good."""
        await self._wait_ready()
        text = f"**{report.title}**\n{report.text}" if report.title else report.text
        uploads = [await read_upload(a.path) for a in report.attachments]
        parts = split_message(text, m.LIMIT) if text else []
        if not parts and not uploads:
            return ""  # Discord refuses an empty message
        payloads = [{"text": parts[0] if parts else "", "files": as_files(uploads[:MAX_FILES])}]
        payloads += [{"text": part} for part in parts[1:]]
        payloads += [{"files": as_files(uploads[i : i + MAX_FILES])} for i in range(MAX_FILES, len(uploads), MAX_FILES)]
        keys = [await self.outbox.post(channel, "", payload) for payload in payloads]
        return (await self.outbox.sent(keys))[0]

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        """In Discord a thread is a channel of its own. `thread` may also be the id of a message in
        `channel` with no thread yet (a report just posted): the thread is opened on it. Waits until
        Discord has the text; returns the id of its first part."""
        await self._wait_ready()
        keys = await self._queue_in_thread(channel, thread, text)
        return (await self.outbox.sent(keys))[0]

    async def _queue_in_thread(self, channel: str, thread: str, text: str, *, key: str = "") -> list[str]:
        lane = str(await self._thread_for(channel, thread, name=text))
        parts = split_message(text, m.LIMIT)
        return [
            await self.outbox.post(lane, "", {"text": part}, key=f"{key}:{n}" if key else "")
            for n, part in enumerate(parts)
        ]

    async def run_request(self, request: Request) -> list[Event]:
        """A run no chat message started (an incident from a scheduled check), shown like a conversation.

        `request.thread` is a thread id, or the id of a message in `request.channel` (what
        `post_report` returns): a thread is opened on that message, and since Discord gives
        the thread the message's id, the conversation key does not change. Without a thread
        the run is shown in the channel itself.
        """
        await self._wait_ready()
        target = await self._thread_for(request.channel, request.thread, name=request.text)
        place = DiscordThread(self.outbox, self.config, target=target, thread=request.thread)
        run = ThreadRun(place)
        events: list[Event] = []
        try:
            async with _closing(self.agent.run(request)) as stream:
                async for ev in stream:
                    if not isinstance(ev, Partial):  # the run's steps; its live pieces are only shown
                        events.append(ev)
                    await self._render(run, place, ev)
        finally:
            await run.close()
        await self.outbox.drained(place.lane, "")  # returns once what the run showed has reached Discord
        return events

    async def announce_expired(self, approvals: Sequence[Approval]) -> None:
        """Called before `serve()` at start-up: the notices wait for the connection."""
        if not self.ready.is_set():
            self._expired.extend(approvals)
            return
        keys: list[str] = []
        for row in approvals:
            text = texts.EXPIRED_ON_RESTART.format(id=row.id, summary=row.summary)
            try:
                keys += await self._queue_in_thread(row.channel, row.thread, text, key=f"{PLATFORM}:expired:{row.id}")
            except discord.HTTPException as exc:  # the thread may be gone; the row says expired anyway
                log.warning("cannot announce expired approval #%s in %s: %s", row.id, row.thread or row.channel, exc)
        await self.outbox.attempted(keys)  # tried once; a 429 storm does not hold up the start

    # ---- gateway events --------------------------------------------------------------
    async def on_ready(self) -> None:
        me = self.client.user
        guilds = self.client.guilds
        log.info("Discord: connected as %s (id %s) to %d server(s)", me, me.id if me else "?", len(guilds))
        if not guilds and self.client.application_id is not None:
            log.warning("the bot is in no server yet; invite it with %s", invite_url(self.client.application_id))
        self.ready.set()
        try:
            await self.outbox.start()  # what a previous process left undelivered goes out first
        except Exception as exc:
            log.warning("Discord: cannot look for undelivered posts now (%s); the outbox will look again", exc)
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
        # A message handled once, even if the gateway delivers it again or another process sees it:
        # in memory at once, then in the store (`_conversation`).
        key = f"{PLATFORM}:message:{message.id}"
        if not self.intake.first_sight(key):
            return
        self._spawn(self._conversation(message, incoming, key), name=f"discord-run-{message.channel.id}-{message.id}")

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self._from_a_bot(payload):
            return
        await self.decider.handle(payload)

    # ---- one conversation turn -----------------------------------------------------------
    async def _conversation(self, message: discord.Message, incoming: Incoming, key: str) -> None:
        target = incoming.channel_id  # where to say something went wrong, until there is a thread
        working = self.config.working_reaction
        try:
            try:
                if not await self.intake.claim(key):
                    return  # another process, or an earlier delivery, has it
            except StoreUnavailable:  # the gateway delivered it: say so rather than drop it
                await self._tell(incoming, texts.CANNOT_SAVE)
                return
            asker = Asker(
                PLATFORM, str(incoming.user_id), channel=str(incoming.parent_id), is_dm=incoming.is_dm,
                user_name=incoming.user_name,
            )  # fmt: skip
            if not await self._admitted(message, incoming, asker):
                return
            if not incoming.text and not incoming.attachments:  # just a mention: say how to ask
                me = self.client.user.id if self.client.user else ""
                await self.outbox.post(str(incoming.channel_id), "", {"text": m.HELP.format(bot=me)})
                return
            if self.access.busy(asker):  # it waits for a turn: say so rather than look ignored
                await self._tell(incoming, texts.QUEUED)
            async with self.access.turn(asker):
                # Cosmetic: a server that forbids reactions still gets its answer.
                await self._quietly(self.api.react(incoming.channel_id, incoming.message_id, working), "adding 👀")
                target, thread_id = await self._open_thread(message, incoming)
                place = DiscordThread(self.outbox, self.config, target=target, thread=str(thread_id or ""))
                run = ThreadRun(place)
                try:
                    # A cancelled or failed turn closes the agent's generator at once, so its clean-up
                    # (the conversation's lock) runs now, not whenever the generator is collected.
                    incoming = await self._with_images(message, incoming)
                    async with _closing(self.agent.run(to_request(incoming, thread_id=thread_id))) as events:
                        async for ev in events:
                            await self._render(run, place, ev)
                finally:
                    await run.close()
        except asyncio.CancelledError:
            raise  # shutting down: no more calls to Discord
        except Exception as exc:
            log.exception("Discord conversation on message %s failed", incoming.message_id)
            await self._say_failed(target, exc)
        if incoming.text:
            await self._quietly(self.api.unreact(incoming.channel_id, incoming.message_id, working), "removing 👀")

    async def _with_images(self, message: discord.Message, incoming: Incoming) -> Incoming:
        """The attached images' bytes, for the vision model (when one is configured), within its cap."""
        if not self.config.fetch_images or not any(f.is_image for f in incoming.attachments):
            return incoming
        files = []
        for attachment, file in zip(message.attachments, incoming.attachments, strict=False):
            if file.is_image and file.size <= MAX_IMAGE_BYTES:
                try:
                    file = dataclasses.replace(file, data=await attachment.read())
                except (discord.HTTPException, aiohttp.ClientError) as exc:
                    log.warning("could not fetch the attachment %s: %s", file.name, exc)
            files.append(file)
        return dataclasses.replace(incoming, attachments=tuple(files))

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
        await self.outbox.post(str(incoming.channel_id), "", {"text": line, "notify": [incoming.user_id]})

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
        thread_id = await self._create_thread(
            lambda: message.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES),
            parent=incoming.channel_id, message_id=message.id,
        )  # fmt: skip
        return thread_id, thread_id

    async def _create_thread(
        self, create: Callable[[], Awaitable[discord.Thread]], *, parent: int, message_id: int
    ) -> int:
        """Open a thread on a message, through 429s and 5xx for as long as it takes (the run has
        nowhere to go without it). A thread opened meanwhile (a retry whose first try went through,
        or another post) is the one: Discord gives it the message's id."""
        try:
            thread = await until_done(
                create, sort=lambda exc: self._sorted(str(parent), exc), backoff=self.config.delivery_backoff,
                what=f"opening a thread on message {message_id}",
            )  # fmt: skip
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_EXISTS:
                return message_id
            raise
        return thread.id

    def _sorted(self, channel: str, exc: Exception) -> Exception | None:
        return self.delivery.sorted(channel, exc) if isinstance(exc, discord.HTTPException) else None

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
        title = m.thread_name(name, fallback="incident")
        return await self._create_thread(
            lambda: message.create_thread(name=title, auto_archive_duration=THREAD_ARCHIVE_MINUTES),
            parent=int(channel), message_id=thread_id,
        )  # fmt: skip

    async def _channel(self, channel_id: int) -> object:
        """A channel from the cache, or from Discord (threads of a previous run may not be cached)."""
        channel = self.client.get_channel(channel_id)
        if channel is not None:
            return channel
        try:
            return await self.client.fetch_channel(channel_id)
        except (discord.NotFound, discord.Forbidden):
            return None  # the id of a message, or a channel the bot may not see

    async def _render(self, run: ThreadRun, place: DiscordThread, ev: Event) -> None:
        try:
            await run.render(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The run goes on (an approval may still be decided); the store has the step in full.
            log.exception("showing %s in %s failed", type(ev).__name__, place.target)
            await self._say_failed(place.target, exc)

    async def _say_failed(self, channel_id: int, exc: Exception) -> None:
        if is_unavailable(exc):  # the store refused a write: say so, not "internal error"
            line = texts.CANNOT_SAVE
        else:
            kind = f"{type(exc).__name__}: {exc}" if isinstance(exc, discord.HTTPException) else type(exc).__name__
            line = m.failure_line(m.INTERNAL_ERROR.format(kind=kind))
        await self._quietly(self.outbox.post(str(channel_id), "", {"text": line}), "posting a failure line")

    # ---- plumbing ----------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)  # a strong reference, or the task may be garbage-collected mid-run
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait for the runs in flight and their deliveries (tests, benchmarks and a graceful stop use it)."""
        while True:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self.outbox.wait_idle()
            if not self._tasks:
                return

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
