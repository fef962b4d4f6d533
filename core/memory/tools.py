"""memory_store, memory_recall and memory_forget: the agent's own memory, scoped to who asks.

What each may reach is bounded by the requester's scopes (a DM memory is visible to its
author only).  Within that, the requester changes freely only what they wrote:

- `memory_recall` is a read;
- `memory_store` of a new fact, or of a restatement of one's own, runs at once; a
  restatement that would replace a memory someone else wrote (near-duplicates merge)
  asks for approval, and the approver reads which memory, whose, and the new text;
- `memory_forget` of one's own memory runs at once; of someone else's (or of one stored
  before authors were recorded) it asks for approval, showing the memory and its author.

Both are declared `write` (the risk they carry); their plan lowers it to `read` when the
target is the requester's own.  The plan binds an approval to the exact memories (id,
revision, last update, author, a hash of the text): a memory changed since is refused,
by the fresh hook and again by the store, under its lock, right before it acts.

Who asks comes from the call's `ToolContext`, which the agent fills in: it is not a
parameter the model sees, so the model cannot claim to be someone else.  A plan hook
that is not given the context (the registry today calls `plan(args)`) cannot know the
requester: it then looks at shared memories only and treats every one as someone else's,
so it may ask for an approval that was not needed, never the other way round; the body,
which always has the requester, refuses any change to another person's memory that was
not approved.  See docs/memory.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from core.errors import InvalidArgument, ToolError
from core.events import Request, Risk
from core.memory import texts
from core.memory.model import SHARED_SCOPE, Memory, MergeRefused
from core.memory.service import MemoryService
from core.memory.sources import author_label, describe_source, owns
from core.tools.registry import Plan, ToolContext, ToolSpec, tool


def bound_part(memory: Memory) -> str:
    """What an approval is bound to for ``memory``: it, as it is now."""
    digest = hashlib.sha256(memory.text.encode()).hexdigest()
    owner = memory.owner or "-"
    return f"memory {memory.id} rev {memory.revision} at {memory.updated_at} by {owner} in {memory.scope} text {digest}"


def _approved_for(ctx: ToolContext, memories: Sequence[Memory]) -> bool:
    """Whether a person approved acting on exactly these memories, unchanged."""
    if not ctx.approved or ctx.plan is None:
        return False
    return all(bound_part(m) in ctx.plan.fingerprint_parts for m in memories)


def _visibility(memory: Memory) -> str:
    return texts.VISIBLE_SHARED if memory.scope == SHARED_SCOPE else texts.VISIBLE_PRIVATE


def _scope_label(memory: Memory) -> str:
    return texts.SCOPE_SHARED if memory.scope == SHARED_SCOPE else texts.SCOPE_PRIVATE


def _requester(ctx: ToolContext | None) -> Request | None:
    return ctx.request if ctx is not None else None


def memory_tools(memory: MemoryService) -> list[ToolSpec]:
    def listing(memories: list[Memory], request: Request) -> list[str]:
        lines = [
            texts.RECALLED_ITEM.format(
                id=m.id,
                text=memory.redact(m.text),
                kind=m.kind,
                scope=_scope_label(m),
                author=author_label(m),
                source=describe_source(m, detailed=True),
            )
            for m in memories
        ]
        if not request.is_private and any(m.scope != SHARED_SCOPE for m in memories):
            lines.append(texts.PRIVATE_IN_CHANNEL)
        return lines

    def clean(fact: str) -> str:
        try:
            return memory.clean_fact(fact)
        except InvalidArgument as exc:
            raise ToolError(str(exc)) from exc

    # ---- memory_store -------------------------------------------------------------------
    @tool(risk=Risk.WRITE)
    async def memory_store(fact: str, *, ctx: ToolContext) -> str:
        """Remember a durable fact or preference someone stated, for later threads and after restarts.

        Args:
            fact: one self-contained sentence that names its subject, e.g. "postgres on db1 listens on port 5433".
        """
        try:
            stored = await memory.remember(fact, ctx.request, may_merge=lambda twin: _approved_for(ctx, [twin]))
        except MergeRefused as refused:
            twin = refused.twin
            raise ToolError(
                texts.STORE_NOT_YOURS.format(id=twin.id, text=memory.redact(twin.text), author=author_label(twin))
            ) from None
        except InvalidArgument as exc:
            raise ToolError(str(exc)) from exc
        template = texts.UPDATED if stored.updated else texts.STORED
        return template.format(visibility=_visibility(stored), text=stored.text, id=stored.id)

    async def plan_store(args: dict[str, Any], ctx: ToolContext | None = None) -> Plan:
        request = _requester(ctx)
        new = clean(args["fact"])
        try:
            twin = await memory.twin(new, request)
        except InvalidArgument as exc:  # a requester who cannot have a private scope
            raise ToolError(str(exc)) from exc
        if twin is None:
            summary = texts.PLAN_STORE.format(text=new)
            return Plan(risk=Risk.READ, summary=summary, detail=summary, fingerprint_parts=("new",))
        old = memory.redact(twin.text)
        parts = (bound_part(twin),)
        if request is not None and owns(twin, request):
            summary = texts.PLAN_STORE_UPDATE_OWN.format(old=old, new=new)
            return Plan(risk=Risk.READ, summary=summary, detail=summary, fingerprint_parts=parts)
        author = author_label(twin)
        return Plan(
            risk=Risk.WRITE,
            summary=texts.PLAN_REPLACE_SUMMARY.format(author=author, old=old, new=new),
            detail=texts.PLAN_REPLACE_DETAIL.format(
                id=twin.id, kind=twin.kind, scope=_scope_label(twin), author=author, old=old, new=new
            ),
            fingerprint_parts=parts,
        )

    async def fresh_store(args: dict[str, Any], ctx: ToolContext | None = None) -> tuple[str, ...]:
        return (await plan_store(args, ctx)).fingerprint_parts

    memory_store.plan(plan_store)  # the hooks are called as hook(args) today: see the module's docstring
    memory_store.check_fresh(fresh_store)

    # ---- memory_recall ------------------------------------------------------------------
    @tool(risk=Risk.READ)
    async def memory_recall(query: str = "", *, ctx: ToolContext) -> str:
        """Look up what you remember: stored facts, past incidents and their fixes, with who said them, where and when.

        Args:
            query: what to look for, e.g. "db1" or "backup schedule"; empty lists the most recent memories.
        """
        request = ctx.request
        if not query.strip():
            recent = await memory.recent(request)
            return "\n".join([texts.RECENT_HEADER, *listing(recent, request)]) if recent else texts.NOTHING_AT_ALL
        found = await memory.recall(query, request)
        if not found:
            return texts.NOTHING_RECALLED.format(query=query)
        return "\n".join([texts.RECALLED_HEADER.format(query=query), *listing(found, request)])

    # ---- memory_forget ------------------------------------------------------------------
    async def targets(args: dict[str, Any], request: Request | None) -> list[Memory]:
        memory_id, query = str(args.get("memory_id", "")).strip(), str(args.get("query", "")).strip()
        if bool(memory_id) == bool(query):
            raise ToolError(texts.FORGET_NEEDS_ONE)
        return await memory.forget_candidates(request, memory_id=memory_id or None, query=query or None)

    @tool(risk=Risk.WRITE)
    async def memory_forget(memory_id: str = "", query: str = "", *, ctx: ToolContext) -> str:
        """Forget one memory when asked to: by its id (from memory_recall, the safe way) or by a description of it.

        Args:
            memory_id: the id memory_recall showed.
            query: a description of the memory to forget, when there is no id; the closest match is deleted.
        """
        request = ctx.request
        found = await targets({"memory_id": memory_id, "query": query}, request)
        if not found:
            if memory_id.strip():
                return texts.NOTHING_FORGOTTEN_ID.format(id=memory_id.strip())
            return texts.NOTHING_FORGOTTEN_QUERY.format(query=query.strip())
        others = [m for m in found if not owns(m, request)]
        if others and not _approved_for(ctx, others):
            [other, *_] = others
            raise ToolError(
                texts.FORGET_NOT_YOURS.format(id=other.id, text=memory.redact(other.text), author=author_label(other))
            )
        gone = await memory.forget_exactly(found)
        if gone is None:
            raise ToolError(texts.MEMORY_CHANGED)
        items = ", ".join(texts.FORGOTTEN_ITEM.format(text=memory.redact(m.text), id=m.id) for m in gone)
        return texts.FORGOTTEN.format(count=len(gone), items=items)

    async def plan_forget(args: dict[str, Any], ctx: ToolContext | None = None) -> Plan:
        request = _requester(ctx)
        found = await targets(args, request)
        parts = tuple(bound_part(m) for m in found)
        if not found:
            return Plan(risk=Risk.READ, summary=texts.PLAN_FORGET_NOTHING, detail=texts.PLAN_FORGET_NOTHING)
        others = [m for m in found if request is None or not owns(m, request)]
        if not others:
            summary = texts.PLAN_FORGET_OWN.format(text=memory.redact(found[0].text), id=found[0].id)
            return Plan(risk=Risk.READ, summary=summary, detail=summary, fingerprint_parts=parts)
        [other, *_] = others
        author, text = author_label(other), memory.redact(other.text)
        return Plan(
            risk=Risk.WRITE,
            summary=texts.PLAN_FORGET_SUMMARY.format(author=author, text=text),
            detail="\n".join(
                texts.PLAN_FORGET_DETAIL.format(
                    id=m.id, kind=m.kind, scope=_scope_label(m), author=author_label(m), text=memory.redact(m.text)
                )
                for m in found
            ),
            fingerprint_parts=parts,
        )

    async def fresh_forget(args: dict[str, Any], ctx: ToolContext | None = None) -> tuple[str, ...]:
        return (await plan_forget(args, ctx)).fingerprint_parts

    memory_forget.plan(plan_forget)  # the hooks are called as hook(args) today: see the module's docstring
    memory_forget.check_fresh(fresh_forget)

    return [memory_store, memory_recall, memory_forget]
