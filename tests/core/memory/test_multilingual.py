"""The extraction gate decides the same way in every language: no word list of one language.

A request is told by what the agent did with it (it called tools), a question or an
exclamation by its punctuation; only a turn that may state something costs a model call.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.events import Request
from core.memory.extraction import statements, worth_extracting

LABELLED_SET = Path(__file__).parent / "data" / "recall_labelled.json"


def run(text: str, *, tool: str = "") -> list[dict[str, Any]]:
    """The run's new messages: the agent answered, after calling ``tool`` when one is given."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    if tool:
        call = {"function": {"name": tool, "arguments": {}}}
        messages += [{"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": "…"}]
    return [*messages, {"role": "assistant", "content": "OK."}]


# (text, the tool the agent answered it with, or "" when it answered in words only)
REQUESTS = [
    # English
    ("check the free disk space on db1", "disk_usage"),
    ("please forget that db1 listens on port 5433", "memory_forget"),
    ("restart the billing container on web2 please", "docker_restart"),
    ("who is on call this week?", ""),
    ("thanks, that works now!", ""),
    ("hi", ""),
    # French
    ("Vérifie l'espace disque libre sur db1", "disk_usage"),
    ("oublie que db1 écoute sur le port 5433", "memory_forget"),
    ("redémarre le conteneur billing sur web2 s'il te plaît", "docker_restart"),
    ("qui est d'astreinte cette semaine ?", ""),
    ("Merci, ça marche maintenant !", ""),
    ("salut", ""),
    # German
    ("Prüfe bitte den freien Speicherplatz auf db1", "disk_usage"),
    ("Wer hat diese Woche Bereitschaft?", ""),
    ("Danke, jetzt funktioniert es wieder!", ""),
    # Spanish
    ("¿Quién está de guardia esta semana", ""),
    ("Reinicia el contenedor billing en web2 por favor", "docker_restart"),
]

STATEMENTS = [
    "postgres on db1 listens on port 5433 now",
    "Never restart the billing container during office hours.",
    "Postgres sur db1 écoute maintenant sur le port 5433.",
    "Je préfère les réponses en français.",
    "Bob est d'astreinte cette semaine, Alice la semaine prochaine.",
    "Die Datenbank auf db1 läuft jetzt auf Port 5433.",
    "El servidor de copias de seguridad es backup2 desde el lunes.",
    "Le disque de web1 est lent. Tu peux regarder ?",
]


@pytest.mark.parametrize(("text", "tool"), REQUESTS)
def test_an_ordinary_request_in_any_language_costs_no_extra_model_call(text: str, tool: str) -> None:
    assert not worth_extracting(Request("console", "me", "console", text), run(text, tool=tool)), statements(text)


@pytest.mark.parametrize("text", STATEMENTS)
def test_a_stated_fact_in_any_language_is_worth_asking_the_model(text: str) -> None:
    assert worth_extracting(Request("console", "me", "console", text), run(text)), statements(text)


def test_a_question_after_a_statement_keeps_only_the_statement() -> None:
    assert statements("Le disque de web1 est lent. Tu peux regarder ?") == ["Le disque de web1 est lent."]


def test_the_labelled_recall_set_covers_each_language_pair() -> None:
    """bench/memory.py measures recall quality on this set; each question names a stored fact or none."""
    labelled = json.loads(LABELLED_SET.read_text(encoding="utf-8"))
    pairs = Counter(query["pair"] for query in labelled["queries"])
    assert {pair for pair, n in pairs.items() if n >= 10} == {"en-en", "fr-fr", "fr-en", "en-fr", "en", "fr"}
    for query in labelled["queries"]:
        assert query["fact"] is None or query["fact"] in labelled["facts"], query
        assert (query["fact"] is None) == ("-" not in query["pair"]), query
