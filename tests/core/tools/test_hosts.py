"""The host inventory: TOML shape, validation, and what the model is told about hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import Services
from bot.settings import Settings
from core.hosts import Host, HostError, Inventory
from core.policy import Policy
from core.tools.infra import infra_tools

TOML = """
[hosts.web1]
docker = "ssh://ops@web1"
ssh = "ops@web1"

[hosts.db1]
docker = "tcp://10.0.0.5:2375"
ssh = "admin@db1.internal"
ssh_port = 2222
"""


def test_settings_read_the_inventory_from_orchestrator_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text(TOML)
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(config))
    settings = Settings()
    assert settings.hosts["web1"].docker == "ssh://ops@web1" and settings.hosts["web1"].ssh == "ops@web1"
    assert settings.hosts["db1"].ssh_port == 2222
    inventory = Inventory.from_mapping({n: h.model_dump() for n, h in settings.hosts.items()})
    assert inventory.names() == ["local", "db1", "web1"]
    assert inventory.get("db1").ssh_argv("systemctl status nginx") == [
        "ssh", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-p", "2222", "--", "admin@db1.internal",
        "systemctl status nginx",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"web 1": {"ssh": "ops@web1"}}, "invalid host name"),
        ({"-web": {"ssh": "ops@web1"}}, "invalid host name"),
        ({"web1": {"ssh": "-oProxyCommand=touch /tmp/x"}}, "invalid ssh target"),
        ({"web1": {"ssh": "ops@web1 reboot"}}, "invalid ssh target"),
        ({"web1": {"docker": "web1:2375"}}, "must start with one of"),
        ({"web1": {"docker": "unix://relative.sock"}}, "absolute socket path"),
        ({"local": {"ssh": "ops@elsewhere"}}, "cannot have an ssh target"),
        ({"web1": {"sshh": "ops@web1"}}, "unknown keys"),
    ],
)
def test_bad_inventories_are_refused_at_start(raw: dict[str, dict[str, str]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Inventory.from_mapping(raw)


def test_local_is_always_there_and_may_point_at_another_socket() -> None:
    assert Inventory().get("local") == Host("local")
    custom = Inventory.from_mapping({"local": {"docker": "unix:///run/user/1000/docker.sock"}})
    assert custom.get("local").docker == "unix:///run/user/1000/docker.sock"
    with pytest.raises(HostError, match="unknown host 'web1'; known hosts: local"):
        custom.get("web1")


def test_the_model_is_told_the_host_names(policy: Policy) -> None:
    inventory = Inventory.from_mapping({"web1": {"docker": "ssh://ops@web1", "ssh": "ops@web1"}})
    specs = {s.name: s for s in infra_tools(policy, inventory)}
    host_param = specs["docker_ps"].schema["function"]["parameters"]["properties"]["host"]
    assert host_param["default"] == "local" and "Known hosts: local, web1." in host_param["description"]
    assert "host" in specs["service_restart"].schema["function"]["parameters"]["properties"]
    assert "host" not in specs["git_status"].schema["function"]["parameters"]["properties"]


@pytest.mark.asyncio
async def test_build_services_registers_the_infrastructure_tools(services: Services) -> None:
    expected = {
        "docker_ps", "docker_logs", "docker_stats", "docker_inspect", "docker_restart", "docker_stop",
        "docker_start", "docker_compose_ps", "service_status", "journal", "service_restart", "git_status",
        "git_diff", "git_log", "git_commit", "git_revert", "check_url", "dns_lookup", "port_check",
    }  # fmt: skip
    assert expected <= set(services.tools.names())
    risky = {n for n in expected if services.tools.get(n).risk != "read"}  # type: ignore[union-attr]
    assert risky == {"docker_restart", "docker_stop", "docker_start", "service_restart", "git_commit", "git_revert"}


def test_docs_list_every_tool_with_its_risk(services: Services) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "tools.md").read_text()
    for name in services.tools.names():
        spec = services.tools.get(name)
        assert spec is not None
        assert f"### `{name}`" in docs, f"docs/tools.md does not describe {name}"
        section = docs.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert f"Risk: **{spec.risk}**" in section, f"docs/tools.md gives no (or a wrong) risk for {name}"
        assert f'"name": "{name}"' in section or f"{name}(" in section, f"docs/tools.md has no example for {name}"
