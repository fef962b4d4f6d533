"""Shared pieces of the benchmarks: a wired agent on a temp store (the scripted models are
the tests' own, in tests/support/models.py)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.agent import Agent, AgentConfig
from core.approval import ApprovalGate, ApprovalRules
from core.policy import Policy, PolicyConfig
from core.store import Store
from core.tools.builtin import builtin_tools
from core.tools.registry import ToolRegistry


class NoStepWrites(Store):
    """The floor: a store that drops step and audit writes (everything else is real)."""

    async def add_steps(self, run_id: int, steps: Sequence[tuple[int, object]], *, audit: Sequence[Any] = ()) -> None:
        return None

    async def audit(self, entry: Any) -> None:
        return None


async def make_agent(
    llm: Any,
    *,
    tmp: Path | None = None,
    extra_read: Sequence[str] = (),
    registry: ToolRegistry | None = None,
    store_class: type[Store] = Store,
) -> tuple[Agent, Store, Path]:
    tmp = tmp or Path(tempfile.mkdtemp(prefix="orch-bench-"))
    root = tmp / "ws"
    root.mkdir(exist_ok=True)
    store = store_class(f"sqlite:///{tmp / 'bench.db'}")
    await store.init()
    policy = Policy(PolicyConfig(file_roots=[root], extra_read_commands=frozenset(extra_read)))
    tools = registry or builtin_tools(policy, backup_dir=tmp / "backups")
    gate = ApprovalGate(store, ApprovalRules())
    agent = Agent(llm=llm, tools=tools, store=store, gate=gate, policy=policy, config=AgentConfig(max_iterations=50))
    return agent, store, tmp


counter = itertools.count()
