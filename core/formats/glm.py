"""GLM-4.5 / 4.6 / 4.7 calls: the name, then key and value tags.

    <tool_call>read_file
    <arg_key>path</arg_key>
    <arg_value>/etc/hosts</arg_value>
    </tool_call>

(from GLM-4.6's chat template; Ollama's `glm46` parser, vLLM's `glm45`). GLM-4.7 drops the
newlines. A call without arguments is the bare name. Values are read like Ollama reads them
without a schema: one leading and trailing newline off, `null` is None, else a string.
The name must look like a tool name, so prose that happens to sit in `<tool_call>` tags is
not taken for a call.
"""

from __future__ import annotations

import re
from typing import Any, Final

from core.formats.markup import NAME, Calls, Miss, Outcome
from core.llm import LLMToolCall

_KEY: Final = "<arg_key>"
_PAIR: Final = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|\Z)", re.S)


def _value(raw: str) -> Any:
    raw = raw.removeprefix("\n").removesuffix("\n")
    return None if raw.lower() == "null" else raw


def read_call(body: str) -> Outcome:
    name, key, tail = body.partition(_KEY)
    name = name.strip()
    if not NAME.fullmatch(name):
        return Miss.BROKEN
    pairs = list(_PAIR.finditer(key + tail))
    if len(pairs) != (key + tail).count(_KEY):
        return Miss.BROKEN
    arguments = {m.group(1).strip(): _value(m.group(2)) for m in pairs}
    return Calls((LLMToolCall(name, arguments),))


# Its inner tags, when they stray outside a call, are markup all the same.
TOKENS: Final = ("<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>")
