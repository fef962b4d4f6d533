"""What a local model's reply says: its reasoning, its answer text and its tool calls.

Ollama parses a model's calls and reasoning on the server when its template parser knows
the model; when it does not (a custom Modelfile, a parser bug, a new model), the raw text
reaches us: `<think>` blocks, `<tool_call>` tags, harmony channels, special tokens. This
package reads every format local models are known to write, one module per family:

    hermes      <tool_call>{json}</tool_call>              Hermes, Qwen 2.5 / 3, Granite 4
    qwen3coder  <function=NAME><parameter=K>V</parameter>   Qwen3-Coder, Nemotron, Functionary
    glm         <tool_call>NAME<arg_key>K</arg_key>…       GLM-4.5 / 4.6 / 4.7
    mistral     [TOOL_CALLS]…, [THINK]…[/THINK]           Mistral, Ministral, Magistral
    deepseek    <｜tool▁calls▁begin｜>…, DSML <invoke>     DeepSeek R1, V3, V3.1, V3.2
    harmony     <|channel|>analysis<|message|>…           gpt-oss
    llama       <|python_tag|>, functools[…]              Llama 3.1 built-ins, Firefunction
    pythonic    f(x="y") in tags                          OLMo 3, LFM2
    gemma       <start_function_call>call:NAME{…}          FunctionGemma
    cohere      <|START_THINKING|>, <|START_ACTION|>       Command R7B, Command A
    granite     <|tool_call|>[…]                          Granite 3.x, Phi-4-mini
    kimi        <|tool_calls_section_begin|>…              Kimi K2
    thinking    <think>…</think> and relatives
    untagged    bare {"name", "parameters"} JSON, [f(x=1)] Llama 3.x JSON and pythonic
    tokens      <|…|>, <｜…｜>, </s> …: never shown

`read_reply` reads a whole reply; `LiveReader` reads it while it streams, for display, with
the same machine (`core.formats.scan`), so what was shown live is what gets stored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from core.formats.markup import Kind
from core.formats.scan import STRETCH_BREAK, Scanner
from core.formats.untagged import UntaggedReader, read_untagged
from core.llm import LLMReply, LLMToolCall

__all__ = ["LiveReader", "Reading", "read_reply"]


@dataclass(frozen=True, slots=True)
class Reading:
    thinking: str  # all reasoning: reply.thinking, then each stretch found in the content, a blank line apart
    text: str  # the content outside reasoning and calls, without markup: the answer, or the prose before calls
    calls: tuple[LLMToolCall, ...]


def _scan(text: str, base: Kind) -> Scanner:
    scanner = Scanner(base=base)
    scanner.feed(text)
    scanner.close()
    return scanner


def read_reply(reply: LLMReply, tools: Collection[str] = ()) -> Reading:
    """Read a whole reply. `tools` are the names offered to the model: only calls written with no
    markup at all (a bare JSON object) are checked against them; tagged calls count whatever
    their name (the agent refuses a tool it does not have).

    Calls come from, in this order of precedence: Ollama's structured `tool_calls`; call markup
    in the content; bare calls in the content's text; call markup in the reasoning (some models
    call from inside it). Call markup is never part of the text or the reasoning; markup that
    holds no readable call (broken JSON) is shown as text, as it is.
    """
    content = _scan(reply.content, "text")
    reasoning = _scan(reply.thinking, "thinking")
    text = content.text()
    calls = tuple(reply.tool_calls) or content.calls(in_thinking=False)
    if not calls:
        bare, prose = read_untagged(text, tools)
        if bare:
            calls, text = bare, prose
        else:
            calls = reasoning.calls(in_thinking=True) + content.calls(in_thinking=True)
    thinking = STRETCH_BREAK.join([*reasoning.thinking(), *content.thinking()])
    return Reading(thinking=thinking, text=text.strip(), calls=calls)


class LiveReader:
    """The same reading, incrementally, for live display while the reply streams.

    Feed the raw deltas in arrival order, split anywhere (inside a marker, inside a
    multi-byte token); each call returns the pieces to show now: reasoning as "thinking"
    (Ollama's thinking deltas, and reasoning found in the content), everything else as "text".
    Special tokens, call markup and call arguments are never returned: text that may be the
    start of a marker is held until it is known, and from the start of a call section on
    nothing of it is shown (markup that turns out to hold no call is not shown live either;
    the stored reading has it). `close()` returns what was held back and turned out to be text.

    One thing cannot be right live: when the reasoning's opening tag was in the prompt
    template, the content before the late `</think>` has already gone out as "text" by the
    time the tag arrives; from the tag on the pieces are right, and `read_reply` files that
    content as reasoning. Leading space of the first piece of each kind is dropped.
    """

    def __init__(self, tools: Collection[str] = ()) -> None:
        self._content = Scanner(base="text")
        self._reasoning = Scanner(base="thinking")
        self._untagged = UntaggedReader(tools)
        self._started: set[Kind] = set()
        self._content_thinking = False

    def feed(self, *, content: str = "", thinking: str = "") -> list[tuple[Kind, str]]:
        shown: list[tuple[Kind, str]] = []
        if thinking:
            self._reasoning.feed(thinking)
            self._tidy(self._reasoning.take(), shown)
        if content:
            self._content.feed(content)
            self._tidy(self._shown(self._content.take()), shown)
        return shown

    def close(self) -> list[tuple[Kind, str]]:
        shown: list[tuple[Kind, str]] = []
        self._reasoning.close()
        self._tidy(self._reasoning.take(), shown)
        self._content.close()
        self._tidy([*self._shown(self._content.take()), ("text", self._untagged.close())], shown)
        return shown

    def _shown(self, pieces: list[tuple[Kind, str]]) -> list[tuple[Kind, str]]:
        """Content pieces as shown: bare calls held out of the text, and reasoning found in the
        content set apart from Ollama's thinking, as the reading joins them."""
        shown: list[tuple[Kind, str]] = []
        for kind, text in pieces:
            if kind == "text":
                text = self._untagged.feed(text)
            elif not self._content_thinking:
                self._content_thinking = True
                text = STRETCH_BREAK + text if "thinking" in self._started else text
            shown.append((kind, text))
        return shown

    def _tidy(self, pieces: list[tuple[Kind, str]], shown: list[tuple[Kind, str]]) -> None:
        """Add `pieces` to `shown`: empty ones dropped, the leading space of each kind's first piece
        too, neighbours of one kind joined."""
        for kind, text in pieces:
            if kind not in self._started:
                text = text.lstrip()
            if not text:
                continue
            self._started.add(kind)
            if shown and shown[-1][0] == kind:
                shown[-1] = (kind, shown[-1][1] + text)
            else:
                shown.append((kind, text))
