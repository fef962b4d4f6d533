"""Typed reports built from check results and incidents; adapters render and post them."""

from __future__ import annotations

from collections.abc import Sequence

from core.events import Report
from core.health import texts
from core.health.checks import CheckResult
from core.health.incidents import figures_of
from core.health.models import Incident


def health_report(host: str, results: Sequence[CheckResult]) -> Report:
    """Every check at a glance (`orchestrator report health`)."""
    failing = [r for r in results if not r.ok and not r.inconclusive]
    verdict = (
        texts.HEALTH_FAILING.format(failing=len(failing), count=len(results))
        if failing
        else texts.HEALTH_ALL_OK.format(count=len(results))
    )
    return Report(
        kind="health",
        title=texts.HEALTH_TITLE.format(host=host, verdict=verdict),
        text=texts.health_text(results),
        fields={"host": host, "failing": [r.key for r in failing], "results": [
            {"key": r.key, "ok": r.ok, "summary": r.summary, "inconclusive": r.inconclusive} for r in results
        ]},
    )  # fmt: skip


def incident_report(incident: Incident, *, agent: bool) -> Report:
    """The one message an incident gets in the reports channel; everything else goes in its thread."""
    figures = figures_of(incident)
    text = texts.incident_text(incident.summary, figures, opened_at=incident.opened_at, agent=agent)
    return Report(
        kind="incident",
        title=texts.INCIDENT_TITLE.format(host=incident.host, key=incident.key),
        text=text,
        fields={"incident_id": incident.id, "key": incident.key, "check": incident.check_name, **figures},
    )
