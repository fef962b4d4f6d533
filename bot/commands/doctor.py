"""`orchestrator doctor`: each check on a line, with its fix (the checks themselves: bot.doctor)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot import texts
from bot.commands import EXIT_FAILED


def handle(args: argparse.Namespace) -> int:
    from bot.doctor import run_checks
    from bot.settings import load_settings

    checks = asyncio.run(run_checks(load_settings()))
    failed = 0
    for c in checks:
        mark = "FAIL" if not c.ok else "WARN" if c.warning else "ok  "
        print(texts.DOCTOR_LINE.format(mark=mark, name=c.name, detail=c.detail))
        failed += not c.ok
        if c.fix and (not c.ok or c.warning):
            print(texts.DOCTOR_FIX.format(fix=c.fix))
    print(texts.DOCTOR_PASSED if not failed else texts.DOCTOR_FAILED.format(failed=failed))
    return 0 if not failed else EXIT_FAILED


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="check Ollama, the model, the data dir and the database")
    p.set_defaults(func=handle)
