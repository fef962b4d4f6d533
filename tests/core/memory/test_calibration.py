"""Each offline engine's recall cut-off holds on the labelled set, through the real store.

The cut-offs come from `bench/memory.py --calibrate` (fitted on the "fit" questions of
data/recall_labelled.json, scored on the "check" ones); these tests hold the shipped values
to what was measured, so a change of model, cut-off or ranking that loses questions fails.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from core.memory.embeddings import MemoryEmbedding, MiniLMEmbedding, MultilingualEmbedding
from core.memory.store import SHARED_SCOPE, MemoryStore, NewMemory
from tests.core.memory.conftest import needs_e5

LABELLED = json.loads((Path(__file__).parent / "data" / "recall_labelled.json").read_text(encoding="utf-8"))
FACTS: dict[str, str] = LABELLED["facts"]
QUERIES: list[dict[str, Any]] = LABELLED["queries"]


def scores(embedding: MemoryEmbedding, tmp_path: Path) -> tuple[dict[str, list[bool]], list[str]]:
    """Per language pair, whether each question got its right fact first (or nothing); and the misses."""
    hits: dict[str, list[bool]] = defaultdict(list)
    misses: list[str] = []
    with MemoryStore(tmp_path / "memory", embedding=embedding) as store:
        store.add_many([NewMemory(text, kind="fact", scope=SHARED_SCOPE) for text in FACTS.values()])
        for query in QUERIES:
            found = store.recall(query["text"], scopes=[SHARED_SCOPE], k=6, identifier_leeway=True)
            wanted = FACTS.get(query["fact"] or "")
            ok = not found if wanted is None else bool(found) and found[0].text == wanted
            hits[query["pair"]].append(ok)
            if not ok:
                misses.append(f"{query['pair']}: {query['text']} -> {[m.text for m in found[:2]]}")
    return hits, misses


def rate(oks: list[bool]) -> float:
    return sum(oks) / len(oks)


@needs_e5
def test_the_multilingual_default_finds_facts_across_french_and_english(
    offline: MemoryEmbedding, tmp_path: Path
) -> None:
    hits, misses = scores(offline, tmp_path)
    assert rate(hits["en-en"]) >= 0.95 and rate(hits["fr-fr"]) >= 0.95, misses  # the pair: 23/23 and 22/23
    assert rate(hits["fr-en"]) >= 0.90 and rate(hits["en-fr"]) >= 0.90, misses
    assert rate(hits["en"]) >= 0.95 and rate(hits["fr"]) >= 0.95, misses  # unrelated questions: nothing


def test_use_alone_holds_its_figures(use: MultilingualEmbedding, tmp_path: Path) -> None:
    """ORCHESTRATOR_EMBEDDING=use, and what offline runs where e5 cannot: all targets but French to French."""
    hits, misses = scores(use, tmp_path)
    assert rate(hits["en-en"]) >= 0.95, misses
    assert rate(hits["fr-en"]) >= 0.90 and rate(hits["en-fr"]) >= 0.90, misses
    assert rate(hits["en"]) >= 0.95 and rate(hits["fr"]) >= 0.95, misses
    # Measured 21/23: below the 95 % target (docs/memory.md says so); no worse than that.
    assert sum(hits["fr-fr"]) >= 21, misses


def test_close_facts_rank_by_the_host_asked_about(offline: MemoryEmbedding, tmp_path: Path) -> None:
    """Two facts differing in one host (db1/db2, db3/db4): each question gets its own first."""
    _, misses = scores(offline, tmp_path)
    close = {"pg_port_en", "pg_staging_en", "mysql_fr", "mysql_test_fr"}
    about_close = [q["text"] for q in QUERIES if q["fact"] in close]
    assert len(about_close) >= 8
    assert not [miss for miss in misses if any(text in miss for text in about_close)]


@pytest.mark.parametrize("split", ["fit", "check"])
def test_the_english_model_still_works_in_english(minilm: MiniLMEmbedding, tmp_path: Path, split: str) -> None:
    """ORCHESTRATOR_EMBEDDING=minilm, calibrated on English: English questions find their facts, and
    English questions about nothing stored return nothing, in the questions the fit saw and the others."""
    with MemoryStore(tmp_path / "memory", embedding=minilm) as store:
        store.add_many([NewMemory(text, kind="fact", scope=SHARED_SCOPE) for text in FACTS.values()])
        english = [q for q in QUERIES if q["pair"] in ("en-en", "en") and q["split"] == split]
        right = 0
        for query in english:
            found = store.recall(query["text"], scopes=[SHARED_SCOPE], k=6, identifier_leeway=True)
            wanted = FACTS.get(query["fact"] or "")
            right += not found if wanted is None else bool(found) and found[0].text == wanted
    assert right / len(english) >= 0.95
