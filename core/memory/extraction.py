"""After a conversation, the model lists the durable facts the user stated; they are remembered.

`FactExtractor.after_run` is an agent after-run hook.  It decides at once, without the
model and without any word list of one language, whether the exchange can hold a fact at
all (see `worth_extracting`); if so it
starts the extraction in a background task and returns, so the next message in the
thread never waits for it.  The model answers JSON that must validate as a whole
against `Extraction`; anything else is discarded and nothing is stored (no partial
parsing).  Regexes are never the extraction method: the gate below only decides whether
asking the model is worth a call.  The facts are stored like `memory_store`'s, through
`MemoryService.remember_many`: secrets redacted, a fact that is only a secret refused, and
never merged into a memory another person wrote (nobody approves an extraction).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.events import Request
from core.formats import read_reply
from core.llm import LLM, LLMError, LLMReply
from core.memory import texts
from core.memory.model import Memory
from core.memory.service import MAX_FACT_CHARS, MemoryService

log = logging.getLogger(__name__)

MIN_WORDS: Final = 4
MAX_FACTS: Final = 10
TRANSCRIPT_CHARS: Final = 2000
# Sentence ends in Latin, Arabic and CJK (full-width) scripts.
_SENTENCE_END: Final = re.compile(r"(?<=[.!?؟])\s+|(?<=[。！？])|\n+")
# A question or an exclamation (thanks, greetings, reactions) states no durable fact.
_NOT_A_STATEMENT_END: Final = tuple("?!？！؟")
_NOT_A_STATEMENT_START: Final = tuple("¿¡")
_WORD: Final = re.compile(r"\w", re.UNICODE)
_FENCED: Final = re.compile(r"\A```(?:json)?\s*\n(?P<body>.*)\n```\Z", re.DOTALL)


class ExtractedFact(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=3, max_length=MAX_FACT_CHARS)
    about: str = Field(max_length=80)


class Extraction(BaseModel):
    """What the model must answer: ``{"facts": [{"text": ..., "about": ...}]}``."""

    model_config = ConfigDict(extra="forbid")

    facts: list[ExtractedFact] = Field(max_length=MAX_FACTS)


def statements(text: str) -> list[str]:
    """The sentences of ``text`` that may state something: not questions, not exclamations, not too short.

    Punctuation and length only, so the rule is the same in every language; whether a
    sentence is a request is told by what the agent did with it (see `worth_extracting`).
    """
    found = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = sentence.strip()
        words = [word for word in sentence.split() if _WORD.search(word)]
        if len(words) < MIN_WORDS or sentence.endswith(_NOT_A_STATEMENT_END):
            continue
        if sentence.startswith(_NOT_A_STATEMENT_START):
            continue
        found.append(sentence)
    return found


def worth_extracting(request: Request, new_messages: Sequence[dict[str, Any]]) -> bool:
    """Whether asking the model for facts can pay off.

    The user's turn was a request when the agent answered it by calling tools (looked
    something up, ran a command, recalled or forgot a memory): no extra call then, in any
    language, and a fact said in passing is left to `memory_store`, which the model sees in
    the same turn.  Otherwise the model is asked only when the user wrote a sentence that
    may state something.
    """
    for message in new_messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            return False
    return bool(statements(request.text))


def parse_extraction(content: str) -> Extraction | None:
    """The model's answer as a whole, or None when any part of it is not the expected JSON."""
    body = read_reply(LLMReply(content=content)).text
    fenced = _FENCED.match(body)
    if fenced is not None:
        body = fenced.group("body").strip()
    try:
        return Extraction.model_validate_json(body)
    except ValidationError as exc:
        log.info("fact extraction discarded: the model's answer is not the expected JSON (%s)", exc.errors()[:3])
        return None


def transcript(request: Request, new_messages: Sequence[dict[str, Any]]) -> str:
    """The user's words and the assistant's answers; tool output stays out (it is not what the user stated)."""
    name = request.user_name or request.user_id
    lines = []
    for message in new_messages:
        content = str(message.get("content") or "").strip()
        if not content or message.get("tool_calls"):
            continue
        if message.get("role") == "user":
            lines.append(texts.TRANSCRIPT_USER.format(name=name, text=content[:TRANSCRIPT_CHARS]))
        elif message.get("role") == "assistant":
            lines.append(texts.TRANSCRIPT_ASSISTANT.format(text=content[:TRANSCRIPT_CHARS]))
    return "\n".join(lines)


class FactExtractor:
    """Turns finished conversations into remembered facts, in the background."""

    def __init__(self, llm: LLM, memory: MemoryService, *, skip_users: Collection[str] = ()) -> None:
        self.llm = llm
        self.memory = memory
        self.skip_users = frozenset(skip_users)  # e.g. runs started by the scheduler, not by a person

    async def after_run(self, request: Request, new_messages: Sequence[dict[str, Any]], answer: str) -> None:
        """Agent after-run hook: returns at once; the extraction, if any, runs in a background task."""
        if request.user_id in self.skip_users or not worth_extracting(request, new_messages):
            return
        self.memory.in_background(
            self.extract(request, list(new_messages)), name=f"memory-extract-{request.platform}-{request.thread}"
        )

    async def extract(self, request: Request, new_messages: Sequence[dict[str, Any]]) -> list[Memory]:
        """Ask the model (no tools) for the durable facts of the exchange and remember the valid ones."""
        messages = [
            {"role": "system", "content": texts.EXTRACTION_SYSTEM},
            {"role": "user", "content": texts.EXTRACTION_USER.format(transcript=transcript(request, new_messages))},
        ]
        try:
            reply = await self.llm.chat(messages, [])
        except LLMError as exc:
            log.warning("fact extraction skipped: %s", exc)
            return []
        extraction = parse_extraction(reply.content)
        if extraction is None or not extraction.facts:
            return []
        facts = [(_with_subject(fact), {"about": fact.about}) for fact in extraction.facts]
        stored = await self.memory.remember_many(facts, request, via="extracted")
        log.info("remembered %d fact(s) from %s:%s", len(stored), request.platform, request.channel)
        return stored


def _with_subject(fact: ExtractedFact) -> str:
    """The fact as stored: it names its subject, so recall by that name finds it."""
    if fact.about and fact.about.lower() not in fact.text.lower():
        return f"{fact.about}: {fact.text}"
    return fact.text
