"""Tools the model may call. Each is a typed `async def` registered with its risk."""

from core.tools.registry import Plan, ToolError, ToolRegistry, ToolSpec, tool

__all__ = ["Plan", "ToolError", "ToolRegistry", "ToolSpec", "tool"]
