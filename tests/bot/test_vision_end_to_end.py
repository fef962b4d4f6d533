"""Pictures end to end: an image attached in the console (`orchestrator ask --attach`, a real
process) and in Discord (the stand, its CDN serving the bytes) goes to ORCHESTRATOR_VISION_MODEL
as base64 through the ollama client's `images`, and to that model only; what it saw is a
`view_image` step in the thread and in the store, and the main model reads it as a note after
the question. In Slack the same, with the bytes fetched with the bot token from Slack's file
host only. Without a vision model, attachments are named to the main model and nothing is
fetched or sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import tests.support.discord_stand as discord_stand
from bot.app import Services
from bot.settings import Settings
from tests.fakes.discord import TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.ollama import DEFAULT_MODEL, FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.cli import run_cli
from tests.support.discord_stand import APPROVER_ID, MENTION, posted, running, services_for
from tests.support.slack_stand import stands

VISION = "llava:7b"
# a real (tiny) PNG: the 1x1 transparent pixel, as a screenshot would be sent
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
SEEN = "A terminal: `cp: error writing '/var/lib/app/db': No space left on device`; df shows /var at 100%."
fake = discord_stand.fake


def vision_then_answer(fake_ollama: FakeOllama, answer: str) -> None:
    fake_ollama.models.append(VISION)
    fake_ollama.script(Reply(content=SEEN), Reply(content=answer))


def by_model(fake_ollama: FakeOllama, model: str) -> list[dict[str, Any]]:
    return [r for r in fake_ollama.chat_requests if r["model"] == model]


def images_sent(request: dict[str, Any]) -> list[str]:
    return [image for m in request["messages"] for image in m.get("images") or []]


def test_an_image_attached_in_the_console_is_seen_by_the_vision_model_only(
    cli_env: dict[str, str], fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    shot = tmp_path / "screenshot.png"
    shot.write_bytes(PNG)
    vision_then_answer(fake_ollama, "The copy fails because /var is full.")
    env = cli_env | {"ORCHESTRATOR_VISION_MODEL": VISION}
    done = run_cli(["ask", "--attach", str(shot), "why does this copy fail?"], env)
    assert done.returncode == 0, done.stderr
    [looked] = by_model(fake_ollama, VISION)
    assert images_sent(looked) == [base64.b64encode(PNG).decode()]
    assert "why does this copy fail?" in looked["messages"][-1]["content"]
    [main] = by_model(fake_ollama, DEFAULT_MODEL)
    assert images_sent(main) == []  # the main model gets words, never the picture
    question = main["messages"][-1]["content"]
    assert question.startswith("why does this copy fail?") and "screenshot.png (image/png" in question
    assert SEEN in question and VISION in question
    assert "view_image" in done.stdout + done.stderr and "No space left on device" in done.stdout + done.stderr
    assert "/var is full" in done.stdout
    audit = run_cli(["audit", "--json"], env)
    assert audit.returncode == 0, audit.stderr
    [viewed] = [row for row in json.loads(audit.stdout) if row["tool"] == "view_image"]
    assert json.loads(viewed["args_json"]) == {"file": "screenshot.png", "model": VISION}


def test_without_a_vision_model_an_attachment_is_named_and_nothing_is_sent(
    cli_env: dict[str, str], fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    shot, log = tmp_path / "graph.png", tmp_path / "app.log"
    shot.write_bytes(PNG)
    log.write_text("ERROR 42\n")
    fake_ollama.script(Reply(content="I cannot see the graph; describe it, or set a vision model."))
    done = run_cli(["ask", "--attach", str(shot), "--attach", str(log), "what does this graph show?"], cli_env)
    assert done.returncode == 0, done.stderr
    [main] = fake_ollama.chat_requests  # one model call: no vision step
    assert images_sent(main) == []
    question = main["messages"][-1]["content"]
    assert "graph.png (image/png, 70 B); it was not looked at: no vision model is configured" in question
    assert "app.log (application/octet-stream, 9 B)" in question
    assert "view_image" not in done.stdout


def test_a_missing_attachment_is_one_line_and_asks_nothing(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    done = run_cli(["ask", "--attach", "/nonexistent/shot.png", "why?"], cli_env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "orchestrator ask: --attach /nonexistent/shot.png: no such file "
        "(give the path of a file to send with the question)"
    ]
    assert fake_ollama.chat_requests == []


@pytest.mark.asyncio
async def test_an_image_attached_in_discord_is_fetched_and_seen_by_the_vision_model(
    fake: FakeDiscord, fake_ollama: FakeOllama, tmp_path: Path, workspace: Path
) -> None:
    vision_then_answer(fake_ollama, "The copy fails because /var is full.")
    settings: Settings = discord_stand.discord_settings(
        tmp_path / "data", fake_ollama, workspace, fake, ORCHESTRATOR_VISION_MODEL=VISION
    )
    services: Services
    async with services_for(settings) as services, running(services) as adapter:
        mid = await fake.push_message(
            TEXT_CHANNEL_ID,
            APPROVER_ID,
            f"{MENTION} why does this copy fail?",
            files=[("shot.png", "image/png", PNG), ("notes.txt", "text/plain", b"tried twice\n")],
        )
        await posted(fake, mid, "/var is full")
        await adapter.wait_idle()
        steps = [s.kind for s in await services.store.steps((await services.store.runs())[0].id)]

    assert len(fake.cdn_fetches) == 1  # the image was fetched; the text file was not
    [looked] = by_model(fake_ollama, VISION)
    assert images_sent(looked) == [base64.b64encode(PNG).decode()]
    [main] = by_model(fake_ollama, DEFAULT_MODEL)
    assert images_sent(main) == []
    question = main["messages"][-1]["content"]
    assert SEEN in question and "notes.txt (text/plain, 12 B)" in question
    progress = fake.messages(mid)[0]
    assert "🔧 `view_image(" in progress and "✅ view_image: A terminal:" in progress
    assert steps[:2] == ["ToolCall", "ToolResult"]  # stored before the model's first turn


@pytest.mark.asyncio
async def test_without_a_vision_model_discord_fetches_nothing(
    fake: FakeDiscord, fake_ollama: FakeOllama, tmp_path: Path, workspace: Path
) -> None:
    fake_ollama.script(Reply(content="I cannot see it."))
    settings = discord_stand.discord_settings(tmp_path / "data", fake_ollama, workspace, fake)
    async with services_for(settings) as services, running(services) as adapter:
        mid = await fake.push_message(TEXT_CHANNEL_ID, APPROVER_ID, MENTION, files=[("shot.png", "image/png", PNG)])
        await posted(fake, mid, "cannot see it")  # an image alone is a question too
        await adapter.wait_idle()
    assert fake.cdn_fetches == []
    [main] = fake_ollama.chat_requests
    assert "shot.png (image/png, 70 B); it was not looked at" in main["messages"][-1]["content"]


@pytest.mark.asyncio
async def test_an_image_attached_in_slack_is_fetched_with_the_bot_token_and_seen(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    vision_then_answer(fake_ollama, "The copy fails because /var is full.")
    async with FakeSlack() as slack, stands(slack, fake_ollama, tmp_path) as make:
        stand = await make(ORCHESTRATOR_VISION_MODEL=VISION)
        shot = slack.share_file("shot.png", "image/png", PNG)
        elsewhere = slack.share_file("other.png", "image/png", PNG) | {
            "url_private": "http://attacker.example/x.png",
            "url_private_download": "http://attacker.example/x.png",
        }
        ts = await stand.say("why does this copy fail?", files=[shot, elsewhere])
        await stand.answer(ts, contains="/var is full")
        thread = "\n".join(m.text for m in stand.bot_messages(ts))
        runs = [e for e in await stand.services.store.audit_entries() if e.tool == "view_image"]

    # the bot token went to Slack's file host, once; the file naming another host was not fetched
    assert slack.file_fetches == [(shot["id"], "Bearer xoxb-test")]
    [looked] = by_model(fake_ollama, VISION)
    assert images_sent(looked) == [base64.b64encode(PNG).decode()]
    [main] = by_model(fake_ollama, DEFAULT_MODEL)
    assert images_sent(main) == []
    question = main["messages"][-1]["content"]
    assert SEEN in question and "other.png (image/png, 70 B); it was not looked at" in question
    assert "view_image" in thread and "No space left on device" in thread
    assert [json.loads(r.args_json)["file"] for r in runs] == ["shot.png"]
