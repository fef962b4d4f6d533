"""`orchestrator run slack|discord|all`: build the services once, serve every adapter."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from adapters.base import ChatAdapter
from bot.app import Services, build_services
from bot.settings import Settings
from core.errors import ConfigurationError as ConfigurationError  # re-exported: the platforms raise it too
from core.runs import RESTARTED

log = logging.getLogger(__name__)

STOP_GRACE = 8.0  # seconds the runs in flight get, on SIGTERM, to post their last line (docker stop waits 10)

AdapterFactory = Callable[[Settings, Services], ChatAdapter]
PLATFORMS = ("slack", "discord")


def adapter_factories(platforms: Iterable[str] = PLATFORMS) -> dict[str, AdapterFactory]:
    """The adapter factory of each of `platforms` this installation has. Only those are imported:
    `run slack` never loads discord.py, nor `run discord` the Slack SDK."""
    wanted = set(platforms)
    factories: dict[str, AdapterFactory] = {}
    if "slack" in wanted:
        try:
            from bot.slack_main import make_slack_adapter

            factories["slack"] = make_slack_adapter
        except ImportError:  # pragma: no cover - only while an adapter is being developed
            pass
    if "discord" in wanted:
        try:
            from bot.discord_main import make_discord_adapter

            factories["discord"] = make_discord_adapter
        except ImportError:  # pragma: no cover
            pass
    return factories


async def serve(settings: Settings, platforms: Sequence[str]) -> int:
    factories = adapter_factories(platforms)
    services = await build_services(settings, platforms=platforms)
    adapters: list[ChatAdapter] = []
    try:
        for name in platforms:
            if name not in factories:
                raise ConfigurationError(f"the {name} adapter is not available in this installation")
            adapters.append(factories[name](settings, services))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        tasks = [asyncio.create_task(a.serve(), name=f"serve-{a.platform}") for a in adapters]
        extra = [asyncio.create_task(job, name="extra") for job in _extra_jobs(settings, services, adapters)]
        extra += [asyncio.create_task(_announce_restart(a, services), name=f"told-{a.platform}") for a in adapters]
        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        await _stop_runs(services, adapters)  # SIGTERM, or an adapter stopped: the others' runs are told
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


@runtime_checkable
class _Drains(Protocol):
    """An adapter that can say when what it has started and queued is done (both chat adapters)."""

    async def wait_idle(self) -> None: ...


async def _stop_runs(services: Services, adapters: Sequence[ChatAdapter], *, grace: float = STOP_GRACE) -> None:
    """SIGTERM: the runs in flight end now, each thread told so, before the adapters disconnect."""
    in_flight = services.agent.stop_runs()
    if not in_flight:
        return
    log.info("stopping: %d run(s) in flight are told to ask again", in_flight)

    async def told() -> None:
        await services.agent.wait_stopped()
        # Their last lines may still be on their way (queued, paced, retried): let them go out.
        await asyncio.gather(*(a.wait_idle() for a in adapters if isinstance(a, _Drains)))

    try:
        await asyncio.wait_for(told(), grace)
    except TimeoutError:
        log.warning("stopping: runs still in flight after %g s; their threads are told at the next start", grace)


async def _announce_restart(adapter: ChatAdapter, services: Services) -> None:
    """Tell the threads of what a restart cut short: approvals expired, runs interrupted. Runs next to
    `serve()`, so an adapter that posts only once connected (or once its outbox runs) can."""
    expired = [a for a in services.expired_on_start if a.platform == adapter.platform]
    try:
        await adapter.announce_expired(expired)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("cannot announce the approvals expired by the restart: %s", exc)
    for run in services.interrupted_on_start:
        if run.platform != adapter.platform:
            continue
        try:
            await adapter.post_in_thread(run.channel, run.thread, RESTARTED)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the thread may be gone; the run's row says interrupted anyway
            log.warning("cannot tell the thread of interrupted run #%s: %s", run.id, exc)


def _extra_jobs(settings: Settings, services: Services, adapters: list[ChatAdapter]) -> list:  # type: ignore[type-arg]
    """Long-running companions of the adapters: the scheduler (metrics, health checks, daily report).
    Every process starts one; the database lock lets exactly one of them run the jobs."""
    if not settings.reports.scheduler:
        log.info("the scheduler is off (reports.scheduler = false)")
        return []
    from bot.scheduler import run_scheduler

    return [run_scheduler(settings, services, adapters)]
