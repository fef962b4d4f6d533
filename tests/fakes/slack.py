"""A local stand-in for the Slack Web API plus helpers for signed Events API requests.

``FakeSlack`` is an aiohttp server bound to 127.0.0.1 on a free port. Point the real
``slack_sdk.web.async_client.AsyncWebClient`` at it with ``base_url=fake.api_url``::

    async with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert [m.text for m in fake.messages("C1")] == ["hi"]

Every request to ``/api/<method>`` is recorded as a :class:`Call` whose ``args`` merge
the query string, a form-encoded/multipart body and a JSON body. slack_sdk uses all
three: ``chat.*`` methods send JSON, ``reactions.*``/``files.*`` send POST with the
arguments in the *query string*, ``conversations.*``/``users.info`` send GET queries.

Slack's agent streaming (``chat.startStream`` / ``chat.appendStream`` / ``chat.stopStream``)
builds a :class:`Stream` as Slack would show it: a message in the thread whose text is the
Markdown streamed so far, and a timeline of tasks (each ``task_update`` chunk sets its task's
title and status, and its ``details`` / ``output`` when given; every status a task was given is
kept in order). The documented limits are enforced (``markdown_text`` up to 12,000 characters,
a task's ``details`` and ``output`` up to 256, a recipient outside DMs, no append after the
stop). By default the fake is a workspace where streaming is not available to the app (the
three methods answer ``unknown_method``, as before they existed); ``FakeSlack(streaming=True)``
is one where it is. :meth:`FakeSlack.refuse_streaming` makes a workspace (or one channel)
refuse it with a given error, and :meth:`FakeSlack.end_stream` ends a stream under the app
(as when it expires). The assistant status
(``assistant.threads.setStatus``) is kept for the threads seeded with
:meth:`FakeSlack.add_assistant_thread` and refused elsewhere, as outside assistant threads.

The module also builds Events API payloads, signs them like Slack does and pushes them
through a slack_bolt ``AsyncApp`` (:func:`deliver`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import mimetypes
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "UPLOAD_METHOD",
    "Call",
    "FakeSlack",
    "Message",
    "Stream",
    "StreamTask",
    "UploadedFile",
    "app_mention",
    "deliver",
    "event_callback",
    "message",
    "reaction_added",
    "signed_headers",
    "url_verification",
]

TEAM_ID = "T1"
TEAM_NAME = "Fake Workspace"
TEAM_DOMAIN = "fake-workspace"
APP_ID = "A1"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
BOT_NAME = "orchestrator"
BOT_SCOPES = (
    "app_mentions:read,channels:history,channels:read,chat:write,files:write,"
    "groups:history,im:history,im:read,reactions:read,reactions:write,"
    "usergroups:read,users:read"
)
#: ``Call.method`` used for the raw file upload POST to ``upload_url``.
UPLOAD_METHOD = "files.upload.external"
#: Methods that need no token (everything else answers ``not_authed`` without one).
_NO_AUTH_METHODS = frozenset({"api.test", "oauth.access", "oauth.v2.access"})
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
MARKDOWN_LIMIT = 12_000  # chat.*Stream: "Limit this field to 12,000 characters"
TASK_FIELD_LIMIT = 256  # a task_update's details and output
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
#: What assistant.threads.setStatus answers outside an assistant thread (Slack does not document it).
NOT_AN_ASSISTANT_THREAD = "invalid_thread_ts"

T = TypeVar("T")
Args = dict[str, Any]
Handler = Callable[[Args], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Call:
    """One request received by the fake.

    ``args`` is query string + form body + JSON body merged (later wins). Query and
    form values are strings as sent on the wire (e.g. ``"1"`` for ``True``); JSON
    values keep their types. ``status``/``error`` describe what the fake answered.
    """

    method: str
    args: dict[str, Any]
    at: float
    token: str | None = None
    status: int = 200
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True)
class Message:
    """A snapshot of a message in the fake's per-channel store."""

    ts: str
    text: str
    thread_ts: str | None = None
    user: str | None = BOT_USER_ID
    bot_id: str | None = BOT_ID
    blocks: list[dict[str, Any]] | None = None
    edited: bool = False
    files: tuple[str, ...] = ()


@dataclass
class UploadedFile:
    """A file announced via files.getUploadURLExternal (and maybe uploaded)."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    completed: bool = False
    channels: tuple[str, ...] = ()
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass
class StreamTask:
    """A task of a streamed message's timeline, as shown now; `statuses`: every status it was given."""

    id: str
    title: str
    status: str
    details: str = ""
    output: str = ""
    statuses: list[str] = field(default_factory=list)


@dataclass
class Stream:
    """A message streamed with chat.*Stream: its Markdown so far and its tasks (first seen first)."""

    channel: str
    ts: str
    thread_ts: str
    recipient_user_id: str | None
    recipient_team_id: str | None
    task_display_mode: str
    text: str = ""
    tasks: dict[str, StreamTask] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)  # every chunk received, in order
    streaming: bool = True

    def lines(self) -> list[str]:
        """What a person sees, top to bottom: one line per task (`[status] title`), then the text."""
        shown = [f"[{t.status}] {t.title}" for t in self.tasks.values()]
        return shown + (self.text.splitlines() if self.text else [])


@dataclass
class _Failure:
    status: int
    error: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Storm:
    """Every call to `methods` answered 429 until `calls` such answers were given or `until` passed."""

    methods: frozenset[str]
    retry_after: float
    calls: int | None
    until: float | None

    def active(self, now: float) -> bool:
        if self.calls is not None and self.calls <= 0:
            return False
        return self.until is None or now < self.until


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    return int(sec), int(frac.ljust(6, "0")[:6] or "0")


def _require(args: Args, name: str, error: str = "invalid_arguments") -> str:
    value = args.get(name)
    if value is None or value == "":
        raise _SlackError(error)
    return str(value)


def _maybe_json(value: Any) -> Any:
    """Form/query values such as ``blocks`` arrive as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class FakeSlack:
    """In-process fake of the Slack Web API (runs on the current event loop)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        require_auth: bool = True,
        ts_base: int = 1_700_000_000,
        streaming: bool = False,
    ) -> None:
        self._host = host
        self._require_auth = require_auth
        self._ts_micros = ts_base * 1_000_000
        self._ts_step = itertools.count(1)
        self._file_seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._calls: list[Call] = []
        self._changed = asyncio.Condition()
        self._failures: dict[str, deque[_Failure]] = {}
        self._storms: list[_Storm] = []
        self._overrides: dict[str, Handler] = {}
        self._channels: dict[str, list[Message]] = {}
        self._reactions: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._shared: dict[str, bytes] = {}  # files people attached, by file id
        self.file_fetches: list[tuple[str, str]] = []  # (file id, Authorization header) per download
        self._channel_info: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._streams: dict[tuple[str, str], Stream] = {}
        self._stream_refusals: dict[str | None, str] = {} if streaming else {None: "unknown_method"}
        self._assistant_threads: set[tuple[str, str]] = set()
        self._statuses: dict[tuple[str, str], str] = {}
        self._handlers: dict[str, Callable[[Args], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "assistant.threads.setStatus": self._assistant_threads_set_status,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{key}/{filename}", self._handle_file_download)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Pass as ``AsyncWebClient(base_url=...)``; ends with ``/api/``."""
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[Call]:
        """All recorded calls in arrival order (a copy)."""
        return list(self._calls)

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        """Calls to ``method``; ``ok=True``/``False`` filters on the fake's answer."""
        return [c for c in self._calls if c.method == method and (ok is None or c.ok is ok)]

    def clear_calls(self) -> None:
        self._calls.clear()

    async def wait_for(self, predicate: Callable[[list[Call]], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate(calls)`` is truthy and return its value.

        The predicate is re-evaluated after every recorded call; calls are recorded
        after the fake has updated its stores, so e.g. :meth:`messages` already
        reflects a ``chat.postMessage`` once its call is visible.
        """

        async def _wait() -> T:
            async with self._changed:
                while True:
                    result = predicate(list(self._calls))
                    if result:
                        return result
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            seen = [f"{c.method}({c.status})" for c in self._calls]
            raise TimeoutError(f"condition not met within {timeout}s; calls so far: {seen}") from None

    def messages(self, channel: str) -> list[Message]:
        """Current messages in ``channel`` (top level and replies), oldest first."""
        return list(self._channels.get(channel, []))

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The parent (if stored) and replies of a thread, oldest first."""
        return [m for m in self._channels.get(channel, []) if m.ts == thread_ts or m.thread_ts == thread_ts]

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Reaction names currently on ``(channel, ts)`` (any user), in add order."""
        return [name for name, _ in self._reactions.get((channel, ts), [])]

    @property
    def files(self) -> list[UploadedFile]:
        """Files announced via files.getUploadURLExternal (copies)."""
        return [replace(f) for f in self._files.values()]

    def streams(self, channel: str | None = None) -> list[Stream]:
        """Streamed messages (all, or in ``channel``), oldest first; live objects, not copies."""
        return [st for (c, _), st in self._streams.items() if channel is None or c == channel]

    def stream(self, channel: str, ts: str) -> Stream:
        return self._streams[(channel, ts)]

    def status(self, channel: str, thread_ts: str) -> str:
        """The assistant status shown under a thread now ("" when none)."""
        return self._statuses.get((channel, thread_ts), "")

    # ------------------------------------------------------------------ seeding

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U123",
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> Message:
        """Seed a (human) message, e.g. the parent for conversations.replies."""
        msg = Message(
            ts=ts or self._next_ts(),
            text=text,
            thread_ts=thread_ts,
            user=user,
            bot_id=bot_id,
        )
        self._store(channel, msg)
        return msg

    def add_channel(self, channel_id: str, **info: Any) -> None:
        """Register conversations.info data (merged over a synthesized default)."""
        self._channel_info[channel_id] = {**self._default_channel(channel_id), **info}

    def add_user(self, user_id: str, **info: Any) -> None:
        """Register users.info data (merged over a synthesized default)."""
        base = self._default_user(user_id)
        profile = {**base["profile"], **info.pop("profile", {})}
        self._users[user_id] = {**base, **info, "profile": profile}

    def add_usergroup(self, usergroup_id: str, users: list[str]) -> None:
        self._usergroups[usergroup_id] = list(users)

    def add_assistant_thread(self, channel: str, thread_ts: str) -> None:
        """A thread of the app's assistant (its split pane, or its DM): the status may be set there."""
        self._assistant_threads.add((channel, thread_ts))

    # ------------------------------------------------------------------ behaviour

    def rate_limit_next(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 429."""
        queue = self._failures.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Failure(429, "ratelimited", {"Retry-After": str(retry_after)}))

    def storm(
        self,
        *methods: str,
        retry_after: float = 1.0,
        calls: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """A 429 storm: every call to ``methods`` is answered HTTP 429 with ``Retry-After:
        retry_after`` (a fraction is sent as given, to keep tests short) until ``calls`` such
        answers were given or ``seconds`` have passed (both: whichever ends first; neither: until
        :meth:`end_storms`)."""
        if not methods:
            raise ValueError("name the methods the storm hits, e.g. 'chat.postMessage'")
        until = time.monotonic() + seconds if seconds is not None else None
        self._storms.append(_Storm(frozenset(methods), retry_after, calls, until))

    def end_storms(self) -> None:
        self._storms.clear()

    @property
    def storming(self) -> bool:
        now = time.monotonic()
        return any(s.active(now) for s in self._storms)

    def _storm_failure(self, method: str) -> _Failure | None:
        now = time.monotonic()
        for storm in self._storms:
            if method in storm.methods and storm.active(now):
                if storm.calls is not None:
                    storm.calls -= 1
                return _Failure(429, "ratelimited", {"Retry-After": f"{storm.retry_after:g}"})
        return None

    def error_next(
        self,
        method: str,
        error: str = "channel_not_found",
        *,
        times: int = 1,
        status: int = 200,
    ) -> None:
        """Answer the next ``times`` calls with ``{"ok": false, "error": error}``."""
        queue = self._failures.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Failure(status, error))

    def refuse_streaming(self, error: str = "unknown_method", *, channel: str | None = None) -> None:
        """chat.*Stream answer ``error`` from now on (in ``channel`` only, when given): a workspace
        without Slack's agent features (``unknown_method``), a token or scope that lacks them
        (``not_allowed_token_type``, ``missing_scope``), a channel type they do not support
        (``channel_type_not_supported``)."""
        self._stream_refusals[channel] = error

    def end_stream(self, channel: str, ts: str) -> None:
        """The stream is over under the app (it expired): appends and the stop are refused."""
        self._streams[(channel, ts)].streaming = False

    def on(self, method: str, handler: Handler) -> None:
        """Override a method: ``handler(args)`` returns the JSON body (``ok`` added
        as ``True`` when missing). Sync or async handlers are accepted."""
        self._overrides[method] = handler

    # ------------------------------------------------------------------ http

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await self._read_args(request)
        token = self._token_of(request, args)

        failure: _Failure | None = self._storm_failure(method)
        queue = self._failures.get(method)
        if failure is not None:
            pass
        elif queue:
            failure = queue.popleft()
        elif self._require_auth and token is None and method not in _NO_AUTH_METHODS:
            failure = _Failure(200, "not_authed")

        if failure is not None:
            await self._record(Call(method, args, time.time(), token, failure.status, failure.error))
            return web.json_response(
                {"ok": False, "error": failure.error},
                status=failure.status,
                headers=failure.headers,
            )

        headers: dict[str, str] = {}
        try:
            override = self._overrides.get(method)
            if override is not None:
                result = override(args)
                body = await result if isinstance(result, Awaitable) else result
                body = {"ok": True, **body}
            else:
                handler = self._handlers.get(method)
                body = {"ok": True, **(handler(args) if handler else {})}
            if method == "auth.test":
                headers["X-OAuth-Scopes"] = BOT_SCOPES
        except _SlackError as exc:
            body = {"ok": False, "error": exc.error}
        error = None if body.get("ok") else str(body.get("error", "unknown_error"))
        await self._record(Call(method, args, time.time(), token, 200, error))
        return web.json_response(body, headers=headers)

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        data = await request.read()
        record = self._files.get(file_id)
        args: Args = {"file_id": file_id, "data": data}
        if record is None:
            await self._record(Call(UPLOAD_METHOD, args, time.time(), None, 404, "file_not_found"))
            return web.Response(status=404, text="Not Found")
        record.data = data
        await self._record(Call(UPLOAD_METHOD, args, time.time()))
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _read_args(self, request: web.Request) -> Args:
        args: Args = dict(request.query)
        if not request.body_exists:
            return args
        if request.content_type == "application/json":
            raw = await request.text()
            if raw.strip():
                payload = json.loads(raw)
                if isinstance(payload, dict):
                    args.update(payload)
        elif request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    args[key] = value.file.read()
                else:
                    args[key] = value
        else:
            args["_raw_body"] = await request.read()
        return args

    def share_file(self, name: str, mimetype: str, data: bytes) -> dict[str, Any]:
        """A file a person attached to a message: the object to put in the event's `files`;
        its `url_private` serves the bytes to a request with a bot token, as Slack's file host does."""
        file_id = f"FU{next(self._file_seq):06d}"
        self._shared[file_id] = data
        url = f"{self.base_url}/files-pri/{TEAM_ID}-{file_id}/{name}"
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(data),
                "url_private": url, "url_private_download": url + "?download=1", "mode": "hosted"}  # fmt: skip

    async def _handle_file_download(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["key"].removeprefix(f"{TEAM_ID}-")
        auth = request.headers.get("Authorization", "")
        self.file_fetches.append((file_id, auth))
        if not auth.lower().startswith("bearer xoxb-"):
            return web.Response(status=403, text="no bot token")  # Slack answers a login page; a refusal here
        if file_id not in self._shared:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=self._shared[file_id], content_type="application/octet-stream")

    @staticmethod
    def _token_of(request: web.Request, args: Args) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        token = args.get("token")
        return str(token) if token else None

    async def _record(self, call: Call) -> None:
        self._calls.append(call)
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ store

    def _next_ts(self) -> str:
        micros = self._ts_micros + next(self._ts_step) * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _store(self, channel: str, msg: Message) -> None:
        msgs = self._channels.setdefault(channel, [])
        msgs.append(msg)
        msgs.sort(key=lambda m: _ts_key(m.ts))

    def _find(self, channel: str, ts: str) -> tuple[int, Message] | None:
        for i, m in enumerate(self._channels.get(channel, [])):
            if m.ts == ts:
                return i, m
        return None

    def _payload(self, channel: str, m: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "text": m.text, "ts": m.ts}
        if m.user is not None:
            out["user"] = m.user
        if m.bot_id is not None:
            out["bot_id"] = m.bot_id
            out["app_id"] = APP_ID
        out["team"] = TEAM_ID
        out["blocks"] = m.blocks or []
        if m.edited:
            out["edited"] = {"user": m.user, "ts": _event_ts()}
        if m.files:
            out["files"] = [self._file_payload(self._files[f]) for f in m.files if f in self._files]
        replies = [r for r in self._channels.get(channel, []) if r.thread_ts == m.ts]
        if m.thread_ts is not None and m.thread_ts != m.ts:
            out["thread_ts"] = m.thread_ts
            out["parent_user_id"] = self._parent_user(channel, m.thread_ts)
        elif replies:
            out["thread_ts"] = m.ts
            out["reply_count"] = len(replies)
            out["latest_reply"] = replies[-1].ts
        reactions = self._reactions.get((channel, m.ts))
        if reactions:
            grouped: dict[str, list[str]] = {}
            for name, user in reactions:
                grouped.setdefault(name, []).append(user)
            out["reactions"] = [{"name": n, "users": us, "count": len(us)} for n, us in grouped.items()]
        return out

    def _parent_user(self, channel: str, thread_ts: str) -> str | None:
        found = self._find(channel, thread_ts)
        return found[1].user if found else None

    def _file_payload(self, f: UploadedFile) -> dict[str, Any]:
        mimetype = mimetypes.guess_type(f.filename)[0] or "application/octet-stream"
        return {
            "id": f.file_id,
            "name": f.filename,
            "title": f.title or f.filename,
            "mimetype": mimetype,
            "filetype": f.filename.rsplit(".", 1)[-1] if "." in f.filename else "",
            "size": len(f.data) if f.data is not None else f.length,
            "user": BOT_USER_ID,
            "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-{f.file_id}/{f.filename}",
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{f.file_id}/{f.filename}",
            "channels": list(f.channels),
        }

    @staticmethod
    def _default_channel(channel_id: str) -> dict[str, Any]:
        is_im = channel_id.startswith("D")
        is_private = channel_id.startswith("G")
        info: dict[str, Any] = {
            "id": channel_id,
            "created": 1_600_000_000,
            "is_channel": not is_im and not is_private,
            "is_group": is_private,
            "is_im": is_im,
            "is_mpim": False,
            "is_private": is_im or is_private,
            "is_archived": False,
            "is_member": True,
            "context_team_id": TEAM_ID,
        }
        if is_im:
            info["user"] = "U123"
        else:
            info["name"] = channel_id.lower()
            info["topic"] = {"value": "", "creator": "", "last_set": 0}
            info["purpose"] = {"value": "", "creator": "", "last_set": 0}
        return info

    @staticmethod
    def _default_user(user_id: str) -> dict[str, Any]:
        is_bot = user_id == BOT_USER_ID
        name = BOT_NAME if is_bot else user_id.lower()
        real_name = "AI Orchestrator" if is_bot else f"User {user_id}"
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": is_bot,
            "is_admin": False,
            "tz": "Etc/UTC",
            "tz_offset": 0,
            "profile": {
                "real_name": real_name,
                "display_name": name,
                "email": None if is_bot else f"{name}@example.com",
                "bot_id": BOT_ID if is_bot else None,
            },
        }

    # ------------------------------------------------------------------ methods

    def _auth_test(self, args: Args) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    # ---- agent streaming and the assistant status

    def _refusal(self, channel: str) -> None:
        error = self._stream_refusals.get(channel) or self._stream_refusals.get(None)
        if error:
            raise _SlackError(error)

    def _apply_chunks(self, stream: Stream, args: Args) -> None:
        """Check every chunk first (a refused call changes nothing), then show them in order."""
        chunks = _maybe_json(args.get("chunks")) or []
        markdown = args.get("markdown_text")
        if not isinstance(chunks, list):
            raise _SlackError("invalid_chunks")
        if markdown is not None and len(str(markdown)) > MARKDOWN_LIMIT:
            raise _SlackError("msg_too_long")
        for chunk in chunks:
            kind = chunk.get("type") if isinstance(chunk, dict) else None
            if kind == "markdown_text":
                if len(str(chunk.get("text", ""))) > MARKDOWN_LIMIT:
                    raise _SlackError("msg_too_long")
            elif kind == "task_update":
                if not chunk.get("id") or not chunk.get("title") or chunk.get("status") not in TASK_STATUSES:
                    raise _SlackError("invalid_chunks")
                if any(len(str(chunk.get(f) or "")) > TASK_FIELD_LIMIT for f in ("title", "details", "output")):
                    raise _SlackError("invalid_chunks")
            elif kind != "plan_update":
                raise _SlackError("invalid_chunks")
        if markdown:
            stream.text += str(markdown)
        for chunk in chunks:
            stream.chunks.append(dict(chunk))
            if chunk["type"] == "markdown_text":
                stream.text += str(chunk.get("text", ""))
            elif chunk["type"] == "task_update":
                task = stream.tasks.get(chunk["id"])
                if task is None:
                    task = stream.tasks[chunk["id"]] = StreamTask(chunk["id"], chunk["title"], chunk["status"])
                task.title, task.status = str(chunk["title"]), str(chunk["status"])
                task.details = str(chunk["details"]) if chunk.get("details") is not None else task.details
                task.output = str(chunk["output"]) if chunk.get("output") is not None else task.output
                task.statuses.append(task.status)
        found = self._find(stream.channel, stream.ts)
        if found is not None:
            self._channels[stream.channel][found[0]] = replace(found[1], text=stream.text, edited=True)

    def _open_stream(self, args: Args) -> Stream:
        channel = _require(args, "channel", "channel_not_found")
        ts = _require(args, "ts", "message_not_found")
        self._refusal(channel)
        stream = self._streams.get((channel, ts))
        if stream is None:
            raise _SlackError("message_not_found")
        if not stream.streaming:
            raise _SlackError("message_not_in_streaming_state")
        return stream

    def _chat_start_stream(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        thread_ts = _require(args, "thread_ts", "invalid_arguments")
        self._refusal(channel)
        if not channel.startswith("D"):  # "Required when streaming to channels"
            _require(args, "recipient_user_id", "missing_recipient_user_id")
            _require(args, "recipient_team_id", "missing_recipient_team_id")
        mode = str(args.get("task_display_mode") or "timeline")
        if mode not in ("timeline", "plan"):
            raise _SlackError("invalid_arguments")
        msg = Message(ts=self._next_ts(), text="", thread_ts=thread_ts)
        stream = Stream(channel, msg.ts, thread_ts, args.get("recipient_user_id"), args.get("recipient_team_id"), mode)
        self._store(channel, msg)
        try:
            self._apply_chunks(stream, args)
        except _SlackError:
            self._channels[channel].remove(msg)
            raise
        self._streams[(channel, msg.ts)] = stream
        self._statuses.pop((channel, thread_ts), None)  # the app replied: the status goes
        return {"channel": channel, "ts": msg.ts}

    def _chat_append_stream(self, args: Args) -> dict[str, Any]:
        stream = self._open_stream(args)
        if not args.get("markdown_text") and not _maybe_json(args.get("chunks")):
            raise _SlackError("no_text")
        self._apply_chunks(stream, args)
        return {"channel": stream.channel, "ts": stream.ts}

    def _chat_stop_stream(self, args: Args) -> dict[str, Any]:
        stream = self._open_stream(args)
        self._apply_chunks(stream, args)
        stream.streaming = False
        found = self._find(stream.channel, stream.ts)
        message = self._payload(stream.channel, found[1]) if found else {}
        return {"channel": stream.channel, "ts": stream.ts, "message": message}

    def _assistant_threads_set_status(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel_id", "channel_not_found")
        thread_ts = _require(args, "thread_ts", "invalid_thread_ts")
        if "status" not in args:
            raise _SlackError("invalid_arguments")
        if (channel, thread_ts) not in self._assistant_threads:
            raise _SlackError(NOT_AN_ASSISTANT_THREAD)
        self._statuses[(channel, thread_ts)] = str(args["status"])
        return {}

    def _chat_post_message(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        text = args.get("text")
        blocks = _maybe_json(args.get("blocks"))
        if not text and not blocks and not args.get("attachments"):
            raise _SlackError("no_text")
        thread_ts = args.get("thread_ts") or None
        msg = Message(
            ts=self._next_ts(),
            text=str(text or ""),
            thread_ts=str(thread_ts) if thread_ts else None,
            blocks=blocks if isinstance(blocks, list) else None,
        )
        self._store(channel, msg)
        if thread_ts:
            self._statuses.pop((channel, str(thread_ts)), None)  # the app replied: the status goes
        return {
            "channel": channel,
            "ts": msg.ts,
            "message": self._payload(channel, msg),
        }

    def _chat_update(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        ts = _require(args, "ts", "message_not_found")
        found = self._find(channel, ts)
        if found is None:
            raise _SlackError("message_not_found")
        index, old = found
        if old.bot_id != BOT_ID:
            raise _SlackError("cant_update_message")
        blocks = _maybe_json(args["blocks"]) if "blocks" in args else old.blocks
        if "text" not in args and "blocks" not in args and "attachments" not in args:
            raise _SlackError("no_text")
        new = replace(
            old,
            text=str(args.get("text", old.text) or ""),
            blocks=blocks if isinstance(blocks, list) else None,
            edited=True,
        )
        self._channels[channel][index] = new
        return {
            "channel": channel,
            "ts": ts,
            "text": new.text,
            "message": self._payload(channel, new),
        }

    def _chat_delete(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        ts = _require(args, "ts", "message_not_found")
        found = self._find(channel, ts)
        if found is None:
            raise _SlackError("message_not_found")
        if found[1].bot_id != BOT_ID:
            raise _SlackError("cant_delete_message")
        del self._channels[channel][found[0]]
        return {"channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: Args) -> dict[str, Any]:
        _require(args, "channel", "channel_not_found")
        _require(args, "user", "user_not_found")
        if not args.get("text") and not args.get("blocks"):
            raise _SlackError("no_text")
        return {"message_ts": self._next_ts()}

    def _reaction_target(self, args: Args) -> tuple[tuple[str, str], str]:
        channel = _require(args, "channel", "no_item_specified")
        ts = _require(args, "timestamp", "no_item_specified")
        name = _require(args, "name", "invalid_name").strip(":")
        return (channel, ts), name

    def _reactions_add(self, args: Args) -> dict[str, Any]:
        key, name = self._reaction_target(args)
        current = self._reactions.setdefault(key, [])
        if (name, BOT_USER_ID) in current:
            raise _SlackError("already_reacted")
        current.append((name, BOT_USER_ID))
        return {}

    def _reactions_remove(self, args: Args) -> dict[str, Any]:
        key, name = self._reaction_target(args)
        current = self._reactions.get(key, [])
        if (name, BOT_USER_ID) not in current:
            raise _SlackError("no_reaction")
        current.remove((name, BOT_USER_ID))
        return {}

    @staticmethod
    def _page(items: list[dict[str, Any]], args: Args) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 1000)
        page = items[start : start + limit]
        more = start + limit < len(items)
        meta = {
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }
        return page, meta

    def _conversations_replies(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        ts = _require(args, "ts", "thread_not_found")
        thread = self.thread(channel, ts)
        if not thread:
            raise _SlackError("thread_not_found")
        items = [self._payload(channel, m) for m in thread]
        page, meta = self._page(items, args)
        return {"messages": page, **meta}

    def _conversations_history(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        top = [m for m in self._channels.get(channel, []) if m.thread_ts is None or m.thread_ts == m.ts]
        items = [self._payload(channel, m) for m in reversed(top)]
        page, meta = self._page(items, args)
        return {"messages": page, **meta}

    def _conversations_info(self, args: Args) -> dict[str, Any]:
        channel = _require(args, "channel", "channel_not_found")
        info = self._channel_info.get(channel) or self._default_channel(channel)
        return {"channel": info}

    def _users_info(self, args: Args) -> dict[str, Any]:
        user = _require(args, "user", "user_not_found")
        return {"user": self._users.get(user) or self._default_user(user)}

    def _usergroups_users_list(self, args: Args) -> dict[str, Any]:
        group = _require(args, "usergroup", "no_such_subteam")
        if group not in self._usergroups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _files_get_upload_url_external(self, args: Args) -> dict[str, Any]:
        filename = _require(args, "filename")
        length = int(_require(args, "length"))
        file_id = f"F{next(self._file_seq):09d}"
        self._files[file_id] = UploadedFile(file_id, filename, length)
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, args: Args) -> dict[str, Any]:
        entries = _maybe_json(_require(args, "files"))
        if not isinstance(entries, list) or not entries:
            raise _SlackError("invalid_arguments")
        records: list[UploadedFile] = []
        for entry in entries:
            record = self._files.get(str(entry.get("id")))
            if record is None or record.data is None:
                raise _SlackError("file_not_found")
            record.title = entry.get("title") or record.filename
            records.append(record)
        channels: list[str] = []
        if args.get("channel_id"):
            channels.append(str(args["channel_id"]))
        if args.get("channels"):
            channels.extend(str(args["channels"]).split(","))
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        comment = str(args["initial_comment"]) if args.get("initial_comment") else None
        for record in records:
            record.completed = True
            record.channels = tuple(channels)
            record.thread_ts = thread_ts
            record.initial_comment = comment
        for channel in channels:
            self._store(
                channel,
                Message(
                    ts=self._next_ts(),
                    text=comment or "",
                    thread_ts=thread_ts,
                    files=tuple(r.file_id for r in records),
                ),
            )
        return {"files": [self._file_payload(r) for r in records]}


# ---------------------------------------------------------------------- events API


def signed_headers(
    body: str,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    bad_signature: bool = False,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Headers Slack sends with an Events API request for ``body``.

    ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{body}`` keyed by
    the signing secret; ``bad_signature`` signs with a different key. bolt rejects
    timestamps more than 5 minutes from now, so pass an old ``timestamp`` to test
    replay protection.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    key = (signing_secret + "-wrong") if bad_signature else signing_secret
    digest = hmac.new(key.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


def _event_ts() -> str:
    return f"{time.time():.6f}"


def event_callback(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
) -> dict[str, Any]:
    """Wrap ``event`` in an ``event_callback`` envelope (unique ``event_id``)."""
    return {
        "token": "verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def url_verification(challenge: str = "challenge-token") -> dict[str, Any]:
    return {
        "token": "verification-token",
        "challenge": challenge,
        "type": "url_verification",
    }


def app_mention(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` event; real text contains ``<@UBOT>``."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    bot_id: str | None = None,
    channel_type: Literal["channel", "group", "im", "mpim"] = "channel",
) -> dict[str, Any]:
    """A plain ``message`` event. With ``bot_id`` it looks like a message posted by
    an app via chat.postMessage (``bot_id`` + ``app_id``, no subtype)."""
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
        "team": TEAM_ID,
    }
    if bot_id is not None:
        event["bot_id"] = bot_id
        event["app_id"] = APP_ID
    else:
        event["client_msg_id"] = str(uuid.uuid4())
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def reaction_added(user: str, reaction: str, channel: str, ts: str) -> dict[str, Any]:
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": _event_ts(),
    }


async def deliver(
    app: AsyncApp,
    body: dict[str, Any] | str,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    bad_signature: bool = False,
) -> BoltResponse:
    """Sign ``body`` and run it through ``app.async_dispatch`` like the HTTP adapter.

    Returns bolt's response (200 after ack, 401 on a bad signature/stale timestamp).
    With the default ``process_before_response=False`` the listener keeps running
    *after* this returns; wait for its side effects with ``FakeSlack.wait_for``.
    """
    raw = body if isinstance(body, str) else json.dumps(body)
    headers = signed_headers(
        raw,
        signing_secret,
        timestamp=timestamp,
        retry_num=retry_num,
        retry_reason=retry_reason,
        bad_signature=bad_signature,
        content_type=("application/json" if raw.lstrip().startswith("{") else "application/x-www-form-urlencoded"),
    )
    request = AsyncBoltRequest(body=raw, headers=dict(headers))
    return await app.async_dispatch(request)
