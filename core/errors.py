"""Errors for the person who runs the bot, split by what they can do about them.

What the model should see and may correct is a `core.tools.registry.ToolError`; these two
are for the operator. The command line prints the message as one line, `orchestrator: …`,
and exits 2 for a `ConfigurationError` and 1 for a `ServiceUnavailable`.
"""

from __future__ import annotations


class ConfigurationError(Exception):
    """An operator mistake: a setting, file or directory that cannot work as given.

    The message names the setting (and where it was set) and says how to fix it."""


class ServiceUnavailable(Exception):
    """A service the bot needs does not answer right now (a database server, a chat platform).

    The message names the service, where it was looked for, and what to check."""
