"""FunctionGemma: `call:NAME{…}` between function-call tokens, strings inside `<escape>`.

    <start_function_call>call:read_file{path:<escape>/etc/hosts<escape>,max_bytes:2048}<end_function_call>

(from FunctionGemma's chat template; Ollama's `functiongemma` parser). A value between
`<escape>` tokens is a string, verbatim; `true`/`false`/`null` and numbers are themselves;
`{k:v,…}` and `[v,…]` nest; any other bare word is a string.
"""

from __future__ import annotations

import json
from typing import Any, Final

from core.formats.markup import NAME, Calls, Miss, Outcome, Section
from core.llm import LLMToolCall

ESCAPE: Final = "<escape>"
_PREFIX: Final = "call:"
_WORDS: Final = {"true": True, "false": False, "null": None}


class _Unreadable(Exception):
    pass


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text

    def _space(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos].isspace():
            pos += 1
        return pos

    def object(self, pos: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        pos = self._space(pos + 1)  # past "{"
        while pos < len(self.text) and self.text[pos] != "}":
            colon = self.text.find(":", pos)
            if colon < 0:
                raise _Unreadable
            key = self.text[pos:colon].strip()
            result[key], pos = self.value(colon + 1)
            pos = self._after_item(pos, "}")
        if pos >= len(self.text):
            raise _Unreadable
        return result, pos + 1

    def array(self, pos: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        pos = self._space(pos + 1)  # past "["
        while pos < len(self.text) and self.text[pos] != "]":
            item, pos = self.value(pos)
            result.append(item)
            pos = self._after_item(pos, "]")
        if pos >= len(self.text):
            raise _Unreadable
        return result, pos + 1

    def _after_item(self, pos: int, close: str) -> int:
        pos = self._space(pos)
        if pos < len(self.text) and self.text[pos] == ",":
            return self._space(pos + 1)
        if pos < len(self.text) and self.text[pos] == close:
            return pos
        raise _Unreadable

    def value(self, pos: int) -> tuple[Any, int]:
        pos = self._space(pos)
        if self.text.startswith(ESCAPE, pos):
            end = self.text.find(ESCAPE, pos + len(ESCAPE))
            if end < 0:
                raise _Unreadable
            return self.text[pos + len(ESCAPE) : end], end + len(ESCAPE)
        if self.text.startswith("{", pos):
            return self.object(pos)
        if self.text.startswith("[", pos):
            return self.array(pos)
        end = pos
        while end < len(self.text) and self.text[end] not in ",}]":
            end += 1
        return _bare(self.text[pos:end].strip()), end


def _bare(word: str) -> Any:
    if word in _WORDS:
        return _WORDS[word]
    try:
        number = json.loads(word)
    except ValueError:
        return word
    return number if isinstance(number, int | float) else word


def read_call(body: str) -> Outcome:
    text = body.strip()
    brace = text.find("{")
    name = text[len(_PREFIX) : brace].strip() if text.startswith(_PREFIX) and brace > 0 else ""
    if not NAME.fullmatch(name):
        return Miss.BROKEN
    try:
        arguments, end = _Reader(text).object(brace)
    except (_Unreadable, RecursionError):
        return Miss.BROKEN
    return Calls((LLMToolCall(name, arguments),), text[end:])


SECTIONS: Final = (
    Section(openers=("<start_function_call>",), parse=read_call, closers=("<end_function_call>",), restarts=True),
)
# Its string quote, when it strays outside a call, is markup all the same.
TOKENS: Final = (ESCAPE,)
