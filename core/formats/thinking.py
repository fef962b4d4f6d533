"""Reasoning between tags in the content: `<think>…</think>` and its relatives.

Qwen3, DeepSeek-R1, QwQ, GLM, LFM2, Granite 3.3, Nemotron and most distills write
`<think>`; some fine-tunes `<thinking>`; ByteDance Seed-OSS `<seed:think>`; Kimi-VL
`◁think▷`. Mistral's `[THINK]` and Command R7B's `<|START_THINKING|>` live with their
families. Two shapes need care and are handled by the scanner for every pair: the opening
tag was part of the prompt template, so only the closing tag arrives (everything before it
was reasoning), and the reply was cut off inside the reasoning, so the closing tag never
comes (everything after the opening tag is reasoning).
"""

from __future__ import annotations

from typing import Final

from core.formats.markup import ThinkPair

THINKING: Final = (
    ThinkPair("<think>", "</think>"),
    ThinkPair("<thinking>", "</thinking>"),
    ThinkPair("<seed:think>", "</seed:think>"),
    ThinkPair("◁think▷", "◁/think▷"),
)
