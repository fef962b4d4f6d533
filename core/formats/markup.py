"""The words the family modules describe their formats with.

A reply's content is text with markup in it. A family declares, as data:

- `ThinkPair`: the tags around reasoning (`<think>`/`</think>`, `[THINK]`/`[/THINK]`, …);
- `Section`: markup that holds tool calls, from an opener to a closer (or the end of the
  reply), and the function that reads the calls out of what is between;
- `Header`: markup whose text decides what the following message is (gpt-oss harmony:
  `<|channel|>analysis<|message|>` is reasoning, `… to=functions.x<|message|>` a call).

`core.formats.scan` runs these tables over the content; nothing there knows a family.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from core.llm import LLMToolCall

Kind = Literal["thinking", "text"]

# A tool name as the call formats write it (`read_file`, `functions.get_weather`, `brave-search`).
NAME: Final = re.compile(r"[A-Za-z_][\w.\-]{0,127}")


@dataclass(frozen=True, slots=True)
class Calls:
    """What a section held: its calls in order, and any prose after them."""

    calls: tuple[LLMToolCall, ...]
    rest: str = ""


class Miss(Enum):
    BROKEN = "broken"  # markup that holds no readable call: its text is shown as it is
    REASONING = "reasoning"  # the model wrote about the markup while reasoning: all so far was thinking


Outcome = Calls | Miss
Parse = Callable[[str], Outcome]


@dataclass(frozen=True, slots=True)
class Section:
    """Tool-call markup: from one of `openers` to one of `closers`, or to the end of the reply.

    `breaks` also end the section but are read again afterwards (a harmony message ends
    where the next `<|start|>` begins); with `restarts`, the opener again ends the section
    and opens the next one (`<tool_call>{…}<tool_call>{…}` with a closer missing). `parse`
    gets the text between the opener and the end.
    """

    openers: tuple[str, ...]
    parse: Parse
    closers: tuple[str, ...] = ()
    breaks: tuple[str, ...] = ()
    restarts: bool = False


@dataclass(frozen=True, slots=True)
class ThinkPair:
    opener: str
    closer: str


@dataclass(frozen=True, slots=True)
class Span:
    """Where an open stretch of reasoning ends: at one of `ends` (dropped) or before one of `breaks`."""

    ends: tuple[str, ...]
    breaks: tuple[str, ...] = ()


# What a header says the following message is: reasoning until a Span ends, a call section, or (None) text.
Route = Span | Section | None


@dataclass(frozen=True, slots=True)
class Header:
    """Markup from one of `openers` to `end` whose text (opener included) `route` reads."""

    openers: tuple[str, ...]
    end: str
    route: Callable[[str], Route]
    limit: int = 256  # a longer "header", or one the reply ends in, was text after all


def role_only(header: str) -> Route:
    """A message header that only names a role (`assistant`): nothing of it is text."""
    return None
