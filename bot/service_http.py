"""The service endpoint while serving: `/healthz` and `/metrics` on `ORCHESTRATOR_METRICS_PORT`.

Off unless the port is set; bound to 127.0.0.1 unless `ORCHESTRATOR_METRICS_HOST` says otherwise.
An aiohttp server in the bot's own loop. Nothing it does blocks the loop: the database is asked
through the store's thread, Ollama over HTTP, and every probe has a time limit, so a stuck
database or model is an answer ("failing: database"), not a hung health check.

`/healthz` is healthy (200) when the database answers `SELECT 1`, Ollama answers with the model
pulled, and every chat adapter this process serves is connected; otherwise 503, and the JSON
names what failed. Ollama is asked for its model list (no model call), at most once every
`MODEL_TTL` seconds whatever the probe rate. The scheduler lease is shown, not judged: another
process holding it is how it should be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.service_metrics import ServiceMetrics
from bot.settings import Settings, where_set
from core.errors import ConfigurationError
from core.health.lock import LeaseLock
from core.llm import LLMError, OllamaLLM
from core.store import Store

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds each probe may take; Docker's healthcheck gives the whole request 4
MODEL_TTL = 15.0  # seconds a model probe's result is reused

# ---- what it says -------------------------------------------------------------------------------
LISTENING = "serving /healthz and /metrics on http://{host}:{port}"
CANNOT_LISTEN = (
    "cannot listen on {host}:{port} for /healthz and /metrics ({reason}): set {setting} to a free port, "
    "or unset it to turn the endpoint off"
)
DATABASE_OK = "answers"
NO_ANSWER = "no answer within {timeout:g} s"
MODEL_OK = "Ollama at {host} answers; {model} is there"
MODEL_MISSING = "Ollama at {host} answers, but {model} is not pulled (`ollama pull {model}`)"
CONNECTED = "connected"
CONNECTING = "not connected yet"
UNKNOWN_CONNECTION = "serving (this adapter does not say whether its connection is up)"
STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Status:
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- the parts --------------------------------------------------------------------------------
class ModelProbe:
    """Is Ollama there with our model? A recent answer is reused; probes at the same moment share one ask."""

    def __init__(
        self,
        list_models: Callable[[], Awaitable[list[str]]],
        *,
        host: str,
        model: str,
        ttl: float = MODEL_TTL,
        timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.list_models = list_models
        self.host = host
        self.model = model
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self._last: tuple[float, Status] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> ModelProbe:
        client = OllamaLLM(host=settings.ollama_host, model=settings.model, timeout=PROBE_TIMEOUT)
        return cls(client.list_models, host=settings.ollama_host, model=settings.model)

    async def status(self) -> Status:
        async with self._lock:
            if self._last is not None and self.clock() - self._last[0] < self.ttl:
                return self._last[1]
            result = await self._ask()
            self._last = (self.clock(), result)
            return result

    async def _ask(self) -> Status:
        try:
            async with asyncio.timeout(self.timeout):
                models = await self.list_models()
        except TimeoutError:
            return Status(False, f"Ollama at {self.host}: " + NO_ANSWER.format(timeout=self.timeout))
        except LLMError as exc:
            return Status(False, _reason(exc))
        wanted = self.model if ":" in self.model else self.model + ":latest"
        if wanted not in models and self.model not in models:
            return Status(False, MODEL_MISSING.format(host=self.host, model=self.model))
        return Status(True, MODEL_OK.format(host=self.host, model=self.model))


def adapter_status(adapter: object, task: asyncio.Task[None]) -> Status:
    """What a serving chat adapter says of its connection: a `connected` flag where it has one,
    its `ready` event (Discord) otherwise; a serve task that ended is down whatever it says."""
    if task.done():
        exc = None if task.cancelled() else task.exception()
        return Status(False, f"{STOPPED}: {_reason(exc)}" if exc is not None else STOPPED)
    connected = getattr(adapter, "connected", None)
    if isinstance(connected, bool):
        return Status(connected, CONNECTED if connected else CONNECTING)
    ready = getattr(adapter, "ready", None)
    if isinstance(ready, asyncio.Event):
        return Status(ready.is_set(), CONNECTED if ready.is_set() else CONNECTING)
    return Status(True, UNKNOWN_CONNECTION)


class ServiceHealth:
    """`/healthz`: the database, the model, the adapters this process serves, and who schedules."""

    def __init__(
        self,
        *,
        store: Store,
        model: ModelProbe,
        adapters: Callable[[], Mapping[str, Status]],
        lease: LeaseLock | None,
        owner: str,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.store = store
        self.model = model
        self.adapters = adapters
        self.lease = lease  # None: the scheduler is off in this process
        self.owner = owner
        self.timeout = timeout

    async def check(self) -> tuple[bool, dict[str, Any]]:
        database, model = await asyncio.gather(self._database(), self.model.status())
        adapters = dict(self.adapters())
        failing = [name for name, status in (("database", database), ("model", model)) if not status.ok]
        failing += [f"adapter {platform}" for platform, status in adapters.items() if not status.ok]
        body = {
            "ok": not failing,
            "failing": failing,
            "database": database.as_json(),
            "model": model.as_json(),
            "adapters": {platform: status.as_json() for platform, status in adapters.items()},
            "scheduler": await self._scheduler() if database.ok else {"enabled": self.lease is not None},
        }
        return not failing, body

    async def _database(self) -> Status:
        try:
            async with asyncio.timeout(self.timeout):
                await self.store.ping()
        except TimeoutError:
            return Status(False, NO_ANSWER.format(timeout=self.timeout))
        except Exception as exc:
            return Status(False, _reason(exc))
        return Status(True, DATABASE_OK)

    async def _scheduler(self) -> dict[str, Any]:
        if self.lease is None:
            return {"enabled": False}
        try:
            async with asyncio.timeout(self.timeout):
                holder = await self.lease.holder()
        except Exception as exc:  # shown, not judged: the database probe says whether the store works
            return {"enabled": True, "error": _reason(exc) if not isinstance(exc, TimeoutError) else "timed out"}
        held = holder is not None and holder.expires_at > time.time()
        owner = holder.owner if held and holder is not None else None
        return {"enabled": True, "holder": owner, "this_process": owner == self.owner}


# ---- the server -------------------------------------------------------------------------------
class ServiceEndpoint:
    def __init__(self, health: ServiceHealth, metrics: ServiceMetrics, *, host: str, port: int) -> None:
        self.health = health
        self.metrics = metrics
        self.host = host
        self.port = port  # 0 picks a free port (tests); the bound one is here after `start()`
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> int:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            reason = exc.strerror or _reason(exc)
            raise ConfigurationError(
                CANNOT_LISTEN.format(host=self.host, port=self.port, reason=reason, setting=where_set("metrics_port"))
            ) from None
        self.port = int(self._runner.addresses[0][1])
        log.info(LISTENING.format(host=self.host, port=self.port))
        return self.port

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            ok, body = await self.health.check()
        except Exception as exc:  # the probe itself broke: that is unhealthy too, and says why
            log.exception("/healthz failed")
            ok, body = False, {"ok": False, "failing": ["healthz"], "error": _reason(exc)}
        return web.Response(
            text=json.dumps(body, indent=2) + "\n", status=200 if ok else 503, content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        page, content_type = await self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=page, headers={"Content-Type": content_type})
