"""Docker tools against a real private dockerd (tests/support/dockerd.py)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import Container

from bot.app import Services
from core.errors import ToolError
from core.events import ApprovalRequested, ApprovalResolved, Request, ToolResult
from core.hosts import Host, Inventory
from core.policy import Policy, PolicyError
from core.tools.docker import DockerEngines, cpu_percent, docker_tools, memory_usage, parse_since
from core.tools.registry import ToolContext, ToolOutput, ToolSpec
from tests.core.tools.conftest import REQUESTER, invoke, remote, run_approved, wait_for
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.dockerd import DockerEngine

HOSTILE = ["web; rm -rf /", "../x", "-f", "", "a b", "$(reboot)", "web\nx", "web\n", "/../etc"]


def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- read-only, live engine


@pytest.mark.asyncio
async def test_ps_lists_running_and_exited_containers(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    run_container(name="web")
    done = run_container(["sh", "-c", "exit 3"], name="job")
    done.wait(timeout=30)
    result = await invoke(tools["docker_ps"])
    rows = {r["name"]: r for r in result["containers"]}
    assert result["host"] == "local" and result["count"] == 2
    assert rows["web"]["status"] == "running" and rows["web"]["health"] == "none"
    assert rows["web"]["image"] == "orchestrator-test/busybox:latest"
    assert rows["web"]["restart_count"] == 0 and "up_for" in rows["web"]
    assert rows["job"]["status"] == "exited" and rows["job"]["exit_code"] == 3


@pytest.mark.asyncio
async def test_ps_shows_the_restart_count_of_a_crash_looping_container(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    looping = run_container(["sh", "-c", "echo boom; exit 1"], name="crasher", restart_policy={"Name": "always"})

    def restarted() -> bool:
        looping.reload()
        return int(looping.attrs["RestartCount"]) >= 2

    assert wait_for(restarted), looping.attrs["State"]
    rows = {r["name"]: r for r in (await invoke(tools["docker_ps"]))["containers"]}
    assert rows["crasher"]["restart_count"] >= 2
    assert rows["crasher"]["status"] in {"restarting", "running", "exited"}
    details = await invoke(tools["docker_inspect"], container="crasher")
    assert details["restart_policy"]["Name"] == "always" and details["restart_count"] >= 2


@pytest.mark.asyncio
async def test_health_status_and_its_log_tail(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    second = 1_000_000_000
    sick = run_container(
        name="sick", healthcheck={"test": ["CMD-SHELL", "echo db down; exit 1"], "interval": second // 2, "retries": 1}
    )

    def unhealthy() -> bool:
        sick.reload()
        return sick.attrs["State"].get("Health", {}).get("Status") == "unhealthy"

    assert wait_for(unhealthy), sick.attrs["State"]
    rows = {r["name"]: r for r in (await invoke(tools["docker_ps"]))["containers"]}
    assert rows["sick"]["health"] == "unhealthy"
    details = await invoke(tools["docker_inspect"], container="sick")
    assert details["health"]["status"] == "unhealthy"
    assert any("db down" in h["output"] for h in details["health"]["log_tail"])


@pytest.mark.asyncio
async def test_logs_are_tailed_and_secrets_redacted(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo DB_PASSWORD=hunter22; sleep 0.3; echo oops >&2; sleep 60"
    run_container(["sh", "-c", script], name="chatty")

    async def logs(**kwargs: Any) -> str:
        return str(await invoke(tools["docker_logs"], container="chatty", **kwargs))

    deadline = time.monotonic() + 20
    text = await logs()
    while "oops" not in text and time.monotonic() < deadline:
        time.sleep(0.1)
        text = await logs()
    assert "line 1" in text and "line 5" in text and "oops" in text
    assert "hunter22" not in text and "DB_PASSWORD=[REDACTED]" in text
    last_two = await logs(tail=2)
    assert "line 5" not in last_two and "oops" in last_two
    assert "(no log lines)" in await logs(since="2999-01-01T00:00:00Z")


@pytest.mark.asyncio
async def test_stats_gives_cpu_and_memory_per_running_container(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    run_container(name="idle")
    run_container(["sh", "-c", "while :; do :; done"], name="busy")
    run_container(["true"], name="gone").wait(timeout=30)
    result = await invoke(tools["docker_stats"])
    rows = {r["name"]: r for r in result["containers"]}
    assert set(rows) == {"idle", "busy"}  # only running containers
    assert rows["busy"]["cpu_percent"] > 10.0
    assert rows["idle"]["cpu_percent"] < rows["busy"]["cpu_percent"]
    for row in rows.values():
        assert row["mem_used_mib"] > 0 and row["mem_limit_mib"] > 0 and 0 <= row["mem_percent"] <= 100
        assert row["pids"] >= 1


@pytest.mark.asyncio
async def test_inspect_is_trimmed_and_hides_environment_values(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container], tmp_path: Path
) -> None:
    run_container(
        name="app",
        environment={"API_TOKEN": "tok-very-secret-value", "MODE": "production-mode-xyz"},
        volumes={str(tmp_path): {"bind": "/data", "mode": "ro"}},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )
    details = await invoke(tools["docker_inspect"], container="app")
    dumped = json.dumps(details)
    assert "tok-very-secret-value" not in dumped and "production-mode-xyz" not in dumped
    assert {"API_TOKEN", "MODE"} <= set(details["env_names"])
    assert details["state"]["running"] is True and details["state"]["started_at"]
    assert details["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert details["mounts"] == [{"type": "bind", "source": str(tmp_path), "destination": "/data", "read_write": False}]
    assert details["image"] == "orchestrator-test/busybox:latest" and details["network_mode"] == "none"
    assert set(details) >= {"created", "health", "ports", "networks", "command", "host"}
    assert "Config" not in details and "GraphDriver" not in details


@pytest.mark.asyncio
async def test_unknown_container_is_a_clear_error(tools: dict[str, ToolSpec]) -> None:
    with pytest.raises(ToolError, match="No such container: nothere"):
        await invoke(tools["docker_logs"], container="nothere")


# ---------------------------------------------------------------- validation before the SDK


@pytest.mark.asyncio
@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_container_names_never_reach_the_sdk(policy: Policy, name: str) -> None:
    calls: list[str] = []

    def connect(host: Host, timeout: float) -> Any:
        calls.append(host.name)
        raise AssertionError("the SDK must not be reached")

    specs = {s.name: s for s in docker_tools(policy, DockerEngines(Inventory(), connect=connect))}
    for tool_name in ("docker_logs", "docker_inspect", "docker_restart", "docker_stop", "docker_start"):
        with pytest.raises(ToolError, match="invalid container name"):
            await invoke(specs[tool_name], container=name)
    assert calls == []


@pytest.mark.asyncio
async def test_unknown_and_invalid_hosts_list_the_known_ones(policy: Policy) -> None:
    inventory = Inventory({"web1": Host("web1", docker="ssh://ops@web1", ssh="ops@web1")})
    specs = {s.name: s for s in docker_tools(policy, DockerEngines(inventory, connect=_never))}
    with pytest.raises(ToolError, match=r"unknown host 'db9'; known hosts: local, web1"):
        await invoke(specs["docker_ps"], host="db9")
    with pytest.raises(ToolError, match=r"invalid host name.*known hosts: local, web1"):
        await invoke(specs["docker_restart"], container="web", host="-oProxyCommand=x")


def _never(host: Host, timeout: float) -> Any:
    raise AssertionError("not reached")


# ---------------------------------------------------------------- unreachable hosts


@pytest.mark.asyncio
async def test_unreachable_tcp_host_is_a_clear_error(policy: Policy) -> None:
    port = closed_port()
    inventory = remote("db1", docker=f"tcp://127.0.0.1:{port}")
    engines = DockerEngines(inventory, timeout=3)
    specs = {s.name: s for s in docker_tools(policy, engines)}
    with pytest.raises(ToolError) as err:
        await invoke(specs["docker_ps"], host="db1")
    assert f"cannot reach the Docker engine on host db1 (tcp://127.0.0.1:{port})" in str(err.value)
    assert "refused" in str(err.value).lower()
    # the approval path fails the same way, before anyone is asked
    with pytest.raises(ToolError, match="cannot reach the Docker engine on host db1"):
        await specs["docker_restart"].make_plan({"container": "web", "host": "db1"})


@pytest.mark.asyncio
async def test_unreachable_ssh_host_is_a_clear_error(policy: Policy) -> None:
    port = closed_port()
    inventory = remote("web9", docker=f"ssh://ops@127.0.0.1:{port}")
    specs = {s.name: s for s in docker_tools(policy, DockerEngines(inventory, timeout=3))}
    with pytest.raises(ToolError) as err:
        await invoke(specs["docker_ps"], host="web9")
    message = str(err.value)
    assert f"cannot reach the Docker engine on host web9 (ssh://ops@127.0.0.1:{port})" in message
    try:
        import paramiko  # noqa: F401
    except ImportError:
        assert "need the paramiko package" in message
    else:
        assert "refused" in message.lower() or "unable to connect" in message.lower()


@pytest.mark.asyncio
async def test_a_host_that_never_answers_times_out(policy: Policy) -> None:
    """A listener that accepts and stays silent: the tool gives up after its timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        inventory = remote("slow", docker=f"tcp://127.0.0.1:{server.getsockname()[1]}")
        specs = {s.name: s for s in docker_tools(policy, DockerEngines(inventory, timeout=1))}
        with pytest.raises(ToolError, match=r"cannot reach the Docker engine on host slow .*: no answer within 1 s"):
            await invoke(specs["docker_ps"], host="slow")


@pytest.mark.asyncio
async def test_remote_host_without_docker_url(policy: Policy) -> None:
    specs = {s.name: s for s in docker_tools(policy, DockerEngines(remote("db2", ssh="ops@db2"), connect=_never))}
    with pytest.raises(ToolError, match="host db2 has no Docker engine in the inventory"):
        await invoke(specs["docker_ps"], host="db2")


# ---------------------------------------------------------------- risky actions through the agent


async def drive(services: Services, text: str, *, approve: bool) -> list[object]:
    request = Request(platform="console", user_id="tester", channel="console", thread="docker", text=text)
    events: list[object] = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=approve)
    return events


def restart_events(engine: DockerEngine, cid: str, since: float) -> list[dict[str, Any]]:
    stream = engine.client.events(
        since=int(since), until=int(time.time()) + 1, decode=True, filters={"container": cid, "event": "restart"}
    )
    return list(stream)


@pytest.mark.asyncio
async def test_restart_waits_for_approval_and_restarts_exactly_once(
    services: Services,
    fake_ollama: FakeOllama,
    docker_host_env: DockerEngine,
    run_container: Callable[..., Container],
) -> None:
    web = run_container(name="web")
    started_before = web.attrs["State"]["StartedAt"]
    assert not started_before.startswith("0001-")
    t0 = time.time() - 1
    fake_ollama.script(call("docker_restart", container="web"), Reply(content="Restarted web."))
    events = await drive(services, "restart web", approve=True)

    asked = [e for e in events if isinstance(e, ApprovalRequested)]
    assert len(asked) == 1
    assert asked[0].tool == "docker_restart" and asked[0].host == "local" and asked[0].risk == "exec"
    assert asked[0].detail.startswith("docker restart web\nhost: local")
    assert web.id[:12] in asked[0].detail
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.ok and "restarted web on host local: now running" in result.output

    web.reload()
    assert web.attrs["State"]["StartedAt"] != started_before
    assert web.attrs["State"]["Running"]
    assert len(restart_events(docker_host_env, web.id, t0)) == 1


@pytest.mark.asyncio
async def test_denied_restart_leaves_the_container_alone(
    services: Services,
    fake_ollama: FakeOllama,
    docker_host_env: DockerEngine,
    run_container: Callable[..., Container],
) -> None:
    web = run_container(name="web")
    started_before = web.attrs["State"]["StartedAt"]
    assert not started_before.startswith("0001-")
    t0 = time.time() - 1
    fake_ollama.script(call("docker_restart", container="web"), Reply(content="Left it."))
    events = await drive(services, "restart web", approve=False)
    resolved = next(e for e in events if isinstance(e, ApprovalResolved))
    assert not resolved.approved
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and "denied" in result.output
    web.reload()
    assert web.attrs["State"]["StartedAt"] == started_before
    assert restart_events(docker_host_env, web.id, t0) == []


@pytest.mark.asyncio
async def test_a_container_replaced_after_the_request_is_not_restarted(
    services: Services,
    fake_ollama: FakeOllama,
    docker_host_env: DockerEngine,
    run_container: Callable[..., Container],
) -> None:
    """The approval binds the container id: a new container under the same name is a different action."""
    old = run_container(name="web")
    fake_ollama.script(call("docker_restart", container="web"), Reply(content="It changed."))
    request = Request(platform="console", user_id="tester", channel="console", thread="swap", text="restart web")
    events = []
    new: Container | None = None
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            old.remove(force=True)
            new = run_container(name="web")
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=True)
    assert new is not None
    started = new.attrs["State"]["StartedAt"]
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and "changed after the approval" in result.output
    new.reload()
    assert new.attrs["State"]["StartedAt"] == started


@pytest.mark.asyncio
async def test_stop_and_start_plans_say_what_and_where(
    tools: dict[str, ToolSpec], run_container: Callable[..., Container]
) -> None:
    web = run_container(name="web")
    stop_args = {"container": "web", "host": "local"}
    stop = await tools["docker_stop"].make_plan(stop_args)
    assert stop.risk == "exec" and stop.host == "local" and stop.detail.startswith("docker stop web\nhost: local")
    with pytest.raises(ToolError, match="already running"):
        await tools["docker_start"].make_plan({"container": "web", "host": "local"})
    out = await run_approved(tools["docker_stop"], stop_args, stop)
    assert isinstance(out, ToolOutput) and "stopped web on host local: now exited" in out.text
    web.reload()
    assert web.attrs["State"]["Running"] is False
    start = await tools["docker_start"].make_plan(stop_args)
    assert start.detail.startswith("docker start web\nhost: local")
    await run_approved(tools["docker_start"], stop_args, start)
    web.reload()
    assert web.attrs["State"]["Running"] is True


# ---------------------------------------------------------------- compose


@pytest.mark.asyncio
async def test_compose_ps_needs_compose_and_a_directory_under_the_roots(
    tools: dict[str, ToolSpec], workspace: Path
) -> None:
    project = workspace / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text("services:\n  web:\n    image: orchestrator-test/busybox:latest\n")
    with pytest.raises(PolicyError, match="outside the file roots"):
        await invoke(tools["docker_compose_ps"], project_dir="/etc")
    try:
        result = await invoke(tools["docker_compose_ps"], project_dir=str(project))
    except ToolError as exc:
        assert "docker compose is not installed on this host" in str(exc)
    else:  # a machine with the compose plugin: the project exists but has no containers
        assert result["containers"] == [] and result["project_dir"] == str(project)


# ---------------------------------------------------------------- pure helpers


def test_cpu_percent_follows_docker_stats() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 4},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    }
    assert cpu_percent(stats) == 80.0  # 200 / 1000 * 4 cpus * 100
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0


def test_memory_excludes_inactive_page_cache() -> None:
    v2 = {"memory_stats": {"usage": 1000, "limit": 4000, "stats": {"inactive_file": 200}}}
    v1 = {"memory_stats": {"usage": 1000, "limit": 4000, "stats": {"total_inactive_file": 300}}}
    assert memory_usage(v2) == (800, 4000) and memory_usage(v1) == (700, 4000)


def test_since_accepts_durations_and_times() -> None:
    assert parse_since("") is None
    assert parse_since("10m", now=10_000) == 9_400 and parse_since("2h", now=10_000) == 2_800
    assert parse_since("1700000000") == 1_700_000_000
    assert parse_since("2024-01-01T00:00:00Z") == 1_704_067_200
    with pytest.raises(ToolError, match="cannot read since"):
        parse_since("last tuesday")


# ---------------------------------------------------------------- lifecycle bodies, without an engine


class _FakeContainer:
    def __init__(self, engine: _FakeEngine) -> None:
        self.engine = engine
        self.attrs = engine.attrs()

    def restart(self, timeout: int) -> None:
        self.engine.actions.append(("restart", self.engine.cid))

    def reload(self) -> None:
        self.attrs = self.engine.attrs()


class _FakeEngine:
    """Just enough of the SDK for a restart: inspect, get, restart, reload."""

    def __init__(self) -> None:
        self.cid = "a" * 64
        self.actions: list[tuple[str, str]] = []
        self.api = self
        self.containers = self

    def attrs(self) -> dict[str, Any]:
        state = {"Status": "running", "Running": True, "StartedAt": "2025-01-31T08:00:00Z"}
        return {"Id": self.cid, "Name": "/web", "Config": {"Image": "nginx"}, "State": state}

    def inspect_container(self, name: str) -> dict[str, Any]:
        return self.attrs()

    def get(self, cid: str) -> _FakeContainer:
        assert cid == self.cid, "the body acts on the container id it checked"
        return _FakeContainer(self)

    def close(self) -> None:
        pass


@pytest.mark.asyncio
async def test_restart_body_acts_on_the_approved_container_only(policy: Policy) -> None:
    fake = _FakeEngine()
    specs = {s.name: s for s in docker_tools(policy, DockerEngines(Inventory(), connect=lambda host, timeout: fake))}
    spec = specs["docker_restart"]
    assert "ctx" not in spec.schema["function"]["parameters"]["properties"]
    args = spec.validate({"container": "web"})
    plan = await spec.make_plan(args)
    assert plan.fingerprint_parts == ("local", "", fake.cid) and fake.actions == []
    out = await run_approved(spec, args, plan)
    assert isinstance(out, ToolOutput) and out.text.startswith("restarted web on host local: now running")
    assert fake.actions == [("restart", fake.cid)]

    fake.cid = "b" * 64  # re-created under the same name after the approval
    assert await spec.fresh_parts(args) != plan.fingerprint_parts  # the agent refuses on this
    with pytest.raises(ToolError, match="changed after the approval"):  # and so would the body
        await spec.run(args, ToolContext(request=REQUESTER, plan=plan, approval_id=1))
    assert fake.actions == [("restart", "a" * 64)]
