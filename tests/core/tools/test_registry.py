"""The registry: schemas from signatures, the context parameter, and how hooks and bodies are called."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ToolError
from core.events import Request, Risk
from core.tools.registry import Plan, ToolContext, tool

REQUEST = Request(platform="console", user_id="tester", channel="console", text="x")


@tool(risk=Risk.WRITE)
async def tag_release(version: str, notes: str = "", *, ctx: ToolContext) -> str:
    """Tag a release.

    Args:
        version: the version to tag.
        notes: release notes.
    """
    return f"{ctx.request.user_id} tagged {version} ({notes or 'no notes'})"


@tool(risk=Risk.READ)
async def ping(host: str) -> str:
    """Ping a host.

    Args:
        host: where.
    """
    return f"pong from {host}"


def test_the_context_parameter_is_left_out_of_the_schema() -> None:
    parameters = tag_release.schema["function"]["parameters"]
    assert set(parameters["properties"]) == {"version", "notes"}
    assert parameters["required"] == ["version"]
    assert tag_release.context_param == "ctx" and ping.context_param is None


def test_the_model_cannot_fill_the_context_in() -> None:
    with pytest.raises(ToolError, match=r"invalid arguments for tag_release: ctx: Extra inputs are not permitted"):
        tag_release.validate({"version": "1.2", "ctx": {"request": {"user_id": "root"}}})
    assert "ctx" not in tag_release.validate({"version": "1.2"})


def test_a_context_parameter_must_be_ctx_typed_tool_context() -> None:
    with pytest.raises(TypeError, match="ctx: ToolContext"):

        @tool()
        async def wrong_name(context: ToolContext) -> str:
            """Wrong."""
            return ""

    with pytest.raises(TypeError, match="ctx: ToolContext"):

        @tool()
        async def wrong_type(ctx: str) -> str:
            """Wrong."""
            return ""


@pytest.mark.asyncio
async def test_run_passes_the_context_only_to_tools_that_take_it() -> None:
    ctx = ToolContext(request=REQUEST)
    assert await tag_release.run(tag_release.validate({"version": "1.2"}), ctx) == "tester tagged 1.2 (no notes)"
    assert await ping.run(ping.validate({"host": "db1"}), ctx) == "pong from db1"


@pytest.mark.asyncio
async def test_without_a_fresh_hook_the_plan_is_made_again() -> None:
    state = {"head": "abc"}

    @tool(risk=Risk.WRITE)
    async def bump(name: str) -> str:
        """Bump something.

        Args:
            name: what.
        """
        return name

    @bump.plan
    async def _plan(args: dict[str, Any]) -> Plan:
        return Plan(risk=Risk.WRITE, summary="bump", detail="bump", fingerprint_parts=(state["head"],))

    assert await bump.fresh_parts({"name": "x"}) == ("abc",)
    state["head"] = "def"
    assert await bump.fresh_parts({"name": "x"}) == ("def",)
    assert await ping.fresh_parts({"host": "db1"}) == ()  # no hooks at all: bound to the arguments alone


def test_check_unchanged_compares_with_the_approved_plan() -> None:
    plan = Plan(risk=Risk.WRITE, summary="s", detail="d", fingerprint_parts=("/srv/a", "hash1"))
    ctx = ToolContext(request=REQUEST, plan=plan, approval_id=7)
    assert ctx.approved
    ctx.check_unchanged(("/srv/a", "hash1"))
    with pytest.raises(ToolError, match="the target changed after the approval was requested"):
        ctx.check_unchanged(("/srv/a", "hash2"))
    assert not ToolContext(request=REQUEST).approved
