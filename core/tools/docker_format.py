"""What the Docker tools show: containers, stats and compose output shaped into rows and text.

Pure functions of what the SDK (or `docker compose`) returned; nothing here talks
to an engine.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "age_text",
    "compose_rows",
    "container_row",
    "cpu_percent",
    "format_ports",
    "memory_usage",
    "stats_row",
    "trimmed_inspect",
]

_COMPOSE_LABELS = frozenset({"com.docker.compose.project", "com.docker.compose.service"})


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def age_text(value: str | None) -> str:
    """How long ago an engine timestamp was, shortly ("3d4h", "5m12s"); "" for none."""
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


def container_row(attrs: dict[str, Any]) -> dict[str, Any]:
    """One container as `docker_ps` lists it, from its inspect attributes."""
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
        row["up_for"] = age_text(state.get("StartedAt"))
    else:
        row["exit_code"] = state.get("ExitCode")
        finished = age_text(state.get("FinishedAt"))
        if finished:
            row["exited_ago"] = finished
    if state.get("OOMKilled"):
        row["oom_killed"] = True
    return row


def trimmed_inspect(attrs: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """The parts of `docker inspect` that matter, with the command and health output redacted."""
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


def stats_row(name: str, cid: str, stats: dict[str, Any]) -> dict[str, Any]:
    """One container as `docker_stats` lists it, from one stats sample."""
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


def compose_rows(stdout: str) -> list[dict[str, Any]] | None:
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
