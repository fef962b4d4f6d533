"""The `orchestrator` command.

Each command imports what it needs when it is chosen: `--help` and a mistyped command load
no database, model client, chat SDK or vector store (tests/test_startup.py holds to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from bot.memory_cmd import register as register_memory
from bot.pairing_cmd import register as register_pairing
from core.errors import ConfigurationError, ServiceUnavailable

if TYPE_CHECKING:
    from bot.settings import Settings
    from core.store import Store

EXIT_FAILED = 1  # something the bot needs does not answer (a database server, Discord)
EXIT_MISTAKE = 2  # the operator's to fix: a setting, a file, a directory
EXIT_PIPE = 128 + 13  # what a program killed by SIGPIPE reports: `orchestrator audit | head -1`


def _settings() -> Settings:
    from bot.settings import load_settings

    return load_settings()  # a ConfigurationError is said once, by main()


async def _console(settings: Settings, question: str | None) -> int:
    from adapters import texts
    from adapters.console import ConsoleAdapter
    from bot.app import build_services

    services = await build_services(settings, platforms=["console"])
    try:
        console = ConsoleAdapter(services.agent, services.gate, history=settings.data_dir / "console_history")
        for row in services.expired_on_start:
            console._print(texts.EXPIRED_ON_RESTART.format(id=row.id, summary=row.summary), stream=sys.stderr)
        console.announce_interrupted(services.interrupted_on_start)
        if question is None:
            return await console.chat()
        return await console.ask(question)
    finally:
        await services.close()


def cmd_chat(args: argparse.Namespace) -> int:
    return asyncio.run(_console(_settings(), None))


def cmd_ask(args: argparse.Namespace) -> int:
    question = " ".join(args.question).strip()
    if not question:
        print('orchestrator ask: give a question, e.g. orchestrator ask "how full is the disk?"', file=sys.stderr)
        return 2
    return asyncio.run(_console(_settings(), question))


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.doctor import run_checks

    settings = _settings()
    checks = asyncio.run(run_checks(settings))
    failed = 0
    for c in checks:
        mark = "FAIL" if not c.ok else "WARN" if c.warning else "ok  "
        print(f"[{mark}] {c.name}: {c.detail}")
        failed += not c.ok
        if c.fix and (not c.ok or c.warning):
            print(f"       fix: {c.fix}")
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1


def _store(settings: Settings) -> Store:
    from bot.app import prepare_dirs
    from core.store import Store

    prepare_dirs(settings)
    store = Store(settings.db_url)
    store.migrate_sync()
    return store


def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings()
    store = _store(settings)
    since = time.time() - args.hours * 3600 if args.hours is not None else None
    rows = store.audit_entries_sync(limit=args.limit, since=since)
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("the audit log is empty")
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


def cmd_approvals(args: argparse.Namespace) -> int:
    settings = _settings()
    store = _store(settings)
    from sqlmodel import col, select

    from core.store.models import Approval

    def query(s: Any) -> list[Approval]:
        q = select(Approval).order_by(col(Approval.id).desc()).limit(args.limit)
        if not args.all:
            q = q.where(Approval.status == "pending")
        return list(s.exec(q).all())

    rows = store.run_sync(query)
    if args.json:
        print(json.dumps([r.model_dump() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no pending approvals" if not args.all else "no approvals yet")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.requested_at))
        who = f" by {r.decided_by}" if r.decided_by else ""
        print(f"#{r.id}  {when}  {r.status:<8}{who}  {r.platform}:{r.channel}  {r.summary}")
    return 0


RUN_ALL_ALONE = (
    "orchestrator run all: neither Slack nor Discord is configured, so only the scheduler runs "
    "(as `orchestrator run scheduler`); set SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or DISCORD_TOKEN, to serve chat"
)


def cmd_run(args: argparse.Namespace) -> int:
    from bot.runner import serve

    settings = _settings()
    if args.platform == "scheduler":
        platforms: list[str] = []
    elif args.platform == "all":
        platforms = [p for p in ("slack", "discord") if _configured(settings, p)]
        if not platforms:
            if not settings.reports.scheduler:
                print(
                    "orchestrator run all: neither Slack nor Discord is configured (set SLACK_BOT_TOKEN and "
                    "SLACK_APP_TOKEN, or DISCORD_TOKEN) and the scheduler is off (ORCHESTRATOR_SCHEDULER)",
                    file=sys.stderr,
                )
                return EXIT_MISTAKE
            logging.getLogger("bot.cli").warning(RUN_ALL_ALONE)
    else:
        platforms = [args.platform]
    from core.errors import AdapterSetupError

    try:
        return asyncio.run(serve(settings, platforms))
    except (ConfigurationError, AdapterSetupError) as exc:
        print(f"orchestrator run {args.platform}: {exc}", file=sys.stderr)
        return EXIT_MISTAKE
    except ServiceUnavailable as exc:
        print(f"orchestrator run {args.platform}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from bot.reports import daily_command, health_command

    if args.kind == "health" and args.hours is not None:
        print("orchestrator report: --hours is for the daily report; `report health` checks the host now",
              file=sys.stderr)  # fmt: skip
        return EXIT_MISTAKE
    settings = _settings()
    if args.kind == "health":
        return asyncio.run(health_command(settings, post=args.post))
    return asyncio.run(daily_command(settings, post=args.post, hours=args.hours))


def cmd_jobs(args: argparse.Namespace) -> int:
    from bot.scheduler import jobs_command

    return jobs_command(_settings(), as_json=args.json)


def _configured(settings: Settings, platform: str) -> bool:
    if platform == "slack":
        return settings.slack_bot_token is not None
    return settings.discord_token is not None


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line naming the command, and where to read more (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_MISTAKE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _hours(text: str) -> float:
    """A window in hours: above 0, at most a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < value <= 24 * 366:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"the number of hours must be above 0 and at most {24 * 366}, not {text}")
    return value


def _count(text: str) -> int:
    """How many rows to show: at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orchestrator", description="A ChatOps agent for your own servers.")
    parser.add_argument(
        "--log-level", default="", help="DEBUG, INFO, WARNING or ERROR (default: INFO for `run`, WARNING otherwise)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("chat", help="talk to the agent in this terminal (the default)")
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("ask", help="ask one question and exit")
    p.add_argument("question", nargs="+")
    p.set_defaults(func=cmd_ask)
    p = sub.add_parser(
        "run",
        help="serve a chat platform (slack, discord or all) with the scheduled checks and reports, "
        "or the scheduler alone (scheduler)",
    )
    p.add_argument("platform", choices=["slack", "discord", "all", "scheduler"])
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("doctor", help="check Ollama, the model, the data dir and the database")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("audit", help="what was asked, what ran, who approved")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=_count, default=100)
    p.add_argument("--hours", type=_hours, default=None, help="only the last N hours (default: everything)")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("approvals", help="pending approvals (--all for every decision)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_count, default=50)
    p.set_defaults(func=cmd_approvals)
    p = sub.add_parser("report", help="print the health or daily report (--post: send it to the reports channels)")
    p.add_argument("kind", choices=["health", "daily"])
    p.add_argument("--post", action="store_true", help="also post it to reports.slack_channel / discord_channel")
    p.add_argument("--hours", type=_hours, default=None, help="daily: the window in hours (default: the setting, 24)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("jobs", help="scheduled jobs with their next run, and which process runs the scheduler")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)
    register_memory(sub)
    register_pairing(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. What goes wrong is said in one line on stderr: `orchestrator: …`, exit status 2
    for a mistake in the configuration, 1 for a service that does not answer."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or ("INFO" if getattr(args, "command", None) == "run" else "WARNING")
    func = getattr(args, "func", cmd_chat)
    from bot.logs import setup_logging
    from bot.settings import load_settings
    from core.redact import Redactor

    try:
        setup_logging(Redactor(load_settings().secrets()), level=level.upper())
        status = int(func(args))
        sys.stdout.flush()  # a reader that went away shows here, not as a warning at exit
        return status
    except ConfigurationError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_MISTAKE
    except ServiceUnavailable as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # Whoever read our output has stopped (`| head`): nothing to say, and nothing more to write.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
