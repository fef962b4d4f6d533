"""Long-term memory over ChromaDB: facts, incidents and summaries.

One collection holds every memory; ``kind`` and ``scope`` are metadata
fields that every read filters on.  A scope is ``shared`` (what was said in a
channel) or ``private:<platform>:<user>`` (what a user said in a DM); callers
pass the scopes a requester may see, normally ``[SHARED_SCOPE,
private_scope(platform, user)]``.

Vectors are computed here (never by Chroma), so one embedding serves both the
near-duplicate check and the insert.  The collection records the embedding
model it was built with; opening it with another model raises
:class:`EmbeddingModelMismatch`, because vectors of two models are not
comparable.

All methods are synchronous and thread-safe; async callers wrap them in
``asyncio.to_thread``.
"""

from __future__ import annotations

import builtins
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Collection as Collection_
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Metadata, Where, WhereDocument
from chromadb.base_types import InclusionExclusionOperator, LiteralValue
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from core.errors import InvalidArgument, RuntimeFailure
from core.memory.embeddings import MemoryEmbedding, shared_offline_embedding

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

Kind = Literal["fact", "incident", "summary"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
SHARED_SCOPE: Final = "shared"
# The author of what no person wrote: incidents, scheduled checks.  A person's is "platform:user".
SYSTEM_AUTHOR: Final = "system"
INCIDENT_FIELDS: Final = ("symptom", "cause", "fix", "outcome", "audit_ids")
DEFAULT_COLLECTION: Final = "orchestrator_memories"

# How much nearer a memory ranks in recall when it names all the identifiers
# the query names (db7, vpn.example.com).  Ranking only: the cut-off applies
# to the real distance.
IDENTIFIER_BONUS: Final = 0.2

# What chromadb raises for a collection that does not exist (NotFoundError, or ValueError in some versions).
_NO_SUCH_COLLECTION: Final = (NotFoundError, ValueError)
_META_MODEL: Final = "embedding_model"
_REINDEX_BATCH: Final = 256  # memories re-embedded and written at a time
_META_FORMAT: Final = "memory_format"
_FORMAT_VERSION: Final = 1
_SOURCE_PREFIX: Final = "src_"
_META_AUTHOR: Final = "author"
_META_AUTHOR_NAME: Final = "author_name"
# The unfiltered search asks for this many candidates per memory wanted (at least
# _MIN_FETCH): room for as many of other scopes and kinds before the filtered
# search is needed.  No more: Chroma reads each returned row's document and
# metadata (about 0.05 ms a row at 10k, as much as the search itself for 20 rows).
_FETCH_PER_WANTED: Final = 2
_MIN_FETCH: Final = 10
_PRIVATE_SCOPE_RE: Final = re.compile(r"^private:[^:\s]+:\S+$")
# Host names, addresses and other identifiers: a letter followed later by a
# digit (db1, web-02, eu-west-1) or dotted words (vpn.example.com, 10.0.0.1).
_IDENTIFIER_RE: Final = re.compile(r"[a-z][a-z0-9_-]*[0-9][a-z0-9_-]*|[a-z0-9_-]+(?:\.[a-z0-9_-]+)+", re.IGNORECASE)


class MemoryStoreError(RuntimeFailure):
    """The memory store cannot be used as asked."""


class MergeRefused(MemoryStoreError):
    """Item ``index`` restates ``twin``, which the caller may not change; nothing of its batch was written."""

    def __init__(self, index: int, twin: Memory) -> None:
        self.index = index
        self.twin = twin
        super().__init__(f"the new memory would update memory {twin.id}, which the caller may not change")


class EmbeddingModelMismatch(MemoryStoreError):
    """The collection was built with another embedding model than the one given."""

    def __init__(self, *, collection: str, stored: str, requested: str, location: str) -> None:
        self.collection = collection
        self.stored = stored
        self.requested = requested
        super().__init__(
            f"memory collection {collection!r} at {location} was built with embedding model "
            f"{stored!r}, but {requested!r} is configured; vectors of different models cannot be "
            f"compared.  Run `orchestrator memory reindex` to re-embed every memory with "
            f"{requested!r} (nothing is lost; the bot also does it when it starts), or configure "
            f"{stored!r} again."
        )


@dataclass(frozen=True, slots=True)
class Memory:
    """One remembered item.

    ``distance`` is set by :meth:`MemoryStore.recall` (cosine distance to the
    query) and by :meth:`MemoryStore.add` when it merged into an existing
    memory (``updated`` is then true).

    ``author`` is who first stored it (``platform:user``, or ``system``) and is
    kept when a restatement updates it; ``source`` is who said it last.
    Memories stored before authors were recorded have none: see :attr:`owner`.
    """

    id: str
    text: str
    kind: Kind
    scope: str
    source: Mapping[str, str] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 1
    distance: float | None = None
    updated: bool = False
    author: str = ""
    author_name: str = ""

    @property
    def owner(self) -> str:
        """Who may change this memory without an approval: its author; for a private memory
        stored before authors were recorded, the user its scope names (nobody else could have
        written there); otherwise nobody (``""``)."""
        if self.author:
            return self.author
        if self.scope != SHARED_SCOPE and _PRIVATE_SCOPE_RE.match(self.scope):
            return self.scope.removeprefix("private:")
        return ""

    @property
    def platform(self) -> str:
        return self.source.get("platform", "")

    @property
    def channel(self) -> str:
        return self.source.get("channel", "")

    @property
    def user(self) -> str:
        return self.source.get("user", "")


@dataclass(frozen=True, slots=True)
class NewMemory:
    """One item for :meth:`MemoryStore.add_many` (the arguments of :meth:`MemoryStore.add`)."""

    text: str
    kind: str
    scope: str
    source: Mapping[str, object] = field(default_factory=dict)
    extra: Mapping[str, Any] | None = None
    author: str = ""
    author_name: str = ""


@dataclass(frozen=True, slots=True)
class _Search:
    """What :meth:`MemoryStore._nearest` found: ``hits`` in scope, nearest first;
    ``exhaustive`` when every memory within the cut-off, of any scope, was a candidate."""

    hits: list[Memory]
    exhaustive: bool = False


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What :meth:`MemoryStore.inspect` finds without opening the store: for ``orchestrator memory reset``."""

    location: str
    exists: bool
    count: int = 0
    model: str | None = None


def _prepare(item: NewMemory) -> NewMemory:
    text = item.text.strip()
    if not text:
        raise InvalidArgument("cannot remember an empty text")
    source = {str(k): str(v) for k, v in item.source.items() if v is not None and str(v) != ""}
    return replace(item, text=text, kind=_check_kind(item.kind), scope=_check_scope(item.scope), source=source)


def _embedded(text: str, kind: str, extra: Mapping[str, Any] | None) -> str:
    """What a memory's vector is made from: its text, or for an incident its symptom.

    A later failure is described the way the symptom was ("web1 shows bad gateway
    errors"), not with the cause and fix, which only dilute the vector (0.55 from
    the symptom, 0.71 from the whole incident, with the multilingual model).
    """
    symptom = (extra or {}).get("symptom") if kind == "incident" else None
    return symptom.strip() if isinstance(symptom, str) and symptom.strip() else text


def _embedded_record(document: str, meta: Mapping[str, Any] | None) -> str:
    """:func:`_embedded` for a stored row (its document and metadata)."""
    meta = meta or {}
    try:
        extra = json.loads(str(meta.get("extra") or "{}"))
    except ValueError:
        extra = {}
    return _embedded(document, str(meta.get("kind") or ""), extra if isinstance(extra, dict) else {})


def _same_words(a: str, b: str) -> bool:
    """Two texts that differ only in case and spacing (incidents merge only then)."""
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def private_scope(platform: str, user: str) -> str:
    """The scope of what ``user`` told the bot in a DM on ``platform``."""
    if not platform or not user or ":" in platform or any(c.isspace() for c in platform + user):
        raise InvalidArgument(f"invalid platform/user for a private scope: {platform!r}, {user!r}")
    return f"private:{platform}:{user}"


def incident_text(*, symptom: str, cause: str = "", fix: str = "", outcome: str = "") -> str:
    """The text an incident is embedded and shown as: the symptom leads."""
    parts = [symptom.strip().rstrip(".") + "."]
    for label, value in (("Cause", cause), ("Fix", fix), ("Outcome", outcome)):
        if value.strip():
            parts.append(f"{label}: {value.strip().rstrip('.')}.")
    return " ".join(parts)


def _check_scope(scope: str) -> str:
    if scope != SHARED_SCOPE and not _PRIVATE_SCOPE_RE.match(scope):
        raise InvalidArgument(f"invalid scope {scope!r}: expected 'shared' or 'private:<platform>:<user>'")
    return scope


def _check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise InvalidArgument(f"invalid memory kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def _identifiers(text: str) -> frozenset[str]:
    return frozenset(m.group(0).lower().strip("._-") for m in _IDENTIFIER_RE.finditer(text))


def _naming(identifiers: Collection_[str]) -> WhereDocument:
    """A document filter for the texts that contain one of ``identifiers`` (Chroma's is case-sensitive)."""
    needles = sorted({variant for name in identifiers for variant in (name, name.upper())})
    contains: list[WhereDocument] = [{"$contains": needle} for needle in needles]
    return contains[0] if len(contains) == 1 else {"$or": contains}


def _version(memory: Memory) -> tuple[str, ...]:
    return (memory.text, str(memory.revision), memory.updated_at, memory.author, memory.scope)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _where(**fields: Sequence[str] | None) -> Where | None:
    clauses: list[Where] = []
    for name, values in fields.items():
        if values is None:
            continue
        wanted: list[LiteralValue] = list(values)
        if len(wanted) == 1:
            clauses.append({name: wanted[0]})
        else:
            membership: dict[InclusionExclusionOperator, list[LiteralValue]] = {"$in": wanted}
            clauses.append({name: membership})
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


def _metadata(memory: Memory) -> Metadata:
    meta: dict[str, str | int | float | bool] = {
        "kind": memory.kind,
        "scope": memory.scope,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
        "revision": memory.revision,
        "extra": json.dumps(dict(memory.extra), sort_keys=True, default=str),
    }
    # Written only when known: collections from before authors were recorded simply lack them.
    if memory.author:
        meta[_META_AUTHOR] = memory.author
    if memory.author_name:
        meta[_META_AUTHOR_NAME] = memory.author_name
    for key, value in memory.source.items():
        meta[_SOURCE_PREFIX + key] = value
    return meta


def _from_record(
    memory_id: str, text: str | None, meta: Mapping[str, Any] | None, distance: float | None = None
) -> Memory:
    meta = meta or {}
    source = {key[len(_SOURCE_PREFIX) :]: str(value) for key, value in meta.items() if key.startswith(_SOURCE_PREFIX)}
    try:
        extra = json.loads(str(meta.get("extra") or "{}"))
    except json.JSONDecodeError:
        extra = {}
    kind = str(meta.get("kind", "fact"))
    return Memory(
        id=memory_id,
        text=text or "",
        kind=kind if kind in KINDS else "fact",
        scope=str(meta.get("scope", SHARED_SCOPE)),
        source=source,
        created_at=str(meta.get("created_at", "")),
        updated_at=str(meta.get("updated_at", "")),
        extra=extra if isinstance(extra, dict) else {},
        revision=int(meta.get("revision") or 1),
        distance=distance,
        author=str(meta.get(_META_AUTHOR) or ""),
        author_name=str(meta.get(_META_AUTHOR_NAME) or ""),
    )


@contextmanager
def _raw_client(path: str | Path | None, *, host: str | None, port: int) -> Iterator[ClientAPI | None]:
    """A client for inspecting or dropping a collection without the model check; None: no such directory."""
    settings = Settings(anonymized_telemetry=False)
    if host:
        client: ClientAPI = chromadb.HttpClient(host=host, port=port, settings=settings)
    elif path is None:
        raise InvalidArgument("a data directory (path) or a Chroma server (host) is required")
    elif not Path(path).exists():
        yield None
        return
    else:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
    try:
        yield client
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


class MemoryStore:
    """Facts, incidents and summaries with semantic recall.

    Embedded Chroma at ``path`` by default; a Chroma server when ``host`` is
    given.  ``embedding`` defaults to the offline multilingual model; the
    distances it judges with come from the engine (``recall_distance`` and
    ``dedup_distance`` replace them).
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
        settings = Settings(anonymized_telemetry=False)
        self._client: ClientAPI
        if host:
            self._client = chromadb.HttpClient(host=host, port=port, settings=settings)
            self.location = f"http://{host}:{port}"
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=settings)
            self.location = str(path)
        else:
            raise InvalidArgument("MemoryStore needs a data directory (path) or a Chroma server (host)")
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
            self._collection = self._open_collection(reindex=reindex, progress=progress)
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------

    def _open_collection(
        self, *, reindex: bool = False, progress: Callable[[int, int, str], None] | None = None
    ) -> Collection:
        """The collection, made when missing; one built by another model is re-embedded when ``reindex``."""
        model = self.embedding.model_name
        self._finish_swap()
        try:
            collection = self._client.get_collection(self.collection_name, embedding_function=None)
        except _NO_SUCH_COLLECTION:
            collection = self._client.get_or_create_collection(
                self.collection_name,
                metadata={_META_MODEL: model, _META_FORMAT: _FORMAT_VERSION},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        metadata = collection.metadata or {}
        stored = metadata.get(_META_MODEL)
        if stored is None:
            if collection.count():
                stored = "an unknown model"
            else:  # an empty collection someone else made: claim it
                collection.modify(metadata={**metadata, _META_MODEL: model, _META_FORMAT: _FORMAT_VERSION})
                stored = model
        if stored != model and reindex:  # progress(done, total, the model that built it) after each batch
            collection = self._reembed(collection, progress)
        elif stored != model:
            raise EmbeddingModelMismatch(
                collection=self.collection_name,
                stored=str(stored),
                requested=model,
                location=self.location,
            )
        config = collection.configuration_json or {}
        index = config.get("hnsw") or config.get("spann") or {}
        space = index.get("space") if isinstance(index, Mapping) else None
        if space not in (None, "cosine"):
            raise MemoryStoreError(
                f"memory collection {self.collection_name!r} at {self.location} uses the {space!r} "
                f"distance, not 'cosine': run `orchestrator memory reset` or use a new data directory"
            )
        return collection

    # -- re-embedding -------------------------------------------------------------
    #
    # The memories are copied, with new vectors, into a side collection; only a
    # complete copy replaces the original, by two renames.  Whenever the process
    # dies, the next opener finds either the original under its name (the copy is
    # dropped and made again) or, between the renames, the original under
    # `<name>__previous`, which `_finish_swap` puts back.  Nothing is lost.

    def _side(self, suffix: str) -> str:
        return f"{self.collection_name}__{suffix}"

    def _get(self, name: str) -> Collection | None:
        try:
            return self._client.get_collection(name, embedding_function=None)
        except _NO_SUCH_COLLECTION:
            return None

    def _drop(self, name: str) -> None:
        try:
            self._client.delete_collection(name)
        except _NO_SUCH_COLLECTION:
            pass

    def _finish_swap(self) -> None:
        """Undo what an interrupted re-embedding left: the original back under its name, no side copies."""
        previous = self._get(self._side("previous"))
        if previous is None:
            return
        if self._get(self.collection_name) is None:  # died between the two renames
            previous.modify(name=self.collection_name)
        else:  # died after them: the re-embedded copy is in place
            self._drop(self._side("previous"))

    def _reembed(self, old: Collection, progress: Callable[[int, int, str], None] | None) -> Collection:
        """Every memory of ``old``, with vectors of this store's model, in place of ``old``."""
        model = self.embedding.model_name
        total = old.count()
        built_with = str((old.metadata or {}).get(_META_MODEL) or "an unknown model")
        self._drop(self._side("reindex"))
        copy = self._client.create_collection(
            self._side("reindex"),
            metadata={**(old.metadata or {}), _META_MODEL: model, _META_FORMAT: _FORMAT_VERSION},
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        done = 0
        if progress is not None:
            progress(0, total, built_with)
        try:
            while True:
                page = old.get(include=["documents", "metadatas"], limit=_REINDEX_BATCH, offset=done)
                ids = page["ids"]
                if not ids:
                    break
                documents = [doc or "" for doc in page["documents"] or []]
                metadatas = page["metadatas"] or [{} for _ in ids]
                vectors = self.embedding(
                    [_embedded_record(doc, meta) for doc, meta in zip(documents, metadatas, strict=True)]
                )
                copy.add(ids=ids, embeddings=vectors, documents=documents, metadatas=metadatas)
                done += len(ids)
                if progress is not None:
                    progress(done, total, built_with)
        except BaseException:
            self._drop(self._side("reindex"))  # the original is untouched
            raise
        if copy.count() != old.count():
            self._drop(self._side("reindex"))
            raise MemoryStoreError(
                f"re-embedding {self.location} copied {copy.count()} of {old.count()} memories "
                f"(were some added meanwhile?); the store is unchanged: run it again"
            )
        old.modify(name=self._side("previous"))
        copy.modify(name=self.collection_name)
        self._drop(self._side("previous"))
        self.reindexed = done
        return copy

    def close(self) -> None:
        """Release the client (the embedded database's files, for the next opener)."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

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
        location = f"http://{host}:{port}" if host else str(path)
        with _raw_client(path, host=host, port=port) as client:
            try:
                found = client.get_collection(collection, embedding_function=None) if client is not None else None
            except _NO_SUCH_COLLECTION:
                found = None
            if found is None:
                return CollectionInfo(location, exists=False)
            model = (found.metadata or {}).get(_META_MODEL)
            return CollectionInfo(location, exists=True, count=found.count(), model=str(model) if model else None)

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
        with _raw_client(path, host=host, port=port) as client:
            if client is None:
                return 0
            try:
                held = client.get_collection(collection, embedding_function=None).count()
            except _NO_SUCH_COLLECTION:
                return 0
            client.delete_collection(collection)
            for side in ("reindex", "previous"):  # what an interrupted re-embedding left
                try:
                    client.delete_collection(f"{collection}__{side}")
                except _NO_SUCH_COLLECTION:
                    pass
            return held

    def reset(self) -> None:
        """Delete every memory and start over with the current embedding model."""
        with self._lock:
            try:
                self._client.delete_collection(self.collection_name)
            except _NO_SUCH_COLLECTION:
                pass
            self._collection = self._open_collection()

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
        vectors = self.embedding([_embedded(item.text, item.kind, item.extra) for item in chunk])
        now = _now()
        results: builtins.list[Memory] = []
        with self._lock:
            # id -> (memory as it will be written, its vector, not yet in the collection)
            staged: dict[str, tuple[Memory, Any, bool]] = {}
            for index, (item, vector) in enumerate(zip(chunk, vectors, strict=True)):
                kind = _check_kind(item.kind)
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
                    metadatas=[_metadata(m) for m, _ in rows],
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
            return self._near_duplicate(text, vector, _check_kind(kind), _check_scope(scope))

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
        candidates = self._query(vector, n=fetch, where_document=where_document)
        hits = [
            m for m in candidates if m.scope in allowed_scopes and (allowed_kinds is None or m.kind in allowed_kinds)
        ]
        farthest = candidates[-1].distance if candidates else None
        exhaustive = len(candidates) < fetch or (farthest is not None and farthest > cutoff)
        if len(hits) >= n or exhaustive:
            return _Search(hits, exhaustive=exhaustive)
        return _Search(self._query(vector, n=n, where=_where(scope=scopes, kind=kinds), where_document=where_document))

    def _query(
        self, vector: Any, *, n: int, where: Where | None = None, where_document: WhereDocument | None = None
    ) -> builtins.list[Memory]:
        """One Chroma query: the ``n`` nearest rows that pass the filters, nearest first."""
        result = self._collection.query(
            query_embeddings=[vector],
            n_results=n,
            where=where,
            where_document=where_document,
            include=["documents", "metadatas", "distances"],
        )
        return self._results(result)

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
            _check_scope(scope)
        if kinds is not None:
            kinds = [_check_kind(kind) for kind in kinds]
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
                vector, scopes=scopes, kinds=kinds, n=k, cutoff=reach, where_document=_naming(named)
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
        where = _where(
            kind=[_check_kind(kind)] if kind is not None else None,
            scope=[_check_scope(scope)] if scope is not None else None,
        )
        got = self._collection.get(where=where, include=["documents", "metadatas"])
        documents = got["documents"] or []
        metadatas = got["metadatas"] or []
        memories = [
            _from_record(
                memory_id, documents[i] if i < len(documents) else None, metadatas[i] if i < len(metadatas) else None
            )
            for i, memory_id in enumerate(got["ids"])
        ]
        memories.sort(key=lambda m: (m.created_at, m.id))
        return memories[:limit] if limit is not None else memories

    def scopes(self) -> builtins.list[str]:
        """Every scope that holds a memory: ``shared`` and one ``private:…`` per user who told the bot something."""
        got = self._collection.get(include=["metadatas"])
        return sorted({str((meta or {}).get("scope", SHARED_SCOPE)) for meta in got["metadatas"] or []})

    def get(self, memory_id: str) -> Memory | None:
        got = self._collection.get(ids=[memory_id], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        documents = got["documents"] or []
        metadatas = got["metadatas"] or []
        return _from_record(got["ids"][0], documents[0] if documents else None, metadatas[0] if metadatas else None)

    def count(self, kind: str | None = None, scope: str | None = None) -> int:
        if kind is None and scope is None:
            return self._collection.count()
        where = _where(
            kind=[_check_kind(kind)] if kind is not None else None,
            scope=[_check_scope(scope)] if scope is not None else None,
        )
        return len(self._collection.get(where=where, include=[])["ids"])

    @staticmethod
    def _results(result: Any) -> builtins.list[Memory]:
        ids: builtins.list[str] = (result.get("ids") or [[]])[0]
        documents = (result.get("documents") or [[]])[0] or []
        metadatas = (result.get("metadatas") or [[]])[0] or []
        distances = (result.get("distances") or [[]])[0] or []
        return [
            _from_record(
                memory_id,
                documents[i] if i < len(documents) else None,
                metadatas[i] if i < len(metadatas) else None,
                float(distances[i]) if i < len(distances) else None,
            )
            for i, memory_id in enumerate(ids)
        ]
