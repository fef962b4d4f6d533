"""`orchestrator pairing list|approve|revoke`: let people who DMed the bot ask.

With `ORCHESTRATOR_DM_POLICY=pair` (the default) a stranger who DMs the bot gets a short
code. An approver at this machine's shell approves it here; the grant is a row in the
store, so it holds across restarts and for every bot process on the same database. Codes
are single-use and expire after an hour. Every step is in the audit log. See
docs/security.md#who-may-ask.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from bot import texts

if TYPE_CHECKING:
    from bot.settings import Settings
    from core.store.models import Pairing


def _operator() -> str:
    return getpass.getuser()


def _status(row: Pairing, now: float) -> str:
    from core.store.models import PairingStatus

    if row.status == PairingStatus.PENDING and row.expires_at <= now:
        return PairingStatus.EXPIRED
    return row.status


def _name(row: Pairing) -> str:
    return f" ({row.user_name})" if row.user_name else ""


def _allowed_by(settings: Settings, platform: str, user: str) -> str:
    """The setting that lets this person ask without a pairing, if any."""
    from bot.platforms import PLATFORMS, people

    return people(settings, platform).allowed_by(user) if platform in PLATFORMS else ""


def cmd_list(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings
    from core.store.models import PairingStatus

    store = open_store(load_settings())
    now = time.time()
    rows = [
        r
        for r in store.pairings_sync()
        if args.all or _status(r, now) in (PairingStatus.PENDING, PairingStatus.APPROVED)
    ]
    if args.json:
        print(json.dumps([r.model_dump() | {"status": _status(r, now)} for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print(texts.PAIRING_NOTHING)
        return 0
    for r in rows:
        status = _status(r, now)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.requested_at))
        if status == PairingStatus.PENDING:
            until = time.strftime("%H:%M", time.localtime(r.expires_at))
            tail = f"code {r.code}, asked {when}, expires {until}"
        else:
            decided = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.decided_at)) if r.decided_at else ""
            tail = f"asked {when}" + (f", {status} by {r.decided_by} {decided}" if r.decided_by else "")
        print(f"{status:<8}  {r.platform}:{r.user_id}{_name(r)}  {tail}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from bot.app import open_store
    from bot.settings import load_settings
    from core.access import normalise_code
    from core.store.models import PairingStatus

    settings = load_settings()
    user = _operator()
    if user not in settings.console_approvers:
        print(texts.PAIRING_NOT_AN_APPROVER.format(user=user), file=sys.stderr)
        return 1
    code = normalise_code(args.code)
    store = open_store(settings)
    row, approved = store.approve_pairing_sync(code, by=f"console:{user}", now=time.time())
    if row is None:
        print(texts.PAIRING_UNKNOWN_CODE.format(code=args.code), file=sys.stderr)
        return 1
    who = f"{row.platform}:{row.user_id}"
    if approved:
        print(texts.PAIRING_APPROVED.format(who=who, name=_name(row)))
        return 0
    if row.status == PairingStatus.EXPIRED:
        print(texts.PAIRING_EXPIRED.format(code=code, who=row.user_name or who), file=sys.stderr)
    else:
        by = f" by {row.decided_by}" if row.decided_by else ""
        print(texts.PAIRING_NOT_PENDING.format(code=code, status=row.status, by=by), file=sys.stderr)
    return 1


def cmd_revoke(args: argparse.Namespace) -> int:
    platform, _, user_id = args.who.partition(":")
    if not platform or not user_id:
        print(texts.PAIRING_BAD_WHO, file=sys.stderr)
        return 2
    from bot.app import open_store
    from bot.settings import load_settings

    settings = load_settings()
    store = open_store(settings)
    count = store.revoke_pairing_sync(platform, user_id, by=f"console:{_operator()}", now=time.time())
    still = _allowed_by(settings, platform, user_id)
    if still:
        print(texts.PAIRING_STILL_ALLOWED.format(who=args.who, setting=still), file=sys.stderr)
    if not count:
        print(texts.PAIRING_NOTHING_TO_REVOKE.format(who=args.who), file=sys.stderr)
        return 1
    print(texts.PAIRING_REVOKED.format(who=args.who, count=count))
    return 0


def register(subparsers: Any) -> None:
    """Add `orchestrator pairing …` to the CLI's subcommands."""
    pairing = subparsers.add_parser("pairing", help="people who DMed the bot for access: list, approve, revoke")
    actions = pairing.add_subparsers(dest="pairing_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="pending codes and paired people")
    p.add_argument("--all", action="store_true", help="also used, expired and revoked codes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
    p = actions.add_parser("approve", help="let the person who was given CODE ask")
    p.add_argument("code", metavar="CODE")
    p.set_defaults(func=cmd_approve)
    p = actions.add_parser("revoke", help="end a paired person's access")
    p.add_argument("who", metavar="PLATFORM:USER")
    p.set_defaults(func=cmd_revoke)
