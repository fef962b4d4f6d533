"""`orchestrator report health|daily`: print a report (--post: also send it to the reports channels)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot import texts
from bot.commands import EXIT_MISTAKE, hours


def handle(args: argparse.Namespace) -> int:
    from bot.reports import daily_command, health_command
    from bot.settings import load_settings

    if args.kind == "health" and args.hours is not None:
        print(texts.REPORT_HOURS_MISUSE, file=sys.stderr)
        return EXIT_MISTAKE
    settings = load_settings()
    if args.kind == "health":
        return asyncio.run(health_command(settings, post=args.post))
    return asyncio.run(daily_command(settings, post=args.post, hours=args.hours))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="print the health or daily report (--post: send it to the reports channels)"
    )
    p.add_argument("kind", choices=["health", "daily"])
    p.add_argument("--post", action="store_true", help="also post it to reports.slack_channel / discord_channel")
    p.add_argument("--hours", type=hours, default=None, help="daily: the window in hours (default: the setting, 24)")
    p.set_defaults(func=handle)
