"""Hermes-style `<tool_call>` tags: Hermes 2/3, Qwen 2.5 / 3 / QwQ, Granite 4, and the formats
that reuse the tag.

    Let me look.<tool_call>
    {"name": "read_file", "arguments": {"path": "/etc/hosts"}}
    </tool_call>

(from the Hermes and Qwen chat templates; Ollama's `qwen3` parser, vLLM's `hermes`,
llama.cpp's Hermes 2 Pro). Parallel calls are one tag each; the last closing tag may be
missing when the reply ends with the call. Granite 4 sends the arguments as a JSON string.
Qwen3-Coder and Nemotron put `<function=…>` XML in the same tag, GLM its `<arg_key>` pairs:
the body says which. Some fine-tunes write `<tool_calls>[…]</tool_calls>`. JSON that does
not decode is not a call: the reply is shown as it is. A ChatML message header that leaks
into the content (`<|im_start|>assistant` and its line) is dropped with its role.
"""

from __future__ import annotations

from typing import Final

from core.formats import glm, qwen3coder
from core.formats.jsoncalls import FENCE, read_json_calls
from core.formats.markup import Header, Outcome, Section, role_only


def read_tool_call(body: str) -> Outcome:
    head = body.lstrip()
    if head.startswith(("{", "[", FENCE)):
        return read_json_calls(body)
    if head.startswith(qwen3coder.OPENER):
        return qwen3coder.read_functions(head)
    return glm.read_call(body)


SECTIONS: Final = (
    Section(openers=("<tool_call>",), parse=read_tool_call, closers=("</tool_call>",), restarts=True),
    Section(openers=("<tool_calls>",), parse=read_json_calls, closers=("</tool_calls>",)),
)


HEADERS: Final = (Header(openers=("<|im_start|>",), end="\n", route=role_only, limit=32),)
