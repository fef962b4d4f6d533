"""`orchestrator memory list|search|forget|reindex|reset`: what the bot remembers.

The memory lives in Chroma: embedded under `<data dir>/memory` by default, or on the
server named by CHROMA_HOST/CHROMA_PORT; bot.app opens it. chromadb is imported only
when a memory command runs, so other commands start fast. See docs/memory.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bot import texts

if TYPE_CHECKING:
    from bot.settings import Settings
    from core.memory.store import Memory, MemoryStore


def _known_errors() -> tuple[type[Exception], ...]:
    from core.errors import InvalidArgument
    from core.memory.embeddings import EmbeddingError
    from core.memory.store import MemoryStoreError

    # InvalidArgument: ours (a bad engine or model name); ValueError: chromadb's "Could not connect to
    # a Chroma server", which it raises as a bare ValueError.
    return (MemoryStoreError, EmbeddingError, InvalidArgument, ValueError, ConnectionError)


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
            print(
                "\r" + texts.MEMORY_REINDEX_BAR.format(bar=bar, done=done, total=total, share=share),
                end=end,
                file=self._stream,
                flush=True,
            )
        elif int(share * 10) > self._tenth:
            self._tenth = int(share * 10)
            print(texts.MEMORY_REINDEX_STEP.format(done=done, total=total, share=share), file=self._stream, flush=True)


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
    return texts.MEMORY_FOOTER.format(
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
        print(texts.MEMORY_NOTHING_STORED.format(where=_where(args.user)))
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
        print(texts.MEMORY_NOTHING_FOUND.format(query=query, where=_where(args.user)))
        return 1
    for memory in found:
        print(_line(memory))
    return 0


def cmd_forget(store: MemoryStore, args: argparse.Namespace) -> int:
    if (args.id is None) == (args.query is None):
        print(texts.MEMORY_FORGET_USAGE, file=sys.stderr)
        return 2
    scopes = _scopes(store, args.user)
    gone = store.remove(args.id, query=args.query, scopes=scopes)
    if not gone:
        if args.id is not None:
            print(texts.MEMORY_NO_SUCH_ID.format(id=args.id, where=_where(args.user)), file=sys.stderr)
        else:
            print(texts.MEMORY_NO_MATCH.format(query=args.query, where=_where(args.user)), file=sys.stderr)
        return 1
    for memory in gone:
        print(texts.MEMORY_FORGOT.format(text=memory.text, id=memory.id))
    return 0


def cmd_reset(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import memory_path, model_name
    from core.memory.store import MemoryStore

    host = settings.chroma_host or None
    path = None if host else memory_path(settings)
    info = MemoryStore.inspect(path, host=host, port=settings.chroma_port)
    new_model = model_name(settings)
    if not info.count:
        MemoryStore.drop(path, host=host, port=settings.chroma_port)
        print(texts.MEMORY_RESET_EMPTY.format(location=info.location, model=new_model))
        return 0
    if not args.yes:
        prompt = texts.MEMORY_RESET_PROMPT.format(
            count=info.count, location=info.location, model=info.model or "an unknown model"
        )
        try:
            answer = input(prompt)
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            print(texts.MEMORY_RESET_ABORTED, file=sys.stderr)
            return 1
    count = MemoryStore.drop(path, host=host, port=settings.chroma_port)
    print(texts.MEMORY_RESET_DONE.format(count=count, location=info.location, model=new_model))
    return 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Re-embed every memory with the configured model, with a progress bar; nothing is lost."""
    from bot.app import memories, memory_path, model_name, open_memory_store
    from core.memory.store import MemoryStore

    host = settings.chroma_host or None
    info = MemoryStore.inspect(None if host else memory_path(settings), host=host, port=settings.chroma_port)
    wanted = model_name(settings)
    if not info.exists or info.model == wanted:
        print(texts.MEMORY_REINDEX_NOTHING.format(memories=memories(info.count), location=info.location, model=wanted))
        return 0
    old = info.model or "an unknown model"
    start = texts.MEMORY_REINDEX_START.format(
        memories=memories(info.count), location=info.location, model=wanted, old=old
    )
    print(start, file=sys.stderr)
    started = time.monotonic()
    store = open_memory_store(settings, reindex=True, progress=_ProgressBar())
    try:
        done = memories(store.reindexed or 0)
        seconds = time.monotonic() - started
        print(texts.MEMORY_REINDEX_DONE.format(memories=done, location=store.location, model=wanted, seconds=seconds))
    finally:
        store.close()
    return 0


def handle(args: argparse.Namespace) -> int:
    from bot.app import memory_problem, open_memory_store
    from bot.settings import load_settings

    settings = load_settings()
    try:
        if args.memory_command == "reset":
            return cmd_reset(settings, args)
        if args.memory_command == "reindex":
            return cmd_reindex(settings, args)
        store = open_memory_store(settings)
    except Exception as exc:  # chromadb raises many kinds for a store it cannot open
        problem = memory_problem(settings, exc)
        print(texts.COMMAND_FAILED.format(command=f"memory {args.memory_command}", error=problem), file=sys.stderr)
        return 2
    try:
        return int(args.memory_func(store, args))
    except _known_errors() as exc:
        print(texts.COMMAND_FAILED.format(command=f"memory {args.memory_command}", error=exc), file=sys.stderr)
        return 2
    finally:
        store.close()


def register(subparsers: Any) -> None:
    """Add `orchestrator memory …` to the CLI's subcommands."""
    memory = subparsers.add_parser("memory", help="what the bot remembers: list, search, forget, reindex, reset")
    memory.set_defaults(func=handle)
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
