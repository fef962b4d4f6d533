"""Docker tools through the Docker SDK, on the local engine or any host of the inventory.

The tools the model calls live here: reads (ps, logs, stats, inspect, compose ps)
and the lifecycle actions (restart, stop, start), built from one table and each
approved by a person. Container names are checked against Docker's own rules
before anything reaches the SDK. Engine access (a client per host, every call in a
worker thread with a timeout) is :mod:`core.tools.docker_engine`; turning what the
engine returns into rows and text is :mod:`core.tools.docker_format`. Their public
names are re-exported here.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.hosts import LOCAL, Host
from core.policy import Policy
from core.process import run_process
from core.tools.command import scrubbed_env
from core.tools.docker_engine import DEFAULT_TIMEOUT, Connect, DockerEngines, default_connect
from core.tools.docker_format import (
    age_text,
    compose_rows,
    container_row,
    cpu_percent,
    format_ports,
    memory_usage,
    stats_row,
    trimmed_inspect,
)
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, tool

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_LOG_LINES",
    "STATS_PARALLEL",
    "STOP_GRACE",
    "Connect",
    "DockerEngines",
    "check_container",
    "container_row",
    "cpu_percent",
    "default_connect",
    "docker_tools",
    "format_ports",
    "memory_usage",
    "parse_since",
    "stats_row",
    "trimmed_inspect",
]

STOP_GRACE = 10  # seconds a container gets to stop before it is killed (docker's default)
MAX_LOG_LINES = 2000
STATS_PARALLEL = 8

# Docker's own rule for names (daemon/names: RestrictedNameChars), which a hex id also satisfies.
_CONTAINER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
_SINCE_RELATIVE = re.compile(r"^(\d{1,6})\s*([smhd])$")


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


# ---------------------------------------------------------------- lifecycle actions


@dataclass(frozen=True)
class _Action:
    """One lifecycle tool: `docker_<verb>`, what it does to the SDK's container, and what the model reads."""

    verb: str
    past: str
    grace: int  # seconds to stop before a kill, told to the approver; 0: the action stops nothing
    description: str
    perform: Callable[[Any, int], None]  # (the SDK's container, grace)

    @property
    def tool_name(self) -> str:
        return f"docker_{self.verb}"


_LIFECYCLE = (
    _Action(
        "restart",
        "restarted",
        STOP_GRACE,
        "Restart a container (stop, then start). A person approves it first.",
        lambda container, grace: container.restart(timeout=grace),
    ),
    _Action(
        "stop",
        "stopped",
        STOP_GRACE,
        "Stop a running container. A person approves it first.",
        lambda container, grace: container.stop(timeout=grace),
    ),
    _Action(
        "start",
        "started",
        0,
        "Start a stopped container. A person approves it first.",
        lambda container, grace: container.start(),
    ),
)

# The parameters every lifecycle tool takes, as the model reads them.
_LIFECYCLE_ARGS = """
Args:
    container: container name or id, as docker_ps shows it.
    host: which machine: "local" (this one) or a host name from the inventory.
"""


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

    def lifecycle_tool(action: _Action) -> ToolSpec:
        """The tool `docker_<verb>`, with its plan and fresh hooks."""

        async def body(container: str, host: str = LOCAL, *, ctx: ToolContext) -> ToolOutput:
            # The action, on the container id the approval was bound to; the docstring is set below.
            target = await lifecycle_target(action, container, host)
            ctx.check_unchanged(target.parts)  # not a container re-created under the same name since

            def work(client: Any) -> dict[str, Any]:
                c = client.containers.get(target.cid)
                action.perform(c, action.grace)
                c.reload()
                return dict(c.attrs)

            after = await engines.call(target.host.name, work, extra_timeout=action.grace)
            row = container_row(after)
            started = (after.get("State") or {}).get("StartedAt", "")
            text = (
                f"{action.past} {target.shown} on host {target.host.name}: now {row['status']} (started at {started})"
            )
            return ToolOutput(text + "\n" + json.dumps(row, default=str))

        # What `tool` reads: the name (also of the arguments model) and the docstring the model sees.
        body.__name__ = body.__qualname__ = action.tool_name
        body.__doc__ = action.description + "\n" + _LIFECYCLE_ARGS
        spec = tool(risk=Risk.EXEC)(body)

        @spec.plan
        async def _plan(args: dict[str, Any]) -> Plan:
            target = await lifecycle_target(action, args["container"], args["host"])
            host, state = target.host, target.state
            detail = (
                f"docker {action.verb} {target.shown}\n"
                f"host: {host.name} ({host.docker_label})\n"
                f"container: {target.shown} (id {target.cid[:12]}, image "
                f"{(target.attrs.get('Config') or {}).get('Image', '?')}, {state.get('Status', '?')}"
                + (f", up {age_text(state.get('StartedAt'))}" if target.running else "")
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

        return spec

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
        rows = compose_rows(result.stdout)
        if rows is None:
            return result.stdout
        return {"host": target.name, "project_dir": str(directory), "containers": rows, "count": len(rows)}

    lifecycle = [lifecycle_tool(action) for action in _LIFECYCLE]
    return [docker_ps, docker_logs, docker_stats, docker_inspect, *lifecycle, docker_compose_ps]


async def _find_compose(env: dict[str, str], *, limit: float) -> list[str] | None:
    """`docker compose` (the CLI plugin) or the standalone `docker-compose`, whichever answers."""
    for program in (["docker", "compose"], ["docker-compose"]):
        probe = await run_process([*program, "version"], timeout=limit, env=env)
        if probe.ok and "compose" in probe.stdout.lower():
            return program
    return None
