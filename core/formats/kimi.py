"""Kimi K2: a section of calls, each an id and JSON arguments.

    <|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0
    <|tool_call_argument_begin|>{"path": "/etc/hosts"}<|tool_call_end|><|tool_calls_section_end|>

(one line in a reply; from Kimi K2's tool-call guide; vLLM's `kimi_k2` parser). The id is `functions.NAME:INDEX`.
"""

from __future__ import annotations

from typing import Final

from core.formats.jsoncalls import decode_arguments, json_values
from core.formats.markup import Calls, Miss, Outcome, Section
from core.llm import LLMToolCall

_CALL_BEGIN: Final = "<|tool_call_begin|>"
_ARGUMENTS: Final = "<|tool_call_argument_begin|>"
_CALL_END: Final = "<|tool_call_end|>"


def read_section(body: str) -> Outcome:
    calls: list[LLMToolCall] = []
    for chunk in body.split(_CALL_BEGIN)[1:]:
        ident, found, tail = chunk.partition(_ARGUMENTS)
        ident = ident.strip().removeprefix("functions.")
        name = ident.rpartition(":")[0] or ident
        values, _ = json_values(tail.partition(_CALL_END)[0])
        if not found or not name or not values:
            return Miss.BROKEN
        calls.append(LLMToolCall(name, decode_arguments(values[0])))
    return Calls(tuple(calls)) if calls else Miss.BROKEN


SECTIONS: Final = (
    Section(openers=("<|tool_calls_section_begin|>",), parse=read_section, closers=("<|tool_calls_section_end|>",)),
)
