"""`orchestrator run slack|discord|all|scheduler`: serve chat with the scheduler, or the scheduler alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from bot import texts
from bot.commands import EXIT_FAILED, EXIT_MISTAKE
from bot.platforms import PLATFORMS


def handle(args: argparse.Namespace) -> int:
    from bot.platforms import configured
    from bot.runner import serve
    from bot.settings import load_settings
    from core.errors import AdapterSetupError, ConfigurationError, ServiceUnavailable

    settings = load_settings()
    if args.platform == "scheduler":
        platforms: list[str] = []
    elif args.platform == "all":
        platforms = [p for p in PLATFORMS if configured(settings, p)]
        if not platforms:
            if not settings.reports.scheduler:
                print(texts.RUN_NOTHING_CONFIGURED, file=sys.stderr)
                return EXIT_MISTAKE
            logging.getLogger("bot.cli").warning(texts.RUN_ALL_ALONE)  # the logger name `run all` always said it with
    else:
        platforms = [args.platform]
    try:
        return asyncio.run(serve(settings, platforms))
    except (ConfigurationError, AdapterSetupError) as exc:
        print(texts.COMMAND_FAILED.format(command=f"run {args.platform}", error=exc), file=sys.stderr)
        return EXIT_MISTAKE
    except ServiceUnavailable as exc:
        print(texts.COMMAND_FAILED.format(command=f"run {args.platform}", error=exc), file=sys.stderr)
        return EXIT_FAILED


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="serve a chat platform (slack, discord or all) with the scheduled checks and reports, "
        "or the scheduler alone (scheduler)",
    )
    p.add_argument("platform", choices=[*PLATFORMS, "all", "scheduler"])
    p.set_defaults(func=handle)
