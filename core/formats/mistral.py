"""Mistral: `[TOOL_CALLS]` in its two generations, and `[THINK]` reasoning.

Tokenizer v3 (Mistral 7B v0.3, Mistral Nemo, Small 3): a JSON list after the token,
`[TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "/etc/hosts"}}]`. Tokenizer
v11+ (Ministral, Magistral, Devstral, Small 3.2): one token per call, the name, then the
arguments, `[TOOL_CALLS]read_file[ARGS]{"path": "/etc/hosts"}`, sometimes with
`[CALL_ID]id` before `[ARGS]`. Magistral reasons in `[THINK]…[/THINK]`; its template may
open the tag itself. (From mistral-common's tokenizers; Ollama's `ministral` parser, vLLM's
`mistral` tool parser.)
"""

from __future__ import annotations

from typing import Final

from core.formats.jsoncalls import decode_arguments, json_values, read_json_calls
from core.formats.markup import NAME, Calls, Miss, Outcome, Section, ThinkPair
from core.llm import LLMToolCall

TOOL_CALLS: Final = "[TOOL_CALLS]"
_ARGS: Final = "[ARGS]"
_CALL_ID: Final = "[CALL_ID]"


def read_tool_calls(body: str) -> Outcome:
    if body.lstrip()[:1] in ("[", "{"):
        return read_json_calls(body)
    head, args, tail = body.partition(_ARGS)
    name = head.partition(_CALL_ID)[0].strip()
    if not args or not NAME.fullmatch(name):
        return Miss.BROKEN
    values, end = json_values(tail)
    if not values:
        return Miss.BROKEN
    return Calls((LLMToolCall(name, decode_arguments(values[0])),), tail[end:])


SECTIONS: Final = (
    Section(openers=(TOOL_CALLS,), parse=read_tool_calls, closers=("[/TOOL_CALLS]", "</s>"), restarts=True),
)
THINKING: Final = (ThinkPair("[THINK]", "[/THINK]"),)
