"""Typed tool specs, their JSON schema, argument validation, and how a call is run.

A tool is a plain `async def` with typed parameters and a docstring. `@tool(risk=...)`
turns it into a `ToolSpec`; the schema the model sees comes from the signature and the
docstring's `Args:` section. The tool's own function does the work, and the agent calls
it only once the call may run: at once for a read, after a person's approval otherwise.

Two optional hooks sit around the body (pydantic-ai's approval-required toolset has
the same shape):

- `@spec.plan` inspects the arguments before anything runs and says what approval
  needs: the risk (run_command lowers it for read-only commands), a summary, the exact
  argv or diff, the host, and the facts the approval is bound to (`fingerprint_parts`).
  It may refuse by raising.
- `@spec.check_fresh` runs after the approval and before the body: it re-derives those
  facts from the world as it is now (the file's hash, the repository's HEAD and tree,
  the container's id) and checks the policy again. The agent refuses the call when they
  no longer match what was approved. Without the hook the plan is made again.

A parameter annotated `ToolContext` (named `ctx`) gives the body who asked and which
plan was approved. It is not part of the schema, so the model can never fill it in.
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

from core import texts
from core.errors import ToolError
from core.events import DetailKind, Request, Risk

ToolFn = Callable[..., Awaitable[Any]]
CONTEXT_PARAM = "ctx"
TARGET_CHANGED = (
    "the target changed after the approval was requested (the diff no longer applies); "
    "read it again and propose a new change"
)


@dataclass(frozen=True)
class Plan:
    """What approval needs to know about a call, fixed before anyone is asked.

    `detail` is what the approver reads (the exact argv, or the diff); `fingerprint_parts`
    are facts the approval is bound to besides the arguments (the hash of the file a diff
    was made from, for example), re-derived by the tool's fresh hook after the approval.
    `reuse` says a person's approval of this plan also covers the same plan (same tool,
    same fingerprint parts) again later in the same run: the QA tools, approved once per
    workflow run for a directory and an exact argv.
    """

    risk: Risk
    summary: str
    detail: str
    detail_kind: DetailKind = "text"
    host: str = "local"
    fingerprint_parts: tuple[str, ...] = ()
    reuse: bool = False


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool body may know about its call beyond the arguments the model gave.

    `plan` is the plan the call runs under (the approved one for a risky call);
    `approval_id` is set only when a person approved it, and `approved_by` names who
    (`platform:user`, several comma-separated when a quorum decided).
    """

    request: Request
    run_id: int = 0
    call_id: str = ""
    plan: Plan | None = None
    approval_id: int | None = None
    approved_by: str = ""

    @property
    def approved(self) -> bool:
        return self.approval_id is not None

    def check_unchanged(self, parts: tuple[str, ...]) -> None:
        """Refuse unless `parts` are the facts the approval was bound to.

        The fresh hook already checked them; a body that is about to act on those facts
        calls this with what it sees right before acting, so a change in between is not
        acted on either.
        """
        if self.plan is not None and tuple(parts) != self.plan.fingerprint_parts:
            raise ToolError(texts.NOT_RUN.format(why=TARGET_CHANGED))


PlanFn = Callable[..., Awaitable[Plan]]  # (args) or (args, ctx)
FreshFn = Callable[..., Awaitable[tuple[str, ...]]]  # (args) or (args, ctx)


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


def _takes_context(fn: Callable[..., Any]) -> bool:
    return len(inspect.signature(fn).parameters) >= 2


@dataclass
class ToolSpec:
    name: str
    description: str
    risk: Risk
    fn: ToolFn
    args_model: type[BaseModel]
    schema: dict[str, Any]
    context_param: str | None = None
    plan_fn: PlanFn | None = field(default=None)
    fresh_fn: FreshFn | None = field(default=None)

    def plan(self, fn: PlanFn) -> PlanFn:
        """Decorator: attach the hook that describes (or refuses) a call before approval."""
        self.plan_fn = fn
        return fn

    def check_fresh(self, fn: FreshFn) -> FreshFn:
        """Decorator: attach the hook that re-derives the fingerprint parts after approval."""
        self.fresh_fn = fn
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

    async def make_plan(self, args: dict[str, Any], ctx: ToolContext | None = None) -> Plan:
        """The plan for these arguments; a hook that takes a second parameter also gets the
        context (who asks), for tools whose risk depends on the requester (memory ownership)."""
        if self.plan_fn is not None:
            return await (self.plan_fn(args, ctx) if _takes_context(self.plan_fn) else self.plan_fn(args))
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return Plan(risk=self.risk, summary=f"{self.name}({shown})", detail=f"{self.name}({shown})")

    async def fresh_parts(self, args: dict[str, Any], ctx: ToolContext | None = None) -> tuple[str, ...]:
        """The fingerprint parts as they are now; raises when the call may no longer run."""
        if self.fresh_fn is not None:
            hook = self.fresh_fn
            return tuple(await (hook(args, ctx) if _takes_context(hook) else hook(args)))
        return (await self.make_plan(args, ctx)).fingerprint_parts

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        """Call the tool's own function with validated arguments (and the context, if it takes one)."""
        if self.context_param is None:
            return await self.fn(**args)
        return await self.fn(**args, **{self.context_param: ctx})


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
        context_param: str | None = None
        for pname, param in inspect.signature(fn).parameters.items():
            if pname not in hints:
                raise TypeError(f"tool {fn.__name__}: parameter {pname} needs a type hint")
            if hints[pname] is ToolContext or pname == CONTEXT_PARAM:
                if hints[pname] is not ToolContext or pname != CONTEXT_PARAM:
                    raise TypeError(f"tool {fn.__name__}: the context parameter is `{CONTEXT_PARAM}: ToolContext`")
                context_param = pname  # filled by the agent, never by the model: not in the schema
                continue
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
        return ToolSpec(tool_name, description, risk, fn, model, schema, context_param)

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
