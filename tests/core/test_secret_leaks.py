"""The secret corpus of tests/core/test_redact.py through the real paths: nothing reaches the model or the chat.

(a) the redactor the application builds (shapes and the configured values);
(b) `read_file` → agent → the real `ollama` client → the Ollama stand-in: what the model was
    sent, the answer, the stored steps, runs, messages, audit and memory hold no secret;
(c) the same through the Slack adapter against the Slack stand-in: the recorded Web API
    calls hold no secret, also when the scripted model repeats the secrets in its answer.
"""

from __future__ import annotations

import json
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import Services, build_services, make_policy
from bot.settings import Settings
from core.events import Answer, Request, ToolResult
from core.memory import texts as memory_texts
from core.redact import REDACTED
from tests.core.test_redact import HEX, LOWER_DIGITS, SHAPES, fake
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.slack_stand import Stand, make_stand

# Configured values with no tell-tale shape: only redaction by value can catch them.
SIGNING_SECRET = fake(32, HEX, mark="")
DISCORD_TOKEN = "fake" + fake(36, LOWER_DIGITS, mark="")
DB_PASSWORD = "Fake/db:" + fake(12, string.ascii_letters, mark="")
CONFIGURED = {
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "DISCORD_TOKEN": DISCORD_TOKEN,
    "DATABASE_URL": f"postgresql+psycopg://bot:{DB_PASSWORD}@db1:5432/orchestrator",
}
BARE_VALUES = f"signing {SIGNING_SECRET}\ndiscord {DISCORD_TOKEN}\ndb {DB_PASSWORD}\n"

SECRETS_FILE = "\n\n".join(shape.text for shape in SHAPES) + "\n\n" + BARE_VALUES
# A secret spanning lines (a PEM body) is looked for line by line: stores escape newlines.
NEEDLES = sorted(
    {
        line.strip()
        for value in [*(s for shape in SHAPES for s in shape.secrets), SIGNING_SECRET, DISCORD_TOKEN, DB_PASSWORD]
        for line in value.splitlines()
        if len(line.strip()) >= 8
    }
)


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def request(text: str) -> Request:
    return Request(platform="console", user_id="tester", channel="console", thread="t1", text=text)


def read_call() -> Reply:
    return Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "secrets.txt", "max_bytes": 200_000}}])


def test_the_corpus_and_the_file() -> None:
    assert len(SHAPES) >= 50
    assert len(NEEDLES) >= len(SHAPES)
    assert len(SECRETS_FILE) < 100_000  # read in full, never cut (a cut would hide a leak)


# ---- (a) the redactor the application builds --------------------------------------------------


def test_the_application_redactor_removes_every_shape_and_every_configured_value(tmp_path: Path) -> None:
    settings = Settings(ORCHESTRATOR_DATA_DIR=str(tmp_path), **CONFIGURED)
    redact = make_policy(settings).redact
    assert leaks(redact(SECRETS_FILE)) == []
    for shape in SHAPES:
        assert leaks(redact(shape.text)) == [], shape.kind


def test_every_secret_setting_is_known_to_the_redactor(tmp_path: Path) -> None:
    settings = Settings(
        ORCHESTRATOR_DATA_DIR=str(tmp_path),
        SLACK_BOT_TOKEN="xoxb-" + fake(20),
        SLACK_APP_TOKEN="xapp-" + fake(20),
        hosts={"web1": {"docker": "tcp://ops:" + "FakeDockerPw9" + "@web1:2376"}},
        **CONFIGURED,
    )
    known = set(settings.secrets())
    assert {SIGNING_SECRET, DISCORD_TOKEN, DB_PASSWORD, "FakeDockerPw9"} <= known
    assert settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value() in known
    assert settings.slack_app_token is not None and settings.slack_app_token.get_secret_value() in known
    # a URL-encoded database password is redacted in both spellings
    encoded = Settings(ORCHESTRATOR_DATA_DIR=str(tmp_path), DATABASE_URL="postgresql://bot:Fake%40pw%2F9x@db/x")
    redact = make_policy(encoded).redact
    assert redact("raw Fake@pw/9x, encoded Fake%40pw%2F9x") == f"raw {REDACTED}, encoded {REDACTED}"


# ---- (b) read_file → agent → model ------------------------------------------------------------


def _settings(tmp_path: Path, fake_ollama: FakeOllama, workspace: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(workspace),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "tester",
        "ORCHESTRATOR_OUTPUT_CAP": 200_000,
        "ORCHESTRATOR_MEMORY": True,
        "ORCHESTRATOR_MEMORY_EXTRACT": True,
        "ORCHESTRATOR_EMBEDDING": "offline",
        **{k: v for k, v in CONFIGURED.items() if k != "DATABASE_URL"},  # the store stays SQLite
        **extra,
    }
    return Settings(**values)


async def _everything_stored(services: Services) -> str:
    """Runs, steps, messages, audit rows and memories, as one text."""
    parts: list[str] = []
    for run in await services.store.runs(limit=100):
        parts.append(run.model_dump_json())
        assert run.id is not None
        parts += [step.payload_json for step in await services.store.steps(run.id)]
        parts += [message.model_dump_json() for message in await services.store.history(run.conversation_id)]
    parts += [entry.model_dump_json() for entry in await services.store.audit_entries(limit=1000)]
    if services.memory is not None:
        await services.memory.drain()
        parts += [json.dumps([m.text, m.extra], default=str) for m in services.memory.store.list()]
    return "\n".join(parts)


@pytest.mark.asyncio
async def test_a_file_of_secrets_read_by_the_model_leaks_nothing(
    tmp_path: Path, fake_ollama: FakeOllama, workspace: Path
) -> None:
    (workspace / "secrets.txt").write_text(SECRETS_FILE)
    echoed = [{"text": f"the {shape.kind} is {shape.text}", "about": "secrets"} for shape in SHAPES[:20]]
    fake_ollama.script(
        read_call(),
        Reply(content="Here is the file again:\n" + SECRETS_FILE),  # as if the model had seen it raw
        Reply(content="Noted."),  # the second run: a statement, so facts are extracted after it
        Reply(content=json.dumps({"facts": echoed})),  # the memory extraction, as if it echoed the secrets
    )
    services = await build_services(_settings(tmp_path, fake_ollama, workspace))
    services.policy.redact.add_secret(DB_PASSWORD)  # the store stays SQLite: add the database password by hand
    try:
        events = [ev async for ev in services.agent.run(request("The ops notes live in secrets.txt. Read them."))]
        [result] = [ev for ev in events if isinstance(ev, ToolResult)]
        assert result.ok and not result.truncated
        assert result.output.count(REDACTED) >= len(SHAPES)
        answer = events[-1]
        assert isinstance(answer, Answer)
        assert leaks(answer.text) == []
        # a run answered with a tool call is a request: no extraction after it; a statement has one
        said = request("The ops notes for the shop live in secrets.txt on this host.")
        assert isinstance([ev async for ev in services.agent.run(said)][-1], Answer)
        stored = await _everything_stored(services)
    finally:
        await services.close()
    assert len(fake_ollama.chat_requests) == 4  # the read, the answer, the statement's answer, the extraction
    for sent in fake_ollama.chat_requests:
        assert leaks(json.dumps(sent, ensure_ascii=False)) == []
    assert leaks(stored) == []
    assert "secrets" in stored  # the extracted facts were stored, redacted


@pytest.mark.asyncio
async def test_a_fact_that_is_only_a_secret_is_not_remembered(
    tmp_path: Path, fake_ollama: FakeOllama, workspace: Path
) -> None:
    password = fake(14, mark="Fake") + "9!"
    fake_ollama.script(
        Reply(tool_calls=[{"name": "memory_store", "arguments": {"fact": f"the password is {password}"}}]),
        Reply(tool_calls=[{"name": "memory_store", "arguments": {"fact": f"db1 root password: {password}"}}]),
        Reply(content="Done."),
    )
    services = await build_services(_settings(tmp_path, fake_ollama, workspace))
    try:
        events = [ev async for ev in services.agent.run(request("remember these"))]
        first, second = [ev for ev in events if isinstance(ev, ToolResult)]
        assert not first.ok and memory_texts.FACT_ONLY_SECRET in first.output
        assert second.ok and f"db1 root password: {REDACTED}" in second.output
        assert services.memory is not None
        assert [m.text for m in services.memory.store.list()] == [f"db1 root password: {REDACTED}"]
    finally:
        await services.close()


@pytest.mark.asyncio
async def test_a_secret_in_tool_call_arguments_is_not_stored(
    tmp_path: Path, fake_ollama: FakeOllama, workspace: Path
) -> None:
    password = fake(14, mark="Fake") + "9!"
    fake_ollama.script(
        Reply(tool_calls=[{"name": "memory_store", "arguments": {"fact": f"db1 root password: {password}"}}]),
        Reply(content="Done."),
    )
    services = await build_services(_settings(tmp_path, fake_ollama, workspace))
    try:
        [ev async for ev in services.agent.run(request("remember it"))]
        stored = await _everything_stored(services)
    finally:
        await services.close()
    assert password not in stored


# ---- (c) the same through Slack -------------------------------------------------------------


def _chat_calls(stand: Stand) -> str:
    return "\n".join(json.dumps(call.args, ensure_ascii=False, default=str) for call in stand.slack.calls)


@pytest_asyncio.fixture
async def stand(fake_ollama: FakeOllama, workspace: Path, tmp_path: Path) -> AsyncIterator[Stand]:
    """The Slack adapter on the stand-ins (tests/support/slack_stand.py), reading from `workspace`."""
    (workspace / "secrets.txt").write_text(SECRETS_FILE)
    async with FakeSlack() as slack:
        stand = await make_stand(
            slack,
            fake_ollama,
            tmp_path / "data",
            ORCHESTRATOR_FILE_ROOTS=str(workspace),
            ORCHESTRATOR_OUTPUT_CAP=200_000,
            DISCORD_TOKEN=DISCORD_TOKEN,
        )
        # the stand signs events with its own signing secret and keeps SQLite: these two stay configured values
        stand.services.policy.redact.add_secret(SIGNING_SECRET)
        stand.services.policy.redact.add_secret(DB_PASSWORD)
        try:
            yield stand
        finally:
            await stand.adapter.close()
            await stand.services.close()


@pytest.mark.asyncio
async def test_slack_thread_shows_no_secret_when_the_model_repeats_them(stand: Stand) -> None:
    stand.ollama.script(read_call(), Reply(content="The file says:\n" + SECRETS_FILE))
    ts = await stand.say("what is in secrets.txt?")
    await stand.answer(ts, contains="The file says")
    posted = _chat_calls(stand)
    assert REDACTED in posted
    assert leaks(posted) == []
    assert [m for m in stand.bot_messages(ts) if leaks(m.text)] == []
    for sent in stand.ollama.chat_requests:
        assert leaks(json.dumps(sent, ensure_ascii=False)) == []


@pytest.mark.asyncio
async def test_slack_thread_shows_no_secret_the_model_thinks_aloud(stand: Stand) -> None:
    thinking = " ".join(shape.text for shape in SHAPES if "\n" not in shape.text)
    stand.ollama.script(
        Reply(thinking=thinking, tool_calls=read_call().tool_calls),
        Reply(thinking=thinking, content="Read it."),
    )
    ts = await stand.say("what is in secrets.txt?")
    await stand.answer(ts, contains="Read it.")
    assert leaks(_chat_calls(stand)) == []
