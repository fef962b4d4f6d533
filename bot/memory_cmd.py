"""`orchestrator memory list|search|forget|reindex|reset`, and the memory's wiring for `build_services`.

The memory lives in Chroma: embedded under `<data dir>/memory` by default, or on the
server named by CHROMA_HOST/CHROMA_PORT.  chromadb is imported only when the memory is
used, so other commands start fast.  See docs/memory.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings
    from core.agent import ContextProvider, RunHook
    from core.llm import LLM
    from core.memory.service import MemoryService
    from core.memory.store import Memory, MemoryStore
    from core.tools.registry import ToolSpec

log = logging.getLogger(__name__)

MEMORY_DIR = "memory"
# Runs the health monitor starts (core.health.monitor.SCHEDULER_USER): no person states facts there.
NOT_A_PERSON = frozenset({"scheduler"})

UNAVAILABLE = "memory is off for this run: {problem}"
# Why a memory cannot open, and what to do (start-up warning, `orchestrator doctor`, `orchestrator memory`).
UNWRITABLE = "{path} cannot be written ({reason})"
FIX_UNWRITABLE = (
    "make it writable by this user, set ORCHESTRATOR_DATA_DIR to a directory it can write, or ORCHESTRATOR_MEMORY=off"
)
UNREADABLE = "{path} is not a memory store this version can read ({error})"
FIX_UNREADABLE = "move it aside (mv {path} {path}.broken) to start a new memory there, or set ORCHESTRATOR_MEMORY=off"
SERVER_DOWN = "the Chroma server at {where} does not answer ({error})"
FIX_SERVER = "start the Chroma server, or unset CHROMA_HOST to use the embedded store"
OTHER = "{where}: {error}"
FIX_OTHER = "set ORCHESTRATOR_MEMORY=off to run without memory"
RESET_PROMPT = "This deletes all {count} memories at {location} (built with {model}). Type 'yes' to continue: "
RESET_DONE = "deleted {count} memories at {location}; the next start builds a new store with {model}"
RESET_EMPTY = "the memory store at {location} holds nothing; it starts over with {model}"
RESET_ABORTED = "nothing deleted"
NOTHING_STORED = "no memories{where}"
NOTHING_FOUND = "nothing remembered about {query!r}{where}"
FORGOT = "forgot: {text}  ({id})"
NO_SUCH_ID = "no memory with id {id!r}{where}"
NO_MATCH = "no memory close enough to {query!r}{where}; `orchestrator memory search` shows ids to forget"
FOOTER = "{count} memor{plural} at {location} (embedding model {model})"
REINDEX_START = "re-embedding {memories} at {location} with {model} (built with {old}); nothing is lost"
REINDEX_PROGRESS = "re-embedding the memory with {model}: {done}/{total}"
REINDEX_DONE = "re-embedded {memories} at {location} with {model} in {seconds:.1f} s"
REINDEX_NOTHING = "{memories} at {location}, already embedded with {model}: nothing to do"


# ---- opening ----------------------------------------------------------------------------------
def memory_path(settings: Settings) -> Path:
    return settings.data_dir / MEMORY_DIR


def open_store(
    settings: Settings, *, reindex: bool = False, progress: Callable[[int, int, str], None] | None = None
) -> MemoryStore:
    """The store the settings name (blocking: call it in a worker thread from async code).

    With ``reindex``, a store another embedding model built is re-embedded with the
    configured one as it opens (``progress(done, total, built_with)`` after each batch)."""
    from core.memory.embeddings import embedding_from_settings
    from core.memory.store import MemoryStore

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
        return MemoryProblem(SERVER_DOWN.format(where=f"{settings.chroma_host}:{settings.chroma_port}", error=error),
                             FIX_SERVER)  # fmt: skip
    path = memory_path(settings)
    if reason := unwritable(path):
        return MemoryProblem(UNWRITABLE.format(path=path, reason=reason), FIX_UNWRITABLE)
    if type(exc).__module__.startswith("chromadb") and not isinstance(exc, EmbeddingError):
        # chromadb read the directory and refused it: a damaged file, or a store of another version
        return MemoryProblem(UNREADABLE.format(path=path, error=error), FIX_UNREADABLE.format(path=path))
    return MemoryProblem(OTHER.format(where=path, error=f"{type(exc).__name__}: {error}"), FIX_OTHER)


def _known_errors() -> tuple[type[Exception], ...]:
    from core.errors import InvalidArgument
    from core.memory.embeddings import EmbeddingError
    from core.memory.store import MemoryStoreError

    # InvalidArgument: ours (a bad engine or model name); ValueError: chromadb's "Could not connect to
    # a Chroma server", which it raises as a bare ValueError.
    return (MemoryStoreError, EmbeddingError, InvalidArgument, ValueError, ConnectionError)


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
        store = await asyncio.to_thread(open_store, settings, reindex=True, progress=_LoggedProgress(settings))
    except Exception as exc:  # memory is optional: whatever chromadb raises, the bot starts without it
        problem = memory_problem(settings, exc)
        log.error(UNAVAILABLE.format(problem=problem))
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
            log.warning(REINDEX_START.format(memories=memories(total), location=self._location, model=self._model,
                                             old=built_with))  # fmt: skip
        if done >= total:
            log.warning(REINDEX_DONE.format(memories=memories(total), location=self._location, model=self._model,
                                            seconds=now - self._started))  # fmt: skip
        elif now - self._last >= 5:
            self._last = now
            log.info(REINDEX_PROGRESS.format(model=self._model, done=done, total=total))


class _ProgressBar:
    """`orchestrator memory reindex`'s bar on stderr: redrawn in place at a terminal, a line per tenth otherwise."""

    WIDTH = 30

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._tenth = -1

    def __call__(self, done: int, total: int, built_with: str) -> None:
        share = done / total if total else 1.0
        if self._tty:
            filled = int(self.WIDTH * share)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            end = "\n" if done >= total else ""
            print(f"\r[{bar}] {done}/{total} memories ({share:.0%})", end=end, file=self._stream, flush=True)
        elif int(share * 10) > self._tenth:
            self._tenth = int(share * 10)
            print(f"{done}/{total} memories re-embedded ({share:.0%})", file=self._stream, flush=True)


# ---- the commands -----------------------------------------------------------------------------
def _scopes(store: MemoryStore, user: str | None) -> list[str]:
    """What `--user PLATFORM:USER` may see, or every scope in the store."""
    from core.memory.store import SHARED_SCOPE, private_scope

    if user is None:
        return store.scopes() or [SHARED_SCOPE]
    platform, _, user_id = user.partition(":")
    return [SHARED_SCOPE, private_scope(platform, user_id)]


def _where(user: str | None) -> str:
    return f" that {user} may see" if user else ""


def _as_json(memories: list[Memory]) -> str:
    return json.dumps([asdict(m) for m in memories], indent=2, ensure_ascii=False, default=str)


def _line(memory: Memory) -> str:
    from core.memory.sources import describe_source

    distance = f"  [{memory.distance:.2f}]" if memory.distance is not None else ""
    head = f"{memory.id}  {memory.updated_at[:16].replace('T', ' ')}  {memory.kind:<8} {memory.scope}{distance}"
    return f"{head}\n    {memory.text}\n    {describe_source(memory, detailed=True)}"


def _footer(store: MemoryStore) -> str:
    count = store.count()
    return FOOTER.format(
        count=count, plural="y" if count == 1 else "ies", location=store.location, model=store.embedding.model_name
    )


def cmd_list(store: MemoryStore, args: argparse.Namespace) -> int:
    if args.user:
        memories = [m for scope in _scopes(store, args.user) for m in store.list(args.kind, scope)]
        memories.sort(key=lambda m: (m.created_at, m.id))
    else:
        memories = store.list(args.kind)
    memories = memories[-args.limit :] if args.limit else memories
    if args.json:
        print(_as_json(memories))
        return 0
    if not memories:
        print(NOTHING_STORED.format(where=_where(args.user)))
    for memory in memories:
        print(_line(memory))
    print(_footer(store), file=sys.stderr)
    return 0


def cmd_search(store: MemoryStore, args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else None
    query = " ".join(args.query)
    found = store.recall(query, scopes=_scopes(store, args.user), kinds=kinds, k=args.k, identifier_leeway=True)
    if args.json:
        print(_as_json(found))
        return 0
    if not found:
        print(NOTHING_FOUND.format(query=query, where=_where(args.user)))
        return 1
    for memory in found:
        print(_line(memory))
    return 0


def cmd_forget(store: MemoryStore, args: argparse.Namespace) -> int:
    if (args.id is None) == (args.query is None):
        print("orchestrator memory forget: give an ID or --query TEXT (not both)", file=sys.stderr)
        return 2
    scopes = _scopes(store, args.user)
    gone = store.remove(args.id, query=args.query, scopes=scopes)
    if not gone:
        if args.id is not None:
            print(NO_SUCH_ID.format(id=args.id, where=_where(args.user)), file=sys.stderr)
        else:
            print(NO_MATCH.format(query=args.query, where=_where(args.user)), file=sys.stderr)
        return 1
    for memory in gone:
        print(FORGOT.format(text=memory.text, id=memory.id))
    return 0


def cmd_reset(settings: Settings, args: argparse.Namespace) -> int:
    from core.memory.store import MemoryStore

    host = settings.chroma_host or None
    path = None if host else memory_path(settings)
    info = MemoryStore.inspect(path, host=host, port=settings.chroma_port)
    new_model = model_name(settings)
    if not info.count:
        MemoryStore.drop(path, host=host, port=settings.chroma_port)
        print(RESET_EMPTY.format(location=info.location, model=new_model))
        return 0
    if not args.yes:
        prompt = RESET_PROMPT.format(count=info.count, location=info.location, model=info.model or "an unknown model")
        try:
            answer = input(prompt)
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            print(RESET_ABORTED, file=sys.stderr)
            return 1
    count = MemoryStore.drop(path, host=host, port=settings.chroma_port)
    print(RESET_DONE.format(count=count, location=info.location, model=new_model))
    return 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Re-embed every memory with the configured model, with a progress bar; nothing is lost."""
    from core.memory.store import MemoryStore

    host = settings.chroma_host or None
    info = MemoryStore.inspect(None if host else memory_path(settings), host=host, port=settings.chroma_port)
    wanted = model_name(settings)
    if not info.exists or info.model == wanted:
        print(REINDEX_NOTHING.format(memories=memories(info.count), location=info.location, model=wanted))
        return 0
    print(REINDEX_START.format(memories=memories(info.count), location=info.location, model=wanted,
                               old=info.model or "an unknown model"), file=sys.stderr)  # fmt: skip
    started = time.monotonic()
    store = open_store(settings, reindex=True, progress=_ProgressBar())
    try:
        print(REINDEX_DONE.format(memories=memories(store.reindexed or 0), location=store.location, model=wanted,
                                  seconds=time.monotonic() - started))  # fmt: skip
    finally:
        store.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    from bot.settings import load_settings

    settings = load_settings()
    try:
        if args.memory_command == "reset":
            return cmd_reset(settings, args)
        if args.memory_command == "reindex":
            return cmd_reindex(settings, args)
        store = open_store(settings)
    except Exception as exc:  # chromadb raises many kinds for a store it cannot open
        problem = memory_problem(settings, exc)
        print(f"orchestrator memory {args.memory_command}: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.memory_func(store, args))
    except _known_errors() as exc:
        print(f"orchestrator memory {args.memory_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def register(subparsers: Any) -> None:
    """Add `orchestrator memory …` to the CLI's subcommands."""
    memory = subparsers.add_parser("memory", help="what the bot remembers: list, search, forget, reindex, reset")
    memory.set_defaults(func=_run)
    actions = memory.add_subparsers(dest="memory_command", metavar="ACTION", required=True)
    user_help = "only what PLATFORM:USER may see (shared memories and their own DM ones), e.g. slack:U024BE7LH"
    kinds = ["fact", "incident", "summary"]

    p = actions.add_parser("list", help="every memory, oldest first")
    p.add_argument("--kind", choices=kinds)
    p.add_argument("--user", metavar="PLATFORM:USER", help=user_help)
    p.add_argument("--limit", type=int, default=0, help="only the last N")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(memory_func=cmd_list)

    p = actions.add_parser("search", help="the memories closest to a question")
    p.add_argument("query", nargs="+")
    p.add_argument("--kind", choices=kinds)
    p.add_argument("--user", metavar="PLATFORM:USER", help=user_help)
    p.add_argument("-k", type=int, default=10, help="at most K results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(memory_func=cmd_search)

    p = actions.add_parser("forget", help="delete one memory by ID, or the closest match to --query")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--query", metavar="TEXT")
    p.add_argument("--user", metavar="PLATFORM:USER", help=user_help)
    p.set_defaults(memory_func=cmd_forget)

    p = actions.add_parser("reindex", help="re-embed every memory with the configured embedding model")
    p.set_defaults(memory_func=None)

    p = actions.add_parser("reset", help="delete every memory and start over")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(memory_func=None)
