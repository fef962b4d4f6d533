"""The LLM port and its Ollama implementation (the official `ollama.AsyncClient`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import ollama

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


class LLMError(Exception):
    """The model could not be reached or refused the request. The message is for people."""


class LLM(Protocol):
    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply: ...


class OllamaLLM:
    """Streams a chat from Ollama with native tool calling and, where supported, thinking."""

    def __init__(self, *, host: str, model: str, timeout: float = 300.0, think: bool | None = True) -> None:
        self.host = host
        self.model = model
        self.timeout = timeout
        self.think = think
        self._client = ollama.AsyncClient(host=host, timeout=timeout)

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        try:
            return await self._chat(messages, tools, self.think)
        except ollama.ResponseError as exc:
            if self.think and exc.status_code == 400 and "think" in str(exc.error).lower():
                log.info("model %s does not support thinking; continuing without it", self.model)
                self.think = None
                return await self.chat(messages, tools)
            raise self._explain(exc) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise LLMError(
                f"Ollama at {self.host} did not answer within {self.timeout:g} s "
                "(raise ORCHESTRATOR_LLM_TIMEOUT, or use a smaller model)"
            ) from exc
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            raise LLMError(
                f"cannot reach Ollama at {self.host} ({type(exc).__name__}); start it with "
                "`ollama serve` or point OLLAMA_HOST at it"
            ) from exc

    async def _chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], think: bool | None
    ) -> LLMReply:
        content: list[str] = []
        thinking: list[str] = []
        calls: list[LLMToolCall] = []
        stream = await self._client.chat(
            model=self.model,
            messages=list(messages),
            tools=list(tools) or None,
            stream=True,
            think=think,
        )
        async for chunk in stream:
            msg = chunk.message
            if msg.content:
                content.append(msg.content)
            if msg.thinking:
                thinking.append(msg.thinking)
            for call in msg.tool_calls or ():
                calls.append(LLMToolCall(call.function.name, dict(call.function.arguments or {})))
        return LLMReply("".join(content), "".join(thinking), tuple(calls))

    def _explain(self, exc: ollama.ResponseError) -> LLMError:
        if exc.status_code == 404:
            return LLMError(
                f"model {self.model!r} is not available on Ollama at {self.host}: "
                f"run `ollama pull {self.model}` or set ORCHESTRATOR_MODEL"
            )
        return LLMError(f"Ollama at {self.host} answered {exc.status_code}: {exc.error}")

    async def list_models(self) -> list[str]:
        try:
            listing = await self._client.list()
        except ollama.ResponseError as exc:
            raise self._explain(exc) from exc
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            raise LLMError(
                f"cannot reach Ollama at {self.host} ({type(exc).__name__}); start it with "
                "`ollama serve` or point OLLAMA_HOST at it"
            ) from exc
        return [m.model or "" for m in listing.models]
