"""Calls written as Python: OLMo 3, LFM2, Llama 3.2 / 4 "pythonic".

    <function_calls>read_file(path="/etc/hosts")
    list_directory(path="/var/log")</function_calls>       OLMo 3 (one call a line)
    <|tool_call_start|>[read_file(path="/etc/hosts")]<|tool_call_end|>   LFM2
    [read_file(path="/etc/hosts"), disk_usage()]             Llama 3.2 / 4, no tags

(from Ollama's `olmo3` and `lfm2` parsers and vLLM's `pythonic` parser). The text is parsed
with `ast`, never evaluated. Keyword arguments only; a value is what the literal says (a
quoted string is a string, `5` an int, `True` or `true` a bool, lists and dicts as
written); a bare word is kept as a string, like Ollama does.
"""

from __future__ import annotations

import ast
from typing import Any, Final

from core.formats.markup import Calls, Miss, Outcome, Section
from core.llm import LLMToolCall

_WORDS: Final = {"true": True, "false": False, "null": None, "none": None}


def _value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | None):
        return node.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_value(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {str(_value(k)) if k is not None else "": _value(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Name):
        return _WORDS.get(node.id.lower(), node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    return ast.unparse(node)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _call(node: ast.expr) -> LLMToolCall | None:
    if not isinstance(node, ast.Call) or node.args:
        return None
    name = _dotted(node.func)
    if name is None or any(k.arg is None for k in node.keywords):
        return None
    return LLMToolCall(name, {k.arg: _value(k.value) for k in node.keywords if k.arg is not None})


def read_calls(source: str) -> tuple[LLMToolCall, ...] | None:
    """The calls in `source`: `f(a=1)`, `[f(a=1), g()]`, or one per line; None if it is anything else."""
    try:
        tree = ast.parse(source.strip(), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    calls: list[LLMToolCall] = []
    for statement in tree.body:
        if not isinstance(statement, ast.Expr):
            return None
        value = statement.value
        for node in value.elts if isinstance(value, ast.List | ast.Tuple) else [value]:
            call = _call(node)
            if call is None:
                return None
            calls.append(call)
    return tuple(calls) or None


def read_section(body: str) -> Outcome:
    calls = read_calls(body)
    return Miss.BROKEN if calls is None else Calls(calls)


SECTIONS: Final = (Section(openers=("<|tool_call_start|>",), parse=read_section, closers=("<|tool_call_end|>",)),)
