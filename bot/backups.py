"""Backups wired to settings: the weekly job and its report, and `orchestrator backup now|list`.

Taking the backups is free; the job deletes backups beyond retention and uploads to S3 only
when the configuration allows it (`ORCHESTRATOR_BACKUP_AUTO_PRUNE`, `ORCHESTRATOR_BACKUP_AUTO_UPLOAD`),
writes an audit row as the actor `scheduler` for each, and says so in the report. Otherwise the
report says what is waiting for an approval in chat (`backup_prune`, `backup_s3`).
"""

from __future__ import annotations

import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

from bot import texts
from bot.settings import Settings
from core.backup import BackupEngine, BackupFile, PartResult, human_size
from core.errors import ToolError
from core.events import Report
from core.health.outlets import Destination, publish
from core.store import Store
from core.store.models import AuditEntry

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"


async def _audit(store: Store, actor: str, tool: str, detail: str, *, decision: str = "", decider: str = "") -> None:
    await store.audit(
        AuditEntry(
            at=time.time(),
            action="tool_run",
            actor=actor,
            tool=tool,
            decision=decision,
            decider=decider,
            exit_status=0,
            detail=detail,
        )
    )


def part_line(part: PartResult) -> str:
    if part.file is None:
        return texts.BACKUP_PART_FAILED.format(kind=part.kind, source=part.source, error=part.error)
    line = texts.BACKUP_PART_DONE.format(
        kind=part.kind, source=part.source, name=part.file.name, size=human_size(part.file.size),
        sha256=part.file.sha256,
    )  # fmt: skip
    return f"{line} ({part.note})" if part.note else line


async def run_backup(
    settings: Settings,
    engine: BackupEngine,
    store: Store,
    *,
    actor: str,
    prune: bool,
    upload: bool,
    allowed_by: str = "",
    progress: Callable[[str], None] | None = None,
) -> tuple[list[PartResult], list[str]]:
    """Every configured backup, then (when allowed) prune and upload. The report's lines."""
    say = progress or (lambda line: None)
    if not engine.configured():
        raise ToolError(texts.BACKUP_NOTHING_CONFIGURED)
    parts = await engine.backup_full()
    lines = []
    for part in parts:
        lines.append(part_line(part))
        say(lines[-1])
    made = [p.file for p in parts if p.file is not None]
    await _audit(store, actor, "backup_full", "; ".join(f"{f.name} sha256 {f.sha256}" for f in made) or "no file")
    old = await engine.beyond_retention()
    if old and prune:
        gone = await engine.prune(old)
        await _audit(store, actor, "backup_prune", ", ".join(gone), decision="allowed", decider=allowed_by)
        lines.append(texts.BACKUP_PRUNED.format(count=len(gone), keep=engine.config.keep, why=allowed_by or actor))
        say(lines[-1])
    elif old:
        lines.append(texts.BACKUP_PRUNE_WAITING.format(count=len(old), keep=engine.config.keep))
        say(lines[-1])
    if engine.config.s3 is not None and made:
        if upload:
            try:
                keys = await engine.upload(made)
            except ToolError as exc:
                lines.append(texts.BACKUP_UPLOAD_FAILED.format(error=exc))
            else:
                await _audit(store, actor, "backup_s3", ", ".join(keys), decision="allowed", decider=allowed_by)
                lines.append(texts.BACKUP_UPLOADED.format(count=len(keys), where=engine.config.s3.where(),
                                                          why=allowed_by or actor))  # fmt: skip
        else:
            lines.append(texts.BACKUP_UPLOAD_WAITING.format(where=engine.config.s3.where()))
        say(lines[-1])
    return parts, lines


def backup_report(parts: Sequence[PartResult], lines: Sequence[str], engine: BackupEngine) -> Report:
    made = [p.file for p in parts if p.file is not None]
    failed = sum(1 for p in parts if p.file is None)
    total = sum(f.size for f in made)
    title = texts.BACKUP_REPORT_TITLE.format(count=len(made), size=human_size(total))
    if failed:
        title += texts.BACKUP_REPORT_FAILED.format(failed=failed)
    text = "\n".join([f"• {line}" for line in lines] + [texts.BACKUP_REPORT_WHERE.format(directory=engine.directory)])
    return Report(kind="backup", title=title, text=text, fields={"files": [f.name for f in made], "bytes": total})


async def scheduled_backup(
    settings: Settings,
    engine: BackupEngine,
    store: Store,
    dests: Sequence[Destination],
    *,
    redact: Callable[[str], str],
) -> Report:
    """The weekly job: back up, prune and upload as configured, post the report to the reports channels."""
    allowed = [
        name
        for name, on in (
            ("ORCHESTRATOR_BACKUP_AUTO_PRUNE", settings.backup_auto_prune),
            ("ORCHESTRATOR_BACKUP_AUTO_UPLOAD", settings.backup_auto_upload),
        )
        if on
    ]
    try:
        parts, lines = await run_backup(
            settings, engine, store, actor=SCHEDULER, prune=settings.backup_auto_prune,
            upload=settings.backup_auto_upload, allowed_by=texts.BACKUP_BY_CONFIGURATION.format(
                settings=", ".join(allowed)) if allowed else "",
        )  # fmt: skip
    except ToolError as exc:
        parts, lines = [], [str(exc)]
    report = backup_report(parts, lines, engine)
    report = Report(report.kind, redact(report.title), redact(report.text), fields=report.fields)
    if not dests:
        log.warning("backup report built, but no reports channel is configured")
    await publish(report, dests)
    return report


# ---- `orchestrator backup now|list` ----------------------------------------------------------
async def now_command(settings: Settings, *, prune: bool, upload: bool, out: IO[str] = sys.stdout) -> int:
    from bot.app import backup_engine, make_policy, open_store_async

    engine = backup_engine(settings)
    redact = make_policy(settings).redact
    store = await open_store_async(settings)
    who = f"console:{getpass.getuser()}"
    try:
        parts, _ = await run_backup(
            settings, engine, store, actor=who, prune=prune, upload=upload,
            allowed_by=texts.BACKUP_BY_OPERATOR.format(who=who), progress=lambda line: print(redact(line), file=out),
        )  # fmt: skip
    finally:
        await store.close()
    print(texts.BACKUP_WHERE.format(directory=engine.directory), file=out)
    return 1 if any(p.file is None for p in parts) else 0


async def list_command(settings: Settings, *, as_json: bool, out: IO[str] = sys.stdout) -> int:
    from bot.app import backup_engine

    engine = backup_engine(settings)
    rows: list[tuple[BackupFile, bool]] = [(b, await engine.verify(b)) for b in await engine.entries()]
    old = {b.name for b in await engine.beyond_retention()}
    if as_json:
        data = [
            {"name": b.name, "kind": b.kind, "source": b.label, "size": b.size, "sha256": b.sha256,
             "checksum_ok": ok, "beyond_retention": b.name in old, "path": str(b.path)}
            for b, ok in rows
        ]  # fmt: skip
        print(json.dumps(data, indent=2), file=out)
        return 0
    if not rows:
        print(texts.BACKUP_NONE.format(directory=engine.directory), file=out)
        return 0
    for b, ok in rows:
        mark = texts.BACKUP_CHECKSUM_OK if ok else texts.BACKUP_CHECKSUM_BAD
        extra = texts.BACKUP_BEYOND if b.name in old else ""
        print(f"{b.name}  {human_size(b.size):>10}  {b.sha256[:16]}  {mark}{extra}", file=out)
    total = sum(b.size for b, _ in rows)
    print(texts.BACKUP_LIST_FOOTER.format(count=len(rows), size=human_size(total), directory=engine.directory,
                                          keep=engine.config.keep), file=out)  # fmt: skip
    return 1 if not all(ok for _, ok in rows) else 0
