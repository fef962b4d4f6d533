"""IBM Granite 3.x and Phi-4-mini: a JSON list after `<|tool_call|>`.

    <|tool_call|>[{"name": "read_file", "arguments": {"path": "/etc/hosts"}}]

(from the Granite 3.3 chat template; llama.cpp's Granite parser). Phi-4-mini closes the
list with `<|/tool_call|>`. Granite 3.3 reasons in `<think>` and wraps the answer in
`<response>…</response>`, which `core.formats.tokens` drops. Granite 4 writes Hermes
`<tool_call>` tags (`core.formats.hermes`).
"""

from __future__ import annotations

from typing import Final

from core.formats.jsoncalls import read_json_calls
from core.formats.markup import Section

SECTIONS: Final = (Section(openers=("<|tool_call|>",), parse=read_json_calls, closers=("<|/tool_call|>",)),)
