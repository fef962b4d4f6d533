"""Making sense of what real local models send back.

Small models often put tool calls in `content` as JSON (bare, fenced, or inside
<tool_call> tags) instead of `tool_calls`; reasoning models put `<think>` blocks
in the content. Both are turned back into structure here, without regexes over
the JSON itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.llm import LLMToolCall

_THINK = re.compile(r"<think(?:ing)?>(.*?)</think(?:ing)?>", re.S | re.I)
_OPEN = re.compile(r"<think(?:ing)?>", re.I)
_CLOSE = re.compile(r"</think(?:ing)?>", re.I)
_TOOL_TAGS = re.compile(r"</?tool_calls?>|</?function_calls?>|\[/?TOOL_CALLS\]", re.I)
_FENCE = re.compile(r"```(?:json|tool_call|tool)?\s*\n?(.*?)```", re.S)

_NAME_KEYS = ("name", "tool", "tool_name", "function_name")
_ARG_KEYS = ("arguments", "parameters", "args", "tool_input", "input", "params")


def split_think(content: str) -> tuple[str, str]:
    """Return (thinking, answer) from content that may hold <think> blocks."""
    thoughts = [m.strip() for m in _THINK.findall(content)]
    rest = _THINK.sub("", content)
    close = _CLOSE.search(rest)
    if close:  # the opening tag was in the prompt template: everything before is thinking
        thoughts.insert(0, rest[: close.start()].strip())
        rest = rest[close.end() :]
    opened = _OPEN.search(rest)
    if opened:  # never closed: the model was cut off mid-thought
        thoughts.append(rest[opened.end() :].strip())
        rest = rest[: opened.start()]
    return "\n\n".join(t for t in thoughts if t), rest.strip()


def _as_call(obj: Any) -> LLMToolCall | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        return _as_call(obj["function"])
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if not name:
        return None
    args_key = next((k for k in _ARG_KEYS if k in obj), None)
    if args_key is None and set(obj) - set(_NAME_KEYS):
        return None  # a JSON object that merely has a "name" field is data, not a call
    args: Any = obj.get(args_key, {}) if args_key else {}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    return LLMToolCall(name, args)


def _json_values(text: str) -> list[tuple[int, int, Any]]:
    decoder = json.JSONDecoder()
    found: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            found.append((i, end, value))
            i = end
        else:
            i += 1
    return found


def extract_tool_calls(content: str) -> tuple[list[LLMToolCall], str]:
    """Tool calls written as JSON text in content, and the prose around them."""
    text = _TOOL_TAGS.sub("\n", content)
    text = _FENCE.sub(lambda m: "\n" + m.group(1) + "\n", text)
    calls: list[LLMToolCall] = []
    spans: list[tuple[int, int]] = []
    for start, end, value in _json_values(text):
        items = value if isinstance(value, list) else [value]
        parsed = [_as_call(item) for item in items]
        if parsed and all(p is not None for p in parsed):
            calls.extend(p for p in parsed if p is not None)
            spans.append((start, end))
    if not calls:
        return [], content
    prose = []
    last = 0
    for start, end in spans:
        prose.append(text[last:start])
        last = end
    prose.append(text[last:])
    return calls, " ".join(" ".join(prose).split())
