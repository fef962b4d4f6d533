"""A scriptable stand-in for the Ollama HTTP API.

It runs a real aiohttp server on 127.0.0.1 in a background thread with its own
event loop, so the same instance can serve async tests, sync clients and a CLI
running as a subprocess.  Response shapes follow what the official `ollama`
client (0.6.x) parses, so tests exercise the real client end to end.

    with FakeOllama() as fake:
        fake.script(Reply(content="hi"), Reply(tool_calls=[{"name": "ls"}]))
        client = ollama.Client(host=fake.url)

Faults for the next chat request: `fail_next` (an HTTP error), `garbage_next` (HTTP 200
with a body that is not JSON), `cut_next` (the stream ends inside a JSON line, or
cleanly but without the `done` chunk) and `stall_next` (a pause before the first
chunk or between two chunks).

Standalone, for manual CLI tries (the URL is the first stdout line):

    python -m tests.fakes.ollama --port 0 --script replies.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["DEFAULT_MODEL", "FakeOllama", "Reply", "ReplySource", "hash_embedding"]

DEFAULT_MODEL = "qwen3:8b"
DEFAULT_CAPABILITIES = ("completion", "tools", "thinking")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """One assistant turn.  `tool_calls` items are `{"name", "arguments"}`.

    Streamed, thinking and content go out a word per chunk unless `content_pieces` /
    `thinking_pieces` give the exact chunks (to split inside a marker such as `<|channel|>`);
    `chunk_delay` (seconds between two chunks of this reply) overrides the server's.
    """

    content: str = ""
    thinking: str = ""
    tool_calls: Sequence[Mapping[str, Any]] = ()
    done_reason: str = "stop"
    content_pieces: Sequence[str] | None = None
    thinking_pieces: Sequence[str] | None = None
    chunk_delay: float | None = None

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any]) -> Reply:
        if isinstance(data, str):
            return cls(content=data)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class _Garbage:
    body: str
    content_type: str


@dataclass(frozen=True, slots=True)
class _Cut:
    after: int
    mid_line: bool


@dataclass(frozen=True, slots=True)
class _Stall:
    seconds: float
    after: int


_Fault = _Garbage | _Cut | _Stall


# A callable gets the raw /api/chat body, so it can branch on messages/tools.
ReplySource = Reply | str | Callable[[dict[str, Any]], Reply | str]
EmbedFn = Callable[[str], Sequence[float]]


def hash_embedding(text: str, dim: int = 8) -> list[float]:
    """A stable unit vector per text, so similarity tests are reproducible."""
    raw = b""
    counter = 0
    while len(raw) < dim:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    vec = [byte / 127.5 - 1.0 for byte in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _normalize_model(name: str) -> str:
    # Ollama treats "qwen3" and "qwen3:latest" as the same model.
    return name if ":" in name else f"{name}:latest"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _pieces(text: str) -> list[str]:
    # Split before each word so the pieces concatenate back to the exact text.
    return [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]


def _tool_call(call: Mapping[str, Any], index: int) -> dict[str, Any]:
    if "function" in call:  # already in wire shape
        return dict(call)
    return {
        "function": {
            "index": index,
            "name": call["name"],
            "arguments": dict(call.get("arguments", {})),
        }
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class FakeOllama:
    """Scriptable Ollama server; attributes may be changed while it runs."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = (DEFAULT_MODEL,),
    ) -> None:
        self.host = host
        self.port = port
        self.models: list[str] = list(models)
        # Per-model override of /api/show capabilities; "x" means "x:latest".
        self.capabilities: dict[str, list[str]] = {}
        self.context_length = 40960
        self.version = "0.12.6"
        self.default_reply: ReplySource = Reply(content="(no scripted reply)")
        self.embed_fn: EmbedFn | None = None
        self.embed_dim = 8
        self.delay = 0.0  # seconds before a chat response starts
        self.chunk_delay = 0.0  # seconds between streamed chunks
        self.check_models = True  # 404 for models not in `models`, like Ollama

        self._lock = threading.Lock()
        self._replies: deque[ReplySource] = deque()
        self._failures: deque[tuple[int, str]] = deque()
        self._faults: deque[_Fault] = deque()
        self._stalls: set[asyncio.Event] = set()  # touched only on the server's loop
        self._requests: list[dict[str, Any]] = []
        # time.time() when the first chunk of each streamed chat reply was written, in order
        self.first_chunk_times: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- scripting -------------------------------------------------------

    def script(self, *replies: ReplySource) -> None:
        """Queue replies; each /api/chat request consumes one, in order."""
        with self._lock:
            self._replies.extend(replies)

    def fail_next(self, status: int = 500, body: str = "injected failure") -> None:
        """Fail the next chat request with `{"error": body}`.

        Scripted replies are left untouched, so a retry gets the next one.
        """
        with self._lock:
            self._failures.append((status, body))

    def garbage_next(
        self, body: str = "<html><body>502 Bad Gateway</body></html>", *, content_type: str = "text/html"
    ) -> None:
        """Answer the next chat request with HTTP 200 and `body`, which is not Ollama's JSON
        (a proxy's error page, say).  Scripted replies are left untouched."""
        with self._lock:
            self._faults.append(_Garbage(body, content_type))

    def cut_next(self, *, after: int = 1, mid_line: bool = True) -> None:
        """Stream the next reply's first `after` chunks, then end the stream without `done`:
        inside the next JSON line (`mid_line`) or cleanly between two lines.  Consumes the
        scripted reply; a non-streamed reply is cut in the middle of its JSON body."""
        with self._lock:
            self._faults.append(_Cut(after, mid_line))

    def stall_next(self, seconds: float, *, after: int = 0) -> None:
        """Pause the next reply for `seconds` after `after` chunks (0: before anything is
        sent, like a model still loading), then go on.  `release()` ends a pause early."""
        with self._lock:
            self._faults.append(_Stall(seconds, after))

    def release(self) -> None:
        """End every pause `stall_next` started (stop() and reset() do it too)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._release_stalls)

    def _release_stalls(self) -> None:
        for event in self._stalls:
            event.set()

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of `{"method", "path", "json"}` for every request."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["path"] == "/api/chat"]

    def reset(self) -> None:
        """Forget requests, scripted replies and failures (for shared fakes)."""
        with self._lock:
            self._replies.clear()
            self._failures.clear()
            self._faults.clear()
            self._requests.clear()
            self.first_chunk_times.clear()
        self.release()

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeOllama already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-ollama", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
            self.port = future.result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        self.release()
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> int:
        app = web.Application(middlewares=[self._record])
        app.add_routes(
            [
                web.get("/", self._root),
                web.get("/api/version", self._version),
                web.get("/api/tags", self._tags),
                web.post("/api/show", self._show),
                web.post("/api/chat", self._chat),
                web.post("/api/embed", self._embed),
            ]
        )
        # A short shutdown timeout keeps stop() quick if a test abandons a
        # slow stream mid-way.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        return int(self._runner.addresses[0][1])

    # -- handlers --------------------------------------------------------

    @web.middleware
    async def _record(
        self,
        request: web.Request,
        handler: Handler,
    ) -> web.StreamResponse:
        raw = await request.read()  # cached, handlers can read it again
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._requests.append({"method": request.method, "path": request.path, "json": body})
        return await handler(request)

    def _missing_model(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return _error(400, "invalid request body")
        model = body.get("model")
        if not model:
            return _error(400, "model is required")
        known = {_normalize_model(m) for m in self.models}
        if self.check_models and _normalize_model(model) not in known:
            return _error(404, f"model '{model}' not found")
        return None

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    def _details(self, model: str) -> dict[str, Any]:
        family = model.split(":")[0].split("/")[-1]
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.2B",
            "quantization_level": "Q4_K_M",
        }

    def _capabilities(self, model: str) -> list[str]:
        wanted = _normalize_model(model)
        for name, caps in self.capabilities.items():
            if _normalize_model(name) == wanted:
                return list(caps)
        return list(DEFAULT_CAPABILITIES)

    async def _tags(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 5_000_000_000,
                "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": self._details(name),
            }
            for name in self.models
        ]
        return web.json_response({"models": models})

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        if error := self._missing_model(body):
            return error
        model = body["model"]
        details = self._details(model)
        arch = details["family"]
        return web.json_response(
            {
                "modelfile": f"FROM {model}\n",
                "parameters": "temperature 0.6",
                "template": "{{ .Prompt }}",
                "details": details,
                "model_info": {
                    "general.architecture": arch,
                    f"{arch}.context_length": self.context_length,
                },
                "capabilities": self._capabilities(model),
                "modified_at": "2025-01-01T00:00:00Z",
            }
        )

    async def _embed(self, request: web.Request) -> web.Response:
        body = await request.json()
        if error := self._missing_model(body):
            return error
        texts = body.get("input", "")
        texts = [texts] if isinstance(texts, str) else list(texts)
        dim = body.get("dimensions") or self.embed_dim
        embed = self.embed_fn or (lambda text: hash_embedding(text, dim))
        return web.json_response(
            {
                "model": body["model"],
                "embeddings": [list(embed(text)) for text in texts],
                "total_duration": 1_000_000,
                "load_duration": 100_000,
                "prompt_eval_count": sum(len(t.split()) for t in texts),
            }
        )

    async def _pause(self, seconds: float) -> None:
        event = asyncio.Event()
        self._stalls.add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._stalls.discard(event)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            source = self._replies.popleft() if self._replies else self.default_reply
        if callable(source):
            source = source(body)
        return Reply(content=source) if isinstance(source, str) else source

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return _error(*failure)
        if error := self._missing_model(body):
            return error
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if isinstance(fault, _Garbage):
            return web.Response(text=fault.body, content_type=fault.content_type)
        try:
            reply = self._next_reply(body)
        except Exception as exc:
            # A bug in a test's callable should read as a clear ResponseError,
            # not aiohttp's generic HTML 500.
            log.error("reply callable failed:\n%s", traceback.format_exc())
            return _error(500, f"fake reply callable raised {exc!r}")
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(fault, _Stall) and fault.after <= 0:
            await self._pause(fault.seconds)

        model = body["model"]
        calls = [_tool_call(c, i) for i, c in enumerate(reply.tool_calls)]
        pieces = _pieces(reply.thinking) + _pieces(reply.content)
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        final = {
            "done": True,
            "done_reason": reply.done_reason,
            "total_duration": 2_000_000 + 1_000 * len(pieces),
            "load_duration": 100_000,
            "prompt_eval_count": prompt_words,
            "prompt_eval_duration": 500_000,
            "eval_count": max(len(pieces), 1),
            "eval_duration": 1_000 * len(pieces),
        }

        if not body.get("stream", True):
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if reply.thinking:
                message["thinking"] = reply.thinking
            if calls:
                message["tool_calls"] = calls
            head = {"model": model, "created_at": _now(), "message": message}
            if isinstance(fault, _Cut):
                text = json.dumps(head | final)
                return web.Response(text=text[: len(text) // 2], content_type="application/json")
            return web.json_response(head | final)

        def chunk(**fields: Any) -> dict[str, Any]:
            message = {"role": "assistant", "content": ""} | fields
            return {
                "model": model,
                "created_at": _now(),
                "message": message,
                "done": False,
            }

        thinking = reply.thinking_pieces if reply.thinking_pieces is not None else _pieces(reply.thinking)
        content = reply.content_pieces if reply.content_pieces is not None else _pieces(reply.content)
        chunks = [chunk(thinking=p) for p in thinking if p]
        chunks += [chunk(content=p) for p in content if p]
        if calls:
            chunks.append(chunk(tool_calls=calls))
        chunks.append(chunk() | final)

        if isinstance(fault, _Cut):
            # Never past the last chunk: the point is a stream without `done`.
            cut = min(max(fault.after, 0), len(chunks) - 1)
            tail = json.dumps(chunks[cut]).encode()
            lines = [json.dumps(item).encode() + b"\n" for item in chunks[:cut]]
            if fault.mid_line:
                lines.append(tail[: len(tail) // 2])
        else:
            lines = [json.dumps(item).encode() + b"\n" for item in chunks]

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        try:
            await response.prepare(request)
            pause = self.chunk_delay if reply.chunk_delay is None else reply.chunk_delay
            for n, line in enumerate(lines, start=1):
                await response.write(line)
                if n == 1:
                    with self._lock:
                        self.first_chunk_times.append(time.time())
                if isinstance(fault, _Stall) and n == fault.after:
                    await self._pause(fault.seconds)
                if pause and n < len(lines):
                    await asyncio.sleep(pause)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client gave up (its timeout, or a test that stopped reading)
        return response


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Ollama server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--script",
        type=Path,
        help="JSON list of replies: strings or {content, thinking, tool_calls}",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="extra model to list (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    fake = FakeOllama(host=args.host, port=args.port)
    fake.models += args.model
    if args.script:
        items = json.loads(args.script.read_text())
        fake.script(*(Reply.from_json(item) for item in items))

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with fake:
        # Callers parse this first line to find the server.
        print(fake.url, flush=True)
        while not stopping.wait(0.5):
            pass


if __name__ == "__main__":
    _main()
