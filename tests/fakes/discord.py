"""In-process stand-in for Discord (REST v10 + gateway) for discord.py 2.7 tests.

``FakeDiscord`` runs an ``aiohttp.web`` server on 127.0.0.1 (random port) on the
current event loop.  An *unmodified* ``discord.Client`` logs in against it once
``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` point at the fake (done
automatically by ``async with FakeDiscord() as fake`` unless ``patch=False``)::

    async with FakeDiscord() as fake:
        client = discord.Client(intents=intents)
        async with fake.run_client(client):
            await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, "hi <@1000>")

Seeded world (ids are module constants below): one guild ``GUILD_ID`` with roles
@everyone / ops / the bot's managed role, text channels ``TEXT_CHANNEL_ID`` and
``OTHER_CHANNEL_ID``, and members bot, owner, approver (ops role), stranger and
another bot.

Note: this module is called ``discord.py``; ``tests/__init__.py`` and
``tests/fakes/__init__.py`` must exist so pytest imports it as
``tests.fakes.discord`` and never puts ``tests/fakes`` on ``sys.path`` (which
would shadow the real ``discord`` package).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
from aiohttp import web

__all__ = [
    "API_PREFIX",
    "APPLICATION_ID",
    "APPROVER_ID",
    "BOT_ROLE_ID",
    "BOT_USER_ID",
    "EVERYONE_ROLE_ID",
    "GUILD_ID",
    "OPS_ROLE_ID",
    "OTHER_BOT_ID",
    "OTHER_CHANNEL_ID",
    "OWNER_ID",
    "STRANGER_ID",
    "TEXT_CHANNEL_ID",
    "FakeDiscord",
    "RestCall",
    "StoredMessage",
    "UploadedFile",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000

# --------------------------------------------------------------------------- ids
BOT_USER_ID = 1000
APPLICATION_ID = 1000  # like real Discord: application id == bot user id
GUILD_ID = 2000
EVERYONE_ROLE_ID = GUILD_ID  # like real Discord: @everyone role id == guild id
OPS_ROLE_ID = 2001
BOT_ROLE_ID = 2002  # managed role of the bot (tags.bot_id == BOT_USER_ID)
TEXT_CHANNEL_ID = 3000  # "ops"
OTHER_CHANNEL_ID = 3001  # "general"
OWNER_ID = 4000
APPROVER_ID = 4001  # has the "ops" role
STRANGER_ID = 4002  # no roles
OTHER_BOT_ID = 4003  # a different bot user, no roles

# ------------------------------------------------------------ gateway intents
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15

_EVERYONE_PERMS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
    add_reactions=True,
    embed_links=True,
    attach_files=True,
    use_external_emojis=True,
).value
_BOT_PERMS = (
    _EVERYONE_PERMS | discord.Permissions(manage_messages=True, manage_threads=True, create_private_threads=True).value
)

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")
_CUSTOM_EMOJI_RE = re.compile(r"^<?(a?):?([A-Za-z0-9_~]+):(\d+)>?$")
MAX_CONTENT_LENGTH = 2000


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ----------------------------------------------------------------- public data
@dataclass
class UploadedFile:
    """A file part of a multipart REST request (``files[n]``)."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class RestCall:
    """One REST request as received by the fake.

    ``path`` is percent-decoded and has the ``/api/v10`` prefix stripped, e.g.
    ``/channels/3000/messages/123/reactions/✅/@me``.  ``json`` is the JSON body,
    or the parsed ``payload_json`` part of a multipart request.  ``status`` is 0
    while the request is being handled, then the HTTP status that was answered.
    """

    method: str
    path: str
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when received
    status: int = 0

    @property
    def filenames(self) -> list[str]:
        return [f.filename for f in self.files]


@dataclass
class StoredMessage:
    """The fake's record of a message (current state, after edits)."""

    id: int
    channel_id: int
    author_id: int
    content: str
    timestamp: str
    edited_timestamp: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # raw bytes of uploaded attachments, keyed by attachment id
    attachment_data: dict[int, bytes] = field(default_factory=dict)
    mention_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    type: int = 0
    flags: int = 0
    nonce: int | str | None = None
    edit_count: int = 0
    # emoji key ("✅" or "name:id") -> user ids, in insertion order
    reactions: dict[str, list[int]] = field(default_factory=dict)
    thread_id: int | None = None


# -------------------------------------------------------------------- internal
class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    remaining: int
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Storm:
    """Matching calls answered 429 until `calls` such answers were given or `until` passed."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    retry_after: float
    calls: int | None
    until: float | None

    def hits(self, call: RestCall, now: float) -> bool:
        if self.calls is not None and self.calls <= 0:
            return False
        if self.until is not None and now >= self.until:
            return False
        return call.method in self.methods and self.pattern.fullmatch(call.path) is not None


@dataclass
class _User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None


@dataclass
class _Member:
    user_id: int
    roles: list[int]
    joined_at: str
    nick: str | None = None


class _Conn:
    """One gateway websocket connection."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, compress: bool) -> None:
        self.ws = ws
        self.request = request
        self.zlib = zlib.compressobj() if compress else None
        self.session: _Session | None = None
        self.ready = False  # identified/resumed and receiving dispatches

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        if self.zlib is not None:
            data = self.zlib.compress(text.encode()) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(text)


@dataclass
class _Session:
    session_id: str
    intents: int
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    conn: _Conn | None = None


_Handler = Callable[[RestCall, "re.Match[str]"], Awaitable[tuple[int, Any]]]


# ------------------------------------------------------------------- the fake
class FakeDiscord:
    """Fake Discord REST API + gateway, bound to 127.0.0.1:<random port>."""

    def __init__(
        self,
        *,
        token: str | None = None,
        heartbeat_interval_ms: int = 41250,
        echo_own_events: bool = True,
        compress: bool = True,
        patch: bool = True,
    ) -> None:
        """
        token: if set, REST calls / IDENTIFY with another token get 401 / 4004.
        echo_own_events: send MESSAGE_CREATE/UPDATE/DELETE and
            MESSAGE_REACTION_ADD/REMOVE over the gateway for the bot's own REST
            actions, like real Discord does.
        compress: honour ``compress=zlib-stream`` in the gateway URL (plain
            text frames otherwise; discord.py accepts both).
        patch: apply :meth:`patch_discord` for the duration of ``async with``.
        """
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_own_events = echo_own_events
        self.compress = compress
        self._auto_patch = patch

        self._runner: web.AppRunner | None = None
        self._port = 0
        self._patch_stack: contextlib.ExitStack | None = None

        self._calls: list[RestCall] = []
        self._calls_event = asyncio.Event()
        self._rules: list[_FailRule] = []
        self._storms: list[_Storm] = []

        self._lock = asyncio.Lock()  # serialises every gateway send
        self._session: _Session | None = None
        self._conns: set[_Conn] = set()
        self._ready_event = asyncio.Event()
        self.identify_count = 0
        self.resume_count = 0
        self.replayed_events = 0  # dispatches re-sent on RESUME
        self.gateway_queries: list[dict[str, str]] = []  # query of each ws connect
        self.gateway_received: list[dict[str, Any]] = []

        self._last_snowflake = 0
        self._users: dict[int, _User] = {}
        self._members: dict[int, _Member] = {}
        self._roles: list[dict[str, Any]] = []
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._messages: dict[int, StoredMessage] = {}
        self.cdn_fetches: list[int] = []  # attachment ids whose bytes were fetched, in order
        self._channel_order: dict[int, list[int]] = {}
        self._seed()
        self._routes = self._build_routes()

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/gateway/", self._handle_gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_rest)
        app.router.add_get("/attachments/{aid}/{filename}", self._handle_attachment)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        if self._auto_patch:
            self._patch_stack = contextlib.ExitStack()
            self._patch_stack.enter_context(self.patch_discord())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stop()
        finally:
            if self._patch_stack is not None:
                self._patch_stack.close()
                self._patch_stack = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py (process-wide) at this fake; restores on exit.

        Patches ``discord.http.Route.BASE`` (REST) and
        ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``: a plain
        ``Client`` never calls GET /gateway/bot, it connects straight to
        DEFAULT_GATEWAY (and falls back to it after INVALID_SESSION).
        """
        import yarl

        ws_cls = discord.gateway.DiscordWebSocket
        old_base = discord.http.Route.BASE
        old_gateway = ws_cls.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        ws_cls.DEFAULT_GATEWAY = yarl.URL(self.gateway_url + "/")
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            ws_cls.DEFAULT_GATEWAY = old_gateway

    @contextlib.asynccontextmanager
    async def run_client(
        self,
        client: discord.Client,
        *,
        token: str | None = None,
        ready_timeout: float = 10.0,
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run ``client.start(token)`` as a task until ``client.is_ready()``.

        On exit ``await client.close()`` and wait for the task; errors from
        the task (e.g. LoginFailure) are re-raised.
        """
        task = asyncio.create_task(client.start(token or self.token or "fake-token"))
        try:
            deadline = time.monotonic() + ready_timeout
            while not client.is_ready():
                if task.done():
                    task.result()
                    raise RuntimeError("client.start() returned before ready")
                if time.monotonic() > deadline:
                    raise TimeoutError("discord client did not become ready")
                await asyncio.sleep(0.01)
            yield task
        finally:
            await client.close()
            try:
                await asyncio.wait_for(task, 5.0)
            except asyncio.CancelledError:
                pass

    # ---------------------------------------------------------- world model
    def _seed(self) -> None:
        joined = "2024-01-01T00:00:00+00:00"
        for u in (
            _User(BOT_USER_ID, "orchestrator", bot=True, global_name="AI Orchestrator"),
            _User(OWNER_ID, "owner", global_name="Guild Owner"),
            _User(APPROVER_ID, "alice", global_name="Alice Approver"),
            _User(STRANGER_ID, "mallory", global_name="Mallory"),
            _User(OTHER_BOT_ID, "otherbot", bot=True),
        ):
            self._users[u.id] = u
        roles = {
            BOT_USER_ID: [BOT_ROLE_ID],
            OWNER_ID: [],
            APPROVER_ID: [OPS_ROLE_ID],
            STRANGER_ID: [],
            OTHER_BOT_ID: [],
        }
        for uid, r in roles.items():
            self._members[uid] = _Member(uid, list(r), joined)

        def role(rid: int, name: str, pos: int, perms: int, **extra: Any) -> dict[str, Any]:
            return {
                "id": str(rid),
                "name": name,
                "color": 0,
                "colors": {
                    "primary_color": 0,
                    "secondary_color": None,
                    "tertiary_color": None,
                },
                "hoist": False,
                "icon": None,
                "unicode_emoji": None,
                "position": pos,
                "permissions": str(perms),
                "managed": False,
                "mentionable": False,
                "flags": 0,
                **extra,
            }

        self._roles = [
            role(EVERYONE_ROLE_ID, "@everyone", 0, _EVERYONE_PERMS),
            role(OPS_ROLE_ID, "ops", 1, 0, mentionable=True),
            role(
                BOT_ROLE_ID,
                "orchestrator",
                2,
                _BOT_PERMS,
                managed=True,
                tags={"bot_id": str(BOT_USER_ID)},
            ),
        ]
        for cid, name, pos in ((TEXT_CHANNEL_ID, "ops", 0), (OTHER_CHANNEL_ID, "general", 1)):
            self._channels[cid] = {
                "id": str(cid),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": name,
                "position": pos,
                "permission_overwrites": [],
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "rate_limit_per_user": 0,
                "last_message_id": None,
                "flags": 0,
            }
            self._channel_order[cid] = []

    def add_user(
        self,
        user_id: int,
        username: str,
        *,
        bot: bool = False,
        roles: Sequence[int] = (),
        member: bool = True,
    ) -> None:
        """Add a user (and guild member). Call before the client connects:
        members added later are not announced over the gateway."""
        self._users[user_id] = _User(user_id, username, bot=bot)
        if member:
            self._members[user_id] = _Member(user_id, list(roles), _now_iso())

    def snowflake(self) -> int:
        """A new, strictly increasing, time-based snowflake."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = max(ms << 22, self._last_snowflake + 1)
        self._last_snowflake = value
        return value

    def dm_channel_id(self, user_id: int) -> int:
        """The DM channel between the bot and ``user_id`` (created on demand)."""
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self.snowflake()
            self._register_dm(cid, user_id)
        return cid

    def _register_dm(self, channel_id: int, user_id: int) -> None:
        self._user(user_id)
        self._dm_by_user[user_id] = channel_id
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "_recipient": user_id,
        }
        self._channel_order.setdefault(channel_id, [])

    def _user(self, user_id: int) -> _User:
        try:
            return self._users[user_id]
        except KeyError:
            raise ValueError(f"unknown user id {user_id}") from None

    def _guild_id_of(self, channel_id: int) -> int | None:
        ch = self._channels.get(channel_id)
        if ch is None or "guild_id" not in ch:
            return None
        return int(ch["guild_id"])

    # ------------------------------------------------------------- payloads
    def user_payload(self, user_id: int) -> dict[str, Any]:
        u = self._user(user_id)
        d: dict[str, Any] = {
            "id": str(u.id),
            "username": u.username,
            "discriminator": "0",
            "global_name": u.global_name,
            "avatar": None,
            "public_flags": 0,
        }
        if u.bot:
            d["bot"] = True
        return d

    def member_payload(
        self,
        user_id: int,
        *,
        with_user: bool = True,
        roles: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        m = self._members.get(user_id)
        d: dict[str, Any] = {
            "roles": [str(r) for r in (roles if roles is not None else m.roles if m else [])],
            "nick": m.nick if m else None,
            "avatar": None,
            "banner": None,
            "joined_at": m.joined_at if m else _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            d["user"] = self.user_payload(user_id)
        return d

    def channel_payload(self, channel_id: int) -> dict[str, Any]:
        ch = self._channels.get(channel_id)
        if ch is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        d = {k: v for k, v in ch.items() if not k.startswith("_")}
        if ch["type"] == 1:
            d["recipients"] = [self.user_payload(ch["_recipient"])]
        return d

    def guild_payload(self, *, intents: int | None = None) -> dict[str, Any]:
        """GUILD_CREATE payload (members only with the GUILD_MEMBERS intent)."""
        all_members = list(self._members)
        members_hidden = intents is not None and not intents & INTENT_GUILD_MEMBERS
        shown = [BOT_USER_ID] if members_hidden else all_members
        guild_channels = [
            self.channel_payload(cid)
            for cid, ch in self._channels.items()
            if ch.get("guild_id") == str(GUILD_ID) and ch["type"] not in (11, 12)
        ]
        threads = [
            self.channel_payload(cid)
            for cid, ch in self._channels.items()
            if ch["type"] in (11, 12) and not ch["thread_metadata"]["archived"]
        ]
        return {
            **self._guild_base(),
            "joined_at": self._members[BOT_USER_ID].joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(all_members),
            "members": [self.member_payload(uid) for uid in shown],
            "channels": guild_channels,
            "threads": threads,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _guild_base(self) -> dict[str, Any]:
        return {
            "id": str(GUILD_ID),
            "name": "Fake Ops Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(OWNER_ID),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [dict(r) for r in self._roles],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(OTHER_CHANNEL_ID),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def render_message(self, msg: StoredMessage, *, gateway: bool = False) -> dict[str, Any]:
        """Discord message object (gateway=True adds guild_id + member)."""
        gid = self._guild_id_of(msg.channel_id)
        mentions = []
        for uid in msg.mention_ids:
            if uid not in self._users:
                continue
            u = self.user_payload(uid)
            if gid is not None and uid in self._members:
                u["member"] = self.member_payload(uid, with_user=False)
            mentions.append(u)
        d: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self.user_payload(msg.author_id),
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [str(r) for r in msg.mention_role_ids],
            "attachments": [dict(a) for a in msg.attachments],
            "embeds": [dict(e) for e in msg.embeds],
            "components": list(msg.components),
            "pinned": False,
            "type": msg.type,
            "flags": msg.flags,
        }
        if msg.nonce is not None:
            d["nonce"] = msg.nonce
        if msg.reactions:
            d["reactions"] = [
                {
                    "emoji": self._emoji_payload(key),
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": BOT_USER_ID in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for key, users in msg.reactions.items()
                if users
            ]
        if msg.reference is not None:
            d["message_reference"] = dict(msg.reference)
            ref_id = int(msg.reference.get("message_id", 0) or 0)
            ref = self._messages.get(ref_id)
            d["referenced_message"] = self.render_message(ref) if ref else None
        if msg.thread_id is not None and msg.thread_id in self._channels:
            d["thread"] = self.channel_payload(msg.thread_id)
        if gateway and gid is not None:
            d["guild_id"] = str(gid)
            if msg.author_id in self._members:
                d["member"] = self.member_payload(msg.author_id, with_user=False)
        return d

    @staticmethod
    def _emoji_key(emoji: str) -> str:
        m = _CUSTOM_EMOJI_RE.match(emoji)
        if m:
            return f"{m.group(2)}:{m.group(3)}"
        return emoji

    @staticmethod
    def _emoji_payload(key: str) -> dict[str, Any]:
        m = _CUSTOM_EMOJI_RE.match(key)
        if m:
            return {"id": m.group(3), "name": m.group(2), "animated": bool(m.group(1))}
        return {"id": None, "name": key}

    # ----------------------------------------------------------- message store
    def _store_message(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        message_id: int | None = None,
        mentions: Sequence[int] | None = None,
        mention_roles: Sequence[int] | None = None,
        embeds: Sequence[dict[str, Any]] = (),
        components: Sequence[dict[str, Any]] = (),
        attachments: Sequence[dict[str, Any]] = (),
        attachment_data: dict[int, bytes] | None = None,
        reference: dict[str, Any] | None = None,
        nonce: int | str | None = None,
        flags: int = 0,
    ) -> StoredMessage:
        if channel_id not in self._channels:
            raise ValueError(f"unknown channel id {channel_id}")
        self._user(author_id)
        mid = message_id if message_id is not None else self.snowflake()
        self._last_snowflake = max(self._last_snowflake, mid)
        if mentions is None:
            mentions = list(dict.fromkeys(int(x) for x in _MENTION_RE.findall(content)))
        if mention_roles is None:
            mention_roles = [int(x) for x in _ROLE_MENTION_RE.findall(content)]
        msg = StoredMessage(
            id=mid,
            channel_id=channel_id,
            author_id=author_id,
            content=content,
            timestamp=_now_iso(),
            embeds=list(embeds),
            components=list(components),
            attachments=list(attachments),
            attachment_data=dict(attachment_data or {}),
            mention_ids=list(mentions),
            mention_role_ids=list(mention_roles),
            reference=reference,
            type=19 if reference else 0,
            flags=flags,
            nonce=nonce,
        )
        self._messages[mid] = msg
        self._channel_order.setdefault(channel_id, []).append(mid)
        ch = self._channels[channel_id]
        ch["last_message_id"] = str(mid)
        if ch["type"] in (11, 12):
            ch["message_count"] += 1
            ch["total_message_sent"] += 1
        return msg

    def add_message(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        message_id: int | None = None,
        mentions: Sequence[int] | None = None,
    ) -> int:
        """Store a message WITHOUT sending it over the gateway (so it is not in
        the client's cache, but fetch_message() finds it). Returns its id."""
        return self._store_message(channel_id, author_id, content, message_id=message_id, mentions=mentions).id

    def message(self, message_id: int) -> StoredMessage:
        return self._messages[message_id]

    def message_objects(self, channel_id: int) -> list[StoredMessage]:
        return [self._messages[m] for m in self._channel_order.get(channel_id, [])]

    def messages(self, channel_id: int) -> list[str]:
        """Current contents (after edits, without deleted ones), oldest first."""
        return [m.content for m in self.message_objects(channel_id)]

    def reactions(self, message_id: int) -> dict[str, list[int]]:
        """emoji ("✅" or "name:id") -> user ids who currently react."""
        msg = self._messages[message_id]
        return {k: list(v) for k, v in msg.reactions.items() if v}

    def channel(self, channel_id: int) -> dict[str, Any]:
        return self.channel_payload(channel_id)

    def threads(self) -> list[dict[str, Any]]:
        return [self.channel_payload(cid) for cid, ch in self._channels.items() if ch["type"] in (11, 12)]

    # ------------------------------------------------------ REST call records
    @property
    def rest_calls(self) -> list[RestCall]:
        return list(self._calls)

    def calls_matching(self, method: str, path_regex: str, *, status: int | None = None) -> list[RestCall]:
        """Calls whose method equals ``method`` and whose path FULL-matches
        ``path_regex`` (optionally only those answered with ``status``)."""
        pat = re.compile(path_regex)
        return [
            c
            for c in self._calls
            if c.method == method.upper() and pat.fullmatch(c.path) and (status is None or c.status == status)
        ]

    async def wait_for(self, predicate: Callable[[RestCall], bool], timeout: float = 5.0) -> RestCall:
        """First answered call (past or future) for which ``predicate`` holds."""

        async def _wait() -> RestCall:
            while True:
                event = self._calls_event
                for c in self._calls:
                    if c.status and predicate(c):
                        return c
                await event.wait()

        return await asyncio.wait_for(_wait(), timeout)

    async def wait_for_call(self, method: str, path_regex: str, timeout: float = 5.0) -> RestCall:
        pat = re.compile(path_regex)
        return await self.wait_for(
            lambda c: c.method == method.upper() and bool(pat.fullmatch(c.path)),
            timeout,
        )

    def _notify_calls(self) -> None:
        self._calls_event.set()
        self._calls_event = asyncio.Event()

    # ------------------------------------------------------- failure injection
    def rate_limit_next(
        self,
        method: str,
        path_regex: str,
        *,
        retry_after: float = 0.5,
        times: int = 1,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls with 429 (path full-match)."""
        reset = time.time() + retry_after
        headers = {
            "Via": "1.1 google",  # discord.py treats a 429 without Via as a CF ban
            "Retry-After": str(max(1, int(retry_after + 0.999))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{reset:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "fakebucket" + uuid.uuid4().hex[:8],
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self._rules.append(
            _FailRule(
                method.upper(),
                re.compile(path_regex),
                times,
                429,
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry_after,
                    "global": is_global,
                },
                headers,
            )
        )

    def storm(
        self,
        methods: Sequence[str],
        path_regex: str,
        *,
        retry_after: float = 0.05,
        calls: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """A 429 storm: every call with one of ``methods`` whose path full-matches ``path_regex``
        is answered 429 (body ``retry_after``, which discord.py sleeps between its own five tries,
        and ``X-RateLimit-Reset-After``) until ``calls`` such answers were given or ``seconds``
        have passed (neither: until :meth:`end_storms`)."""
        until = time.monotonic() + seconds if seconds is not None else None
        self._storms.append(
            _Storm(frozenset(m.upper() for m in methods), re.compile(path_regex), retry_after, calls, until)
        )

    def end_storms(self) -> None:
        self._storms.clear()

    @property
    def storming(self) -> bool:
        now = time.monotonic()
        return any((s.calls is None or s.calls > 0) and (s.until is None or now < s.until) for s in self._storms)

    def _storm_answer(self, call: RestCall) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        now = time.monotonic()
        for storm in self._storms:
            if storm.hits(call, now):
                if storm.calls is not None:
                    storm.calls -= 1
                headers = {
                    "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
                    "Retry-After": str(max(1, int(storm.retry_after + 0.999))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + storm.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{storm.retry_after:.3f}",
                    "X-RateLimit-Bucket": "stormbucket",
                    "X-RateLimit-Scope": "user",
                }
                body = {"message": "You are being rate limited.", "retry_after": storm.retry_after, "global": False}
                return 429, body, headers
        return None

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        code: int = 0,
        message: str = "Internal Server Error",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching calls with an error JSON.
        NB: discord.py retries 500/502/504 by itself (sleeping 1s, 3s, ...)."""
        self._rules.append(
            _FailRule(
                method.upper(),
                re.compile(path_regex),
                times,
                status,
                {"message": message, "code": code},
                {},
            )
        )

    def _take_rule(self, call: RestCall) -> _FailRule | None:
        for rule in self._rules:
            if rule.method == call.method and rule.pattern.fullmatch(call.path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    # ------------------------------------------------------------ REST server
    @staticmethod
    def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        if body is None or status == 204:
            return web.Response(status=204, headers=headers)
        # content_type without charset: discord.py compares it with "==".
        return web.Response(
            status=status,
            body=json.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json",
            headers=headers,
        )

    async def _read_body(self, request: web.Request, call: RestCall) -> None:
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                name = part.name or ""
                if part.filename:
                    call.files.append(UploadedFile(name, part.filename, part.headers.get("Content-Type"), data))
                elif name == "payload_json":
                    call.json = json.loads(data)
                else:
                    call.form[name] = data.decode()
            return
        raw = await request.read()
        if not raw:
            return
        if ctype == "application/json":
            call.json = json.loads(raw)
        else:
            call.form["_raw"] = raw.decode(errors="replace")

    async def _handle_attachment(self, request: web.Request) -> web.StreamResponse:
        """The bytes of an attachment, as Discord's CDN serves them (no authorization needed)."""
        aid = int(request.match_info["aid"])
        self.cdn_fetches.append(aid)
        for msg in self._messages.values():
            if aid in msg.attachment_data:
                return web.Response(body=msg.attachment_data[aid], content_type="application/octet-stream")
        return web.Response(status=404, text="no such attachment")

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :] or "/"
        call = RestCall(
            method=request.method.upper(),
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            at=time.monotonic(),
        )
        self._calls.append(call)
        headers: dict[str, str] = {}
        try:
            await self._read_body(request, call)
            auth = request.headers.get("Authorization")
            if not auth or (self.token is not None and auth != f"Bot {self.token}"):
                raise _ApiError(401, 0, "401: Unauthorized")
            stormed = self._storm_answer(call)
            rule = None if stormed is not None else self._take_rule(call)
            if stormed is not None:
                status, body, headers = stormed
            elif rule is not None:
                status, body, headers = rule.status, dict(rule.body), dict(rule.headers)
            else:
                handler, match = self._route(call)
                status, body = await handler(call, match)
        except _ApiError as e:
            status, body = e.status, {"message": e.message, "code": e.code}
        except Exception as e:  # pragma: no cover - bug in the fake itself
            status, body = 500, {"message": f"fake error: {e!r}", "code": 0}
        call.status = 204 if body is None else status
        self._notify_calls()
        return self._json_response(status, body, headers)

    def _route(self, call: RestCall) -> tuple[_Handler, re.Match[str]]:
        for method, pattern, handler in self._routes:
            if method == call.method:
                m = pattern.fullmatch(call.path)
                if m:
                    return handler, m
        raise _ApiError(404, 0, "404: Not Found")

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _Handler]]:
        c = r"/channels/(?P<cid>\d+)"
        msg = c + r"/messages/(?P<mid>\d+)"
        react = msg + r"/reactions/(?P<emoji>[^/]+)"
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/users/@me", self._r_me),
            ("GET", r"/users/(?P<uid>\d+)", self._r_user),
            ("POST", r"/users/@me/channels", self._r_create_dm),
            ("GET", r"/oauth2/applications/@me", self._r_application),
            ("GET", r"/gateway", self._r_gateway),
            ("GET", r"/gateway/bot", self._r_gateway_bot),
            ("GET", c, self._r_get_channel),
            ("PATCH", c, self._r_edit_channel),
            ("POST", c + r"/typing", self._r_noop),
            ("GET", c + r"/messages", self._r_history),
            ("POST", c + r"/messages", self._r_send),
            ("GET", msg, self._r_get_message),
            ("PATCH", msg, self._r_edit_message),
            ("DELETE", msg, self._r_delete_message),
            ("PUT", react + r"/@me", self._r_add_reaction),
            ("DELETE", react + r"/@me", self._r_remove_own_reaction),
            ("DELETE", react + r"/(?P<uid>\d+)", self._r_remove_user_reaction),
            ("GET", react, self._r_reaction_users),
            ("POST", msg + r"/threads", self._r_thread_from_message),
            ("POST", c + r"/threads", self._r_thread_without_message),
            ("PUT", c + r"/thread-members/@me", self._r_noop),
            ("GET", r"/guilds/(?P<gid>\d+)", self._r_guild),
            ("GET", r"/guilds/(?P<gid>\d+)/channels", self._r_guild_channels),
            ("GET", r"/guilds/(?P<gid>\d+)/roles", self._r_guild_roles),
            ("GET", r"/guilds/(?P<gid>\d+)/members/(?P<uid>\d+)", self._r_member),
        ]
        return [(m, re.compile(p), h) for m, p, h in table]

    # --------------------------------------------------------- REST handlers
    def _check_guild(self, m: re.Match[str]) -> None:
        if int(m["gid"]) != GUILD_ID:
            raise _ApiError(404, 10004, "Unknown Guild")

    def _get_msg(self, m: re.Match[str]) -> StoredMessage:
        cid, mid = int(m["cid"]), int(m["mid"])
        if cid not in self._channels:
            raise _ApiError(404, 10003, "Unknown Channel")
        stored = self._messages.get(mid)
        if stored is None or stored.channel_id != cid:
            raise _ApiError(404, 10008, "Unknown Message")
        return stored

    async def _r_noop(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        self.channel_payload(int(m["cid"]))
        return 204, None

    def _bot_user_payload(self) -> dict[str, Any]:
        d = self.user_payload(BOT_USER_ID)
        d.update(verified=True, mfa_enabled=False, flags=0, locale="en-US", email=None)
        return d

    async def _r_me(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self._bot_user_payload()

    async def _r_user(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        uid = int(m["uid"])
        if uid not in self._users:
            raise _ApiError(404, 10013, "Unknown User")
        return 200, self.user_payload(uid)

    async def _r_application(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, {
            "id": str(APPLICATION_ID),
            "name": "AI Orchestrator",
            "description": "",
            "summary": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self.user_payload(OWNER_ID),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": self.user_payload(BOT_USER_ID),
        }

    async def _r_gateway(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _r_gateway_bot(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000 - self.identify_count,
                "reset_after": 0,
                "max_concurrency": 1,
            },
        }

    async def _r_create_dm(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        uid = int((call.json or {}).get("recipient_id", 0))
        if uid not in self._users:
            raise _ApiError(400, 50035, "Invalid Form Body")
        return 200, self.channel_payload(self.dm_channel_id(uid))

    async def _r_get_channel(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self.channel_payload(int(m["cid"]))

    async def _r_edit_channel(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        cid = int(m["cid"])
        self.channel_payload(cid)
        ch = self._channels[cid]
        body = call.json or {}
        for key in ("name", "topic", "rate_limit_per_user", "nsfw"):
            if key in body and key in ch:
                ch[key] = body[key]
        if ch["type"] in (11, 12):
            meta = ch["thread_metadata"]
            for key in ("archived", "locked", "auto_archive_duration", "invitable"):
                if key in body:
                    meta[key] = body[key]
            if "archived" in body:
                meta["archive_timestamp"] = _now_iso()
            await self._dispatch("THREAD_UPDATE", self.channel_payload(cid), INTENT_GUILDS)
        return 200, self.channel_payload(cid)

    async def _r_history(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        cid = int(m["cid"])
        self.channel_payload(cid)
        limit = int(call.query.get("limit", 50))
        ids = list(self._channel_order.get(cid, []))
        if "before" in call.query:
            ids = [i for i in ids if i < int(call.query["before"])]
        if "after" in call.query:
            ids = [i for i in ids if i > int(call.query["after"])]
            ids = ids[:limit]
        else:
            ids = ids[-limit:]
        return 200, [self.render_message(self._messages[i]) for i in reversed(ids)]

    def _attachments_from(
        self, call: RestCall, body: dict[str, Any], existing: Sequence[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[int, bytes]]:
        """Resolve ``attachments`` (kept ids + new files[n]) into objects."""
        by_id = {int(a["id"]): a for a in existing}
        files = {f.field: f for f in call.files}
        result: list[dict[str, Any]] = []
        data: dict[int, bytes] = {}
        wanted = body.get("attachments")
        if wanted is None:
            wanted = [{"id": a["id"]} for a in existing] + [{"id": i} for i in range(len(call.files))]
        for spec in wanted:
            idx = int(spec["id"])
            upload = files.get(f"files[{idx}]")
            if upload is not None and idx not in by_id:
                aid = self.snowflake()
                url = f"{self.url}/attachments/{aid}/{upload.filename}"
                result.append(
                    {
                        "id": str(aid),
                        "filename": spec.get("filename", upload.filename),
                        "description": spec.get("description"),
                        "size": len(upload.data),
                        "url": url,
                        "proxy_url": url,
                        "content_type": upload.content_type,
                    }
                )
                data[aid] = upload.data
            elif idx in by_id:
                result.append(by_id[idx])
        return result, data

    @staticmethod
    def _check_content(content: str) -> None:
        if len(content) > MAX_CONTENT_LENGTH:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body (content: Must be 2000 or fewer in length.)",
            )

    async def _r_send(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        cid = int(m["cid"])
        ch = self._channels.get(cid)
        if ch is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        if ch["type"] in (11, 12) and ch["thread_metadata"]["locked"]:
            raise _ApiError(403, 50083, "Thread is locked")
        body = call.json or {}
        content = body.get("content") or ""
        self._check_content(content)
        attachments, data = self._attachments_from(call, body, [])
        embeds = body.get("embeds") or []
        components = body.get("components") or []
        if not (content or embeds or attachments or components or body.get("sticker_ids")):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        reference = body.get("message_reference")
        if reference is not None:
            ref_id = int(reference.get("message_id", 0) or 0)
            if ref_id not in self._messages and reference.get("fail_if_not_exists", True):
                raise _ApiError(400, 50035, "Invalid Form Body (Unknown message)")
            reference = {
                "type": 0,
                "message_id": str(ref_id),
                "channel_id": str(reference.get("channel_id") or cid),
                **({"guild_id": str(self._guild_id_of(cid))} if self._guild_id_of(cid) else {}),
            }
        stored = self._store_message(
            cid,
            BOT_USER_ID,
            content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            attachment_data=data,
            reference=reference,
            nonce=body.get("nonce"),
            flags=int(body.get("flags") or 0),
        )
        if self.echo_own_events:
            await self._dispatch_message("MESSAGE_CREATE", stored)
        return 200, self.render_message(stored)

    async def _r_get_message(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self.render_message(self._get_msg(m))

    async def _r_edit_message(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        stored = self._get_msg(m)
        if stored.author_id != BOT_USER_ID:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        body = call.json or {}
        if "content" in body:
            content = body["content"] or ""
            self._check_content(content)
            stored.content = content
            stored.mention_ids = [int(x) for x in _MENTION_RE.findall(content)]
        if "embeds" in body:
            stored.embeds = list(body["embeds"] or [])
        if "components" in body:
            stored.components = list(body["components"] or [])
        if "flags" in body and body["flags"] is not None:
            stored.flags = int(body["flags"])
        if "attachments" in body or call.files:
            atts, data = self._attachments_from(call, body, stored.attachments)
            stored.attachments = atts
            stored.attachment_data.update(data)
        stored.edited_timestamp = _now_iso()
        stored.edit_count += 1
        if self.echo_own_events:
            await self._dispatch_message("MESSAGE_UPDATE", stored)
        return 200, self.render_message(stored)

    async def _r_delete_message(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        stored = self._get_msg(m)
        del self._messages[stored.id]
        self._channel_order[stored.channel_id].remove(stored.id)
        if self.echo_own_events:
            gid = self._guild_id_of(stored.channel_id)
            d: dict[str, Any] = {"id": str(stored.id), "channel_id": str(stored.channel_id)}
            if gid is not None:
                d["guild_id"] = str(gid)
            await self._dispatch(
                "MESSAGE_DELETE",
                d,
                INTENT_GUILD_MESSAGES if gid else INTENT_DIRECT_MESSAGES,
            )
        return 204, None

    async def _r_add_reaction(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        stored = self._get_msg(m)
        key = self._emoji_key(m["emoji"])
        users = stored.reactions.setdefault(key, [])
        if BOT_USER_ID not in users:
            users.append(BOT_USER_ID)
            if self.echo_own_events:
                await self._dispatch_reaction("MESSAGE_REACTION_ADD", stored.channel_id, stored.id, BOT_USER_ID, key)
        return 204, None

    async def _remove_reaction(self, m: re.Match[str], user_id: int) -> tuple[int, Any]:
        stored = self._get_msg(m)
        key = self._emoji_key(m["emoji"])
        users = stored.reactions.get(key, [])
        if user_id in users:
            users.remove(user_id)
            if self.echo_own_events:
                await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", stored.channel_id, stored.id, user_id, key)
        return 204, None

    async def _r_remove_own_reaction(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return await self._remove_reaction(m, BOT_USER_ID)

    async def _r_remove_user_reaction(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        return await self._remove_reaction(m, int(m["uid"]))

    async def _r_reaction_users(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        stored = self._get_msg(m)
        users = stored.reactions.get(self._emoji_key(m["emoji"]), [])
        return 200, [self.user_payload(u) for u in users]

    def _new_thread(
        self,
        thread_id: int,
        parent_id: int,
        name: str,
        *,
        thread_type: int,
        auto_archive_duration: int,
        owner_id: int = BOT_USER_ID,
    ) -> dict[str, Any]:
        now = _now_iso()
        ch = {
            "id": str(thread_id),
            "type": thread_type,
            "guild_id": str(GUILD_ID),
            "parent_id": str(parent_id),
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": auto_archive_duration,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
                **({"invitable": True} if thread_type == 12 else {}),
            },
            "member": {
                "id": str(thread_id),
                "user_id": str(owner_id),
                "join_timestamp": now,
                "flags": 0,
            },
        }
        self._channels[thread_id] = ch
        self._channel_order.setdefault(thread_id, [])
        return ch

    def _thread_parent(self, m: re.Match[str]) -> int:
        cid = int(m["cid"])
        ch = self._channels.get(cid)
        if ch is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        if ch["type"] not in (0, 5):
            raise _ApiError(400, 50024, "Cannot execute action on this channel type")
        return cid

    async def _announce_thread(self, thread_id: int) -> dict[str, Any]:
        payload = self.channel_payload(thread_id)
        await self._dispatch("THREAD_CREATE", {**payload, "newly_created": True}, INTENT_GUILDS)
        return payload

    async def _r_thread_from_message(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        cid = self._thread_parent(m)
        stored = self._get_msg(m)
        if stored.thread_id is not None:
            raise _ApiError(400, 160004, "A thread has already been created for this message")
        body = call.json or {}
        # Like real Discord: a thread started from a message has the message's id.
        self._new_thread(
            stored.id,
            cid,
            str(body.get("name") or "thread"),
            thread_type=11,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        stored.thread_id = stored.id
        return 201, await self._announce_thread(stored.id)

    async def _r_thread_without_message(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        cid = self._thread_parent(m)
        body = call.json or {}
        tid = self.snowflake()
        self._new_thread(
            tid,
            cid,
            str(body.get("name") or "thread"),
            thread_type=int(body.get("type") or 12),
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        return 201, await self._announce_thread(tid)

    async def _r_guild(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        self._check_guild(m)
        return 200, self._guild_base()

    async def _r_guild_channels(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        self._check_guild(m)
        return 200, [
            self.channel_payload(cid)
            for cid, ch in self._channels.items()
            if ch.get("guild_id") == str(GUILD_ID) and ch["type"] not in (11, 12)
        ]

    async def _r_guild_roles(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        self._check_guild(m)
        return 200, [dict(r) for r in self._roles]

    async def _r_member(self, call: RestCall, m: re.Match[str]) -> tuple[int, Any]:
        self._check_guild(m)
        uid = int(m["uid"])
        if uid not in self._members:
            raise _ApiError(404, 10007, "Unknown Member")
        return 200, self.member_payload(uid)

    # --------------------------------------------------------------- gateway
    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        compress = self.compress and request.query.get("compress") == "zlib-stream"
        conn = _Conn(ws, request, compress)
        self._conns.add(conn)
        try:
            async with self._lock:
                await conn.send(
                    {
                        "op": 10,
                        "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                        "s": None,
                        "t": None,
                    }
                )
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_gateway_payload(conn, payload)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._conns.discard(conn)
            conn.ready = False
            sess = conn.session
            if sess is not None and sess.conn is conn:
                sess.conn = None
                self._ready_event.clear()
        return ws

    async def _on_gateway_payload(self, conn: _Conn, payload: dict[str, Any]) -> None:
        self.gateway_received.append(payload)
        op = payload.get("op")
        d = payload.get("d")
        if op == 1:  # HEARTBEAT
            async with self._lock:
                await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:  # IDENTIFY
            await self._identify(conn, d or {})
        elif op == 6:  # RESUME
            await self._resume(conn, d or {})
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._send_member_chunk(conn, d or {})

    async def _identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        if self.token is not None and d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        async with self._lock:
            sess = _Session(session_id=uuid.uuid4().hex, intents=int(d.get("intents") or 0))
            self._session = sess
            sess.conn = conn
            conn.session = sess
            conn.ready = True
            self.identify_count += 1
            ready = {
                "v": 10,
                "user": self._bot_user_payload(),
                "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                "session_id": sess.session_id,
                "resume_gateway_url": self.gateway_url,
                "session_type": "normal",
                "application": {"id": str(APPLICATION_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
            }
            await self._dispatch_locked(sess, "READY", ready)
            await self._dispatch_locked(sess, "GUILD_CREATE", self.guild_payload(intents=sess.intents))
            self._ready_event.set()

    async def _resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        async with self._lock:
            sess = self._session
            if (
                sess is None
                or d.get("session_id") != sess.session_id
                or (self.token is not None and d.get("token") != self.token)
            ):
                await conn.send({"op": 9, "d": False, "s": None, "t": None})
                return
            seq = int(d.get("seq") or 0)
            old = sess.conn
            if old is not None and old is not conn:
                old.ready = False
            sess.conn = conn
            conn.session = sess
            conn.ready = True
            for payload in sess.buffer:
                if payload["s"] > seq:
                    await conn.send(payload)
                    self.replayed_events += 1
            self.resume_count += 1
            await self._dispatch_locked(sess, "RESUMED", {})
            self._ready_event.set()

    async def _send_member_chunk(self, conn: _Conn, d: dict[str, Any]) -> None:
        uids = list(self._members)
        if d.get("user_ids"):
            uids = [int(u) for u in d["user_ids"] if int(u) in self._members]
        query = (d.get("query") or "").lower()
        if query:
            uids = [u for u in uids if self._users[u].username.lower().startswith(query)]
        limit = int(d.get("limit") or 0)
        if limit:
            uids = uids[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(GUILD_ID),
            "members": [self.member_payload(u) for u in uids],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._dispatch("GUILD_MEMBERS_CHUNK", chunk, 0)

    async def _dispatch(self, event: str, data: dict[str, Any], intent: int, *, required: bool = False) -> bool:
        """Send a DISPATCH to the current session if its intents allow it.
        While the socket is down the event is buffered and replayed on RESUME."""
        sess = self._session
        if sess is None:
            if required:
                raise RuntimeError("no gateway session: has the client connected?")
            return False
        if intent and not sess.intents & intent:
            return False
        async with self._lock:
            await self._dispatch_locked(sess, event, data)
        return True

    async def _dispatch_locked(self, sess: _Session, event: str, data: dict[str, Any]) -> None:
        sess.seq += 1
        payload = {"op": 0, "t": event, "s": sess.seq, "d": data}
        sess.buffer.append(payload)
        conn = sess.conn
        if conn is not None and conn.ready:
            try:
                await conn.send(payload)
            except (ConnectionError, RuntimeError):
                conn.ready = False

    async def _dispatch_message(self, event: str, msg: StoredMessage, *, required: bool = False) -> bool:
        gid = self._guild_id_of(msg.channel_id)
        data = self.render_message(msg, gateway=True)
        sess = self._session
        if (
            sess is not None
            and gid is not None
            and not sess.intents & INTENT_MESSAGE_CONTENT
            and msg.author_id != BOT_USER_ID
            and BOT_USER_ID not in msg.mention_ids
        ):
            # Like Discord without the privileged MESSAGE_CONTENT intent.
            data.update(content="", embeds=[], attachments=[], components=[])
        intent = INTENT_GUILD_MESSAGES if gid is not None else INTENT_DIRECT_MESSAGES
        return await self._dispatch(event, data, intent, required=required)

    async def _dispatch_reaction(
        self,
        event: str,
        channel_id: int,
        message_id: int,
        user_id: int,
        emoji_key: str,
        *,
        member_roles: Sequence[int] | None = None,
        required: bool = False,
    ) -> bool:
        gid = self._guild_id_of(channel_id)
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "emoji": self._emoji_payload(emoji_key),
            "burst": False,
            "type": 0,
        }
        if event == "MESSAGE_REACTION_ADD":
            data["burst_colors"] = []
            stored = self._messages.get(message_id)
            if stored is not None:
                data["message_author_id"] = str(stored.author_id)
        if gid is not None:
            data["guild_id"] = str(gid)
            if event == "MESSAGE_REACTION_ADD":
                data["member"] = self.member_payload(user_id, roles=member_roles)
        intent = INTENT_GUILD_MESSAGE_REACTIONS if gid is not None else INTENT_DIRECT_MESSAGE_REACTIONS
        return await self._dispatch(event, data, intent, required=required)

    # ------------------------------------------------------ test-facing API
    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until a gateway connection is identified (READY + GUILD_CREATE
        sent) or resumed. NB: discord.py fires on_ready ``guild_ready_timeout``
        (default 2s) after GUILD_CREATE; use ``client.wait_until_ready()`` or
        :meth:`run_client` for the client side."""
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self._ready_event.is_set()

    async def push_event(self, event: str, data: dict[str, Any]) -> None:
        """Send an arbitrary DISPATCH (no intent filtering)."""
        await self._dispatch(event, data, 0, required=True)

    async def push_message(
        self,
        channel_id: int | None,
        author_id: int,
        content: str,
        *,
        mentions: Sequence[int] | None = None,
        mention_roles: Sequence[int] | None = None,
        message_id: int | None = None,
        guild: bool = True,
        reply_to: int | None = None,
        embeds: Sequence[dict[str, Any]] = (),
        files: Sequence[tuple[str, str, bytes]] = (),
    ) -> int:
        """MESSAGE_CREATE from ``author_id``; returns the message id.

        ``files``: (filename, content type, bytes) the person attached; their URLs serve the bytes,
        as Discord's CDN does.

        mentions / mention_roles default to the ``<@id>`` / ``<@&id>`` found in
        ``content``. ``guild=False`` makes a DM: ``channel_id`` may be None
        (the author's DM channel) or any id (registered as that DM channel).
        """
        if guild:
            if channel_id is None or self._guild_id_of(channel_id) is None:
                raise ValueError(f"{channel_id} is not a guild channel/thread")
        elif channel_id is None:
            channel_id = self.dm_channel_id(author_id)
        elif channel_id not in self._channels:
            self._register_dm(channel_id, author_id)
        reference = None
        if reply_to is not None:
            reference = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
            if guild:
                reference["guild_id"] = str(GUILD_ID)
        stored = self._store_message(
            channel_id,
            author_id,
            content,
            message_id=message_id,
            mentions=mentions,
            mention_roles=mention_roles,
            embeds=embeds,
            reference=reference,
        )
        for filename, content_type, data in files:
            aid = self.snowflake()
            url = f"{self.url}/attachments/{aid}/{filename}"
            stored.attachments.append(
                {"id": str(aid), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
                 "content_type": content_type}
            )  # fmt: skip
            stored.attachment_data[aid] = data
        await self._dispatch_message("MESSAGE_CREATE", stored, required=True)
        return stored.id

    async def push_reaction(
        self,
        channel_id: int,
        message_id: int,
        user_id: int,
        emoji: str = "✅",
        *,
        member_roles: Sequence[int] | None = None,
    ) -> None:
        """MESSAGE_REACTION_ADD by ``user_id``. The message does not need to
        exist in the fake or the client cache. ``emoji`` is a unicode emoji or
        ``name:id`` / ``<:name:id>``. ``member_roles`` overrides the roles in the
        event's member object (default: the member's seeded roles)."""
        self._user(user_id)
        key = self._emoji_key(emoji)
        stored = self._messages.get(message_id)
        if stored is not None:
            users = stored.reactions.setdefault(key, [])
            if user_id not in users:
                users.append(user_id)
        await self._dispatch_reaction(
            "MESSAGE_REACTION_ADD",
            channel_id,
            message_id,
            user_id,
            key,
            member_roles=member_roles,
            required=True,
        )

    async def push_reaction_remove(self, channel_id: int, message_id: int, user_id: int, emoji: str = "✅") -> None:
        key = self._emoji_key(emoji)
        stored = self._messages.get(message_id)
        if stored is not None and user_id in stored.reactions.get(key, []):
            stored.reactions[key].remove(user_id)
        await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", channel_id, message_id, user_id, key, required=True)

    async def drop_gateway(self, code: int = 4000, *, abrupt: bool = False) -> None:
        """Close the current gateway socket (session stays resumable).

        code 4000 (default) or 1000/1001 make discord.py RESUME immediately;
        4004/4010-4014 are fatal for it. ``abrupt=True`` kills the TCP
        connection without a close frame."""
        async with self._lock:
            sess = self._session
            conn = sess.conn if sess else None
            if sess is None or conn is None:
                raise RuntimeError("no connected gateway session")
            conn.ready = False
            sess.conn = None
            self._ready_event.clear()
        if abrupt:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        else:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code, message=b"dropped by FakeDiscord")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs."""
        async with self._lock:
            sess = self._session
            conn = sess.conn if sess else None
            if sess is None or conn is None:
                raise RuntimeError("no connected gateway session")
            await conn.send({"op": 7, "d": None, "s": None, "t": None})
            conn.ready = False
            sess.conn = None
            self._ready_event.clear()

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION. Non-resumable forgets the session, so the
        client re-IDENTIFYs (buffered events are lost, like on Discord)."""
        async with self._lock:
            sess = self._session
            conn = sess.conn if sess else None
            if sess is None or conn is None:
                raise RuntimeError("no connected gateway session")
            await conn.send({"op": 9, "d": resumable, "s": None, "t": None})
            conn.ready = False
            sess.conn = None
            if not resumable:
                self._session = None
            self._ready_event.clear()
