"""Past incidents as the health code reads them: what failed, what fixed it, whether the fix held."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.events import Answer, ApprovalRequested, ApprovalResolved, Event
from core.memory import texts
from core.memory.model import Memory
from core.memory.sources import short_date


@dataclass(frozen=True, slots=True)
class SimilarIncident:
    """One remembered incident; ``times`` counts how often it was recorded (near-duplicates merge)."""

    memory: Memory
    symptom: str
    cause: str
    fix: str
    outcome: str
    held: bool | None
    audit_ids: tuple[str, ...]
    times: int

    @classmethod
    def from_memory(cls, memory: Memory) -> SimilarIncident:
        extra = memory.extra
        held = extra.get("held")
        return cls(
            memory=memory,
            symptom=str(extra.get("symptom") or memory.text),
            cause=str(extra.get("cause") or ""),
            fix=str(extra.get("fix") or ""),
            outcome=str(extra.get("outcome") or ""),
            held=held if isinstance(held, bool) else None,
            audit_ids=tuple(str(a) for a in extra.get("audit_ids") or ()),
            times=memory.revision,
        )

    @property
    def line(self) -> str:
        """``- 2025-01-03: nginx on web1 returned 502; cause: …; fixed by …; the fix held``"""
        if self.held is True:
            outcome = texts.INCIDENT_HELD
        elif self.held is False:
            outcome = texts.INCIDENT_DID_NOT_HOLD
        elif self.outcome:
            outcome = texts.INCIDENT_OUTCOME.format(outcome=_clause(self.outcome))
        else:
            outcome = texts.INCIDENT_OUTCOME_UNKNOWN
        if self.held is not None and self.outcome:
            outcome += f" ({_clause(self.outcome)})"
        return texts.INCIDENT_LINE.format(
            when=short_date(self.memory.updated_at),
            times=texts.INCIDENT_TIMES.format(count=self.times) if self.times > 1 else "",
            symptom=_clause(self.symptom),
            cause=texts.INCIDENT_CAUSE.format(cause=_clause(self.cause)) if self.cause else "",
            fix=texts.INCIDENT_FIXED_BY.format(fix=_clause(self.fix)) if self.fix else texts.INCIDENT_NO_FIX,
            outcome=outcome,
        )


CAUSE_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What an incident's agent run did, in the words `remember_incident` takes."""

    cause: str
    fix: str
    audit_ids: tuple[str, ...]


def summarize_run(events: Sequence[Event]) -> RunSummary:
    """The agent's explanation (its answer, cut to a few sentences), the approved actions that ran
    ("docker_restart web on web1"), and the links to the audit log (`run:<id>`, `approval:<id>`)."""
    summaries: dict[int, str] = {}
    fixes: list[str] = []
    links: list[str] = []
    cause = ""
    for event in events:
        if isinstance(event, ApprovalRequested):
            summaries[event.approval_id] = event.summary
        elif isinstance(event, ApprovalResolved) and event.approved:
            fixes.append(summaries.get(event.approval_id, ""))
            links.append(f"approval:{event.approval_id}")
        elif isinstance(event, Answer):
            cause = _first_sentences(event.text, CAUSE_CHARS)
    run_ids = sorted({event.run_id for event in events})
    return RunSummary(cause, "; ".join(f for f in fixes if f), (*(f"run:{r}" for r in run_ids), *links))


def _first_sentences(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > limit // 3 else cut.rstrip() + "…"


def _clause(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def format_incidents(incidents: Sequence[SimilarIncident], *, header: str = texts.SIMILAR_HEADER) -> str:
    """The lines for an incident thread or a report; empty when there is nothing to say."""
    if not incidents:
        return ""
    return "\n".join([header, *(incident.line for incident in incidents)])
