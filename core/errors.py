"""The project's errors, by who can do something about them (pydantic-ai's `exceptions.py`).

Everything the project raises on purpose is an :class:`OrchestratorError`, under one of three
bases:

* :class:`ModelFacingError`: what the model should see and may correct, shown to it as the
  tool's result (a path outside the roots, a refused command, a unit that does not exist).
  `core.tools.registry.ToolError` and `core.policy.PolicyError` are the two kinds; the agent
  catches this one class around a tool call and goes on.
* :class:`RuntimeFailure`: something the bot depends on failed at run time (the model, the
  memory's embedding engine or store, the sandbox, a notebook, a database or chat service).
  The message is for people; the run or the part concerned stops, the bot does not.
* :class:`OperatorError`: the operator's mistake in setting the bot up (a setting, a file, a
  token the platform refuses). The command line prints the message as one line,
  `orchestrator: …`, and exits 2 for a `ConfigurationError`.

:class:`InvalidArgument` is for a call our own code refuses (an empty fact, a malformed
scope): a `ValueError` too, so a caller may catch that class alone, never a bare `ValueError`
to mean "one of ours".
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """The base of every error the project raises on purpose."""


# ---- what the model sees ------------------------------------------------------------------
class ModelFacingError(OrchestratorError):
    """A refusal or failure the model sees as the tool's result, and may correct."""


class ToolError(ModelFacingError):
    """A failure the model sees as an observation (bad path, refused command, missing unit…)."""


# ---- run-time failures --------------------------------------------------------------------
class RuntimeFailure(OrchestratorError, RuntimeError):
    """Something the bot depends on failed while it ran; the message says what and where."""


class ServiceUnavailable(RuntimeFailure):
    """A service the bot needs does not answer right now (a database server, a chat platform).

    The message names the service, where it was looked for, and what to check."""


# ---- operator mistakes --------------------------------------------------------------------
class OperatorError(OrchestratorError):
    """A mistake in how the bot is set up; the message says how to fix it."""


class ConfigurationError(OperatorError):
    """An operator mistake: a setting, file or directory that cannot work as given.

    The message names the setting (and where it was set) and says how to fix it."""


class AdapterSetupError(OperatorError):
    """The platform refused the bot (bad token, missing intents or scopes); the message says how to fix it."""


# ---- arguments our code refuses -----------------------------------------------------------
class InvalidArgument(OrchestratorError, ValueError):
    """A value our own code refuses (an empty fact, a malformed scope); the message says which and why."""
