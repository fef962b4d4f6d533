"""`orchestrator run slack|discord|all`: build the services once, serve every adapter."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from adapters.base import ChatAdapter
from bot.app import Services, build_services
from bot.settings import Settings

log = logging.getLogger(__name__)

AdapterFactory = Callable[[Settings, Services], ChatAdapter]


class ConfigurationError(Exception):
    """A platform was asked for but is not configured; the message says how to fix it."""


def adapter_factories() -> dict[str, AdapterFactory]:
    factories: dict[str, AdapterFactory] = {}
    try:
        from bot.slack_main import make_slack_adapter

        factories["slack"] = make_slack_adapter
    except ImportError:  # pragma: no cover - only while an adapter is being developed
        pass
    try:
        from bot.discord_main import make_discord_adapter

        factories["discord"] = make_discord_adapter
    except ImportError:  # pragma: no cover
        pass
    return factories


async def serve(settings: Settings, platforms: Sequence[str]) -> int:
    factories = adapter_factories()
    services = await build_services(settings)
    adapters: list[ChatAdapter] = []
    try:
        for name in platforms:
            if name not in factories:
                raise ConfigurationError(f"the {name} adapter is not available in this installation")
            adapters.append(factories[name](settings, services))
        for adapter in adapters:
            await adapter.announce_expired([a for a in services.expired_on_start if a.platform == adapter.platform])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        tasks = [asyncio.create_task(a.serve(), name=f"serve-{a.platform}") for a in adapters]
        extra = [asyncio.create_task(job, name="extra") for job in _extra_jobs(settings, services, adapters)]
        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in [*tasks, *extra, stopper]:
            t.cancel()
        await asyncio.gather(*tasks, *extra, stopper, return_exceptions=True)
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("%s stopped: %s", t.get_name(), exc)
                raise exc  # type: ignore[misc]
        return 0
    finally:
        await services.close()


def _extra_jobs(settings: Settings, services: Services, adapters: list[ChatAdapter]) -> list:  # type: ignore[type-arg]
    """Long-running companions of the adapters: the scheduler (metrics, health checks, daily report).
    Every process starts one; the database lock lets exactly one of them run the jobs."""
    if not settings.reports.scheduler:
        log.info("the scheduler is off (reports.scheduler = false)")
        return []
    from bot.scheduler import run_scheduler

    return [run_scheduler(settings, services, adapters)]
