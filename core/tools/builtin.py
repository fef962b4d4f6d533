"""The default tool set, built from its dependencies (no globals)."""

from __future__ import annotations

from pathlib import Path

from core.policy import Policy
from core.sandbox import Sandbox
from core.tools.command import command_tools
from core.tools.files import file_tools
from core.tools.gitops import GitOps, gitops_tools
from core.tools.registry import ToolRegistry
from core.tools.system import system_tools


def builtin_tools(
    policy: Policy, *, backup_dir: Path, sandbox: Sandbox | None = None, gitops: GitOps | None = None
) -> ToolRegistry:
    """The file, command and system tools; with `gitops`, the GitOps tools too and writes committed."""
    registry = ToolRegistry()
    registry.extend(system_tools())
    registry.extend(file_tools(policy, backup_dir=backup_dir, gitops=gitops))
    if gitops is not None:
        registry.extend(gitops_tools(gitops))
    registry.extend(command_tools(policy, sandbox=sandbox))
    return registry
