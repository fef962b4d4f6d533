"""Slack's agent streaming for one run: a timeline of tasks shown live, then the answer.

The live part goes through slack_sdk's `chat_stream` helper (chat.startStream, then
chat.appendStream) and takes the channel's turn like every other post, so Slack sees one
call per channel at its pace: what arrives meanwhile is coalesced into the next call (a
task's newest state; a task that changed status keeps each status, in order). A 429 is
waited out (Retry-After) and the call made again with whatever is newest: nothing is
dropped, since every chunk is a task's state, never text to append.

The end (chat.stopStream with the last task states and the answer) is queued in the outbox
like any post, so it is durable and ordered with the run's other messages; should the
stream be gone by then (it expired during a long approval, or the person stopped it), the
outbox posts the answer as a plain message instead (`SlackDelivery`).

Where Slack refuses streaming (a workspace without it, a token or channel type it does not
allow), the stream is `broken` and the run goes on in an edited progress message;
`StreamSupport` remembers the refusal for the process, for the workspace or for the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream

from adapters.outbox import Backoff, Outbox, Payload
from adapters.thread_run import Task

from .api import RETRYABLE_ERRORS, SlackApi, retry_after
from .payloads import PLATFORM

log = logging.getLogger(__name__)

TITLE_LIMIT = 200  # characters of a task's title we send
FIELD_LIMIT = 256  # Slack's limit on a task's `details` and `output`
#: Refusals by the workspace or the token: no stream can work in this process.
WORKSPACE_REFUSALS = frozenset(
    {"unknown_method", "not_allowed_token_type", "missing_scope", "no_permission", "access_denied", "accesslimited",
     "is_bot", "enterprise_is_restricted", "method_deprecated", "deprecated_endpoint", "team_access_not_granted"}
)  # fmt: skip
#: Refusals because of the place: streams elsewhere may work.
CHANNEL_REFUSALS = frozenset(
    {"channel_type_not_supported", "not_in_channel", "channel_not_found", "is_archived", "restricted_action",
     "restricted_action_read_only_channel", "restricted_action_thread_locked", "restricted_action_thread_only_channel",
     "restricted_action_non_threadable_channel", "ekm_access_denied", "messages_tab_disabled",
     "cannot_reply_to_message"}
)  # fmt: skip


class StreamSupport:
    """Where this process found Slack's streaming, and the assistant status, refused. `enabled`
    False (ORCHESTRATOR_SLACK_STREAMING=off) turns streaming off everywhere; the status stays."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._streams_off = ""  # the workspace's refusal, once seen
        self._streams_off_in: dict[str, str] = {}  # channel -> refusal
        self._status_off = ""
        self._status_off_in: set[str] = set()

    def streams_in(self, channel: str) -> bool:
        return self.enabled and not self._streams_off and channel not in self._streams_off_in

    def stream_refused(self, channel: str, error: str) -> None:
        if error in WORKSPACE_REFUSALS:
            if not self._streams_off:
                log.warning(
                    "Slack refused streaming (%s): runs are shown in edited messages from now on; see docs/slack.md",
                    error,
                )
            self._streams_off = error
        elif error in CHANNEL_REFUSALS:
            if channel not in self._streams_off_in:
                log.info("Slack refused streaming in %s (%s): runs there are shown in edited messages", channel, error)
            self._streams_off_in[channel] = error
        else:  # this run only (the recipient, or the stream itself)
            log.info("Slack refused a stream in %s (%s); this run is shown in an edited message", channel, error)

    def status_in(self, channel: str) -> bool:
        return not self._status_off and channel not in self._status_off_in

    def status_refused(self, channel: str, error: str) -> None:
        """Outside an assistant thread the status is refused: said once, then not asked again there."""
        if error in WORKSPACE_REFUSALS:
            self._status_off = error
        else:
            self._status_off_in.add(channel)
        log.debug("Slack refused the assistant status in %s (%s); not asking again there", channel, error)


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a stream is for: Slack requires it outside DMs."""

    user: str
    team: str


def task_chunk(task: Task) -> TaskUpdateChunk:
    title = task.title if len(task.title) <= TITLE_LIMIT else task.title[: TITLE_LIMIT - 1] + "…"
    return TaskUpdateChunk(
        id=task.id,
        title=title,
        status=task.status,
        details=task.details[:FIELD_LIMIT] or None,
        output=task.output[:FIELD_LIMIT] or None,
    )


class SlackStream:
    """One run's stream (a `LiveStream`); see the module docstring."""

    def __init__(
        self,
        api: SlackApi,
        outbox: Outbox,
        support: StreamSupport,
        *,
        channel: str,
        thread: str,
        recipient: Recipient,
        backoff: Backoff,
    ) -> None:
        self.api = api
        self.outbox = outbox
        self.support = support
        self.channel = channel
        self.thread = thread
        self.recipient = recipient
        self.backoff = backoff
        self._streamer: AsyncChatStream | None = None
        self._queue: list[Task] = []  # what Slack does not have yet, oldest first
        self._error = ""  # why Slack refused the stream
        self._dirty = asyncio.Event()
        self._idle = asyncio.Event()  # no call to Slack in flight
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._on_break: Callable[[], None] | None = None

    @property
    def broken(self) -> bool:
        return bool(self._error)

    @property
    def ts(self) -> str | None:
        return self._streamer.ts if self._streamer is not None else None

    def when_broken(self, callback: Callable[[], None]) -> None:
        self._on_break = callback

    def show(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            self._queue = _merged(self._queue, task)
        if self._error:
            return
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._flusher(), name=f"slack-stream-{self.channel}-{self.thread}")

    async def finish(self, tasks: Sequence[Task], *, answer: str = "", fallback: str = "") -> bool:
        await self._stop()
        ts = self.ts
        if self._error or ts is None:
            return False
        for task in tasks:
            self._queue = _merged(self._queue, task)
        chunks: list[Payload] = [task_chunk(t).to_dict() for t in self._queue]
        if answer:
            chunks.append(MarkdownTextChunk(text=answer).to_dict())
        self._queue = []
        payload = {"text": fallback, "stream": {"ts": ts, "chunks": chunks}}
        await self.outbox.post(self.channel, self.thread, payload, key=f"{PLATFORM}:stream:{self.channel}:{ts}:stop")
        return True

    async def _stop(self) -> None:
        """Stop the live part: a call in flight is let finish (what it sent is then known); a wait
        for the channel's turn or a Retry-After is not waited out."""
        task, self._task = self._task, None
        if task is None:
            return
        while not self._idle.is_set():
            await self._idle.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _flusher(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            delay: float | None = None
            async with self.api.turn(self.channel) as turn:
                self._dirty.clear()
                batch, self._queue = self._queue, []  # taken once it is our turn: the newest there is
                self._idle.clear()
                try:
                    await self._send(batch)
                    failures = 0
                except SlackApiError as exc:
                    error = str(exc.response.get("error") or "")
                    status = int(getattr(exc.response, "status_code", 200) or 200)
                    if status == 429 or error == "ratelimited":
                        delay = retry_after(exc.response.headers)
                    elif status >= 500 or error in RETRYABLE_ERRORS:
                        failures += 1
                        delay = self.backoff.delay(failures)
                    else:
                        turn.posted = False  # nothing was shown: what goes instead need not wait
                        self._refused(error or f"HTTP {status}")
                    log.debug("Slack stream in %s: %s (again in %s s)", self.channel, error or status, delay)
                except (ClientError, OSError, TimeoutError) as exc:
                    failures += 1
                    delay = self.backoff.delay(failures)
                    log.debug("Slack stream in %s: %s (again in %.1f s)", self.channel, exc, delay)
                finally:
                    self._idle.set()
            if self._error:
                return
            if delay is not None:  # not delivered: it goes again, first, with whatever came meanwhile
                for task in self._queue:
                    batch = _merged(batch, task)
                self._queue = batch
                self._dirty.set()
                self.api.hold(self.channel, delay)

    async def _send(self, batch: list[Task]) -> None:
        chunks = [task_chunk(t) for t in batch]
        if self._streamer is None:
            self._streamer = await self.api.sender.chat_stream(
                channel=self.channel,
                thread_ts=self.thread,
                recipient_user_id=self.recipient.user,
                recipient_team_id=self.recipient.team,
                task_display_mode="timeline",
            )
        await self._streamer.append(chunks=chunks)

    def _refused(self, error: str) -> None:
        self._error = error
        self.support.stream_refused(self.channel, error)
        if self._on_break is not None:
            self._on_break()


def _merged(queue: list[Task], task: Task) -> list[Task]:
    """`queue` with `task` added: its newest state replaces a queued one with the same status (so
    a live title moves without a call per piece); a new status goes after, in order."""
    for i in range(len(queue) - 1, -1, -1):
        if queue[i].id == task.id:
            if queue[i].status == task.status:
                return [*queue[:i], task, *queue[i + 1 :]]
            break
    return [*queue, task]
