"""The `orchestrator` command: the parser, and what goes wrong said in one line.

Each command is a module of bot.commands that registers its own subparser. Each imports
what it needs when it is chosen: `--help` and a mistyped command load no database, model
client, chat SDK or vector store (tests/test_startup.py holds to it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from bot import texts
from bot.commands import (
    EXIT_FAILED,
    EXIT_MISTAKE,
    EXIT_PIPE,
    approvals,
    ask,
    audit,
    backup,
    chat,
    doctor,
    jobs,
    memory,
    pairing,
    report,
    run,
    runs,
)
from bot.texts import RUN_ALL_ALONE as RUN_ALL_ALONE  # re-exported: what `run all` warns alone
from core.errors import ConfigurationError, ServiceUnavailable

__all__ = ["EXIT_FAILED", "EXIT_MISTAKE", "EXIT_PIPE", "RUN_ALL_ALONE", "build_parser", "main"]

# in the order --help lists
COMMANDS = (chat, ask, run, doctor, audit, runs, approvals, report, jobs, backup, memory, pairing)


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line naming the command, and where to read more (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_MISTAKE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orchestrator", description="A ChatOps agent for your own servers.")
    parser.add_argument(
        "--log-level", default="", help="DEBUG, INFO, WARNING or ERROR (default: INFO for `run`, WARNING otherwise)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. What goes wrong is said in one line on stderr: `orchestrator: …`, exit status 2
    for a mistake in the configuration, 1 for a service that does not answer."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or ("INFO" if getattr(args, "command", None) == "run" else "WARNING")
    func = getattr(args, "func", chat.handle)
    from bot.logs import setup_logging
    from bot.settings import load_settings
    from core.redact import Redactor

    try:
        setup_logging(Redactor(load_settings().secrets()), level=level.upper())
        status = int(func(args))
        sys.stdout.flush()  # a reader that went away shows here, not as a warning at exit
        return status
    except ConfigurationError as exc:
        print(texts.FAILED.format(error=exc), file=sys.stderr)
        return EXIT_MISTAKE
    except ServiceUnavailable as exc:
        print(texts.FAILED.format(error=exc), file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # Whoever read our output has stopped (`| head`): nothing to say, and nothing more to write.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        print(texts.INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
