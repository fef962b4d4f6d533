"""analyze_logs: a window of logs, grouped and counted by the tool, for the model to summarise.

The journal (every unit, or one) and the containers' output (every container, or one) of a host
are read for the window. Each line is reduced to its pattern (times, numbers, ids and addresses
replaced), and the patterns are counted per source, errors first, each with one example line. The
model reads a few dozen groups instead of thousands of lines, so one call can summarise a day.
Read-only; secrets are redacted from what is returned.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.hosts import LOCAL, Inventory
from core.policy import Policy
from core.tools.docker import DockerEngines, check_container, parse_since
from core.tools.registry import ToolSpec, tool
from core.tools.services import SYSTEMD_MARKER, Systemd, check_unit, where

MAX_LINES = 20_000  # per source kind and call: the journal, and all containers together
MAX_GROUPS = 100
SKIP = "-"  # unit="-" or container="-": leave that kind of source out

LEVELS = ("error", "warning", "info")
# journald's PRIORITY: 0 emerg .. 3 err are errors, 4 warning, the rest information
_PRIORITY = {0: "error", 1: "error", 2: "error", 3: "error", 4: "warning"}
# Lines from containers carry no priority: the conventional level words decide (log formats are
# written in English whatever language their operators speak).
_ERROR = re.compile(
    r"\b(?:fatal|panic|crit(?:ical)?|emerg|alert|err(?:or)?|fail(?:ed|ure|s)?|exception|traceback)\b", re.I
)
_WARNING = re.compile(r"\bwarn(?:ing)?\b", re.I)

_LEADING_TIME = re.compile(
    r"^\s*\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"
)
_VARIABLE = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.I), "<id>"),
    (re.compile(r"\d+"), "#"),
)
_PATTERN_CHARS = 200


@dataclass
class Group:
    source: str
    level: str
    pattern: str
    count: int
    example: str


def pattern_of(line: str) -> str:
    """The line with what varies from one occurrence to the next replaced: the shape it is counted by."""
    text = _LEADING_TIME.sub("", line.strip())
    for regex, placeholder in _VARIABLE:
        text = regex.sub(placeholder, text)
    return " ".join(text.split())[:_PATTERN_CHARS]


def level_of(line: str, priority: int | None = None) -> str:
    if priority is not None:
        return _PRIORITY.get(priority, "info")
    if _ERROR.search(line):
        return "error"
    return "warning" if _WARNING.search(line) else "info"


def group_lines(entries: Iterable[tuple[str, str, int | None]]) -> list[Group]:
    """(source, line, journald priority or None) → the groups, errors first, then by count."""
    groups: dict[tuple[str, str, str], Group] = {}
    for source, line, priority in entries:
        if not line.strip():
            continue
        level = level_of(line, priority)
        key = (source, level, pattern_of(line))
        found = groups.get(key)
        if found is None:
            groups[key] = Group(source, level, key[2], 1, " ".join(line.split())[:_PATTERN_CHARS])
        else:
            found.count += 1
    return sorted(groups.values(), key=lambda g: (LEVELS.index(g.level), -g.count, g.source, g.pattern))


def journal_entries(stdout: str) -> list[tuple[str, str, int | None]]:
    """`journalctl --output=json` lines → (unit, message, priority); a line that is not JSON is skipped."""
    entries: list[tuple[str, str, int | None]] = []
    for raw in stdout.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        message = record.get("MESSAGE")
        if isinstance(message, list):  # journald sends binary messages as a list of bytes
            message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
        if not isinstance(message, str):
            continue
        source = record.get("_SYSTEMD_UNIT") or record.get("SYSLOG_IDENTIFIER") or record.get("_COMM") or "journal"
        try:
            priority: int | None = int(record.get("PRIORITY", 6))
        except (TypeError, ValueError):
            priority = None
        entries.append((str(source), message, priority))
    return entries


def format_groups(groups: list[Group], *, header: str, notes: list[str], top: int) -> str:
    counts = {level: sum(g.count for g in groups if g.level == level) for level in LEVELS}
    total = sum(counts.values())
    lines = [
        f"{header}: {total} lines from {len({g.source for g in groups})} source(s) in {len(groups)} pattern(s) "
        f"({counts['error']} error, {counts['warning']} warning, {counts['info']} other lines)"
    ]
    lines += [f"({note})" for note in notes]
    shown = groups[:top]
    if shown:
        lines.append(f"the {len(shown)} most telling patterns, errors first (# a number, <ip> an address, <id> an id):")
    for g in shown:
        lines.append(f"{g.count:>6}x  {g.level:<7} [{g.source}] {g.pattern}")
        if g.example != g.pattern:
            lines.append(f"         e.g. {g.example}")
    if len(groups) > len(shown):
        lines.append(f"({len(groups) - len(shown)} more pattern(s) not shown; raise `top` or narrow the window)")
    return "\n".join(lines)


class LogReader:
    """Reads a host's journal and containers' output for a window and groups it (the tool and the
    daily report both use it). What cannot be read becomes a note; nothing here raises for it."""

    def __init__(
        self,
        inventory: Inventory,
        engines: DockerEngines,
        *,
        timeout: float = 30.0,
        systemd_marker: Path = SYSTEMD_MARKER,
    ) -> None:
        self.inventory = inventory
        self.engines = engines
        self.systemd = Systemd(timeout=timeout, output_cap=8 * 2**20, marker=systemd_marker)

    async def journal(self, host: str, unit: str, after: int) -> list[tuple[str, str, int | None]]:
        argv = ["journalctl", "--no-pager", "--output=json", f"--since=@{after}", f"--lines={MAX_LINES}"]
        if unit:
            argv.append(f"--unit={check_unit(unit)}")
        target = self.inventory.get(host)
        result = await self.systemd.run(target, argv)
        if not result.ok:
            raise ToolError(f"journalctl failed on {where(target)}: {result.combined().strip()[:300]}")
        return await asyncio.to_thread(journal_entries, result.stdout)  # up to MAX_LINES of JSON

    async def containers(self, host: str, container: str, after: int) -> list[tuple[str, str, int | None]]:
        def work(client: Any) -> list[tuple[str, str, int | None]]:
            chosen = (
                [client.containers.get(check_container(container))]
                if container
                else client.containers.list(all=True, ignore_removed=True)
            )
            entries: list[tuple[str, str, int | None]] = []
            budget = MAX_LINES
            for c in chosen:
                if budget <= 0:
                    break
                data = c.logs(stdout=True, stderr=True, since=after, tail=budget)
                lines = (data if isinstance(data, bytes) else b"").decode("utf-8", "replace").splitlines()
                entries += [(str(c.name), line, None) for line in lines]
                budget -= len(lines)
            return entries

        return list(await self.engines.call(host, work))

    async def groups(
        self, after: int, *, unit: str = "", container: str = "", host: str = LOCAL
    ) -> tuple[list[Group], list[str], int]:
        """(groups, notes on the sources not read, how many kinds of source were read)."""
        self.inventory.get(host)  # an unknown host is refused before anything is read
        entries: list[tuple[str, str, int | None]] = []
        notes: list[str] = []
        read = 0
        for kind, name, reader in (("journal", unit, self.journal), ("containers", container, self.containers)):
            if name == SKIP:
                continue
            try:
                entries += await reader(host, name, after)
                read += 1
            except ToolError as exc:
                notes.append(f"{kind}: not read: {exc}")
        groups = await asyncio.to_thread(group_lines, entries)  # tens of thousands of lines: not on the loop
        return groups, notes, read


def log_tools(
    policy: Policy,
    inventory: Inventory,
    engines: DockerEngines,
    *,
    timeout: float = 30.0,
    systemd_marker: Path = SYSTEMD_MARKER,
) -> list[ToolSpec]:
    reader = LogReader(inventory, engines, timeout=timeout, systemd_marker=systemd_marker)

    @tool(risk=Risk.READ)
    async def analyze_logs(
        since: str = "24h", unit: str = "", container: str = "", host: str = LOCAL, top: int = 30
    ) -> str:
        """Group and count a window of logs, the journal and the containers' output, errors first.

        Each line is reduced to its pattern (numbers, ids, addresses and times replaced) and counted
        per source, with one example line. Use it to see what went wrong or what is noisy over a
        period; then read one source in full with journal or docker_logs.

        Args:
            since: how far back: a duration like "30m", "6h" or "1d", or an ISO time (default 24h).
            unit: only this systemd unit's journal; "" for every unit; "-" to leave the journal out.
            container: only this container's output; "" for every container; "-" to leave containers out.
            host: which machine: "local" (this one) or a host name from the inventory.
            top: how many patterns to return (1 to 100).
        """
        after = parse_since(since or "24h")
        assert after is not None
        groups, notes, read = await reader.groups(after, unit=unit, container=container, host=host)
        if not read:
            raise ToolError("no logs could be read: " + "; ".join(notes) if notes else "no source was chosen")
        window = time.strftime("%Y-%m-%d %H:%M", time.localtime(after))
        text = format_groups(
            groups, header=f"logs on {host} since {window}", notes=notes, top=max(1, min(top, MAX_GROUPS))
        )
        clean, _ = policy.clean(text)
        return clean

    return [analyze_logs]
