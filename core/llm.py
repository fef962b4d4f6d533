"""The LLM port and its Ollama implementation (the official `ollama.AsyncClient`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, cast

import httpx
import ollama

from core.errors import RuntimeFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LLMToolCall:
    name: str
    arguments: Any  # usually a dict; a string when the model sent something odd


@dataclass(frozen=True, slots=True)
class LLMReply:
    content: str = ""
    thinking: str = ""
    tool_calls: tuple[LLMToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class LLMChunk:
    """A piece of a reply as it streams: the deltas since the last chunk."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[LLMToolCall, ...] = ()


class LLMError(RuntimeFailure):
    """The model could not be reached, refused the request or sent a broken reply. The message is for people."""


class LLM(Protocol):
    def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncGenerator[LLMChunk | LLMReply, None]:
        """The reply's chunks as they arrive, then the whole reply (last, once the model is done).
        Raises `LLMError`; a stream that ends without the whole reply is an error, never a reply."""
        ...

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply: ...


class WholeReplies:
    """For a model that cannot stream (a scripted one, in benches): `stream` is the whole reply at once."""

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        raise NotImplementedError

    async def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncGenerator[LLMChunk | LLMReply, None]:
        yield await self.chat(messages, tools)


async def whole_reply(stream: AsyncIterator[LLMChunk | LLMReply]) -> LLMReply:
    """The reply a stream ends with."""
    async for item in stream:
        if isinstance(item, LLMReply):
            return item
    raise LLMError("the model's reply ended without being complete")


# Defaults of the three reply limits (docs/configuration.md, "Model").
DEFAULT_TIMEOUT = 300.0  # a whole reply
DEFAULT_FIRST_TOKEN_TIMEOUT = 180.0  # request sent -> first streamed chunk (model load and prompt included)
DEFAULT_IDLE_TIMEOUT = 60.0  # between two streamed chunks
CONNECT_TIMEOUT = 15.0

# What the ollama client raises when a line of the reply is not its JSON: json's
# JSONDecodeError and pydantic's ValidationError are ValueErrors; a JSON line that is not
# an object fails in `part.get` or `ChatResponse(**part)`.
_GARBAGE = (ValueError, AttributeError, TypeError)


class _Limit(Enum):
    FIRST_TOKEN = "first token"
    IDLE = "between tokens"
    WHOLE = "whole reply"


class OllamaLLM:
    """Streams a chat from Ollama with native tool calling and, where supported, thinking.

    A reply has three limits: `first_token_timeout` from the request to the first streamed
    chunk, `idle_timeout` between two chunks, and `timeout` for the whole reply. A reply
    counts only once Ollama marks it `done`; anything else is an `LLMError`, never a fragment.
    """

    def __init__(
        self,
        *,
        host: str,
        model: str,
        timeout: float = DEFAULT_TIMEOUT,
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        think: bool | None = True,
    ) -> None:
        self.host = host
        self.model = model
        self.timeout = timeout
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.think = think
        # httpx's per-read limit stays as a backstop; the limits above are enforced around
        # each chunk in `_next` and never outlast `timeout`. A host that does not accept the
        # connection is a wrong OLLAMA_HOST, not a slow model: say so soon.
        self._client = ollama.AsyncClient(
            host=host, timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
        )

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        async with contextlib.aclosing(self.stream(messages, tools)) as items:
            return await whole_reply(items)

    async def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncGenerator[LLMChunk | LLMReply, None]:
        started = False
        try:
            try:
                async with contextlib.aclosing(self._stream(messages, tools, self.think)) as items:
                    async for item in items:
                        started = True
                        yield item
            except ollama.ResponseError as exc:
                if started or not (self.think and exc.status_code == 400 and "think" in str(exc.error).lower()):
                    raise
                log.info("model %s does not support thinking; continuing without it", self.model)
                self.think = None
                async with contextlib.aclosing(self._stream(messages, tools, None)) as items:
                    async for item in items:
                        yield item
        except ollama.ResponseError as exc:
            raise self._explain(exc) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise LLMError(
                f"Ollama at {self.host} did not answer within {self.timeout:g} s "
                "(raise ORCHESTRATOR_LLM_TIMEOUT, or use a smaller model)"
            ) from exc
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def _stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], think: bool | None
    ) -> AsyncGenerator[LLMChunk | LLMReply, None]:
        content: list[str] = []
        thinking: list[str] = []
        calls: list[LLMToolCall] = []
        deadline = asyncio.get_running_loop().time() + self.timeout
        # The client sends nothing until the first chunk is asked for, so the first-token
        # limit covers connecting, loading the model and reading the prompt.
        stream = cast(
            AsyncGenerator[ollama.ChatResponse, None],
            await self._client.chat(
                model=self.model,
                messages=list(messages),
                tools=list(tools) or None,
                stream=True,
                think=think,
            ),
        )
        received = 0
        async with contextlib.aclosing(stream):
            while (chunk := await self._next(stream, received=received, deadline=deadline)) is not None:
                received += 1
                msg = chunk.message
                new_calls = tuple(
                    LLMToolCall(call.function.name, dict(call.function.arguments or {}))
                    for call in msg.tool_calls or ()
                )
                if msg.content:
                    content.append(msg.content)
                if msg.thinking:
                    thinking.append(msg.thinking)
                calls.extend(new_calls)
                if msg.content or msg.thinking or new_calls:
                    yield LLMChunk(msg.content or "", msg.thinking or "", new_calls)
                if chunk.done:
                    yield LLMReply("".join(content), "".join(thinking), tuple(calls))
                    return
        if not received:
            raise LLMError(
                f"Ollama at {self.host} sent an empty reply for model {self.model!r}; "
                "check that OLLAMA_HOST points at Ollama itself, not at a proxy or another service"
            )
        raise LLMError(
            f"the model's reply was cut off: Ollama at {self.host} ended the stream before {self.model} "
            "finished; ask again, and see Ollama's log if it keeps happening"
        )

    async def _next(
        self, stream: AsyncGenerator[ollama.ChatResponse, None], *, received: int, deadline: float
    ) -> ollama.ChatResponse | None:
        """The next chunk of the reply, or None at the end of the stream, within the limit that applies."""
        kind, limit = (_Limit.IDLE, self.idle_timeout) if received else (_Limit.FIRST_TOKEN, self.first_token_timeout)
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= limit:
            kind, limit = _Limit.WHOLE, remaining
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            if not timer.expired():
                raise
            raise self._stalled(kind, limit) from exc
        except httpx.TimeoutException as exc:  # the backstop fired first
            if isinstance(exc, httpx.ConnectTimeout):
                raise self._unreachable(exc) from exc
            raise self._stalled(_Limit.IDLE if received else _Limit.FIRST_TOKEN, self.timeout) from exc
        except ollama.ResponseError:
            raise
        except _GARBAGE as exc:
            # INFO: the run's Failed step already says it, and `ask` must stay one line.
            log.info("unreadable reply from Ollama at %s after %d chunk(s): %s", self.host, received, exc)
            raise self._garbage(exc, received=received) from exc
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            if not received:
                raise
            raise LLMError(
                f"the model's reply was cut off: the connection to Ollama at {self.host} broke in the middle "
                f"of it ({type(exc).__name__}); check that Ollama is still running, then ask again"
            ) from exc

    def _stalled(self, kind: _Limit, limit: float) -> LLMError:
        match kind:
            case _Limit.FIRST_TOKEN:
                return LLMError(
                    f"Ollama at {self.host} sent nothing for {limit:g} s after the question (model {self.model!r} "
                    "still loading, or a prompt too long for this machine); raise "
                    "ORCHESTRATOR_LLM_FIRST_TOKEN_TIMEOUT or use a smaller model"
                )
            case _Limit.IDLE:
                return LLMError(
                    f"the model's reply stalled: Ollama at {self.host} sent nothing for {limit:g} s in the middle "
                    f"of {self.model}'s reply; ask again, or raise ORCHESTRATOR_LLM_IDLE_TIMEOUT"
                )
            case _Limit.WHOLE:
                return LLMError(
                    f"{self.model} did not finish its reply within {self.timeout:g} s (Ollama at {self.host}); "
                    "raise ORCHESTRATOR_LLM_TIMEOUT or use a smaller model"
                )

    def _garbage(self, exc: Exception, *, received: int) -> LLMError:
        line = exc.doc if isinstance(exc, json.JSONDecodeError) else ""
        if received or line.startswith('{"model"'):  # Ollama's own line, broken off
            return LLMError(
                f"the model's reply was cut off: Ollama at {self.host} sent a broken line in the middle of "
                f"{self.model}'s reply; ask again, and see Ollama's log if it keeps happening"
            )
        seen = f" (it began {line[:40]!r})" if line.strip() else ""
        return LLMError(
            f"Ollama at {self.host} answered with something that is not Ollama's JSON{seen}; "
            "check that OLLAMA_HOST points at Ollama itself, not at a proxy or another service"
        )

    def _unreachable(self, exc: BaseException) -> LLMError:
        return LLMError(
            f"cannot reach Ollama at {self.host} ({type(exc).__name__}); start it with "
            "`ollama serve` or point OLLAMA_HOST at it"
        )

    def _explain(self, exc: ollama.ResponseError) -> LLMError:
        if exc.status_code == 404:
            return LLMError(
                f"model {self.model!r} is not available on Ollama at {self.host}: "
                f"run `ollama pull {self.model}` or set ORCHESTRATOR_MODEL"
            )
        said = _one_line(str(exc.error))
        if exc.status_code < 0:  # an {"error": …} line inside a streamed reply
            return LLMError(f"Ollama at {self.host} stopped {self.model}'s reply with an error: {said}")
        return LLMError(f"Ollama at {self.host} answered {exc.status_code}: {said}")

    async def list_models(self) -> list[str]:
        try:
            listing = await self._client.list()
        except ollama.ResponseError as exc:
            raise self._explain(exc) from exc
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            raise self._unreachable(exc) from exc
        except _GARBAGE as exc:
            raise self._garbage(exc, received=0) from exc
        return [m.model or "" for m in listing.models]


def _one_line(text: str, limit: int = 200) -> str:
    """What a server said (an HTML error page, a Go panic), as one short line."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
