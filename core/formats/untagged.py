"""Calls written with no markup at all: bare JSON objects and bare Python lists.

Llama 3.x with Ollama's JSON tool template answers a call as
`{"name": "read_file", "parameters": {"path": "/etc/hosts"}}`, several separated by `;`,
sometimes with prose around (vLLM's `llama3_json` parser, llama.cpp's Llama 3.x parser);
small models write `{"name": …, "arguments": …}`, often in a ```json fence (llama.cpp's
Hermes 2 Pro parser reads those too); Llama 3.2 / 4 "pythonic" writes
`[read_file(path="/etc/hosts")]`. Nothing marks these as calls and answers are full of
JSON and code, so a shape counts only when it names one of the tools offered and holds
nothing but the name and the arguments (an object); a pythonic list only when it is the
whole reply. With no tools offered, nothing here is ever a call.

`UntaggedReader` finds them in the answer text as it streams, holding back only what may
still turn out to be a call; `read_untagged` is the same reader run over a whole text, so
the live display and the stored reading agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Literal

from core.formats import pythonic
from core.formats.jsoncalls import DECODE_ERRORS, FENCE, decode_arguments, skip_space
from core.llm import LLMToolCall

_ARGUMENT_KEYS: Final = ("arguments", "parameters")
_FIRST_KEYS: Final = ("name", *_ARGUMENT_KEYS)
_FENCE_INFOS: Final = frozenset({"", "json", "tool_call", "tool_calls", "tool"})
_FENCE_LINE_MAX: Final = 24
_START: Final = re.compile(r"[{\[`]")
_SEPARATORS: Final = " \t\r\n;,"
_DECODER: Final = json.JSONDecoder()


def untagged_calls(value: Any, tools: Collection[str]) -> list[LLMToolCall] | None:
    """The calls a decoded JSON value is, under the strict rule above, or None."""
    calls: list[LLMToolCall] = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict) or len(item) != 2:
            return None
        name, key = item.get("name"), next((k for k in _ARGUMENT_KEYS if k in item), None)
        if not isinstance(name, str) or name not in tools or key is None:
            return None
        arguments = decode_arguments(item[key])
        if not isinstance(arguments, dict):
            return None
        calls.append(LLMToolCall(name, arguments))
    return calls or None


def _keyed(text: str, brace: int) -> bool | None:
    """Whether the object at `brace` opens with a name or arguments key (None: too early to say)."""
    quote = skip_space(text, brace + 1)
    if quote == len(text):
        return None
    if text[quote] != '"':
        return False
    close = text.find('"', quote + 1)
    if close < 0:
        key = text[quote + 1 :]
        return None if any(k.startswith(key) for k in _FIRST_KEYS) else False
    return text[quote + 1 : close] in _FIRST_KEYS


@dataclass(slots=True)
class _Json:
    """A JSON value being read, followed to its closing bracket one piece at a time."""

    start: int  # where its bracket is in the reader's buffer
    fenced: bool
    scan: int = -1
    depth: int = 0
    in_string: bool = False
    escaped: bool = False

    def end(self, text: str) -> int | None:
        """Where the value ends in `text` (just past its bracket), or None if it goes on."""
        at = self.start if self.scan < 0 else self.scan
        depth, in_string, escaped = self.depth, self.in_string, self.escaped
        while at < len(text):
            char = text[at]
            at += 1
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return at
        self.scan, self.depth, self.in_string, self.escaped = at, depth, in_string, escaped
        return None


_Shape = _Json | Literal["python", False] | None


class UntaggedReader:
    """Feed it answer text in pieces; each call returns what can be shown now."""

    def __init__(self, tools: Collection[str]) -> None:
        self._tools = frozenset(tools)
        self._buf = ""
        self._json: _Json | None = None
        self._python = False  # a `[name(` reply: held until the end
        self._closing_fence = False
        self._after_call = False
        self._separators = ""  # space and `;` after a call, dropped if another call follows
        self._started = False  # something other than space was shown, or a call read
        self.calls: list[LLMToolCall] = []

    def feed(self, text: str) -> str:
        if not self._tools:
            return text
        self._buf += text
        return self._run(final=False)

    def close(self) -> str:
        return self._run(final=True) if self._tools else ""

    def _run(self, *, final: bool) -> str:
        shown: list[str] = []
        while self._buf:
            if self._json is not None:
                if not self._follow(self._json, final, shown):
                    break
            elif self._python:
                if not final:
                    break
                self._resolve_python(shown)
            elif self._closing_fence:
                at = skip_space(self._buf, 0)
                if self._buf.startswith(FENCE, at):
                    self._buf = self._buf[at + len(FENCE) :]
                elif not final and FENCE.startswith(self._buf[at:]):
                    break
                self._closing_fence = False
            else:
                match = _START.search(self._buf)
                cut = len(self._buf) if match is None else match.start()
                self._show(self._buf[:cut], shown)
                self._buf = self._buf[cut:]
                if self._buf and not self._open(final, shown):
                    break
        return "".join(shown)

    def _open(self, final: bool, shown: list[str]) -> bool:
        """Look at the `{`, `[` or backtick the buffer starts with; False while it is too early to say."""
        shape = self._fence() if self._buf[0] == "`" else self._shape(0, python=not self._started)
        if shape is None and not final:
            return False
        if isinstance(shape, _Json):
            self._json = shape
        elif shape == "python":
            self._python = True
        else:
            self._show(self._buf[0], shown)
            self._buf = self._buf[1:]
        return True

    def _shape(self, at: int, *, python: bool) -> _Shape:
        text = self._buf
        if at >= len(text):
            return None
        if text[at] == "{":
            keyed = _keyed(text, at)
            return _Json(at, fenced=False) if keyed else keyed
        if text[at] != "[":
            return False
        inner = skip_space(text, at + 1)
        if inner == len(text):
            return None
        if text[inner] == "{":
            keyed = _keyed(text, inner)
            return _Json(at, fenced=False) if keyed else keyed
        if python and (text[inner].isalpha() or text[inner] == "_"):
            end = inner
            while end < len(text) and (text[end].isalnum() or text[end] in "_."):
                end += 1
            if end == len(text):
                return None
            return "python" if text[end] == "(" else False
        return False

    def _fence(self) -> _Shape:
        text = self._buf
        if not text.startswith(FENCE):
            return None if FENCE.startswith(text) else False
        line_end = text.find("\n")
        if line_end < 0:
            return None if len(text) < _FENCE_LINE_MAX else False
        if text[len(FENCE) : line_end].strip().lower() not in _FENCE_INFOS:
            return False
        inside = self._shape(skip_space(text, line_end), python=False)
        if isinstance(inside, _Json):
            return _Json(inside.start, fenced=True)
        return None if inside is None else False

    def _follow(self, value: _Json, final: bool, shown: list[str]) -> bool:
        """Read on in the JSON value; False while it has not ended yet."""
        close = value.end(self._buf)
        if close is None and not final:
            return False
        self._json = None
        try:
            decoded, end = _DECODER.raw_decode(self._buf, value.start)
        except DECODE_ERRORS:  # not JSON after all: shown whole, nothing inside it is looked at again
            end = len(self._buf) if close is None else close
            self._show(self._buf[:end], shown)
            self._buf = self._buf[end:]
            return True
        calls = untagged_calls(decoded, self._tools)
        if calls is None:
            self._show(self._buf[:end], shown)
        else:
            self.calls += calls
            self._started = self._after_call = True
            self._separators = ""
            self._closing_fence = value.fenced
        self._buf = self._buf[end:]
        return True

    def _resolve_python(self, shown: list[str]) -> None:
        text, self._buf, self._python = self._buf, "", False
        stripped = text.strip()
        calls = pythonic.read_calls(stripped) if stripped.startswith("[") and stripped.endswith("]") else None
        if calls and all(c.name in self._tools and isinstance(c.arguments, dict) for c in calls):
            self.calls += calls
            self._started = True
        else:
            self._show(text, shown)

    def _show(self, text: str, shown: list[str]) -> None:
        if not text:
            return
        if self._after_call:
            if not text.strip(_SEPARATORS):
                self._separators += text
                return
            text, self._separators, self._after_call = self._separators + text, "", False
        if text.strip():
            self._started = True
        shown.append(text)


def read_untagged(text: str, tools: Collection[str]) -> tuple[tuple[LLMToolCall, ...], str]:
    """The bare calls in a whole answer text, and the text without them."""
    reader = UntaggedReader(tools)
    shown = reader.feed(text) + reader.close()
    return tuple(reader.calls), shown
