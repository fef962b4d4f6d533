"""memory_store, memory_recall and memory_forget: the agent's own memory, scoped to who asks.

All three are READ risk (they run without an approval): they touch only the bot's memory,
never the machines it manages; what they may reach is bounded by the requester's scopes
(a DM memory is visible to and deletable by its author only), and every call is in the
audit log like any other tool run.  See docs/memory.md.

Who asks comes from the call's `ToolContext`, which the agent fills in: it is not a
parameter the model sees, so the model cannot claim to be someone else.
"""

from __future__ import annotations

from core.events import Request, Risk
from core.memory import texts
from core.memory.service import MAX_FACT_CHARS, MemoryService
from core.memory.sources import describe_source
from core.memory.store import SHARED_SCOPE, Memory
from core.tools.registry import ToolContext, ToolError, ToolSpec, tool


def _listing(memories: list[Memory], request: Request) -> list[str]:
    lines = [
        texts.RECALLED_ITEM.format(
            id=m.id,
            text=m.text,
            kind=m.kind,
            scope=texts.SCOPE_SHARED if m.scope == SHARED_SCOPE else texts.SCOPE_PRIVATE,
            source=describe_source(m, detailed=True),
        )
        for m in memories
    ]
    if not request.is_private and any(m.scope != SHARED_SCOPE for m in memories):
        lines.append(texts.PRIVATE_IN_CHANNEL)
    return lines


def memory_tools(memory: MemoryService) -> list[ToolSpec]:
    @tool(risk=Risk.READ)
    async def memory_store(fact: str, *, ctx: ToolContext) -> str:
        """Remember a durable fact or preference someone stated, for later threads and after restarts.

        Args:
            fact: one self-contained sentence that names its subject, e.g. "postgres on db1 listens on port 5433".
        """
        request = ctx.request
        text = " ".join(fact.split())
        if not text:
            raise ToolError(texts.FACT_EMPTY)
        if len(text) > MAX_FACT_CHARS:
            raise ToolError(texts.FACT_TOO_LONG.format(limit=MAX_FACT_CHARS))
        try:
            stored = await memory.remember(text, request)
        except ValueError as exc:
            raise ToolError(str(exc)) from exc
        visibility = texts.VISIBLE_SHARED if stored.scope == SHARED_SCOPE else texts.VISIBLE_PRIVATE
        template = texts.UPDATED if stored.updated else texts.STORED
        return template.format(visibility=visibility, text=stored.text, id=stored.id)

    @tool(risk=Risk.READ)
    async def memory_recall(query: str = "", *, ctx: ToolContext) -> str:
        """Look up what you remember: stored facts, past incidents and their fixes, with who said them, where and when.

        Args:
            query: what to look for, e.g. "db1" or "backup schedule"; empty lists the most recent memories.
        """
        request = ctx.request
        if not query.strip():
            recent = await memory.recent(request)
            return "\n".join([texts.RECENT_HEADER, *_listing(recent, request)]) if recent else texts.NOTHING_AT_ALL
        found = await memory.recall(query, request)
        if not found:
            return texts.NOTHING_RECALLED.format(query=query)
        return "\n".join([texts.RECALLED_HEADER.format(query=query), *_listing(found, request)])

    @tool(risk=Risk.READ)
    async def memory_forget(memory_id: str = "", query: str = "", *, ctx: ToolContext) -> str:
        """Forget one memory when asked to: by its id (from memory_recall, the safe way) or by a description of it.

        Args:
            memory_id: the id memory_recall showed.
            query: a description of the memory to forget, when there is no id; the closest match is deleted.
        """
        request = ctx.request
        memory_id, query = memory_id.strip(), query.strip()
        if bool(memory_id) == bool(query):
            raise ToolError(texts.FORGET_NEEDS_ONE)
        if memory_id:
            gone = await memory.forget(request, memory_id=memory_id)
            if not gone:
                return texts.NOTHING_FORGOTTEN_ID.format(id=memory_id)
        else:
            gone = await memory.forget(request, query=query)
            if not gone:
                return texts.NOTHING_FORGOTTEN_QUERY.format(query=query)
        items = ", ".join(texts.FORGOTTEN_ITEM.format(text=m.text, id=m.id) for m in gone)
        return texts.FORGOTTEN.format(count=len(gone), items=items)

    return [memory_store, memory_recall, memory_forget]
