"""Tools the model may call. Each is a typed `async def` registered with its risk."""

from core.errors import ToolError
from core.tools.registry import Plan, ToolContext, ToolRegistry, ToolSpec, tool

__all__ = ["Plan", "ToolContext", "ToolError", "ToolRegistry", "ToolSpec", "tool"]
