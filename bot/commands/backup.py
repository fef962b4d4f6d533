"""`orchestrator backup now|list`: take every configured backup now, or list them with their checksums."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def handle(args: argparse.Namespace) -> int:
    from bot.backups import list_command, now_command
    from bot.settings import load_settings
    from core.errors import ConfigurationError, ToolError

    settings = load_settings()
    if args.action == "list":
        return asyncio.run(list_command(settings, as_json=args.json))
    try:
        return asyncio.run(now_command(settings, prune=args.prune, upload=args.upload))
    except ToolError as exc:  # nothing configured: the operator's to fix, said in one line
        raise ConfigurationError(f"backup now: {exc}") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("backup", help="take the configured backups now, or list them")
    p.add_argument("action", choices=["now", "list"])
    p.add_argument("--prune", action="store_true", help="now: also delete the backups beyond ORCHESTRATOR_BACKUP_KEEP")
    p.add_argument("--upload", action="store_true", help="now: also upload them to the configured S3 bucket")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=handle)
