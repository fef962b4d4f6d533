"""The Chroma side of the memory store: clients, the collection, rows and filters.

The collection records the embedding model it was built with; opening it with
another model raises :class:`EmbeddingModelMismatch` unless asked to re-embed.
Re-embedding copies every memory, with new vectors, into a side collection;
only a complete copy replaces the original, by two renames.  Whenever the
process dies, the next opener finds either the original under its name (the
copy is dropped and made again) or, between the renames, the original under
``<name>__previous``, which :func:`open_collection` puts back.  Nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Collection as Collection_
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import GetResult, Metadata, Where, WhereDocument
from chromadb.base_types import InclusionExclusionOperator, LiteralValue
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from core.errors import InvalidArgument
from core.memory.embeddings import MemoryEmbedding
from core.memory.model import (
    KINDS,
    SHARED_SCOPE,
    EmbeddingModelMismatch,
    Memory,
    MemoryStoreError,
    embedded_text,
)

__all__ = [
    "DEFAULT_COLLECTION",
    "CollectionInfo",
    "Progress",
    "close_client",
    "connect",
    "delete_collection",
    "document_naming",
    "drop_collection",
    "inspect_collection",
    "memories_from_get",
    "memories_from_query",
    "memory_from_record",
    "memory_metadata",
    "open_collection",
    "query_collection",
    "where_fields",
]

DEFAULT_COLLECTION: Final = "orchestrator_memories"

# progress(done, total, the model that built the collection), after each re-embedded batch.
Progress = Callable[[int, int, str], None]

# What chromadb raises for a collection that does not exist (NotFoundError, or ValueError in some versions).
_NO_SUCH_COLLECTION: Final = (NotFoundError, ValueError)
_META_MODEL: Final = "embedding_model"
_REINDEX_BATCH: Final = 256  # memories re-embedded and written at a time
_META_FORMAT: Final = "memory_format"
_FORMAT_VERSION: Final = 1
# How many candidates HNSW keeps while searching. Chroma's 100 can leave a memory unreachable: one
# on-call fact among 300 near-identical "server webN has ... GB of RAM" facts, added last, was never
# returned to the question it answers (its nearest). 300 finds it; measured in bench/memory.py.
# A collection made with less is raised on opening (chromadb applies it from the next start).
_EF_SEARCH: Final = 300
_SOURCE_PREFIX: Final = "src_"
_META_AUTHOR: Final = "author"
_META_AUTHOR_NAME: Final = "author_name"


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What :meth:`MemoryStore.inspect` finds without opening the store: for ``orchestrator memory reset``."""

    location: str
    exists: bool
    count: int = 0
    model: str | None = None


# -- clients ------------------------------------------------------------------


def connect(path: str | Path | None, *, host: str | None, port: int) -> tuple[ClientAPI, str]:
    """A client for the store, and where it is: a Chroma server when ``host`` is given, else ``path``."""
    settings = Settings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, settings=settings), f"http://{host}:{port}"
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings), str(path)
    raise InvalidArgument("MemoryStore needs a data directory (path) or a Chroma server (host)")


def close_client(client: ClientAPI) -> None:
    """Release the client (the embedded database's files, for the next opener)."""
    close = getattr(client, "close", None)
    if callable(close):
        close()


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
        close_client(client)


def inspect_collection(path: str | Path | None, *, host: str | None, port: int, collection: str) -> CollectionInfo:
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


def drop_collection(path: str | Path | None, *, host: str | None, port: int, collection: str) -> int:
    """Delete the collection (and what an interrupted re-embedding left) whatever model built it;
    returns how many memories it held."""
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


def delete_collection(client: ClientAPI, name: str) -> None:
    """Delete the collection ``name``, if there is one."""
    try:
        client.delete_collection(name)
    except _NO_SUCH_COLLECTION:
        pass


# -- opening and re-embedding ---------------------------------------------------


def open_collection(
    client: ClientAPI,
    name: str,
    embedding: MemoryEmbedding,
    *,
    location: str,
    reindex: bool = False,
    progress: Progress | None = None,
) -> tuple[Collection, int | None]:
    """The collection, made when missing, and how many memories opening re-embedded (None: none).

    One built by another model is re-embedded when ``reindex``, refused otherwise.
    """
    model = embedding.model_name
    _finish_swap(client, name)
    reindexed: int | None = None
    try:
        collection = client.get_collection(name, embedding_function=None)
    except _NO_SUCH_COLLECTION:
        collection = client.get_or_create_collection(
            name,
            metadata={_META_MODEL: model, _META_FORMAT: _FORMAT_VERSION},
            configuration={"hnsw": {"space": "cosine", "ef_search": _EF_SEARCH}},
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
    if stored != model and reindex:
        collection, reindexed = _reembed(client, name, collection, embedding, location=location, progress=progress)
    elif stored != model:
        raise EmbeddingModelMismatch(collection=name, stored=str(stored), requested=model, location=location)
    config = collection.configuration_json or {}
    index = config.get("hnsw") or config.get("spann") or {}
    space = index.get("space") if isinstance(index, Mapping) else None
    if space not in (None, "cosine"):
        raise MemoryStoreError(
            f"memory collection {name!r} at {location} uses the {space!r} "
            f"distance, not 'cosine': run `orchestrator memory reset` or use a new data directory"
        )
    hnsw = config.get("hnsw")
    if isinstance(hnsw, Mapping) and int(hnsw.get("ef_search") or 0) < _EF_SEARCH:
        collection.modify(configuration={"hnsw": {"ef_search": _EF_SEARCH}})
    return collection, reindexed


def _side(name: str, suffix: str) -> str:
    return f"{name}__{suffix}"


def _get(client: ClientAPI, name: str) -> Collection | None:
    try:
        return client.get_collection(name, embedding_function=None)
    except _NO_SUCH_COLLECTION:
        return None


def _finish_swap(client: ClientAPI, name: str) -> None:
    """Undo what an interrupted re-embedding left: the original back under its name, no side copies."""
    previous = _get(client, _side(name, "previous"))
    if previous is None:
        return
    if _get(client, name) is None:  # died between the two renames
        previous.modify(name=name)
    else:  # died after them: the re-embedded copy is in place
        delete_collection(client, _side(name, "previous"))


def _reembed(
    client: ClientAPI,
    name: str,
    old: Collection,
    embedding: MemoryEmbedding,
    *,
    location: str,
    progress: Progress | None,
) -> tuple[Collection, int]:
    """Every memory of ``old``, with vectors of ``embedding``, in place of ``old``; and how many."""
    model = embedding.model_name
    total = old.count()
    built_with = str((old.metadata or {}).get(_META_MODEL) or "an unknown model")
    delete_collection(client, _side(name, "reindex"))
    copy = client.create_collection(
        _side(name, "reindex"),
        metadata={**(old.metadata or {}), _META_MODEL: model, _META_FORMAT: _FORMAT_VERSION},
        configuration={"hnsw": {"space": "cosine", "ef_search": _EF_SEARCH}},
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
            vectors = embedding([_embedded_record(doc, meta) for doc, meta in zip(documents, metadatas, strict=True)])
            copy.add(ids=ids, embeddings=vectors, documents=documents, metadatas=metadatas)
            done += len(ids)
            if progress is not None:
                progress(done, total, built_with)
    except BaseException:
        delete_collection(client, _side(name, "reindex"))  # the original is untouched
        raise
    if copy.count() != old.count():
        delete_collection(client, _side(name, "reindex"))
        raise MemoryStoreError(
            f"re-embedding {location} copied {copy.count()} of {old.count()} memories "
            f"(were some added meanwhile?); the store is unchanged: run it again"
        )
    old.modify(name=_side(name, "previous"))
    copy.modify(name=name)
    delete_collection(client, _side(name, "previous"))
    return copy, done


def _embedded_record(document: str, meta: Mapping[str, Any] | None) -> str:
    """:func:`embedded_text` for a stored row (its document and metadata)."""
    meta = meta or {}
    try:
        extra = json.loads(str(meta.get("extra") or "{}"))
    except ValueError:
        extra = {}
    return embedded_text(document, str(meta.get("kind") or ""), extra if isinstance(extra, dict) else {})


# -- rows -----------------------------------------------------------------------


def memory_metadata(memory: Memory) -> Metadata:
    """The row metadata ``memory`` is written with (its source under ``src_`` keys)."""
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


def memory_from_record(
    memory_id: str, text: str | None, meta: Mapping[str, Any] | None, distance: float | None = None
) -> Memory:
    """The memory a stored row holds (rows of older formats read with defaults)."""
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


def memories_from_get(got: GetResult) -> list[Memory]:
    """The memories of a ``collection.get`` answer, in its order."""
    documents = got["documents"] or []
    metadatas = got["metadatas"] or []
    return [
        memory_from_record(
            memory_id, documents[i] if i < len(documents) else None, metadatas[i] if i < len(metadatas) else None
        )
        for i, memory_id in enumerate(got["ids"])
    ]


def memories_from_query(result: Any) -> list[Memory]:
    """The memories of a one-vector ``collection.query`` answer, nearest first, with their distances."""
    ids: list[str] = (result.get("ids") or [[]])[0]
    documents = (result.get("documents") or [[]])[0] or []
    metadatas = (result.get("metadatas") or [[]])[0] or []
    distances = (result.get("distances") or [[]])[0] or []
    return [
        memory_from_record(
            memory_id,
            documents[i] if i < len(documents) else None,
            metadatas[i] if i < len(metadatas) else None,
            float(distances[i]) if i < len(distances) else None,
        )
        for i, memory_id in enumerate(ids)
    ]


# -- queries --------------------------------------------------------------------


def query_collection(
    collection: Collection,
    vector: Any,
    *,
    n: int,
    where: Where | None = None,
    where_document: WhereDocument | None = None,
) -> list[Memory]:
    """One Chroma query: the ``n`` nearest rows that pass the filters, nearest first."""
    result = collection.query(
        query_embeddings=[vector],
        n_results=n,
        where=where,
        where_document=where_document,
        include=["documents", "metadatas", "distances"],
    )
    return memories_from_query(result)


def where_fields(**fields: Sequence[str] | None) -> Where | None:
    """A metadata filter: each field given is one of its values (fields left None are not filtered)."""
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


def document_naming(identifiers: Collection_[str]) -> WhereDocument:
    """A document filter for the texts that contain one of ``identifiers`` (Chroma's is case-sensitive)."""
    needles = sorted({variant for name in identifiers for variant in (name, name.upper())})
    contains: list[WhereDocument] = [{"$contains": needle} for needle in needles]
    return contains[0] if len(contains) == 1 else {"$or": contains}
