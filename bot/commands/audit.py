"""`orchestrator audit`: what was asked, what ran, who approved."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bot import texts
from bot.commands import count, hours


def handle(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings

    store = open_store(load_settings())
    since = time.time() - args.hours * 3600 if args.hours is not None else None
    rows = store.audit_entries_sync(limit=args.limit, since=since)
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print(texts.AUDIT_EMPTY)
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.at))
        parts = [when, f"{r.action:<18}", r.actor or "-"]
        if r.tool:
            parts.append(r.tool)
        if r.decider:
            parts.append(f"by {r.decider}")
        if r.exit_status is not None:
            parts.append(f"exit {r.exit_status}")
        if r.detail:
            parts.append("· " + r.detail.replace("\n", " ")[:100])
        print("  ".join(parts))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("audit", help="what was asked, what ran, who approved")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=count, default=100)
    p.add_argument("--hours", type=hours, default=None, help="only the last N hours (default: everything)")
    p.set_defaults(func=handle)
