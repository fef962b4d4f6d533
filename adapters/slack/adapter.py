"""The Slack adapter: bolt's `AsyncApp` in, core `Request`s to the agent, events rendered back.

Bolt acknowledges each event before our listener runs (Slack wants an answer within
3 s); the listener only filters and de-duplicates, then starts a named background
task per run. Each listener and each run has its own error boundary (`on_error`), so
one failure never touches another conversation; `CancelledError` always passes.

Since Slack was already acknowledged, a request is never dropped silently: one the store
cannot take (locked, disk full) is retried a few times (`adapters.intake`), then answered
with one line saying so. Everything the bot posts goes through the outbox
(`adapters.outbox`): in order per thread, through 429 storms, and across restarts.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientError, web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError

from adapters import texts
from adapters.intake import Intake, StoreUnavailable
from adapters.outbox import Outbox
from adapters.progress import split_message
from adapters.thread_run import ThreadRun
from core.access import Admit, Asker, Gatekeeper
from core.approval import ApprovalGate
from core.errors import AdapterSetupError
from core.events import Event, InputFile, Partial, Report, Request
from core.store import Store
from core.store.db import is_unavailable
from core.store.models import Approval
from core.vision import MAX_IMAGE_BYTES

from . import messages as m
from .api import Identity, SlackApi, SlackDelivery, make_client, read_bytes
from .approvals import ApprovalReactions
from .config import Mode, SlackConfig
from .payloads import PLATFORM, Incoming, as_message, as_reaction, from_a_bot, normalise, to_request
from .stream import Recipient, StreamSupport
from .thread import ANSWER_LIMIT, SlackThread

log = logging.getLogger(__name__)

RUN_TASK = "slack-run-"  # task name prefix of agent runs


class AgentRunner(Protocol):
    def run(self, request: Request) -> AsyncIterator[Event]: ...


@asynccontextmanager
async def _closing(stream: AsyncIterator[Event]) -> AsyncIterator[AsyncIterator[Event]]:
    """`contextlib.aclosing` for anything that is an async generator underneath."""
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


class _DropTokenWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


@contextmanager
def _quiet_token_warning() -> Iterator[None]:
    """AsyncApp reads SLACK_BOT_TOKEN from the environment even when given a client, then
    warns that the token is unused: true, and nothing an operator should act on."""
    bolt_log, drop = logging.getLogger("slack_bolt.AsyncApp"), _DropTokenWarning()
    bolt_log.addFilter(drop)
    try:
        yield
    finally:
        bolt_log.removeFilter(drop)


class SlackSetupError(AdapterSetupError):
    """Slack refused to connect; the message says which setting to fix."""


class SlackAdapter:
    """Slack for the agent: bolt's `AsyncApp` in (Socket Mode, or HTTP with signed requests), one
    run per message that is for the bot, shown in its thread, and approvals by reaction.

    `serve()` until `close()`. Each message is claimed once in the store (Slack redelivers), its
    author is judged by the `Gatekeeper`, and the run is shown through `ThreadRun` over
    `SlackThread`; every post goes through the `Outbox`, so a 429 or a restart loses nothing.
    The application posts reports and incident lines with `post_report` and `post_in_thread`.
    """

    platform = PLATFORM

    def __init__(
        self,
        config: SlackConfig,
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
        self.api = SlackApi(make_client(config), pace=config.pace, sender=make_client(config, max_retries=0))
        #: Every post, edit, reaction and upload: kept in the store until Slack has it.
        self.outbox = Outbox(store, SlackDelivery(self.api), backoff=config.delivery_backoff)
        self.intake = Intake(store, delays=config.store_retry_delays)
        #: Where Slack refused its agent stream or the assistant status (remembered while the process lives).
        self.streams = StreamSupport(enabled=config.streaming)
        self.decider = ApprovalReactions(self.api, gate, store, config, outbox=self.outbox, intake=self.intake)
        # `client` carries the token, base URL and retry handlers. The verification
        # middleware checks HTTP requests and lets Socket Mode envelopes through.
        with _quiet_token_warning():
            self.app = AsyncApp(client=self.api.client, signing_secret=config.signing_secret)
        self.app.event("app_mention")(self._on_message)
        self.app.event("message")(self._on_message)
        self.app.event("reaction_added")(self._on_reaction)
        self.events_handled = 0  # events fully dispatched (ignored, or their work started)
        self.http_port: int | None = None  # the bound port once serving in HTTP mode
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- serving -------------------------------------------------------------------
    async def serve(self) -> None:
        problems = self.config.problems()
        if problems:
            raise SlackSetupError("; ".join(problems))
        if not self.config.approvers and not self.config.approver_groups:
            log.warning("no SLACK_APPROVERS or SLACK_APPROVER_GROUPS: every risky action will expire unapproved")
        try:
            identity = await self.api.identity()
        except SlackApiError as exc:
            raise SlackSetupError(
                f"SLACK_BOT_TOKEN was refused by {self.config.api_url} ({exc.response.get('error')}); "
                "copy the Bot User OAuth Token (xoxb-…) again and reinstall the app if scopes changed"
            ) from exc
        except (ClientError, OSError) as exc:
            raise SlackSetupError(
                f"cannot reach Slack at {self.config.api_url} ({type(exc).__name__}: {exc}); "
                "check the network or proxy, and SLACK_API_URL"
            ) from exc
        try:
            await self.outbox.start()  # what a previous process left undelivered goes out first
            if self.config.mode is Mode.SOCKET:
                await self._serve_socket(identity)
            else:
                await self._serve_http(identity)
        finally:
            await self.close()

    async def _serve_socket(self, identity: Identity) -> None:
        handler = AsyncSocketModeHandler(self.app, self.config.app_token, web_client=self.api.client)
        try:
            # Asking for the URL ourselves turns a bad app token into a clear error instead
            # of the SDK's endless reconnect loop; the handler then uses this URL.
            opened = await self.api.client.apps_connections_open(app_token=self.config.app_token)
        except SlackApiError as exc:
            await handler.close_async()  # type: ignore[no-untyped-call]  # bolt leaves these unannotated
            raise SlackSetupError(
                f"SLACK_APP_TOKEN was refused ({exc.response.get('error')}); create an app-level token "
                "with the connections:write scope and enable Socket Mode"
            ) from exc
        handler.client.wss_uri = str(opened["url"])
        try:
            await handler.connect_async()  # type: ignore[no-untyped-call]
            self._log_connected(identity, "Socket Mode")
            await asyncio.Event().wait()  # until cancelled
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]

    async def _serve_http(self, identity: Identity) -> None:
        server = AsyncSlackAppServer(
            port=self.config.http_port, path=self.config.http_path, app=self.app, host=self.config.http_host
        )
        runner = web.AppRunner(server.web_app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.http_host, self.config.http_port)
            await site.start()
            self.http_port = int(runner.addresses[0][1])
            where = f"HTTP mode on http://{self.config.http_host}:{self.http_port}{self.config.http_path}"
            self._log_connected(identity, where)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    def _log_connected(self, identity: Identity, how: str) -> None:
        log.info(
            "Slack: connected to workspace %s (%s) as @%s (%s), %s",
            identity.team,
            identity.team_id,
            identity.user,
            identity.user_id,
            how,
        )

    async def close(self) -> None:
        """Stop the runs in flight (their pending approvals expire on the next start) and the
        deliveries (what is left stays in the outbox for the next start). Safe to call twice."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.outbox.close()

    async def wait_idle(self, *, runs: bool = True) -> None:
        """Until the work started so far has finished and been delivered (tests, the bench);
        `runs=False` skips agent runs, which may be waiting for an approval."""
        while True:
            pending = [t for t in self._tasks if runs or not t.get_name().startswith(RUN_TASK)]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                continue
            await self.outbox.wait_idle()
            if not [t for t in self._tasks if runs or not t.get_name().startswith(RUN_TASK)]:
                return

    # ---- listeners (bolt has already acknowledged) --------------------------------------
    async def _with_images(self, msg: Incoming) -> Incoming:
        """The attached images' bytes, for the vision model (when one is configured), within its cap.

        The bot token goes only to Slack's file host (or the host of SLACK_API_URL, a proxy or a
        stand-in): a file URL naming any other host is not fetched, so the token cannot leak."""
        if not self.config.fetch_images or not any(f.is_image for f in msg.attachments):
            return msg
        hosts = {"files.slack.com", urlsplit(self.config.api_url).hostname}
        files = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for file in msg.attachments:
                if file.is_image and file.size <= MAX_IMAGE_BYTES and urlsplit(file.url).hostname in hosts:
                    file = dataclasses.replace(file, data=await self._fetch(session, file))
                elif file.is_image and file.url:
                    log.warning("not fetching %s: %s is not Slack's file host", file.name, urlsplit(file.url).hostname)
                files.append(file)
        return dataclasses.replace(msg, attachments=tuple(files))

    async def _fetch(self, session: aiohttp.ClientSession, file: InputFile) -> bytes | None:
        headers = {"Authorization": f"Bearer {self.config.bot_token}"}
        try:
            async with session.get(file.url, headers=headers, allow_redirects=False) as response:
                if response.status != 200:
                    log.warning("could not fetch %s: HTTP %s (the app needs the files:read scope)", file.name,
                                response.status)  # fmt: skip
                    return None
                data = await response.content.read(MAX_IMAGE_BYTES + 1)
                return data if len(data) <= MAX_IMAGE_BYTES else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not fetch %s: %s", file.name, exc)
            return None

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        try:
            msg = normalise(as_message(event), await self._bot_user(context))
            if msg is None or not await self._for_us(msg):
                return
            # A mention arrives twice, as app_mention and as message: one of them goes on.
            message_key = f"{PLATFORM}:msg:{msg.channel}:{msg.ts}"
            if not self.intake.first_sight(message_key):
                return
            # Slack Connect: a person from another organisation carries their own team id.
            team = str(event.get("user_team") or event.get("team") or "")
            work = self._take(msg, event_id=str(body.get("event_id") or ""), message_key=message_key, team=team)
            self._spawn(work, name=f"{RUN_TASK}{msg.channel}-{msg.ts}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(f"{event.get('type')} event", exc)
        finally:
            self.events_handled += 1

    async def _on_reaction(self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        try:
            reaction = as_reaction(event)
            if self.decider.vote(reaction.get("reaction", "")) is None:
                return  # most reactions are not ✅/❌: nothing to look up
            if from_a_bot(reaction, await self._bot_user(context)):
                return
            event_id = str(body.get("event_id", ""))
            self._spawn(self.decider.handle(reaction, event_id=event_id), name=f"slack-reaction-{event_id}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error("reaction_added event", exc)
        finally:
            self.events_handled += 1

    def on_error(self, where: str, exc: BaseException) -> None:
        """Override to report elsewhere; the default logs with the traceback."""
        log.error("Slack adapter: %s failed", where, exc_info=exc)

    async def _bot_user(self, context: AsyncBoltContext) -> str:
        return context.bot_user_id or (await self.api.identity()).user_id

    async def _for_us(self, msg: Incoming) -> bool:
        if msg.is_dm or msg.mentions_bot:
            return True
        return msg.in_thread and await self._known_thread(msg.channel, msg.thread)

    async def _known_thread(self, channel: str, thread: str) -> bool:
        """A thread the bot is part of: it has a conversation (it answered or posted there)."""
        return await self.store.has_conversation(PLATFORM, channel, thread)

    async def _take(self, msg: Incoming, *, event_id: str, message_key: str, team: str) -> None:
        """Claim the message in the store, then serve it. bolt does not drop Slack's retries
        (X-Slack-Retry-Num), and another process may have it: both keys are claimed. A store that
        keeps refusing gets the person one line instead of silence."""
        keys = [f"{PLATFORM}:{event_id}"] if event_id else []
        try:
            if not await self.intake.claim(*keys, message_key):
                return
        except StoreUnavailable:
            await self._post(msg.channel, msg.thread, m.escape(texts.CANNOT_SAVE))
            return
        try:
            await self._serve_message(msg, team=team)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.on_error(f"message {msg.channel}/{msg.ts}", exc)  # before the run: the access checks' writes
            await self._post(msg.channel, msg.thread, m.escape(texts.CANNOT_SAVE))

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(self._guard(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(name, exc)

    # ---- one conversation turn ------------------------------------------------------------
    async def _serve_message(self, msg: Incoming, *, team: str = "") -> None:
        # Judged by its author, whoever started the thread; nothing else happens before this.
        outsider = bool(team) and team != (await self.api.identity()).team_id
        name = await self.api.user_name(msg.user) if msg.is_dm else ""  # a DM may become a pairing: name it
        asker = Asker(PLATFORM, msg.user, channel=msg.channel, is_dm=msg.is_dm, user_name=name, outsider=outsider)
        decision = await self.access.decide(asker, roles=lambda: self._groups_of(msg.user))
        if not isinstance(decision, Admit):
            log.info("Slack: %s in %s not admitted (%s)", msg.user, msg.channel, texts.access_outcome(decision))
            reply = texts.access_reply(decision, asker)
            if reply:
                await self._tell(msg, reply)
            return
        if not msg.text and not msg.attachments:  # just "@orchestrator": say how to ask
            await self._post(msg.channel, msg.thread, m.HELP.format(bot=await self._bot_user_id()))
            await self._remember_thread(msg.channel, msg.thread)
            return
        if self.access.busy(asker):  # it waits for a turn: say so rather than look ignored
            await self._tell(msg, texts.QUEUED)
        async with self.access.turn(asker):
            try:
                await self.api.react(msg.channel, msg.ts, self.config.working_reaction)
            except SlackApiError as exc:  # cosmetic: never worth failing the run for
                log.warning("could not add :%s: (%s)", self.config.working_reaction, exc.response.get("error"))
            msg = await self._with_images(msg)
            request = to_request(msg, user_name=await self.api.user_name(msg.user))
            recipient = Recipient(msg.user, team or (await self.api.identity()).team_id)
            try:
                await self._run(request, recipient=recipient)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.on_error(f"run in {msg.channel}/{msg.thread}", exc)
                await self._say_failed(msg, exc)

    async def _tell(self, msg: Incoming, text: str) -> None:
        """A word for the author alone: in a channel only they see it (ephemeral), in a DM it stays."""
        if msg.is_dm:
            await self._post(msg.channel, msg.thread, m.escape(text))
            return
        thread = msg.thread if msg.in_thread else ""  # a top-level post: right under it, in the channel
        payload = {"text": m.escape(text), "ephemeral_to": msg.user, "thread_ts": thread}
        await self.outbox.post(msg.channel, msg.thread, payload)

    async def _post(self, channel: str, thread: str, text: str, *, key: str = "") -> str:
        """Queue a message (already mrkdwn) in a thread; returns its outbox key."""
        return await self.outbox.post(channel, thread, {"text": text}, key=key)

    async def _groups_of(self, user: str) -> list[str]:
        """The approver groups this person is in (approvers may always ask); looked up only when needed."""
        return [g for g in self.config.approver_groups if user in await self.api.group_members(g)]

    async def run_request(self, request: Request) -> list[Event]:
        """Run the agent and show it in `request.thread` (a message ts, e.g. what `post_report`
        returned): progress, approvals and answer, exactly like a conversation. Returns its events
        once everything it showed has reached Slack."""
        events = await self._run(request)
        await self.outbox.drained(request.channel, request.thread)
        return events

    async def _run(self, request: Request, *, recipient: Recipient | None = None) -> list[Event]:
        """Run the agent and show it in the request's thread: in Slack's agent stream when there is
        a person to stream to (`recipient`) and Slack allows it there, else in an edited message."""
        place = SlackThread(
            self.api, self.outbox, self.config, channel=request.channel, thread=request.thread,
            support=self.streams, recipient=recipient,
        )  # fmt: skip
        run = ThreadRun(place)
        if recipient is not None and request.thread:
            await self._show_status(request.channel, request.thread)
        events: list[Event] = []
        try:
            # aclosing: leaving early must still release the agent's per-conversation lock.
            async with _closing(self.agent.run(request)) as stream:
                async for ev in stream:
                    if not isinstance(ev, Partial):  # the run's steps; its live pieces are only shown
                        events.append(ev)
                    try:
                        await run.render(ev)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # one bad render must not stop the run (or its approvals)
                        self.on_error(f"showing {type(ev).__name__} in {request.channel}/{request.thread}", exc)
        finally:
            await run.close()
        return events

    async def _show_status(self, channel: str, thread: str) -> None:
        """The assistant status ("<app> is thinking…") under an assistant thread; cosmetic, refused in any other
        thread: once refused in a channel (or by the workspace), it is not asked again there."""
        if not self.streams.status_in(channel):
            return
        try:
            await self.api.set_status(channel, thread, texts.STATUS_THINKING)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error != "ratelimited":
                self.streams.status_refused(channel, error)
        except (ClientError, OSError, TimeoutError) as exc:
            log.debug("the assistant status in %s could not be set: %s", channel, exc)

    async def _say_failed(self, msg: Incoming, exc: Exception) -> None:
        try:
            if is_unavailable(exc):  # the store refused a write: say so, not "internal error"
                line = m.escape(texts.CANNOT_SAVE)
            else:
                line = m.failure_line(m.INTERNAL_ERROR.format(kind=type(exc).__name__))
            await self._post(msg.channel, msg.thread, line)
        except Exception as second:
            self.on_error("posting the failure line", second)

    async def _bot_user_id(self) -> str:
        return (await self.api.identity()).user_id

    async def _remember_thread(self, channel: str, thread: str) -> None:
        """Replies in a thread the bot posted in continue a conversation there."""
        await self.store.open_conversation(PLATFORM, channel, thread)

    # ---- ChatAdapter: posts started by the application ---------------------------------------
    async def post_report(self, channel: str, report: Report) -> str:
        """Queue the report and wait until Slack has all of it (through a 429 storm, however long);
        returns the ts of its first message. `DeliveryFailed` when Slack refused it for good."""
        parts = split_message(m.mrkdwn(f"**{report.title}**\n{report.text}"), ANSWER_LIMIT)
        keys = [await self._post(channel, "", part) for part in parts]
        for att in report.attachments:
            name = att.path.rsplit("/", 1)[-1]
            data = base64.b64encode(await read_bytes(att.path)).decode()
            upload = {"content_b64": data, "filename": name, "title": att.title or name}
            keys.append(await self.outbox.post(channel, "", {"upload": upload}))
        first = (await self.outbox.sent(keys))[0]
        await self._remember_thread(channel, first)
        return first

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        """Queue `text` in a thread and wait until Slack has it; returns the ts of its first part."""
        keys = [await self._post(channel, thread, part) for part in split_message(m.mrkdwn(text), ANSWER_LIMIT)]
        first = (await self.outbox.sent(keys))[0]
        await self._remember_thread(channel, thread)
        return first

    async def announce_expired(self, approvals: Sequence[Approval]) -> None:
        """Queue one notice per thread; waits only for each to be tried once, so a 429 storm does not
        hold up the start (the outbox keeps trying)."""
        keys: list[str] = []
        for approval in approvals:
            if approval.platform != PLATFORM or not approval.channel:
                continue
            text = texts.EXPIRED_ON_RESTART.format(id=approval.id, summary=approval.summary)
            try:
                key = f"{PLATFORM}:expired:{approval.id}"
                keys.append(await self._post(approval.channel, approval.thread, m.escape(text), key=key))
            except Exception as exc:
                self.on_error(f"announcing expired approval #{approval.id}", exc)
        await self.outbox.attempted(keys)
