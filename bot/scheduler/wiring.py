"""The scheduler as part of `orchestrator run …`: its jobs wired to the services, its reports in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from adapters.base import ChatAdapter
from bot.app import Services
from bot.scheduler.host import SchedulerHost
from bot.scheduler.jobs import job_specs
from bot.settings import Settings
from core.events import Report
from core.health.checks import CheckResult
from core.health.lock import LeaseLock
from core.health.monitor import PassOutcome
from core.health.outlets import Destination
from core.health.report import incident_report

# Every part of the scheduler logs as "bot.scheduler", the name operators' log filters know.
log = logging.getLogger("bot.scheduler")


CheckObserver = Callable[[Sequence[CheckResult]], None]


async def run_scheduler(
    settings: Settings,
    services: Services,
    adapters: Sequence[ChatAdapter],
    *,
    dests: Sequence[Destination] | None = None,
    on_checks: CheckObserver | None = None,
) -> None:
    """The scheduler as a companion of the chat adapters (bot.runner._extra_jobs), or alone
    (`run scheduler`: `dests` are then post-only outlets). Every report also goes to the log;
    `on_checks` sees each pass's results (the service endpoint's gauges)."""
    from bot.reports import build_daily, build_monitor, build_recorder, destinations, prune, publish_daily

    aps = logging.getLogger("apscheduler")
    if aps.level == logging.NOTSET:  # "Running job …" twice a minute drowns the bot's own INFO lines
        aps.setLevel(logging.WARNING)
    if dests is None:
        dests = destinations(settings, adapters)
    recorder = build_recorder(settings, services.store)
    memory = services.memory
    monitor = build_monitor(settings, services.store, recorder, dests, redact=services.policy.redact, memory=memory)
    daily = build_daily(settings, services.llm, redact=services.policy.redact, memory=memory)

    async def health_pass() -> None:
        outcome = await monitor.run_pass()
        if on_checks is not None:
            on_checks(outcome.results)
        log_pass(outcome)

    async def daily_report() -> None:
        log_report(await publish_daily(daily, dests))

    async def weekly_backup() -> None:
        from bot.app import backup_engine
        from bot.backups import scheduled_backup

        engine = backup_engine(settings)
        log_report(await scheduled_backup(settings, engine, services.store, dests, redact=services.policy.redact))

    async def retention() -> None:
        samples, files = await prune(settings, recorder)
        log.info("retention: removed %d samples and %d report files", samples, files)

    identity = services.gate.identity
    host = SchedulerHost(
        db_url=settings.db_url,
        lock=LeaseLock(services.store, holder_gone=identity.is_dead),
        owner=identity.owner,
        specs=job_specs(settings.reports, backup_cron=settings.backup_cron),
        runners={
            "metrics": recorder.record,
            "health": health_pass,
            "daily": daily_report,
            "prune": retention,
            "backup": weekly_backup,
        },
        lease=settings.reports.scheduler_lease,
        timezone=settings.reports.timezone,
        misfire_grace_time=settings.reports.misfire_grace,
    )
    try:
        await host.run()
    finally:
        await monitor.aclose()


def log_report(report: Report, *, level: int = logging.INFO) -> None:
    """A report in the log: one line that says what it is (and where its files are), then its text."""
    files = ", ".join(a.path for a in report.attachments)
    log.log(level, "%s report: %s%s", report.kind, report.title, f" ({files})" if files else "")
    log.info("%s", "\n".join(f"    {line}" if line.strip() else "" for line in report.text.splitlines()))


def log_pass(outcome: PassOutcome) -> None:
    """What a health pass changed, in the log: each incident opened or reopened (a warning, with its
    text) and each one closed. A pass that changes nothing says nothing."""
    for incident in outcome.opened:
        log_report(incident_report(incident, agent=False), level=logging.WARNING)
    for incident in outcome.reopened:
        log.warning("incident reopened: %s: %s", incident.key, incident.summary)
    for incident in outcome.closed:
        log.info("incident closed (%s): %s: %s", incident.resolution, incident.key, incident.summary)
