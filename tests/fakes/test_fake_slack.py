"""Tests for the FakeSlack Web API stand-in and the signed Events API helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    UPLOAD_METHOD,
    Call,
    FakeSlack,
    app_mention,
    deliver,
    event_callback,
    message,
    reaction_added,
    signed_headers,
)

TOKEN = "xoxb-test"
SECRET = "s3cret"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


def make_client(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url, **kwargs)


# ---------------------------------------------------------------- Web API


@pytest.mark.asyncio
async def test_api_url_and_auth_test(fake: FakeSlack) -> None:
    assert fake.api_url.startswith("http://127.0.0.1:")
    assert fake.api_url.endswith("/api/")
    resp = await make_client(fake).auth_test()
    assert resp["user_id"] == "UBOT"
    assert resp["bot_id"] == "BBOT"
    assert resp["team_id"] == "T1"
    assert resp["team"] and resp["user"] and resp["url"]
    assert "chat:write" in resp.headers["X-OAuth-Scopes"]
    [call] = fake.calls
    assert call.method == "auth.test" and call.token == TOKEN and call.ok


@pytest.mark.asyncio
async def test_missing_token_is_not_authed(fake: FakeSlack) -> None:
    client = AsyncWebClient(base_url=fake.api_url)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="hi")
    assert err.value.response["error"] == "not_authed"


@pytest.mark.asyncio
async def test_post_and_update_visible_in_store(fake: FakeSlack) -> None:
    client = make_client(fake)
    first = await client.chat_postMessage(channel="C1", text="thinking…")
    second = await client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])
    assert first["ts"] == "1700000000.000100"
    assert second["ts"] == "1700000000.000200"
    assert first["channel"] == "C1"
    assert first["message"]["text"] == "thinking…"
    assert first["message"]["bot_id"] == BOT_ID
    assert second["message"]["thread_ts"] == first["ts"]

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*done*"}}]
    upd = await client.chat_update(channel="C1", ts=first["ts"], text="done", blocks=blocks)
    assert upd["ts"] == first["ts"] and upd["text"] == "done"

    msgs = fake.messages("C1")
    assert [(m.text, m.ts, m.thread_ts) for m in msgs] == [
        ("done", first["ts"], None),
        ("reply", second["ts"], first["ts"]),
    ]
    assert msgs[0].edited and msgs[0].blocks == blocks
    # chat.* is sent as JSON, so the recorded args keep JSON types.
    [update_call] = fake.calls_to("chat.update")
    assert update_call.args["blocks"] == blocks
    assert isinstance(update_call, Call) and update_call.at <= time.time()


@pytest.mark.asyncio
async def test_realistic_errors(fake: FakeSlack) -> None:
    client = make_client(fake)
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    human = fake.add_message("C1", "hello", user="U1")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=human.ts, text="x")
    assert err.value.response["error"] == "cant_update_message"
    with (
        pytest.raises(SlackApiError) as err,
        pytest.warns(UserWarning, match="top-level `text`"),
    ):
        await client.chat_postMessage(channel="C1")
    assert err.value.response["error"] == "no_text"
    assert [c.error for c in fake.calls] == [
        "message_not_found",
        "cant_update_message",
        "no_text",
    ]


@pytest.mark.asyncio
async def test_reactions_and_ephemeral(fake: FakeSlack) -> None:
    client = make_client(fake)
    await client.reactions_add(channel="C1", timestamp="1699.000001", name="eyes")
    with pytest.raises(SlackApiError) as err:
        await client.reactions_add(channel="C1", timestamp="1699.000001", name="eyes")
    assert err.value.response["error"] == "already_reacted"
    await client.reactions_add(channel="C1", timestamp="1699.000001", name=":white_check_mark:")
    await client.reactions_remove(channel="C1", timestamp="1699.000001", name="eyes")
    assert fake.reactions("C1", "1699.000001") == ["white_check_mark"]
    with pytest.raises(SlackApiError) as err:
        await client.reactions_remove(channel="C1", timestamp="1699.000001", name="eyes")
    assert err.value.response["error"] == "no_reaction"
    # reactions.* args travel in the query string of a POST (strings).
    first = fake.calls_to("reactions.add")[0]
    assert first.args == {"channel": "C1", "timestamp": "1699.000001", "name": "eyes"}
    assert len(fake.calls_to("reactions.add", ok=True)) == 2

    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="psst")
    assert eph["message_ts"]
    assert fake.messages("C1") == []  # ephemeral messages are not in the store


@pytest.mark.asyncio
async def test_read_methods(fake: FakeSlack) -> None:
    client = make_client(fake)
    parent = fake.add_message("C1", "<@UBOT> help", user="U1")
    reply = await client.chat_postMessage(channel="C1", text="on it", thread_ts=parent.ts)
    replies = await client.conversations_replies(channel="C1", ts=parent.ts)
    texts = [(m["text"], m.get("user")) for m in replies["messages"]]
    assert texts == [("<@UBOT> help", "U1"), ("on it", BOT_USER_ID)]
    assert replies["messages"][0]["reply_count"] == 1
    assert replies["messages"][1]["ts"] == reply["ts"]
    with pytest.raises(SlackApiError) as err:
        await client.conversations_replies(channel="C1", ts="1.000001")
    assert err.value.response["error"] == "thread_not_found"

    info = await client.conversations_info(channel="D1")
    assert info["channel"]["is_im"] is True
    fake.add_channel("C9", name="ops", is_private=True)
    assert (await client.conversations_info(channel="C9"))["channel"]["name"] == "ops"

    fake.add_user("U1", real_name="Ada", profile={"display_name": "ada"})
    user = (await client.users_info(user="U1"))["user"]
    assert user["real_name"] == "Ada" and user["profile"]["display_name"] == "ada"
    assert (await client.users_info(user="UBOT"))["user"]["is_bot"] is True

    fake.add_usergroup("S1", ["U1", "U2"])
    group = await client.usergroups_users_list(usergroup="S1")
    assert group["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S404")
    assert err.value.response["error"] == "no_such_subteam"


@pytest.mark.asyncio
async def test_unknown_method_is_ok_and_recorded(fake: FakeSlack) -> None:
    resp = await make_client(fake).api_call("bookmarks.add", json={"title": "x"})
    assert resp["ok"] is True
    assert fake.calls_to("bookmarks.add")[0].args == {"title": "x"}


@pytest.mark.asyncio
async def test_files_upload_v2_end_to_end(fake: FakeSlack) -> None:
    client = make_client(fake)
    parent = await client.chat_postMessage(channel="C1", text="report coming")
    resp = await client.files_upload_v2(
        channel="C1",
        content=b"col\n1\n2\n",
        filename="report.csv",
        title="Report",
        initial_comment="here you go",
        thread_ts=parent["ts"],
    )
    assert resp["file"]["name"] == "report.csv"
    assert resp["file"]["title"] == "Report"
    assert resp["file"]["size"] == 8

    [url_call] = fake.calls_to("files.getUploadURLExternal")
    assert url_call.args["filename"] == "report.csv"
    assert url_call.args["length"] == "8"
    [upload] = fake.calls_to(UPLOAD_METHOD)
    assert upload.args["data"] == b"col\n1\n2\n"
    [done] = fake.calls_to("files.completeUploadExternal")
    assert done.args["channel_id"] == "C1" and done.args["thread_ts"] == parent["ts"]

    [f] = fake.files
    assert f.completed and f.data == b"col\n1\n2\n" and f.channels == ("C1",)
    shared = fake.messages("C1")[-1]
    assert shared.text == "here you go"
    assert shared.thread_ts == parent["ts"]
    assert shared.files == (f.file_id,)


# ---------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_error_next(fake: FakeSlack) -> None:
    client = make_client(fake)
    fake.error_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "channel_not_found"
    await client.chat_postMessage(channel="C1", text="x")  # only the next one fails
    assert [c.ok for c in fake.calls_to("chat.postMessage")] == [False, True]
    assert [m.text for m in fake.messages("C1")] == ["x"]


@pytest.mark.asyncio
async def test_rate_limit_without_retry_handler_raises(fake: FakeSlack) -> None:
    client = make_client(fake)  # default handlers only retry connection errors
    fake.rate_limit_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "7"
    assert fake.messages("C1") == []


@pytest.mark.asyncio
async def test_rate_limited_update_is_retried_and_lands_once(fake: FakeSlack) -> None:
    client = make_client(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    posted = await client.chat_postMessage(channel="C1", text="working")
    fake.rate_limit_next("chat.update", retry_after=1, times=1)

    started = time.monotonic()
    resp = await client.chat_update(channel="C1", ts=posted["ts"], text="finished")
    elapsed = time.monotonic() - started

    assert resp["ok"] is True
    assert elapsed >= 1.0  # honoured Retry-After (sdk adds 0..1s jitter)
    attempts = fake.calls_to("chat.update")
    assert [(c.status, c.error) for c in attempts] == [
        (429, "ratelimited"),
        (200, None),
    ]
    assert [(m.text, m.ts) for m in fake.messages("C1")] == [("finished", posted["ts"])]


# ---------------------------------------------------------------- events API


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = '{"type":"event_callback"}'
    now = int(time.time())
    headers = signed_headers(body, SECRET, timestamp=now, retry_num=1)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert headers["X-Slack-Retry-Num"] == "1"
    assert headers["X-Slack-Retry-Reason"] == "http_timeout"
    bad = signed_headers(body, SECRET, timestamp=now, bad_signature=True)
    assert not verifier.is_valid(body, bad["X-Slack-Request-Timestamp"], bad["X-Slack-Signature"])
    assert "X-Slack-Retry-Num" not in bad


def test_payload_builders() -> None:
    ev = event_callback(app_mention("U1", "C1", "<@UBOT> hi", "1.000001", "1.000000"))
    assert ev["type"] == "event_callback" and ev["team_id"] == "T1"
    assert ev["api_app_id"] == "A1" and ev["event_id"].startswith("Ev")
    assert ev["event"]["thread_ts"] == "1.000000"
    assert event_callback({}, event_id="Ev1")["event_id"] == "Ev1"
    assert event_callback({})["event_id"] != event_callback({})["event_id"]
    dm = message("U1", "D1", "hi", "1.000002", channel_type="im")
    assert dm["channel_type"] == "im" and "bot_id" not in dm
    assert message("UBOT", "C1", "x", "1.3", bot_id="BBOT")["bot_id"] == "BBOT"
    r = reaction_added("U1", "eyes", "C1", "1.000001")
    assert r["item"] == {"type": "message", "channel": "C1", "ts": "1.000001"}


def make_app(fake: FakeSlack, seen: list[dict[str, Any]]) -> AsyncApp:
    # Pass only `client` (it carries the token): giving `token=` as well makes bolt
    # log "As you gave `client` as well, `token` will be unused.". AsyncApp has no
    # token_verification_enabled flag; it calls auth.test lazily on the first
    # dispatched request, which hits the fake.
    app = AsyncApp(signing_secret=SECRET, client=make_client(fake))

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        seen.append(event)
        await say(text=f"got: {event['text']}", thread_ts=event["ts"])

    return app


@pytest.mark.asyncio
async def test_signed_app_mention_reaches_listener(fake: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = make_app(fake, seen)
    body = event_callback(app_mention("U1", "C1", "<@UBOT> deploy", "1699.000001"))

    resp = await deliver(app, body, signing_secret=SECRET)
    assert resp.status == 200

    # The listener runs after the ack (process_before_response=False): wait for it.
    posted = await fake.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"])
    assert posted[0].args["text"] == "got: <@UBOT> deploy"
    assert posted[0].args["team_id"] == "T1"  # bolt's per-request client adds it
    assert [c.method for c in fake.calls] == ["auth.test", "chat.postMessage"]
    assert len(seen) == 1
    [msg] = fake.messages("C1")
    assert msg.thread_ts == "1699.000001"


@pytest.mark.asyncio
async def test_bad_signature_is_rejected(fake: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = make_app(fake, seen)
    body = event_callback(app_mention("U1", "C1", "<@UBOT> deploy", "1699.000001"))

    bad = await deliver(app, body, signing_secret=SECRET, bad_signature=True)
    stale = await deliver(app, body, signing_secret=SECRET, timestamp=int(time.time()) - 600)
    assert bad.status == 401 and stale.status == 401

    # Prove nothing was scheduled: a good delivery afterwards is the only one seen.
    await deliver(app, body, signing_secret=SECRET, retry_num=1)
    await fake.wait_for(lambda calls: any(c.method == "chat.postMessage" for c in calls))
    assert len(seen) == 1
    assert len(fake.calls_to("chat.postMessage")) == 1


@pytest.mark.asyncio
async def test_own_bot_message_is_acked_but_ignored(fake: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    app = AsyncApp(signing_secret=SECRET, client=make_client(fake))

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(event)

    own = event_callback(message(BOT_USER_ID, "C1", "echo", "1.000001", bot_id=BOT_ID))
    human = event_callback(message("U1", "C1", "hi", "1.000002"))
    assert (await deliver(app, own, signing_secret=SECRET)).status == 200
    assert (await deliver(app, human, signing_secret=SECRET)).status == 200
    unhandled = event_callback(reaction_added("U1", "eyes", "C1", "1.000002"))
    assert (await deliver(app, unhandled, signing_secret=SECRET)).status == 404
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert [e["text"] for e in seen] == ["hi"]
