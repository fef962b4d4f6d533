"""systemd tools: validation, the clear message where systemd is absent, ssh for remote hosts."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from core.errors import ToolError
from core.hosts import Host, Inventory
from core.policy import Policy
from core.tools.registry import ToolSpec
from core.tools.services import NO_SYSTEMD, SYSTEMD_MARKER, check_unit, service_tools
from tests.core.tools.conftest import invoke

HOSTILE_UNITS = ["nginx; reboot", "../etc/passwd", "-f", "--help", "", "a b", "$(id)", "nginx\n", "x`id`"]


def specs(policy: Policy, inventory: Inventory | None = None, **kwargs: Any) -> dict[str, ToolSpec]:
    return {s.name: s for s in service_tools(policy, inventory or Inventory(), timeout=10, **kwargs)}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("unit", ["nginx", "nginx.service", "getty@tty1.service", "sys-fs-fuse.mount", "a:b.timer"])
def test_valid_unit_names(unit: str) -> None:
    assert check_unit(unit) == unit


@pytest.mark.asyncio
@pytest.mark.parametrize("unit", HOSTILE_UNITS)
async def test_hostile_unit_names_are_refused(policy: Policy, unit: str) -> None:
    tools = specs(policy, systemd_marker=Path("/"))  # as if systemd were here: validation comes first
    for name in ("service_status", "journal", "service_restart"):
        with pytest.raises(ToolError, match="invalid unit name"):
            await invoke(tools[name], unit=unit)


@pytest.mark.asyncio
@pytest.mark.skipif(SYSTEMD_MARKER.is_dir(), reason="this machine runs systemd")
async def test_without_systemd_every_tool_says_so(policy: Policy) -> None:
    tools = specs(policy)
    for name, extra in (("service_status", {}), ("journal", {"lines": 5}), ("service_restart", {})):
        with pytest.raises(ToolError, match=NO_SYSTEMD):
            await invoke(tools[name], unit="nginx.service", **extra)
    # refused while planning: nobody is asked to approve a restart that cannot happen
    with pytest.raises(ToolError, match=NO_SYSTEMD):
        await tools["service_restart"].make_plan({"unit": "nginx", "host": "local"})


@pytest.mark.asyncio
async def test_systemctl_without_a_running_systemd_is_the_same_message(policy: Policy, tmp_path: Path) -> None:
    """When the marker exists but systemctl cannot talk to systemd (a container), the answer is the same."""
    if SYSTEMD_MARKER.is_dir():
        pytest.skip("this machine runs systemd")
    tools = specs(policy, systemd_marker=tmp_path)
    with pytest.raises(ToolError, match=NO_SYSTEMD):
        await invoke(tools["service_status"], unit="nginx.service")


@pytest.mark.asyncio
async def test_restart_plan_names_the_host_and_the_ssh_argv(policy: Policy) -> None:
    inventory = Inventory({"web1": Host("web1", ssh="ops@web1", ssh_port=2222)})
    plan = await specs(policy, inventory)["service_restart"].make_plan({"unit": "nginx.service", "host": "web1"})
    assert plan.risk == "exec" and plan.host == "web1" and plan.detail_kind == "argv"
    assert plan.detail == (
        "ssh -T -o BatchMode=yes -o ConnectTimeout=3 -p 2222 -- ops@web1 'systemctl restart -- nginx.service'"
    )
    assert "web1" in plan.summary


@pytest.mark.asyncio
async def test_unreachable_ssh_host_is_a_clear_error(policy: Policy) -> None:
    inventory = Inventory({"web2": Host("web2", ssh="ops@127.0.0.1", ssh_port=closed_port())})
    tools = specs(policy, inventory)
    if shutil.which("ssh") is None:
        with pytest.raises(ToolError, match="ssh is not installed"):
            await invoke(tools["service_status"], unit="nginx", host="web2")
        return
    for name in ("service_status", "journal"):
        with pytest.raises(ToolError, match=r"cannot reach host web2 over ssh \(ops@127.0.0.1\):.*refused"):
            await invoke(tools[name], unit="nginx", host="web2")


@pytest.mark.asyncio
async def test_hosts_without_ssh_and_unknown_hosts(policy: Policy) -> None:
    inventory = Inventory({"db1": Host("db1", docker="tcp://127.0.0.1:2375")})
    tools = specs(policy, inventory)
    with pytest.raises(ToolError, match="host db1 has no ssh target"):
        await invoke(tools["service_status"], unit="nginx", host="db1")
    with pytest.raises(ToolError, match="unknown host 'nope'; known hosts: local, db1"):
        await invoke(tools["journal"], unit="nginx", host="nope")


@pytest.mark.asyncio
async def test_journal_since_is_checked(policy: Policy) -> None:
    tools = specs(policy, systemd_marker=Path("/"))
    with pytest.raises(ToolError, match="cannot use since"):
        await invoke(tools["journal"], unit="nginx", since="$(reboot)")
