"""`orchestrator ask QUESTION`: one question, answered in this terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot import texts
from bot.commands import EXIT_MISTAKE
from bot.commands.chat import console_session


def handle(args: argparse.Namespace) -> int:
    from bot.settings import load_settings

    question = " ".join(args.question).strip()
    if not question:
        print(texts.ASK_NO_QUESTION, file=sys.stderr)
        return EXIT_MISTAKE
    return asyncio.run(console_session(load_settings(), question))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ask", help="ask one question and exit")
    p.add_argument("question", nargs="+")
    p.set_defaults(func=handle)
