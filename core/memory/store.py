"""Long-term memory over ChromaDB: facts, incidents and summaries.

One collection holds every memory; ``kind`` and ``scope`` are metadata
fields that every read filters on.  Callers pass the scopes a requester may
see, normally ``[SHARED_SCOPE, private_scope(platform, user)]``.

Vectors are computed here (never by Chroma), so one embedding serves both the
near-duplicate check and the insert.  What a memory is lives in
:mod:`core.memory.model`, how it is kept in Chroma (opening, re-embedding,
rows, filters) in :mod:`core.memory.chroma`; this module decides what is
written, merged, recalled and deleted.  The names of both are re-exported
here, so ``from core.memory.store import ...`` keeps working.

All methods are synchronous and thread-safe; async callers wrap them in
``asyncio.to_thread``.
"""

from __future__ import annotations

import builtins
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Collection as Collection_
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from chromadb.api.types import WhereDocument

from core.errors import InvalidArgument
from core.memory.chroma import (
    DEFAULT_COLLECTION,
    CollectionInfo,
    close_client,
    connect,
    delete_collection,
    document_naming,
    drop_collection,
    inspect_collection,
    memories_from_get,
    memory_metadata,
    open_collection,
    query_collection,
    where_fields,
)
from core.memory.embeddings import MemoryEmbedding, shared_offline_embedding
from core.memory.model import (
    INCIDENT_FIELDS,
    KINDS,
    SHARED_SCOPE,
    SYSTEM_AUTHOR,
    EmbeddingModelMismatch,
    Kind,
    Memory,
    MemoryStoreError,
    MergeRefused,
    NewMemory,
    check_kind,
    check_scope,
    embedded_text,
    incident_text,
    private_scope,
)

__all__ = [
    "DEFAULT_COLLECTION",
    "IDENTIFIER_BONUS",
    "INCIDENT_FIELDS",
    "KINDS",
    "SHARED_SCOPE",
    "SYSTEM_AUTHOR",
    "CollectionInfo",
    "EmbeddingModelMismatch",
    "Kind",
    "Memory",
    "MemoryStore",
    "MemoryStoreError",
    "MergeRefused",
    "NewMemory",
    "incident_text",
    "private_scope",
]

# How much nearer a memory ranks in recall when it names all the identifiers
# the query names (db7, vpn.example.com).  Ranking only: the cut-off applies
# to the real distance.
IDENTIFIER_BONUS: Final = 0.2

# The unfiltered search asks for this many candidates per memory wanted (at least
# _MIN_FETCH): room for as many of other scopes and kinds before the filtered
# search is needed.  No more: Chroma reads each returned row's document and
# metadata (about 0.05 ms a row at 10k, as much as the search itself for 20 rows).
_FETCH_PER_WANTED: Final = 2
_MIN_FETCH: Final = 10
# Host names, addresses and other identifiers: a letter followed later by a
# digit (db1, web-02, eu-west-1) or dotted words (vpn.example.com, 10.0.0.1).
_IDENTIFIER_RE: Final = re.compile(r"[a-z][a-z0-9_-]*[0-9][a-z0-9_-]*|[a-z0-9_-]+(?:\.[a-z0-9_-]+)+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Search:
    """What :meth:`MemoryStore._nearest` found: ``hits`` in scope, nearest first;
    ``exhaustive`` when every memory within the cut-off, of any scope, was a candidate."""

    hits: list[Memory]
    exhaustive: bool = False


def _prepare(item: NewMemory) -> NewMemory:
    text = item.text.strip()
    if not text:
        raise InvalidArgument("cannot remember an empty text")
    source = {str(k): str(v) for k, v in item.source.items() if v is not None and str(v) != ""}
    return replace(item, text=text, kind=check_kind(item.kind), scope=check_scope(item.scope), source=source)


def _same_words(a: str, b: str) -> bool:
    """Two texts that differ only in case and spacing (incidents merge only then)."""
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def _identifiers(text: str) -> frozenset[str]:
    return frozenset(m.group(0).lower().strip("._-") for m in _IDENTIFIER_RE.finditer(text))


def _version(memory: Memory) -> tuple[str, ...]:
    return (memory.text, str(memory.revision), memory.updated_at, memory.author, memory.scope)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class MemoryStore:
    """Every memory the bot keeps, in one Chroma collection: the one place that writes, merges,
    recalls and deletes them.

    Open it on embedded Chroma at ``path`` or a Chroma server at ``host`` (a collection built
    by another embedding model is refused unless ``reindex``), then :meth:`add` (a near-duplicate
    of the same kind and scope is updated instead), :meth:`recall` within the scopes the
    requester may see, and :meth:`remove` by id or query.  Distances come from the embedding
    engine unless ``recall_distance``/``dedup_distance`` are given; :meth:`close` it when done.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedding: MemoryEmbedding | None = None,
        host: str | None = None,
        port: int = 8000,
        collection: str = DEFAULT_COLLECTION,
        recall_distance: float | None = None,
        dedup_distance: float | None = None,
        reindex: bool = False,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self._client, self.location = connect(path, host=host, port=port)
        self.embedding: MemoryEmbedding = embedding if embedding is not None else shared_offline_embedding()
        self.collection_name = collection
        # The engine's calibrated distances (core.memory.embeddings.Thresholds) unless the caller names its own.
        thresholds = self.embedding.thresholds
        self.recall_distance = thresholds.recall if recall_distance is None else recall_distance
        self.dedup_distance = thresholds.dedup if dedup_distance is None else dedup_distance
        self.forget_distance = thresholds.forget
        self._lock = threading.RLock()
        self.reindexed: int | None = None  # how many memories opening re-embedded, when it did
        try:
            # progress(done, total, the model that built it) after each re-embedded batch
            self._collection, self.reindexed = open_collection(
                self._client, collection, self.embedding, location=self.location, reindex=reindex, progress=progress
            )
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Release the client (the embedded database's files, for the next opener)."""
        close_client(self._client)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def inspect(
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int = 8000,
        collection: str = DEFAULT_COLLECTION,
    ) -> CollectionInfo:
        """How many memories the collection holds and which model built it, whatever that model is."""
        return inspect_collection(path, host=host, port=port, collection=collection)

    @staticmethod
    def drop(
        path: str | Path | None = None,
        *,
        host: str | None = None,
        port: int = 8000,
        collection: str = DEFAULT_COLLECTION,
    ) -> int:
        """Delete the memory collection whatever model built it; returns how many memories it held.

        For ``orchestrator memory reset`` after a change of embedding model,
        when the store itself refuses to open.
        """
        return drop_collection(path, host=host, port=port, collection=collection)

    def reset(self) -> None:
        """Delete every memory and start over with the current embedding model."""
        with self._lock:
            delete_collection(self._client, self.collection_name)
            self._collection, _ = open_collection(
                self._client, self.collection_name, self.embedding, location=self.location
            )

    # -- writing ----------------------------------------------------------------

    def add(
        self,
        text: str,
        *,
        kind: str,
        scope: str,
        source: Mapping[str, object],
        extra: Mapping[str, Any] | None = None,
        author: str = "",
        author_name: str = "",
        may_merge: Callable[[Memory], bool] | None = None,
    ) -> Memory:
        """Remember ``text``; a near-duplicate of the same kind and scope is updated instead.

        A near-duplicate is within ``dedup_distance`` and names the same
        identifiers (hosts, addresses): "postgres on db1 listens on 5433"
        updates "postgres on db1 listens on port 5432", but never
        "... on db2 ...".  The returned memory has ``updated`` set when an
        existing one was rewritten (its id, created_at and ``distance`` to the
        new text are kept; text, source and updated_at are the new ones,
        ``extra`` is merged; its ``author`` stays).

        ``may_merge`` is asked about the near-duplicate before it is updated;
        when it says no, :class:`MergeRefused` is raised and nothing is written.
        """
        item = NewMemory(
            text, kind=kind, scope=scope, source=source, extra=extra, author=author, author_name=author_name
        )
        return self.add_many([item], may_merge=may_merge)[0]

    def add_many(
        self,
        items: Iterable[NewMemory],
        *,
        batch_size: int = 128,
        may_merge: Callable[[Memory], bool] | None = None,
    ) -> builtins.list[Memory]:
        """:meth:`add` for many items at once (imports): one embedding batch and one write per chunk.

        Items are deduplicated against the store and against each other, in
        order; the result has one memory per item.  ``may_merge`` is checked
        under the store's lock, so what it approved is what is updated; a
        refusal (:class:`MergeRefused`, with the item's index) leaves that
        item's chunk unwritten.
        """
        if batch_size < 1:
            raise InvalidArgument("batch_size must be at least 1")
        prepared = [_prepare(item) for item in items]
        added: builtins.list[Memory] = []
        for start in range(0, len(prepared), batch_size):
            try:
                added.extend(self._add_chunk(prepared[start : start + batch_size], may_merge))
            except MergeRefused as refused:
                raise MergeRefused(start + refused.index, refused.twin) from None
        return added

    def _add_chunk(
        self, chunk: Sequence[NewMemory], may_merge: Callable[[Memory], bool] | None = None
    ) -> builtins.list[Memory]:
        vectors = self.embedding([embedded_text(item.text, item.kind, item.extra) for item in chunk])
        now = _now()
        results: builtins.list[Memory] = []
        with self._lock:
            # id -> (memory as it will be written, its vector, not yet in the collection)
            staged: dict[str, tuple[Memory, Any, bool]] = {}
            for index, (item, vector) in enumerate(zip(chunk, vectors, strict=True)):
                kind = check_kind(item.kind)
                twin = self._staged_twin(item, vector, staged) or self._near_duplicate(
                    item.text, vector, kind, item.scope, skip=staged.keys()
                )
                if twin is not None and may_merge is not None and not may_merge(twin):
                    raise MergeRefused(index, twin)
                if twin is not None:
                    memory = replace(
                        twin,
                        text=item.text,
                        source={k: str(v) for k, v in item.source.items()} or dict(twin.source),
                        updated_at=now,
                        extra={**twin.extra, **(item.extra or {})},
                        revision=twin.revision + 1,
                        updated=True,
                    )
                    is_new = staged[twin.id][2] if twin.id in staged else False
                else:
                    memory = Memory(
                        id=uuid.uuid4().hex,
                        text=item.text,
                        kind=kind,
                        scope=item.scope,
                        source={k: str(v) for k, v in item.source.items()},
                        created_at=now,
                        updated_at=now,
                        extra=dict(item.extra or {}),
                        author=item.author,
                        author_name=item.author_name,
                    )
                    is_new = True
                staged[memory.id] = (memory, vector, is_new)
                results.append(memory)
            for new in (True, False):
                rows = [(m, v) for m, v, is_new in staged.values() if is_new is new]
                if not rows:
                    continue
                write = self._collection.add if new else self._collection.update
                write(
                    ids=[m.id for m, _ in rows],
                    embeddings=[v for _, v in rows],
                    documents=[m.text for m, _ in rows],
                    metadatas=[memory_metadata(m) for m, _ in rows],
                )
        return results

    def _staged_twin(
        self, item: NewMemory, vector: Any, staged: Mapping[str, tuple[Memory, Any, bool]]
    ) -> Memory | None:
        wanted = _identifiers(item.text)
        best: Memory | None = None
        for memory, other, _ in staged.values():
            if memory.kind != item.kind or memory.scope != item.scope:
                continue
            if item.kind == "incident" and not _same_words(memory.text, item.text):
                continue  # one symptom, another cause or fix: another incident
            distance = 1.0 - float(np.dot(vector, other))
            nearer = best is None or distance < (best.distance or 0.0)
            if distance < self.dedup_distance and nearer and _identifiers(memory.text) == wanted:
                best = replace(memory, distance=distance)
        return best

    def add_incident(
        self,
        *,
        symptom: str,
        scope: str,
        source: Mapping[str, object],
        cause: str = "",
        fix: str = "",
        outcome: str = "",
        audit_ids: Iterable[str | int] = (),
        held: bool | None = None,
        author: str = SYSTEM_AUTHOR,
    ) -> Memory:
        """Remember a failure with what caused it and what fixed it (kind ``incident``).

        ``held``: whether the fix held when the check ran again (None: not known).
        """
        extra: dict[str, Any] = {
            "symptom": symptom,
            "cause": cause,
            "fix": fix,
            "outcome": outcome,
            "audit_ids": [str(a) for a in audit_ids],
            "held": held,
        }
        text = incident_text(symptom=symptom, cause=cause, fix=fix, outcome=outcome)
        return self.add(text, kind="incident", scope=scope, source=source, extra=extra, author=author)

    def find_twin(self, text: str, *, kind: str, scope: str) -> Memory | None:
        """The stored memory :meth:`add` would update with ``text`` (a near-duplicate), if any."""
        text = text.strip()
        if not text:
            return None
        vector = self.embedding([text])[0]
        with self._lock:
            return self._near_duplicate(text, vector, check_kind(kind), check_scope(scope))

    def _near_duplicate(
        self, text: str, vector: Any, kind: Kind, scope: str, *, skip: Collection_[str] = ()
    ) -> Memory | None:
        """The nearest stored memory that ``text`` restates; ``skip``: ids already staged."""
        wanted = _identifiers(text)
        found = self._nearest(vector, scopes=[scope], kinds=[kind], n=3, cutoff=self.dedup_distance)
        for memory in found.hits:
            close = memory.distance is not None and memory.distance < self.dedup_distance
            if kind == "incident" and not _same_words(memory.text, text):
                continue  # one symptom, another cause or fix: another incident
            if close and memory.id not in skip and _identifiers(memory.text) == wanted:
                return memory
        return None

    def _nearest(
        self,
        vector: Any,
        *,
        scopes: Sequence[str],
        kinds: Sequence[str] | None,
        n: int,
        cutoff: float,
        where_document: WhereDocument | None = None,
    ) -> _Search:
        """The memories within ``scopes``/``kinds`` nearest to ``vector``: the ``n`` nearest, exact
        up to ``cutoff``, and any other one in scope the search came across.

        Chroma's metadata-filtered search costs ~50 ms on 10k memories; an
        unfiltered one ~2 ms.  So ask unfiltered for a few times ``n`` and
        filter here: that is already the exact answer when ``n`` survive, or
        when the farthest candidate is beyond ``cutoff`` (nothing nearer was
        left out).  Only otherwise (a small scope inside a big store) fall
        back to the filtered search.
        """
        allowed_scopes = set(scopes)
        allowed_kinds = set(kinds) if kinds is not None else None
        fetch = max(_FETCH_PER_WANTED * n, _MIN_FETCH)
        candidates = query_collection(self._collection, vector, n=fetch, where_document=where_document)
        hits = [
            m for m in candidates if m.scope in allowed_scopes and (allowed_kinds is None or m.kind in allowed_kinds)
        ]
        farthest = candidates[-1].distance if candidates else None
        exhaustive = len(candidates) < fetch or (farthest is not None and farthest > cutoff)
        if len(hits) >= n or exhaustive:
            return _Search(hits, exhaustive=exhaustive)
        return _Search(
            query_collection(
                self._collection,
                vector,
                n=n,
                where=where_fields(scope=scopes, kind=kinds),
                where_document=where_document,
            )
        )

    def forget(
        self,
        memory_id: str | None = None,
        *,
        query: str | None = None,
        scopes: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        max_distance: float | None = None,
        limit: int = 1,
    ) -> int:
        """:meth:`remove`, returning how many memories were deleted."""
        removed = self.remove(
            memory_id, query=query, scopes=scopes, kinds=kinds, max_distance=max_distance, limit=limit
        )
        return len(removed)

    def remove(
        self,
        memory_id: str | None = None,
        *,
        query: str | None = None,
        scopes: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        max_distance: float | None = None,
        limit: int = 1,
    ) -> builtins.list[Memory]:
        """Delete one memory by id, or the ``limit`` memories closest to ``query``; returns what was deleted.

        ``scopes`` restricts what may be deleted (required with ``query``): a
        memory outside them is left alone.  A query deletes only memories
        within ``max_distance`` (stricter than recall's) that name every
        identifier the query names, so "forget the postgres port on db2" never
        touches db1's.  Safest for an agent: recall first, then forget by id.
        """
        with self._lock:
            doomed = self.forget_candidates(
                memory_id, query=query, scopes=scopes, kinds=kinds, max_distance=max_distance, limit=limit
            )
            if doomed:
                self._collection.delete(ids=[m.id for m in doomed])
            return doomed

    def forget_candidates(
        self,
        memory_id: str | None = None,
        *,
        query: str | None = None,
        scopes: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        max_distance: float | None = None,
        limit: int = 1,
    ) -> builtins.list[Memory]:
        """What :meth:`remove` would delete with these arguments, without deleting it."""
        if (memory_id is None) == (query is None):
            raise InvalidArgument("forget needs exactly one of memory_id or query")
        if memory_id is not None:
            found = self.get(memory_id)
            if found is None or (scopes is not None and found.scope not in scopes):
                return []
            return [found]
        assert query is not None
        if not scopes:
            raise InvalidArgument("forgetting by query needs the scopes the requester may change")
        named = _identifiers(query)
        cutoff = self.forget_distance if max_distance is None else max_distance
        candidates = self.recall(query, scopes=scopes, kinds=kinds, k=max(5, 3 * limit), max_distance=cutoff)
        return [m for m in candidates if named <= _identifiers(m.text)][:limit]

    def remove_unchanged(self, memories: Sequence[Memory]) -> builtins.list[Memory] | None:
        """Delete exactly these memories, if none changed since they were read (text, revision,
        last update, author, scope); None, and nothing deleted, when one did or is gone."""
        with self._lock:
            for memory in memories:
                now = self.get(memory.id)
                if now is None or _version(now) != _version(memory):
                    return None
            if memories:
                self._collection.delete(ids=[m.id for m in memories])
            return list(memories)

    # -- reading ----------------------------------------------------------------

    def recall(
        self,
        query: str,
        *,
        scopes: Sequence[str],
        kinds: Sequence[str] | None = None,
        k: int = 5,
        max_distance: float | None = None,
        identifier_leeway: bool = False,
    ) -> builtins.list[Memory]:
        """The ``k`` memories closest to ``query`` within ``scopes``, best first.

        Only memories within ``max_distance`` (default ``recall_distance``)
        come back, each with its cosine ``distance``.  Memories that name the
        identifiers the query names (hosts, addresses: "db7") rank as if
        ``IDENTIFIER_BONUS`` nearer, so "postgres port on db7" puts db7's
        facts before db13's.  With ``identifier_leeway`` the cut-off moves by
        the same bonus for memories that name every identifier the query
        names: "what do you remember about db1?" is far (0.67) from "postgres
        on db1 listens on port 5433" because of its filler words, yet it is
        plainly about that memory.

        One Chroma query, with one query embedding.  A second one, for the
        memories whose text contains the identifiers the query names, runs only
        when none of the nearest names them all and the first did not already
        reach past the cut-off: the answer about db7 then still comes first,
        though the rest of the list may hold fewer of db7's other memories
        than an exhaustive search would find.
        """
        if not scopes:
            raise InvalidArgument("recall needs at least one scope (e.g. 'shared')")
        for scope in scopes:
            check_scope(scope)
        if kinds is not None:
            kinds = [check_kind(kind) for kind in kinds]
        if k < 1 or not query.strip():
            return []
        limit = self.recall_distance if max_distance is None else max_distance
        named = _identifiers(query)
        reach = limit + (IDENTIFIER_BONUS if identifier_leeway and named else 0.0)
        vector = self.embedding.embed_query([query.strip()])[0]
        names: dict[str, frozenset[str]] = {}

        def names_of(memory: Memory) -> frozenset[str]:
            if memory.id not in names:
                names[memory.id] = _identifiers(memory.text)
            return names[memory.id]

        def within(memory: Memory) -> bool:
            if memory.distance is None or memory.scope not in scopes:
                return False
            if memory.distance <= limit:
                return True
            return memory.distance <= reach and named <= names_of(memory)

        nearest = self._nearest(vector, scopes=scopes, kinds=kinds, n=k, cutoff=reach)
        pool = [m for m in nearest.hits if within(m)]
        if named and not nearest.exhaustive and not any(named <= names_of(m) for m in pool):
            # Dense vectors barely tell db7 from db13: when none of the nearest memories names
            # what the query names, ask for the nearest that do (a second query, so only then).
            lexical = self._nearest(
                vector, scopes=scopes, kinds=kinds, n=k, cutoff=reach, where_document=document_naming(named)
            )
            pool += [m for m in lexical.hits if within(m)]

        def rank(memory: Memory) -> float:
            assert memory.distance is not None
            if not named:
                return memory.distance
            shared = len(named & names_of(memory)) / len(named)
            return memory.distance - IDENTIFIER_BONUS * shared

        unique = {m.id: m for m in pool}
        return sorted(unique.values(), key=rank)[:k]

    def list(
        self, kind: str | None = None, scope: str | None = None, *, limit: int | None = None
    ) -> builtins.list[Memory]:
        """Memories of a kind and/or scope, oldest first."""
        where = where_fields(
            kind=[check_kind(kind)] if kind is not None else None,
            scope=[check_scope(scope)] if scope is not None else None,
        )
        memories = memories_from_get(self._collection.get(where=where, include=["documents", "metadatas"]))
        memories.sort(key=lambda m: (m.created_at, m.id))
        return memories[:limit] if limit is not None else memories

    def scopes(self) -> builtins.list[str]:
        """Every scope that holds a memory: ``shared`` and one ``private:…`` per user who told the bot something."""
        got = self._collection.get(include=["metadatas"])
        return sorted({str((meta or {}).get("scope", SHARED_SCOPE)) for meta in got["metadatas"] or []})

    def get(self, memory_id: str) -> Memory | None:
        found = memories_from_get(self._collection.get(ids=[memory_id], include=["documents", "metadatas"]))
        return found[0] if found else None

    def count(self, kind: str | None = None, scope: str | None = None) -> int:
        if kind is None and scope is None:
            return self._collection.count()
        where = where_fields(
            kind=[check_kind(kind)] if kind is not None else None,
            scope=[check_scope(scope)] if scope is not None else None,
        )
        return len(self._collection.get(where=where, include=[])["ids"])
