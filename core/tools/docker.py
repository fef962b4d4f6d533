"""Docker tools through the Docker SDK, on the local engine or any host of the inventory.

The SDK is synchronous: every call, including creating a client (which already talks
to the engine), runs in a worker thread with a timeout, so a slow or unreachable host
is a tool error and never blocks the event loop. Container names are checked against
Docker's own rules before anything reaches the SDK. The SDK itself (with requests and
paramiko) is imported by the first call that needs it, so a process that never touches
Docker does not pay for it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.errors import ToolError
from core.events import Risk
from core.hosts import LOCAL, Host, Inventory
from core.policy import Policy
from core.process import run_process
from core.tools.command import scrubbed_env
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, tool

T = TypeVar("T")
Connect = Callable[[Host, float], Any]

DEFAULT_TIMEOUT = 15.0
STOP_GRACE = 10  # seconds a container gets to stop before it is killed (docker's default)
MAX_LOG_LINES = 2000
STATS_PARALLEL = 8

# Docker's own rule for names (daemon/names: RestrictedNameChars), which a hex id also satisfies.
_CONTAINER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
_SINCE_RELATIVE = re.compile(r"^(\d{1,6})\s*([smhd])$")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def check_container(name: str) -> str:
    """The container name or id, if it follows Docker's rules; ToolError otherwise."""
    candidate = name[1:] if name.startswith("/") else name  # `docker inspect` shows names as /web
    if not _CONTAINER.fullmatch(candidate):
        raise ToolError(
            f"invalid container name {name!r}: a name is letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (or a hex id); see docker_ps for the names"
        )
    return candidate


def parse_since(since: str, *, now: float | None = None) -> int | None:
    """Empty → None; "10m", "2h", "1d", "30s" → that long ago; a unix time; or an ISO 8601 time."""
    text = since.strip()
    if not text:
        return None
    m = _SINCE_RELATIVE.fullmatch(text)
    if m:
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return int((now if now is not None else time.time()) - seconds)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(
            f"cannot read since={since!r}: use a duration like 10m, 2h or 1d, or a time like 2025-01-31T08:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp())


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _age(value: str | None) -> str:
    moment = _parse_time(value)
    if moment is None:
        return ""
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def format_ports(ports: dict[str, Any] | None) -> list[str]:
    """`{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}` → `["0.0.0.0:8080->80/tcp"]`."""
    shown: list[str] = []
    for inner, bindings in sorted((ports or {}).items()):
        if not bindings:
            shown.append(inner)
            continue
        for b in bindings:
            shown.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{inner}")
    return shown


def cpu_percent(stats: dict[str, Any]) -> float:
    """CPU use the way `docker stats` computes it: container delta / system delta × online CPUs."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if system_delta > 0 and cpu_delta > 0:
        return round(float(cpu_delta) / float(system_delta) * float(online) * 100.0, 2)
    return 0.0


def memory_usage(stats: dict[str, Any]) -> tuple[int, int]:
    """(used, limit) in bytes, page cache excluded like `docker stats` (cgroup v1 and v2)."""
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage") or 0)
    detail = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # v1, then v2
        if key in detail and int(detail[key]) < usage:
            usage -= int(detail[key])
            break
    return usage, int(mem.get("limit") or 0)


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


@dataclass(frozen=True)
class _SdkErrors:
    """The Docker SDK's exception classes, which an `except` clause names only once one is raised."""

    not_found: type[Exception]
    api: type[Exception]
    docker: type[Exception]
    request: type[Exception]


@functools.cache
def _sdk_errors() -> _SdkErrors:
    from docker.errors import APIError, DockerException, NotFound
    from requests.exceptions import RequestException

    return _SdkErrors(not_found=NotFound, api=APIError, docker=DockerException, request=RequestException)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip()
    if isinstance(exc, _sdk_errors().request) and "timed out" in text.lower():
        return "timed out"
    return text[:300] or type(exc).__name__


class DockerEngines:
    """One lazily created Docker SDK client per host, every call in a worker thread."""

    def __init__(self, inventory: Inventory, *, timeout: float = DEFAULT_TIMEOUT, connect: Connect | None = None):
        self.inventory = inventory
        self.timeout = timeout
        self._connect = connect or default_connect
        self._clients: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def host(self, name: str) -> Host:
        host = self.inventory.get(name)
        if not host.is_local and not host.docker:
            raise ToolError(
                f'host {host.name} has no Docker engine in the inventory (add docker = "ssh://user@{host.name}")'
            )
        return host

    async def _client(self, host: Host) -> Any:
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            client = self._clients.get(host.name)
            if client is not None:
                return client
            try:
                client = await asyncio.wait_for(
                    asyncio.to_thread(self._connect, host, self.timeout), self.timeout + 1.0
                )
            except TimeoutError:
                raise ToolError(
                    f"cannot reach the Docker engine on host {host.name} ({host.docker_label}): "
                    f"no answer within {self.timeout:g} s"
                ) from None
            except (_sdk_errors().docker, _sdk_errors().request, OSError) as exc:
                raise self._unreachable(host, exc) from None
            self._clients[host.name] = client
            return client

    def _unreachable(self, host: Host, exc: BaseException) -> ToolError:
        if "paramiko" in str(exc):
            return ToolError(
                f"cannot reach the Docker engine on host {host.name} ({host.docker_label}): ssh:// Docker hosts "
                "need the paramiko package (the docker[ssh] extra), which is not installed here"
            )
        reason = _reason(exc)
        if "timed out" in reason.lower():
            reason = f"no answer within {self.timeout:g} s"
        return ToolError(f"cannot reach the Docker engine on host {host.name} ({host.docker_label}): {reason}")

    def _forget(self, host: Host) -> None:
        client = self._clients.pop(host.name, None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken client must not hide the real error
                pass

    async def call(self, host_name: str, fn: Callable[[Any], T], *, extra_timeout: float = 0.0) -> T:
        """Run `fn(client)` for the host in a worker thread; SDK failures become ToolErrors."""
        host = self.host(host_name)
        client = await self._client(host)
        limit = self.timeout + extra_timeout + 2.0
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, client), limit)
        except TimeoutError:
            self._forget(host)
            raise ToolError(f"the Docker engine on host {host.name} did not answer within {limit:g} s") from None
        except _sdk_errors().not_found as exc:
            raise ToolError(f"not found on host {host.name}: {_explanation(exc)}") from None
        except _sdk_errors().api as exc:
            raise ToolError(f"the Docker engine on host {host.name} refused: {_explanation(exc)}") from None
        except (_sdk_errors().request, OSError) as exc:
            self._forget(host)
            raise self._unreachable(host, exc) from None
        except _sdk_errors().docker as exc:
            raise ToolError(f"Docker on host {host.name}: {exc}") from None

    def close(self) -> None:
        for name in list(self._clients):
            self._forget(self.inventory.get(name))


def _explanation(exc: Exception) -> str:
    """What the engine said, as the SDK's `APIError.explanation` keeps it, or the error itself."""
    return str(getattr(exc, "explanation", None) or exc)


def default_connect(host: Host, timeout: float) -> Any:
    """A Docker SDK client; constructing it asks the engine for its API version."""
    import docker

    if host.docker:
        return docker.DockerClient(base_url=host.docker, timeout=timeout, use_ssh_client=False)
    return docker.from_env(timeout=timeout, use_ssh_client=False)


# ---------------------------------------------------------------- shaping SDK data


def container_row(attrs: dict[str, Any]) -> dict[str, Any]:
    state = attrs.get("State") or {}
    health = (state.get("Health") or {}).get("Status") or "none"
    row: dict[str, Any] = {
        "name": str(attrs.get("Name", "")).lstrip("/"),
        "id": str(attrs.get("Id", ""))[:12],
        "image": (attrs.get("Config") or {}).get("Image", ""),
        "status": state.get("Status", ""),
        "health": health,
        "restart_count": int(attrs.get("RestartCount") or 0),
        "ports": format_ports((attrs.get("NetworkSettings") or {}).get("Ports")),
    }
    if state.get("Running"):
        row["up_for"] = _age(state.get("StartedAt"))
    else:
        row["exit_code"] = state.get("ExitCode")
        finished = _age(state.get("FinishedAt"))
        if finished:
            row["exited_ago"] = finished
    if state.get("OOMKilled"):
        row["oom_killed"] = True
    return row


def trimmed_inspect(attrs: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    host_config = attrs.get("HostConfig") or {}
    health = state.get("Health")
    labels = config.get("Labels") or {}
    out: dict[str, Any] = {
        "name": str(attrs.get("Name", "")).lstrip("/"),
        "id": str(attrs.get("Id", ""))[:12],
        "image": config.get("Image", ""),
        "image_id": str(attrs.get("Image", ""))[:19],
        "created": attrs.get("Created"),
        "command": redact(shlex.join([str(attrs.get("Path", "")), *map(str, attrs.get("Args") or [])]).strip()),
        "state": {
            "status": state.get("Status"),
            "running": state.get("Running"),
            "paused": state.get("Paused"),
            "restarting": state.get("Restarting"),
            "oom_killed": state.get("OOMKilled"),
            "exit_code": state.get("ExitCode"),
            "error": state.get("Error") or "",
            "started_at": state.get("StartedAt"),
            "finished_at": state.get("FinishedAt"),
        },
        "health": None,
        "restart_policy": host_config.get("RestartPolicy") or {},
        "restart_count": int(attrs.get("RestartCount") or 0),
        "mounts": [
            {
                "type": m.get("Type"),
                "source": m.get("Source") or m.get("Name"),
                "destination": m.get("Destination"),
                "read_write": m.get("RW"),
            }
            for m in attrs.get("Mounts") or []
        ],
        # Names only: values are where passwords and tokens live.
        "env_names": sorted({str(e).split("=", 1)[0] for e in config.get("Env") or []}),
        "ports": format_ports((attrs.get("NetworkSettings") or {}).get("Ports")),
        "networks": {
            name: net.get("IPAddress") or ""
            for name, net in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items()
        },
        "network_mode": host_config.get("NetworkMode"),
    }
    if health:
        out["health"] = {
            "status": health.get("Status"),
            "failing_streak": health.get("FailingStreak"),
            "log_tail": [
                {
                    "start": h.get("Start"),
                    "exit_code": h.get("ExitCode"),
                    "output": redact(str(h.get("Output") or "").strip()[-500:]),
                }
                for h in (health.get("Log") or [])[-3:]
            ],
        }
    compose = {k.rsplit(".", 1)[-1]: v for k, v in labels.items() if k in _COMPOSE_LABELS}
    if compose:
        out["compose"] = compose
    return out


_COMPOSE_LABELS = frozenset({"com.docker.compose.project", "com.docker.compose.service"})


def stats_row(name: str, cid: str, stats: dict[str, Any]) -> dict[str, Any]:
    used, limit = memory_usage(stats)
    return {
        "name": name,
        "id": cid[:12],
        "cpu_percent": cpu_percent(stats),
        "mem_used_mib": _mib(used),
        "mem_limit_mib": _mib(limit),
        "mem_percent": round(used / limit * 100.0, 2) if limit else 0.0,
        "pids": (stats.get("pids_stats") or {}).get("current", 0),
    }


@dataclass(frozen=True)
class _Action:
    verb: str
    past: str
    grace: int


@dataclass(frozen=True)
class _Target:
    """One container a lifecycle action is about, as the engine describes it now."""

    host: Host
    cid: str
    shown: str
    attrs: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.attrs.get("State") or {})

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.host.name, self.host.docker, self.cid)  # the approval is bound to this container id


_ACTIONS = {
    "restart": _Action("restart", "restarted", STOP_GRACE),
    "stop": _Action("stop", "stopped", STOP_GRACE),
    "start": _Action("start", "started", 0),
}


# ---------------------------------------------------------------- the tools


def docker_tools(policy: Policy, engines: DockerEngines) -> list[ToolSpec]:
    @tool(risk=Risk.READ)
    async def docker_ps(host: str = LOCAL) -> dict[str, Any]:
        """List every container (running or not) with status, health, restart count, image and ports.

        Args:
            host: which machine: "local" (this one) or a host name from the inventory.
        """

        def work(client: Any) -> list[dict[str, Any]]:
            containers = client.containers.list(all=True, ignore_removed=True)
            return sorted((container_row(c.attrs) for c in containers), key=lambda r: str(r["name"]))

        rows = await engines.call(host, work)
        return {"host": host, "containers": rows, "count": len(rows)}

    @tool(risk=Risk.READ)
    async def docker_logs(container: str, tail: int = 100, since: str = "", host: str = LOCAL) -> str:
        """The last lines a container wrote to stdout and stderr, with timestamps (secrets redacted).

        Args:
            container: container name or id, as docker_ps shows it.
            tail: how many of the last lines to return (1 to 2000).
            since: only lines newer than this: a duration like "10m", "2h", "1d", or an ISO time.
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        name = check_container(container)
        lines = max(1, min(tail, MAX_LOG_LINES))
        after = parse_since(since)

        def work(client: Any) -> bytes:
            c = client.containers.get(name)
            kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "tail": lines, "timestamps": True}
            if after is not None:
                kwargs["since"] = after
            data = c.logs(**kwargs)
            return data if isinstance(data, bytes) else b""

        raw = await engines.call(host, work)
        text, cut = policy.clean(raw.decode("utf-8", "replace"))
        header = f"logs of {name} on {host} (last {lines} lines{f' since {since}' if since else ''})"
        return f"{header}:\n{text.rstrip() or '(no log lines)'}" + ("\n(output cut at the cap)" if cut else "")

    @tool(risk=Risk.READ)
    async def docker_stats(host: str = LOCAL) -> dict[str, Any]:
        """CPU percent and memory use of every running container, measured the way `docker stats` does.

        Args:
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        running = await engines.call(
            host, lambda client: [(c.name, c.id) for c in client.containers.list(ignore_removed=True)]
        )
        gate = asyncio.Semaphore(STATS_PARALLEL)

        async def one(name: str, cid: str) -> dict[str, Any]:
            async with gate:
                try:
                    stats = await engines.call(host, lambda client: client.api.stats(cid, stream=False))
                except ToolError as exc:
                    return {"name": name, "id": cid[:12], "error": str(exc)}
            return stats_row(name, cid, stats)

        rows = await asyncio.gather(*(one(n, i) for n, i in running))
        return {"host": host, "containers": sorted(rows, key=lambda r: str(r["name"])), "count": len(rows)}

    @tool(risk=Risk.READ)
    async def docker_inspect(container: str, host: str = LOCAL) -> dict[str, Any]:
        """One container's details that matter: state, health checks, restart policy, mounts,
        environment variable names (never values), ports, networks, image and times.

        Args:
            container: container name or id, as docker_ps shows it.
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        name = check_container(container)
        attrs = await engines.call(host, lambda client: client.api.inspect_container(name))
        return {"host": host, **trimmed_inspect(attrs, policy.redact)}

    async def lifecycle_target(action: _Action, container: str, host_name: str) -> _Target:
        """The container as it is now, if the action makes sense for it (no stop of a stopped one)."""
        host = engines.host(host_name)
        name = check_container(container)
        attrs = await engines.call(host.name, lambda client: client.api.inspect_container(name))
        target = _Target(host, str(attrs["Id"]), str(attrs.get("Name", name)).lstrip("/"), attrs)
        if action.verb == "start" and target.running:
            raise ToolError(f"{target.shown} is already running on host {host.name}")
        if action.verb == "stop" and not target.running:
            raise ToolError(f"{target.shown} is not running on host {host.name} (status {target.state.get('Status')})")
        return target

    async def act(action: _Action, container: str, host_name: str, ctx: ToolContext) -> ToolOutput:
        """What the lifecycle tools' bodies do: the action, on the container id the approval was bound to."""
        target = await lifecycle_target(action, container, host_name)
        ctx.check_unchanged(target.parts)  # not a container re-created under the same name since

        def work(client: Any) -> dict[str, Any]:
            c = client.containers.get(target.cid)
            if action.verb == "restart":
                c.restart(timeout=action.grace)
            elif action.verb == "stop":
                c.stop(timeout=action.grace)
            else:
                c.start()
            c.reload()
            return dict(c.attrs)

        host = target.host
        after = await engines.call(host.name, work, extra_timeout=action.grace)
        row = container_row(after)
        started = (after.get("State") or {}).get("StartedAt", "")
        text = f"{action.past} {target.shown} on host {host.name}: now {row['status']} (started at {started})"
        return ToolOutput(text + "\n" + json.dumps(row, default=str))

    def lifecycle(action: _Action, spec: ToolSpec) -> None:
        """Attach the plan and fresh hooks of one lifecycle tool."""

        @spec.plan
        async def _plan(args: dict[str, Any]) -> Plan:
            target = await lifecycle_target(action, args["container"], args["host"])
            host, state = target.host, target.state
            detail = (
                f"docker {action.verb} {target.shown}\n"
                f"host: {host.name} ({host.docker_label})\n"
                f"container: {target.shown} (id {target.cid[:12]}, image "
                f"{(target.attrs.get('Config') or {}).get('Image', '?')}, {state.get('Status', '?')}"
                + (f", up {_age(state.get('StartedAt'))}" if target.running else "")
                + ")"
            )
            if action.grace:
                detail += f"\nit gets {action.grace} s to stop before it is killed"
            return Plan(
                risk=Risk.EXEC,
                summary=f"docker {action.verb} {target.shown} on host {host.name}",
                detail=detail,
                detail_kind="text",
                host=host.name,
                fingerprint_parts=target.parts,
            )

        @spec.check_fresh
        async def _fresh(args: dict[str, Any]) -> tuple[str, ...]:
            return (await lifecycle_target(action, args["container"], args["host"])).parts

    @tool(risk=Risk.EXEC)
    async def docker_restart(container: str, host: str = LOCAL, *, ctx: ToolContext) -> ToolOutput:
        """Restart a container (stop, then start). A person approves it first.

        Args:
            container: container name or id, as docker_ps shows it.
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        return await act(_ACTIONS["restart"], container, host, ctx)

    @tool(risk=Risk.EXEC)
    async def docker_stop(container: str, host: str = LOCAL, *, ctx: ToolContext) -> ToolOutput:
        """Stop a running container. A person approves it first.

        Args:
            container: container name or id, as docker_ps shows it.
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        return await act(_ACTIONS["stop"], container, host, ctx)

    @tool(risk=Risk.EXEC)
    async def docker_start(container: str, host: str = LOCAL, *, ctx: ToolContext) -> ToolOutput:
        """Start a stopped container. A person approves it first.

        Args:
            container: container name or id, as docker_ps shows it.
            host: which machine: "local" (this one) or a host name from the inventory.
        """
        return await act(_ACTIONS["start"], container, host, ctx)

    lifecycle(_ACTIONS["restart"], docker_restart)
    lifecycle(_ACTIONS["stop"], docker_stop)
    lifecycle(_ACTIONS["start"], docker_start)

    @tool(risk=Risk.READ)
    async def docker_compose_ps(project_dir: str, host: str = LOCAL) -> dict[str, Any] | str:
        """The containers of a Docker Compose project (`docker compose ps --all`), where compose is installed.

        Args:
            project_dir: the directory holding the compose file, under the file roots.
            host: which machine's Docker engine to ask: "local" or a host name from the inventory.
        """
        target = engines.host(host)
        directory = policy.resolve_path(project_dir)
        if not directory.is_dir():
            raise ToolError(f"{directory} is not a directory")
        env = scrubbed_env()
        if target.docker:
            env["DOCKER_HOST"] = target.docker
        compose = await _find_compose(env, limit=engines.timeout + 15)
        if compose is None:
            raise ToolError(
                "docker compose is not installed on this host: the docker CLI has no compose plugin and there "
                "is no docker-compose program (install the docker-compose-plugin or docker-compose package)"
            )
        argv = [*compose, "--project-directory", str(directory), "ps", "--all", "--format", "json"]
        result = await run_process(
            argv, timeout=engines.timeout + 15, cwd=str(directory), env=env, output_cap=policy.config.output_cap * 4
        )
        if not result.ok:
            raise ToolError(f"docker compose ps failed on host {target.name}: {result.combined()[:2000]}")
        rows = _compose_rows(result.stdout)
        if rows is None:
            return result.stdout
        return {"host": target.name, "project_dir": str(directory), "containers": rows, "count": len(rows)}

    return [docker_ps, docker_logs, docker_stats, docker_inspect, docker_restart, docker_stop, docker_start,
            docker_compose_ps]  # fmt: skip


async def _find_compose(env: dict[str, str], *, limit: float) -> list[str] | None:
    """`docker compose` (the CLI plugin) or the standalone `docker-compose`, whichever answers."""
    for program in (["docker", "compose"], ["docker-compose"]):
        probe = await run_process([*program, "version"], timeout=limit, env=env)
        if probe.ok and "compose" in probe.stdout.lower():
            return program
    return None


def _compose_rows(stdout: str) -> list[dict[str, Any]] | None:
    """`docker compose ps --format json` prints a JSON array (older v2) or one object per line."""
    text = stdout.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return None
    rows = []
    for item in items:
        if not isinstance(item, dict):
            return None
        rows.append(
            {
                "name": item.get("Name", ""),
                "service": item.get("Service", ""),
                "state": item.get("State", ""),
                "health": item.get("Health", "") or "none",
                "status": item.get("Status", ""),
                "ports": item.get("Ports", ""),
            }
        )
    return rows
