"""The fake must satisfy the real `ollama` client, or it proves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
import pytest_asyncio

from tests.fakes.ollama import FakeOllama, Reply, hash_embedding

MODEL = "qwen3:8b"
ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "list the files please"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "ls",
        "description": "List a directory.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[ollama.Client]:
    with ollama.Client(host=fake.url) as sync_client:
        yield sync_client


@pytest_asyncio.fixture
async def aclient(fake: FakeOllama) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama.AsyncClient(host=fake.url) as async_client:
        yield async_client


def test_sync_chat_non_streaming(fake: FakeOllama, client: ollama.Client) -> None:
    fake.script(
        Reply(
            content="Here you go.",
            thinking="User wants files.",
            tool_calls=[{"name": "ls", "arguments": {"path": "/tmp"}}],
        )
    )
    response = client.chat(MODEL, USER, think=True)

    assert response.done and response.done_reason == "stop"
    assert response.message.role == "assistant"
    assert response.message.content == "Here you go."
    assert response.message.thinking == "User wants files."
    [call] = response.message.tool_calls or []
    assert call.function.name == "ls"
    assert call.function.arguments == {"path": "/tmp"}
    assert response.eval_count and response.prompt_eval_count == 4


@pytest.mark.asyncio
async def test_async_chat_non_streaming_and_default_reply(fake: FakeOllama, aclient: ollama.AsyncClient) -> None:
    fake.script("first")

    first = await aclient.chat(MODEL, USER)
    second = await aclient.chat(MODEL, USER)

    assert first.message.content == "first"
    assert second.message.content == "(no scripted reply)"
    assert second.message.tool_calls is None and second.message.thinking is None


@pytest.mark.asyncio
async def test_async_chat_streaming(fake: FakeOllama, aclient: ollama.AsyncClient) -> None:
    fake.script(
        Reply(
            content="The directory has three files.",
            thinking="I should call ls first.",
            tool_calls=[{"name": "ls", "arguments": {"path": "."}}],
        )
    )
    parts = [p async for p in await aclient.chat(MODEL, USER, stream=True)]

    assert len(parts) > 3, "content should arrive in several chunks"
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.thinking or "" for p in parts) == ("I should call ls first.")
    assert "".join(p.message.content or "" for p in parts) == ("The directory has three files.")
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("ls", {"path": "."})]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count


def test_sync_chat_streaming(fake: FakeOllama, client: ollama.Client) -> None:
    fake.script(Reply(content="one two three"))
    parts = [p.message.content for p in client.chat(MODEL, USER, stream=True)]
    assert parts == ["one ", "two ", "three", ""]


def test_streaming_content_type(fake: FakeOllama) -> None:
    body = {"model": MODEL, "messages": USER, "stream": True}
    with httpx.Client(base_url=fake.url) as http:
        response = http.post("/api/chat", json=body)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["done"] is True


@pytest.mark.asyncio
async def test_requests_are_recorded_with_tools(fake: FakeOllama, aclient: ollama.AsyncClient) -> None:
    await aclient.chat(MODEL, USER, tools=[TOOL], options={"temperature": 0})
    await aclient.list()

    [chat] = fake.chat_requests
    assert chat["model"] == MODEL and chat["messages"] == USER
    assert chat["tools"][0]["function"]["name"] == "ls"
    assert chat["options"] == {"temperature": 0}
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("POST", "/api/chat"),
        ("GET", "/api/tags"),
    ]


def test_callable_reply_sees_request(fake: FakeOllama, client: ollama.Client) -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Reply(content=f"{len(body.get('tools', []))} tools")

    fake.script(echo)
    response = client.chat(MODEL, USER, tools=[TOOL])
    assert response.message.content == "1 tools"
    assert fake.pending_replies == 0


@pytest.mark.asyncio
async def test_list_show_and_version(fake: FakeOllama, aclient: ollama.AsyncClient) -> None:
    fake.models.append("nomic-embed-text:latest")
    fake.capabilities["nomic-embed-text:latest"] = ["embedding"]

    listed = await aclient.list()
    shown = await aclient.show(MODEL)
    embedder = await aclient.show("nomic-embed-text")

    assert [m.model for m in listed.models] == [MODEL, "nomic-embed-text:latest"]
    assert listed.models[0].details and listed.models[0].details.family == "qwen3"
    assert shown.capabilities == ["completion", "tools", "thinking"]
    assert shown.modelinfo and shown.modelinfo["qwen3.context_length"] == 40960
    assert embedder.capabilities == ["embedding"]
    async with httpx.AsyncClient(base_url=fake.url) as http:
        assert (await http.get("/api/version")).json()["version"]
        assert (await http.get("/")).text == "Ollama is running"


def test_embed_is_deterministic_and_overridable(fake: FakeOllama, client: ollama.Client) -> None:
    single = client.embed(MODEL, "hello")
    batch = client.embed(MODEL, ["hello", "world"])
    assert single.embeddings[0] == batch.embeddings[0] == hash_embedding("hello")
    assert batch.embeddings[0] != batch.embeddings[1]
    assert len(client.embed(MODEL, "x", dimensions=32).embeddings[0]) == 32

    fake.embed_fn = lambda text: [float(len(text))]
    assert client.embed(MODEL, ["abc"]).embeddings == [[3.0]]


@pytest.mark.asyncio
async def test_fail_next_raises_response_error(fake: FakeOllama, aclient: ollama.AsyncClient) -> None:
    fake.script("after the failure")
    fake.fail_next(status=503, body="overloaded")

    with pytest.raises(ollama.ResponseError) as info:
        await aclient.chat(MODEL, USER)
    assert info.value.status_code == 503
    assert info.value.error == "overloaded"

    fake.fail_next()
    with pytest.raises(ollama.ResponseError) as info:
        [p async for p in await aclient.chat(MODEL, USER, stream=True)]
    assert info.value.status_code == 500

    # The failures did not eat the scripted reply, so a retry gets it.
    assert (await aclient.chat(MODEL, USER)).message.content == "after the failure"


def test_unknown_model_is_404(fake: FakeOllama, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat("llama9:70b", USER)
    assert info.value.status_code == 404
    assert info.value.error == "model 'llama9:70b' not found"
    with pytest.raises(ollama.ResponseError):
        client.show("llama9:70b")

    fake.check_models = False
    assert client.chat("llama9:70b", USER).message.content


def test_untagged_model_means_latest(fake: FakeOllama, client: ollama.Client) -> None:
    fake.models.append("llama3.2:latest")
    assert client.chat("llama3.2", USER).done


@pytest.mark.asyncio
async def test_delay_is_applied(fake: FakeOllama) -> None:
    fake.delay = 0.3
    async with ollama.AsyncClient(host=fake.url, timeout=0.1) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.chat(MODEL, USER)


def test_standalone_entry_point(tmp_path: Path) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["scripted", {"content": "second"}]))
    command = [sys.executable, "-m", "tests.fakes.ollama", "--script", str(script)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            with ollama.Client(host=url) as client:
                assert client.chat(MODEL, USER).message.content == "scripted"
                assert client.chat(MODEL, USER).message.content == "second"
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
