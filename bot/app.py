"""Wiring: builds the core services from settings. No globals; callers pass these in."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bot.memory_cmd import open_memory
from bot.settings import Settings, where_set
from core.agent import Agent, AgentConfig, ContextProvider, RunHook
from core.approval import ApprovalGate, ApprovalRules
from core.errors import ConfigurationError
from core.events import Risk
from core.hosts import Inventory
from core.instance import ProcessIdentity
from core.llm import LLM, OllamaLLM
from core.policy import Policy, PolicyConfig
from core.redact import Redactor
from core.runs import interrupt_orphaned_runs
from core.sandbox import Sandbox, SandboxConfig
from core.store import Store
from core.store.models import Approval, Run
from core.tools.builtin import builtin_tools
from core.tools.infra import infra_tools
from core.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from core.memory.service import MemoryService

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    policy: Policy
    tools: ToolRegistry
    gate: ApprovalGate
    llm: LLM
    agent: Agent
    expired_on_start: list[Approval] = field(default_factory=list)
    memory: MemoryService | None = None
    interrupted_on_start: list[Run] = field(default_factory=list)  # runs a crash left behind, to be told

    async def close(self) -> None:
        if self.memory is not None:
            await self.memory.aclose()
        await self.store.close()
        self.gate.identity.close()


def approval_rules(settings: Settings) -> ApprovalRules:
    return ApprovalRules(
        approvers={
            "console": frozenset(settings.console_approvers),
            "slack": frozenset(settings.slack_approvers),
            "discord": frozenset(settings.discord_approvers),
        },
        approver_roles={
            "slack": frozenset(settings.slack_approver_groups),
            "discord": frozenset(settings.discord_approver_roles),
        },
        timeout=settings.approval_timeout,
        allow_self_approval=settings.allow_self_approval,
        quorum={Risk.WRITE: settings.quorum_write, Risk.EXEC: settings.quorum_exec},
    )


def make_policy(settings: Settings) -> Policy:
    return Policy(
        PolicyConfig(
            file_roots=list(settings.roots),
            allow_etc_writes=settings.allow_etc_writes,
            extra_read_commands=frozenset(settings.read_commands),
            extra_programs=settings.commands,
            denied_commands=frozenset(settings.deny_commands),
            output_cap=settings.output_cap,
            command_timeout=settings.command_timeout,
        ),
        Redactor(settings.secrets()),
    )


def make_sandbox(settings: Settings) -> Sandbox:
    mode: Literal["auto", "bwrap", "off"] = "off" if settings.sandbox == "off" else "auto"
    return Sandbox(SandboxConfig(file_roots=tuple(settings.roots), hidden=tuple(settings.sandbox_hidden()), mode=mode))


DATA_DIR_UNUSABLE = "cannot use the data directory {path} ({reason}): set {setting} to a directory this user can write"


def prepare_dirs(settings: Settings) -> None:
    """The data directory exists and takes files, or a `ConfigurationError` says which setting to change."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not settings.file_roots:  # the default root is ours to create; configured ones are the operator's
            (settings.data_dir / "workspace").mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=settings.data_dir).close()  # an existing directory may still refuse files
    except OSError as exc:
        reason = "a file, not a directory" if settings.data_dir.is_file() else exc.strerror or type(exc).__name__
        raise ConfigurationError(
            DATA_DIR_UNUSABLE.format(path=settings.data_dir, reason=reason, setting=where_set("data_dir"))
        ) from None


async def build_services(
    settings: Settings,
    *,
    llm: LLM | None = None,
    extra_tools: ToolRegistry | None = None,
    context_providers: list[ContextProvider] | None = None,
    after_run: list[RunHook] | None = None,
    platforms: Sequence[str] | None = None,
    agent_llm: Callable[[LLM], LLM] | None = None,
) -> Services:
    """`platforms`: where this process can post, so only their approvals and runs left behind by
    a crash are closed at start-up (and told); None closes them all. `agent_llm` wraps the model
    the agent talks to (the service endpoint times its turns); reports and memory get it unwrapped."""
    prepare_dirs(settings)
    store = Store(settings.db_url)
    await store.init()
    identity = ProcessIdentity.start(settings.data_dir)
    policy = make_policy(settings)
    sandbox = make_sandbox(settings)
    await sandbox.probe()  # says once, in the log, when nothing can run freely here
    tools = builtin_tools(policy, backup_dir=settings.backup_dir, sandbox=sandbox)
    inventory = Inventory.from_mapping({name: host.model_dump() for name, host in settings.hosts.items()})
    tools.extend(infra_tools(policy, inventory))
    if extra_tools is not None:
        tools.extend(extra_tools.get(n) for n in extra_tools.names())  # type: ignore[misc]
    gate = ApprovalGate(store, approval_rules(settings), identity=identity)
    expired = await gate.expire_stale(platforms=platforms)
    interrupted = await interrupt_orphaned_runs(store, identity, platforms=platforms)
    for row in expired:
        log.warning("approval #%s (%s) expired: the bot restarted before a decision", row.id, row.summary)
    model: LLM = llm or OllamaLLM(
        host=settings.ollama_host,
        model=settings.model,
        timeout=settings.llm_timeout,
        first_token_timeout=settings.llm_first_token_timeout,
        idle_timeout=settings.llm_idle_timeout,
        think=settings.think or None,
    )
    memory = await open_memory(settings, llm=model, redact=policy.redact)  # None when off or unavailable (logged)
    if memory is not None:
        tools.extend(memory.tools)
        context_providers = [*(context_providers or []), memory.context]
        after_run = [*(after_run or []), *memory.after_run]
    agent = Agent(
        llm=agent_llm(model) if agent_llm is not None else model,
        tools=tools,
        store=store,
        gate=gate,
        policy=policy,
        config=AgentConfig(max_iterations=settings.max_iterations),
        context_providers=context_providers or [],
        after_run=after_run or [],
    )
    return Services(
        settings, store, policy, tools, gate, model, agent, expired, memory.service if memory else None, interrupted
    )


def data_path(settings: Settings, *parts: str) -> Path:
    return settings.data_dir.joinpath(*parts)
