"""`orchestrator jobs`: the scheduled jobs with their next run, and which process runs the scheduler."""

from __future__ import annotations

import argparse
from typing import Any


def handle(args: argparse.Namespace) -> int:
    from bot.scheduler import jobs_command
    from bot.settings import load_settings

    return jobs_command(load_settings(), as_json=args.json)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("jobs", help="scheduled jobs with their next run, and which process runs the scheduler")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=handle)
