"""Docker engines through the Docker SDK: one client per host, every call in a worker thread.

The SDK is synchronous: every call, including creating a client (which already talks
to the engine), runs in a worker thread with a timeout, so a slow or unreachable host
is a tool error and never blocks the event loop. The SDK itself (with requests and
paramiko) is imported by the first call that needs it, so a process that never touches
Docker does not pay for it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import ToolError
from core.hosts import Host, Inventory

__all__ = ["DEFAULT_TIMEOUT", "Connect", "DockerEngines", "default_connect"]

T = TypeVar("T")
Connect = Callable[[Host, float], Any]

DEFAULT_TIMEOUT = 15.0

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


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
