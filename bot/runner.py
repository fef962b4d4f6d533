"""`orchestrator run slack|discord|all|scheduler`: build the services once, serve every adapter
(or the scheduler alone), and the service endpoint when its port is set."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from adapters.base import ChatAdapter
from bot.app import Services, build_services
from bot.platforms import adapter_factories as adapter_factories  # re-exported: bot.reports looks it up here
from bot.posting import PostingOutlet
from bot.settings import Settings
from core.errors import ConfigurationError as ConfigurationError  # re-exported: the platforms raise it too
from core.runs import RESTARTED

if TYPE_CHECKING:
    from bot.scheduler import CheckObserver
    from bot.service_http import ServiceEndpoint
    from bot.service_metrics import ServiceMetrics

log = logging.getLogger(__name__)

STOP_GRACE = 8.0  # seconds the runs in flight get, on SIGTERM, to post their last line (docker stop waits 10)

NOTHING_TO_RUN = (
    "nothing to run: no chat platform to serve and the scheduler is off (reports.scheduler = false, "
    "ORCHESTRATOR_SCHEDULER)"
)
REPORTS_GO_TO = "running the scheduler alone, serving no chat; reports go to {where}"


async def serve(settings: Settings, platforms: Sequence[str]) -> int:
    """Serve `platforms` until SIGINT or SIGTERM, with the scheduler beside them. No platforms:
    the scheduler alone (`run scheduler`), its reports to the log and to the configured reports
    channels, posted without serving questions (bot.posting)."""
    if not platforms and not settings.reports.scheduler:
        raise ConfigurationError(NOTHING_TO_RUN)
    from bot.reports import report_channels

    posting = report_channels(settings) if not platforms and settings.reports.scheduler else {}
    factories = adapter_factories([*platforms, *posting])
    metrics = _service_metrics(settings)
    services = await build_services(
        settings, platforms=platforms, agent_llm=metrics.model.wrap if metrics is not None else None
    )
    adapters: list[ChatAdapter] = []
    outlets: list[PostingOutlet] = []
    endpoint: ServiceEndpoint | None = None
    try:
        for name in [*platforms, *posting]:
            if name not in factories:
                raise ConfigurationError(f"the {name} adapter is not available in this installation")
        adapters = [factories[name](settings, services) for name in platforms]
        for name in posting:  # each made now: a configuration mistake stops the start
            outlets.append(PostingOutlet(functools.partial(factories[name], settings, services)))
        serving: dict[str, tuple[ChatAdapter, asyncio.Task[None]]] = {}
        if metrics is not None:  # listening before connecting: a port in use stops the start
            endpoint = await _open_endpoint(settings, services, metrics, serving)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        tasks = [asyncio.create_task(a.serve(), name=f"serve-{a.platform}") for a in adapters]
        serving.update({a.platform: (a, t) for a, t in zip(adapters, tasks, strict=True)})
        on_checks = metrics.checks.record if metrics is not None else None
        extra = [
            asyncio.create_task(job, name="scheduler")
            for job in _extra_jobs(settings, services, adapters, outlets=outlets, on_checks=on_checks)
        ]
        if not adapters:  # the scheduler alone: it is what this process serves
            tasks, extra = extra, []
            places = [f"the {o.platform} channel {posting[o.platform]}" for o in outlets]
            where = "the log and " + " and ".join(places) if places else "the log only (no reports channel is set)"
            log.info(REPORTS_GO_TO.format(where=where))
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
        if endpoint is not None:
            await endpoint.close()
        for outlet in outlets:
            await outlet.aclose()
        await services.close()


def _service_metrics(settings: Settings) -> ServiceMetrics | None:
    """The registry of `/metrics`, when the endpoint is on (prometheus_client is loaded only then)."""
    if not settings.metrics_port:
        return None
    from bot.service_metrics import ServiceMetrics

    return ServiceMetrics()


async def _open_endpoint(
    settings: Settings,
    services: Services,
    metrics: ServiceMetrics,
    serving: Mapping[str, tuple[ChatAdapter, asyncio.Task[None]]],
) -> ServiceEndpoint:
    from bot.service_http import ModelProbe, ServiceEndpoint, ServiceHealth, adapter_status
    from core.health.lock import LeaseLock

    def declared_risk(tool: str) -> str:
        spec = services.tools.get(tool)
        return str(spec.risk) if spec is not None else "unknown"

    metrics.watch_store(services.store, declared_risk=declared_risk)
    health = ServiceHealth(
        store=services.store,
        model=ModelProbe.for_settings(settings),
        adapters=lambda: {platform: adapter_status(a, t) for platform, (a, t) in serving.items()},
        lease=LeaseLock(services.store) if settings.reports.scheduler else None,
        owner=services.gate.identity.owner,
    )
    endpoint = ServiceEndpoint(health, metrics, host=settings.metrics_host, port=settings.metrics_port)
    await endpoint.start()
    return endpoint


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


def _extra_jobs(
    settings: Settings,
    services: Services,
    adapters: list[ChatAdapter],
    *,
    outlets: Sequence[PostingOutlet] = (),
    on_checks: CheckObserver | None = None,
) -> list:  # type: ignore[type-arg]
    """Long-running companions of the adapters: the scheduler (metrics, health checks, daily report).
    Every process starts one; the database lock lets exactly one of them run the jobs. `outlets`:
    the post-only reports channels of a process that serves no chat."""
    if not settings.reports.scheduler:
        log.info("the scheduler is off (reports.scheduler = false)")
        return []
    from bot.reports import report_channels
    from bot.scheduler import run_scheduler
    from core.health.outlets import Destination

    dests = None
    if not adapters:
        channels = report_channels(settings)
        dests = [Destination(outlet, channels[outlet.platform]) for outlet in outlets]
    return [run_scheduler(settings, services, adapters, dests=dests, on_checks=on_checks)]
