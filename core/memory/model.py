"""What a memory is: its kinds, its scopes, the item a caller adds, and the store's errors.

A scope is ``shared`` (what was said in a channel) or ``private:<platform>:<user>``
(what a user said in a DM).  Nothing here touches Chroma: :mod:`core.memory.chroma`
turns these into rows, :mod:`core.memory.store` decides what is written and read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from core.errors import InvalidArgument, RuntimeFailure

__all__ = [
    "INCIDENT_FIELDS",
    "KINDS",
    "SHARED_SCOPE",
    "SYSTEM_AUTHOR",
    "EmbeddingModelMismatch",
    "Kind",
    "Memory",
    "MemoryStoreError",
    "MergeRefused",
    "NewMemory",
    "check_kind",
    "check_scope",
    "embedded_text",
    "incident_text",
    "private_scope",
]

Kind = Literal["fact", "incident", "summary"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
SHARED_SCOPE: Final = "shared"
# The author of what no person wrote: incidents, scheduled checks.  A person's is "platform:user".
SYSTEM_AUTHOR: Final = "system"
INCIDENT_FIELDS: Final = ("symptom", "cause", "fix", "outcome", "audit_ids")

_PRIVATE_SCOPE_RE: Final = re.compile(r"^private:[^:\s]+:\S+$")


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


def private_scope(platform: str, user: str) -> str:
    """The scope of what ``user`` told the bot in a DM on ``platform``."""
    if not platform or not user or ":" in platform or any(c.isspace() for c in platform + user):
        raise InvalidArgument(f"invalid platform/user for a private scope: {platform!r}, {user!r}")
    return f"private:{platform}:{user}"


def check_scope(scope: str) -> str:
    """``scope`` if it is ``shared`` or ``private:<platform>:<user>``; InvalidArgument otherwise."""
    if scope != SHARED_SCOPE and not _PRIVATE_SCOPE_RE.match(scope):
        raise InvalidArgument(f"invalid scope {scope!r}: expected 'shared' or 'private:<platform>:<user>'")
    return scope


def check_kind(kind: str) -> Kind:
    """``kind`` if it is one of :data:`KINDS`; InvalidArgument otherwise."""
    if kind not in KINDS:
        raise InvalidArgument(f"invalid memory kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def incident_text(*, symptom: str, cause: str = "", fix: str = "", outcome: str = "") -> str:
    """The text an incident is embedded and shown as: the symptom leads."""
    parts = [symptom.strip().rstrip(".") + "."]
    for label, value in (("Cause", cause), ("Fix", fix), ("Outcome", outcome)):
        if value.strip():
            parts.append(f"{label}: {value.strip().rstrip('.')}.")
    return " ".join(parts)


def embedded_text(text: str, kind: str, extra: Mapping[str, Any] | None) -> str:
    """What a memory's vector is made from: its text, or for an incident its symptom.

    A later failure is described the way the symptom was ("web1 shows bad gateway
    errors"), not with the cause and fix, which only dilute the vector (0.55 from
    the symptom, 0.71 from the whole incident, with the multilingual model).
    """
    symptom = (extra or {}).get("symptom") if kind == "incident" else None
    return symptom.strip() if isinstance(symptom, str) and symptom.strip() else text
