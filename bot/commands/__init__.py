"""The `orchestrator` commands: one module each, each with `register(subparsers)` adding its
subparser and setting its handler (bot.cli calls them in order, and handles what they raise).

A command module imports only the standard library at module level: what its handler needs
(settings, the store, the model client, a chat SDK, chromadb) is imported when it runs, so
`--help` and a mistyped command stay light (tests/test_startup.py holds to it).

Here too: the exit statuses every command shares, and the argument types of their options.
"""

from __future__ import annotations

import argparse

EXIT_FAILED = 1  # something the bot needs does not answer (a database server, Discord)
EXIT_MISTAKE = 2  # the operator's to fix: a setting, a file, a directory
EXIT_PIPE = 128 + 13  # what a program killed by SIGPIPE reports: `orchestrator audit | head -1`


def hours(text: str) -> float:
    """A window in hours: above 0, at most a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < value <= 24 * 366:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"the number of hours must be above 0 and at most {24 * 366}, not {text}")
    return value


def count(text: str) -> int:
    """How many rows to show: at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
