"""Special tokens: never shown, whatever family wrote them.

Most are spelled `<|name|>` (Llama's `<|eot_id|>`, Qwen's `<|im_end|>`, harmony's `<|end|>`,
Cohere's `<|START_TEXT|>`) or, in DeepSeek's vocabulary, with full-width bars
(`<｜end▁of▁sentence｜>`, `<｜Assistant｜>`); any token of those two shapes is dropped, so a
model with a token this module never heard of still reads cleanly. The others are listed
in `NAMED`: end-of-turn tokens of Llama 2, Mistral and Gemma, Mistral's bracketed control
tokens, Granite's `<response>` wrapper.
"""

from __future__ import annotations

import re
from typing import Final

# `<|name|>`: a name, no spaces (so `a <| b |> c` in F# or Elm stays text).
_BARRED: Final = r"<\|/?[A-Za-z_][\w▁.:\-]{0,40}\|>"
# `<｜name｜>` with DeepSeek's full-width bars.
_WIDE: Final = r"<｜[^｜\s<>]{1,40}｜>"
GENERIC: Final = (_BARRED, _WIDE)
GENERIC_MAX: Final = 46
# What the start of a generic token looks like while it streams in.
GENERIC_PREFIX: Final = re.compile(r"<(?:\|(?:/?(?:[A-Za-z_][\w▁.:\-]{0,40}\|?)?)?|｜(?:[^｜\s<>]{1,40}｜?)?)?")

NAMED: Final = (
    "</s>",
    "<eos>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<response>",
    "</response>",
    "[INST]",
    "[/INST]",
    "[ARGS]",
    "[CALL_ID]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
)

_ANY: Final = re.compile("|".join([*GENERIC, *(re.escape(t) for t in NAMED)]))


def remove(text: str, extra: frozenset[str] = frozenset()) -> str:
    """`text` without special tokens (and without the `extra` markup given)."""
    text = _ANY.sub("", text)
    for marker in extra:
        text = text.replace(marker, "")
    return text
