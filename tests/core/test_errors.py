"""Errors by audience (core/errors.py): one class to catch per audience, and what each reaches."""

from __future__ import annotations

import pytest

from adapters.discord.config import DiscordSetupError
from adapters.slack.adapter import SlackSetupError
from bot.app import build_services
from bot.settings import Settings
from core.errors import (
    AdapterSetupError,
    ConfigurationError,
    InvalidArgument,
    ModelFacingError,
    OperatorError,
    OrchestratorError,
    RuntimeFailure,
    ServiceUnavailable,
    ToolError,
)
from core.events import Answer, Request, ToolResult
from core.hosts import HostError
from core.llm import LLMError, LLMReply, LLMToolCall
from core.memory.embeddings import EmbeddingError
from core.memory.store import EmbeddingModelMismatch, MemoryStoreError, private_scope
from core.policy import CommandRefused, PathRefused, PolicyError
from core.sandbox import SandboxUnavailable
from core.tools.registry import ToolRegistry, tool
from tests.support.models import FunctionModel, tool_turns


@pytest.mark.parametrize(
    ("error", "audience"),
    [
        (ToolError, ModelFacingError),
        (HostError, ModelFacingError),
        (PolicyError, ModelFacingError),
        (PathRefused, ModelFacingError),
        (CommandRefused, ModelFacingError),
        (LLMError, RuntimeFailure),
        (EmbeddingError, RuntimeFailure),
        (MemoryStoreError, RuntimeFailure),
        (EmbeddingModelMismatch, RuntimeFailure),
        (SandboxUnavailable, RuntimeFailure),
        (ServiceUnavailable, RuntimeFailure),
        (ConfigurationError, OperatorError),
        (AdapterSetupError, OperatorError),
        (SlackSetupError, OperatorError),
        (DiscordSetupError, OperatorError),
    ],
)
def test_each_error_has_one_audience(error: type[Exception], audience: type[Exception]) -> None:
    assert issubclass(error, audience) and issubclass(error, OrchestratorError)
    others = {ModelFacingError, RuntimeFailure, OperatorError} - {audience}
    assert not any(issubclass(error, other) for other in others)


def test_our_refused_arguments_are_one_class_not_any_value_error() -> None:
    with pytest.raises(InvalidArgument, match="private scope"):
        private_scope("slack", "")
    assert not issubclass(ValueError, InvalidArgument)  # a library's ValueError is not taken for ours


@pytest.mark.asyncio
async def test_both_kinds_the_model_may_correct_reach_it_and_the_run_goes_on(settings: Settings) -> None:
    """A tool refusing with a ToolError, then with a PolicyError: the model sees each as the result and answers."""

    @tool()
    async def lookup(name: str) -> str:
        """Look a host up.

        Args:
            name: the host.
        """
        if name == "db9":
            raise ToolError("no host named db9 in the inventory; known: db1, db2")
        raise CommandRefused("the command is not allowed: it writes")

    def reply(messages: object, tools: object) -> LLMReply:
        done = tool_turns(messages)  # type: ignore[arg-type]
        if done < 2:
            return LLMReply(tool_calls=(LLMToolCall("lookup", {"name": ["db9", "web1"][done]}),))
        return LLMReply(content="db9 does not exist, and the other lookup was refused.")

    model = FunctionModel(reply)
    services = await build_services(settings, llm=model, extra_tools=ToolRegistry([lookup]))
    try:
        request = Request(platform="console", user_id="tester", channel="console", thread="t", text="look db9 up")
        events = [ev async for ev in services.agent.run(request)]
    finally:
        await services.close()
    results = [ev for ev in events if isinstance(ev, ToolResult)]
    assert [r.ok for r in results] == [False, False]
    assert "no host named db9" in results[0].output and "not allowed" in results[1].output
    assert isinstance(events[-1], Answer) and "db9 does not exist" in events[-1].text
    tool_messages = [m["content"] for m in model.requests[-1] if m["role"] == "tool"]
    assert any("no host named db9" in m for m in tool_messages) and any("not allowed" in m for m in tool_messages)
