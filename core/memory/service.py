"""The memory as the agent uses it: scopes taken from the request, async over the synchronous store.

Every store call (Chroma, the ONNX model) runs in a worker thread; nothing here blocks
the event loop.  `context` is the agent's context provider: the few memories most
relevant to a request, within a token budget, as a section of the system prompt.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from core.errors import InvalidArgument
from core.events import Request
from core.memory import texts
from core.memory.incidents import SimilarIncident
from core.memory.model import SHARED_SCOPE, SYSTEM_AUTHOR, Memory, MergeRefused, NewMemory
from core.memory.sources import author_of, describe_source, owns, read_scopes, source_of, write_scope
from core.memory.store import MemoryStore
from core.redact import Redactor, only_secret

log = logging.getLogger(__name__)

CHARS_PER_TOKEN: Final = 4  # rough, and on the safe side for English
DEFAULT_TOKEN_BUDGET: Final = 400
MAX_FACT_CHARS: Final = 1000


class MemoryService:
    """Remember, recall and forget on behalf of a requester; incidents for the health code.

    ``token_budget`` caps (in tokens, about 4 characters each) the remembered lines placed
    in the system prompt; ``context_k`` caps their number.  ``redact`` removes configured
    secrets from anything before it is stored (by default: every secret shape).
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        context_k: int = 6,
        recall_k: int = 8,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.token_budget = token_budget
        self.context_k = context_k
        self.recall_k = recall_k
        self._redact = redact or Redactor()  # without configured values, still every secret shape
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- facts ------------------------------------------------------------------------------
    def clean_fact(self, text: str) -> str:
        """``text`` as it would be stored (one line, secrets redacted), or InvalidArgument saying why it
        cannot be: empty, too long, or nothing but a secret (never kept, not even redacted)."""
        text = " ".join(text.split())
        if not text:
            raise InvalidArgument(texts.FACT_EMPTY)
        if len(text) > MAX_FACT_CHARS:
            raise InvalidArgument(texts.FACT_TOO_LONG.format(limit=MAX_FACT_CHARS))
        clean = " ".join(self._redact(text).split())
        if only_secret(clean):
            raise InvalidArgument(texts.FACT_ONLY_SECRET)
        return clean

    def redact(self, text: str) -> str:
        """``text`` with its secrets masked (for what was stored before the redactor knew a shape)."""
        return self._redact(text)

    async def twin(self, clean: str, request: Request | None) -> Memory | None:
        """The stored memory that remembering ``clean`` (from `clean_fact`) for ``request`` would update.

        Without a requester (a plan made before the requester is known) only a shared memory
        is looked for: a private one is never described to anyone but its author.
        """
        scope = write_scope(request) if request is not None else SHARED_SCOPE
        return await asyncio.to_thread(self.store.find_twin, clean, kind="fact", scope=scope)

    async def remember(
        self, text: str, request: Request, *, via: str = "told", may_merge: Callable[[Memory], bool] | None = None
    ) -> Memory:
        """Store a fact told in ``request``: private in a DM, shared in a channel; by its requester.

        InvalidArgument when it cannot be stored (see `clean_fact`). A restatement updates its
        near-duplicate only if the requester wrote it, or ``may_merge`` allows it (an approved
        call); otherwise `MergeRefused`, and nothing is written.
        """
        item = self._item(self.clean_fact(text), {}, request, via=via)

        def allowed(twin: Memory) -> bool:
            return owns(twin, request) or (may_merge is not None and may_merge(twin))

        [memory] = await asyncio.to_thread(self.store.add_many, [item], may_merge=allowed)
        return memory

    async def remember_many(
        self, facts: Iterable[tuple[str, Mapping[str, Any]]], request: Request, *, via: str
    ) -> builtins.list[Memory]:
        """Store several facts of one request in one batch (extraction); ``facts`` are (text, extra) pairs.

        Secrets are redacted first; a fact that is nothing but a secret is not stored at all,
        nor one that would update a memory someone else wrote (that takes an approval, and
        nobody approves an extraction): the memory already says it.
        """
        items: builtins.list[NewMemory] = []
        for text, extra in facts:
            try:
                clean = self.clean_fact(text)
            except InvalidArgument as exc:
                log.info("an extracted fact was not remembered: %s", exc)
                continue
            items.append(self._item(clean, extra, request, via=via))
        while items:
            try:
                return await asyncio.to_thread(self.store.add_many, items, may_merge=lambda twin: owns(twin, request))
            except MergeRefused as refused:
                log.info(
                    "an extracted fact was not remembered: it restates memory %s of another author", refused.twin.id
                )
                del items[refused.index]
        return []

    def _item(self, clean: str, extra: Mapping[str, Any], request: Request, *, via: str) -> NewMemory:
        author = author_of(request)
        return NewMemory(
            clean,
            kind="fact",
            scope=write_scope(request),
            source=source_of(request),
            extra={**{k: self._redact(v) if isinstance(v, str) else v for k, v in extra.items()}, "via": via},
            author=author,
            author_name=request.user_name if author != SYSTEM_AUTHOR else "",
        )

    async def forget_candidates(
        self, request: Request | None, *, memory_id: str | None = None, query: str | None = None
    ) -> builtins.list[Memory]:
        """What forgetting by id or by ``query`` would delete for ``request`` (at most one memory).

        Without a requester (a plan made before the requester is known) only shared memories
        are considered: a private one is never described to anyone but its author.
        """
        scopes = read_scopes(request) if request is not None else [SHARED_SCOPE]
        return await asyncio.to_thread(self.store.forget_candidates, memory_id, query=query, scopes=scopes, limit=1)

    async def forget_exactly(self, memories: Sequence[Memory]) -> builtins.list[Memory] | None:
        """Delete these memories as they were read; None (nothing deleted) if one changed meanwhile."""
        return await asyncio.to_thread(self.store.remove_unchanged, memories)

    async def recall(
        self, query: str, request: Request, *, k: int | None = None, kinds: Sequence[str] | None = None
    ) -> builtins.list[Memory]:
        """The memories the requester may see that are closest to ``query``, best first.

        In a channel that is the shared memories only; in a private conversation also the
        requester's own private ones, never another person's.
        """
        scopes = read_scopes(request)
        found = await asyncio.to_thread(
            self.store.recall, query, scopes=scopes, kinds=kinds, k=k or self.recall_k, identifier_leeway=True
        )
        return [memory for memory in found if memory.scope in scopes]  # the store filters; so does this

    async def recent(self, request: Request, *, limit: int = 20) -> builtins.list[Memory]:
        """The requester's most recently told or updated memories (for "what do you remember?")."""

        def work() -> builtins.list[Memory]:
            found = [m for scope in read_scopes(request) for m in self.store.list(scope=scope)]
            return sorted(found, key=lambda m: m.updated_at, reverse=True)[:limit]

        return await asyncio.to_thread(work)

    # ---- the system prompt ------------------------------------------------------------------
    async def context(self, request: Request) -> str:
        """The memory section of the system prompt for ``request`` (an agent context provider)."""
        memories: builtins.list[Memory] = []
        if self.token_budget > 0 and request.text.strip():
            memories = await self.recall(request.text, request, k=self.context_k)
        return self.format_context(memories, request)

    def format_context(self, memories: Sequence[Memory], request: Request) -> str:
        budget = self.token_budget * CHARS_PER_TOKEN
        lines: builtins.list[str] = []
        for memory in memories:
            source = describe_source(memory)
            if memory.scope != SHARED_SCOPE and not request.is_private:
                source = texts.PRIVATE_ELSEWHERE.format(who=memory.source.get("user_name") or "the user")
            text = self.redact(memory.text)  # stored before the redactor knew its shape
            line = texts.REMEMBERED_LINE.format(text=" ".join(text.split()), source=source)
            if len(line) > budget:
                if not lines and budget > 40:  # one long memory: better cut than nothing
                    lines.append(line[: budget - 1] + "…")
                break
            budget -= len(line) + 1
            lines.append(line)
        if not lines:
            return texts.GUIDE
        return "\n".join([texts.GUIDE, texts.REMEMBERED_HEADER, *lines])

    # ---- incidents (called by the health code) ----------------------------------------------
    async def remember_incident(
        self,
        symptom: str,
        *,
        cause: str = "",
        fix: str = "",
        outcome: str = "",
        audit_ids: Iterable[str | int] = (),
        source: Mapping[str, object] | None = None,
        held: bool | None = None,
    ) -> Memory:
        """Record a failure, its cause, the fix and whether it held; shared with every user.

        ``source`` says where it happened, e.g. ``{"platform": "slack", "channel": "C1",
        "thread": ts, "host": "web1", "check": "disk:/var", "incident_id": 12}``.
        """
        return await asyncio.to_thread(
            self.store.add_incident,
            symptom=self._redact(symptom),
            cause=self._redact(cause),
            fix=self._redact(fix),
            outcome=self._redact(outcome),
            audit_ids=list(audit_ids),
            held=held,
            scope=SHARED_SCOPE,
            source=dict(source or {}),
        )

    async def similar_incidents(self, symptom: str, *, k: int = 3) -> builtins.list[SimilarIncident]:
        """Past incidents most like ``symptom``; ``format_incidents`` turns them into thread text."""
        found = await asyncio.to_thread(
            self.store.recall, symptom, scopes=[SHARED_SCOPE], kinds=["incident"], k=k, identifier_leeway=True
        )
        return [SimilarIncident.from_memory(memory) for memory in found]

    async def recurring_incidents(
        self, *, since: datetime | None = None, min_times: int = 2, limit: int = 10
    ) -> builtins.list[SimilarIncident]:
        """Incidents seen at least ``min_times`` times (counting only those last seen after ``since``).

        Occurrences are grouped by the host and check in their source when the health code
        gave them (the figures in a symptom differ from one time to the next), otherwise by
        the merged memory's revision count.  Most frequent first; each item is the latest
        occurrence, with ``times`` the group's count.
        """
        cutoff = since.isoformat(timespec="milliseconds") if since is not None else ""

        def work() -> builtins.list[Memory]:
            return self.store.list(kind="incident", scope=SHARED_SCOPE)

        groups: dict[tuple[str, str], builtins.list[Memory]] = {}
        for memory in await asyncio.to_thread(work):
            if cutoff and memory.updated_at < cutoff:
                continue
            check = memory.source.get("check", "")
            key = (memory.source.get("host", ""), check) if check else ("", memory.id)
            groups.setdefault(key, []).append(memory)
        found = [
            replace(SimilarIncident.from_memory(max(group, key=lambda m: m.updated_at)), times=times)
            for group in groups.values()
            if (times := sum(m.revision for m in group)) >= min_times
        ]
        found.sort(key=lambda incident: (incident.times, incident.memory.updated_at), reverse=True)
        return found[:limit]

    # ---- background work and lifecycle ------------------------------------------------------
    def in_background(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``work`` without anyone awaiting it; its failure is logged, never lost or raised."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("memory task %s failed", task.get_name(), exc_info=error)

    async def drain(self) -> None:
        """Wait for the background work started so far (tests; an orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, *, grace: float = 30.0) -> None:
        """Let pending extractions finish (up to ``grace`` seconds), then release the store."""
        try:
            await asyncio.wait_for(self.drain(), grace)
        except TimeoutError:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.to_thread(self.store.close)
