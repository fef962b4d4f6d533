"""Wiring: builds the core services from settings. No globals; callers pass these in.

The one place that opens the state store (`open_store`, `open_store_async`) and the memory
(`open_memory_store` for the Chroma store alone, `open_memory` for what the agent plugs in),
and says why a memory cannot open (`memory_problem`). chromadb is imported only when the
memory is used, so other commands start fast. See docs/memory.md.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bot import texts
from bot.settings import Settings, where_set
from core.agent import Agent, AgentConfig, ContextProvider, RunHook
from core.approval import ApprovalGate, ApprovalRules
from core.backup import BackupConfig, BackupEngine, S3Target
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
from core.tools.backup import backup_tools
from core.tools.builtin import builtin_tools
from core.tools.gitops import GitOps
from core.tools.infra import infra_tools
from core.tools.qa import qa_tools
from core.tools.registry import ToolRegistry
from core.workflow import workflow_tools

if TYPE_CHECKING:
    from core.memory.service import MemoryService
    from core.memory.store import MemoryStore
    from core.tools.registry import ToolSpec

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
    sandbox: Sandbox | None = None

    async def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        if self.memory is not None:
            await self.memory.aclose()
        await self.store.close()
        self.gate.identity.close()


def approval_rules(settings: Settings) -> ApprovalRules:
    from bot.platforms import PLATFORMS, people

    chat = [people(settings, platform) for platform in PLATFORMS]
    console = {"console": frozenset(settings.console_approvers)}
    return ApprovalRules(
        approvers=console | {p.platform: frozenset(p.approvers) for p in chat},
        approver_roles={p.platform: frozenset(p.approver_groups) for p in chat},
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
    return Sandbox(
        SandboxConfig(
            file_roots=tuple(settings.roots),
            hidden=tuple(settings.sandbox_hidden()),
            mode=mode,
            session=settings.sandbox_session,
        )
    )


def make_gitops(settings: Settings, policy: Policy) -> GitOps | None:
    """The GitOps directories, each an existing directory under the file roots, or a `ConfigurationError`."""
    if not settings.gitops_paths:
        return None
    roots = ", ".join(str(r) for r in policy.roots)
    for path in settings.gitops_paths:
        if not path.is_dir():
            raise ConfigurationError(texts.GITOPS_NOT_A_DIRECTORY.format(path=path, setting=where_set("gitops_paths")))
        if not policy.is_inside_roots(path):
            raise ConfigurationError(
                texts.GITOPS_OUTSIDE_ROOTS.format(path=path, roots=roots, setting=where_set("gitops_paths"))
            )
    return GitOps(
        policy, settings.gitops_paths, hooks_file=settings.data_dir / "gitops-hooks.json",
        timeout=settings.command_timeout,
    )  # fmt: skip


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
            texts.DATA_DIR_UNUSABLE.format(path=settings.data_dir, reason=reason, setting=where_set("data_dir"))
        ) from None


def chat_model(settings: Settings, name: str) -> OllamaLLM:
    """A model the agent talks to (the main one, or the code model), with the reply limits set."""
    return OllamaLLM(
        host=settings.ollama_host,
        model=name,
        timeout=settings.llm_timeout,
        first_token_timeout=settings.llm_first_token_timeout,
        idle_timeout=settings.llm_idle_timeout,
        think=settings.think or None,
    )


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
    policy = make_policy(settings)
    gitops = make_gitops(settings, policy)  # a configuration mistake is said before anything opens
    store = await open_store_async(settings)
    identity = ProcessIdentity.start(settings.data_dir)
    sandbox = make_sandbox(settings)
    await sandbox.probe()  # says once, in the log, when nothing can run freely here
    tools = builtin_tools(policy, backup_dir=settings.backup_dir, sandbox=sandbox, gitops=gitops)
    inventory = Inventory.from_mapping({name: host.model_dump() for name, host in settings.hosts.items()})
    tools.extend(infra_tools(policy, inventory))
    tools.extend(backup_tools(backup_engine(settings)))
    tools.extend(workflow_tools(max_repairs=settings.max_repair_cycles))
    tools.extend(qa_tools(policy, timeout=settings.qa_timeout))
    if extra_tools is not None:
        tools.extend(extra_tools.get(n) for n in extra_tools.names())  # type: ignore[misc]
    gate = ApprovalGate(store, approval_rules(settings), identity=identity)
    expired = await gate.expire_stale(platforms=platforms)
    interrupted = await interrupt_orphaned_runs(store, identity, platforms=platforms)
    for row in expired:
        log.warning("approval #%s (%s) expired: the bot restarted before a decision", row.id, row.summary)
    model: LLM = llm or chat_model(settings, settings.model)
    vision = (
        OllamaLLM(host=settings.ollama_host, model=settings.vision_model, timeout=settings.llm_timeout, think=None)
        if settings.vision_model
        else None
    )
    code = chat_model(settings, settings.code_model) if settings.code_model else None
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
        config=AgentConfig(
            max_iterations=settings.max_iterations,
            max_repair_cycles=settings.max_repair_cycles,
            verify_required=settings.verify_required,
        ),
        context_providers=context_providers or [],
        after_run=after_run or [],
        vision=vision,
        vision_model=settings.vision_model,
        code_llm=agent_llm(code) if agent_llm is not None and code is not None else code,
    )
    return Services(
        settings,
        store,
        policy,
        tools,
        gate,
        model,
        agent,
        expired,
        memory.service if memory else None,
        interrupted,
        sandbox,
    )


def backup_engine(settings: Settings) -> BackupEngine:
    """The backup engine configured by the `backup_*` settings (docs/tools.md#backups)."""
    s3 = None
    if settings.backup_s3_bucket:
        secret = settings.backup_s3_secret_key
        s3 = S3Target(
            bucket=settings.backup_s3_bucket,
            endpoint=settings.backup_s3_endpoint,
            region=settings.backup_s3_region,
            prefix=settings.backup_s3_prefix,
            access_key=settings.backup_s3_access_key,
            secret_key=secret.get_secret_value() if secret is not None else "",
        )
    return BackupEngine(
        BackupConfig(
            directory=(settings.backup_target or settings.data_dir / "backups" / "system").expanduser().resolve(),
            keep=settings.backup_keep,
            databases=tuple(settings.backup_databases),
            paths=tuple(Path(p) for p in settings.backup_paths),
            ollama_host=settings.ollama_host if settings.backup_ollama else "",
            s3=s3,
            pg_dump=settings.backup_pg_dump,
        )
    )


def data_path(settings: Settings, *parts: str) -> Path:
    return settings.data_dir.joinpath(*parts)


# ---- the state store ----------------------------------------------------------------------------
def open_store(settings: Settings) -> Store:
    """The state store the settings name, its schema created or upgraded, once the data directory
    is known to take files (else a `ConfigurationError` naming the setting). Blocking: for the
    CLI's commands; async code awaits `open_store_async`."""
    prepare_dirs(settings)
    store = Store(settings.db_url)
    store.migrate_sync()
    return store


async def open_store_async(settings: Settings) -> Store:
    """`open_store` for async code: the schema is upgraded in the store's own thread."""
    prepare_dirs(settings)
    store = Store(settings.db_url)
    try:
        await store.init()
    except BaseException:
        await store.close()
        raise
    return store


# ---- the memory ---------------------------------------------------------------------------------
# The memory's start-up lines log as `bot.memory`, whichever module wires it.
memory_log = logging.getLogger("bot.memory")

MEMORY_DIR = "memory"
# Runs the health monitor starts (core.health.monitor.SCHEDULER_USER): no person states facts there.
NOT_A_PERSON = frozenset({"scheduler"})


def memory_path(settings: Settings) -> Path:
    return settings.data_dir / MEMORY_DIR


def open_memory_store(
    settings: Settings, *, reindex: bool = False, progress: Callable[[int, int, str], None] | None = None
) -> MemoryStore:
    """The memory store the settings name (blocking: call it in a worker thread from async code).

    With ``reindex``, a store another embedding model built is re-embedded with the
    configured one as it opens (``progress(done, total, built_with)`` after each batch)."""
    from core.memory.embeddings import e5_unavailable, embedding_from_settings
    from core.memory.store import MemoryStore

    if settings.embedding == "offline" and (why := e5_unavailable()):
        memory_log.warning(
            "memory: the offline embedding runs USE multilingual alone, because %s (%s)", why, texts.MEMORY_FIX_FALLBACK
        )
    model = settings.embed_model if settings.embedding == "ollama" else ""
    embedding = embedding_from_settings(settings.embedding, ollama_host=settings.ollama_host, model=model)
    where: dict[str, Any] = (
        {"host": settings.chroma_host, "port": settings.chroma_port}
        if settings.chroma_host
        else {"path": memory_path(settings)}
    )
    return MemoryStore(
        embedding=embedding, recall_distance=settings.recall_distance, reindex=reindex, progress=progress, **where
    )


def model_name(settings: Settings) -> str:
    """The embedding model the settings name, as a store records it."""
    from core.memory.embeddings import model_name_for

    return model_name_for(settings.embedding, settings.embed_model if settings.embedding == "ollama" else "")


@dataclass(frozen=True)
class MemoryProblem:
    """Why the memory cannot open, and how to fix it, in the operator's words."""

    detail: str
    fix: str = ""  # empty when the detail already says it

    def __str__(self) -> str:
        return f"{self.detail}; {self.fix}" if self.fix else self.detail


def unwritable(path: Path) -> str | None:
    """Why the embedded store at `path` (or the directory it would be made in) refuses files; None if it takes them."""
    target = path
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        if not target.is_dir():
            return f"{target} is a file, not a directory"
        tempfile.NamedTemporaryFile(dir=target).close()
        database = path / "chroma.sqlite3"
        if database.is_file():
            database.open("r+b").close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def memory_problem(settings: Settings, exc: BaseException) -> MemoryProblem:
    from core.memory.embeddings import EmbeddingError
    from core.memory.store import EmbeddingModelMismatch

    error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if isinstance(exc, EmbeddingModelMismatch):
        return MemoryProblem(str(exc))  # it names `orchestrator memory reset`
    if settings.chroma_host:
        where = f"{settings.chroma_host}:{settings.chroma_port}"
        return MemoryProblem(texts.MEMORY_SERVER_DOWN.format(where=where, error=error), texts.MEMORY_FIX_SERVER)
    path = memory_path(settings)
    if reason := unwritable(path):
        return MemoryProblem(texts.MEMORY_UNWRITABLE.format(path=path, reason=reason), texts.MEMORY_FIX_UNWRITABLE)
    if type(exc).__module__.startswith("chromadb") and not isinstance(exc, EmbeddingError):
        # chromadb read the directory and refused it: a damaged file, or a store of another version
        return MemoryProblem(
            texts.MEMORY_UNREADABLE.format(path=path, error=error), texts.MEMORY_FIX_UNREADABLE.format(path=path)
        )
    return MemoryProblem(
        texts.MEMORY_OTHER.format(where=path, error=f"{type(exc).__name__}: {error}"), texts.MEMORY_FIX_OTHER
    )


@dataclass
class MemoryParts:
    """What `build_services` plugs into the agent."""

    service: MemoryService
    tools: list[ToolSpec]
    context: ContextProvider
    after_run: list[RunHook] = field(default_factory=list)


async def open_memory(settings: Settings, *, llm: LLM, redact: Callable[[str], str]) -> MemoryParts | None:
    """The memory, its tools, context provider and extraction hook; None when it is off or cannot open.

    A memory that cannot open (another embedding model built it, the Chroma server is down,
    the directory is damaged or cannot be written) does not stop the bot: the reason and the
    fix are logged once, without a traceback, and the agent runs without memory.
    """
    if not settings.memory:
        return None
    from core.memory.extraction import FactExtractor
    from core.memory.service import MemoryService
    from core.memory.tools import memory_tools

    try:
        store = await asyncio.to_thread(open_memory_store, settings, reindex=True, progress=_LoggedProgress(settings))
    except Exception as exc:  # memory is optional: whatever chromadb raises, the bot starts without it
        problem = memory_problem(settings, exc)
        memory_log.error(texts.MEMORY_UNAVAILABLE.format(problem=problem))
        return None
    service = MemoryService(store, token_budget=settings.memory_tokens, redact=redact)
    hooks: list[RunHook] = []
    if settings.memory_extract:
        hooks.append(FactExtractor(llm, service, skip_users=NOT_A_PERSON).after_run)
    return MemoryParts(service, memory_tools(service), service.context, hooks)


def memories(count: int) -> str:
    return f"{count} memory" if count == 1 else f"{count} memories"


class _LoggedProgress:
    """Re-embedding at start-up, in the log: a line when it starts, then at most one every 5 s."""

    def __init__(self, settings: Settings) -> None:
        self._model = model_name(settings)
        self._location = settings.chroma_host or str(memory_path(settings))
        self._started = 0.0
        self._last = 0.0

    def __call__(self, done: int, total: int, built_with: str) -> None:
        now = time.monotonic()
        if not self._started:
            self._started = self._last = now
            memory_log.warning(texts.MEMORY_REINDEX_START.format(memories=memories(total), location=self._location,
                                                    model=self._model, old=built_with))  # fmt: skip
        if done >= total:
            memory_log.warning(texts.MEMORY_REINDEX_DONE.format(memories=memories(total), location=self._location,
                                                   model=self._model, seconds=now - self._started))  # fmt: skip
        elif now - self._last >= 5:
            self._last = now
            memory_log.info(texts.MEMORY_REINDEX_PROGRESS.format(model=self._model, done=done, total=total))
