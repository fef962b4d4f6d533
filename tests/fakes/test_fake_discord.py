"""An unmodified discord.py 2.7 client against FakeDiscord."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import pytest_asyncio

from tests.fakes.discord import (
    API_PREFIX,
    APPROVER_ID,
    BOT_USER_ID,
    GUILD_ID,
    OPS_ROLE_ID,
    OTHER_BOT_ID,
    STRANGER_ID,
    TEXT_CHANNEL_ID,
    FakeDiscord,
)

TOKEN = "fake-token"


def make_intents(*, message_content: bool = True) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.members = True
    intents.guild_messages = True
    intents.guild_reactions = True
    intents.dm_messages = True
    intents.dm_reactions = True
    intents.message_content = message_content
    return intents


def make_client(**kwargs: Any) -> discord.Client:
    # guild_ready_timeout is a public Client option: on_ready fires this long
    # after the last GUILD_CREATE (default 2s). Shortened to keep tests fast.
    kwargs.setdefault("guild_ready_timeout", 0.1)
    kwargs.setdefault("intents", make_intents())
    return discord.Client(**kwargs)


def is_from(user_id: int, content: str | None = None) -> Any:
    def check(message: discord.Message) -> bool:
        return message.author.id == user_id and (content is None or message.content == content)

    return check


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as f:
        yield f


@pytest.mark.asyncio
async def test_patch_discord_points_discord_py_at_the_fake_and_restores() -> None:
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as f:
        assert f"{f.url}{API_PREFIX}" == discord.http.Route.BASE
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY).startswith(f.gateway_url)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{f.api_base}/gateway/bot", headers={"Authorization": "Bot x"}) as resp,
        ):
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["url"] == f.gateway_url
    assert base == discord.http.Route.BASE
    assert gateway == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


@pytest.mark.asyncio
async def test_login_ready_and_on_message(fake: FakeDiscord) -> None:
    ready = asyncio.Event()
    client = make_client(guild_ready_timeout=2.0)  # the library default

    @client.event
    async def on_ready() -> None:
        ready.set()

    async with fake.run_client(client, token=TOKEN):
        assert ready.is_set()
        assert client.user is not None and client.user.id == BOT_USER_ID and client.user.bot
        assert fake.identify_count == 1
        identify = next(p for p in fake.gateway_received if p["op"] == 2)
        assert identify["d"]["intents"] == make_intents().value
        assert fake.calls_matching("GET", "/users/@me", status=200)

        guild = client.get_guild(GUILD_ID)
        assert guild is not None and guild.chunked
        assert {r.name for r in guild.roles} >= {"@everyone", "ops"}
        assert isinstance(guild.get_channel(TEXT_CHANNEL_ID), discord.TextChannel)
        approver = guild.get_member(APPROVER_ID)
        assert approver is not None and [r.id for r in approver.roles[1:]] == [OPS_ROLE_ID]
        other_bot = guild.get_member(OTHER_BOT_ID)
        assert other_bot is not None and other_bot.bot
        assert guild.me.id == BOT_USER_ID

        waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
        mid = await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> deploy api")
        message: discord.Message = await waiter

    assert message.id == mid
    assert message.content == f"<@{BOT_USER_ID}> deploy api"
    assert message.guild is not None and message.guild.id == GUILD_ID
    assert message.channel.id == TEXT_CHANNEL_ID
    assert isinstance(message.author, discord.Member)
    assert message.author.id == APPROVER_ID and not message.author.bot
    assert OPS_ROLE_ID in [r.id for r in message.author.roles]
    assert [u.id for u in message.mentions] == [BOT_USER_ID]
    assert client.user is not None and client.user.mentioned_in(message)


@pytest.mark.asyncio
async def test_thread_send_edit_react_and_upload(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
        await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> restart db")
        request: discord.Message = await waiter

        thread_created = client.wait_for("thread_create", timeout=5)
        thread = await request.create_thread(name="restart db")
        assert thread.id == request.id  # Discord reuses the message id
        assert thread.parent_id == TEXT_CHANNEL_ID
        assert thread.type is discord.ChannelType.public_thread
        assert (await thread_created).id == thread.id
        assert client.get_channel(thread.id) is not None

        reply = client.wait_for("message", check=is_from(APPROVER_ID, "go ahead"), timeout=5)
        await fake.push_message(thread.id, APPROVER_ID, "go ahead")
        in_thread: discord.Message = await reply
        assert isinstance(in_thread.channel, discord.Thread) and in_thread.channel.id == thread.id
        assert isinstance(in_thread.author, discord.Member)

        echo = client.wait_for("message", check=is_from(BOT_USER_ID), timeout=5)
        status = await thread.send("working on it")
        assert (await echo).id == status.id  # own messages come back over the gateway
        edited = await status.edit(content="done: db restarted")
        assert edited.content == "done: db restarted" and edited.edited_at is not None

        await request.add_reaction("✅")
        await request.remove_reaction("✅", client.user)  # type: ignore[arg-type]
        await request.add_reaction("👀")

        upload = await thread.send(
            "logs attached",
            file=discord.File(io.BytesIO(b"line1\nline2\n"), filename="restart.log"),
        )
        assert upload.attachments[0].filename == "restart.log"
        assert upload.attachments[0].size == 12

        fetched = await thread.fetch_message(status.id)
        assert fetched.content == "done: db restarted"
        fetched_channel = await client.fetch_channel(thread.id)
        assert isinstance(fetched_channel, discord.Thread)
        member = await request.guild.fetch_member(APPROVER_ID)  # type: ignore[union-attr]
        assert OPS_ROLE_ID in [r.id for r in member.roles]

    assert fake.messages(thread.id) == ["go ahead", "done: db restarted", "logs attached"]
    assert fake.reactions(request.id) == {"👀": [BOT_USER_ID]}
    assert fake.threads()[0]["parent_id"] == str(TEXT_CHANNEL_ID)
    assert fake.threads()[0]["type"] == 11
    [thread_call] = fake.calls_matching("POST", rf"/channels/{TEXT_CHANNEL_ID}/messages/{request.id}/threads")
    assert thread_call.json["name"] == "restart db"
    [react] = fake.calls_matching("PUT", r"/channels/\d+/messages/\d+/reactions/✅/@me")
    assert react.status == 204
    assert len(fake.calls_matching("DELETE", r"/channels/\d+/messages/\d+/reactions/✅/@me")) == 1
    [up] = fake.calls_matching("POST", rf"/channels/{thread.id}/messages", status=200)[-1:]
    assert up.filenames == ["restart.log"]
    assert up.files[0].data == b"line1\nline2\n"
    assert up.json["content"] == "logs attached"
    assert fake.message(upload.id).attachment_data == {upload.attachments[0].id: b"line1\nline2\n"}


@pytest.mark.asyncio
async def test_raw_reaction_add_for_uncached_message(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        # stored in the fake but never sent over the gateway -> not in the client cache
        mid = fake.add_message(TEXT_CHANNEL_ID, BOT_USER_ID, "Approve deploy? React with ✅")
        assert discord.utils.get(client.cached_messages, id=mid) is None

        got_rich = asyncio.Event()

        @client.event
        async def on_reaction_add(reaction: discord.Reaction, user: discord.User) -> None:
            got_rich.set()

        waiter = client.wait_for("raw_reaction_add", timeout=5)
        await fake.push_reaction(TEXT_CHANNEL_ID, mid, APPROVER_ID, "✅")
        payload: discord.RawReactionActionEvent = await waiter

        assert payload.message_id == mid
        assert payload.user_id == APPROVER_ID
        assert payload.channel_id == TEXT_CHANNEL_ID
        assert payload.guild_id == GUILD_ID
        assert payload.emoji.name == "✅" and payload.emoji.id is None
        assert payload.event_type == "REACTION_ADD"
        assert payload.member is not None
        assert OPS_ROLE_ID in [r.id for r in payload.member.roles]
        assert payload.message_author_id == BOT_USER_ID
        assert not got_rich.is_set()  # on_reaction_add only fires for cached messages

        # member_roles overrides the roles carried in the event
        waiter = client.wait_for("raw_reaction_add", timeout=5)
        await fake.push_reaction(TEXT_CHANNEL_ID, mid, STRANGER_ID, "✅", member_roles=[])
        stranger: discord.RawReactionActionEvent = await waiter
        assert stranger.member is not None and [r.id for r in stranger.member.roles] == [GUILD_ID]

        channel = client.get_channel(TEXT_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.fetch_message(mid)
        assert message.content == "Approve deploy? React with ✅"
        assert {str(r.emoji): r.count for r in message.reactions} == {"✅": 2}

    assert fake.reactions(mid) == {"✅": [APPROVER_ID, STRANGER_ID]}


@pytest.mark.asyncio
async def test_rate_limited_edit_is_retried_and_lands_once(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        channel = client.get_channel(TEXT_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("deploying…")
        fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.3)
        started = time.monotonic()
        edited = await sent.edit(content="deployed")
        elapsed = time.monotonic() - started

    assert edited.content == "deployed"
    assert elapsed >= 0.3
    patches = fake.calls_matching("PATCH", rf"/channels/{TEXT_CHANNEL_ID}/messages/{sent.id}")
    assert [c.status for c in patches] == [429, 200]
    assert patches[1].at - patches[0].at >= 0.3
    assert fake.message(sent.id).edit_count == 1
    assert fake.messages(TEXT_CHANNEL_ID) == ["deployed"]


@pytest.mark.asyncio
@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "tcp-abort"])
async def test_reconnects_and_resumes_after_gateway_drop(fake: FakeDiscord, abrupt: bool) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        await fake.drop_gateway(abrupt=abrupt)
        # pushed while disconnected: buffered and replayed on RESUME
        waiter = client.wait_for("message", check=is_from(APPROVER_ID, "during outage"), timeout=10)
        await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, "during outage")
        await fake.wait_ready(timeout=10)
        assert (await waiter).content == "during outage"
        assert fake.resume_count == 1 and fake.identify_count == 1
        if abrupt:  # drop_gateway(abrupt=True) returns before the client can react
            assert fake.replayed_events == 1

        waiter = client.wait_for("message", check=is_from(STRANGER_ID), timeout=5)
        await fake.push_message(TEXT_CHANNEL_ID, STRANGER_ID, "after reconnect")
        assert (await waiter).content == "after reconnect"


@pytest.mark.asyncio
async def test_reidentifies_after_invalid_session(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        await fake.invalidate_session(resumable=False)
        await fake.wait_ready(timeout=10)
        assert fake.identify_count == 2
        waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
        await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, "still here?")
        assert (await waiter).content == "still here?"

        await fake.request_reconnect()
        await fake.wait_ready(timeout=10)
        assert fake.resume_count == 1
        assert client.get_guild(GUILD_ID) is not None


@pytest.mark.asyncio
async def test_direct_messages(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
        await fake.push_message(None, APPROVER_ID, "status?", guild=False)
        dm: discord.Message = await waiter
        assert dm.guild is None and isinstance(dm.channel, discord.DMChannel)
        assert isinstance(dm.author, discord.User) and dm.author.id == APPROVER_ID
        await dm.channel.send("all green")

        user = await client.fetch_user(STRANGER_ID)
        await user.send("hello stranger")

    assert fake.messages(fake.dm_channel_id(APPROVER_ID)) == ["status?", "all green"]
    assert fake.messages(fake.dm_channel_id(STRANGER_ID)) == ["hello stranger"]
    [open_dm] = fake.calls_matching("POST", "/users/@me/channels")
    assert open_dm.json == {"recipient_id": STRANGER_ID}


@pytest.mark.asyncio
async def test_without_message_content_intent_content_is_blank_unless_mentioned(
    fake: FakeDiscord,
) -> None:
    client = make_client(intents=make_intents(message_content=False))
    async with fake.run_client(client, token=TOKEN):
        waiter = client.wait_for("message", check=is_from(STRANGER_ID), timeout=5)
        await fake.push_message(TEXT_CHANNEL_ID, STRANGER_ID, "not for the bot")
        assert (await waiter).content == ""
        waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
        await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, f"<@{BOT_USER_ID}> hi")
        assert (await waiter).content == f"<@{BOT_USER_ID}> hi"


@pytest.mark.asyncio
@pytest.mark.parametrize("compress", [True, False], ids=["zlib-stream", "text-frames"])
async def test_gateway_transport_compression(compress: bool) -> None:
    async with FakeDiscord(compress=compress) as f:
        client = make_client()
        async with f.run_client(client):
            waiter = client.wait_for("message", check=is_from(APPROVER_ID), timeout=5)
            await f.push_message(TEXT_CHANNEL_ID, APPROVER_ID, "ping ✅")
            assert (await waiter).content == "ping ✅"
        assert f.gateway_queries[0] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}


@pytest.mark.asyncio
async def test_wrong_token_is_a_login_failure() -> None:
    async with FakeDiscord(token="right") as f:
        client = make_client()
        with pytest.raises(discord.LoginFailure):
            async with f.run_client(client, token="wrong"):
                pass
        assert f.calls_matching("GET", "/users/@me", status=401)


@pytest.mark.asyncio
async def test_rest_errors_and_wait_for(fake: FakeDiscord) -> None:
    client = make_client()
    async with fake.run_client(client, token=TOKEN):
        channel = client.get_channel(TEXT_CHANNEL_ID)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert too_long.value.status == 400 and too_long.value.code == 50035

        fake.fail_next("POST", r"/channels/\d+/messages", status=403, code=50013, message="Missing Permissions")
        with pytest.raises(discord.Forbidden):
            await channel.send("nope")

        with pytest.raises(discord.NotFound):
            await channel.fetch_message(123)

        pending = asyncio.ensure_future(
            fake.wait_for(lambda c: c.method == "POST" and c.status == 200 and c.json.get("content") == "later")
        )
        await asyncio.sleep(0)
        await channel.send("later")
        call = await pending
        assert call.path == f"/channels/{TEXT_CHANNEL_ID}/messages"
        async with channel.typing():
            pass
        assert fake.calls_matching("POST", rf"/channels/{TEXT_CHANNEL_ID}/typing", status=204)
