"""The bot tests' fixtures: `cli_env`, a fresh data directory against the Ollama stand-in
(tests/support/cli.py)."""

from tests.support.cli import cli_env

__all__ = ["cli_env"]
