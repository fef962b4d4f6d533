"""XML function calls: Qwen3-Coder, Qwen3.5, Nemotron 3 Nano, and Functionary's JSON variant.

    <tool_call>
    <function=read_file>
    <parameter=path>
    /var/log/syslog
    </parameter>
    </function>
    </tool_call>

(from Qwen3-Coder's chat template; Ollama's `qwen3coder` and vLLM's `qwen3_coder` parsers).
A value loses one leading and one trailing newline, `null` is None, and anything else stays
a string: like both upstream parsers without a schema (the tool's own validation converts
`"100"` for an integer parameter). Functionary v3.1 and Hermes 2 Pro write the same tag
with JSON inside, and without the `<tool_call>` around it:
`<function=read_file>{"path": "/etc/hosts"}</function>`. A parameter or a function left
open at the end of the reply ends there.
"""

from __future__ import annotations

import re
from typing import Any, Final

from core.formats.jsoncalls import decode_arguments, json_values
from core.formats.markup import Calls, Header, Miss, Outcome, Section, role_only
from core.llm import LLMToolCall

OPENER: Final = "<function="
CLOSER: Final = "</function>"

_FUNCTION: Final = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|(?=<function=)|\Z)", re.S)
_PARAMETER: Final = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)", re.S)


def _value(raw: str) -> Any:
    raw = raw.removeprefix("\n").removesuffix("\n")
    return None if raw.lower() == "null" else raw


def _arguments(inner: str) -> Any:
    if inner.lstrip().startswith("{"):
        values, _ = json_values(inner)
        if not values or not isinstance(values[0], dict):
            return None
        return decode_arguments(values[0])
    return {m.group(1).strip(): _value(m.group(2)) for m in _PARAMETER.finditer(inner)}


def read_functions(text: str) -> Outcome:
    """Every `<function=NAME>…</function>` block in `text`; the text around them is the rest."""
    calls: list[LLMToolCall] = []
    rest: list[str] = []
    last = 0
    for match in _FUNCTION.finditer(text):
        name = match.group(1).strip()
        arguments = _arguments(match.group(2))
        if not name or arguments is None:
            return Miss.BROKEN
        calls.append(LLMToolCall(name, arguments))
        rest.append(text[last : match.start()])
        last = match.end()
    if not calls:
        return Miss.BROKEN
    rest.append(text[last:])
    return Calls(tuple(calls), "".join(rest))


def read_function_tag(body: str) -> Outcome:
    """A bare `<function=…>` section: the opener was consumed, put it back."""
    return read_functions(OPENER + body)


SECTIONS: Final = (Section(openers=(OPENER,), parse=read_function_tag, closers=(CLOSER,), restarts=True),)
# Its inner tags, when they stray outside a call, are markup all the same.
TOKENS: Final = ("</parameter>",)
HEADERS: Final = (Header(openers=("<parameter=",), end=">", route=role_only, limit=128),)
