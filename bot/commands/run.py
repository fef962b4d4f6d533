"""`orchestrator run slack|discord|all|scheduler`: serve chat with the scheduler, or the scheduler alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from bot.commands import EXIT_FAILED, EXIT_MISTAKE
from bot.platforms import PLATFORMS

RUN_ALL_ALONE = (
    "orchestrator run all: neither Slack nor Discord is configured, so only the scheduler runs "
    "(as `orchestrator run scheduler`); set SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or DISCORD_TOKEN, to serve chat"
)
NOTHING_CONFIGURED = (
    "orchestrator run all: neither Slack nor Discord is configured (set SLACK_BOT_TOKEN and "
    "SLACK_APP_TOKEN, or DISCORD_TOKEN) and the scheduler is off (ORCHESTRATOR_SCHEDULER)"
)


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
                print(NOTHING_CONFIGURED, file=sys.stderr)
                return EXIT_MISTAKE
            logging.getLogger("bot.cli").warning(RUN_ALL_ALONE)  # the logger name `run all` always said it with
    else:
        platforms = [args.platform]
    try:
        return asyncio.run(serve(settings, platforms))
    except (ConfigurationError, AdapterSetupError) as exc:
        print(f"orchestrator run {args.platform}: {exc}", file=sys.stderr)
        return EXIT_MISTAKE
    except ServiceUnavailable as exc:
        print(f"orchestrator run {args.platform}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="serve a chat platform (slack, discord or all) with the scheduled checks and reports, "
        "or the scheduler alone (scheduler)",
    )
    p.add_argument("platform", choices=[*PLATFORMS, "all", "scheduler"])
    p.set_defaults(func=handle)
