"""`orchestrator approvals`: the pending approvals, or (--all) every decision."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bot import texts
from bot.commands import count


def handle(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings

    store = open_store(load_settings())
    rows = store.recent_approvals_sync(limit=args.limit, pending_only=not args.all)
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print(texts.NO_PENDING_APPROVALS if not args.all else texts.NO_APPROVALS)
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.requested_at))
        who = f" by {r.decided_by}" if r.decided_by else ""
        print(f"#{r.id}  {when}  {r.status:<8}{who}  {r.platform}:{r.channel}  {r.summary}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("approvals", help="pending approvals (--all for every decision)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=count, default=50)
    p.set_defaults(func=handle)
