"""The infrastructure tool set: Docker, systemd services, logs, git and network checks."""

from __future__ import annotations

from core.hosts import Inventory
from core.policy import Policy
from core.tools.docker import DEFAULT_TIMEOUT, DockerEngines, docker_tools
from core.tools.git import git_tools
from core.tools.logs import log_tools
from core.tools.network import network_tools
from core.tools.registry import ToolSpec
from core.tools.services import service_tools


def infra_tools(
    policy: Policy,
    inventory: Inventory,
    *,
    docker_timeout: float = DEFAULT_TIMEOUT,
    network_timeout: float = 10.0,
    engines: DockerEngines | None = None,
) -> list[ToolSpec]:
    """Every infrastructure tool, bound to the policy and the host inventory."""
    engines = engines or DockerEngines(inventory, timeout=docker_timeout)
    specs = [
        *docker_tools(policy, engines),
        *service_tools(policy, inventory, timeout=policy.config.command_timeout),
        *log_tools(policy, inventory, engines, timeout=policy.config.command_timeout),
        *git_tools(policy, timeout=policy.config.command_timeout),
        *network_tools(timeout=network_timeout),
    ]
    name_hosts(specs, inventory)
    return specs


def name_hosts(specs: list[ToolSpec], inventory: Inventory) -> None:
    """Tell the model which host names exist, in the `host` parameter's description."""
    known = ", ".join(inventory.names())
    for spec in specs:
        prop = spec.schema["function"]["parameters"].get("properties", {}).get("host")
        if prop is not None:
            prop["description"] = f"{prop.get('description', '')} Known hosts: {known}.".strip()
