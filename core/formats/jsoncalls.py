"""Calls written as JSON, the body of most tagged formats.

The shapes models use: `{"name": …, "arguments": {…}}` (Hermes, Qwen, Mistral, Granite),
`"parameters"` for the arguments (Llama 3.x, Cohere), `"tool_name"` for the name (Command
R7B), OpenAI's `{"type": "function", "function": {…}}` wrapper, and arguments sent as a
JSON string (`"arguments": "{\\"path\\": …}"`, Granite 4). Values are read with the JSON
decoder (`raw_decode`), never with patterns over the JSON.
"""

from __future__ import annotations

import json
from typing import Any, Final

from core.formats.markup import Calls, Miss, Outcome
from core.llm import LLMToolCall

NAME_KEYS: Final = ("name", "tool_name", "function_name")
ARGUMENT_KEYS: Final = ("arguments", "parameters", "args", "input")
FENCE: Final = "```"

_DECODER: Final = json.JSONDecoder()
_SPACE: Final = " \t\r\n"
# What decoding model output may raise: not JSON, or JSON nested deeper than Python recurses.
DECODE_ERRORS: Final = (ValueError, RecursionError)


def decode_arguments(value: Any) -> Any:
    """Arguments as the tool will get them: a JSON string holding an object is decoded."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except DECODE_ERRORS:
            return value
        if isinstance(decoded, dict):
            return decoded
    return value


def call_from_object(value: Any) -> LLMToolCall | None:
    """The call a JSON object describes, whatever else it holds (ids, a type), or None."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        return call_from_object(value["function"])
    name = next((value[k] for k in NAME_KEYS if isinstance(value.get(k), str)), "").strip()
    if not name:
        return None
    arguments: Any = next((value[k] for k in ARGUMENT_KEYS if k in value), {})
    return LLMToolCall(name, decode_arguments(arguments))


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def json_values(text: str, pos: int = 0) -> tuple[list[Any], int]:
    """The JSON values at `pos` (after space and a ```json fence), separated by space, `,` or `;`,
    and where they end: ([], pos) when no value starts there."""
    pos = skip_space(text, pos)
    if text.startswith(FENCE, pos):
        line_end = text.find("\n", pos)
        pos = skip_space(text, len(text) if line_end < 0 else line_end)
    values: list[Any] = []
    end = pos
    while True:
        try:
            value, after = _DECODER.raw_decode(text, pos)
        except DECODE_ERRORS:
            break
        values.append(value)
        end = after
        pos = skip_space(text, after)
        if pos < len(text) and text[pos] in ",;":
            pos = skip_space(text, pos + 1)
    after_fence = skip_space(text, end)
    if values and text.startswith(FENCE, after_fence):
        end = after_fence + len(FENCE)
    return values, end


def read_json_calls(body: str) -> Outcome:
    """Every value in `body` must be a call, or a list of calls; the prose after them is kept."""
    values, end = json_values(body)
    calls: list[LLMToolCall] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            call = call_from_object(item)
            if call is None:
                return Miss.BROKEN
            calls.append(call)
    if not calls:
        return Miss.BROKEN
    return Calls(tuple(calls), body[end:])
