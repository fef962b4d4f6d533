"""Scripted models for the agent, shared by the tests and bench/ (pydantic-ai's `FunctionModel`).

The agent talks to a model through `core.llm.LLM`; these stand in for it in-process, with no
HTTP and no Ollama (the Ollama stand-in, `tests.fakes.ollama.FakeOllama`, is for tests of the
wire format and of the whole bot).  A `FunctionModel` answers each request with what its
function returns for the conversation so far, so a script reads like the conversation:

    def reply(messages, tools):
        if tool_turns(messages) == 0:
            return LLMReply(tool_calls=(LLMToolCall("disk_usage", {}),))
        return LLMReply(content="The disk is 42 % full.")

    agent = Agent(llm=FunctionModel(reply), ...)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from core.llm import LLMReply, LLMToolCall, WholeReplies

Messages = Sequence[dict[str, Any]]
Tools = Sequence[dict[str, Any]]
ReplyFunction = Callable[[Messages, Tools], LLMReply | Awaitable[LLMReply]]


def tool_turns(messages: Messages) -> int:
    """How many tool results the conversation holds: the step the model is at."""
    return sum(1 for message in messages if message["role"] == "tool")


def question(messages: Messages) -> str:
    """The first thing the user said."""
    return next((str(m["content"]) for m in messages if m["role"] == "user"), "")


class FunctionModel(WholeReplies):
    """Each reply is ``function(messages, tools)`` (sync or async), after ``delay`` seconds.

    ``requests`` keeps every conversation it was asked to continue, for assertions."""

    def __init__(self, function: ReplyFunction, *, delay: float = 0.0) -> None:
        self.function = function
        self.delay = delay
        self.requests: list[list[dict[str, Any]]] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    async def chat(self, messages: Messages, tools: Tools) -> LLMReply:
        self.requests.append(list(messages))
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.function(messages, tools)
        if inspect.isawaitable(reply):
            reply = await reply
        assert isinstance(reply, LLMReply), f"a scripted model returns an LLMReply, not {reply!r}"
        return reply


def steps_then_answer(make_call: Callable[[int], LLMToolCall], steps: int) -> FunctionModel:
    """`steps` tool calls (the n-th made by ``make_call(n)``), each with a line of thinking, then an answer."""

    def reply(messages: Messages, tools: Tools) -> LLMReply:
        done = tool_turns(messages)
        if done < steps:
            return LLMReply(thinking=f"step {done + 1}", tool_calls=(make_call(done),))
        return LLMReply(content=f"finished after {done} steps")

    return FunctionModel(reply)
