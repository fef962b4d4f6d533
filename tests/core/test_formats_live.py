"""The same replies streamed through `LiveReader`, split anywhere: what a user watching sees.

Every case is cut at every possible point (and into single characters): the pieces never
hold markup or call arguments, the text shown is the answer of the whole reading (or, when
reasoning's opening tag was in the prompt template, what the documented compromise shows),
and the reasoning shown is the reading's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.formats import LiveReader, read_reply, tokens
from core.llm import LLMReply
from tests.core.test_formats import CASES, MARKUP, TOOLS, Case


def stream(case: Case, cuts: Sequence[int], tools: Sequence[str] = TOOLS) -> list[tuple[str, str]]:
    """Feed Ollama's thinking first, then the content cut at `cuts`; every piece returned, in order."""
    reader = LiveReader(tools)
    pieces: list[tuple[str, str]] = []
    if case.reply_thinking:
        pieces += reader.feed(thinking=case.reply_thinking)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(case.content))), len(case.content)]
    for start, end in itertools.pairwise(bounds):
        pieces += reader.feed(content=case.content[start:end])
    return pieces + reader.close()


def squash(text: str) -> str:
    return " ".join(text.split())


def check_stream(case: Case, pieces: list[tuple[str, str]]) -> None:
    reading = read_reply(LLMReply(content=case.content, thinking=case.reply_thinking), TOOLS)
    shown = "".join(text for _, text in pieces)
    assert not MARKUP.search(shown), pieces
    assert all(text for _, text in pieces), pieces
    text = "".join(t for kind, t in pieces if kind == "text")
    thinking = "".join(t for kind, t in pieces if kind == "thinking")
    assert text.strip() == (reading.text if case.live_text is None else case.live_text), pieces
    if case.live_thinking is not None:
        assert squash(thinking) == squash(case.live_thinking), pieces
    elif case.live_text is None:  # else the reasoning went out as text before its late closer
        assert squash(thinking) == squash(reading.thinking), pieces
    for call in reading.calls:
        for value in call.arguments.values() if isinstance(call.arguments, dict) else ():
            if isinstance(value, str) and len(value) > 3 and value not in reading.text + reading.thinking:
                assert value not in shown, (value, pieces)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_split_at_every_point(case: Case) -> None:
    for cut in range(len(case.content) + 1):
        check_stream(case, stream(case, [cut]))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_one_character_at_a_time(case: Case) -> None:
    check_stream(case, stream(case, range(len(case.content))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_split_anywhere_many_times(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES))
    cuts = data.draw(st.lists(st.integers(0, max(len(case.content), 1)), max_size=12))
    check_stream(case, stream(case, cuts))


# Text with no character any marker or bare call starts with.
PLAIN = st.text(st.characters(blacklist_characters="<[{`f|｜◁", blacklist_categories=["Cs"]), max_size=200)


@settings(max_examples=200, deadline=None)
@given(text=PLAIN, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_plain_text_goes_through_untouched(text: str, cuts: list[int]) -> None:
    reading = read_reply(LLMReply(content=text), TOOLS)
    assert (reading.text, reading.thinking, reading.calls) == (text.strip(), "", ())
    pieces = stream(Case("plain", text), cuts)
    assert "".join(t for _, t in pieces) == text.lstrip()


WORDS = st.sampled_from(["disk", " is ", "full.", "\n", "{", "}", "[", "]", '"name"', ":", " <", "> ", "x=1", "("])
MARKERS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "[THINK]",
        "[/THINK]",
        "<tool_call>",
        "</tool_call>",
        "<function=read_file>",
        "<parameter=path>",
        "</parameter>",
        "</function>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "<|channel|>",
        "analysis",
        "final",
        " to=functions.disk_usage",
        "<|message|>",
        "<|end|>",
        "<|start|>",
        "<|call|>",
        "<｜tool▁calls▁begin｜>",
        "<｜tool▁call▁begin｜>",
        "<｜tool▁sep｜>",
        "<|python_tag|>",
        "<start_function_call>",
        "call:disk_usage{}",
        "<end_function_call>",
        "<|START_THINKING|>",
        "<|END_THINKING|>",
        "<|START_ACTION|>",
        "<function_calls>",
        "</function_calls>",
        '{"name": "disk_usage", "arguments": {}}',
        '{"name": "disk_usage", "parameters": {}}',
        "<|im_end|>",
        "<｜end▁of▁sentence｜>",
        "```json\n",
        "```",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.one_of(WORDS, MARKERS), max_size=25), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_any_mix_of_markup_never_shows_markup_wherever_cut(parts: list[str], cuts: list[int]) -> None:
    content = "".join(parts)
    reading = read_reply(LLMReply(content=content), TOOLS)
    assert not MARKUP.search(reading.text + reading.thinking), reading
    pieces = stream(Case("mix", content), cuts)
    shown = "".join(t for _, t in pieces)
    assert not MARKUP.search(shown), pieces
    assert shown == "".join(t for _, t in stream(Case("mix", content), [])), "where it is cut changes what is shown"


@settings(max_examples=200, deadline=None)
@given(
    prose=PLAIN,
    value=st.recursive(
        # Special tokens (`<|A|>`, `</s>`) are dropped wherever they are, data included: by design.
        st.none() | st.booleans() | st.integers() | st.text(max_size=10).filter(lambda s: tokens.remove(s) == s),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=8).filter(lambda s: tokens.remove(s) == s), inner, max_size=3)
        ),
        max_leaves=8,
    ),
)
def test_json_data_in_an_answer_is_never_a_call(prose: str, value: Any) -> None:
    import json

    data = json.dumps({"name": "read_file", "arguments": {}, "extra": value})
    content = f"{prose} {data} {json.dumps(value)}"
    reading = read_reply(LLMReply(content=content), TOOLS)
    assert reading.calls == ()
    assert reading.text == content.strip()


def test_a_long_reply_in_many_deltas_costs_one_pass() -> None:
    words = "The disk on /var is 93% full; <b>logs</b> grow [fast] and {the} rotation `cron` job failed. "
    content = "<think>" + words * 110 + "</think>" + words * 110  # about 20k characters
    started = time.perf_counter()
    reader = LiveReader(TOOLS)
    step = len(content) // 3000 + 1
    for at in range(0, len(content), step):
        reader.feed(content=content[at : at + step])
    reader.close()
    assert time.perf_counter() - started < 1.0  # about 25 ms on one core


@pytest.mark.parametrize(
    "content",
    ['{"name": ' * 3000, "<tool_call>" * 3000, '<tool_call>{"name": [' * 2000, "[" * 5000, "<think>a</think>b" * 2000],
)
def test_hostile_shapes_stay_cheap(content: str) -> None:
    started = time.perf_counter()
    read_reply(LLMReply(content=content), TOOLS)
    reader = LiveReader(TOOLS)
    for at in range(0, len(content), 7):
        reader.feed(content=content[at : at + 7])
    reader.close()
    assert time.perf_counter() - started < 2.0
