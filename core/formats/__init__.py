"""TEMPORARY shim (the lead's): the contract of core.formats over core.parsing, so the agent
imports while the real package is written. The formats helper replaces this file whole."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from core.llm import LLMReply, LLMToolCall
from core.parsing import extract_tool_calls, split_think


@dataclass(frozen=True, slots=True)
class Reading:
    thinking: str
    text: str
    calls: tuple[LLMToolCall, ...]


def read_reply(reply: LLMReply, tools: Collection[str] = ()) -> Reading:
    thinking, content = split_think(reply.content)
    thinking = "\n\n".join(t for t in (reply.thinking.strip(), thinking) if t)
    calls = list(reply.tool_calls)
    if not calls:
        calls, content = extract_tool_calls(content)
    return Reading(thinking, content, tuple(calls))


class LiveReader:
    def __init__(self, tools: Collection[str] = ()) -> None:
        self.tools = tools

    def feed(self, *, content: str = "", thinking: str = "") -> list[tuple[Literal["thinking", "text"], str]]:
        return [("thinking", thinking)] if thinking else []

    def close(self) -> list[tuple[Literal["thinking", "text"], str]]:
        return []
