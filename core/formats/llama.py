"""Llama 3.1+ `<|python_tag|>` calls, and Firefunction v2's `functools[…]`.

Llama 3.1's built-in tools (from Meta's prompt format docs; llama.cpp's Llama 3.x parser):

    <|python_tag|>brave_search.call(query="disk full")
    <|python_tag|>{"name": "read_file", "parameters": {"path": "/etc/hosts"}}

A `NAME.call(k="v")` is the tool NAME; JSON after the tag is a custom tool (`"parameters"`
for the arguments, several separated by `;`); anything else after the tag is code for the
`python` (code interpreter) tool, as llama.cpp reads it. The call ends at `<|eom_id|>` or
the end of the reply. Llama's bare `{"name": …, "parameters": …}` without the tag is read by
`core.formats.untagged`.

Firefunction v2 (a Llama 3 fine-tune; llama.cpp's parser) prefixes a JSON list:
` functools[{"name": "read_file", "arguments": {"path": "/etc/hosts"}}]`.

A message header that leaks into the content, `<|start_header_id|>assistant<|end_header_id|>`,
is dropped with its role.
"""

from __future__ import annotations

from typing import Final

from core.formats import pythonic
from core.formats.jsoncalls import read_json_calls
from core.formats.markup import Calls, Header, Outcome, Section, role_only
from core.llm import LLMToolCall

_CALL_SUFFIX: Final = ".call"


def read_python_tag(body: str) -> Outcome:
    code = body.strip()
    if code.startswith("{"):
        return read_json_calls(code)
    calls = pythonic.read_calls(code)
    if calls is None:
        return Calls((LLMToolCall("python", {"code": code}),))
    return Calls(tuple(LLMToolCall(c.name.removesuffix(_CALL_SUFFIX), c.arguments) for c in calls))


def read_functools(body: str) -> Outcome:
    return read_json_calls("[" + body)  # the opener took the list's bracket


SECTIONS: Final = (
    Section(openers=("<|python_tag|>",), parse=read_python_tag, closers=("<|eom_id|>", "<|eot_id|>")),
    Section(openers=("functools[",), parse=read_functools),
)


HEADERS: Final = (Header(openers=("<|start_header_id|>",), end="<|end_header_id|>", route=role_only, limit=32),)
