"""gpt-oss harmony: every message has a header naming its channel and, for a call, its recipient.

    <|channel|>analysis<|message|>The user wants the hosts file.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.read_file <|constrain|>json<|message|>
    {"path": "/etc/hosts"}<|call|>
    <|start|>assistant<|channel|>final<|message|>Here it is.<|return|>

(shown on two lines here; from OpenAI's harmony format; Ollama's `harmony` parser, llama.cpp's GPT-OSS parser).
`analysis` is reasoning; a header with `to=functions.NAME` (or `to=NAME` for a built-in
tool, and the recipient may also stand before `<|channel|>`) makes the message the JSON
arguments of that call; `final`, a `commentary` preamble and a header with no channel are
text. A message ends at `<|end|>`, `<|call|>` or `<|return|>`, or where the next header
starts; the prompt's `<|start|>assistant` means a reply usually begins at `<|channel|>`.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Final

from core.formats.jsoncalls import decode_arguments, json_values
from core.formats.markup import Calls, Header, Miss, Outcome, Route, Section, Span
from core.llm import LLMToolCall

START: Final = "<|start|>"
CHANNEL: Final = "<|channel|>"
MESSAGE: Final = "<|message|>"
ENDS: Final = ("<|end|>", "<|call|>", "<|return|>")
BREAKS: Final = (START, CHANNEL)

_RECIPIENT: Final = re.compile(r"\bto=(?:functions\.)?([^\s<]+)")
_CHANNEL: Final = re.compile(r"<\|channel\|>\s*(\w+)")


def read_arguments(name: str, body: str) -> Outcome:
    values, end = json_values(body)
    if not values:
        return Miss.BROKEN
    return Calls((LLMToolCall(name, decode_arguments(values[0])),), body[end:])


def route(header: str) -> Route:
    recipient = _RECIPIENT.search(header)
    if recipient is not None:
        return Section(openers=(), parse=partial(read_arguments, recipient.group(1)), closers=ENDS, breaks=BREAKS)
    channel = _CHANNEL.search(header)
    if channel is not None and channel.group(1) == "analysis":
        return Span(ends=ENDS, breaks=BREAKS)
    return None


HEADERS: Final = (Header(openers=(START, CHANNEL), end=MESSAGE, route=route),)
