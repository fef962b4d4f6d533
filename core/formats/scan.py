"""The state machine that runs the family tables over one stream of a reply, whole or in pieces.

The scanner is in one of three places: open text (reasoning inside a thinking `Span`, or
plain text), inside a call `Section`, or inside a `Header`. In each, only some markers
mean something (in a section, only its closers and what breaks it); the next one is found
with one regular expression per place, and text that ends in what may be the start of a
marker is held back until the next piece shows what it is. Each character is looked at a
bounded number of times, so a 20k-character reply in 3000 deltas costs what one pass does.

Reasoning and text are recorded as `segments` and, as soon as they are certain, handed out
by `take()` for live display. A call section is kept whole and read by its family's parser
when it ends; nothing of it is ever handed out, and what the parser gives back (prose after
the calls, or the text of markup that held no call) is recorded but not handed out.

A header longer than any real one (its `limit`), or one the reply ends in, was text that
happened to hold a header token: it is read again from after that token.

Two rules look back: a thinking closer with no opener before it (the opener was in the prompt
template) makes everything before it reasoning, and so does DeepSeek's "the model was
writing about the call syntax" (`Miss.REASONING`). Text handed out before that is not taken
back: a live display shows it as text until the stored reading replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.formats import tokens
from core.formats.markup import Calls, Header, Kind, Miss, Section, Span
from core.formats.table import (
    HEADER_BY_OPENER,
    MARKUP,
    OPEN_MARKERS,
    SECTION_BY_OPENER,
    THINK_BY_OPENER,
    THINK_CLOSERS,
    Matcher,
    matcher,
)
from core.llm import LLMToolCall

STRETCH_BREAK = "\n\n"  # between two stretches of reasoning, in the reading and live


@dataclass(slots=True)
class Segment:
    kind: Kind
    parts: list[str]


@dataclass(frozen=True, slots=True)
class Found:
    call: LLMToolCall
    in_thinking: bool


class Scanner:
    """Reads one stream: the content (`base="text"`) or Ollama's separate thinking (`"thinking"`,
    where everything is reasoning and only calls and special tokens are taken out)."""

    def __init__(self, *, base: Kind) -> None:
        self._base: Kind = base
        self._buf = ""
        self._think: Span | None = None
        self._section: Section | None = None
        self._header: Header | None = None
        self._parts: list[str] = []  # the open section's or header's text
        self._opened = False  # a thinking span was opened (or inferred) in this stream
        self._new_thinking = False  # the next reasoning starts a segment of its own
        self._had_thinking = False
        self._matcher: Matcher | None = None
        self._live: list[tuple[Kind, str]] = []
        self.segments: list[Segment] = []
        self.found: list[Found] = []

    # ---- reading ----------------------------------------------------------------

    def feed(self, text: str) -> None:
        self._buf += text
        self._run(final=False)

    def close(self) -> None:
        self._run(final=True)
        if self._section is not None:
            self._end_section()
        self._header = None
        self._parts = []

    def take(self) -> list[tuple[Kind, str]]:
        """The reasoning and text decided since the last call, in order."""
        live, self._live = self._live, []
        return live

    def text(self) -> str:
        return "".join(part for seg in self.segments if seg.kind == "text" for part in seg.parts)

    def thinking(self) -> list[str]:
        """Each stretch of reasoning, stripped."""
        stretches = ("".join(seg.parts).strip() for seg in self.segments if seg.kind == "thinking")
        return [s for s in stretches if s]

    def calls(self, *, in_thinking: bool) -> tuple[LLMToolCall, ...]:
        return tuple(f.call for f in self.found if f.in_thinking == in_thinking)

    # ---- the machine -------------------------------------------------------------

    def _current(self) -> Matcher:
        if self._matcher is None:
            self._matcher = self._build_matcher()
        return self._matcher

    def _build_matcher(self) -> Matcher:
        think: set[str] = set(self._think.ends + self._think.breaks) if self._think is not None else set()
        if self._header is not None:
            return matcher(frozenset({self._header.end}), generic=False)
        if self._section is not None:
            section = self._section
            markers = {*section.closers, *section.breaks, *(section.openers if section.restarts else ()), *think}
            return matcher(frozenset(markers), generic=False)
        return matcher(OPEN_MARKERS | think, generic=True)

    def _run(self, *, final: bool) -> None:
        text, pos = self._buf, 0
        while True:
            found = self._current().pattern.search(text, pos)
            if self._header is not None and self._not_a_header(text, pos, found, final=final):
                # Longer than any real header, or the reply ended inside it: read it again as text
                # (without its opening token).
                text, pos = "".join(self._parts[1:]) + text[pos:], 0
                self._header, self._parts, self._matcher = None, [], None
                continue
            if found is None:
                break
            self._put(text[pos : found.start()])
            pos = self._on_marker(found.group(), found.start(), found.end())
            self._matcher = None
        hold = len(text) if final else self._current().hold_from(text, pos)
        self._put(text[pos:hold])
        self._buf = text[hold:]

    def _not_a_header(self, text: str, pos: int, found: re.Match[str] | None, *, final: bool) -> bool:
        assert self._header is not None
        if found is None and final:
            return True
        read = sum(len(part) for part in self._parts[1:]) + (found.start() if found else len(text)) - pos
        return read > self._header.limit

    def _on_marker(self, marker: str, start: int, end: int) -> int:
        """Act on a marker; return where reading goes on (`start` when the marker is read again)."""
        if self._header is not None:
            self._end_header()
            return end
        if self._section is not None:
            closed = marker in self._section.closers
            self._end_section()
            return end if closed else start
        think = self._think
        if think is not None and marker in think.ends:
            self._think = None
            return end
        if think is not None and marker in think.breaks:
            self._think = None
            return start
        if marker in THINK_BY_OPENER:
            if think is None and self._base == "text":
                self._open_thinking(Span(ends=(THINK_BY_OPENER[marker].closer,)))
            return end  # nested, or in the thinking stream: only the tag is dropped
        if marker in THINK_CLOSERS:
            if think is None and self._base == "text" and not self._opened:
                self._reason_so_far()
            return end
        if marker in SECTION_BY_OPENER:
            self._start_section(SECTION_BY_OPENER[marker])
        elif marker in HEADER_BY_OPENER:
            self._header, self._parts = HEADER_BY_OPENER[marker], [marker]
        return end  # otherwise a special token: dropped

    def _put(self, text: str) -> None:
        if not text:
            return
        if self._section is not None or self._header is not None:
            self._parts.append(text)
        else:
            self._emit("thinking" if self._think is not None else self._base, text, live=True)

    def _emit(self, kind: Kind, text: str, *, live: bool) -> None:
        if self._base == "thinking":
            kind = "thinking"
        if not live:
            text = tokens.remove(text, MARKUP)
        if not text:
            return
        last = self.segments[-1] if self.segments else None
        if last is not None and last.kind == kind and not (kind == "thinking" and self._new_thinking):
            last.parts.append(text)
        else:
            if live and kind == "thinking" and self._had_thinking:
                self._live.append(("thinking", STRETCH_BREAK))  # a new stretch of reasoning, shown apart
            self.segments.append(Segment(kind, [text]))
        if kind == "thinking":
            self._new_thinking = False
            self._had_thinking = True
        if live:
            self._live.append((kind, text))

    def _open_thinking(self, span: Span) -> None:
        self._think = span
        self._opened = True
        self._new_thinking = True

    def _reason_so_far(self) -> None:
        """Everything read so far was reasoning (its opening tag was in the prompt)."""
        parts: list[str] = []
        for seg in self.segments:
            parts += [STRETCH_BREAK, *seg.parts] if parts else seg.parts
        self.segments = [Segment("thinking", parts)] if parts else []
        self._had_thinking = self._had_thinking or bool(parts)
        self.found = [Found(f.call, True) for f in self.found]
        self._opened = True

    def _start_section(self, section: Section) -> None:
        self._section, self._parts = section, []

    def _end_section(self) -> None:
        section, body = self._section, "".join(self._parts)
        assert section is not None
        self._section, self._parts = None, []
        in_thinking = self._think is not None or self._base == "thinking"
        kind: Kind = "thinking" if in_thinking else "text"
        outcome = section.parse(body)
        if isinstance(outcome, Calls):
            self.found += [Found(call, in_thinking) for call in outcome.calls]
            if outcome.rest.strip():
                self._emit(kind, outcome.rest, live=False)
        elif outcome is Miss.REASONING:
            self._reason_so_far()
            self._emit("thinking", body, live=False)
        else:
            self._emit(kind, body, live=False)

    def _end_header(self) -> None:
        header, text = self._header, "".join(self._parts)
        assert header is not None
        self._header, self._parts = None, []
        self._think = None  # a header starts a new message
        route = header.route(text)
        if isinstance(route, Span):
            self._open_thinking(route)
        elif isinstance(route, Section):
            self._start_section(route)
