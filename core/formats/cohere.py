"""Command R7B and Command A: reasoning, text and actions between `<|START_…|>` tokens.

    <|START_THINKING|>The user wants the hosts file.<|END_THINKING|>
    <|START_ACTION|>[
        {"tool_call_id": "0", "tool_name": "read_file", "parameters": {"path": "/etc/hosts"}}
    ]<|END_ACTION|>
    <|START_RESPONSE|>Here it is.<|END_RESPONSE|>

(from Cohere's chat templates; Ollama's `cohere` parser, llama.cpp's Command R7B parser).
R7B writes `<|START_TEXT|>…<|END_TEXT|>` for the answer; those tokens are dropped like
any `<|…|>` token. The template may open the reasoning itself, so a reply can start in the
middle of it and only `<|END_THINKING|>` arrives.
"""

from __future__ import annotations

from typing import Final

from core.formats.jsoncalls import read_json_calls
from core.formats.markup import Section, ThinkPair

SECTIONS: Final = (Section(openers=("<|START_ACTION|>",), parse=read_json_calls, closers=("<|END_ACTION|>",)),)
THINKING: Final = (ThinkPair("<|START_THINKING|>", "<|END_THINKING|>"),)
