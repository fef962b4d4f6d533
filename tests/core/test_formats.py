"""Replies in every format local models write, and the reading each must get (our own samples).

`CASES` are also streamed by test_formats_live.py. What is asserted is what a user would
notice: the exact calls (types too), the answer text, the reasoning, and that no special
token or call markup is left in either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.formats import Reading, read_reply
from core.health.daily import DailyAnalysis
from core.llm import LLMReply, LLMToolCall, WholeReplies
from core.memory.extraction import parse_extraction

TOOLS = (
    "read_file",
    "search_files",
    "list_directory",
    "git_status",
    "system_info",
    "disk_usage",
    "run_command",
)

# Written independently of core.formats, so a test does not share the code's blind spots.
MARKUP = re.compile(
    r"<\|[A-Za-z_/][^|\s]{0,40}\|>|<｜[^｜\s]{1,40}｜>|\[/?(?:TOOL_CALLS|THINK|ARGS|CALL_ID|INST)\]"
    r"|</?think>|</?thinking>|</?tool_calls?>|<function=|</function>|<parameter=|</?function_calls>|<invoke\b"
    r"|<(?:start|end)_function_call>|<escape>|</?arg_(?:key|value)>|</?response>|functools\[|</s>|DSML"
)


@dataclass(frozen=True)
class Case:
    id: str
    content: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    text: str = ""
    thinking: str = ""
    reply_thinking: str = ""  # Ollama's separate thinking field
    live_text: str | None = None  # what streaming shows as text, when it cannot match the reading
    live_thinking: str | None = None  # what streaming shows as reasoning, when it cannot match the reading

    def __str__(self) -> str:
        return self.id


def typed(value: Any) -> str:
    """A value with its JSON types showing (1, 1.0, "1" and true differ)."""
    return json.dumps(value, sort_keys=True)


CASES = [
    # ---- Hermes / Qwen <tool_call> JSON -------------------------------------------------------
    Case(
        "hermes-prose-then-call",
        'Reading the hosts file.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "/etc/hosts", '
        '"max_bytes": 2048}}\n</tool_call>',
        calls=[("read_file", {"path": "/etc/hosts", "max_bytes": 2048})],
        text="Reading the hosts file.",
    ),
    Case(
        "hermes-parallel-last-unclosed",
        '<tool_call>{"name": "disk_usage", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "git_status", "arguments": {"repo": "/srv/app"}}',
        calls=[("disk_usage", {}), ("git_status", {"repo": "/srv/app"})],
    ),
    Case(
        "hermes-types-kept",
        '<tool_call>{"arguments": {"query": "12", "in_content": false, "max_results": 3.5}, '
        '"name": "search_files"}</tool_call>',
        calls=[("search_files", {"query": "12", "in_content": False, "max_results": 3.5})],
    ),
    Case(
        "granite4-arguments-as-json-string",
        '<tool_call>\n{"name": "search_files", "arguments": "{\\"query\\": \\"OOM\\", \\"in_content\\": true}"}'
        "\n</tool_call>",
        calls=[("search_files", {"query": "OOM", "in_content": True})],
    ),
    Case(
        "hermes-openai-wrapper",
        '<tool_call>{"type": "function", "function": {"name": "list_directory", "arguments": '
        '{"path": "/var/log"}}}</tool_call>',
        calls=[("list_directory", {"path": "/var/log"})],
    ),
    Case(
        "hermes-fenced-inside-tag",
        '<tool_call>\n```json\n{"name": "system_info", "arguments": {}}\n```\n</tool_call>',
        calls=[("system_info", {})],
    ),
    Case(
        "hermes-broken-json-is-shown",
        '<tool_call>\n{"name": "run_command", "arguments": {"command": "uptime"}',
        text='{"name": "run_command", "arguments": {"command": "uptime"}',
        live_text="",
    ),
    # ---- Qwen3-Coder / Nemotron XML, Functionary -----------------------------------------------
    Case(
        "qwen3coder-xml",
        "<tool_call>\n<function=run_command>\n<parameter=command>\ndf -h && du -sh /var/log | sort\n"
        "</parameter>\n</function>\n</tool_call>",
        calls=[("run_command", {"command": "df -h && du -sh /var/log | sort"})],
    ),
    Case(
        "qwen3coder-values-stay-strings",
        "<tool_call>\n<function=search_files>\n<parameter=query>\nline one\nline two\n\n</parameter>\n"
        "<parameter=max_results>\n20\n</parameter>\n<parameter=in_content>\ntrue\n</parameter>\n"
        "</function>\n</tool_call>",
        calls=[("search_files", {"query": "line one\nline two\n", "max_results": "20", "in_content": "true"})],
    ),
    Case(
        "qwen3coder-two-calls-one-unclosed-parameter",
        "<tool_call><function=git_status><parameter=repo>/srv/a</parameter></function></tool_call>"
        "<tool_call><function=list_directory><parameter=path>/srv/b",
        calls=[("git_status", {"repo": "/srv/a"}), ("list_directory", {"path": "/srv/b"})],
    ),
    Case(
        "nemotron-late-think-then-xml",
        "The user wants the log directory.</think>\nLet me list it.\n<tool_call>\n<function=list_directory>\n"
        "<parameter=path>\n/var/log\n</parameter>\n</function>\n</tool_call>",
        calls=[("list_directory", {"path": "/var/log"})],
        text="Let me list it.",
        thinking="The user wants the log directory.",
        live_text="The user wants the log directory.\nLet me list it.",
    ),
    Case(
        "functionary-function-tag-json",
        '<function=read_file>{"path": "/etc/fstab", "max_bytes": 100}</function>\n<function=disk_usage>{}</function>',
        calls=[("read_file", {"path": "/etc/fstab", "max_bytes": 100}), ("disk_usage", {})],
    ),
    # ---- GLM --------------------------------------------------------------------------------
    Case(
        "glm-arg-pairs",
        "<think>Search the logs.</think>Searching.<tool_call>search_files\n<arg_key>query</arg_key>\n"
        "<arg_value>timeout</arg_value>\n<arg_key>max_results</arg_key>\n<arg_value>5</arg_value>\n</tool_call>",
        calls=[("search_files", {"query": "timeout", "max_results": "5"})],
        text="Searching.",
        thinking="Search the logs.",
    ),
    Case("glm-no-arguments", "<tool_call>system_info</tool_call>", calls=[("system_info", {})]),
    Case(
        "glm47-no-newlines",
        "<tool_call>read_file<arg_key>path</arg_key><arg_value>/etc/os-release</arg_value></tool_call>",
        calls=[("read_file", {"path": "/etc/os-release"})],
    ),
    Case(
        "prose-in-tool-call-tags-is-not-a-call",
        "<tool_call>I would call a tool here</tool_call>",
        text="I would call a tool here",
        live_text="",
    ),
    # ---- Mistral ------------------------------------------------------------------------------
    Case(
        "mistral-v3-list",
        '[TOOL_CALLS] [{"name": "search_files", "arguments": {"query": "panic", "max_results": 10}}, '
        '{"name": "git_status", "arguments": {"repo": "/etc"}}]',
        calls=[("search_files", {"query": "panic", "max_results": 10}), ("git_status", {"repo": "/etc"})],
    ),
    Case(
        "mistral-v11-two-calls",
        '[TOOL_CALLS]read_file[ARGS]{"path": "/etc/hostname"}[TOOL_CALLS]disk_usage[ARGS]{}',
        calls=[("read_file", {"path": "/etc/hostname"}), ("disk_usage", {})],
    ),
    Case(
        "mistral-v13-call-id",
        'Checking.[TOOL_CALLS]git_status[CALL_ID]a1b2c3d4e[ARGS]{"repo": "/srv/www"}',
        calls=[("git_status", {"repo": "/srv/www"})],
        text="Checking.",
    ),
    Case(
        "magistral-think-then-call",
        '[THINK]Which repository? The web one.[/THINK][TOOL_CALLS]git_status[ARGS]{"repo": "/srv/www"}',
        calls=[("git_status", {"repo": "/srv/www"})],
        thinking="Which repository? The web one.",
    ),
    Case(
        "magistral-template-opened-think",
        "Short question, short answer.[/THINK]\n\nThe load is fine.",
        text="The load is fine.",
        thinking="Short question, short answer.",
        live_text="Short question, short answer.\n\nThe load is fine.",
    ),
    # ---- DeepSeek ------------------------------------------------------------------------------
    Case(
        "deepseek-r1-fenced",
        "<think>\nThe hosts file.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
        'read_file\n```json\n{"path": "/etc/hosts"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        calls=[("read_file", {"path": "/etc/hosts"})],
        thinking="The hosts file.",
    ),
    Case(
        "deepseek-v31-ascii-bars-two-calls",
        'Both.<|tool▁calls▁begin|><|tool▁call▁begin|>list_directory<|tool▁sep|>{"path": "/tmp"}'
        "<|tool▁call▁end|><|tool▁call▁begin|>disk_usage<|tool▁sep|>{}<|tool▁call▁end|><|tool▁calls▁end|>",
        calls=[("list_directory", {"path": "/tmp"}), ("disk_usage", {})],
        text="Both.",
    ),
    Case(
        "deepseek-underscore-spelling",
        "<｜tool_calls_begin｜><｜tool_call_begin｜>system_info<｜tool_sep｜>{}<｜tool_call_end｜><｜tool_calls_end｜>",
        calls=[("system_info", {})],
    ),
    Case(
        "deepseek-r1-writing-about-the-syntax",
        "So a call begins with <｜tool▁calls▁begin｜> and then",
        thinking="So a call begins with  and then",
        live_text="So a call begins with",
    ),
    Case(
        "deepseek-v32-dsml",
        '<｜DSML｜function_calls>\n<｜DSML｜invoke name="read_file">\n'
        '<｜DSML｜parameter name="path" string="true">/var/log/syslog</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="max_bytes" string="false">4096</｜DSML｜parameter>\n'
        '</｜DSML｜invoke>\n<｜DSML｜invoke name="search_files">\n'
        '<｜DSML｜parameter name="query" string="true">4096</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="in_content" string="false">true</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜function_calls>",
        calls=[
            ("read_file", {"path": "/var/log/syslog", "max_bytes": 4096}),
            ("search_files", {"query": "4096", "in_content": True}),
        ],
    ),
    Case(
        "deepseek-v32-plain-tags-json-invoke",
        '<function_calls>\n<invoke name="list_directory">\n{"path": "/home"}\n</invoke>\n</function_calls>',
        calls=[("list_directory", {"path": "/home"})],
    ),
    # ---- gpt-oss harmony ------------------------------------------------------------------------
    Case(
        "harmony-analysis-then-call",
        "<|channel|>analysis<|message|>Need the disk figures.<|end|><|start|>assistant<|channel|>commentary "
        "to=functions.disk_usage <|constrain|>json<|message|>{}<|call|>",
        calls=[("disk_usage", {})],
        thinking="Need the disk figures.",
    ),
    Case(
        "harmony-analysis-then-final",
        "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>"
        "All services are up.<|return|>",
        text="All services are up.",
        thinking="Simple.",
    ),
    Case(
        "harmony-recipient-before-channel",
        '<|start|>assistant to=functions.read_file<|channel|>commentary json<|message|>{"path": "/etc/motd", '
        '"max_bytes": 64}<|call|>',
        calls=[("read_file", {"path": "/etc/motd", "max_bytes": 64})],
    ),
    Case(
        "harmony-preamble-call-and-plain-message",
        "<|channel|>commentary<|message|>Checking git first.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.git_status<|message|>{"repo": "/srv/app"}<|end|><|start|>assistant<|message|>Clean.<|end|>',
        calls=[("git_status", {"repo": "/srv/app"})],
        text="Checking git first.Clean.",
        live_text="Checking git first.Clean.",
    ),
    # ---- Llama 3.x -----------------------------------------------------------------------------
    Case(
        "llama31-python-tag-builtin",
        '<|python_tag|>search_files.call(query="disk full", max_results=3)<|eom_id|>',
        calls=[("search_files", {"query": "disk full", "max_results": 3})],
    ),
    Case(
        "llama31-python-tag-json",
        '<|python_tag|>{"name": "read_file", "parameters": {"path": "/etc/hosts"}}<|eom_id|>',
        calls=[("read_file", {"path": "/etc/hosts"})],
    ),
    Case(
        "llama31-python-tag-code",
        "<|python_tag|>import os\nprint(os.getloadavg())",
        calls=[("python", {"code": "import os\nprint(os.getloadavg())"})],
    ),
    Case(
        "llama-bare-json-parameters",
        '{"name": "read_file", "parameters": {"path": "/etc/resolv.conf", "max_bytes": 512}}',
        calls=[("read_file", {"path": "/etc/resolv.conf", "max_bytes": 512})],
    ),
    Case(
        "llama-semicolons",
        '{"name": "disk_usage", "parameters": {}}; {"name": "list_directory", "parameters": {"path": "/var"}}',
        calls=[("disk_usage", {}), ("list_directory", {"path": "/var"})],
    ),
    Case(
        "llama-json-in-prose",
        'I will check: {"name": "system_info", "parameters": {}} and report back.',
        calls=[("system_info", {})],
        text="I will check:  and report back.",
        live_text="I will check:  and report back.",
    ),
    Case(
        "small-model-fenced-call",
        'Let me look.\n```json\n{"name": "list_directory", "arguments": {"path": "/srv"}}\n```',
        calls=[("list_directory", {"path": "/srv"})],
        text="Let me look.",
    ),
    Case(
        "firefunction-functools",
        ' functools[{"name": "git_status", "arguments": {"repo": "/srv/api"}}]',
        calls=[("git_status", {"repo": "/srv/api"})],
    ),
    # ---- pythonic: OLMo 3, LFM2, Llama 3.2 ---------------------------------------------------------
    Case(
        "olmo3-one-call-a-line",
        'Two checks.<function_calls>disk_usage()\nread_file(path="/proc/loadavg", max_bytes=64)</function_calls>',
        calls=[("disk_usage", {}), ("read_file", {"path": "/proc/loadavg", "max_bytes": 64})],
        text="Two checks.",
    ),
    Case(
        "lfm2-list",
        '<|tool_call_start|>[search_files(query="error", in_content=True, max_results=-1), '
        'list_directory(path="/etc")]<|tool_call_end|>',
        calls=[
            ("search_files", {"query": "error", "in_content": True, "max_results": -1}),
            ("list_directory", {"path": "/etc"}),
        ],
    ),
    Case(
        "llama32-pythonic-untagged",
        '[git_status(repo="/srv/app"), disk_usage()]',
        calls=[("git_status", {"repo": "/srv/app"}), ("disk_usage", {})],
    ),
    # ---- FunctionGemma --------------------------------------------------------------------------
    Case(
        "functiongemma",
        "One moment.<start_function_call>call:search_files{query:<escape>a, b: c<escape>,max_results:5,"
        "in_content:true}<end_function_call>",
        calls=[("search_files", {"query": "a, b: c", "max_results": 5, "in_content": True})],
        text="One moment.",
    ),
    Case(
        "functiongemma-two-calls",
        "<start_function_call>call:disk_usage{}<end_function_call>"
        "<start_function_call>call:read_file{path:<escape>/etc/hosts<escape>}<end_function_call>",
        calls=[("disk_usage", {}), ("read_file", {"path": "/etc/hosts"})],
    ),
    # ---- Cohere, Granite, Kimi ----------------------------------------------------------------------
    Case(
        "command-r7b-template-opened-thinking",
        "The user greets me.<|END_THINKING|><|START_TEXT|>Hello! What should I check?<|END_TEXT|>",
        text="Hello! What should I check?",
        thinking="The user greets me.",
        live_text="The user greets me.Hello! What should I check?",
    ),
    Case(
        "command-r7b-action",
        "<|START_THINKING|>Two tools.<|END_THINKING|><|START_ACTION|>[\n"
        '  {"tool_call_id": "0", "tool_name": "read_file", "parameters": {"path": "/etc/hosts"}},\n'
        '  {"tool_call_id": "1", "tool_name": "system_info", "parameters": {}}\n]<|END_ACTION|>',
        calls=[("read_file", {"path": "/etc/hosts"}), ("system_info", {})],
        thinking="Two tools.",
    ),
    Case(
        "granite33-tool-call",
        '<|tool_call|>[{"name": "list_directory", "arguments": {"path": "/opt"}}]',
        calls=[("list_directory", {"path": "/opt"})],
    ),
    Case(
        "granite33-response",
        "<think>Nothing to run.</think><response>Memory use is normal.</response>",
        text="Memory use is normal.",
        thinking="Nothing to run.",
    ),
    Case(
        "kimi-k2",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0<|tool_call_argument_begin|>"
        '{"path": "/etc/issue"}<|tool_call_end|><|tool_calls_section_end|>',
        calls=[("read_file", {"path": "/etc/issue"})],
    ),
    # ---- reasoning and special tokens ---------------------------------------------------------------
    Case(
        "think-block-then-answer",
        "<think>\nIs nginx running?\n</think>\n\nYes, nginx is running.<|im_end|>",
        text="Yes, nginx is running.",
        thinking="Is nginx running?",
    ),
    Case(
        "think-opened-in-template",
        "Count the mounts.\n- / and /boot</think>\n\nTwo mounts.",
        text="Two mounts.",
        thinking="Count the mounts.\n- / and /boot",
        live_text="Count the mounts.\n- / and /boot\n\nTwo mounts.",
    ),
    Case("think-cut-off", "<think>I was thinking about the disk and", thinking="I was thinking about the disk and"),
    Case(
        "two-think-blocks",
        "<think>first</think>Middle.<think>second</think>End.",
        text="Middle.End.",
        thinking="first\n\nsecond",
    ),
    Case(
        "reply-thinking-and-content-thinking",
        "<think>more</think>Answer.",
        reply_thinking="from ollama",
        text="Answer.",
        thinking="from ollama\n\nmore",
    ),
    Case(
        "stray-header-token-is-not-a-header",
        "Up since Monday.<|start|>" + "and still plain text; " * 15,
        text="Up since Monday." + "and still plain text; " * 14 + "and still plain text;",
    ),
    Case("chatml-header-dropped", "<|im_start|>assistant\nSure, done.<|im_end|>", text="Sure, done."),
    Case(
        "special-tokens-dropped",
        "<|start_header_id|>assistant<|end_header_id|>The backup ran.<|eot_id|></s><｜end▁of▁sentence｜>",
        text="The backup ran.",
    ),
    Case(
        "call-in-ollama-thinking",
        "",
        reply_thinking='I need the file. <tool_call>{"name": "read_file", "arguments": {"path": "/etc/hosts"}}'
        "</tool_call>",
        calls=[("read_file", {"path": "/etc/hosts"})],
        thinking="I need the file.",
    ),
    Case(
        "call-inside-think-block",
        '<think>Look first. <tool_call>{"name": "disk_usage", "arguments": {}}</tool_call></think>',
        calls=[("disk_usage", {})],
        thinking="Look first.",
    ),
    Case(
        "think-holding-tag-text-only",
        "<think><tool_call>hmm, no</tool_call>",
        thinking="hmm, no",
        live_thinking="",  # markup that turns out to hold no call is not shown live
    ),
    # ---- not calls ----------------------------------------------------------------------------------
    Case("plain-answer", "The disk is 41 % full.", text="The disk is 41 % full."),
    Case("json-answer", '{"status": "ok", "free_gb": 12}', text='{"status": "ok", "free_gb": 12}'),
    Case(
        "json-with-name-and-more",
        '{"name": "read_file", "arguments": {"path": "/x"}, "why": "example"}',
        text='{"name": "read_file", "arguments": {"path": "/x"}, "why": "example"}',
    ),
    Case(
        "json-naming-an-unknown-tool",
        'Example: {"name": "delete_everything", "parameters": {}}',
        text='Example: {"name": "delete_everything", "parameters": {}}',
    ),
    Case(
        "code-block",
        'Run this:\n```python\nprint({"name": "read_file"})\nfor x in [1, 2]: pass\n```',
        text='Run this:\n```python\nprint({"name": "read_file"})\nfor x in [1, 2]: pass\n```',
    ),
    Case("bracketed-prose", "[draft] The cron job failed.", text="[draft] The cron job failed."),
    Case(
        "pythonic-lookalike-in-prose",
        'Call it like [read_file(path="/etc/hosts")] when needed.',
        text='Call it like [read_file(path="/etc/hosts")] when needed.',
    ),
    Case("html-and-comparisons", "<b>3 < 5</b> and a <br> tag", text="<b>3 < 5</b> and a <br> tag"),
]


def read(case: Case, tools: tuple[str, ...] = TOOLS) -> Reading:
    return read_reply(LLMReply(content=case.content, thinking=case.reply_thinking), tools)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_format_is_read(case: Case) -> None:
    reading = read(case)
    assert [(c.name, typed(c.arguments)) for c in reading.calls] == [(n, typed(a)) for n, a in case.calls]
    assert reading.text == case.text
    assert reading.thinking == case.thinking


@pytest.mark.parametrize("case", CASES, ids=str)
def test_no_markup_is_left_in_text_or_reasoning(case: Case) -> None:
    reading = read(case)
    assert not MARKUP.search(reading.text), reading.text
    assert not MARKUP.search(reading.thinking), reading.thinking


def test_structured_calls_win_over_markup_in_the_content() -> None:
    reply = LLMReply(
        content='Sure.<tool_call>{"name": "run_command", "arguments": {"command": "reboot"}}</tool_call>',
        tool_calls=(LLMToolCall("disk_usage", {}),),
    )
    reading = read_reply(reply, TOOLS)
    assert reading.calls == (LLMToolCall("disk_usage", {}),)
    assert reading.text == "Sure."


def test_calls_in_the_content_win_over_calls_in_the_reasoning() -> None:
    reply = LLMReply(
        content='<tool_call>{"name": "read_file", "arguments": {"path": "/etc/hosts"}}</tool_call>',
        thinking='Maybe <tool_call>{"name": "disk_usage", "arguments": {}}</tool_call> first? No.',
    )
    reading = read_reply(reply, TOOLS)
    assert reading.calls == (LLMToolCall("read_file", {"path": "/etc/hosts"}),)
    assert reading.thinking == "Maybe  first? No."


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "read_file", "parameters": {"path": "/etc/shadow"}}',
        '[{"name": "run_command", "arguments": {"command": "rm -rf /"}}]',
        '[run_command(command="rm -rf /")]',
    ],
)
def test_untagged_shapes_are_never_calls_without_tools(content: str) -> None:
    reading = read_reply(LLMReply(content=content))
    assert reading.calls == ()
    assert reading.text == content


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "read_file", "arguments": "not an object"}',
        '{"name": "read_file", "arguments": {"path": "/x"}, "id": 1}',
        '{"name": ["read_file"], "arguments": {}}',
        '{"tool": "read_file", "arguments": {}}',
        'The schema is {"name": "string", "parameters": {"type": "object"}}.',
        '[{"name": "read_file", "arguments": {}}, {"name": "nope", "arguments": {}}]',
        '[read_file(path="/x"), unknown_tool()]',
        '[read_file("/x")]',
        '```json\n{"name": "disk_usage", "arguments": {}, "note": 1}\n```',
    ],
)
def test_prose_with_json_or_code_is_not_executed(content: str) -> None:
    reading = read_reply(LLMReply(content=content), TOOLS)
    assert reading.calls == ()
    assert reading.text == content


def test_a_late_think_closer_files_only_what_came_before_it() -> None:
    reading = read_reply(LLMReply(content="reasoning</think>answer</think>more"), TOOLS)
    assert (reading.thinking, reading.text) == ("reasoning", "answermore")


class _OneReply(WholeReplies):
    def __init__(self, reply: LLMReply) -> None:
        self.reply = reply

    async def chat(self, messages: Any, tools: Any) -> LLMReply:
        return self.reply


@pytest.mark.asyncio
async def test_the_daily_summary_keeps_only_the_answer(tmp_path: Any) -> None:
    reply = LLMReply(content="<think>Figures look fine.</think>\nAll quiet.<|im_end|>", thinking="Ollama's part")
    daily = DailyAnalysis(db_url="sqlite://", out_dir=tmp_path, llm=_OneReply(reply), notebook=None)
    assert await daily.summarize({"cpu": 3}) == ("All quiet.", "")


def test_fact_extraction_reads_past_reasoning_and_tokens() -> None:
    facts = '{"facts": [{"text": "pgbouncer listens on 6432", "about": "pgbouncer"}]}'
    parsed = parse_extraction(f"<think>One fact.</think>{facts}<|im_end|>")
    assert parsed is not None and [f.text for f in parsed.facts] == ["pgbouncer listens on 6432"]
