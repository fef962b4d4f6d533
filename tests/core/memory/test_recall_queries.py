"""What one recall asks of Chroma and of the embedding model: real embedded Chroma, the real offline model.

Each Chroma query of a recall is recorded (its size, filters and what it includes);
the embedding model counts what it embeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, Embeddings

from core.memory.embeddings import MemoryEmbedding, Thresholds
from core.memory.store import SHARED_SCOPE, MemoryStore, NewMemory, private_scope

DB7 = "clients reach the db7 postgres through pgbouncer on 6543"
QUESTION = "which port does postgres on db7 use?"
ALICE = private_scope("slack", "U-alice")
ALICES = "db7 is my test box, reboot it whenever"
BOB = private_scope("slack", "U-bob")


@dataclass
class CountingEmbedding:
    """The offline model, counting the texts it embeds for queries and for documents."""

    inner: MemoryEmbedding
    queries: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def thresholds(self) -> Thresholds:
        return self.inner.thresholds

    def __call__(self, input: Documents) -> Embeddings:
        self.documents.extend(input)
        return self.inner(input)

    def embed_query(self, input: Documents) -> Embeddings:
        self.queries.extend(input)
        return self.inner.embed_query(input)


@pytest.fixture
def embedding(offline: MemoryEmbedding) -> CountingEmbedding:
    return CountingEmbedding(offline)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every Chroma query made from now on: its keyword arguments, and the ``texts`` it returned."""
    made: list[dict[str, Any]] = []
    query = Collection.query

    def recorded(self: Collection, **kwargs: Any) -> Any:
        result = query(self, **kwargs)
        made.append({**kwargs, "texts": (result["documents"] or [[]])[0]})
        return result

    monkeypatch.setattr(Collection, "query", recorded)
    return made


@pytest.fixture
def hosts(new_store: Callable[..., MemoryStore], embedding: CountingEmbedding) -> MemoryStore:
    """Sixty hosts' postgres ports, and db7's pgbouncer, which the dense search ranks far down."""
    store = new_store(embedding=embedding)
    facts = [f"postgres on db{n} listens on port {5400 + n}" for n in range(1, 61) if n != 7]
    store.add_many([NewMemory(text, kind="fact", scope=SHARED_SCOPE) for text in [*facts, DB7]])
    store.add(ALICES, kind="fact", scope=ALICE, source={})
    embedding.queries.clear()
    embedding.documents.clear()
    return store


def test_a_question_naming_no_host_is_one_query_of_few_rows(
    hosts: MemoryStore, queries: list[dict[str, Any]], embedding: CountingEmbedding
) -> None:
    hits = hosts.recall("which port does postgres listen on?", scopes=[SHARED_SCOPE], k=5)
    assert len(hits) == 5
    [query] = queries
    assert query["n_results"] <= 20 and query["where"] is None and query["where_document"] is None
    assert sorted(query["include"]) == ["distances", "documents", "metadatas"]  # never the vectors
    assert embedding.queries == ["which port does postgres listen on?"] and embedding.documents == []


def test_a_host_the_nearest_memories_already_name_is_one_query(
    hosts: MemoryStore, queries: list[dict[str, Any]]
) -> None:
    hits = hosts.recall("which port does postgres on db42 use?", scopes=[SHARED_SCOPE], k=5, identifier_leeway=True)
    assert hits[0].text == "postgres on db42 listens on port 5442"
    assert len(queries) == 1


def test_a_host_the_nearest_memories_miss_is_looked_up_by_name_once(
    hosts: MemoryStore, queries: list[dict[str, Any]], embedding: CountingEmbedding
) -> None:
    hits = hosts.recall(QUESTION, scopes=[SHARED_SCOPE], k=3, identifier_leeway=True)
    # Measured: db7's memory at 0.40, behind all 59 other hosts' facts; naming db7 puts it first.
    assert hits[0].text == DB7
    assert len(hits) == 3 and all(h.distance is not None for h in hits[1:])
    first, by_name = queries
    assert first["where_document"] is None and first["texts"] and DB7 not in first["texts"]
    assert by_name["where_document"] == {"$or": [{"$contains": "DB7"}, {"$contains": "db7"}]}
    assert DB7 in by_name["texts"] and all(q["n_results"] <= 20 for q in queries)
    assert embedding.queries == [QUESTION]  # one embedding serves both queries


def test_the_lookup_by_name_never_returns_another_persons_private_memory(
    hosts: MemoryStore, queries: list[dict[str, Any]]
) -> None:
    for scopes in ([SHARED_SCOPE], [SHARED_SCOPE, BOB], [BOB]):
        queries.clear()
        found = hosts.recall(QUESTION, scopes=scopes, k=5, identifier_leeway=True)
        assert all(h.scope in scopes for h in found), scopes
        assert ALICES not in [h.text for h in found]
        # The lookup by name ran and met Alice's memory (0.62 away, naming db7): the store left it out.
        assert any(ALICES in q["texts"] for q in queries if q["where_document"] is not None), scopes
    mine = hosts.recall("can I reboot db7?", scopes=[SHARED_SCOPE, ALICE], identifier_leeway=True)
    assert mine[0].text == ALICES and mine[0].scope == ALICE


def test_a_host_nobody_mentioned_falls_back_to_the_nearest(hosts: MemoryStore, queries: list[dict[str, Any]]) -> None:
    hits = hosts.recall("which port does postgres on db99 use?", scopes=[SHARED_SCOPE], k=3, identifier_leeway=True)
    assert len(hits) == 3 and "db99" not in " ".join(h.text for h in hits)
    assert len(queries) == 2  # the lookup by name found nothing: it had to be asked


def test_a_small_store_is_seen_whole_by_the_first_query(store: MemoryStore, queries: list[dict[str, Any]]) -> None:
    store.add("postgres on db1 listens on port 5433", kind="fact", scope=SHARED_SCOPE, source={})
    store.add("web1 has 16 GB of RAM", kind="fact", scope=SHARED_SCOPE, source={})
    queries.clear()
    hits = store.recall("what do you remember about db1?", scopes=[SHARED_SCOPE], identifier_leeway=True)
    assert [h.text for h in hits] == ["postgres on db1 listens on port 5433"]  # 0.67 away: the leeway
    assert store.recall("is nas9 full?", scopes=[SHARED_SCOPE], identifier_leeway=True) == []
    assert len(queries) == 2  # one each: nothing beyond the first query's reach could come back
