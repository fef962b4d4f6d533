"""The private dockerd used by the Docker tool tests really runs containers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest
from docker.models.containers import Container

if TYPE_CHECKING:
    from tests.support.dockerd import DockerEngine

# Loaded as a plugin (not imported at module level here) so pytest can rewrite its
# asserts; a root conftest may list it as well.
pytest_plugins = ["tests.support.dockerd"]


IMAGE = "orchestrator-test/busybox:latest"

LABEL = {"orchestrator-test": "support"}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def run(engine: DockerEngine, command: list[str], **kwargs: object) -> Container:
    kwargs.setdefault("network_mode", "none")
    kwargs.setdefault("labels", LABEL)
    return engine.client.containers.run(engine.image, command, detach=True, **kwargs)


def test_engine_is_private_and_has_the_image(docker_engine: DockerEngine) -> None:
    assert docker_engine.base_url.startswith("unix:///")
    assert len(docker_engine.base_url) - len("unix://") < 108
    assert docker_engine.client.ping()
    info = docker_engine.client.info()
    assert info["Driver"] == docker_engine.storage_driver
    assert Path(docker_engine.base_url.removeprefix("unix://")).is_socket()
    assert docker_engine.image == IMAGE
    assert IMAGE in docker_engine.client.images.get(IMAGE).tags


def test_ps_shows_a_running_container(docker_engine_clean: DockerEngine) -> None:
    container = run(docker_engine_clean, ["sleep", "60"], name="sleeper")
    listed = docker_engine_clean.client.containers.list(filters={"label": "orchestrator-test=support"})
    assert [c.name for c in listed] == ["sleeper"]
    assert listed[0].status == "running"
    assert listed[0].id == container.id
    top = container.top()
    assert any("sleep" in " ".join(proc) for proc in top["Processes"])


def test_logs_are_readable(docker_engine_clean: DockerEngine) -> None:
    container = run(docker_engine_clean, ["sh", "-c", "echo hello; echo oops >&2; sleep 1"])
    assert container.wait(timeout=30)["StatusCode"] == 0
    assert container.logs(stdout=True, stderr=False) == b"hello\n"
    assert container.logs(stdout=False, stderr=True) == b"oops\n"
    assert sorted(container.logs(stdout=True, stderr=True).splitlines()) == [b"hello", b"oops"]


def test_restart_policy_crash_loop_counts_restarts(docker_engine_clean: DockerEngine) -> None:
    container = run(
        docker_engine_clean,
        ["sh", "-c", "echo boom; exit 1"],
        restart_policy={"Name": "always"},
    )

    def restarted_twice() -> bool:
        container.reload()
        return int(container.attrs["RestartCount"]) >= 2

    assert wait_for(restarted_twice), container.attrs["State"]
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert container.attrs["State"]["ExitCode"] == 1 or container.attrs["State"]["Running"]
    assert b"boom" in container.logs()


def test_healthcheck_turns_healthy_and_unhealthy(docker_engine_clean: DockerEngine) -> None:
    second = 1_000_000_000
    healthy = run(
        docker_engine_clean,
        ["sh", "-c", "sleep 1; touch /tmp/ready; sleep 60"],
        healthcheck={"test": ["CMD-SHELL", "test -f /tmp/ready"], "interval": second // 2, "retries": 1},
    )
    unhealthy = run(
        docker_engine_clean,
        ["sleep", "60"],
        healthcheck={"test": ["CMD", "false"], "interval": second // 2, "retries": 1},
    )

    def status(c: Container) -> str:
        c.reload()
        return str(c.attrs["State"].get("Health", {}).get("Status"))

    assert wait_for(lambda: status(healthy) == "healthy"), healthy.attrs["State"]
    assert wait_for(lambda: status(unhealthy) == "unhealthy"), unhealthy.attrs["State"]


def test_stats_returns_numbers(docker_engine_clean: DockerEngine) -> None:
    container = run(docker_engine_clean, ["sleep", "60"])
    stats = container.stats(stream=False)
    assert stats["memory_stats"].get("usage", 0) > 0
    assert "cpu_usage" in stats["cpu_stats"]
    assert stats["pids_stats"].get("current", 0) >= 1


def test_docker_host_env_points_from_env_at_the_engine(docker_host_env: DockerEngine) -> None:
    client = docker.from_env()
    try:
        assert client.api.base_url == docker_host_env.client.api.base_url
        assert IMAGE in client.images.get(IMAGE).tags
    finally:
        client.close()


def test_from_env_and_cli_reach_the_engine(docker_engine: DockerEngine) -> None:
    client = docker.from_env(environment=docker_engine.env)
    try:
        assert client.ping()
    finally:
        client.close()
    cli = shutil.which("docker")
    if cli is None:
        pytest.skip("no docker CLI on PATH")
    out = subprocess.run(
        [cli, "--host", docker_engine.base_url, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert IMAGE in out.split()


def test_start_engine_gives_a_reason_instead_of_raising() -> None:
    from tests.support.dockerd import start_engine

    reason = start_engine(dockerd="/nonexistent/dockerd")
    assert isinstance(reason, str)
    assert "dockerd" in reason


def test_not_root_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.dockerd import start_engine

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = start_engine()
    assert reason == "a private dockerd needs root (euid is 1000)"


def test_second_engine_with_vfs_starts_and_cleans_up(docker_engine: DockerEngine) -> None:
    """Another engine next to the session one (vfs driver); stop() leaves nothing behind."""
    from tests.support.dockerd import start_engine

    engine = start_engine(storage_driver="vfs")
    assert not isinstance(engine, str), engine
    root, pid = engine.root, engine.pid
    try:
        assert engine.base_url != docker_engine.base_url
        assert engine.client.info()["Driver"] == "vfs"
        run(engine, ["sleep", "60"])
    finally:
        engine.stop()
    assert not root.exists()
    assert not Path(f"/proc/{pid}").exists()
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_mentions(p, str(root))]
    assert leftovers == []


def test_unknown_storage_driver_is_a_reason(docker_engine: DockerEngine) -> None:
    from tests.support.dockerd import start_engine

    reason = start_engine(storage_driver="no-such-driver", timeout=30)
    assert isinstance(reason, str)
    assert "no-such-driver" in reason
    assert "exited" in reason


def _cmdline_mentions(proc: Path, needle: str) -> bool:
    try:
        return needle.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False
