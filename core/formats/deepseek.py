"""DeepSeek: the tool-call tokens of R1 / V3 / V3.1, and V3.2's DSML.

R1 and V3 (from their chat templates; llama.cpp's DeepSeek R1 parser, Ollama's `deepseek`):

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file
    ```json
    {"path": "/etc/hosts"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

V3.1 puts the name first and the JSON straight after the separator
(`<｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "/etc/hosts"}<｜tool▁call▁end｜>`,
Ollama's `deepseek3`). The bars are full-width in the vocabulary, but quantised models and
pasted outputs also carry ASCII `|`, and `▁` may come out as `_` or a space: every
spelling is read. R1's template opens `<think>` itself, so R1 reasons without the tag; when
it writes the tool-calls token and no call follows, it was writing about the syntax while
reasoning (llama.cpp's "forced open" case), and the reply so far was reasoning.

V3.2 writes DSML (from its encoding script; sglang's `deepseekv32` detector):

    <｜DSML｜function_calls>
    <｜DSML｜invoke name="read_file">
    <｜DSML｜parameter name="path" string="true">/etc/hosts</｜DSML｜parameter>
    <｜DSML｜parameter name="max_bytes" string="false">2048</｜DSML｜parameter>
    </｜DSML｜invoke>
    </｜DSML｜function_calls>

`string="true"` values are strings, the others JSON; an invoke may also hold a JSON object.
The same tags without `｜DSML｜` are read too; `<function_calls>` holding Python calls
instead of `<invoke>` is OLMo 3 (`core.formats.pythonic`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from core.formats import pythonic
from core.formats.jsoncalls import DECODE_ERRORS, decode_arguments, json_values
from core.formats.markup import Calls, Header, Miss, Outcome, Section, role_only
from core.llm import LLMToolCall

_BARS: Final = ("｜", "|")
_SPACES: Final = ("▁", "_", " ")


def _spellings(*words: str) -> tuple[str, ...]:
    return tuple(f"<{bar}{space.join(words)}{bar}>" for bar in _BARS for space in _SPACES)


CALLS_BEGIN: Final = _spellings("tool", "calls", "begin")
CALLS_END: Final = _spellings("tool", "calls", "end")

# Inside a section every spelling becomes one plain marker, so the reading below is simple.
_TOKEN: Final = re.compile(r"<[|｜]tool[▁_ ](calls?[▁_ ](?:begin|end)|sep)[|｜]>")
_CALL_BEGIN: Final = "\x00call_begin\x00"
_CALL_END: Final = "\x00call_end\x00"
_SEP: Final = "\x00sep\x00"


def _plain(match: re.Match[str]) -> str:
    return "\x00" + re.sub("[▁ ]", "_", match.group(1)) + "\x00"


def _read_call(text: str) -> LLMToolCall | None:
    left, sep, right = text.partition(_SEP)
    if not sep:
        return None
    if left.strip() == "function" and not right.lstrip().startswith("{"):  # R1 / V3
        name, _, right = right.partition("\n")
    else:  # V3.1
        name = left
    values, _ = json_values(right)
    if not name.strip() or not values:
        return None
    return LLMToolCall(name.strip(), decode_arguments(values[0]))


def read_tool_calls(body: str) -> Outcome:
    text = _TOKEN.sub(_plain, body)
    if not text.lstrip().startswith(_CALL_BEGIN):
        return Miss.REASONING
    calls: list[LLMToolCall] = []
    rest: list[str] = []
    for chunk in text.split(_CALL_BEGIN)[1:]:
        inner, _, after = chunk.partition(_CALL_END)
        call = _read_call(inner)
        if call is None:
            return Miss.BROKEN
        calls.append(call)
        rest.append(after)
    return Calls(tuple(calls), "".join(rest).replace("\x00", ""))


_DSML: Final = re.compile(r"(</?)(?:｜DSML｜|\|DSML\|)")
_INVOKE: Final = re.compile(r'<invoke\s+name="([^"]+)"\s*>(.*?)(?:</invoke>|\Z)', re.S)
_PARAMETER: Final = re.compile(
    r'<parameter\s+name="([^"]+)"(?:\s+string="(true|false)")?\s*>(.*?)(?:</parameter>|\Z)', re.S
)


def _parameter(raw: str, string: str | None) -> Any:
    raw = raw.strip()
    if string == "true":
        return raw
    try:
        return json.loads(raw)
    except DECODE_ERRORS:
        return raw


def _invoke_arguments(inner: str) -> Any:
    if inner.lstrip().startswith("{"):
        values, _ = json_values(inner)
        return decode_arguments(values[0]) if values else None
    return {m.group(1): _parameter(m.group(3), m.group(2)) for m in _PARAMETER.finditer(inner)}


def read_function_calls(body: str) -> Outcome:
    text = _DSML.sub(r"\1", body)
    if not text.lstrip().startswith("<invoke"):
        return pythonic.read_section(text)
    calls: list[LLMToolCall] = []
    rest: list[str] = []
    last = 0
    for match in _INVOKE.finditer(text):
        arguments = _invoke_arguments(match.group(2))
        if arguments is None:
            return Miss.BROKEN
        calls.append(LLMToolCall(match.group(1).strip(), arguments))
        rest.append(text[last : match.start()])
        last = match.end()
    rest.append(text[last:])
    return Calls(tuple(calls), "".join(rest)) if calls else Miss.BROKEN


SECTIONS: Final = (
    Section(openers=CALLS_BEGIN, parse=read_tool_calls, closers=CALLS_END),
    Section(
        openers=("<｜DSML｜function_calls>", "<|DSML|function_calls>", "<function_calls>"),
        parse=read_function_calls,
        closers=("</｜DSML｜function_calls>", "</|DSML|function_calls>", "</function_calls>"),
    ),
)
# Its inner tags, when they stray outside a call, are markup all the same.
TOKENS: Final = ("</invoke>", "</｜DSML｜invoke>", "</｜DSML｜parameter>")
HEADERS: Final = (
    Header(
        openers=("<invoke name=", "<｜DSML｜invoke name=", "<｜DSML｜parameter name="),
        end=">",
        route=role_only,
        limit=128,
    ),
)
