"""`orchestrator memory …` as an operator runs it: a real subprocess on a real store (embedded, or the
Chroma server named by CHROMA_HOST/CHROMA_PORT: the `chroma` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.memory.embeddings import MemoryEmbedding, offline_model_name
from core.memory.store import SHARED_SCOPE, MemoryStore, private_scope

if TYPE_CHECKING:
    from tests.support.chroma import ChromaServer

REPO = Path(__file__).resolve().parents[3]
DB1 = "postgres on db1 listens on port 5433"
ONCALL = "the on-call engineer this week is Bob"
FRENCH = "Alice prefers answers in French"


def orchestrator(args: list[str], data: Path, *, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "CHROMA_"))}
    clean.update(PYTHONPATH=str(REPO), ORCHESTRATOR_DATA_DIR=str(data), **env)
    return subprocess.run(
        [sys.executable, "-m", "bot", "memory", *args],
        input=stdin, capture_output=True, text=True, env=clean, cwd=data.parent, timeout=120,
    )  # fmt: skip


@pytest.fixture
def server(chroma: ChromaServer | None) -> dict[str, str]:
    """CHROMA_HOST/CHROMA_PORT for `orchestrator` when the memory is on the Chroma server; {} when embedded."""
    return chroma.env if chroma is not None else {}


@pytest.fixture
def data(tmp_path: Path, offline: MemoryEmbedding, chroma: ChromaServer | None) -> Path:
    """The bot's data directory, with four memories in it (or on the Chroma server)."""
    data = tmp_path / "data"
    where: dict[str, Any] = {"host": chroma.host, "port": chroma.port} if chroma else {"path": data / "memory"}
    with MemoryStore(embedding=offline, **where) as store:
        source = {"platform": "slack", "channel": "C-ops", "user": "U-alice", "user_name": "Alice"}
        store.add(DB1, kind="fact", scope=SHARED_SCOPE, source=source)
        store.add(ONCALL, kind="fact", scope=SHARED_SCOPE, source=source)
        store.add(FRENCH, kind="fact", scope=private_scope("slack", "U-alice"), source=source)
        store.add_incident(symptom="disk / on web2 above 90%", fix="pruned images", scope=SHARED_SCOPE, source={})
    return data


@pytest.mark.parametrize("chroma", ["embedded"], indirect=True)  # the same store code as test_store.py's
def test_list_search_and_forget(data: Path) -> None:
    listed = orchestrator(["list", "--json"], data)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["text"] for r in rows][:3] == [DB1, ONCALL, FRENCH] and rows[3]["kind"] == "incident"
    by_text = {r["text"]: r for r in rows}
    assert by_text[DB1]["source"]["user_name"] == "Alice" and by_text[DB1]["created_at"]

    shown = orchestrator(["list", "--kind", "fact", "--user", "slack:U-bob"], data)
    assert shown.returncode == 0, shown.stderr
    assert DB1 in shown.stdout and FRENCH not in shown.stdout and "disk /" not in shown.stdout
    assert "said by Alice (slack user U-alice) in channel C-ops on slack" in shown.stdout
    assert "4 memories at" in shown.stderr and "use-multilingual-v3" in shown.stderr

    found = orchestrator(["search", "which port does the database on db1 use?"], data)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[1].strip() == DB1

    gone = orchestrator(["forget", by_text[ONCALL]["id"]], data)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == f"forgot: {ONCALL}  ({by_text[ONCALL]['id']})"
    by_query = orchestrator(["forget", "--query", "the postgres port on db1"], data)
    assert by_query.returncode == 0 and DB1 in by_query.stdout
    assert [r["text"] for r in json.loads(orchestrator(["list", "--json"], data).stdout)] == [
        FRENCH,
        "disk / on web2 above 90%. Fix: pruned images.",
    ]


def test_a_changed_embedding_model_is_refused_with_the_way_out(data: Path, server: dict[str, str]) -> None:
    refused = orchestrator(["list"], data, ORCHESTRATOR_EMBEDDING="minilm", **server)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert f"'{offline_model_name()}'" in refused.stderr and "'all-MiniLM-L6-v2'" in refused.stderr
    assert "orchestrator memory reindex" in refused.stderr and "nothing is lost" in refused.stderr

    # `orchestrator memory reindex`: every memory re-embedded with the configured model, a progress line.
    reindexed = orchestrator(["reindex"], data, ORCHESTRATOR_EMBEDDING="minilm", **server)
    assert reindexed.returncode == 0, reindexed.stderr
    assert "re-embedding 4 memories" in reindexed.stderr and f"built with {offline_model_name()}" in reindexed.stderr
    assert "4/4 memories re-embedded (100%)" in reindexed.stderr  # not a terminal: a line per tenth
    assert reindexed.stdout.startswith("re-embedded 4 memories") and "with all-MiniLM-L6-v2" in reindexed.stdout
    listed = orchestrator(["list"], data, ORCHESTRATOR_EMBEDDING="minilm", **server)
    assert listed.returncode == 0 and DB1 in listed.stdout and "4 memories at" in listed.stderr
    again = orchestrator(["reindex"], data, ORCHESTRATOR_EMBEDDING="minilm", **server)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    kept = orchestrator(["reset"], data, stdin="no\n", ORCHESTRATOR_EMBEDDING="ollama", **server)
    assert kept.returncode == 1 and "deletes all 4 memories" in kept.stdout
    reset = orchestrator(["reset", "--yes"], data, ORCHESTRATOR_EMBEDDING="ollama", **server)
    assert reset.returncode == 0, reset.stderr
    assert "deleted 4 memories" in reset.stdout and "ollama:nomic-embed-text" in reset.stdout
    after = orchestrator(["list"], data, ORCHESTRATOR_EMBEDDING="ollama", **server)
    assert after.returncode == 0 and after.stdout.strip() == "no memories"
    assert "embedding model ollama:nomic-embed-text" in after.stderr
