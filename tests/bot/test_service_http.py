"""The service endpoint in this process, scraped for real over HTTP: `/healthz` against a real store,
the Ollama stand-in (or a closed port) and adapter stand-ins; `/metrics` after real agent runs,
parsed with prometheus_client's own parser. The store-derived figures run on SQLite, then PostgreSQL.
(tests/bot/test_run_scheduler.py scrapes a real `orchestrator run scheduler` process.)"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from bot.app import Services, build_services
from bot.runner import _service_metrics
from bot.service_http import ModelProbe, ServiceEndpoint, ServiceHealth, Status, adapter_status
from bot.service_metrics import ServiceMetrics, StoreCollector
from bot.settings import Settings
from core.errors import ConfigurationError
from core.events import ApprovalRequested, Event, Request
from core.health.checks import CheckResult
from core.health.lock import LeaseLock
from core.llm import OllamaLLM
from core.store import Store
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.postgres import on_each_database

CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port


# ---- helpers ------------------------------------------------------------------------------------
async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def healthz(endpoint: ServiceEndpoint) -> tuple[int, dict[str, Any]]:
    import json

    status, text = await get(f"http://127.0.0.1:{endpoint.port}/healthz")
    return status, json.loads(text)


async def scrape(endpoint: ServiceEndpoint) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    status, text = await get(f"http://127.0.0.1:{endpoint.port}/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def probe_for(url: str, model: str = "qwen3:8b", **kw: Any) -> ModelProbe:
    return ModelProbe(OllamaLLM(host=url, model=model, timeout=3).list_models, host=url, model=model, **kw)


@contextlib.asynccontextmanager
async def serving(
    store: Store,
    *,
    model: ModelProbe,
    adapters: Callable[[], Mapping[str, Status]] = dict,
    metrics: ServiceMetrics | None = None,
    owner: str = "this-process",
) -> AsyncIterator[ServiceEndpoint]:
    metrics = metrics or ServiceMetrics()
    if metrics.store is None:
        metrics.watch_store(store)
    health = ServiceHealth(store=store, model=model, adapters=adapters, lease=LeaseLock(store), owner=owner)
    endpoint = ServiceEndpoint(health, metrics, host="127.0.0.1", port=0)
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.close()


@dataclass
class Connecting:
    """A chat adapter stand-in that says when it is connected the way the Discord adapter does."""

    platform: str = "discord"

    def __post_init__(self) -> None:
        self.ready = asyncio.Event()


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    (tmp_path / "db").mkdir()
    s = Store(f"sqlite:///{tmp_path / 'db' / 'orchestrator.db'}")
    await s.init()
    yield s
    await s.close()


# ---- /healthz -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_healthz_is_200_with_everything_up_and_503_naming_an_adapter_that_is_not(
    store: Store, fake_ollama: FakeOllama
) -> None:
    adapter = Connecting()
    task = asyncio.create_task(asyncio.Event().wait())
    await LeaseLock(store).acquire("this-process", now=1e12, lease=60)  # held far into the future
    async with serving(
        store, model=probe_for(fake_ollama.url), adapters=lambda: {"discord": adapter_status(adapter, task)}
    ) as endpoint:
        status, body = await healthz(endpoint)
        assert status == 503
        assert body["failing"] == ["adapter discord"]
        assert body["adapters"]["discord"] == {"ok": False, "detail": "not connected yet"}

        adapter.ready.set()
        status, body = await healthz(endpoint)
        assert status == 200, body
        assert body["ok"] is True and body["failing"] == []
        assert body["database"]["ok"] and body["model"]["ok"]
        assert "qwen3:8b" in body["model"]["detail"]
        assert body["adapters"] == {"discord": {"ok": True, "detail": "connected"}}
        assert body["scheduler"] == {"enabled": True, "holder": "this-process", "this_process": True}

        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        status, body = await healthz(endpoint)
        assert status == 503 and body["failing"] == ["adapter discord"]
        assert body["adapters"]["discord"]["detail"] == "stopped"


@pytest.mark.asyncio
async def test_healthz_is_503_naming_the_database_once_it_stops_answering(
    store: Store, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    metrics = ServiceMetrics()
    metrics.watch_store(store)
    assert metrics.store is not None
    metrics.store.cache_seconds = 0
    async with serving(store, model=probe_for(fake_ollama.url), metrics=metrics) as endpoint:
        assert (await healthz(endpoint))[0] == 200
        assert value(await scrape(endpoint), "orchestrator_database_up") == 1
        await store.run(lambda _s: store.engine.dispose())  # the open connections go, and so does the file
        shutil.rmtree(tmp_path / "db")
        status, body = await healthz(endpoint)
        samples = await scrape(endpoint)
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["database"]["ok"] is False and "unable to open database file" in body["database"]["detail"]
    assert body["model"]["ok"] is True
    # /metrics still answers: the store is down, and the last figures read are still there.
    assert value(samples, "orchestrator_database_up") == 0
    assert ("orchestrator_runs_total", (("status", "answered"),)) in samples


@pytest.mark.asyncio
async def test_healthz_is_503_naming_an_unreachable_model(store: Store) -> None:
    async with serving(store, model=probe_for(CLOSED)) as endpoint:
        status, body = await healthz(endpoint)
    assert status == 503
    assert body["failing"] == ["model"]
    assert f"cannot reach Ollama at {CLOSED}" in body["model"]["detail"]
    assert body["database"]["ok"] is True


@pytest.mark.asyncio
async def test_a_model_that_is_not_pulled_is_named(store: Store, fake_ollama: FakeOllama) -> None:
    async with serving(store, model=probe_for(fake_ollama.url, model="nothere:1b")) as endpoint:
        status, body = await healthz(endpoint)
    assert status == 503 and body["failing"] == ["model"]
    assert "nothere:1b is not pulled" in body["model"]["detail"]


@pytest.mark.asyncio
async def test_probes_ask_ollama_for_its_model_list_at_most_once_per_ttl(store: Store, fake_ollama: FakeOllama) -> None:
    now = [0.0]
    probe = probe_for(fake_ollama.url, ttl=15, clock=lambda: now[0])
    async with serving(store, model=probe) as endpoint:
        results = await asyncio.gather(*(healthz(endpoint) for _ in range(5)))
        assert [status for status, _ in results] == [200] * 5
        now[0] += 14
        await healthz(endpoint)
        assert [r["path"] for r in fake_ollama.requests] == ["/api/tags"]  # one ask, and never a model call
        now[0] += 2
        await healthz(endpoint)
    assert [r["path"] for r in fake_ollama.requests] == ["/api/tags", "/api/tags"]


# ---- /metrics -------------------------------------------------------------------------------------
def ask(text: str) -> Request:
    return Request(platform="console", user_id="tester", channel="console", thread=text, text=text)


async def run_approving(services: Services, request: Request) -> list[Event]:
    events = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=True)
    return events


@on_each_database
@pytest.mark.asyncio
async def test_metrics_count_runs_steps_tool_calls_approvals_and_model_turns(
    settings: Settings, fake_ollama: FakeOllama
) -> None:
    metrics = ServiceMetrics()
    services = await build_services(settings, agent_llm=metrics.model.wrap)
    services.gate.poll_interval = 0.05
    metrics.watch_store(services.store, declared_risk=lambda tool: "declared")
    assert metrics.store is not None
    metrics.store.cache_seconds = 0  # every scrape reads: this test checks the figures, not the cache
    try:
        async with serving(services.store, model=probe_for(fake_ollama.url), metrics=metrics) as endpoint:
            before = await scrape(endpoint)
            assert value(before, "orchestrator_database_up") == 1
            assert value(before, "orchestrator_runs_total", status="answered") == 0

            fake_ollama.script(
                Reply(tool_calls=[{"name": "list_directory", "arguments": {"path": "."}}]),
                Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "hi\n"}}]),
                Reply(content="Done: motd written."),
            )
            await run_approving(services, ask("write a motd"))
            first = await scrape(endpoint)
            assert value(first, "orchestrator_runs_total", status="answered") == 1
            assert value(first, "orchestrator_runs_in_flight") == 0
            assert value(first, "orchestrator_steps_total", kind="ToolCall") == 2
            assert value(first, "orchestrator_steps_total", kind="ApprovalRequested") == 1
            assert value(first, "orchestrator_steps_total", kind="Answer") == 1
            assert value(first, "orchestrator_tool_calls_total", tool="list_directory", risk="read") == 1
            assert value(first, "orchestrator_tool_calls_total", tool="write_file", risk="write") == 1
            assert value(first, "orchestrator_approvals_total", outcome="approved") == 1
            assert value(first, "orchestrator_approvals_open", status="pending") == 0
            assert value(first, "orchestrator_model_turn_seconds_count") == 3
            assert value(first, "orchestrator_model_first_token_seconds_count") == 3
            assert value(first, "orchestrator_model_turn_seconds_bucket", le="+Inf") == 3

            fake_ollama.script(
                Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "motd"}}]), Reply(content="It says hi.")
            )
            await run_approving(services, ask("what does the motd say?"))
            fake_ollama.fail_next(500, "the model broke")
            await run_approving(services, ask("and now?"))
            second = await scrape(endpoint)
            # Only the rows added since are read, and added to what was counted before.
            assert value(second, "orchestrator_runs_total", status="answered") == 2
            assert value(second, "orchestrator_runs_total", status="failed") == 1
            assert value(second, "orchestrator_steps_total", kind="ToolCall") == 3
            assert value(second, "orchestrator_tool_calls_total", tool="read_file", risk="read") == 1
            assert value(second, "orchestrator_tool_calls_total", tool="list_directory", risk="read") == 1
            assert value(second, "orchestrator_model_turn_seconds_count") == 5
            assert value(second, "orchestrator_model_turn_errors_total") == 1
    finally:
        await services.close()


@pytest.mark.asyncio
async def test_a_burst_of_scrapes_reads_the_store_once(store: Store) -> None:
    now = [0.0]
    collector = StoreCollector(store, cache_seconds=2.0, clock=lambda: now[0])
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    await asyncio.gather(*(collector.refresh() for _ in range(5)))
    reads = len(statements)
    assert reads > 0
    now[0] += 1.5
    await collector.refresh()
    assert len(statements) == reads
    now[0] += 1.0
    await collector.refresh()
    assert len(statements) == 2 * reads


@pytest.mark.asyncio
async def test_the_health_check_gauges_show_the_last_pass(store: Store, fake_ollama: FakeOllama) -> None:
    metrics = ServiceMetrics()
    async with serving(store, model=probe_for(fake_ollama.url), metrics=metrics) as endpoint:
        metrics.checks.record([
            CheckResult("disk", "disk:/", False, "/ is 95 % full"),
            CheckResult("disk", "disk:/srv", True, "fine"),
            CheckResult("docker", "docker", False, "cannot tell", inconclusive=True),
        ])  # fmt: skip
        samples = await scrape(endpoint)
        assert value(samples, "orchestrator_health_check_ok", check="disk", key="disk:/") == 0
        assert value(samples, "orchestrator_health_check_ok", check="disk", key="disk:/srv") == 1
        assert ("orchestrator_health_check_ok", (("check", "docker"), ("key", "docker"))) not in samples

        metrics.checks.record([CheckResult("disk", "disk:/", True, "fine now")])
        samples = await scrape(endpoint)
    gauges = {labels for name, labels in samples if name == "orchestrator_health_check_ok"}
    assert gauges == {(("check", "disk"), ("key", "disk:/"))}  # /srv went away, so did its gauge
    assert value(samples, "orchestrator_health_check_ok", check="disk", key="disk:/") == 1


@pytest.mark.asyncio
async def test_two_registries_do_not_collide() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()  # the global default registry would refuse the second
    first.checks.record([CheckResult("disk", "disk:/", True, "fine")])
    page, _ = await second.exposition()
    assert b"disk:/" not in page


# ---- settings -------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_port_in_use_is_one_line_naming_the_setting(store: Store, fake_ollama: FakeOllama) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = ServiceHealth(store=store, model=probe_for(fake_ollama.url), adapters=dict, lease=None, owner="me")
        endpoint = ServiceEndpoint(health, ServiceMetrics(), host="127.0.0.1", port=port)
        with pytest.raises(ConfigurationError) as caught:
            await endpoint.start()
    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)
    assert "ORCHESTRATOR_METRICS_PORT" in str(caught.value)


def test_the_endpoint_is_off_unless_its_port_is_set(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (settings.metrics_port, settings.metrics_host) == (0, "127.0.0.1")
    assert _service_metrics(settings) is None
    monkeypatch.setenv("ORCHESTRATOR_METRICS_PORT", "")
    assert Settings().metrics_port == 0
    monkeypatch.setenv("ORCHESTRATOR_METRICS_PORT", "9464")
    monkeypatch.setenv("ORCHESTRATOR_METRICS_HOST", "0.0.0.0")
    on = Settings()
    assert (on.metrics_port, on.metrics_host) == (9464, "0.0.0.0")
    assert isinstance(_service_metrics(on), ServiceMetrics)
