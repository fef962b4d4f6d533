"""`orchestrator chat` (the default): talk to the agent in this terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings
    from core.events import InputFile


async def console_session(settings: Settings, question: str | None, attachments: tuple[InputFile, ...] = ()) -> int:
    """The console over freshly built services: a chat, or one question (`orchestrator ask`)."""
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
        return await console.ask(question, attachments=attachments)
    finally:
        await services.close()


def handle(args: argparse.Namespace) -> int:
    from bot.settings import load_settings

    return asyncio.run(console_session(load_settings(), None))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("chat", help="talk to the agent in this terminal (the default)")
    p.set_defaults(func=handle)
