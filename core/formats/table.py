"""Every family's markup in one table, and the matchers the scanner searches with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeVar

from core.formats import (
    cohere,
    deepseek,
    gemma,
    glm,
    granite,
    harmony,
    hermes,
    kimi,
    llama,
    mistral,
    pythonic,
    qwen3coder,
    thinking,
    tokens,
)
from core.formats.markup import Header, Section, ThinkPair

SECTIONS: Final[tuple[Section, ...]] = (
    *hermes.SECTIONS,
    *qwen3coder.SECTIONS,
    *mistral.SECTIONS,
    *deepseek.SECTIONS,
    *llama.SECTIONS,
    *pythonic.SECTIONS,
    *gemma.SECTIONS,
    *cohere.SECTIONS,
    *granite.SECTIONS,
    *kimi.SECTIONS,
)
THINKING: Final[tuple[ThinkPair, ...]] = (*thinking.THINKING, *mistral.THINKING, *cohere.THINKING)
HEADERS: Final[tuple[Header, ...]] = (
    *harmony.HEADERS,
    *llama.HEADERS,
    *hermes.HEADERS,
    *qwen3coder.HEADERS,
    *deepseek.HEADERS,
)
# Inner markup of a format, dropped where it strays outside a call.
STRAY: Final = (*qwen3coder.TOKENS, *glm.TOKENS, *gemma.TOKENS, *deepseek.TOKENS)


T = TypeVar("T")


def _index(items: Iterable[tuple[str, T]]) -> dict[str, T]:
    index: dict[str, T] = {}
    for key, item in items:
        if key in index:
            raise ValueError(f"two formats claim {key!r}")
        index[key] = item
    return index


SECTION_BY_OPENER: Final = _index((o, s) for s in SECTIONS for o in s.openers)
THINK_BY_OPENER: Final = _index((p.opener, p) for p in THINKING)
THINK_CLOSERS: Final = frozenset(p.closer for p in THINKING)
HEADER_BY_OPENER: Final = _index((o, h) for h in HEADERS for o in h.openers)
# Outside a section: the named special tokens and closers with nothing open are dropped.
DROPPED: Final = frozenset(tokens.NAMED) | frozenset(STRAY) | {c for s in SECTIONS for c in s.closers}
OPEN_MARKERS: Final = frozenset(
    SECTION_BY_OPENER.keys() | THINK_BY_OPENER.keys() | THINK_CLOSERS | HEADER_BY_OPENER.keys() | DROPPED
)
# What text a section gave back (a broken call, prose after the calls) is cleaned of before it is shown.
MARKUP: Final = OPEN_MARKERS


@dataclass(frozen=True, slots=True)
class Matcher:
    """Finds the next of `markers` (and of the generic special tokens), and where a marker may
    be starting at the end of a chunk, so that text is held back until the next one."""

    pattern: re.Pattern[str]
    prefixes: frozenset[str]
    starts: frozenset[str]
    window: int
    generic: bool

    def hold_from(self, text: str, pos: int) -> int:
        """Where the text that could still become a marker begins (len(text) if nowhere)."""
        for at in range(max(pos, len(text) - self.window), len(text)):
            if text[at] in self.starts and (
                text[at:] in self.prefixes or (self.generic and tokens.GENERIC_PREFIX.fullmatch(text, at))
            ):
                return at
        return len(text)


@lru_cache(maxsize=128)
def matcher(markers: frozenset[str], *, generic: bool) -> Matcher:
    alternatives = [re.escape(m) for m in sorted(markers, key=len, reverse=True)]
    if generic:
        alternatives += tokens.GENERIC
    longest = max((len(m) for m in markers), default=1)
    return Matcher(
        pattern=re.compile("|".join(alternatives) or r"(?!)"),
        prefixes=frozenset(m[:n] for m in markers for n in range(1, len(m))),
        starts=frozenset(m[0] for m in markers) | ({"<"} if generic else set()),
        window=max(longest, tokens.GENERIC_MAX if generic else 0),
        generic=generic,
    )
