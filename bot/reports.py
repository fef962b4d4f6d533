"""Reports: the health package wired to settings and adapters, and `orchestrator report health|daily`.

The builders here are what the scheduler (bot/scheduler.py) runs and what the CLI prints;
both get the same reports. `--post` sends a report to every configured reports channel
through the chat adapters' own `post_report`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from adapters.base import ChatAdapter
from bot.app import open_store_async
from bot.settings import Settings
from core.events import Report
from core.health.checks import CheckConfig, default_checks
from core.health.daily import DEFAULT_NOTEBOOK, DailyAnalysis
from core.health.engine import EngineProbe
from core.health.incidents import IncidentBook
from core.health.metrics import MetricsRecorder, MetricsSampler
from core.health.monitor import HealthMonitor, recorder_history
from core.health.outlets import Destination, publish
from core.llm import LLM, OllamaLLM
from core.store import Store

if TYPE_CHECKING:
    from core.memory.service import MemoryService

log = logging.getLogger(__name__)

POST_TIMEOUT = 120.0  # an adapter that cannot post without its gateway connection must not hang the command
REPORT_FILES = ("daily-*.png", "daily-*.json", "daily-*.ipynb")


# ---- wiring -------------------------------------------------------------------------------
def report_channels(settings: Settings) -> dict[str, str]:
    """platform → reports channel, for the platforms that have one configured."""
    from bot.platforms import PLATFORMS, people

    channels = {platform: people(settings, platform).reports_channel for platform in PLATFORMS}
    return {platform: channel for platform, channel in channels.items() if channel}


def destinations(settings: Settings, adapters: Sequence[ChatAdapter]) -> list[Destination]:
    channels = report_channels(settings)
    out = []
    for adapter in adapters:
        channel = channels.get(adapter.platform)
        if channel:
            out.append(Destination(adapter, channel))
        else:
            log.warning(
                "no reports channel for %s: set reports.%s_channel (ORCHESTRATOR_REPORTS_%s_CHANNEL) to get "
                "health incidents and the daily report there",
                adapter.platform, adapter.platform, adapter.platform.upper(),
            )  # fmt: skip
    return out


def check_config(settings: Settings) -> CheckConfig:
    c = settings.reports.checks
    return CheckConfig(
        disk_percent=c.disk_percent,
        memory_percent=c.memory_percent,
        memory_pressure=c.memory_pressure,
        load_factor=c.load_factor,
        load_minutes=c.load_minutes,
        docker=c.docker,
        restart_limit=c.restart_limit,
        restart_window_minutes=c.restart_window_minutes,
        systemd=c.systemd,
        disabled=frozenset(c.disabled),
    )


def build_recorder(settings: Settings, store: Store) -> MetricsRecorder:
    sampler = MetricsSampler(ignore_mounts=settings.reports.checks.ignore_mounts)
    return MetricsRecorder(store, sampler, retention_days=settings.reports.retention_days)


def build_monitor(
    settings: Settings,
    store: Store,
    recorder: MetricsRecorder,
    dests: Sequence[Destination] = (),
    *,
    engine: EngineProbe | None = None,
    redact: Callable[[str], str] | None = None,
    memory: MemoryService | None = None,
) -> HealthMonitor:
    config = check_config(settings)
    return HealthMonitor(
        book=IncidentBook(store, host=recorder.sampler.host, reopen_window=settings.reports.reopen_minutes * 60),
        checks=default_checks(config, engine=engine),
        probe=recorder.read,
        history=recorder_history(recorder),
        history_window=config.load_minutes * 60,
        destinations=dests,
        redact=redact or (lambda text: text),
        memory=memory,
    )


def reports_dir(settings: Settings) -> Path:
    return settings.data_dir / "reports"


def build_daily(
    settings: Settings,
    llm: LLM | None,
    *,
    redact: Callable[[str], str] | None = None,
    memory: MemoryService | None = None,
) -> DailyAnalysis:
    from core.hosts import Inventory
    from core.tools.docker import DockerEngines
    from core.tools.logs import LogReader

    notebook = Path(settings.reports.daily_notebook) if settings.reports.daily_notebook else DEFAULT_NOTEBOOK
    inventory = Inventory.from_mapping({name: host.model_dump() for name, host in settings.hosts.items()})
    logs = LogReader(inventory, DockerEngines(inventory), timeout=settings.command_timeout)
    return DailyAnalysis(
        db_url=settings.db_url,
        out_dir=reports_dir(settings),
        llm=llm,
        notebook=notebook,
        window_hours=settings.reports.daily_window_hours,
        redact=redact or (lambda text: text),
        memory=memory,
        logs=logs,
    )


async def publish_daily(daily: DailyAnalysis, dests: Sequence[Destination]) -> Report:
    """The daily job: build the report, post it (chart attached) to every reports channel."""
    report = await daily.build()
    if not dests:
        log.warning("daily report built, but no reports channel is configured; chart: %s", report.fields.get("chart"))
    await publish(report, dests)
    return report


def prune_report_files(directory: Path, *, older_than: float) -> int:
    """Charts, figures and executed notebooks older than the retention period (blocking: use a thread)."""
    removed = 0
    for pattern in REPORT_FILES:
        for path in directory.glob(pattern):
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


async def prune(settings: Settings, recorder: MetricsRecorder, *, now: float | None = None) -> tuple[int, int]:
    now = time.time() if now is None else now
    samples = await recorder.prune(now=now)
    cutoff = now - settings.reports.retention_days * 86400
    files = await asyncio.to_thread(prune_report_files, reports_dir(settings), older_than=cutoff)
    return samples, files


# ---- `orchestrator report …` ---------------------------------------------------------------
def print_report(report: Report, out: IO[str]) -> None:
    print(report.title, file=out)
    print("=" * min(len(report.title), 100), file=out)
    print(report.text, file=out)
    for att in report.attachments:
        print(f"\n{att.title or 'attachment'}: {att.path}", file=out)


async def post_to_channels(settings: Settings, report: Report, out: IO[str]) -> int:
    """Build the configured adapters (without serving them) and post; 0 when every channel got it."""
    from bot.app import build_services
    from bot.platforms import adapter_factories
    from core.errors import ConfigurationError

    channels = report_channels(settings)
    if not channels:
        print(
            "not posted: no reports channel is configured (set reports.slack_channel or reports.discord_channel "
            "in orchestrator.toml, or ORCHESTRATOR_REPORTS_SLACK_CHANNEL / ORCHESTRATOR_REPORTS_DISCORD_CHANNEL)",
            file=out,
        )
        return 1
    factories = adapter_factories(channels)
    services = await build_services(settings, platforms=())  # posts only: leaves what a crash left to the bot
    failed = 0
    try:
        for platform, channel in channels.items():
            factory = factories.get(platform)
            if factory is None:
                print(f"{platform}: not posted: the {platform} adapter is not available in this installation "
                      f"(adapters/{platform} cannot be imported)", file=out)  # fmt: skip
                failed += 1
                continue
            try:
                adapter = factory(settings, services)
            except ConfigurationError as exc:
                print(f"{platform}: not posted: {exc}", file=out)
                failed += 1
                continue
            # Some platforms (Discord) post only over a live session: serve just long enough to post.
            serving = (
                None
                if getattr(adapter, "posts_without_serving", True)
                else asyncio.create_task(adapter.serve(), name=f"post-{platform}")
            )
            try:
                async with asyncio.timeout(POST_TIMEOUT):
                    refs = await publish(report, [Destination(adapter, channel)])
            except TimeoutError:
                print(f"{platform}: posting to {channel} timed out after {POST_TIMEOUT:g} s", file=out)
                failed += 1
                continue
            finally:
                if serving is not None:
                    serving.cancel()
                    await asyncio.gather(serving, return_exceptions=True)
                closer: Any = getattr(adapter, "close", None)
                if closer is not None:
                    await closer()
            if platform in refs:
                print(f"{platform}: posted to {channel} ({refs[platform]})", file=out)
            else:
                print(f"{platform}: posting to {channel} failed (see the log above)", file=out)
                failed += 1
    finally:
        await services.close()
    return 0 if not failed else 1


async def health_command(settings: Settings, *, post: bool, out: IO[str] = sys.stdout) -> int:
    """Run every check once and print the result. Opens no incident and asks no model."""
    store = await open_store_async(settings)  # an unusable data dir is one line, not a traceback
    try:
        recorder = build_recorder(settings, store)
        monitor = build_monitor(settings, store, recorder)
        results, report = await monitor.report()
    finally:
        await store.close()
    print_report(report, out)
    status = 0 if all(r.ok or r.inconclusive for r in results) else 1
    if post:
        print(file=out)
        status = max(status, await post_to_channels(settings, report, out))
    return status


async def daily_command(
    settings: Settings, *, post: bool, hours: float | None = None, out: IO[str] = sys.stdout
) -> int:
    store = await open_store_async(settings)  # the analysis reads the health tables: make sure they exist
    await store.close()
    from bot.app import make_policy

    llm = OllamaLLM(
        host=settings.ollama_host,
        model=settings.model,
        timeout=settings.llm_timeout,
        first_token_timeout=settings.llm_first_token_timeout,
        idle_timeout=settings.llm_idle_timeout,
        think=None,
    )
    daily = build_daily(settings, llm, redact=make_policy(settings).redact)
    if hours is not None:
        daily.window_hours = hours
    report = await daily.build()
    print_report(report, out)
    if not post:
        return 0
    print(file=out)
    return await post_to_channels(settings, report, out)
