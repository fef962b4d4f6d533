"""Typed tool specs, their JSON schema, and argument validation.

A tool is a plain `async def` with typed parameters and a docstring. `@tool(risk=...)`
turns it into a `ToolSpec`; the schema the model sees comes from the signature and the
docstring's `Args:` section. A tool may add a `plan` hook that inspects the arguments
before anything runs: it can refuse, raise or lower the risk (run_command does), and
describe the exact action for the approval prompt (write_file shows a diff).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from core.events import Risk

ToolFn = Callable[..., Awaitable[Any]]


class ToolError(Exception):
    """A failure the model sees as an observation (bad path, refused command, missing unit…)."""


@dataclass(frozen=True)
class Plan:
    """The exact action a call will perform, fixed before approval.

    `fingerprint_parts` are extra facts the approval is bound to (the hash of the
    file a diff was made from, for example); `run` replaces the tool function when
    the action must re-check those facts at execution time.
    """

    risk: Risk
    summary: str
    detail: str
    detail_kind: str = "text"  # "argv" | "diff" | "text"
    host: str = "local"
    fingerprint_parts: tuple[str, ...] = ()
    run: Callable[[], Awaitable[Any]] | None = None


PlanFn = Callable[[dict[str, Any]], Awaitable[Plan]]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(tool_name: str, args: dict[str, Any], parts: Iterable[str] = ()) -> str:
    h = hashlib.sha256()
    h.update(tool_name.encode())
    h.update(b"\0")
    h.update(canonical_json(args).encode())
    for part in parts:
        h.update(b"\0")
        h.update(part.encode())
    return h.hexdigest()


_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    description: list[str] = []
    params: dict[str, str] = {}
    section = "desc"
    current = ""
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if stripped in {"Args:", "Arguments:", "Parameters:"}:
            section = "args"
            continue
        if stripped.endswith(":") and stripped[:-1] in {"Returns", "Raises", "Example", "Examples"}:
            section = "other"
            continue
        if section == "desc":
            description.append(stripped)
        elif section == "args":
            m = _ARG_LINE.match("  " + line if not line.startswith("  ") else line)
            if m:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and stripped:
                params[current] += " " + stripped
    return " ".join(d for d in description if d).strip(), params


@dataclass
class ToolSpec:
    name: str
    description: str
    risk: Risk
    fn: ToolFn
    args_model: type[BaseModel]
    schema: dict[str, Any]
    plan_fn: PlanFn | None = field(default=None)

    def plan(self, fn: PlanFn) -> PlanFn:
        """Decorator: attach a planning hook that describes (or refuses) a call."""
        self.plan_fn = fn
        return fn

    def validate(self, raw: Any) -> dict[str, Any]:
        """Validated arguments, or ToolError with a message the model can act on."""
        if raw is None:
            raw = {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"arguments for {self.name} are not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ToolError(f"arguments for {self.name} must be a JSON object")
        try:
            model = self.args_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            expected = json.dumps(self.schema["function"]["parameters"])
            raise ToolError(f"invalid arguments for {self.name}: {problems}. Expected: {expected}") from exc
        return model.model_dump()

    async def make_plan(self, args: dict[str, Any]) -> Plan:
        if self.plan_fn is not None:
            return await self.plan_fn(args)
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return Plan(risk=self.risk, summary=f"{self.name}({shown})", detail=f"{self.name}({shown})")


def tool(*, risk: Risk | str = Risk.READ, name: str | None = None) -> Callable[[ToolFn], ToolSpec]:
    """Register an async function as a tool with a declared risk."""
    risk = Risk(risk)

    def decorate(fn: ToolFn) -> ToolSpec:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"tool {fn.__name__} must be an async def")
        description, param_docs = _parse_docstring(fn.__doc__ or "")
        if not description:
            raise TypeError(f"tool {fn.__name__} needs a docstring: the model reads it")
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if pname not in hints:
                raise TypeError(f"tool {fn.__name__}: parameter {pname} needs a type hint")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints[pname], default)
        model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
        params = model.model_json_schema()
        params.pop("title", None)
        for pname, prop in params.get("properties", {}).items():
            prop.pop("title", None)
            if pname in param_docs:
                prop["description"] = param_docs[pname]
        params.setdefault("required", [])
        tool_name = name or fn.__name__
        schema = {
            "type": "function",
            "function": {"name": tool_name, "description": description, "parameters": params},
        }
        return ToolSpec(tool_name, description, risk, fn, model, schema)

    return decorate


class ToolRegistry:
    """Tools by name. A dict, not if/elif over strings."""

    def __init__(self, tools: Iterable[ToolSpec] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for spec in tools:
            self.add(spec)

    def add(self, spec: ToolSpec) -> None:
        if spec.name in self._tools:
            raise ValueError(f"tool {spec.name} is registered twice")
        self._tools[spec.name] = spec

    def extend(self, specs: Iterable[ToolSpec]) -> None:
        for spec in specs:
            self.add(spec)

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [self._tools[n].schema for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)


@dataclass(frozen=True)
class ToolOutput:
    """A tool's result when it carries more than text: success and an exit status."""

    text: str
    ok: bool = True
    exit_status: int | None = None
