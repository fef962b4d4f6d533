"""`orchestrator ask QUESTION`: one question, answered in this terminal."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path
from typing import Any

from bot import texts
from bot.commands import EXIT_MISTAKE
from bot.commands.chat import console_session
from core.events import InputFile


def attached(paths: list[str]) -> tuple[InputFile, ...] | str:
    """The files of --attach, as a chat adapter would give them (name, type, size, an image's
    bytes), or the line saying which one cannot be read."""
    from core.vision import MAX_IMAGE_BYTES

    files = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            return texts.ATTACH_MISSING.format(path=raw)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        size = path.stat().st_size
        data = path.read_bytes() if kind.startswith("image/") and size <= MAX_IMAGE_BYTES else None
        files.append(InputFile(path.name, kind, size, data=data))
    return tuple(files)


def handle(args: argparse.Namespace) -> int:
    from bot.settings import load_settings

    question = " ".join(args.question).strip()
    if not question:
        print(texts.ASK_NO_QUESTION, file=sys.stderr)
        return EXIT_MISTAKE
    files = attached(args.attach)
    if isinstance(files, str):
        print(files, file=sys.stderr)
        return EXIT_MISTAKE
    return asyncio.run(console_session(load_settings(), question, files))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ask", help="ask one question and exit")
    p.add_argument("question", nargs="+")
    p.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="a file that goes with the question, as in a chat (repeatable); an image is shown to "
        "ORCHESTRATOR_VISION_MODEL when it is set",
    )
    p.set_defaults(func=handle)
