"""Fixtures for the infrastructure tools: a policy over the test workspace, Docker engines
bound to the private dockerd, a helper that runs throw-away containers on it, and
`invoke`, which calls a tool the way the agent does once the call may run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from docker.models.containers import Container

from core.events import Request, Risk
from core.hosts import Host, Inventory
from core.policy import Policy, PolicyConfig
from core.tools.docker import DockerEngines, docker_tools
from core.tools.registry import Plan, ToolContext, ToolSpec
from tests.support.dockerd import DockerEngine

LABEL = {"orchestrator-test": "tools"}
REQUESTER = Request(platform="console", user_id="tester", channel="console", text="(a tool test)")

# sh as PID 1 ignores SIGTERM unless it traps it; this one stops within a second.
SERVE = ["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done"]


async def run_approved(spec: ToolSpec, args: dict[str, Any], plan: Plan) -> Any:
    """What the agent does once a person approved `plan`: the fresh hook, then the tool's body."""
    assert await spec.fresh_parts(args) == plan.fingerprint_parts, "the target changed after the plan"
    return await spec.run(args, ToolContext(request=REQUESTER, plan=plan, approval_id=1))


async def invoke(spec: ToolSpec, **raw: Any) -> Any:
    """Validate, plan, and run the body: at once for a read, as if approved otherwise."""
    args = spec.validate(raw)
    plan = await spec.make_plan(args)
    if plan.risk is not Risk.READ:
        return await run_approved(spec, args, plan)
    return await spec.run(args, ToolContext(request=REQUESTER, plan=plan))


@pytest.fixture
def policy(workspace: Path) -> Policy:
    return Policy(PolicyConfig(file_roots=[workspace]))


@pytest_asyncio.fixture
async def engines(docker_host_env: DockerEngine) -> AsyncIterator[DockerEngines]:
    """Engines whose `local` host is the private dockerd (through $DOCKER_HOST)."""
    found = DockerEngines(Inventory(), timeout=20)
    yield found
    found.close()


@pytest.fixture
def tools(policy: Policy, engines: DockerEngines) -> dict[str, ToolSpec]:
    return {spec.name: spec for spec in docker_tools(policy, engines)}


@pytest.fixture
def run_container(docker_engine_clean: DockerEngine) -> Iterator[Callable[..., Container]]:
    def run(command: list[str] | None = None, **kwargs: Any) -> Container:
        kwargs.setdefault("network_mode", "none")
        kwargs.setdefault("labels", LABEL)
        container = docker_engine_clean.client.containers.run(
            docker_engine_clean.image, command or SERVE, detach=True, **kwargs
        )
        container.reload()  # run() returns the attributes from before the start
        return container

    yield run


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def remote(name: str, **kwargs: Any) -> Inventory:
    return Inventory({name: Host(name, **kwargs)})
