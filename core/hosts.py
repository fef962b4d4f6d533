"""The host inventory: which machines the Docker and service tools may act on.

`local` is always this machine: its Docker engine comes from `$DOCKER_HOST` (or the
default socket) and its commands run here. Other hosts come from the operator's
inventory (`[hosts.web1] docker = "ssh://ops@web1"`, `ssh = "ops@web1"`). Every
value is validated when the inventory is built, so a tool never puts an unchecked
word into an ssh argv or a Docker base URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from core.errors import ToolError

LOCAL = "local"

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# [user@]host, where host is a DNS name, an IPv4 address or a bracket-less IPv6 address.
_SSH_TARGET = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}@)?[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")
_DOCKER_SCHEMES = frozenset({"unix", "tcp", "ssh", "http", "https"})


class HostError(ToolError):
    """An unknown host, or a host without what the tool needs (no docker URL, no ssh target)."""


def check_host_name(name: str) -> str:
    if not _HOST_NAME.fullmatch(name):
        raise HostError(
            f"invalid host name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class Host:
    """One machine. `docker` is a Docker base URL ("" = the local engine from the environment);
    `ssh` is an ssh destination (`user@host`; "" = commands run on this machine)."""

    name: str
    docker: str = ""
    ssh: str = ""
    ssh_port: int | None = None

    def __post_init__(self) -> None:
        check_host_name(self.name)
        if self.docker:
            _check_docker_url(self.name, self.docker)
        if self.ssh:
            if self.name == LOCAL:
                raise ValueError(f"host {LOCAL!r} is this machine; it cannot have an ssh target")
            if not _SSH_TARGET.fullmatch(self.ssh):
                raise ValueError(f"host {self.name}: invalid ssh target {self.ssh!r} (expected user@host)")
        if self.ssh_port is not None and not 0 < self.ssh_port < 65536:
            raise ValueError(f"host {self.name}: ssh_port must be between 1 and 65535")

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL

    @property
    def docker_label(self) -> str:
        """Where the Docker engine is, for messages."""
        return self.docker or "the local engine ($DOCKER_HOST or the default socket)"

    def ssh_argv(self, remote: str, *, connect_timeout: int = 5) -> list[str]:
        """An ssh argv that runs `remote` (one already-quoted command line) on this host.

        BatchMode: never ask for a password or a host key; `--` so the destination can
        never be read as an option.
        """
        if not self.ssh:
            raise HostError(f'host {self.name} has no ssh target in the inventory (add ssh = "user@{self.name}")')
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
        if self.ssh_port is not None:
            argv += ["-p", str(self.ssh_port)]
        return [*argv, "--", self.ssh, remote]


def _check_docker_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in _DOCKER_SCHEMES:
        raise ValueError(
            f"host {name}: docker = {url!r} must start with one of "
            + ", ".join(f"{s}://" for s in sorted(_DOCKER_SCHEMES))
        )
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(f"host {name}: docker = {url!r} needs an absolute socket path (unix:///run/docker.sock)")
    elif not parts.hostname:
        raise ValueError(f"host {name}: docker = {url!r} has no host name")
    if any(c.isspace() for c in url):
        raise ValueError(f"host {name}: docker = {url!r} contains whitespace")


@dataclass(frozen=True)
class Inventory:
    """Hosts by name; `local` is always present."""

    hosts: Mapping[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hosts = dict(self.hosts)
        for key, host in hosts.items():
            if key != host.name:
                raise ValueError(f"inventory key {key!r} does not match host name {host.name!r}")
        hosts.setdefault(LOCAL, Host(LOCAL))
        object.__setattr__(self, "hosts", hosts)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Mapping[str, Any]]) -> Inventory:
        """Build from `{"web1": {"docker": "ssh://ops@web1", "ssh": "ops@web1"}}` (the TOML shape)."""
        hosts: dict[str, Host] = {}
        for name, values in raw.items():
            try:
                check_host_name(name)
            except HostError as exc:
                raise ValueError(f"[hosts.{name}]: {exc}") from exc
            unknown = set(values) - {"docker", "ssh", "ssh_port"}
            if unknown:
                raise ValueError(f"[hosts.{name}]: unknown keys {', '.join(sorted(unknown))}")
            port = values.get("ssh_port")
            hosts[name] = Host(
                name,
                docker=str(values.get("docker") or ""),
                ssh=str(values.get("ssh") or ""),
                ssh_port=int(port) if port is not None else None,
            )
        return cls(hosts)

    def names(self) -> list[str]:
        return [LOCAL, *sorted(n for n in self.hosts if n != LOCAL)]

    def get(self, name: str) -> Host:
        """The host called `name`, or a HostError the model can act on."""
        if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
            raise HostError(f"invalid host name {name!r}; known hosts: {', '.join(self.names())}")
        host = self.hosts.get(name)
        if host is None:
            raise HostError(f"unknown host {name!r}; known hosts: {', '.join(self.names())}")
        return host

    def __contains__(self, name: object) -> bool:
        return name in self.hosts

    def __len__(self) -> int:
        return len(self.hosts)
