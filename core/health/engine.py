"""What the Docker checks need from an engine, and its Docker SDK implementation (in worker threads)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

DEFAULT_SOCKET = Path("/var/run/docker.sock")


@dataclass(frozen=True, slots=True)
class ContainerReading:
    id: str
    name: str
    image: str
    status: str  # created | running | restarting | exited | paused | dead
    health: str  # "" when the image has no healthcheck | starting | healthy | unhealthy
    restart_count: int
    started_at: float | None
    health_log: str = ""  # the last healthcheck output, cut short


class EngineProbe(Protocol):
    def describe(self) -> str:
        """Where the engine is expected, for messages ("unix:///var/run/docker.sock")."""

    def configured(self) -> bool:
        """Is an engine expected here at all (DOCKER_HOST, a configured URL, or the default socket)?"""

    async def ping(self) -> None:
        """Raise when the daemon does not answer."""

    async def containers(self) -> list[ContainerReading]:
        """Every container, running or not."""


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 times have nanoseconds; a zero year means "never"."""
    if not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def container_reading(attrs: Mapping[str, Any]) -> ContainerReading:
    """From `docker inspect` output."""
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    log = health.get("Log") or []
    last = str(log[-1].get("Output", "")).strip() if log else ""
    return ContainerReading(
        id=str(attrs.get("Id", ""))[:12],
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str((attrs.get("Config") or {}).get("Image", "")),
        status=str(state.get("Status", "")),
        health=str(health.get("Status", "")),
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=parse_docker_time(state.get("StartedAt")),
        health_log=last[-300:],
    )


class DockerEngineProbe:
    """The Docker SDK, one client reused across passes, every call in a worker thread."""

    def __init__(
        self,
        base_url: str = "",
        *,
        timeout: float = 5.0,
        socket_path: Path = DEFAULT_SOCKET,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.base_url = base_url or env.get("DOCKER_HOST", "")
        self.timeout = timeout
        self.socket_path = socket_path
        self._client: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.base_url or f"unix://{self.socket_path}"

    def configured(self) -> bool:
        return bool(self.base_url) or self.socket_path.exists()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker  # the SDK is a dependency; imported here so hosts without Docker pay nothing

                self._client = docker.DockerClient(base_url=self.describe(), timeout=self.timeout)
            return self._client

    def _reset(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken client is being thrown away anyway
                pass

    def _ping(self) -> None:
        try:
            self._get_client().ping()
        except Exception:
            self._reset()
            raise

    def _containers(self) -> list[ContainerReading]:
        api = self._get_client().api
        readings = []
        for summary in api.containers(all=True):
            try:
                readings.append(container_reading(api.inspect_container(summary["Id"])))
            except Exception as exc:  # removed between the listing and the inspect
                if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                    continue
                raise
        return readings

    async def ping(self) -> None:
        await asyncio.to_thread(self._ping)

    async def containers(self) -> list[ContainerReading]:
        try:
            return await asyncio.to_thread(self._containers)
        except Exception:
            self._reset()
            raise
